"""The optimizers' bookkeeping: params structures, parameter groups, lr, skipping, state dicts."""
import numpy as np
import pytest
from test_kernels import OPTIMIZERS, assert_bitwise_equal

import fastopt
import reference

ALL = [cls for cls, _, _, _ in OPTIMIZERS.values()]


def make_params(rng, dtype):
    return {"W": rng.standard_normal((5, 3)).astype(dtype), "b": rng.standard_normal(3).astype(dtype),
            "s": np.array(0.5, dtype=dtype)}


def reference_adam_run(arrays, grad_seq, **hyper):
    """Reference Adam over several steps, array by array."""
    out = []
    for key, p in arrays.items():
        p, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
        for step, grads in enumerate(grad_seq, 1):
            p, m, v, _ = reference.adam(p, grads[key], m, v, None, step, **hyper)
        out.append(p)
    return out


@pytest.mark.parametrize("structure", ["paramset", "aligned paramset", "list", "tuple", "dict"])
def test_every_params_structure_gives_the_same_updates(structure, dtype, rng):
    init = make_params(rng, dtype)
    grad_seq = [{k: rng.standard_normal(a.shape).astype(dtype) for k, a in init.items()} for _ in range(5)]
    hyper = dict(lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.1)
    if "paramset" in structure:
        params = fastopt.ParamSet(init, align=structure.startswith("aligned"))
        opt = fastopt.Adam(params, **hyper)
        for grads in grad_seq:
            for k, g in grads.items():
                params.grads[k] = g
            assert opt.step() is True
        got = [params[k] for k in init]
    else:
        arrays = {k: a.copy() for k, a in init.items()}
        params = arrays if structure == "dict" else {"list": list, "tuple": tuple}[structure](arrays.values())
        opt = fastopt.Adam(params, **hyper)
        for grads in grad_seq:
            opt.step(grads if structure == "dict" else list(grads.values()))
        got = list(arrays.values())
    for a, e in zip(got, reference_adam_run(init, grad_seq, amsgrad=False, **hyper)):
        assert_bitwise_equal(a, e)


def test_explicit_flat_grads_for_a_paramset(dtype, rng):
    ps = fastopt.ParamSet({"a": (4, 4), "b": 9}, dtype=dtype, align=True)
    ps.data[:] = rng.standard_normal(ps.size)
    start = ps.data.copy()
    g = rng.standard_normal(ps.size).astype(dtype)
    opt = fastopt.SGD(ps, lr=0.5, weight_decay=0.01, maximize=True)
    opt.step(g)
    assert_bitwise_equal(ps.data, reference.sgd(start, g, None, lr=0.5, weight_decay=0.01, maximize=True)[0])


def test_parameter_groups_on_arrays(rng):
    w, b = rng.standard_normal(4), rng.standard_normal(2)
    w0, b0 = w.copy(), b.copy()
    opt = fastopt.SGD([{"params": [w]}, {"params": {"bias": b}, "lr": 0.5, "weight_decay": 0.0}],
                      lr=0.1, weight_decay=0.01)
    gw, gb = np.ones(4), np.ones(2)
    opt.step([[gw], {"bias": gb}])
    assert_bitwise_equal(w, reference.sgd(w0, gw, None, lr=0.1, weight_decay=0.01)[0])
    assert_bitwise_equal(b, reference.sgd(b0, gb, None, lr=0.5)[0])
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[0]["params"] == [0] and opt.param_groups[1]["params"] == [1]
    with pytest.raises(TypeError, match="one entry per parameter group"):
        opt.step([[gw]])


def test_parameter_groups_on_a_paramset_use_one_slot_per_contiguous_run(rng):
    ps = fastopt.ParamSet({"W1": (3, 3), "W2": (3, 2), "b1": 3, "b2": 2})
    ps.data[:] = rng.standard_normal(ps.size)
    ps.grad[:] = rng.standard_normal(ps.size)
    d0, g = ps.data.copy(), ps.grad.copy()
    decay, no_decay = ps.select(["W2", "W1"]), ps.select(["b1", "b2"])
    assert decay.names == ("W1", "W2") and [r for r, _ in decay.runs] == [slice(0, 15)]
    opt = fastopt.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=0.01)
    assert len(opt.state) == 2  # two slots: one kernel call per group
    opt.step()
    for names, wd in (((0, 15), 0.01), ((15, 20), 0.0)):
        s = slice(*names)
        expected = reference.adam(d0[s], g[s], np.zeros(5 if wd == 0 else 15), np.zeros(5 if wd == 0 else 15),
                                  None, 1, lr=0.01, weight_decay=wd, decoupled_weight_decay=True)[0]
        assert_bitwise_equal(ps.data[s], expected)


