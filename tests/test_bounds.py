"""L-BFGS-B with bounds: the box kernels against NumPy, parse_bounds, and the bounded driver against SciPy."""
import numpy as np
import pytest
import scipy.optimize as so
from scipy.optimize import Bounds, rosen, rosen_der

import fastopt
import mgh
from conftest import same_for_all_threads
from fastopt.second_order._bounds import breakpoints, cauchy_walk, max_step, project, projected_gradient_norm
from fastopt.second_order.lbfgsb import parse_bounds

KERNEL_SIZES = [0, 1, 7, 2 ** 20 + 3]
THREADS = [1, 2]


def _box(rng, n):
    """A box with every kind of side: finite, infinite, fixed; x inside it, some x on a bound."""
    lower = rng.standard_normal(n) - 1.0
    upper = lower + rng.random(n) * 3.0
    kind = rng.integers(0, 5, n)
    lower[kind == 1] = -np.inf
    upper[kind == 2] = np.inf
    upper[kind == 3] = lower[kind == 3]
    x = np.clip(rng.standard_normal(n), lower, upper)
    on = rng.random(n) < 0.2
    x[on] = np.where(rng.random(on.sum()) < 0.5, np.where(np.isfinite(lower[on]), lower[on], x[on]),
                     np.where(np.isfinite(upper[on]), upper[on], x[on]))
    return x, lower, upper


# --------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------
@pytest.mark.parametrize("n", KERNEL_SIZES)
def test_project(n):
    rng = np.random.default_rng(n)
    x, lower, upper = _box(rng, n)
    d = rng.standard_normal(n) * 3
    for stp, dd in ((0.0, None), (0.7, d)):
        def run(t):
            out = np.empty(n)
            project(out, x, lower, upper, stp, dd, t)
            return out
        expected = np.clip(x if dd is None else x + stp * dd, lower, upper)
        np.testing.assert_array_equal(same_for_all_threads(run, THREADS), expected)
    inplace = x + 5.0
    project(inplace, inplace, lower, upper)
    np.testing.assert_array_equal(inplace, np.clip(x + 5.0, lower, upper))


