"""L-BFGS-B: L-BFGS within bounds (Byrd, Lu, Nocedal & Zhu, 1995; Morales & Nocedal, 2011).

Each iteration
1. finds the generalized Cauchy point: the first local minimizer of the
   quadratic model ``m(x) = g^T (x - x_k) + 1/2 (x - x_k)^T B (x - x_k)``
   along the projected-gradient path ``P(x_k - t g)``, walking its
   breakpoints in increasing order (Algorithm CP; ``_bounds.cauchy_walk``);
2. minimizes the model over the variables still free there (the direct
   primal method, with the compact form ``B = theta I - W M W^T``,
   ``W = [Y, theta S]``), projects the result into the box and, when that is
   not a descent direction, backtracks the subspace step into the box;
3. searches the line from ``x_k`` towards that point (Moré–Thuente, steps no
   longer than the box allows; every trial point is clipped into the box).

Variables with equal bounds are fixed and factored out (the user's
functions still see the whole vector), as SciPy does.
"""
from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.sparse.linalg import LinearOperator

from fastopt._threads import get_num_threads
from fastopt.second_order import _common as C
from fastopt.second_order._blas import BlasThreads, checked_policy
from fastopt.second_order._bounds import breakpoints, cauchy_walk, max_step, project, projected_gradient_norm
from fastopt.second_order._linesearch import ROUNDING, STPMAX, STPMIN, XTOL, strong_wolfe
from fastopt.second_order._vectors import dot
from fastopt.second_order.lbfgs import LbfgsInverseHessian, checked_options

if TYPE_CHECKING:
    from fastopt._typing import NDArray
    from fastopt.second_order._common import Box, BoundsLike, CallbackLike, MinimizeResult, Point
    from fastopt.second_order._objective import Objective

    _Operator = LinearOperator[np.float64]
else:
    _Operator = LinearOperator  # the same class: scipy-stubs makes LinearOperator generic in its dtype

_EPS = np.finfo(np.float64).eps
_BIG = 1e10  # L-BFGS-B's largest step
_WARNINGS = frozenset({STPMAX, XTOL, ROUNDING, STPMIN})


# --------------------------------------------------------------------------
# Bounds
# --------------------------------------------------------------------------
def _bound_value(value: object, side: str, i: int) -> float:
    """One bound as a float: None is an infinite bound; bools, strings, complex numbers are a TypeError."""
    if value is None:
        return -math.inf if side == "lower" else math.inf
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "fiu":
            return float(value.reshape(()))
        raise TypeError(f"bounds: the {side} bound of variable {i} is {value!r}; bounds must be real numbers "
                        "(or None for no bound)")
    return float(value)


def _bound_array(values: Any, side: str, n: int) -> NDArray[np.float64]:
    """lb or ub of a ``scipy.optimize.Bounds``: a scalar or an array broadcast to (n,)."""
    a = np.asarray(values)
    if a.dtype.kind == "O":
        a = np.array([_bound_value(v, side, i) for i, v in enumerate(a.reshape(-1))]).reshape(a.shape)
    elif a.dtype.kind not in "fiu":
        raise TypeError(f"bounds: the {side} bounds must be real numbers, got dtype {a.dtype}")
    a = a.astype(np.float64).reshape(-1) if a.ndim else np.full(n, float(a))
    if a.size == 1 and n != 1:
        a = np.full(n, a[0])
    if a.size != n:
        raise ValueError(f"The number of bounds is not compatible with the length of `x0`: {a.size} {side} "
                         f"bounds for {n} variables (the bounds must have one entry per variable)")
    return a


