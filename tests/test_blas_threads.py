"""L-BFGS's BLAS thread limit (fastopt.second_order._blas): when it applies, that it is undone, and its option.

The "auto" rule decides from measured times, so the tests that run it through
a solve fix its thresholds (RATIO 0: always limit; inf: never) instead of
relying on how fast this machine is.
"""
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastopt
from fastopt.second_order import _blas, lbfgs

pytestmark = pytest.mark.skipif(not any(p["user_api"] == "blas" for p in threadpool_info()),
                                reason="threadpoolctl sees no BLAS library in this process")


@pytest.fixture(autouse=True)
def two_blas_threads():
    """BLAS on two threads during each test, whatever the machine or environment set (OMP_NUM_THREADS=1...),
    so that a limit to one thread is visible."""
    with threadpool_limits(limits=2, user_api="blas"):
        if max(blas_threads_now()) < 2:
            pytest.skip("this BLAS cannot be given a second thread")
        yield


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


def test_the_limit_is_undone_when_the_objective_raises():
    before, calls = blas_threads_now(), []

    def failing(x):
        calls.append(blas_threads_now())
        if len(calls) == 3:
            raise RuntimeError("boom")
        return quadratic(x)

    with pytest.raises(RuntimeError, match="boom"):
        fastopt.minimize(failing, np.ones(50), jac=True, options=dict(blas_threads=1))
    assert calls == [[1] * len(before)] * 3
    assert blas_threads_now() == before


def test_concurrent_solves_leave_no_limit_behind(parallel_passes, monkeypatch):
    """A solve that starts while another holds the limit leaves BLAS alone, so the two restores cannot
    leave one thread behind (threadpoolctl restores what it saw when it limited)."""
    monkeypatch.setattr(_blas, "RATIO", 0.0)
    before = blas_threads_now()
    inner = []

    def callback(x):
        if not inner:  # in the outer solve's first iteration: a whole solve, as another thread might run it
            inner.append(solve_and_watch()[0])

    with _blas.BlasThreads(1, parallel=True) as outer:
        assert outer.limited == 1
        fastopt.minimize(quadratic, np.ones(200), jac=True, callback=callback, options=dict(maxiter=2))
        assert blas_threads_now() == [1] * len(before)  # the inner solve did not restore the outer's limit
    assert inner[0] == [[1] * len(before)] * len(inner[0])
    assert blas_threads_now() == before


def test_the_limit_changes_no_iterate_of_its_own(parallel_passes, monkeypatch):
    """fastopt's own arithmetic does not depend on BLAS: with an objective that does not call BLAS (whose
    values then cannot change with its thread count), limiting it gives the same bits."""
    monkeypatch.setattr(_blas, "RATIO", 0.0)
    weights = np.arange(1.0, 201.0)

    def no_blas(x):
        g = weights * x
        return 0.5 * float(np.sum(g * x)), g

    runs = [fastopt.minimize(no_blas, np.ones(200), jac=True, options=dict(gtol=0.0, ftol=0.0, maxiter=14,
                                                                            blas_threads=policy))
            for policy in ("auto", False)]
    np.testing.assert_array_equal(runs[0].x, runs[1].x)
    assert runs[0].nfev == runs[1].nfev


@pytest.mark.parametrize("value, error", [("yes", ValueError), ("AUTO", ValueError), (0, ValueError),
                                          (-1, ValueError), (1.5, TypeError), (True, TypeError),
                                          (np.array(["auto"]), TypeError), (np.nan, ValueError)])
def test_bad_values_are_refused(value, error):
    with pytest.raises(error, match="blas_threads"):
        fastopt.minimize(quadratic, np.ones(3), jac=True, options=dict(blas_threads=value))


@pytest.mark.parametrize("value, policy", [("auto", "auto"), (False, False), (np.False_, False), (2, 2),
                                           (2.0, 2), (np.int64(3), 3)])
def test_accepted_values(value, policy):
    assert _blas.checked_policy(value) == policy
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
