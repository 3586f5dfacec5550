"""L-BFGS: limited-memory BFGS with a Moré–Thuente line search (Nocedal & Wright, Algorithm 7.5)."""
import numpy as np
from scipy.sparse.linalg import LinearOperator

from fastopt._threads import get_num_threads
from fastopt.second_order import _common as C
from fastopt.second_order._vectors import combine, dot, max_abs, two_loop

DEFAULTS = dict(maxcor=10, gtol=1e-5, ftol=2.220446049250313e-09, maxiter=15000, maxfun=15000, maxls=20,
                disp=False)


class LbfgsInverseHessian(LinearOperator):
    """The L-BFGS approximation of the inverse Hessian, as a LinearOperator (like SciPy's LbfgsInvHessProduct).

    Holds the minimizer's ring buffer as it was left (no copy: for n = 10**6
    and 10 pairs a copy would be 160 MB): the ``count`` pairs (s, y) from
    row ``oldest`` on, wrapping around, and the initial scaling ``gamma``.
    A product costs two passes per pair.  ``S`` and ``Y`` give the pairs,
    oldest first (copies).
    """

    def __init__(self, ring_s, ring_y, ring_rho, oldest, count, gamma):
        n = ring_s.shape[1]
        super().__init__(dtype=np.float64, shape=(n, n))
        self._ring = (ring_s, ring_y, ring_rho)
        self.oldest, self.count, self.gamma = oldest, count, gamma

    @property
    def _rows(self):
        return [(self.oldest + j) % self._ring[0].shape[0] for j in range(self.count)]

    @property
    def S(self):
        return self._ring[0][self._rows]

    @property
    def Y(self):
        return self._ring[1][self._rows]

    def _matvec(self, v):
        v = np.ascontiguousarray(np.ravel(v), dtype=np.float64)
        out = np.empty_like(v)
        two_loop(out, v, *self._ring, self.oldest, self.count, self.gamma, get_num_threads())
        return -out  # two_loop gives -H v

    _rmatvec = _matvec  # symmetric

    def todense(self):
        """The matrix itself (n x n): for small problems and tests."""
        return self.matmat(np.eye(self.shape[0]))


def minimize_lbfgs(objective, x0, *, callback, maxcor, gtol, ftol, maxiter, maxfun, maxls, disp):
    """Minimize ``objective`` from ``x0``; see :func:`fastopt.minimize` for the options and the result."""
    m = C.positive("maxcor", maxcor, integer=True)
    gtol = C.positive("gtol", gtol, allow_zero=True)
    ftol = C.positive("ftol", ftol, allow_zero=True)
    maxiter = C.positive("maxiter", maxiter, integer=True, allow_zero=True)
    maxfun = C.positive("maxfun", maxfun, integer=True)
    maxls = C.positive("maxls", maxls, integer=True)
    threads = get_num_threads()
    n = x0.size

    # A ring buffer of m + 1 rows holding the last ``count`` <= m pairs from row ``oldest`` on: the row
    # after them is free, so a new pair is written there and dropped if its curvature is not positive.
    rows = m + 1
    S, Y, rho = np.zeros((rows, n)), np.zeros((rows, n)), np.zeros(rows)
    oldest = count = 0
    gamma = 1.0
    x = x0
    x.flags.writeable = False
    g, g_trial, d = np.empty(n), np.empty(n), np.empty(n)
    f = objective.value_and_grad(x, g)
    gnorm = max_abs(g, threads)
    nit = 0

    def result(status, message):
        if disp:
            print(message)
        hess_inv = LbfgsInverseHessian(S, Y, rho, oldest, count, gamma)
        return C.finish(np.array(x), f, g.copy(), nit, objective, status, message, hess_inv=hess_inv)

    if not (np.isfinite(f) and np.isfinite(gnorm)):
        return result(C.NOT_FINITE, "stopped: f or the gradient is not finite at x0")
    stop = C.Callback(callback)
    while True:
        reason = C.stop_reason(gnorm, gtol, nit, maxiter, objective.nfev, maxfun)
        if reason:
            return result(*reason)
        slope = two_loop(d, g, S, Y, rho, oldest, count, gamma, threads)  # d = -H g; slope = g . d
        if not slope < 0 and count:  # rounding made H lose positive definiteness: restart from steepest descent
            count = 0
            slope = two_loop(d, g, S, Y, rho, oldest, count, gamma, threads)
        if not slope < 0:
            return result(C.NOT_FINITE, f"stopped: no descent direction (g.d = {slope:.3g}); "
                          f"||g||_inf = {gnorm:.3g}")
        # The first step has no curvature information: make it of length 1 (SciPy's L-BFGS-B does too).
        step0 = 1.0 if count else min(1.0, 1.0 / np.sqrt(-slope))

        def point_at(stp):
            xt = np.empty(n)  # a fresh array: the user's function may keep what it is given
            combine(xt, 1.0, x, stp, d, num_threads=threads)
            return xt

        search, x_new = C.search_line(objective, point_at, lambda gt: dot(gt, d, threads), f, slope, step0,
                                      g_trial, ftol=1e-3, xtol=0.1,
                                      maxfev=min(maxls, max(1, maxfun - objective.nfev)))
        if not search.success:
            if count:  # forget the history and try once more along -g, as L-BFGS-B does
                count = 0
                continue
            return result(C.LINE_SEARCH_FAILED, f"stopped: the line search failed ({search.message}); "
                          f"||g||_inf = {gnorm:.3g}")

        # The accepted point is the last one evaluated: its gradient is in g_trial.
        row = (oldest + count) % rows
        # s . y = stp (g_new . d - g . d): both slopes are known, no pass needed (and with the strong
        # Wolfe condition |g_new . d| <= 0.9 |g . d|, the difference cannot cancel).
        sy = search.stp * (search.g - slope)
        keep = sy > 0
        if keep:
            combine(S[row], search.stp, d, num_threads=threads)                               # s = stp d
            yy = combine(Y[row], 1.0, g_trial, -1.0, g, dot_with=Y[row], num_threads=threads)  # y = g_new - g
            keep = sy > np.finfo(np.float64).eps * yy  # keep the pair only if it has positive curvature
        if keep:
            rho[row] = 1.0 / sy
            gamma = sy / yy
            if count < m:
                count += 1
            else:
                oldest = (oldest + 1) % rows
        f_old, f = f, search.f
        x = x_new
        g, g_trial = g_trial, g
        gnorm = max_abs(g, threads)
        nit += 1
        if stop(x, f):
            return result(C.CALLBACK_STOP, "stopped: the callback raised StopIteration")
        if gnorm > gtol and C.relative_decrease(f_old, f) <= ftol:
            return result(C.STALLED, C.stalled_message(gnorm, gtol, ftol))