@pytest.mark.parametrize("n", KERNEL_SIZES)
def test_projected_gradient_norm(n):
    rng = np.random.default_rng(n + 1)
    x, lower, upper = _box(rng, n)
    g = rng.standard_normal(n) * 2
    expected = np.abs(np.clip(x - g, lower, upper) - x).max() if n else 0.0
    got = same_for_all_threads(lambda t: projected_gradient_norm(x, g, lower, upper, t), THREADS)
    assert got == pytest.approx(expected, rel=1e-15, abs=0)
    if n:
        g[n // 2] = np.nan
        assert np.isnan(projected_gradient_norm(x, g, lower, upper, 2))


@pytest.mark.parametrize("n", KERNEL_SIZES)
def test_breakpoints(n):
    rng = np.random.default_rng(n + 2)
    x, lower, upper = _box(rng, n)
    g = rng.standard_normal(n)
    g[rng.random(n) < 0.1] = 0.0

    def run(th):
        t, d = np.empty(n), np.empty(n)
        dd = breakpoints(t, d, x, g, lower, upper, th)
        return np.concatenate([t, d, [dd]])

    out = same_for_all_threads(run, THREADS)
    t, d, dd = out[:n], out[n:2 * n], out[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        expected_t = np.where(g < 0, (x - upper) / g, np.where(g > 0, (x - lower) / g, np.inf))
    np.testing.assert_array_equal(t, expected_t)
    expected_d = np.where(expected_t > 0, -g, 0.0)
    np.testing.assert_array_equal(d, expected_d)
    assert dd == pytest.approx(float(expected_d @ expected_d), rel=1e-12, abs=0)


@pytest.mark.parametrize("n", KERNEL_SIZES)
def test_max_step(n):
    rng = np.random.default_rng(n + 3)
    x, lower, upper = _box(rng, n)
    d = rng.standard_normal(n)
    d[rng.random(n) < 0.1] = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        steps = np.where(d > 0, (upper - x) / d, np.where(d < 0, (lower - x) / d, np.inf))
    expected = min(1e10, steps.min()) if n else 1e10
    assert same_for_all_threads(lambda t: max_step(x, d, lower, upper, 1e10, t), THREADS) == expected


def test_cauchy_walk_without_memory_is_the_projected_path_minimizer():
    """With B = I (no pairs) the Cauchy point minimizes g.(z - x) + |z - x|^2 / 2 over the path: P(x - g)."""
    rng = np.random.default_rng(5)
    n = 50
    x, lower, upper = _box(rng, n)
    g = rng.standard_normal(n) * 3
    t, d = np.empty(n), np.empty(n)
    dd = breakpoints(t, d, x, g, lower, upper)
    cand = np.flatnonzero((t > 0) & (t < np.inf))
    order = np.ascontiguousarray(cand[np.argsort(t[cand], kind="stable")], dtype=np.intp)
    empty = np.zeros((0, n))
    tsum, passed = cauchy_walk(order, t, d, x, lower, upper, empty, empty, np.zeros(0, dtype=np.intp),
                               np.zeros((0, 0)), 1.0, np.zeros(0), np.zeros(0), -dd, dd, int(np.count_nonzero(d)))
    xcp = np.clip(x + tsum * d, lower, upper)
    hit = order[:passed]
    xcp[hit] = np.where(g[hit] < 0, upper[hit], lower[hit])
    np.testing.assert_allclose(xcp, np.clip(x - g, lower, upper), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------
# parse_bounds
# --------------------------------------------------------------------------
def test_parse_bounds_forms():
    assert parse_bounds(None, 3) is None
    assert parse_bounds([(None, None), (-np.inf, np.inf)], 2) is None
    assert parse_bounds(Bounds(-np.inf, np.inf), 4) is None
    lower, upper = parse_bounds([(1, None), (None, 2.5), (0, 0)], 3)
    np.testing.assert_array_equal(lower, [1, -np.inf, 0])
    np.testing.assert_array_equal(upper, [np.inf, 2.5, 0])
    assert lower.dtype == np.float64
    lower, upper = parse_bounds(Bounds(0, [1, 2, 3]), 3)
    np.testing.assert_array_equal(lower, [0, 0, 0])
    np.testing.assert_array_equal(upper, [1, 2, 3])
    lower, upper = parse_bounds(np.array([[0, 1], [2, 3]]), 2)
    np.testing.assert_array_equal(lower, [0, 2])


@pytest.mark.parametrize("bounds, error, match", [
    ([(0, 1)], ValueError, "number of bounds is not compatible"),
    (Bounds([0, 0, 0], [1, 1, 1]), ValueError, "number of bounds is not compatible"),
    ([(2, 1), (0, 1)], ValueError, "upper bound is less than the corresponding lower bound"),
    ([(np.nan, 1), (0, 1)], ValueError, "NaN"),
    ([(0, 1), (np.inf, np.inf)], ValueError, "no real number"),
    ([(0, "1"), (0, 1)], TypeError, "real numbers"),
    ([(0, 1j), (0, 1)], TypeError, "real numbers"),
    ([(True, 1), (0, 1)], TypeError, "real numbers"),
    ([(0, 1, 2), (0, 1)], ValueError, "pair"),
    ("01", TypeError, "Bounds or a sequence"),
    (Bounds(["a", "b"], [1, 2]), TypeError, "real numbers"),
])
def test_parse_bounds_errors(bounds, error, match):
    with pytest.raises(error, match=match):
        parse_bounds(bounds, 2)


def test_minimize_refuses_bad_bounds_and_other_methods():
    with pytest.raises(ValueError, match="bound"):
        fastopt.minimize(rosen, [0, -1], method="L-BFGS-B", jac=rosen_der, bounds=[(10, 1), (1, 10)])
    with pytest.raises(ValueError, match="takes no bounds"):
        fastopt.minimize(rosen, [0, -1], method="BFGS", jac=rosen_der, bounds=[(0, 1), (0, 1)])


# --------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------
class _Checked:
    """fun and jac that record every point and check it lies in the box."""

    def __init__(self, fun, jac, lower, upper):
        self.f, self.g, self.lower, self.upper = fun, jac, lower, upper
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        assert np.all(x >= self.lower) and np.all(x <= self.upper), "evaluated outside the box"
        return self.f(x), self.g(x)


def test_start_outside_the_box_is_projected():
    seen = []

    def fun(x):
        seen.append(np.array(x))
        return 0.5 * float(x @ x), np.array(x)

    res = fastopt.minimize(fun, [5.0, -3.0, 0.2], jac=True, method="L-BFGS-B", bounds=[(1, 2), (None, -1), (-1, 1)])
    np.testing.assert_array_equal(seen[0], [2.0, -3.0, 0.2])
    assert res.success, res.message
    np.testing.assert_allclose(res.x, [1, -1, 0], atol=1e-8)
    np.testing.assert_allclose(res.jac, res.x)


def test_fixed_variables_are_held_and_passed_whole():
    x0 = np.array([0.3, 5.0, 0.1, 0.7])
    lower, upper = np.array([0, 2, -1, -1.0]), np.array([3, 2, 2, -1.0])
    checked = _Checked(rosen, rosen_der, lower, upper)
    res = fastopt.minimize(checked, x0, jac=True, method="L-BFGS-B", bounds=Bounds(lower, upper),
                           options=dict(ftol=0, gtol=1e-6))
    assert res.success, res.message
    assert res.x[1] == 2 and res.x[3] == -1
    ref = so.minimize(rosen, x0, jac=rosen_der, method="L-BFGS-B", bounds=Bounds(lower, upper),
                      options=dict(ftol=0, gtol=1e-6))
    assert res.fun <= ref.fun + 1e-10 * abs(ref.fun)
    np.testing.assert_allclose(res.jac, rosen_der(res.x))
    assert res.hess_inv.shape == (4, 4)
    h = res.hess_inv.todense()
    assert np.all(h[1] == 0) and np.all(h[:, 3] == 0)


def test_all_variables_fixed_is_one_evaluation():
    calls = []

    def fun(x):
        calls.append(1)
        return float(np.sum(x))

    res = fastopt.minimize(fun, [0.0, 9.0], method="L-BFGS-B", bounds=[(1, 1), (2, 2)])
    assert res.success and res.nfev == 1 and len(calls) == 1 and res.fun == 3.0
    assert res.message == "All independent variables were fixed by bounds."
    np.testing.assert_array_equal(res.x, [1, 2])


def test_finite_differences_stay_in_the_box():
    lower, upper = np.array([-2.0, 1.0]), np.array([0.5, 3.0])

    def fun(x):
        assert np.all(x >= lower) and np.all(x <= upper)
        return rosen(x)

    res = fastopt.minimize(fun, [-1.0, 2.0], method="L-BFGS-B", bounds=list(zip(lower, upper)))
    ref = so.minimize(rosen, [-1.0, 2.0], jac=rosen_der, method="L-BFGS-B", bounds=list(zip(lower, upper)))
    assert res.fun == pytest.approx(ref.fun, rel=1e-6)


def test_same_result_on_any_thread_count():
    n = 3000
    rng = np.random.default_rng(1)
    c = rng.standard_normal(n) * 2
    lower, upper = -np.ones(n), np.ones(n)

    def fun(x):
        r = x - c
        return float(0.5 * r @ r + 0.25 * np.sum(x ** 4)), r + x ** 3

    results = []
    for k in THREADS:
        with fastopt.threads(k):
            results.append(fastopt.minimize(fun, np.zeros(n), jac=True, method="L-BFGS-B", bounds=Bounds(lower, upper)))
    np.testing.assert_array_equal(results[0].x, results[1].x)
    assert results[0].nfev == results[1].nfev


def test_callback_and_limits():
    seen = []

    def cb(x):
        seen.append(x)
        if len(seen) == 3:
            raise StopIteration

    res = fastopt.minimize(rosen, [-1.2, 1.0], jac=rosen_der, method="L-BFGS-B", bounds=[(-2, 0.5), (None, None)],
                           callback=cb)
    assert res.status == 99 and not res.success and res.nit == 3
    res = fastopt.minimize(rosen, [-1.2, 1.0], jac=rosen_der, method="L-BFGS-B", bounds=[(-2, 0.5), (None, None)],
                           options=dict(maxiter=2))
    assert res.status == 1 and res.nit == 2
    res = fastopt.minimize(lambda x: (np.nan, np.zeros(2)), [0.0, 0.0], jac=True, method="L-BFGS-B",
                           bounds=[(-1, 1), (-1, 1)])
    assert res.status == 4


def test_hess_inv_matches_a_dense_product():
    res = fastopt.minimize(rosen, [0.2, 0.8, 0.5], jac=rosen_der, method="L-BFGS-B",
                           bounds=[(0, 2), (0, 0.7), (None, None)])
    h = res.hess_inv
    dense = h.todense()
    np.testing.assert_allclose(dense, dense.T, rtol=1e-12, atol=1e-14)
    for j in range(3):
        np.testing.assert_allclose(h @ np.eye(3)[j], dense[:, j], rtol=1e-12, atol=1e-14)
    assert np.all(np.linalg.eigvalsh(dense) > 0)


def test_large_bounded_quadratic_converges():
    n = 10 ** 5
    rng = np.random.default_rng(7)
    a = rng.uniform(1.0, 10.0, n)
    c = rng.standard_normal(n) * 2
    lower, upper = np.full(n, -1.0), np.full(n, 1.0)

    def fun(x):
        r = x - c
        return float(0.5 * np.sum(a * r * r)), a * r

    res = fastopt.minimize(fun, np.zeros(n), jac=True, method="L-BFGS-B", bounds=Bounds(lower, upper),
                           options=dict(gtol=1e-6, ftol=0))
    assert res.success, res.message
    np.testing.assert_allclose(res.x, np.clip(c, -1, 1), atol=1e-6)


# --------------------------------------------------------------------------
# A bound-constrained test set: MGH problems in boxes that exclude the unconstrained minimizer
# --------------------------------------------------------------------------
MGH_CASES = ["rosenbrock", "beale", "helical_valley", "wood", "powell_singular", "box_3d", "extended_rosenbrock",
             "extended_powell_singular", "variably_dimensioned", "trigonometric", "discrete_boundary_value",
             "broyden_tridiagonal", "broyden_banded", "penalty1", "brown_almost_linear", "chebyquad",
             # their first searches end on a warning (a step at stpmax, exp overflowing beyond it): kept steps
             "kowalik_osborne", "gaussian", "jennrich_sampson", "bard", "gulf", "biggs_exp6", "watson", "osborne2"]


def _mgh_box(problem):
    """Gay / Moré–Toraldo style: every other variable capped just below the unconstrained minimizer found from
    x0 (the cap is active at the constrained solution), the others in a wide two-sided box."""
    x_free = so.minimize(problem.fun_and_grad, problem.x0, jac=True, method="L-BFGS-B",
                         options=dict(gtol=1e-10, ftol=1e-15, maxiter=20000)).x
    lower = np.full(problem.n, -np.inf)
    upper = np.full(problem.n, np.inf)
    even = np.arange(problem.n) % 2 == 0
    upper[even] = x_free[even] - 0.1 * (1.0 + np.abs(x_free[even]))
    lower[~even] = x_free[~even] - 10.0
    upper[~even] = x_free[~even] + 10.0
    return lower, upper


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # exp in the MGH residuals
@pytest.mark.parametrize("maxcor", [3, 10])
@pytest.mark.parametrize("name", MGH_CASES)
def test_mgh_in_a_box_no_worse_than_scipy(name, maxcor):
    problem = mgh.problem(name)
    lower, upper = _mgh_box(problem)
    options = dict(gtol=1e-10, ftol=1e-15, maxiter=20000, maxfun=20000, maxcor=maxcor)
    checked = _Checked(problem.f, problem.grad, lower, upper)
    res = fastopt.minimize(checked, problem.x0, jac=True, method="L-BFGS-B", bounds=Bounds(lower, upper),
                           options=options)
    ref = so.minimize(problem.fun_and_grad, problem.x0, jac=True, method="L-BFGS-B",
                      bounds=Bounds(lower, upper), options=options)
    assert np.all(res.x >= lower) and np.all(res.x <= upper)
    # the same tolerance as the MGH cross-check (test_mgh_problems.reached), relative to SciPy's value
    assert res.fun <= ref.fun + (1e-8 if ref.fun == 0 else 1e-4 * abs(ref.fun)), (res.fun, ref.fun, res.message)
    pg = np.abs(np.clip(res.x - res.jac, lower, upper) - res.x).max()
    pg_ref = np.abs(np.clip(ref.x - ref.jac, lower, upper) - ref.x).max()
    assert pg <= max(1e-5, 10 * pg_ref) * max(1.0, abs(res.fun)), (pg, pg_ref, res.message)
    assert np.any((res.x == lower) | (res.x == upper)), "the box should make some bound active"
