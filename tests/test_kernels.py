"""Each kernel against its NumPy reference: float32/float64, odd sizes, several thread counts.

The kernels must agree with ``reference.py`` bit for bit, which also proves
that their results do not depend on the thread count.
"""
import numpy as np
import pytest
from conftest import SIZES, THREADS

import reference
from fastopt._update_rules import adam_step, sgd_step


def assert_bitwise_equal(actual, expected):
    """Equal bits, so -0.0 != 0.0 and NaN payloads count."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    uint = np.dtype(f"u{actual.dtype.itemsize}")
    np.testing.assert_array_equal(actual.view(uint), expected.view(uint))


SGD_CONFIGS = [
    dict(lr=0.05),
    dict(lr=0.05, weight_decay=0.01),
    dict(lr=0.2, maximize=True),
    dict(lr=1e-3, weight_decay=0.5, maximize=True),
]

ADAM_CONFIGS = [
    dict(),
    dict(lr=0.01, weight_decay=0.05),
    dict(lr=0.003, maximize=True),
    dict(lr=0.1, betas=(0.3, 0.9), eps=1e-6),  # beta1 < 0.5: the other lerp branch
    dict(lr=0.02, betas=(0.0, 0.0), eps=0.0, weight_decay=0.2, maximize=True),
]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("config", SGD_CONFIGS, ids=str)
def test_sgd_matches_reference(dtype, n, threads, config, rng):
    p = rng.standard_normal(n).astype(dtype)
    expected = p.copy()
    for _ in range(3):
        g = rng.standard_normal(n).astype(dtype)
        expected = reference.sgd(expected, g, **config)
        sgd_step(p, g, config["lr"], config.get("weight_decay", 0.0), config.get("maximize", False), threads)
        assert_bitwise_equal(p, expected)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("config", ADAM_CONFIGS, ids=str)
def test_adam_matches_reference(dtype, n, threads, config, rng):
    hyper = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False) | config
    p = rng.standard_normal(n).astype(dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    ep, em, ev = p.copy(), m.copy(), v.copy()
    for step in range(1, 5):
        g = rng.standard_normal(n).astype(dtype)
        ep, em, ev = reference.adam(ep, g, em, ev, step, **hyper)
        adam_step(p, g, m, v, hyper["lr"], *hyper["betas"], hyper["eps"], hyper["weight_decay"],
                  hyper["maximize"], step, threads)
        assert_bitwise_equal(p, ep)
        assert_bitwise_equal(m, em)
        assert_bitwise_equal(v, ev)


@pytest.mark.parametrize("n", [2**20 + 3, 3 * 2**16 + 5, 5000, 3073])
def test_results_do_not_depend_on_thread_count(dtype, n, rng):
    p0 = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(4)]
    results = []
    for threads in (1, 2, 3, 4, 7):
        p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
        for step, g in enumerate(grads, 1):
            adam_step(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, 0.01, False, step, threads)
            sgd_step(p, g, 1e-3, 0.0, False, threads)
        results.append((p, m, v))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert_bitwise_equal(a, b)


def test_nonfinite_values_propagate_like_the_formula(dtype):
    g = np.array([np.nan, np.inf, -np.inf, 1.0], dtype=dtype)
    p = np.ones(4, dtype=dtype)
    sgd_step(p, g, 0.1, 0.0, False, 1)
    np.testing.assert_array_equal(np.isnan(p), [True, False, False, False])
    assert p[1] == -np.inf and p[2] == np.inf

    p, m, v = np.ones(4, dtype=dtype), np.zeros(4, dtype=dtype), np.zeros(4, dtype=dtype)
    adam_step(p, g, m, v, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 1, 1)
    with np.errstate(invalid="ignore"):  # inf / inf in the reference, as in the kernel
        ep, _, _ = reference.adam(np.ones(4, dtype=dtype), g, np.zeros(4, dtype), np.zeros(4, dtype), 1, lr=0.1)
    assert_bitwise_equal(p, ep)
    assert np.isnan(p[:3]).all() and np.isfinite(p[3])


def test_bindings_refuse_mismatched_lengths():
    a, b = np.zeros(4), np.zeros(5)
    with pytest.raises(ValueError, match="4 elements"):
        sgd_step(a, b, 0.1)
    with pytest.raises(ValueError, match="4 elements"):
        adam_step(a, a.copy(), a.copy(), b, 0.1, 0.9, 0.999, 1e-8, 0.0, False, 1)
