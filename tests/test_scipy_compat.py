"""fastopt.minimize takes what scipy.optimize.minimize takes: finite differences, Hessian strategies,
SciPy's options, keyword callbacks and SciPy's readings of odd values."""
import warnings

import numpy as np
import pytest
from scipy import optimize

from fastopt import minimize
from fastopt.second_order import _differences


def rosen(x):
    return optimize.rosen(x)


X0 = np.array([-1.2, 1.0, 0.8])


@pytest.mark.parametrize("method", ["2-point", "3-point", "cs"])
def test_finite_difference_gradients_match_scipys(method):
    x = np.array([-1.2, 0.0, 3.5, 1e-9])
    f = lambda p: np.sum(np.cos(p) * p ** 3) + p[0] * p[-1]  # noqa: E731
    ours = _differences.gradient(f, x, f(x), method)
    theirs = optimize.approx_fprime(x, f) if method == "2-point" else None
    exact = np.cos(x) * 3 * x ** 2 - np.sin(x) * x ** 3 + np.array([x[-1], 0, 0, x[0]])
    tol = {"2-point": 1e-6, "3-point": 1e-9, "cs": 1e-13}[method]
    np.testing.assert_allclose(ours, exact, atol=tol * 10, rtol=tol)
    if theirs is not None:
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)  # SciPy: an absolute step here


def test_finite_differences_stay_in_the_box():
    x = np.array([1.0, 0.0])
    lower, upper = np.array([0.0, -1.0]), np.array([1.0, 0.0])
    seen = []

    def f(p):
        seen.append(np.array(p))
        return float(p @ p)

    for method in ("2-point", "3-point"):
        g = _differences.gradient(f, x, f(x), method, box=(lower, upper))
        np.testing.assert_allclose(g, 2 * x, atol=1e-6)
    assert all(np.all(p >= lower) and np.all(p <= upper) for p in seen)


@pytest.mark.parametrize("jac", [None, False, "2-point", "3-point", "cs"])
@pytest.mark.parametrize("method", ["BFGS", "L-BFGS"])
def test_minimize_with_finite_difference_gradients(jac, method):
    res = minimize(rosen, X0, method=method, jac=jac, options={"gtol": 1e-4})
    np.testing.assert_allclose(res.x, 1.0, atol=1e-3)
    assert res.njev > 0 and res.nfev > res.njev  # as SciPy: an estimated gradient counts in njev


def test_eps_and_finite_diff_rel_step_are_used():
    calls = []

    def f(x):
        calls.append(np.array(x))
        return float(x @ x)

    minimize(f, [1.0, 2.0], method="BFGS", options={"eps": 1e-3, "maxiter": 0})
    assert np.isclose(calls[1][0] - 1.0, 1e-3)
    calls.clear()
    minimize(f, [4.0, 2.0], method="BFGS", jac="2-point", options={"finite_diff_rel_step": 1e-4, "maxiter": 0})
    assert np.isclose(calls[1][0] - 4.0, 4e-4)


def test_workers_map_gives_the_same_run():
    seen = []

    def mapper(fun, points):
        points = list(points)
        seen.append(len(points))
        return list(map(fun, points))

    a = minimize(rosen, X0, method="BFGS")
    b = minimize(rosen, X0, method="BFGS", options={"workers": mapper})
    np.testing.assert_array_equal(a.x, b.x)
    assert a.nfev == b.nfev and seen and all(k == X0.size for k in seen)
    with pytest.raises(ValueError, match="workers must be a map-like"):
        minimize(rosen, X0, method="BFGS", options={"workers": 4})


@pytest.mark.parametrize("hess", [None, "2-point", "3-point", optimize.BFGS(), optimize.SR1()])
def test_newton_cg_hessian_strategies(hess):
    res = minimize(optimize.rosen, [-1.2, 1.0], method="Newton-CG", jac=optimize.rosen_der, hess=hess,
                   options={"gtol": 1e-6})
    assert res.success, res.message
    np.testing.assert_allclose(res.x, 1.0, atol=1e-4)


def test_hess_cs_needs_a_jac_that_takes_complex_points():
    res = minimize(lambda x: np.sum(x ** 4), [1.0, 2.0], method="Newton-CG", jac=lambda x: 4 * x ** 3, hess="cs")
    assert res.success and np.max(np.abs(res.x)) < 0.05


def test_a_keyword_only_callback_gets_the_intermediate_result():
    got = []

    def callback(*, intermediate_result):
        got.append((intermediate_result.x.copy(), intermediate_result.fun))
        if len(got) == 3:
            raise StopIteration

    for method in ("BFGS", "L-BFGS", "Newton-CG"):
        got.clear()
        res = minimize(optimize.rosen, [1.1] * 4, jac=optimize.rosen_der, method=method, callback=callback)
        assert res.status == 99 and not res.success and res.message.startswith("`callback` raised `StopIteration`")
        assert res.nit == 3 and res.fun == got[-1][1]


@pytest.mark.parametrize("method", ["BFGS", "L-BFGS", "Newton-CG"])
def test_maxiter_as_scipy_reads_it(method):
    for value in (-1, -np.inf):
        res = minimize(optimize.rosen, X0, jac=optimize.rosen_der, method=method, options={"maxiter": value})
        assert res.nit == 0 and res.status == 1
    res = minimize(optimize.rosen, X0, jac=optimize.rosen_der, method=method, options={"maxiter": 3.7})
    assert res.nit == 3 and "Maximum number of iterations" in res.message