def test_selection_split_by_an_unselected_tensor_makes_two_runs():
    ps = fastopt.ParamSet({"a": 2, "b": 3, "c": 4})
    sel = ps.select(["a", "c"])
    assert [(r, n) for r, n in sel.runs] == [(slice(0, 2), ("a",)), (slice(5, 9), ("c",))]
    opt = fastopt.SGD(sel, lr=1.0)
    ps.grad[:] = 1
    opt.step()
    np.testing.assert_array_equal(ps.data, [-1, -1, 0, 0, 0, -1, -1, -1, -1])
    with pytest.raises(KeyError, match="no tensor 'z'"):
        ps.select(["z"])
    with pytest.raises(ValueError, match="twice"):
        ps.select(["a", "a"])
    with pytest.raises(ValueError, match="at least one"):
        ps.select([])


def test_a_parameter_in_two_groups_is_refused():
    ps = fastopt.ParamSet({"a": 2, "b": 3})
    with pytest.raises(ValueError, match="share memory"):
        fastopt.Adam([{"params": ps}, {"params": ps.select(["b"])}])
    w = np.zeros(3)
    with pytest.raises(ValueError, match="share memory"):
        fastopt.Adam([{"params": [w]}, {"params": [w]}])


def test_group_errors():
    with pytest.raises(ValueError, match="no 'params'"):
        fastopt.SGD([{"lr": 0.1}])
    with pytest.raises(ValueError, match=r"sets \['betas'\], which SGD does not take"):
        fastopt.SGD([{"params": [np.zeros(2)], "betas": (0.9, 0.9)}])
    with pytest.raises(TypeError, match="mixes"):
        fastopt.SGD([{"params": [np.zeros(2)]}, np.zeros(2)])
    with pytest.raises(ValueError, match="learning rate"):
        fastopt.SGD([{"params": [np.zeros(2)], "lr": -1.0}])


def test_param_groups_validate_changes():
    opt = fastopt.Adam([np.zeros(2)])
    group = opt.param_groups[0]
    group["lr"] = 0.5
    assert opt.lr == 0.5
    group["initial_lr"] = 0.5  # schedulers may store their own keys
    with pytest.raises(ValueError, match="beta parameter at index 1"):
        group["betas"] = (0.9, 1.0)
    with pytest.raises(TypeError, match="True or False"):
        group.update(amsgrad="yes")
    with pytest.raises(TypeError, match="fixed"):
        group["params"] = []
    assert group["betas"] == (0.9, 0.999) and group["amsgrad"] is False


def test_learning_rate_property():
    w = np.zeros(2)
    opt = fastopt.SGD([w], lr=1.0)
    opt.step([np.ones(2)])
    opt.lr = 0.25
    opt.step([np.ones(2)])
    np.testing.assert_array_equal(w, -1.25)
    with pytest.raises(ValueError, match="learning rate"):
        opt.lr = -1
    grouped = fastopt.SGD([{"params": [np.zeros(1)]}, {"params": [np.zeros(1)], "lr": 0.1}], lr=1.0)
    with pytest.raises(ValueError, match="different learning rates"):
        grouped.lr
    grouped.lr = 0.3
    assert [g["lr"] for g in grouped.param_groups] == [0.3, 0.3]


def test_none_grad_skips_parameter_and_its_step_count():
    a, b = np.ones(3), np.ones(3)
    opt = fastopt.Adam([a, b], lr=0.1)
    opt.step([np.ones(3), None])
    np.testing.assert_array_equal(b, 1.0)
    assert opt.state[0]["step"] == 1 and opt.state[1] == {}
    opt.step([np.ones(3), np.ones(3)])
    assert opt.state[0]["step"] == 2 and opt.state[1]["step"] == 1
    np.testing.assert_allclose(b, 0.9)  # a first Adam step moves by lr


@pytest.mark.parametrize("cls", ALL)
def test_skip_nonfinite_leaves_everything_untouched(cls, rng):
    ps = fastopt.ParamSet({"w": rng.standard_normal(50), "b": rng.standard_normal(3)})
    opt = cls(ps, lr=0.01, skip_nonfinite=True)
    ps.grad[:] = rng.standard_normal(ps.size)
    assert opt.step() is True
    before_data, before_state = ps.data.copy(), opt.state_dict()
    for bad in (np.nan, np.inf, -np.inf):
        ps.grad[7] = bad
        assert opt.step() is False
        assert_bitwise_equal(ps.data, before_data)
        after = opt.state_dict()
        assert after["state"].keys() == before_state["state"].keys()
        for slot, state in before_state["state"].items():
            for key, value in state.items():
                np.testing.assert_array_equal(after["state"][slot][key], value)
    assert opt.skipped_steps == 3
    ps.grad[7] = 0.0
    assert opt.step() is True and opt.skipped_steps == 3