def parse_bounds(bounds: BoundsLike | None, n: int) -> Box | None:
    """(lower, upper) float64 arrays of shape (n,), or None when there are no bounds or all are infinite.

    ``bounds`` is a ``scipy.optimize.Bounds`` (``lb``/``ub`` scalars or
    arrays, broadcast to n) or a sequence of n ``(low, high)`` pairs, None
    or an infinity meaning no bound on that side.  A length that is not n,
    a lower bound above the upper one, NaN, a lower bound of +inf or an
    upper bound of -inf is a ValueError; values that are not real numbers
    are a TypeError.
    """
    if bounds is None:
        return None
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):  # scipy.optimize.Bounds (or alike)
        lower, upper = _bound_array(bounds.lb, "lower", n), _bound_array(bounds.ub, "upper", n)
    else:
        if isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__len__"):
            raise TypeError(f"bounds must be a scipy.optimize.Bounds or a sequence of (low, high) pairs, "
                            f"got {type(bounds).__name__}")
        if len(bounds) != n:
            raise ValueError(f"The number of bounds is not compatible with the length of `x0`: {len(bounds)} "
                             f"(low, high) pairs for {n} variables (one pair per variable)")
        lower, upper = np.empty(n), np.empty(n)
        for i, pair in enumerate(bounds):
            try:
                low, high = pair
            except (TypeError, ValueError):
                raise ValueError(f"bounds: entry {i} is {pair!r}, not a (low, high) pair of bounds") from None
            lower[i], upper[i] = _bound_value(low, "lower", i), _bound_value(high, "upper", i)
    for side, a in (("lower", lower), ("upper", upper)):
        bad = np.flatnonzero(np.isnan(a))
        if bad.size:
            raise ValueError(f"bounds: the {side} bound of variable {bad[0]} is NaN")
    bad = np.flatnonzero(lower > upper)
    if bad.size:
        i = bad[0]
        raise ValueError(f"An upper bound is less than the corresponding lower bound: variable {i} has lower "
                         f"bound {lower[i]} and upper bound {upper[i]}")
    bad = np.flatnonzero((lower == math.inf) | (upper == -math.inf))
    if bad.size:
        i = bad[0]
        raise ValueError(f"bounds: variable {i} has bounds ({lower[i]}, {upper[i]}), which no real number "
                         "satisfies")
    if not (np.isfinite(lower).any() or np.isfinite(upper).any()):
        return None
    return lower, upper


# --------------------------------------------------------------------------
# The objective on the free variables, evaluated inside the box
# --------------------------------------------------------------------------
class _BoxObjective:
    """``objective`` seen from the free variables (fixed ones at their bound), gradients taken inside the box.

    Keeps the whole gradient of the last evaluation in ``full_grad``.
    Finite differences (the objective's, which knows the box) step backwards
    where a forward step would leave the box, as SciPy's, and do not
    difference fixed variables (their entries of the gradient are NaN, as in
    SciPy's result).
    """

    def __init__(self, objective: Objective, template: Point, free: NDArray[np.intp] | None, lower: Point,
                 upper: Point) -> None:
        self.objective, self.template, self.free = objective, template, free
        self.lower, self.upper = lower, upper  # of the free variables
        self.full_grad = np.empty(template.size)

    def full(self, x: Point) -> Point:
        if self.free is None:
            return x
        xf = self.template.copy()
        xf[self.free] = x
        xf.flags.writeable = False
        return xf

    def value_and_grad(self, x: Point, grad_out: Point) -> float:
        """f at the full point; the free variables' gradient into ``grad_out`` (estimated ones stay in the box:
        the objective was given the box)."""
        f = self.objective.value_and_grad(self.full(x), self.full_grad)
        np.copyto(grad_out, self.full_grad if self.free is None else self.full_grad[self.free])
        return f


class _FullInverseHessian(_Operator):
    """The reduced problem's inverse-Hessian operator on the whole vector: zero rows and columns for fixed variables."""

    def __init__(self, reduced: LinearOperator[np.float64], free: NDArray[np.intp], n: int) -> None:
        super().__init__(dtype=np.float64, shape=(n, n))  # type: ignore[call-arg]  # (scipy-stubs omit __init__)
        self.reduced, self.free = reduced, free

    def _matvec(self, v: NDArray[Any]) -> NDArray[np.float64]:
        v = np.ravel(v).astype(np.float64)
        out = np.zeros(self.shape[0])
        if self.free.size:
            out[self.free] = self.reduced.matvec(v[self.free]).reshape(-1)
        return out

    _rmatvec = _matvec

    def todense(self) -> NDArray[np.float64]:
        return self.matmat(np.eye(self.shape[0]))


