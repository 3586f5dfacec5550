"""L-BFGS's BLAS thread limit (fastopt.second_order._blas): when it applies, that it is undone, and its option.

The "auto" rule decides from measured times, so the tests that run it through
a solve fix its thresholds (RATIO 0: always limit; inf: never) instead of
relying on how fast this machine is.
"""
import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastopt
from fastopt.second_order import _blas, lbfgs

pytestmark = pytest.mark.skipif(not any(p["user_api"] == "blas" for p in threadpool_info()),
                                reason="threadpoolctl sees no BLAS library in this process")


def blas_threads_now():
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def quadratic(x):
    g = np.arange(1.0, x.size + 1) * x
    return 0.5 * float(x @ g), g


def solve_and_watch(n=200, **options):
    """Run L-BFGS; return the BLAS thread counts seen by the callback at each iteration, and the result."""
    seen = []
    res = fastopt.minimize(quadratic, np.ones(n), jac=True, callback=lambda x: seen.append(blas_threads_now()),
                           options=dict(gtol=0.0, ftol=0.0, maxiter=14, **options))
    return seen, res


@pytest.fixture
def parallel_passes(monkeypatch):
    """Make L-BFGS treat its passes as multi-threaded whatever the build and n (the rule's precondition)."""
    monkeypatch.setattr(lbfgs, "passes_are_parallel", lambda n, threads: True)


def test_auto_limits_blas_after_watching_and_restores_it(parallel_passes, monkeypatch):
    monkeypatch.setattr(_blas, "RATIO", 0.0)  # any measurement says "limit"
    before = blas_threads_now()
    seen, res = solve_and_watch()
    assert res.nit == 14
    assert seen[:_blas.WATCHED - 1] == [before] * (_blas.WATCHED - 1)  # untouched while watching
    assert all(counts == [1] * len(before) for counts in seen[_blas.WATCHED:])
    assert blas_threads_now() == before


def test_auto_leaves_blas_alone_when_the_objective_costs_as_much(parallel_passes, monkeypatch):
    monkeypatch.setattr(_blas, "RATIO", np.inf)
    before = blas_threads_now()
    seen, _ = solve_and_watch()
    assert seen == [before] * len(seen)


def test_auto_leaves_blas_alone_when_the_passes_run_on_one_thread(monkeypatch):
    monkeypatch.setattr(_blas, "RATIO", 0.0)
    monkeypatch.setattr(lbfgs, "passes_are_parallel", lambda n, threads: False)
    before = blas_threads_now()
    seen, _ = solve_and_watch()
    assert seen == [before] * len(seen)


def test_false_leaves_blas_alone(parallel_passes, monkeypatch):
    monkeypatch.setattr(_blas, "RATIO", 0.0)
    before = blas_threads_now()
    seen, _ = solve_and_watch(blas_threads=False)
    assert seen == [before] * len(seen)


@pytest.mark.parametrize("bounds", [None, [(-2.0, 2.0)] * 200])
def test_an_integer_limits_blas_for_the_whole_solve(bounds):
    before = blas_threads_now()
    seen = []
    fastopt.minimize(quadratic, np.ones(200), jac=True, bounds=bounds, options=dict(blas_threads=1, maxiter=5),
                     callback=lambda x: seen.append(blas_threads_now()))
    assert seen and all(counts == [1] * len(before) for counts in seen)
    assert blas_threads_now() == before


def test_the_limit_is_undone_when_the_objective_raises(parallel_passes):
    before = blas_threads_now()

    def failing(x):
        if blas_threads_now() != before:
            raise RuntimeError("boom")
        return quadratic(x)

    with pytest.raises(RuntimeError, match="boom"):
        fastopt.minimize(failing, np.ones(50), jac=True, options=dict(blas_threads=1))
    assert blas_threads_now() == before


def test_auto_on_a_real_solve_reaches_the_same_point(parallel_passes, monkeypatch):
    """Limiting BLAS changes where the time goes, not the iterates: the same bits with and without it."""
    monkeypatch.setattr(_blas, "RATIO", 0.0)
    _, limited = solve_and_watch()
    _, alone = solve_and_watch(blas_threads=False)
    np.testing.assert_array_equal(limited.x, alone.x)
    assert limited.nfev == alone.nfev


@pytest.mark.parametrize("value", ["yes", 0, -1, 1.5, True])
def test_bad_values_are_refused(value):
    with pytest.raises(ValueError, match="blas_threads must be 'auto', False or a positive integer"):
        fastopt.minimize(quadratic, np.ones(3), jac=True, options=dict(blas_threads=value))


def test_the_rule_in_numbers(monkeypatch):
    """Watch WATCHED iterations, then limit iff time outside the objective >= RATIO x time inside."""
    calls = []
    monkeypatch.setattr(_blas.BlasThreads, "_limit", lambda self, threads: calls.append(threads))
    cheap = _blas.BlasThreads("auto", parallel=True)
    for _ in range(_blas.WATCHED - 1):
        cheap.iteration(1.0, 0.1)  # 0.9 s outside, 0.1 s inside
    assert calls == []
    cheap.iteration(1.0, 0.1)
    assert calls == [1]
    cheap.iteration(1.0, 0.1)  # decided once
    assert calls == [1]
    costly = _blas.BlasThreads("auto", parallel=True)
    for _ in range(_blas.WATCHED):
        costly.iteration(1.0, 0.3)  # 0.7 outside < 4 x 0.3 inside
    assert calls == [1]
