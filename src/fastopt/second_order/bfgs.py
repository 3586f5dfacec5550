"""BFGS with a dense inverse Hessian: O(n^2) work per iteration (Nocedal & Wright, Algorithm 6.1)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from fastopt._threads import get_num_threads
from fastopt._validation import positive_option
from fastopt.second_order import _common as C
from fastopt.second_order._vectors import bfgs_matvecs, bfgs_update, max_abs

if TYPE_CHECKING:
    from fastopt.second_order._common import CallbackLike, MinimizeResult, Point
    from fastopt.second_order._objective import Objective

DEFAULTS: dict[str, Any] = dict(gtol=1e-5, norm=np.inf, maxiter=None, maxfun=None, maxls=20, c1=1e-4, c2=0.9,
                                hess_inv0=None, xrtol=0.0, return_all=False, disp=False)


def minimize_bfgs(objective: Objective, x0: Point, *, callback: CallbackLike, gtol: Any, norm: Any, maxiter: Any,
                  maxfun: Any, maxls: Any, c1: Any, c2: Any, hess_inv0: Any, xrtol: Any, return_all: bool,
                  disp: bool) -> MinimizeResult:
    """Minimize ``objective`` from ``x0``; see :func:`fastopt.minimize` for the options and the result.

    The inverse Hessian H starts as the identity and is rescaled by
    y.s / y.y before the first update.  Each iteration reads H once for
    H y and H g_new (one kernel) and updates it in one read-write pass;
    the next direction follows from those products without another pass:
    with H' = H + a s s^T - b (Hy s^T + s Hy^T),
    H' g = Hg + a (s.g) s - b ((s.g) Hy + (Hy.g) s).
    SciPy's BFGS forms two n x n matrix products (O(n^3)) instead.

    SciPy's options: ``c1``, ``c2`` (Wolfe constants, 0 < c1 < c2 < 1),
    ``hess_inv0`` (the first H, symmetric positive definite; then it is not
    rescaled), ``xrtol`` (stop when the step is below ``xrtol`` times
    ``||x||``: status 2, not success, unless the gradient test passed), ``norm`` (of the gradient test; default inf),
    ``return_all`` (``res.allvecs``: x at every iteration).  The first step
    moves ``x`` by 1.01 in the 2-norm along -g when H is the identity (as
    SciPy's), whatever the units of f.
    """
    n = x0.size
    gtol = positive_option("gtol", gtol, allow_zero=True)
    maxiter = C.iteration_limit(maxiter, 200 * n)
    maxfun = math.inf if maxfun is None else positive_option("maxfun", maxfun, integer=True, unlimited=True)
    maxls = positive_option("maxls", maxls, integer=True)
    xrtol = positive_option("xrtol", xrtol, allow_zero=True)
    if not 0 < c1 < c2 < 1:
        raise ValueError("'c1' and 'c2' do not satisfy '0 < c1 < c2 < 1'.")
    threads = get_num_threads()

    if hess_inv0 is None:
        H = np.eye(n)
        scaled = False
    else:
        H = np.array(hess_inv0, dtype=np.float64, order="C")
        if H.shape != (n, n):
            raise ValueError(f"hess_inv0 must have shape {(n, n)}, got {H.shape}")
        if not (np.allclose(H, H.T) and np.all(np.linalg.eigvalsh(0.5 * (H + H.T)) > 0)):
            raise ValueError("'hess_inv0' matrix isn't positive definite.")
        scaled = True
    allvecs: list[Point] | None = [np.array(x0)] if return_all else None

    def gradient_norm(g: Point) -> float:
        return max_abs(g, threads) if norm == np.inf else float(np.linalg.norm(g, ord=norm))
    x = x0
    x.flags.writeable = False
    g, g_trial = np.empty(n), np.empty(n)
    f = objective.value_and_grad(x, g)
    Hg = H @ g
    Hy, Hg_trial = np.empty(n), np.empty(n)
    gnorm = gradient_norm(g)
    nit = 0

    def result(status: int, message: str) -> MinimizeResult:
        extra = {"allvecs": allvecs} if return_all else {}
        return C.finish(np.array(x), f, g.copy(), nit, objective, status, message, disp, hess_inv=H.copy(),
                        **extra)

    if not (np.isfinite(f) and np.isfinite(gnorm)):
        return result(C.NOT_FINITE, "stopped: f or the gradient is not finite at x0")
    stop = C.Callback(callback)
    while True:
        reason = C.stop_reason(gnorm, gtol, nit, maxiter, objective.nfev, maxfun)
        if reason:
            return result(*reason)
        d = -Hg
        slope = float(g @ d)
        if not slope < 0 and scaled:  # H lost positive definiteness to rounding: start again from the identity
            Hg = g.copy()
            H[...] = np.eye(n)
            scaled = False
            d = -g
            slope = float(g @ d)
        if not slope < 0:
            return result(C.NOT_FINITE, f"stopped: no descent direction (g.d = {slope:.3g}); "
                          f"||g||_inf = {gnorm:.3g}")
        # With H = I the first trial moves x by 1.01 (SciPy's choice), in any units of f.
        step0 = 1.0 if scaled else 1.01 / np.sqrt(-slope)
        fev = min(maxls, max(1, maxfun - objective.nfev))
        search, x_new = C.search_line(objective, lambda stp: x + stp * d, lambda gt: float(gt @ d), f, slope,
                                      step0, g_trial, ftol=c1, gtol=c2, xtol=1e-14, maxfev=fev,
                                      stpmax=1e100)  # SciPy's bound: a tiny gradient may need a huge step
        if search.f == -np.inf:
            x, f = x_new, search.f
            g[...] = np.nan  # the gradient at a point where f is -inf means nothing
            return result(C.NOT_FINITE, C.UNBOUNDED_MESSAGE)
        if not search.success:
            return result(C.LINE_SEARCH_FAILED, f"stopped: the line search failed ({search.message}); "
                          f"||g||_inf = {gnorm:.3g}")
        s = search.stp * d
        y = g_trial - g
        sy = float(s @ y)
        # Positive curvature, relative to |s| |y| so that the test does not depend on the units of f.
        if sy > np.finfo(np.float64).eps * float(np.linalg.norm(s) * np.linalg.norm(y)):
            if not scaled:  # H = (y.s / y.y) I before the first update (Nocedal & Wright, eq. 6.20)
                H *= sy / float(y @ y)
                scaled = True
            bfgs_matvecs(H, g_trial, y, Hg_trial, Hy, threads)
            rho = 1.0 / sy
            a, b = rho + rho * rho * float(y @ Hy), rho
            sg, hyg = float(s @ g_trial), float(Hy @ g_trial)
            Hg_trial += (a * sg - b * hyg) * s - (b * sg) * Hy
            bfgs_update(H, s, Hy, a, b, threads)
        else:  # no positive curvature along s: keep H
            Hg_trial[...] = H @ g_trial
        f = search.f
        x = x_new
        g, g_trial = g_trial, g
        Hg, Hg_trial = Hg_trial, Hg
        gnorm = gradient_norm(g)
        nit += 1
        if allvecs is not None:  # (return_all)
            allvecs.append(np.array(x))
        if stop(x, f):
            return result(C.CALLBACK_STOP, C.CALLBACK_MESSAGE)
        if xrtol and gnorm > gtol and np.linalg.norm(s) <= xrtol * (xrtol + np.linalg.norm(x)):
            return result(C.STALLED, f"stopped: the step fell below xrtol = {xrtol:.3g} relative to x, but "
                          f"||g|| = {gnorm:.3g} > gtol = {gtol:.3g}")