# --------------------------------------------------------------------------
# The limited-memory matrix in compact form
# --------------------------------------------------------------------------
class _Memory:
    """The last ``count`` <= m pairs in a ring of m rows, with S S^T, S Y^T, Y Y^T kept up to date.

    ``B = theta I - W M W^T`` with ``W = [Y^T, theta S^T]`` (n x 2k) and
    ``M = [[-D, L^T], [L, theta S S^T]]^{-1}`` (D the diagonal of S Y^T, L
    its strictly lower triangle, pairs oldest first).  Rows grow with the
    pairs stored (as lbfgs._History does), up to m.
    """

    def __init__(self, m: int, n: int) -> None:
        self.m, self.n = m, n
        self.S = np.zeros((min(m, 16), n))
        self.Y = np.zeros_like(self.S)
        self.SS, self.SY, self.YY = np.zeros((m, m)), np.zeros((m, m)), np.zeros((m, m))
        self.rho = np.zeros(m)
        self.oldest = self.count = 0
        self.theta = 1.0
        self.M: Any = None  # NDArray[np.float64] while pairs are stored, else None
        self.rows = np.zeros(0, dtype=np.intp)

    def forget(self) -> None:
        self.count = self.oldest = 0
        self.theta = 1.0
        self.M = None
        self.rows = np.zeros(0, dtype=np.intp)

    def wt(self, v: Point) -> Point:
        """W^T v (2k), pairs oldest first."""
        k = self.count
        if k < self.m:  # not wrapped: ring rows 0 .. k-1 are in age order
            ys, ss = self.Y[:k] @ v, self.S[:k] @ v
        else:
            ys, ss = (self.Y @ v)[self.rows], (self.S @ v)[self.rows]
        return np.concatenate([ys, self.theta * ss])

    def w(self, a: Point) -> Point:
        """W a (n) for a of 2k entries (oldest pair first)."""
        k = self.count
        if k < self.m:
            return a[:k] @ self.Y[:k] + (self.theta * a[k:]) @ self.S[:k]
        ring, ring_s = np.empty(k), np.empty(k)
        ring[self.rows], ring_s[self.rows] = a[:k], self.theta * a[k:]
        return ring @ self.Y + ring_s @ self.S

    def gram_free(self, free_mask: NDArray[np.bool_], nfree: int) -> NDArray[np.float64]:
        """W_Z^T W_Z (2k x 2k) over the free variables."""
        rows = self.rows
        if nfree == self.n:
            ys, ss, yy = self.SY[np.ix_(rows, rows)].T, self.SS[np.ix_(rows, rows)], self.YY[np.ix_(rows, rows)]
        elif nfree <= self.n - nfree:
            idx = np.flatnonzero(free_mask)
            Yz, Sz = self.Y[rows][:, idx], self.S[rows][:, idx]
            ys, ss, yy = Yz @ Sz.T, Sz @ Sz.T, Yz @ Yz.T
        else:
            idx = np.flatnonzero(~free_mask)
            Ya, Sa = self.Y[rows][:, idx], self.S[rows][:, idx]
            ys = self.SY[np.ix_(rows, rows)].T - Ya @ Sa.T
            ss = self.SS[np.ix_(rows, rows)] - Sa @ Sa.T
            yy = self.YY[np.ix_(rows, rows)] - Ya @ Ya.T
        t = self.theta
        return np.block([[yy, t * ys], [t * ys.T, t * t * ss]])

    def add(self, s: Point, y: Point, sy: float, yy: float) -> bool:
        """Store the pair (its curvature sy > eps yy was checked by the caller); M is recomputed."""
        m = self.m
        if self.count < m and self.count >= self.S.shape[0]:
            rows = min(2 * self.S.shape[0], m)
            S, Y = np.zeros((rows, self.n)), np.zeros((rows, self.n))
            S[:self.count], Y[:self.count] = self.S, self.Y
            self.S, self.Y = S, Y
        if self.count < m:
            new = self.count
            self.count += 1
        else:
            new = self.oldest
            self.oldest = (self.oldest + 1) % m
        self.S[new], self.Y[new] = s, y
        self.rows = np.array([(self.oldest + j) % m for j in range(self.count)], dtype=np.intp) \
            if self.count == m else np.arange(self.count, dtype=np.intp)
        k = self.count
        Sk, Yk = self.S[:k], self.Y[:k]  # ring order
        sv, yv = Sk @ np.stack([s, y], axis=1), Yk @ np.stack([s, y], axis=1)
        r = np.arange(k)
        self.SS[r, new] = self.SS[new, r] = sv[:, 0]
        self.SY[r, new], self.SY[new, r] = sv[:, 1], yv[:, 0]  # SY[i, j] = s_i . y_j
        self.YY[r, new] = self.YY[new, r] = yv[:, 1]
        self.SY[new, new] = sy
        self.YY[new, new] = yy
        self.rho[new] = 1.0 / sy
        self.theta = yy / sy
        self.M = self._middle()
        return self.M is not None

    def _middle(self) -> NDArray[np.float64] | None:
        rows, t = self.rows, self.theta
        sy = self.SY[np.ix_(rows, rows)]
        D = np.diag(np.diag(sy))
        L = np.tril(sy, -1)
        Minv = np.block([[-D, L.T], [L, t * self.SS[np.ix_(rows, rows)]]])
        try:
            M = np.linalg.inv(Minv)
        except np.linalg.LinAlgError:
            return None
        return M if np.all(np.isfinite(M)) else None

    def inverse_hessian(self) -> LbfgsInverseHessian:
        """The L-BFGS inverse Hessian of the stored pairs (H0 = I / theta), as lbfgs.LbfgsInverseHessian."""
        k = self.count
        if k == 0:
            return LbfgsInverseHessian(np.zeros((1, self.n)), np.zeros((1, self.n)), np.zeros(1), 0, 0, 1.0)
        rows = self.rows
        return LbfgsInverseHessian(np.ascontiguousarray(self.S[rows]), np.ascontiguousarray(self.Y[rows]),
                                   self.rho[rows].copy(), 0, k, 1.0 / self.theta)


