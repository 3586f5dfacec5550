"""Every update rule against its NumPy reference: float32/float64, odd sizes, several thread counts.

The rules run through their optimizer classes (which own the state arrays)
and must agree with ``reference.py`` bit for bit, parameters and state
alike; agreeing for every thread count proves the results do not depend on
it.
"""
import itertools

import numpy as np
import pytest
from conftest import SIZES, THREADS

import fastopt
import reference
from fastopt import _kernels
from fastopt._rules import RULES
from fastopt._update_rules import BoundStep, nonfinite_count


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


def _adopt(p, g, st, step, h):
    zeros = np.zeros_like(p)
    p, m, v = reference.adopt(p, g, st.get("exp_avg", zeros), st.get("exp_avg_sq", zeros), step, **h)
    return p, {"exp_avg": m, "exp_avg_sq": v, "step": step}


def _ademamix(p, g, st, step, h):
    zeros = np.zeros_like(p)
    p, m1, m2, v = reference.ademamix(p, g, st.get("exp_avg_fast", zeros), st.get("exp_avg_slow", zeros),
                                      st.get("exp_avg_sq", zeros), step, **h)
    return p, {"exp_avg_fast": m1, "exp_avg_slow": m2, "exp_avg_sq": v, "step": step}


def _schedule_free(rule):
    def step(p, g, st, step, h):
        averaging = [st.get("weight_sum", 0.0), st.get("lr_max", -1.0)]
        state = {"z": st.get("z", p.copy())}
        if rule is reference.adamw_schedule_free:
            state["exp_avg_sq"] = st.get("exp_avg_sq", np.zeros_like(p))
        p, *arrays = rule(p, g, *state.values(), step, averaging, **h)
        return p, {**dict(zip(state, arrays)), "step": step, "weight_sum": averaging[0], "lr_max": averaging[1]}
    return step


# Each optimizer class, by name: (class, reference step, configs covering every branch, steps to run)
OPTIMIZERS = {
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
    "ADOPT": (fastopt.ADOPT, _adopt, [  # 4 steps: the moment-only first step, then clamps at 1, 2**0.25, 3**0.25
        dict(), dict(lr=0.01, weight_decay=0.1, decouple=True, maximize=True),
        dict(weight_decay=0.05, clip=False, betas=(0.3, 0.9), eps=1e-3),
    ], 4),
    "AdEMAMix": (fastopt.AdEMAMix, _ademamix, [  # 4 steps: the warm-ups of 3 end after step 2
        dict(), dict(lr=0.01, weight_decay=0.1, maximize=True, alpha=5.0),
        dict(beta3_warmup=3, alpha_warmup=3, betas=(0.3, 0.9, 0.99)), dict(betas=(0.0, 0.5, 0.9), beta3_warmup=3),
    ], 4),
    "SGDScheduleFree": (fastopt.SGDScheduleFree, _schedule_free(reference.sgd_schedule_free), [  # warm-up ends
        dict(), dict(lr=0.1, momentum=0.3, weight_decay=0.1, warmup_steps=2, r=0.5, maximize=True),  # at step 2
        dict(lr=0.0), dict(lr=0.05, warmup_steps=5, weight_lr_power=1.0),  # lr 0: every weight 0, so ckp1 = 0
    ], 3),
    "AdamWScheduleFree": (fastopt.AdamWScheduleFree, _schedule_free(reference.adamw_schedule_free), [
        dict(), dict(lr=0.01, betas=(0.3, 0.9), weight_decay=0.1, warmup_steps=2, r=1.0, maximize=True),
        dict(lr=0.1, eps=1e-3, weight_lr_power=0.5, betas=(0.95, 0.5)),
    ], 3),
}

CASES = [pytest.param(name, config, id=f"{name}-{config}")
         for name, (_, _, configs, _) in OPTIMIZERS.items() for config in configs]


def run_and_compare(name, config, p0, grads, threads, compare=None):
    """Step ``cls([p])`` and the reference side by side; ``compare`` checks each array (default: same bits)."""
    compare = compare or assert_bitwise_equal
    cls, ref_step, _, _ = OPTIMIZERS[name]
    p = p0.copy()
    opt = cls([p], **config)
    hyper = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    ep, est = p0.copy(), {}
    for step, g in enumerate(grads, 1):
        with fastopt.threads(threads):
            opt.step([g])
        ep, est = ref_step(ep, g, est, step, hyper)
        compare(p, ep, f"param after step {step}")
        assert set(opt.state[0]) == set(est)
        for key, value in est.items():
            if isinstance(value, np.ndarray):
                compare(opt.state[0][key], value, f"{key} after step {step}")
            else:
                assert opt.state[0][key] == value, key
    return p


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("name, config", CASES)
def test_rule_matches_reference(name, config, dtype, n, threads, rng):
    p0 = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(OPTIMIZERS[name][3])]
    with np.errstate(all="ignore"):  # betas=(0, 0) with eps=0 may divide 0 by 0, in kernel and reference alike
        run_and_compare(name, config, p0, grads, threads)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("n", [3 * 2**16 + 5, 5000, 3073])
def test_results_do_not_depend_on_thread_count(name, n, dtype, rng):
    cls, _, configs, _ = OPTIMIZERS[name]
    p0 = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(3)]
    assert_same_on_any_thread_count(lambda p: cls([p], **configs[-1]), p0, grads, (1, 2, 3, 4, 7))


