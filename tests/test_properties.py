"""Property-based tests (hypothesis) over the optimizers' inputs.

* any valid hyperparameters, sizes, dtypes and thread counts: every rule
  matches its NumPy reference (``reference.py``) bit for bit;
* any value for a hyperparameter: accepted exactly when it is valid, and
  otherwise refused with a TypeError or ValueError;
* bad gradients: refused with a TypeError or ValueError, changing nothing;
* a state_dict changed at random: refused with a TypeError or ValueError
  leaving the optimizer as it was, or taken whole, after which a step is
  applied or refused whole.

Examples are derandomized, so every run (and CI) checks the same cases.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays as arrays_of
from test_checkpoint import assert_same_state_dict
from test_kernels import OPTIMIZERS, run_and_compare

import fastopt
from fastopt._validation import any_real, beta_triple, betas, flag, nonnegative, unit_interval, warmup_steps

PROPERTY = settings(derandomize=True, deadline=None, database=None, max_examples=150,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NAMES = sorted(OPTIMIZERS)
DTYPES = [np.float32, np.float64]


def _kind(validator):
    return {id(nonnegative): "nonnegative", id(any_real): "real", id(unit_interval): "unit",
            id(flag): "flag", id(betas): "betas", id(beta_triple): "betas3", id(warmup_steps): "steps"}[id(validator)]


def _valid_value(kind):
    """Values in a validator's domain, kept where the updates stay mostly finite."""
    unit_open = st.floats(0.0, 1.0, exclude_max=True)
    return {
        "nonnegative": st.one_of(st.floats(0.0, 2.0), st.integers(0, 3), st.sampled_from([0.0, 1e-300, 5e-324])),
        "real": st.floats(-2.0, 2.0),
        "unit": st.floats(0.0, 1.0),
        "flag": st.sampled_from([True, False, 0, 1, np.True_, np.False_]),
        "betas": st.tuples(unit_open, unit_open) | st.lists(unit_open, min_size=2, max_size=2),
        "betas3": st.tuples(unit_open, unit_open, unit_open) | st.lists(unit_open, min_size=3, max_size=3),
        "steps": st.none() | st.integers(0, 6) | st.sampled_from([np.int64(2)]),
    }[kind]


@st.composite
def configs(draw, name):
    cls = OPTIMIZERS[name][0]
    config = {key: draw(_valid_value(_kind(validator))) for key, validator in cls.validators.items()
              if not (cls is fastopt.AdamW and key == "decoupled_weight_decay")}
    if name == "SGD" and config["nesterov"]:
        config["momentum"] = draw(st.floats(0.01, 1.0))
        config["dampening"] = 0.0
    if name in INTERPOLATION:
        beta = draw(st.floats(0.01, 0.99))
        config[INTERPOLATION[name]] = beta if name == "SGDScheduleFree" else (beta, list(config["betas"])[1])
    return config


# Schedule-free's interpolation coefficient, which must lie in (0, 1) (eval() divides by it): SGD's momentum,
# AdamW's betas[0].
INTERPOLATION = {"SGDScheduleFree": "momentum", "AdamWScheduleFree": "betas"}


def _interpolates(name, key, value):
    """False for a schedule-free interpolation coefficient outside (0, 1) (``value`` valid for its kind)."""
    if INTERPOLATION.get(name) != key:
        return True
    beta = float(value if key == "momentum" else list(value)[0])
    return 0 < beta < 1


def _same_bits_or_both_nan(actual, expected, what):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
    both_nan = np.isnan(actual) & np.isnan(expected)
    uint = np.dtype(f"u{actual.dtype.itemsize}")
    np.testing.assert_array_equal(np.where(both_nan, 0, actual.view(uint)),
                                  np.where(both_nan, 0, expected.view(uint)), err_msg=what)


@PROPERTY
@given(data=st.data(), name=st.sampled_from(NAMES), dtype=st.sampled_from(DTYPES),
       n=st.integers(0, 40) | st.sampled_from([1023, 1025, 4097]), threads=st.integers(1, 3),
       steps=st.integers(1, 4))
def test_any_valid_configuration_matches_the_reference(data, name, dtype, n, threads, steps):
    config = data.draw(configs(name), label="config")
    width = 32 if dtype == np.float32 else 64
    values = st.floats(-1e3, 1e3, width=width, allow_subnormal=True)
    arrays = arrays_of(dtype, n, elements=values)
    p0 = data.draw(arrays, label="param")
    grads = [data.draw(arrays, label=f"grad {k}") for k in range(steps)]
    with np.errstate(all="ignore"):
        run_and_compare(name, config, p0, grads, threads, compare=_same_bits_or_both_nan)