def test_disp_warns_with_scipys_warning_class():
    with pytest.warns(optimize.OptimizeWarning, match="Maximum number"):
        minimize(optimize.rosen, [0, 0], jac=optimize.rosen_der, method="BFGS", options={"disp": True, "maxiter": 3})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        minimize(optimize.rosen, [0, 0], jac=optimize.rosen_der, method="BFGS", options={"maxiter": 3})


@pytest.mark.parametrize("method, bounds", [("BFGS", None), ("L-BFGS", None), ("L-BFGS-B", [(-2, 2)] * 2),
                                           ("Newton-CG", None)])
def test_disp_warning_points_at_the_users_call(method, bounds):
    with pytest.warns(optimize.OptimizeWarning) as caught:
        minimize(optimize.rosen, [0, 0], jac=optimize.rosen_der, method=method, bounds=bounds,
                 options={"disp": True, "maxiter": 2})
    assert caught[0].filename == __file__


def test_bfgs_options():
    base = dict(fun=optimize.rosen, x0=X0, jac=optimize.rosen_der, method="BFGS")
    with pytest.raises(ValueError, match="'c1' and 'c2' do not satisfy"):
        minimize(**base, options={"c1": 0.9, "c2": 0.1})
    with pytest.raises(ValueError, match="'hess_inv0' matrix isn't positive definite."):
        minimize(**base, options={"hess_inv0": -np.eye(3)})
    res = minimize(**base, options={"hess_inv0": np.linalg.inv(optimize.rosen_hess(X0) + 10 * np.eye(3)),
                                    "return_all": True})
    assert res.success and len(res.allvecs) == res.nit + 1
    loose = minimize(**base, options={"xrtol": 1e-2})
    assert loose.nit < minimize(**base).nit
    two_norm = minimize(**base, options={"norm": 2, "gtol": 1e-6})
    assert np.linalg.norm(two_norm.jac) <= 1e-6


def test_newton_cg_xtol_stop_is_reported_but_not_success():
    res = minimize(optimize.rosen, X0, jac=optimize.rosen_der, method="Newton-CG", options={"xtol": 1e-1})
    assert res.status in (0, 2) and res.success == (res.status == 0)


def test_newton_cg_on_cosine_stays_in_the_first_valley():
    res = minimize(lambda x: np.cos(x[0]), [0.1], jac=lambda x: -np.sin(x), method="Newton-CG")
    assert res.success and abs(res.x[0] - np.pi) < 1e-4


def test_bfgs_first_step_is_scale_invariant():
    for scale in (1e-50, 1.0, 1e50):
        first = []

        def f(x):
            if not first and x[0] != -1.0:
                first.append(abs(x[0] + 1.0))
            return scale * (x[0] - 1) ** 2

        res = minimize(f, [-1.0], jac=lambda x: np.array([2 * scale * (x[0] - 1)]), method="BFGS",
                       options={"gtol": scale * 1e-8})
        assert res.success and res.nit <= 3 and np.isclose(first[0], 1.01)


def test_unbounded_below_ends_at_minus_infinity():
    with np.errstate(over="ignore"):
        res = minimize(lambda x: -np.exp(-x[0]), [0.0], jac=lambda x: np.exp(-x), method="BFGS")
    assert res.fun == -np.inf and res.status == 4 and "unbounded below" in res.message


def test_scipys_refusals():
    with pytest.raises(ValueError, match="'x0' must only have one dimension."):
        minimize(rosen, np.ones((2, 1)))
    with pytest.raises(ValueError, match="must return a scalar value"):
        minimize(lambda x: x, np.array([1.0, 1.0]), method="BFGS")
    with pytest.raises(ValueError, match="takes no constraints"):
        minimize(rosen, X0, constraints=[{"type": "ineq", "fun": rosen}])
    with pytest.raises(ValueError, match="takes no bounds"):
        minimize(rosen, X0, method="BFGS", bounds=[(0, 1)] * 3)


@pytest.mark.parametrize("bounds", [None, [(-5, 5)] * 2])
def test_lbfgs_ends_at_minus_infinity_with_and_without_bounds(bounds):
    def f(x):
        return (float(np.sum((x - 3) ** 2)) if x[0] < 2 else -np.inf), 2 * (x - 3) + 0.3

    res = minimize(f, np.zeros(2), jac=True, bounds=bounds)
    assert res.fun == -np.inf and res.status == 4 and not res.success and "unbounded below" in res.message


@pytest.mark.parametrize("jac", [None, "2-point", "3-point"])
def test_every_probe_stays_in_a_tight_box_and_fixed_variables_are_not_differenced(jac):
    lower, upper = np.array([0.0, -1.0, 2.0]), np.array([1e-9, 1.0, 2.0])
    seen = []

    def f(x):
        seen.append(np.array(x))
        return float(np.sum(np.cos(3 * x)) + x @ x)

    res = minimize(f, [5e-10, 0.3, 2.0], method="L-BFGS-B", jac=jac, bounds=list(zip(lower, upper)))
    assert res.success and all(np.all(p >= lower) and np.all(p <= upper) for p in seen)
    assert np.isnan(res.jac[2]) and res.njev > 0


def test_bounded_forward_differences_use_eps_and_workers():
    calls = []

    def mapper(fun, points):
        calls.append(1)
        return list(map(fun, points))

    f = lambda x: float(np.sum(np.cos(3 * x)) + x @ x)  # noqa: E731
    free = minimize(f, [0.3, 0.7], options={"eps": 0.1, "maxiter": 1, "workers": mapper})
    boxed = minimize(f, [0.3, 0.7], bounds=[(-5, 5)] * 2, options={"eps": 0.1, "maxiter": 1, "workers": mapper})
    assert calls and boxed.njev == free.njev > 0 and boxed.nfev == free.nfev