def assert_same_on_any_thread_count(make, p0, grads, thread_counts):
    """``make([copy of p0])`` stepped through ``grads`` on each thread count: the same parameter and state bits."""
    results = []
    for threads in thread_counts:
        p = p0.copy()
        opt = make(p)
        with fastopt.threads(threads):
            for g in grads:
                opt.step([g])
        results.append((p, opt.state[0]))
    for p, state in results[1:]:
        assert_bitwise_equal(p, results[0][0])
        for key, value in state.items():
            if isinstance(value, np.ndarray):
                assert_bitwise_equal(value, results[0][1][key], key)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_nonfinite_gradients_propagate_like_the_formula(name, dtype):
    cls, ref_step, _, _ = OPTIMIZERS[name]
    g = np.array([np.nan, np.inf, -np.inf, 1.0], dtype=dtype)
    p = np.ones(4, dtype=dtype)
    opt = cls([p], lr=0.1)
    hyper = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    expected, state = np.ones(4, dtype=dtype), {}
    for step in (1, 2):  # two steps: ADOPT's first only fills its second moment
        opt.step([g])
        with np.errstate(all="ignore"):
            expected, state = ref_step(expected, g, state, step, hyper)
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


def hyper(cls, **kwargs):
    return cls([np.zeros(1)], **kwargs).param_groups[0].kernel_hyper()


def test_binding_refuses_what_would_go_out_of_bounds():
    a, b = np.zeros(4), np.zeros(5)
    with pytest.raises(ValueError, match="grad has 5 elements, 4 expected"):
        BoundStep("sgd", a, b, (None,), hyper(fastopt.SGD))
    with pytest.raises(ValueError, match="max_exp_avg_sq has 5 elements"):
        BoundStep("adam", a, a.copy(), (a.copy(), a.copy(), b), hyper(fastopt.Adam))
    with pytest.raises(ValueError, match="float64"):
        BoundStep("adam", a, a.astype(np.float32), (a.copy(), a.copy(), None), hyper(fastopt.Adam))
    with pytest.raises(ValueError, match="writeable"):
        ro = a.copy()
        ro.flags.writeable = False
        BoundStep("lion", ro, a.copy(), (a.copy(),), hyper(fastopt.Lion))
    with pytest.raises(ValueError, match="beta1"):
        BoundStep("adam", a, a.copy(), (a.copy(), a.copy(), None), {"lr": 0.1})
    with pytest.raises(ValueError, match="takes state arrays"):
        BoundStep("adam", a, a.copy(), (a.copy(),), hyper(fastopt.Adam))
    with pytest.raises(ValueError, match="unknown rule"):
        BoundStep("adamz", a, a.copy(), (), {})
    assert set(RULES) == {cls.rule for cls, _, _, _ in OPTIMIZERS.values()}


@pytest.mark.parametrize("rule, cls, kwargs, missing", [
    ("sgd", fastopt.SGD, dict(momentum=0.9), "momentum_buffer"),
    ("adam", fastopt.Adam, dict(amsgrad=True), "max_exp_avg_sq"),
    ("rmsprop", fastopt.RMSprop, dict(centered=True), "grad_avg"),
    ("rmsprop", fastopt.RMSprop, dict(momentum=0.5), "momentum_buffer"),
])
def test_binding_refuses_missing_state_arrays(rule, cls, kwargs, missing):
    a = np.zeros(4)
    names = RULES[rule].state_names
    state = tuple(None if name == missing else a.copy() for name in names)
    with pytest.raises(ValueError, match=f"needs a {missing} array"):
        BoundStep(rule, a, a.copy(), state, hyper(cls, **kwargs))
    bound = BoundStep(rule, a, a.copy(), state, hyper(cls))
    with pytest.raises(ValueError, match=f"needs a {missing} array"):
        bound.set_hyper(hyper(cls, **kwargs))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_instruction_set_builds_agree_bit_for_bit(name, dtype, rng):
    builds = _kernels.available()
    if len(builds) < 2:
        pytest.skip("only the baseline build of the kernels exists here")
    cls, _, configs, _ = OPTIMIZERS[name]
    n = 3 * 2**16 + 5  # enough chunks for 1, 2 and 3 threads to cut it differently
    p0, g = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    for config in configs:  # each specialized copy of the loop
        group = cls([np.zeros(1, dtype)], **config).param_groups[0]
        needed = _kernels.needed(cls.rule, group.kernel_hyper())
        outputs = []
        for build, threads in itertools.product(builds, (1, 2, 3)):
            p = p0.copy()
            state = tuple(np.full_like(p, 0.25) if use else None for use in needed)
            bound = _kernels.load(build).BoundStep(cls.rule, p, g, state, group.kernel_hyper())
            running = [0.5] * len(RULES[cls.rule].running)  # NAdam's mu_product, schedule-free's averaging
            bound.run(3, running, False, threads)
            outputs.append((p, state, running))
        p_a, s_a, running_a = outputs[0]
        for p_b, s_b, running_b in outputs[1:]:
            assert_bitwise_equal(p_a, p_b)
            for a, b in zip(s_a, s_b):
                if a is not None:
                    assert_bitwise_equal(a, b)
            assert running_a == running_b


def test_kernel_build_choice(monkeypatch):
    import subprocess
    import sys

    builds = _kernels.available()
    for choice in ("auto", *builds):
        out = subprocess.run([sys.executable, "-c", "import fastopt._kernels as k; print(k.NAME)"],
                             env={**__import__("os").environ, "FASTOPT_KERNELS": choice},
                             capture_output=True, text=True, cwd="/")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == (builds[0] if choice == "auto" else choice)
    bad = subprocess.run([sys.executable, "-c", "import fastopt"], env={**__import__("os").environ,
                         "FASTOPT_KERNELS": "sse9"}, capture_output=True, text=True, cwd="/")
    assert bad.returncode != 0 and "FASTOPT_KERNELS must be" in bad.stderr