# ------------------------------------------------------------------ any value for a hyperparameter
ANYTHING = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70),
    st.sampled_from([10**400, -10**400, True, False, np.True_, None, "0.1", b"1", 1j, np.complex128(0.5),
                     [0.9, 0.99], (0.9,), (0.9, 0.99, 0.9), (0.9, "0.99"), (0.9, np.nan), np.array(0.5),
                     np.array([0.5, 0.5]), np.float32(0.25), np.float64(-0.5), np.int64(2), np.uint8(1),
                     np.longdouble(1e4000), {"lr": 1}, object()]),
    st.tuples(st.floats(allow_nan=True), st.floats(allow_nan=True)),
)


def _is_valid(kind, value):
    """The documented domain of each kind of hyperparameter, written independently of the validators."""
    if kind == "flag":  # bools, and the ints 0 and 1
        return isinstance(value, (bool, np.bool_)) or (isinstance(value, int) and value in (0, 1))
    if kind in ("betas", "betas3"):  # any pair (triple) of numbers in [0, 1)
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            return False
        try:
            items = list(value)
        except TypeError:  # iterable in name only: a 0-d NumPy array
            return False
        return len(items) == (2 if kind == "betas" else 3) and all(_is_valid("unit_open", b) for b in items)
    if kind == "steps":  # None, or a whole number (a Python or NumPy integer, not a bool; a whole float) in [0, 2**63)
        if value is None:
            return True
        if isinstance(value, (bool, np.bool_)):
            return False
        if isinstance(value, (float, np.floating)):
            return bool(np.isfinite(value)) and value == int(value) and 0 <= value < 2**63
        return isinstance(value, (int, np.integer)) and 0 <= value < 2**63
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    try:
        with np.errstate(over="ignore"):
            number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        return False
    return {"nonnegative": number >= 0, "real": True, "unit": 0 <= number <= 1,
            "unit_open": 0 <= number < 1}[kind]


@settings(PROPERTY, max_examples=500)
@given(name=st.sampled_from(NAMES), data=st.data(), value=ANYTHING)
def test_a_hyperparameter_is_accepted_exactly_when_valid(name, data, value):
    cls = OPTIMIZERS[name][0]
    key = data.draw(st.sampled_from(sorted(cls.validators)), label="key")
    assume(not (cls is fastopt.AdamW and key == "decoupled_weight_decay"))
    assume(key != "nesterov")  # valid or not also depends on momentum and dampening
    valid = _is_valid(_kind(cls.validators[key]), value) and _interpolates(name, key, value)
    w = np.zeros(3)
    try:
        opt = cls([w], **{key: value})
    except (TypeError, ValueError):
        assert not valid, f"{key}={value!r} refused"
    else:
        assert valid, f"{key}={value!r} accepted"
        assert opt.step([np.ones(3)])
    opt = cls([w])
    before = dict(opt.param_groups[0])
    try:
        opt.param_groups[0][key] = value
    except (TypeError, ValueError):
        assert not valid and opt.param_groups[0] == before
    else:
        assert valid


# ------------------------------------------------------------------ bad gradients
def _bad_gradient(kind, p):
    n = p.size
    return {
        "float16": lambda: np.ones(n, np.float16),
        "other float": lambda: np.ones(n, np.float32 if p.dtype == np.float64 else np.float64),
        "int": lambda: np.ones(n, np.int64),
        "complex": lambda: np.ones(n, np.complex128),
        "object": lambda: np.ones(n, dtype=object),
        "short": lambda: np.ones(n - 1, p.dtype),
        "long": lambda: np.ones(n + 1, p.dtype),
        "2-D": lambda: np.ones((n, 1), p.dtype),
        "strided": lambda: np.ones(2 * n, p.dtype)[::2],
        "the param": lambda: p,
        "a view of the param": lambda: p[:],
        "list": lambda: [1.0] * n,
        "scalar": lambda: 1.0,
        "string": lambda: "grad",
    }[kind]()


@PROPERTY
@given(name=st.sampled_from(NAMES), dtype=st.sampled_from(DTYPES), n=st.integers(2, 9),
       kind=st.sampled_from(["float16", "other float", "int", "complex", "object", "short", "long", "2-D",
                             "strided", "the param", "a view of the param", "list", "scalar", "string"]),
       position=st.integers(0, 1), warm=st.booleans())