def test_without_skip_nonfinite_nan_propagates():
    w = np.ones(2)
    opt = fastopt.Adam([w])
    assert opt.step([np.array([np.nan, 1.0])]) is True
    assert np.isnan(w[0]) and np.isfinite(w[1])


def test_zero_grad():
    ps = fastopt.ParamSet({"w": 3, "b": 2})
    ps.grad[:] = 7
    fastopt.SGD(ps.select(["b"])).zero_grad()
    np.testing.assert_array_equal(ps.grad, [7, 7, 7, 0, 0])
    fastopt.SGD(ps).zero_grad()
    np.testing.assert_array_equal(ps.grad, 0)
    with pytest.raises(TypeError, match="ParamSet"):
        fastopt.SGD([np.zeros(2)]).zero_grad()


# Each optimizer's defaults, as torch.optim's (or, for a rule torch lacks, its paper's or its package's).
TORCH_DEFAULTS = {
    fastopt.SGD: dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False),
    fastopt.Adagrad: dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                          maximize=False),
    fastopt.RMSprop: dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                          maximize=False),
    fastopt.Adam: dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
                       decoupled_weight_decay=False),
    fastopt.AdamW: dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False,
                        decoupled_weight_decay=True),
    fastopt.Adamax: dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False),
    fastopt.NAdam: dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                        decoupled_weight_decay=False, maximize=False),
    fastopt.RAdam: dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False,
                        maximize=False),
    fastopt.Adadelta: dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False),
    fastopt.Lion: dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False),
    fastopt.ADOPT: dict(lr=1e-3, betas=(0.9, 0.9999), eps=1e-6, weight_decay=0.0, decouple=False, clip=True,
                        maximize=False),
    fastopt.AdEMAMix: dict(lr=1e-3, betas=(0.9, 0.999, 0.9999), alpha=2.0, beta3_warmup=0, alpha_warmup=0,
                           eps=1e-8, weight_decay=0.0, maximize=False),
    fastopt.SGDScheduleFree: dict(lr=1.0, momentum=0.9, weight_decay=0.0, warmup_steps=0, r=0.0, weight_lr_power=2.0,
                                  maximize=False),  # the schedulefree package's, as the next
    fastopt.AdamWScheduleFree: dict(lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, warmup_steps=0, r=0.0,
                                    weight_lr_power=2.0, maximize=False),
}


@pytest.mark.parametrize("cls", ALL)
def test_defaults_follow_torch(cls):
    opt = cls([np.zeros(1)])
    assert dict(opt.defaults) == TORCH_DEFAULTS[cls]
    assert {k: v for k, v in opt.param_groups[0].items() if k != "params"} == TORCH_DEFAULTS[cls]
    text = repr(opt)
    assert text.startswith(f"{cls.__name__} (\nParameter Group 0\n") and f"    lr: {opt.lr}" in text


