"""L-BFGS: limited-memory BFGS with a Moré–Thuente line search (Nocedal & Wright, Algorithm 7.5)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.sparse.linalg import LinearOperator

from fastopt._threads import get_num_threads
from fastopt._validation import positive_option
from fastopt.second_order import _common as C
from fastopt.second_order._blas import BlasThreads, checked_policy, passes_are_parallel
from fastopt.second_order._vectors import combine, dot, lbfgs_direction, lbfgs_new_pair, max_abs, two_loop

if TYPE_CHECKING:
    from fastopt._typing import NDArray
    from fastopt.second_order._common import CallbackLike, MinimizeResult, Point
    from fastopt.second_order._objective import Objective

    _Operator = LinearOperator[np.float64]
else:
    _Operator = LinearOperator  # the same class: scipy-stubs makes LinearOperator generic in its dtype

DEFAULTS: dict[str, Any] = dict(maxcor=10, gtol=1e-5, ftol=2.220446049250313e-09, maxiter=15000, maxfun=15000, maxls=20,
                iprint=None, disp=False, blas_threads="auto")


class LbfgsInverseHessian(_Operator):
    """The L-BFGS approximation of the inverse Hessian, as a LinearOperator (like SciPy's LbfgsInvHessProduct).

    Holds the minimizer's ring buffer as it was left (no copy: for n = 10**6
    and 10 pairs a copy would be 160 MB): the ``count`` pairs (s, y) from
    row ``oldest`` on, wrapping around, and the initial scaling ``gamma``.
    A product costs two passes per pair.  ``S`` and ``Y`` give the pairs,
    oldest first (copies).

    Parameters
    ----------
    ring_s, ring_y : ndarray of float64, shape (m, n)
        The ring buffers of the steps s and gradient changes y.
    ring_rho : ndarray of float64, shape (m,)
        ``1 / (y . s)`` of each row.
    oldest : int
        The row of the oldest pair.
    count : int
        How many pairs the rings hold.
    gamma : float
        The initial scaling: ``H0 = gamma * I``.
    """

    def __init__(self, ring_s: NDArray[np.float64], ring_y: NDArray[np.float64], ring_rho: NDArray[np.float64],
                 oldest: int, count: int, gamma: float) -> None:
        n = ring_s.shape[1]
        super().__init__(dtype=np.float64, shape=(n, n))  # type: ignore[call-arg]  # (scipy-stubs omit __init__)
        self._ring = (ring_s, ring_y, ring_rho)
        self.oldest, self.count, self.gamma = oldest, count, gamma

    @property
    def _rows(self) -> list[int]:
        return [(self.oldest + j) % self._ring[0].shape[0] for j in range(self.count)]

    @property
    def S(self) -> NDArray[np.float64]:
        return self._ring[0][self._rows]

    @property
    def Y(self) -> NDArray[np.float64]:
        return self._ring[1][self._rows]

    def _matvec(self, v: NDArray[Any]) -> NDArray[np.float64]:
        v = np.ascontiguousarray(np.ravel(v), dtype=np.float64)
        out = np.empty_like(v)
        two_loop(out, v, *self._ring, self.oldest, self.count, self.gamma, get_num_threads())
        return -out  # two_loop gives -H v

    _rmatvec = _matvec  # symmetric

    def todense(self) -> NDArray[np.float64]:
        """The matrix itself (n x n): for small problems and tests."""
        return self.matmat(np.eye(self.shape[0]))


class _History:
    """The last ``count`` <= m pairs (s, y), with the dot products the direction is computed from.

    Pairs live in a ring buffer of m + 1 rows (``S``, ``Y``) from row
    ``oldest`` on; the row after them is free, so a new pair is written there
    and simply not counted if its curvature s . y is not positive.  ``SY``,
    ``YY`` hold s_r . y_c and y_r . y_c for the rows in use, ``gS``, ``gY``
    the products with the current gradient: the two-loop recursion runs on
    these numbers (``lbfgs_direction``), so an iteration reads the history
    twice (once to form the direction, once for the new pair's products)
    instead of 2 m times.

    The buffers start with at most ``_FIRST_ROWS`` rows and double as pairs
    arrive, up to m + 1: memory follows the pairs actually stored, so a large
    ``maxcor`` on a run that stops early costs nothing (the two ``(m + 1)^2``
    product tables would take 160 GB for ``maxcor=10**5``).  While they grow
    the ring has not wrapped (``oldest`` is 0), so rows keep their indices.
    """

    _FIRST_ROWS = 64
    S: NDArray[np.float64]
    Y: NDArray[np.float64]
    rho: NDArray[np.float64]
    SY: NDArray[np.float64]
    YY: NDArray[np.float64]
    gS: NDArray[np.float64]
    gY: NDArray[np.float64]

    def __init__(self, m: int, n: int) -> None:
        self.m, self.n = m, n
        self.oldest = self.count = 0
        self.gamma = 1.0
        # (None until _resize, just below, allocates them)
        self.S = self.Y = self.rho = self.SY = self.YY = self.gS = self.gY = None  # type: ignore[assignment]
        self._resize(min(m + 1, self._FIRST_ROWS))

    def _resize(self, rows: int) -> None:
        """Buffers of ``rows`` rows holding what the current ones hold (rows 0 .. count - 1 in use)."""
        old, k = self.S, 0 if self.S is None else self.S.shape[0]
        S, Y, rho = np.zeros((rows, self.n)), np.zeros((rows, self.n)), np.zeros(rows)
        SY, YY, gS, gY = np.zeros((rows, rows)), np.zeros((rows, rows)), np.zeros(rows), np.zeros(rows)
        if old is not None:
            S[:k], Y[:k], rho[:k], gS[:k], gY[:k] = self.S, self.Y, self.rho, self.gS, self.gY
            SY[:k, :k], YY[:k, :k] = self.SY, self.YY
        self.S, self.Y, self.rho, self.SY, self.YY, self.gS, self.gY = S, Y, rho, SY, YY, gS, gY

    def rows(self, extra: int = 0) -> NDArray[np.intp]:
        """Ring rows of the pairs in use, oldest first (and the ``extra`` free rows after them)."""
        size = self.m + 1
        return np.array([(self.oldest + j) % size for j in range(self.count + extra)], dtype=np.intp)

    def forget(self) -> None:
        self.count = 0

    def direction(self, d: Point, g: Point, threads: int) -> float:
        """d = -H g; returns the slope g . d."""
        return lbfgs_direction(d, g, self.S, self.Y, self.rho, self.SY, self.YY, self.gS, self.gY, self.rows(),
                               self.gamma, threads)

    def add(self, stp: float, d: Point, g_new: Point, g_old: Point, threads: int) -> float:
        """Store the pair s = stp d, y = g_new - g_old if its curvature is positive; g_new becomes the
        current gradient.  One pass over the history.  Returns max |g_new|."""
        if self.count >= self.S.shape[0]:  # no free row yet: grow (only before the ring is full)
            self._resize(min(2 * self.S.shape[0], self.m + 1))
        rows = self.rows(extra=1)
        new, old = rows[-1], rows[:-1]
        dots = np.empty((5, len(rows)))
        gnorm = lbfgs_new_pair(self.S, self.Y, new, rows, d, stp, g_new, g_old, dots, threads)
        s_y, y_s, y_y, g_s, g_y = dots
        self.gS[rows], self.gY[rows] = g_s, g_y
        sy, yy = s_y[-1], y_y[-1]
        if sy > np.finfo(np.float64).eps * yy:  # positive curvature (this also refuses NaN)
            self.SY[new, rows], self.SY[old, new], self.YY[new, rows] = s_y, y_s[:-1], y_y
            self.YY[old, new] = y_y[:-1]
            self.rho[new] = 1.0 / sy
            self.gamma = sy / yy
            if self.count < self.m:
                self.count += 1
            else:
                self.oldest = (self.oldest + 1) % (self.m + 1)
        return gnorm

    def inverse_hessian(self) -> LbfgsInverseHessian:
        return LbfgsInverseHessian(self.S, self.Y, self.rho, self.oldest, self.count, self.gamma)


def checked_options(maxcor: Any, gtol: Any, ftol: Any, maxiter: Any, maxfun: Any,
                    maxls: Any) -> tuple[Any, Any, Any, Any, Any, Any]:
    """The L-BFGS(-B) options, validated: (m, gtol, ftol, maxiter, maxfun, maxls)."""
    return (positive_option("maxcor", maxcor, integer=True), positive_option("gtol", gtol, allow_zero=True),
            positive_option("ftol", ftol, allow_zero=True), C.iteration_limit(maxiter),
            positive_option("maxfun", maxfun, integer=True, unlimited=True),
            positive_option("maxls", maxls, integer=True))


def minimize_lbfgs(objective: Objective, x0: Point, *, callback: CallbackLike, maxcor: Any, gtol: Any, ftol: Any,
                   maxiter: Any, maxfun: Any, maxls: Any, iprint: Any, disp: bool,
                   blas_threads: Any) -> MinimizeResult:
    """Minimize ``objective`` from ``x0``; see :func:`fastopt.minimize` for the options and the result."""
    m, gtol, ftol, maxiter, maxfun, maxls = checked_options(maxcor, gtol, ftol, maxiter, maxfun, maxls)
    threads = get_num_threads()
    with BlasThreads(checked_policy(blas_threads), passes_are_parallel(x0.size, threads)) as blas:
        return _solve(objective, x0, callback, m, gtol, ftol, maxiter, maxfun, maxls, disp, threads, blas)


def _solve(objective: Objective, x0: Point, callback: CallbackLike, m: int, gtol: float, ftol: float, maxiter: Any,
           maxfun: Any, maxls: int, disp: bool, threads: int, blas: BlasThreads) -> MinimizeResult:
    n = x0.size

    history = _History(m, n)
    x = x0
    x.flags.writeable = False
    g, g_trial, d = np.empty(n), np.empty(n), np.empty(n)
    f = objective.value_and_grad(x, g)
    gnorm = max_abs(g, threads)
    nit = 0

    def result(status: int, message: str) -> MinimizeResult:
        return C.finish(np.array(x), f, g.copy(), nit, objective, status, message, disp,
                        hess_inv=history.inverse_hessian())

    if not (np.isfinite(f) and np.isfinite(gnorm)):
        return result(C.NOT_FINITE, "stopped: f or the gradient is not finite at x0")
    stop = C.Callback(callback)
    while True:
        started, inside = time.perf_counter(), objective.seconds
        reason = C.stop_reason(gnorm, gtol, nit, maxiter, objective.nfev, maxfun)
        if reason:
            return result(*reason)
        slope = history.direction(d, g, threads)  # d = -H g; slope = g . d
        if not slope < 0 and history.count:  # rounding made H lose positive definiteness: restart along -g
            history.forget()
            slope = history.direction(d, g, threads)
        if not slope < 0:
            return result(C.NOT_FINITE, f"stopped: no descent direction (g.d = {slope:.3g}); "
                          f"||g||_inf = {gnorm:.3g}")
        # The first step has no curvature information: make it of length 1 (SciPy's L-BFGS-B does too).
        step0 = 1.0 if history.count else min(1.0, 1.0 / np.sqrt(-slope))

        def point_at(stp: float) -> Point:
            xt = np.empty(n)  # a fresh array: the user's function may keep what it is given
            combine(xt, 1.0, x, stp, d, num_threads=threads)
            return xt

        search, x_new = C.search_line(objective, point_at, lambda gt: dot(gt, d, threads), f, slope, step0,
                                      g_trial, ftol=1e-3, xtol=0.1,
                                      maxfev=min(maxls, max(1, maxfun - objective.nfev)))
        if search.f == -np.inf:
            x, f = x_new, search.f
            g[...] = np.nan  # the gradient at a point where f is -inf means nothing
            return result(C.NOT_FINITE, C.UNBOUNDED_MESSAGE)
        if not search.success:
            if history.count:  # forget the history and try once more along -g, as L-BFGS-B does
                history.forget()
                continue
            return result(C.LINE_SEARCH_FAILED, f"stopped: the line search failed ({search.message}); "
                          f"||g||_inf = {gnorm:.3g}")

        # The accepted point is the last one evaluated: its gradient is in g_trial.
        gnorm = history.add(search.stp, d, g_trial, g, threads)
        f_old, f = f, search.f
        x = x_new
        g, g_trial = g_trial, g
        nit += 1
        blas.iteration(time.perf_counter() - started, objective.seconds - inside)
        if stop(x, f):
            return result(C.CALLBACK_STOP, C.CALLBACK_MESSAGE)
        if gnorm > gtol and C.relative_decrease(f_old, f) <= ftol:
            return result(C.STALLED, C.stalled_message(gnorm, gtol, ftol))