# --------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------
def _project_message(message: str) -> str:
    return message.replace("||g||_inf", "||proj g||_inf")


def minimize_lbfgsb(objective: Objective, x0: Point, box: Box, *, callback: CallbackLike, maxcor: Any, gtol: Any,
                    ftol: Any, maxiter: Any, maxfun: Any, maxls: Any, iprint: Any, disp: bool,
                    blas_threads: Any) -> MinimizeResult:
    """Minimize ``objective`` from ``x0`` within ``box = (lower, upper)``; options and result as :func:`fastopt.minimize`.

    ``x0`` is projected into the box first; ``res.jac`` is the gradient (not
    its projection) and ``success`` means ``||proj g||_inf <= gtol``.
    ``blas_threads`` as an integer limits BLAS for the solve; ``"auto"``
    leaves it alone here (see ``_blas``).
    """
    m, gtol, ftol, maxiter, maxfun, maxls = checked_options(maxcor, gtol, ftol, maxiter, maxfun, maxls)
    with BlasThreads(checked_policy(blas_threads), parallel=False):
        return _solve(objective, x0, box, callback, m, gtol, ftol, maxiter, maxfun, maxls, disp)


def _solve(objective: Objective, x0: Point, box: Box, callback: CallbackLike, m: int, gtol: float, ftol: float,
           maxiter: Any, maxfun: Any, maxls: int, disp: bool) -> MinimizeResult:
    threads = get_num_threads()
    lower_all, upper_all = (np.ascontiguousarray(b, dtype=np.float64) for b in box)
    n_all = x0.size
    start = np.clip(x0, lower_all, upper_all)
    fixed = lower_all == upper_all
    stop = C.Callback(callback)

    if fixed.all():  # nothing to minimize: one evaluation, as SciPy
        start.flags.writeable = False
        g = np.full(n_all, np.nan)
        if objective.jac is None:
            f = objective.value(start)
        else:
            f = objective.value_and_grad(start, g)
        message = "All independent variables were fixed by bounds."
        return C.finish(np.array(start), f, g, 0, objective, C.CONVERGED, message, disp,
                        hess_inv=_Memory(1, n_all).inverse_hessian())

    free_idx = np.flatnonzero(~fixed) if fixed.any() else None
    if free_idx is None:
        lower, upper, x = lower_all, upper_all, start
    else:
        lower, upper = lower_all[free_idx].copy(), upper_all[free_idx].copy()
        x = start[free_idx].copy()
    template = start.copy()
    fun = _BoxObjective(objective, template, free_idx, lower, upper)
    n = x.size
    boxed = bool(np.isfinite(lower).all() and np.isfinite(upper).all())

    memory = _Memory(m, n)
    x.flags.writeable = False
    g, g_trial = np.empty(n), np.empty(n)
    t, d, xcp, r = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    f = fun.value_and_grad(x, g)
    full_g = fun.full_grad.copy()
    pgnorm = projected_gradient_norm(x, g, lower, upper, threads)
    nit = 0

    def result(status: int, message: str) -> MinimizeResult:
        h: LinearOperator[np.float64] = memory.inverse_hessian()
        if free_idx is not None:
            h = _FullInverseHessian(h, free_idx, n_all)
        return C.finish(np.array(fun.full(x)), f, full_g.copy(), nit, objective, status, message, disp, hess_inv=h)

    if not (np.isfinite(f) and np.isfinite(pgnorm)):
        return result(C.NOT_FINITE, "stopped: f or the gradient is not finite at x0")
    while True:
        reason = C.stop_reason(pgnorm, gtol, nit, maxiter, objective.nfev, maxfun)
        if reason:
            return result(reason[0], _project_message(reason[1]))
        direction = _search_direction(memory, x, g, lower, upper, t, d, xcp, r, threads)
        slope = dot(g, direction, threads) if direction is not None else math.nan
        if not slope < 0 and memory.count:  # the model lost its way (rounding, singular M): restart along -g
            memory.forget()
            continue
        if not slope < 0:
            return result(C.NOT_FINITE, f"stopped: no descent direction (g.d = {slope:.3g}); "
                          f"||proj g||_inf = {pgnorm:.3g}")
        d_step: Point = direction  # type: ignore[assignment]  # (not None: slope < 0)
        if nit == 0:  # L-BFGS-B's first step: no farther than the Cauchy point, shortened unless all is boxed
            stpmax = 1.0
            step0 = 1.0 if boxed else min(1.0, 1.0 / math.sqrt(dot(d_step, d_step, threads)))
        else:  # as L-BFGS-B: a unit step (also after a reset), no farther than the box allows
            stpmax = max_step(x, d_step, lower, upper, _BIG, threads)
            step0 = min(1.0, stpmax)
        if not stpmax > 0:
            if memory.count:
                memory.forget()
                continue
            return result(C.LINE_SEARCH_FAILED, f"stopped: no feasible step along the search direction; "
                          f"||proj g||_inf = {pgnorm:.3g}")
        last: list[Any] = [None]

        def phi(stp: float) -> tuple[float, float]:
            xt = np.empty(n)  # a fresh array, inside the box: the user's function may keep what it is given
            project(xt, x, lower, upper, stp, d_step, threads)
            xt.flags.writeable = False
            last[0] = xt
            value = fun.value_and_grad(xt, g_trial)
            if value == -np.inf:
                raise C.Unbounded(stp)
            return value, dot(g_trial, d_step, threads)

        try:
            search = strong_wolfe(phi, f, slope, step0, ftol=1e-3, gtol=0.9, xtol=0.1, stpmax=stpmax,
                                  maxfev=min(maxls, max(1, maxfun - objective.nfev)))
        except C.Unbounded:
            x, f = last[0], -np.inf
            full_g[...] = np.nan  # the gradient at a point where f is -inf means nothing
            return result(C.NOT_FINITE, C.UNBOUNDED_MESSAGE)
        # As in L-BFGS-B, a search that ended on a warning (the step at stpmax -- the box --, or an interval
        # too short to shrink further) keeps its last step when that step lowered f.
        accepted = search.success or (search.status in _WARNINGS and search.f < f)
        if not accepted:
            if memory.count:  # forget the pairs and try once more from the Cauchy step, as L-BFGS-B does
                memory.forget()
                continue
            return result(C.LINE_SEARCH_FAILED, f"stopped: the line search failed ({search.message}); "
                          f"||proj g||_inf = {pgnorm:.3g}")
        x_new = last[0]
        s = x_new - x
        y = g_trial - g
        sy, yy = float(s @ y), float(y @ y)
        if sy > _EPS * yy:  # positive curvature (this also refuses NaN)
            if not memory.add(s, y, sy, yy):
                memory.forget()
        f_old, f = f, search.f
        x = x_new
        g, g_trial = g_trial, g
        full_g = fun.full_grad.copy()
        pgnorm = projected_gradient_norm(x, g, lower, upper, threads)
        nit += 1
        if stop(fun.full(x), f):
            return result(C.CALLBACK_STOP, C.CALLBACK_MESSAGE)
        if pgnorm > gtol and C.relative_decrease(f_old, f) <= ftol:
            return result(C.STALLED, _project_message(C.stalled_message(pgnorm, gtol, ftol)))


