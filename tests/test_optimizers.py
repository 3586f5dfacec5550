"""SGD and Adam through the public API: ParamSet, list, tuple and dict params."""
import numpy as np
import pytest
from test_kernels import assert_bitwise_equal

import fastopt
import reference


def make_params(rng, dtype):
    return {"W": rng.standard_normal((5, 3)).astype(dtype), "b": rng.standard_normal(3).astype(dtype),
            "s": np.array(0.5, dtype=dtype)}


def reference_adam_run(arrays, grad_seq, **hyper):
    """Reference Adam over several steps, array by array."""
    out = []
    for key, p in arrays.items():
        p, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
        for step, grads in enumerate(grad_seq, 1):
            p, m, v = reference.adam(p, grads[key], m, v, step, **hyper)
        out.append(p)
    return out


@pytest.mark.parametrize("structure", ["paramset", "list", "tuple", "dict"])
def test_adam_matches_reference_for_every_params_structure(structure, dtype, rng):
    init = make_params(rng, dtype)
    grad_seq = [{k: rng.standard_normal(a.shape).astype(dtype) for k, a in init.items()} for _ in range(5)]
    hyper = dict(lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.1)
    if structure == "paramset":
        params = fastopt.ParamSet(init)
        opt = fastopt.Adam(params, **hyper)
        for grads in grad_seq:
            for k, g in grads.items():
                params.grads[k] = g
            opt.step()
        got = [params[k] for k in init]
    else:
        arrays = {k: a.copy() for k, a in init.items()}
        params = arrays if structure == "dict" else {"list": list, "tuple": tuple}[structure](arrays.values())
        opt = fastopt.Adam(params, **hyper)
        for grads in grad_seq:
            opt.step(grads if structure == "dict" else list(grads.values()))
        got = list(arrays.values())
    for a, e in zip(got, reference_adam_run(init, grad_seq, **hyper)):
        assert_bitwise_equal(a, e)


def test_sgd_on_paramset_and_explicit_flat_grads(dtype, rng):
    ps = fastopt.ParamSet({"a": (4, 4), "b": 9}, dtype=dtype, align=True)
    ps.data[:] = rng.standard_normal(ps.size)
    start = ps.data.copy()
    g = rng.standard_normal(ps.size).astype(dtype)
    opt = fastopt.SGD(ps, lr=0.5, weight_decay=0.01, maximize=True)
    opt.step(g)
    assert_bitwise_equal(ps.data, reference.sgd(start, g, 0.5, 0.01, True))


def test_none_grad_skips_parameter_and_its_step_count(rng):
    a, b = np.ones(3), np.ones(3)
    opt = fastopt.Adam([a, b], lr=0.1)
    opt.step([np.ones(3), None])
    np.testing.assert_array_equal(b, 1.0)
    assert opt.state[0]["step"] == 1 and opt.state[1] == {}
    opt.step([np.ones(3), np.ones(3)])
    assert opt.state[0]["step"] == 2 and opt.state[1]["step"] == 1
    np.testing.assert_allclose(b, 0.9)  # a first Adam step moves by lr


def test_learning_rate_can_change_between_steps():
    w = np.zeros(2)
    opt = fastopt.SGD([w], lr=1.0)
    opt.step([np.ones(2)])
    opt.lr = 0.25
    opt.step([np.ones(2)])
    np.testing.assert_array_equal(w, -1.25)
    with pytest.raises(ValueError, match="learning rate"):
        opt.lr = -1


def test_adam_minimizes_a_quadratic(dtype):
    ps = fastopt.ParamSet({"x": np.array([3.0, -2.0, 1.0, 5.0])}, dtype=dtype)
    target = np.array([1.0, 2.0, 3.0, 4.0], dtype=dtype)
    opt = fastopt.Adam(ps, lr=0.05)
    for _ in range(2000):
        ps.grads["x"][:] = 2 * (ps["x"] - target)
        opt.step()
    np.testing.assert_allclose(ps["x"], target, atol=1e-3)


def test_zero_grad():
    ps = fastopt.ParamSet({"w": 3})
    ps.grad[:] = 7
    fastopt.SGD(ps).zero_grad()
    np.testing.assert_array_equal(ps.grad, 0)
    with pytest.raises(TypeError, match="ParamSet"):
        fastopt.SGD([np.zeros(2)]).zero_grad()


def test_defaults_and_repr_follow_torch():
    w = [np.zeros(1)]
    adam = fastopt.Adam(w)
    assert (adam.lr, adam.betas, adam.eps, adam.weight_decay, adam.maximize) == (1e-3, (0.9, 0.999), 1e-8, 0.0, False)
    assert repr(adam) == "Adam(lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.0, maximize=False)"
    sgd = fastopt.SGD(w)
    assert (sgd.lr, sgd.weight_decay, sgd.maximize) == (1e-3, 0.0, False)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(lr=-0.1), ValueError, "learning rate"),
    (dict(lr=float("nan")), ValueError, "learning rate"),
    (dict(lr="0.1"), TypeError, "real number"),
    (dict(betas=(1.0, 0.9)), ValueError, "index 0"),
    (dict(betas=(0.9, -0.1)), ValueError, "index 1"),
    (dict(betas=0.9), TypeError, "pair"),
    (dict(eps=-1e-8), ValueError, "epsilon"),
    (dict(weight_decay=-1), ValueError, "weight_decay"),
])
def test_adam_rejects_bad_hyperparameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        fastopt.Adam([np.zeros(2)], **kwargs)


@pytest.mark.filterwarnings("ignore:fastopt was built without OpenMP")
def test_step_uses_the_thread_setting(rng):
    n = 2**18 + 1
    results = []
    for threads in (1, 2):
        w = np.linspace(-1, 1, n)
        opt = fastopt.Adam([w], lr=0.1)
        with fastopt.threads(threads):
            for k in range(3):
                opt.step([np.sin(w * (k + 1))])
        results.append(w)
    assert_bitwise_equal(results[0], results[1])
