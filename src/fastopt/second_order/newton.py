"""Newton's method (Cholesky, modified where the Hessian is indefinite) and Hessian-free Newton-CG."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from fastopt._validation import positive_option
from fastopt.second_order import _common as C
from fastopt.second_order._cholesky import cholesky_in_place, cholesky_solve

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastopt._typing import NDArray
    from fastopt.second_order._common import CallbackLike, MinimizeResult, Point
    from fastopt.second_order._objective import Objective

DEFAULTS: dict[str, Any] = dict(gtol=1e-8, maxiter=200, maxls=20, disp=False)
NEWTON_CG_DEFAULTS: dict[str, Any] = dict(gtol=1e-5, xtol=0.0, maxiter=None, cg_maxiter=None, maxls=20, c1=1e-4, c2=0.9,
                          return_all=False, disp=False)


def modified_cholesky(h: NDArray[np.float64], beta: float = 1e-3) -> tuple[NDArray[np.float64] | None, float]:
    """Cholesky factor of ``h + tau I`` for the smallest tau >= 0 the search tries, and that tau
    (``(None, inf)`` if no finite shift makes it positive definite).

    Nocedal & Wright's Algorithm 3.3 (Cholesky with added multiple of the
    identity): tau starts at 0 when every diagonal entry is positive, else
    at ``beta`` above minus the smallest one, and doubles until LAPACK's
    Cholesky succeeds.  ``beta`` is relative to the largest diagonal entry,
    so the shift does not depend on the units of f.
    """
    diag = np.diagonal(h)
    beta = beta * max(1.0, float(np.max(np.abs(diag))))
    smallest = float(np.min(diag))
    tau = 0.0 if smallest > 0 else beta - smallest
    while math.isfinite(tau):
        factor = h.copy() if tau == 0 else h + tau * np.eye(len(h))
        if cholesky_in_place(factor) == 0:
            return factor, tau
        tau = max(2.0 * tau, beta)
    return None, math.inf


def minimize_newton(objective: Objective, x0: Point, *, callback: CallbackLike, gtol: Any, maxiter: Any, maxls: Any,
                    disp: bool) -> MinimizeResult:
    """Newton's method with a line search; see :func:`fastopt.minimize`.

    Each iteration solves (H + tau I) p = -g by Cholesky, with tau = 0
    whenever the Hessian is positive definite, so near a minimum with a
    positive definite Hessian the unit step is taken and the error squares
    from one iteration to the next.  The step length comes from the same
    Moré–Thuente line search as L-BFGS, tried first at 1.
    """
    gtol = positive_option("gtol", gtol, allow_zero=True)
    maxiter = C.iteration_limit(maxiter)
    maxls = positive_option("maxls", maxls, integer=True)
    return _newton_loop(objective, x0, callback, gtol, maxiter, maxls, disp,
                        lambda x, g: _cholesky_direction(objective, x, g))


def minimize_newton_cg(objective: Objective, x0: Point, *, callback: CallbackLike, gtol: Any, xtol: Any, maxiter: Any,
                       cg_maxiter: Any, maxls: Any, c1: Any, c2: Any, return_all: bool, disp: bool) -> MinimizeResult:
    """Truncated Newton (Nocedal & Wright, Algorithm 7.1): CG on H p = -g, Hessian-free with ``hessp``.

    CG stops when the residual falls below min(0.5, sqrt(||g||)) ||g||
    (superlinear convergence), at ``cg_maxiter`` iterations, or at the
    first direction of non-positive curvature, keeping the last iterate
    (or, when that happens at once, -g scaled by g.g / |g.Hg|).  The Hessian products come from
    ``hessp``, ``hess`` (a function, ``'2-point'``/``'3-point'``/``'cs'``, or a
    ``scipy.optimize.HessianUpdateStrategy``), or, with neither, from forward
    differences of the gradient, as SciPy's.  ``xtol`` > 0 also stops the run
    (status 2, not success: the gradient test did not pass) when the step's
    mean absolute size falls to it; SciPy's default, 1e-5, calls that
    convergence, fastopt's default 0 leaves it off.  A negative ``maxiter`` stops at
    once (status 1), as SciPy.
    """
    n = x0.size
    gtol = positive_option("gtol", gtol, allow_zero=True)
    xtol = positive_option("xtol", xtol, allow_zero=True)
    if not 0 < c1 < c2 < 1:
        raise ValueError("'c1' and 'c2' do not satisfy '0 < c1 < c2 < 1'.")
    maxiter = C.iteration_limit(maxiter, 200 * n)
    # No "unlimited" here: CG on an ill-conditioned Hessian may never meet its tolerance.
    cg_maxiter = 20 * n if cg_maxiter is None else positive_option("cg_maxiter", cg_maxiter, integer=True)
    maxls = positive_option("maxls", maxls, integer=True)

    return _newton_loop(objective, x0, callback, gtol, maxiter, maxls, disp,
                        lambda x, g: (_cg_direction(objective, x, g, cg_maxiter), None), c1=c1, c2=c2, xtol=xtol,
                        return_all=return_all)


def _cholesky_direction(objective: Objective, x: Point, g: Point) -> tuple[Point | None, Any]:
    h = objective.hess(x)
    h += h.T  # the symmetric part (LAPACK reads one triangle; a slightly asymmetric Hessian counts in full)
    h *= 0.5
    if not np.all(np.isfinite(h)):
        return None, "the Hessian is not finite"
    factor, tau = modified_cholesky(h)
    if factor is None:
        return None, "no multiple of the identity makes the Hessian positive definite"
    p = -g
    cholesky_solve(factor, p)
    return p, tau


def _cg_direction(objective: Objective, x: Point, g: Point, cg_maxiter: int) -> Point:
    product = objective.hessian_product(x, g)
    gnorm = math.sqrt(float(g @ g))
    tolerance = min(0.5, math.sqrt(gnorm)) * gnorm
    z = np.zeros_like(g)
    r = g.copy()
    d = -r
    rr = float(r @ r)
    for j in range(cg_maxiter):
        hd = product(d)
        curvature = float(d @ hd)
        if not curvature > 0:
            if j > 0:
                return z
            # Negative curvature along -g at once: a steepest-descent step scaled by |g.g / d.Hd| (SciPy's), so
            # its length follows the curvature and the line search does not start far past a nearby minimum.
            return (rr / -curvature) * d if curvature < 0 else -g
        alpha = rr / curvature
        z += alpha * d
        r += alpha * hd
        rr_new = float(r @ r)
        if math.sqrt(rr_new) <= tolerance:
            break
        d = -r + (rr_new / rr) * d
        rr = rr_new
    return z


def _newton_loop(objective: Objective, x: Point, callback: CallbackLike, gtol: float, maxiter: Any, maxls: int,
                 disp: bool, direction: Callable[[Point, Point], tuple[Point | None, Any]], c1: float = 1e-4,
                 c2: float = 0.9, xtol: float = 0.0, return_all: bool = False) -> MinimizeResult:
    """The outer loop both Newton methods share: direction, line search from a unit step, stopping tests."""
    x.flags.writeable = False
    g, g_trial = np.empty(x.size), np.empty(x.size)
    f = objective.value_and_grad(x, g)
    nit = 0
    gnorm = float(np.max(np.abs(g)))

    allvecs: list[Point] | None = [np.array(x)] if return_all else None

    def result(status: int, message: str) -> MinimizeResult:
        extra = {"allvecs": allvecs} if return_all else {}
        return C.finish(np.array(x), f, g.copy(), nit, objective, status, message, disp, **extra)

    if not (math.isfinite(f) and math.isfinite(gnorm)):
        return result(C.NOT_FINITE, "stopped: f or the gradient is not finite at x0")
    stop = C.Callback(callback)
    while True:
        reason = C.stop_reason(gnorm, gtol, nit, maxiter)
        if reason:
            return result(*reason)
        p, note = direction(x, g)
        if p is None:
            return result(C.NOT_FINITE, f"stopped: {note}; ||g||_inf = {gnorm:.3g}")
        slope = float(g @ p)
        if not slope < 0:
            return result(C.NOT_FINITE, f"stopped: no descent direction (g.p = {slope:.3g}); "
                          f"||g||_inf = {gnorm:.3g}")
        search, x_new = C.search_line(objective, lambda stp: x + stp * p, lambda gt: float(gt @ p), f, slope,
                                      1.0, g_trial, ftol=c1, gtol=c2, xtol=1e-14, maxfev=maxls,
                                      stpmax=50.0)  # SciPy's bound for Newton steps: 50 times the Newton step
        if search.f == -np.inf:
            x, f = x_new, search.f
            g[...] = np.nan  # the gradient at a point where f is -inf means nothing
            return result(C.NOT_FINITE, C.UNBOUNDED_MESSAGE)
        if not search.success:
            return result(C.LINE_SEARCH_FAILED, f"stopped: the line search failed ({search.message}); "
                          f"||g||_inf = {gnorm:.3g}")
        step = x_new - x
        objective.observe_step(step, g_trial - g)
        f = search.f
        x = x_new
        g, g_trial = g_trial, g
        gnorm = float(np.max(np.abs(g)))
        nit += 1
        if allvecs is not None:  # (return_all)
            allvecs.append(np.array(x))
        if stop(x, f):
            return result(C.CALLBACK_STOP, C.CALLBACK_MESSAGE)
        if xtol and gnorm > gtol and float(np.mean(np.abs(step))) <= xtol:
            return result(C.STALLED, f"stopped: the mean |step| fell to xtol = {xtol:.3g}, but ||g||_inf = "
                          f"{gnorm:.3g} > gtol = {gtol:.3g}")