def _search_direction(memory: _Memory, x: Point, g: Point, lower: Point, upper: Point, t: Point, d: Point, xcp: Point,
                      r: Point, threads: int) -> Point | None:
    """The L-BFGS-B direction from x: (subspace minimizer, in the box) - x; None if the model is unusable."""
    n = x.size
    dd = breakpoints(t, d, x, g, lower, upper, threads)  # d = -g where the path moves
    if dd == 0.0:
        return np.zeros(n)
    k = memory.count
    theta = memory.theta
    M: Any = memory.M if k else np.zeros((0, 0))
    p = memory.wt(d)
    f1 = -dd
    f2 = theta * dd - (p @ M @ p if k else 0.0)
    if not (f2 > 0 and np.isfinite(f2)):
        return None
    nmoving = int(np.count_nonzero(d))
    cand = np.flatnonzero(t < math.inf)
    cand = cand[t[cand] > 0]
    order = np.ascontiguousarray(cand[np.argsort(t[cand], kind="stable")], dtype=np.intp)
    c = np.zeros(2 * k)
    tsum, passed = cauchy_walk(order, t, d, x, lower, upper, memory.S, memory.Y, memory.rows, M,
                               theta, p, c, f1, f2, nmoving)
    project(xcp, x, lower, upper, tsum, d, threads)
    hit = order[:passed]
    xcp[hit] = np.where(g[hit] < 0, upper[hit], lower[hit])
    if k == 0:
        return xcp - x
    free = (xcp > lower) & (xcp < upper)
    nfree = int(np.count_nonzero(free))
    if nfree == 0:
        return xcp - x
    # reduced gradient of the model at x_cp: r = Z^T (g + theta (x_cp - x) - W M c)
    np.subtract(xcp, x, out=r)
    r *= theta
    r += g
    r -= memory.w(M @ c)
    r[~free] = 0.0
    v = M @ memory.wt(r)
    N = np.eye(2 * k) - (M @ memory.gram_free(free, nfree)) / theta
    try:
        v = np.linalg.solve(N, v)
    except np.linalg.LinAlgError:
        return None
    du = -r / theta - memory.w(v) / (theta * theta)
    du[~free] = 0.0
    if not np.all(np.isfinite(du)):
        return None
    xbar = np.empty(n)
    project(xbar, xcp, lower, upper, 1.0, du, threads)
    dirn = xbar - x
    if dot(g, dirn, threads) < 0:  # the projected subspace step is a descent direction (Morales & Nocedal)
        return dirn
    alpha = min(1.0, max_step(xcp, du, lower, upper, 1.0, threads))  # else: backtrack into the box
    project(xbar, xcp, lower, upper, alpha, du, threads)
    return xbar - x
