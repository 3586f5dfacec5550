"""Every update rule against its NumPy reference: float32/float64, odd sizes, several thread counts.

The rules run through their optimizer classes (which own the state arrays)
and must agree with ``reference.py`` bit for bit, parameters and state
alike; agreeing for every thread count proves the results do not depend on
it.
"""
import numpy as np
import pytest
from conftest import SIZES, THREADS

import fastopt
import reference
from fastopt._update_rules import adam_step, nonfinite_count, sgd_step


def assert_bitwise_equal(actual, expected, what="array"):
    """Equal bits, so -0.0 != 0.0 and NaN payloads count."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
    uint = np.dtype(f"u{actual.dtype.itemsize}")
    np.testing.assert_array_equal(actual.view(uint), expected.view(uint), err_msg=what)


# Reference steps in the optimizers' state layout: (p, g, state, step, hyper) -> (p, state).
def _sgd(p, g, st, step, h):
    p, buf = reference.sgd(p, g, st.get("momentum_buffer"), **h)
    return p, ({} if buf is None else {"momentum_buffer": buf})


def _adagrad(p, g, st, step, h):
    start = st.get("sum", np.full_like(p, h["initial_accumulator_value"]))
    p, state_sum = reference.adagrad(p, g, start, step, **h)
    return p, {"sum": state_sum, "step": step}


def _rmsprop(p, g, st, step, h):
    zeros = np.zeros_like(p)
    p, sq, buf, ga = reference.rmsprop(p, g, st.get("square_avg", zeros), st.get("momentum_buffer", zeros),
                                       st.get("grad_avg", zeros), **h)
    new = {"square_avg": sq, "step": step}
    if h["momentum"] > 0:
        new["momentum_buffer"] = buf
    if h["centered"]:
        new["grad_avg"] = ga
    return p, new


def _adam(p, g, st, step, h):
    zeros = np.zeros_like(p)
    p, m, v, vmax = reference.adam(p, g, st.get("exp_avg", zeros), st.get("exp_avg_sq", zeros),
                                   st.get("max_exp_avg_sq", zeros), step, **h)
    new = {"exp_avg": m, "exp_avg_sq": v, "step": step}
    if h["amsgrad"]:
        new["max_exp_avg_sq"] = vmax
    return p, new


def _adamax(p, g, st, step, h):
    zeros = np.zeros_like(p)
    p, m, u = reference.adamax(p, g, st.get("exp_avg", zeros), st.get("exp_inf", zeros), step, **h)
    return p, {"exp_avg": m, "exp_inf": u, "step": step}


def _nadam(p, g, st, step, h):
    zeros = np.zeros_like(p)
    p, m, v, mu = reference.nadam(p, g, st.get("exp_avg", zeros), st.get("exp_avg_sq", zeros), step,
                                  st.get("mu_product", 1.0), **h)
    return p, {"exp_avg": m, "exp_avg_sq": v, "step": step, "mu_product": mu}


def _radam(p, g, st, step, h):
    zeros = np.zeros_like(p)
    p, m, v = reference.radam(p, g, st.get("exp_avg", zeros), st.get("exp_avg_sq", zeros), step, **h)
    return p, {"exp_avg": m, "exp_avg_sq": v, "step": step}


def _adadelta(p, g, st, step, h):
    zeros = np.zeros_like(p)
    p, sq, acc = reference.adadelta(p, g, st.get("square_avg", zeros), st.get("acc_delta", zeros), **h)
    return p, {"square_avg": sq, "acc_delta": acc, "step": step}


def _lion(p, g, st, step, h):
    p, m = reference.lion(p, g, st.get("exp_avg", np.zeros_like(p)), **h)
    return p, {"exp_avg": m, "step": step}


# (optimizer, reference step, configs covering every branch, steps to run)
RULES = {
    "SGD": (fastopt.SGD, _sgd, [
        dict(lr=0.05), dict(lr=0.05, momentum=0.9, weight_decay=0.01),
        dict(lr=0.01, momentum=0.9, nesterov=True, maximize=True), dict(lr=0.1, momentum=0.5, dampening=0.3),
    ], 3),
    "Adagrad": (fastopt.Adagrad, _adagrad, [
        dict(), dict(lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.5),
        dict(maximize=True, eps=1e-6),
    ], 3),
    "RMSprop": (fastopt.RMSprop, _rmsprop, [
        dict(), dict(centered=True), dict(momentum=0.9),
        dict(centered=True, momentum=0.5, weight_decay=0.01, maximize=True, alpha=0.3),
    ], 3),
    "Adam": (fastopt.Adam, _adam, [
        dict(), dict(amsgrad=True, weight_decay=0.05),
        dict(decoupled_weight_decay=True, weight_decay=0.1, maximize=True, lr=0.01),
        dict(lr=0.1, betas=(0.3, 0.9), eps=1e-6),  # beta1 < 0.5: torch.lerp's other branch
        dict(lr=0.02, betas=(0.0, 0.0), eps=0.0, amsgrad=True),
    ], 3),
    "AdamW": (fastopt.AdamW, _adam, [dict(), dict(amsgrad=True, lr=0.01, weight_decay=0.3)], 3),
    "Adamax": (fastopt.Adamax, _adamax, [dict(), dict(weight_decay=0.1, maximize=True), dict(betas=(0.2, 0.5))], 3),
    "NAdam": (fastopt.NAdam, _nadam, [
        dict(), dict(decoupled_weight_decay=True, weight_decay=0.1),
        dict(weight_decay=0.05, momentum_decay=0.1, maximize=True),
    ], 3),
    "RAdam": (fastopt.RAdam, _radam, [  # 7 steps: rho_t passes 5 at step 6, switching on the rectification
        dict(), dict(decoupled_weight_decay=True, weight_decay=0.1, betas=(0.8, 0.99)),
        dict(weight_decay=0.05, maximize=True),
    ], 7),
    "Adadelta": (fastopt.Adadelta, _adadelta, [dict(), dict(weight_decay=0.1, maximize=True, rho=0.5)], 3),
    "Lion": (fastopt.Lion, _lion, [dict(), dict(lr=0.01, weight_decay=0.1, maximize=True)], 3),
}

CASES = [pytest.param(name, config, id=f"{name}-{config}")
         for name, (_, _, configs, _) in RULES.items() for config in configs]


def run_and_compare(name, config, p0, grads, threads):
    cls, ref_step, _, _ = RULES[name]
    p = p0.copy()
    opt = cls([p], **config)
    hyper = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    ep, est = p0.copy(), {}
    for step, g in enumerate(grads, 1):
        with fastopt.threads(threads):
            opt.step([g])
        ep, est = ref_step(ep, g, est, step, hyper)
        assert_bitwise_equal(p, ep, f"param after step {step}")
        assert set(opt.state[0]) == set(est)
        for key, value in est.items():
            if isinstance(value, np.ndarray):
                assert_bitwise_equal(opt.state[0][key], value, f"{key} after step {step}")
            else:
                assert opt.state[0][key] == value, key
    return p


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("name, config", CASES)
def test_rule_matches_reference(name, config, dtype, n, threads, rng):
    p0 = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(RULES[name][3])]
    with np.errstate(all="ignore"):  # betas=(0, 0) with eps=0 may divide 0 by 0, in kernel and reference alike
        run_and_compare(name, config, p0, grads, threads)


@pytest.mark.parametrize("name", RULES)
@pytest.mark.parametrize("n", [3 * 2**16 + 5, 5000, 3073])
def test_results_do_not_depend_on_thread_count(name, n, dtype, rng):
    cls, _, configs, _ = RULES[name]
    p0 = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(3)]
    results = []
    for threads in (1, 2, 3, 4, 7):
        p = p0.copy()
        opt = cls([p], **configs[-1])
        with fastopt.threads(threads):
            for g in grads:
                opt.step([g])
        results.append((p, opt.state[0]))
    for p, state in results[1:]:
        assert_bitwise_equal(p, results[0][0])
        for key, value in state.items():
            if isinstance(value, np.ndarray):
                assert_bitwise_equal(value, results[0][1][key], key)


@pytest.mark.parametrize("name", RULES)
def test_nonfinite_gradients_propagate_like_the_formula(name, dtype):
    cls, ref_step, _, _ = RULES[name]
    g = np.array([np.nan, np.inf, -np.inf, 1.0], dtype=dtype)
    p = np.ones(4, dtype=dtype)
    opt = cls([p], lr=0.1)
    opt.step([g])
    hyper = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    with np.errstate(all="ignore"):
        expected, _ = ref_step(np.ones(4, dtype=dtype), g, {}, 1, hyper)
    assert_bitwise_equal(p, expected)
    assert np.isnan(p[0]) and np.isfinite(p[3])


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("threads", THREADS)
def test_nonfinite_count(dtype, n, threads, rng):
    x = rng.standard_normal(n).astype(dtype)
    bad = rng.choice(n, size=min(n, 5), replace=False) if n else []
    for k, i in enumerate(bad):
        x[i] = (np.nan, np.inf, -np.inf)[k % 3]
    assert nonfinite_count(x, threads) == len(bad) == (~np.isfinite(x)).sum()


def test_bindings_refuse_mismatched_lengths():
    a, b = np.zeros(4), np.zeros(5)
    sgd = fastopt.SGD([np.zeros(1)]).param_groups[0].kernel_hyper()
    with pytest.raises(ValueError, match="4 elements"):
        sgd_step(a, b, None, sgd, False)
    with pytest.raises(ValueError, match="4 elements"):
        sgd_step(a, a.copy(), b, sgd, False)
    adam = fastopt.Adam([np.zeros(1)]).param_groups[0].kernel_hyper()
    with pytest.raises(ValueError, match="4 elements"):
        adam_step(a, a.copy(), a.copy(), b, None, adam, 1)
    with pytest.raises(ValueError, match="beta1"):
        adam_step(a, a.copy(), a.copy(), a.copy(), None, {"lr": 0.1}, 1)