def test_a_bad_gradient_is_refused_and_changes_nothing(name, dtype, n, kind, position, warm):
    cls = OPTIMIZERS[name][0]
    params = [np.linspace(-1, 1, n).astype(dtype), np.linspace(2, 3, n).astype(dtype)]
    opt = cls(params, lr=0.1)
    good = [np.full(n, 0.5, dtype), np.full(n, -0.5, dtype)]
    if warm:
        opt.step(good)
    before_params = [p.copy() for p in params]
    before_state = opt.state_dict()
    grads = list(good)
    grads[position] = _bad_gradient(kind, params[position])
    with pytest.raises((TypeError, ValueError)):
        opt.step(grads)
    for p, q in zip(params, before_params):
        np.testing.assert_array_equal(p, q)
    assert_same_state_dict(opt.state_dict(), before_state)
    assert opt.step(good)


# ------------------------------------------------------------------ state_dicts changed at random
MUTATIONS = ["drop key", "unknown key", "array dtype", "array shape", "array list", "scalar", "slot key",
             "group value", "group params", "drop group", "skipped_steps", "drop slot"]
ODD_VALUES = st.one_of(st.integers(-3, 2**64), st.floats(allow_nan=True), st.sampled_from(
    ["1", None, True, np.int64(2), np.uint64(2**63), np.float32(0.5), np.array([1, 2]), 2**63 - 2, 2**63 - 1]))


@settings(PROPERTY, max_examples=300)
@given(name=st.sampled_from(NAMES), data=st.data(), mutation=st.sampled_from(MUTATIONS), value=ODD_VALUES)
def test_a_changed_state_dict_is_refused_whole_or_taken_whole(name, data, mutation, value):
    cls, _, configs_, _ = OPTIMIZERS[name]
    config = configs_[-1]
    params = [np.linspace(-1, 1, 4), np.linspace(1, 2, 3)]
    opt = cls([{"params": [params[0]]}, {"params": [params[1]], "lr": 0.05}], **config)
    grads = [[np.full(4, 0.25)], [np.full(3, -0.5)]]
    opt.step(grads)
    opt.step(grads)
    sd = opt.state_dict()
    before = opt.state_dict()
    slot = data.draw(st.sampled_from(sorted(sd["state"]) or [0]), label="slot")
    entry = sd["state"].get(slot, {})
    keys = sorted(entry)
    if mutation == "drop key" and keys:
        del entry[data.draw(st.sampled_from(keys))]
    elif mutation == "unknown key":
        entry[data.draw(st.sampled_from(["momentum", "exp_avg2", "Step", ""]))] = value
    elif mutation in ("array dtype", "array shape", "array list") and any(isinstance(entry[k], np.ndarray)
                                                                         for k in keys):
        key = data.draw(st.sampled_from([k for k in keys if isinstance(entry[k], np.ndarray)]))
        entry[key] = {"array dtype": lambda a: a.astype(np.float32),
                      "array shape": lambda a: np.append(a, 1.0),
                      "array list": lambda a: a.tolist()}[mutation](entry[key])
    elif mutation == "scalar" and keys:
        entry[data.draw(st.sampled_from([k for k in keys if not isinstance(entry[k], np.ndarray)] or keys))] = value
    elif mutation == "slot key":
        sd["state"][data.draw(st.sampled_from([2, -1, "x", 1.0, None]))] = sd["state"].pop(slot, {})
    elif mutation == "group value":
        group = sd["param_groups"][data.draw(st.integers(0, 1))]
        group[data.draw(st.sampled_from(sorted(group)))] = value
    elif mutation == "group params":
        sd["param_groups"][1]["params"] = data.draw(st.sampled_from([[0], [1, 1], [], [2], "1"]))
    elif mutation == "drop group":
        del sd["param_groups"][0]
    elif mutation == "skipped_steps":
        sd["skipped_steps"] = value
    elif mutation == "drop slot":
        sd["state"].pop(slot, None)
    try:
        opt.load_state_dict(sd)
    except (TypeError, ValueError):
        assert_same_state_dict(opt.state_dict(), before)
    else:  # taken: the next step is applied, or refused whole (a step count at 2**63 - 1)
        loaded, kept = opt.state_dict(), [p.copy() for p in params]
        try:
            with np.errstate(all="ignore"):
                assert opt.step(grads)
        except ValueError as exc:
            assert "the step count must stay in" in str(exc)
            assert_same_state_dict(opt.state_dict(), loaded)
            for p, q in zip(params, kept):
                np.testing.assert_array_equal(p, q)
