"""Bad input is refused with an error naming the array, and nothing is updated."""
import ml_dtypes
import numpy as np
import pytest

import fastopt


@pytest.fixture(params=["SGD", "Adam", "RMSprop", "Lion"])
def optimizer(request):
    return getattr(fastopt, request.param)


@pytest.mark.parametrize("bad, error, match", [
    (np.zeros((4, 4))[:, ::2], ValueError, r"params\[1\] must be C-contiguous"),
    (np.zeros(3, dtype=np.float16), TypeError, r"params\[1\] must have dtype float32, float64 or bfloat16"),
    (np.zeros(3, dtype=np.int64), TypeError, r"params\[1\] must have dtype"),
    ([0.0, 1.0], TypeError, r"params\[1\] must be a numpy.ndarray, got list"),
    (np.zeros((3, 3)).T, ValueError, "C-contiguous"),
])
def test_bad_parameter_arrays(optimizer, bad, error, match):
    with pytest.raises(error, match=match):
        optimizer([np.zeros(3), bad])


def test_read_only_parameter(optimizer):
    w = np.zeros(3)
    w.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\['w'\] is read-only"):
        optimizer({"w": w})


def test_parameter_made_read_only_after_construction_is_refused_at_step(optimizer):
    w = np.zeros(3)
    opt = optimizer([w])
    w.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[0\] is read-only"):
        opt.step([np.ones(3)])


def test_overlapping_parameters(optimizer):
    buf = np.zeros(10)
    with pytest.raises(ValueError, match=r"parameters params\[0\] and params\[1\] share memory"):
        optimizer([buf[:6], buf[4:]])
    optimizer([buf[:5], buf[5:]])  # adjacent is fine


def test_params_container_and_empty(optimizer):
    with pytest.raises(TypeError, match="params must be a ParamSet"):
        optimizer(np.zeros(3))
    with pytest.raises(ValueError, match="empty parameter list"):
        optimizer([])


@pytest.mark.parametrize("grads, error, match", [
    ([np.ones(3), np.ones(4)], ValueError, r"grads\[1\] has shape \(4,\) but params\[1\] has shape \(2, 2\)"),
    ([np.ones(3), np.ones((2, 2), dtype=np.float32)], TypeError, r"grads\[1\] has dtype float32"),
    ([np.ones(3), np.ones((2, 4))[:, ::2]], ValueError, r"grads\[1\] must be C-contiguous"),
    ([np.ones(3)], ValueError, "grads has 1 arrays but params has 2"),
    (np.ones(3), TypeError, "grads must be a list or tuple"),
    (None, TypeError, "needs grads"),
])
def test_bad_gradients_leave_parameters_untouched(optimizer, grads, error, match):
    a, b = np.zeros(3), np.zeros((2, 2))
    opt = optimizer([a, b], lr=0.1)
    with pytest.raises(error, match=match):
        opt.step(grads)
    assert not a.any() and not b.any()
    assert all(not s for s in opt.state)


def test_gradient_aliasing_a_parameter(optimizer):
    a, b = np.zeros(3), np.zeros(3)
    opt = optimizer([a, b])
    with pytest.raises(ValueError, match=r"grads\[0\] shares memory with params\[0\]"):
        opt.step([a, np.ones(3)])
    with pytest.raises(ValueError, match=r"grads\[0\] shares memory with params\[1\]"):
        opt.step([b, np.ones(3)])


def test_gradient_overlapping_part_of_a_parameter(optimizer):
    buf = np.zeros(8)
    opt = optimizer([buf[:4]])
    with pytest.raises(ValueError, match="shares memory with params"):
        opt.step([buf[2:6]])
    opt.step([buf[4:]])  # the rest of the buffer is not a parameter


def test_dict_gradients_must_match_keys(optimizer):
    opt = optimizer({"w": np.zeros(2), "b": np.zeros(1)})
    with pytest.raises(ValueError, match=r"missing \['b'\], unexpected \['c'\]"):
        opt.step({"w": np.ones(2), "c": np.ones(1)})
    with pytest.raises(TypeError, match="grads must be a dict"):
        opt.step([np.ones(2), np.ones(1)])


def test_paramset_gradients(optimizer):
    ps = fastopt.ParamSet({"w": (2, 3)})
    opt = optimizer(ps)
    with pytest.raises(ValueError, match=r"grads has shape \(5,\) but ParamSet.data has shape \(6,\)"):
        opt.step(np.ones(5))
    with pytest.raises(ValueError, match="grads shares memory with ParamSet.data"):
        opt.step(ps.data)
    with pytest.raises(TypeError, match="grads must be a numpy.ndarray"):
        opt.step([np.ones(6)])
    ps.data.flags.writeable = False
    with pytest.raises(ValueError, match="ParamSet.data is read-only"):
        opt.step()