@pytest.mark.parametrize("cls, kwargs, error, match", [
    (fastopt.Adam, dict(lr=-0.1), ValueError, "Invalid learning rate"),
    (fastopt.Adam, dict(lr=float("nan")), ValueError, "learning rate"),
    (fastopt.Adam, dict(lr="0.1"), TypeError, "real number"),
    (fastopt.Adam, dict(betas=(1.0, 0.9)), ValueError, "beta parameter at index 0"),
    (fastopt.Adam, dict(betas=(0.9, -0.1)), ValueError, "beta parameter at index 1"),
    (fastopt.Adam, dict(betas=0.9), TypeError, "pair"),
    (fastopt.Adam, dict(eps=-1e-8), ValueError, "Invalid epsilon value"),
    (fastopt.Adam, dict(amsgrad="no"), TypeError, "True or False"),
    (fastopt.AdamW, dict(weight_decay=-1), ValueError, "weight_decay"),
    (fastopt.SGD, dict(momentum=-0.1), ValueError, "momentum"),
    (fastopt.SGD, dict(nesterov=True), ValueError, "Nesterov momentum requires a momentum"),
    (fastopt.SGD, dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError, "zero dampening"),
    (fastopt.Adagrad, dict(lr_decay=-1), ValueError, "lr_decay"),
    (fastopt.Adagrad, dict(initial_accumulator_value=-1), ValueError, "initial_accumulator_value"),
    (fastopt.RMSprop, dict(alpha=-0.5), ValueError, "alpha"),
    (fastopt.NAdam, dict(momentum_decay=-1), ValueError, "momentum_decay"),
    (fastopt.Adadelta, dict(rho=1.5), ValueError, "rho"),
    (fastopt.Lion, dict(betas=(0.9, 1.0)), ValueError, "index 1"),
    (fastopt.ADOPT, dict(eps=-1.0), ValueError, "Invalid epsilon value"),
    (fastopt.ADOPT, dict(clip="yes"), TypeError, "True or False"),
    (fastopt.AdEMAMix, dict(betas=(0.9, 0.999)), TypeError, "sequence of 3 floats"),
    (fastopt.AdEMAMix, dict(betas=(0.9, 0.999, 1.0)), ValueError, "beta parameter at index 2"),
    (fastopt.AdEMAMix, dict(alpha_warmup=2.5), TypeError, "None or an integer"),
    (fastopt.AdEMAMix, dict(beta3_warmup=-1), ValueError, "beta3_warmup"),
    (fastopt.AdEMAMix, dict(alpha=-1.0), ValueError, "alpha"),
    (fastopt.Adam, dict(skip_nonfinite="yes"), TypeError, "skip_nonfinite"),
])
def test_bad_hyperparameters(cls, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls([np.zeros(2)], **kwargs)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_dict_round_trip_resumes_bit_exactly(name, dtype, rng):
    cls, _, configs, _ = OPTIMIZERS[name]
    config = configs[-1]
    init = rng.standard_normal(64).astype(dtype)
    grads = [rng.standard_normal(64).astype(dtype) for _ in range(8)]

    straight = init.copy()
    opt = cls([straight], **config)
    for g in grads:
        opt.step([g])

    first = init.copy()
    opt1 = cls([first], **config)
    for g in grads[:4]:
        opt1.step([g])
    snapshot, params_at_4 = opt1.state_dict(), first.copy()
    opt1.step([grads[4]])  # the snapshot is a copy: later steps do not change it
    resumed = params_at_4.copy()
    opt2 = cls([resumed], lr=0.123)
    opt2.load_state_dict(snapshot)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for g in grads[4:]:
        opt2.step([g])
    assert_bitwise_equal(resumed, straight)


def test_load_state_dict_checks_everything_first():
    w = np.zeros(4)
    opt = fastopt.Adam([w])
    opt.step([np.ones(4)])
    good = opt.state_dict()
    other = fastopt.Adam([np.zeros(4)], lr=0.5)
    bad_shape = {"state": {0: {**good["state"][0], "exp_avg": np.zeros(5)}}, "param_groups": good["param_groups"]}
    bad_dtype = {"state": {0: {**good["state"][0], "exp_avg": np.zeros(4, np.float32)}},
                 "param_groups": good["param_groups"]}
    bad_key = {"state": {0: {**good["state"][0], "velocity": np.zeros(4)}}, "param_groups": good["param_groups"]}
    bad_slot = {"state": {3: good["state"][0]}, "param_groups": good["param_groups"]}
    bad_groups = {"state": {}, "param_groups": good["param_groups"] * 2}
    bad_hyper = {"state": {}, "param_groups": [{**good["param_groups"][0], "lr": -1.0}]}
    for sd, match in ((bad_shape, "exp_avg"), (bad_dtype, "float32"), (bad_key, "velocity"),
                      (bad_slot, "slot 3"), (bad_groups, "2 parameter groups"), (bad_hyper, "learning rate")):
        with pytest.raises(ValueError, match=match):
            other.load_state_dict(sd)
        assert other.lr == 0.5 and other.state == [{}]
    other.load_state_dict(good)
    assert other.lr == 1e-3 and other.state[0]["step"] == 1


def test_each_slot_records_its_binding():
    from fastopt.optim._stepping import SlotBinding
    w, g = np.zeros(4), np.ones(4)
    opt = fastopt.Adam([w])
    assert opt._bound == [None]
    opt.step([g])
    bound = opt._bound[0]
    assert isinstance(bound, SlotBinding)
    assert bound.grad is g and bound.version == opt.param_groups[0].version
    assert [name for name, _ in bound.arrays] == ["exp_avg", "exp_avg_sq"]  # no max_exp_avg_sq without amsgrad
    assert all(array is opt.state[0][name] for name, array in bound.arrays)
    assert bound.holds(opt.state[0])
    with pytest.raises(AttributeError):
        bound.grad = g.copy()
    opt.param_groups[0]["lr"] = 0.5  # new hyperparameters: the same kernel and arrays, a new record
    opt.step([g])
    assert opt._bound[0] is not bound and opt._bound[0].kernel is bound.kernel
    assert opt._bound[0].arrays == bound.arrays
    opt.state[0]["exp_avg"] = opt.state[0]["exp_avg"].copy()  # a replaced array: bound afresh
    assert not opt._bound[0].holds(opt.state[0])
    opt.step([g])
    assert opt._bound[0].kernel is not bound.kernel and opt._bound[0].arrays[0][1] is opt.state[0]["exp_avg"]
