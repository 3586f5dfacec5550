"""Newton's method (Cholesky, modified where the Hessian is indefinite) and Hessian-free Newton-CG."""
import math

import numpy as np

from fastopt._validation import positive_option
from fastopt.second_order import _common as C
from fastopt.second_order._cholesky import cholesky_in_place, cholesky_solve

DEFAULTS = dict(gtol=1e-8, maxiter=200, maxls=20, disp=False)
NEWTON_CG_DEFAULTS = dict(gtol=1e-5, maxiter=None, cg_maxiter=None, maxls=20, disp=False)


def modified_cholesky(h, beta=1e-3):
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


def minimize_newton(objective, x0, *, callback, gtol, maxiter, maxls, disp):
    """Newton's method with a line search; see :func:`fastopt.minimize`.

    Each iteration solves (H + tau I) p = -g by Cholesky, with tau = 0
    whenever the Hessian is positive definite, so near a minimum with a
    positive definite Hessian the unit step is taken and the error squares
    from one iteration to the next.  The step length comes from the same
    Moré–Thuente line search as L-BFGS, tried first at 1.
    """
    gtol = positive_option("gtol", gtol, allow_zero=True)
    maxiter = positive_option("maxiter", maxiter, integer=True, allow_zero=True, unlimited=True)
    maxls = positive_option("maxls", maxls, integer=True)
    return _newton_loop(objective, x0, callback, gtol, maxiter, maxls, disp,
                        lambda x, g: _cholesky_direction(objective, x, g))


def minimize_newton_cg(objective, x0, *, callback, gtol, maxiter, cg_maxiter, maxls, disp):
    """Truncated Newton (Nocedal & Wright, Algorithm 7.1): CG on H p = -g, Hessian-free with ``hessp``.

    CG stops when the residual falls below min(0.5, sqrt(||g||)) ||g||
    (superlinear convergence), at ``cg_maxiter`` iterations, or at the
    first direction of non-positive curvature, keeping the last iterate
    (or -g when that happens at once).
    """
    n = x0.size
    gtol = positive_option("gtol", gtol, allow_zero=True)
    maxiter = 200 * n if maxiter is None else positive_option("maxiter", maxiter, integer=True,
                                                                allow_zero=True, unlimited=True)
    # No "unlimited" here: CG on an ill-conditioned Hessian may never meet its tolerance.
    cg_maxiter = 20 * n if cg_maxiter is None else positive_option("cg_maxiter", cg_maxiter, integer=True)
    maxls = positive_option("maxls", maxls, integer=True)

    return _newton_loop(objective, x0, callback, gtol, maxiter, maxls, disp,
                        lambda x, g: (_cg_direction(objective, x, g, cg_maxiter), None))


def _cholesky_direction(objective, x, g):
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


def _cg_direction(objective, x, g, cg_maxiter):
    hessp = objective.hessp if objective.hessp_fun is not None else (lambda x, v: objective.hess(x) @ v)
    gnorm = math.sqrt(float(g @ g))
    tolerance = min(0.5, math.sqrt(gnorm)) * gnorm
    z = np.zeros_like(g)
    r = g.copy()
    d = -r
    rr = float(r @ r)
    for j in range(cg_maxiter):
        hd = hessp(x, d)
        curvature = float(d @ hd)
        if not curvature > 0:
            return -g if j == 0 else z
        alpha = rr / curvature
        z += alpha * d
        r += alpha * hd
        rr_new = float(r @ r)
        if math.sqrt(rr_new) <= tolerance:
            break
        d = -r + (rr_new / rr) * d
        rr = rr_new
    return z


def _newton_loop(objective, x, callback, gtol, maxiter, maxls, disp, direction):
    """The outer loop both Newton methods share: direction, line search from a unit step, stopping tests."""
    x.flags.writeable = False
    g, g_trial = np.empty(x.size), np.empty(x.size)
    f = objective.value_and_grad(x, g)
    nit = 0
    gnorm = float(np.max(np.abs(g)))

    def result(status, message):
        if disp:
            print(message)
        return C.finish(np.array(x), f, g.copy(), nit, objective, status, message)

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
                                      1.0, g_trial, ftol=1e-4, xtol=1e-14, maxfev=maxls)
        if not search.success:
            return result(C.LINE_SEARCH_FAILED, f"stopped: the line search failed ({search.message}); "
                          f"||g||_inf = {gnorm:.3g}")
        f = search.f
        x = x_new
        g, g_trial = g_trial, g
        gnorm = float(np.max(np.abs(g)))
        nit += 1
        if stop(x, f):
            return result(C.CALLBACK_STOP, "stopped: the callback raised StopIteration")