def test_checks_apply_inside_parameter_groups(optimizer):
    a = np.zeros(3)
    with pytest.raises(ValueError, match=r"param_groups\[1\]\.params\[0\] must be C-contiguous"):
        optimizer([{"params": [a]}, {"params": [np.zeros((4, 4))[:, ::2]]}])
    buf = np.zeros(5)
    b = buf[:2]
    opt = optimizer([{"params": [a]}, {"params": {"b": b}}])
    with pytest.raises(ValueError, match=r"param_groups\[1\]\.grads\['b'\] has shape"):
        opt.step([[np.ones(3)], {"b": np.ones(3)}])
    with pytest.raises(ValueError, match=r"param_groups\[0\]\.grads\[0\] shares memory with "
                                         r"param_groups\[1\]\.params\['b'\]"):
        opt.step([[buf[1:4]], {"b": np.ones(2)}])
    assert not a.any() and not buf.any()


def test_byte_span_matches_the_array_interface():
    from fastopt._validation import byte_span
    a = np.arange(7, dtype=np.float32)
    start = a.__array_interface__["data"][0]
    assert byte_span(a) == (start, start + 28)
    assert byte_span(a[2:5]) == (start + 8, start + 20)
    a.flags.writeable = False
    assert byte_span(a) == (start, start + 28)  # read-only arrays too
    assert byte_span(np.zeros((2, 3)).T)[1] - byte_span(np.zeros((2, 3)).T)[0] == 48  # F-contiguous
    with pytest.raises((ValueError, BufferError)):
        byte_span(np.zeros((4, 4))[:, ::2])


def test_huge_ints_are_value_errors_not_overflow_errors():
    """An int beyond float's range counts as infinite: a ValueError, never OverflowError."""
    import math

    from fastopt._validation import bounded_real
    from fastopt.nn.batchnorm import BatchNorm
    from fastopt.nn.clip import clip_grad_norm_
    from fastopt.optim import lr_scheduler as S

    huge = 10**400
    for call in (lambda: S.StepLR(0.1, 3)(huge),
                 lambda: S.StepLR(0.1, 3, gamma=huge),
                 lambda: clip_grad_norm_(np.ones(3), -huge),
                 lambda: clip_grad_norm_(np.ones(3), 1.0, norm_type=-huge),
                 lambda: BatchNorm(3, momentum=huge),
                 lambda: bounded_real("min_delta", huge, 0.0)):
        with pytest.raises((ValueError, TypeError)) as info:
            call()
        assert not isinstance(info.value, OverflowError)
    assert clip_grad_norm_(np.ones(3), huge) == math.sqrt(3.0)  # as max_norm=inf: no clipping


def test_schedules_take_numpy_bools_like_the_optimizers():
    from fastopt.optim import lr_scheduler as S

    S.OneCycleLR(0.1, 0.1, 10, three_phase=np.True_, cycle_momentum=np.False_)  # refused before
    S.OneCycleLR(0.1, 0.1, 10, three_phase=np.int64(1), cycle_momentum=False)


def test_batchnorm_num_features_of_the_wrong_type_is_a_type_error():
    from fastopt.nn.batchnorm import BatchNorm

    for bad in (3.0, "3", True, None):
        with pytest.raises(TypeError, match="num_features"):
            BatchNorm(bad)
    with pytest.raises(ValueError, match="num_features"):
        BatchNorm(-1)
    assert BatchNorm(np.int64(3)).num_features == 3


def test_hyperparameter_messages_name_betas_as_torch_does():
    with pytest.raises(ValueError, match=r"Invalid beta parameter at index 0: 1\.0 "):
        fastopt.Adam([np.zeros(3)], betas=(1.0, 0.9))


# --------------------------------------------------------------------------- bfloat16
def test_bfloat16_parameters_and_gradients_pass_the_layout_checks():
    from fastopt.optim._params import ParamLayout
    bf16 = np.dtype(ml_dtypes.bfloat16)
    w = np.zeros(3, bf16)
    layout = ParamLayout({"w": w})
    (grad,) = layout.gradients({"w": np.ones(3, bf16)})
    assert grad.dtype == bf16
    with pytest.raises(TypeError, match=r"grads\['w'\] has dtype float32 but params\['w'\] has dtype bfloat16"):
        layout.gradients({"w": np.ones(3, np.float32)})
    ps = fastopt.ParamSet({"a": 3}, dtype=bf16)
    layout = ParamLayout(ps)
    assert layout.gradients(None)[0].dtype == bf16
    with pytest.raises(TypeError, match="grads has dtype float32 but ParamSet.data has dtype bfloat16"):
        layout.gradients(np.zeros(3, np.float32))


def test_float_only_code_refuses_bfloat16_by_name():
    from fastopt.nn import batch_norm_forward, clip_grad_norm_
    bf16 = np.dtype(ml_dtypes.bfloat16)
    with pytest.raises(TypeError, match=r"grads\[0\] must have dtype float32 or float64, got bfloat16"):
        clip_grad_norm_([np.ones(3, bf16)], 1.0)
    with pytest.raises(TypeError, match="ParamSet.grad must have dtype float32 or float64, got bfloat16"):
        clip_grad_norm_(fastopt.ParamSet({"a": 3}, dtype=bf16), 1.0)
    with pytest.raises(TypeError, match="x must have dtype float32 or float64, got bfloat16"):
        batch_norm_forward(np.ones((4, 2), bf16), np.ones(2, np.float32), np.zeros(2, np.float32))
