# cython: language_level=3
"""Box-constraint passes of L-BFGS-B: float64, nogil, OpenMP over fixed chunks.

Element-wise passes (projection, breakpoints) write each element from its
own inputs only; reductions (the projected gradient's inf-norm, the
feasible step along a direction, d . d) fold per-chunk partials in chunk
order, with chunks fixed by the array length alone (``fastopt._parallel``),
so every result has the same bits for any thread count.  Small arrays run
on the calling thread.  ``cauchy_walk`` is the sequential part of the
generalized Cauchy point (Byrd, Lu, Nocedal & Zhu 1995, Algorithm CP): a
nogil loop over the sorted breakpoints, O(m^2) work per breakpoint.
"""
import numpy as np

from libc.math cimport INFINITY, fabs
from libc.stdlib cimport free, malloc
from cython.parallel cimport prange

from fastopt._parallel cimport Split, chunk_stop, fold, ordered_reduce, ordered_sum, parallel_for, split


# --------------------------------------------------------------------------
# Chunk bodies
# --------------------------------------------------------------------------
cdef struct BoxArgs:
    double* out
    double* out2
    const double* x
    const double* d
    const double* lower
    const double* upper
    double scale


cdef inline double _clip(double v, double lo, double hi) noexcept nogil:
    # NaN stays NaN (neither comparison holds).
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v


cdef void _step_range(const void* args, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """out = P(x + scale d) (no d term when d is NULL)."""
    cdef const BoxArgs* a = <const BoxArgs*>args
    cdef Py_ssize_t i
    if a.d == NULL:
        for i in range(start, stop):
            a.out[i] = _clip(a.x[i], a.lower[i], a.upper[i])
    else:
        for i in range(start, stop):
            a.out[i] = _clip(a.x[i] + a.scale * a.d[i], a.lower[i], a.upper[i])


cdef double _projgrad_chunk(const void* args, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """max |P(x - g) - x| over the chunk, in L-BFGS-B's form (``d`` holds g); NaN sticks."""
    cdef const BoxArgs* a = <const BoxArgs*>args
    cdef Py_ssize_t i
    cdef double gi, best = 0
    for i in range(start, stop):
        gi = a.d[i]
        if gi < 0:
            if a.x[i] - a.upper[i] > gi:
                gi = a.x[i] - a.upper[i]
        elif gi > 0:
            if a.x[i] - a.lower[i] < gi:
                gi = a.x[i] - a.lower[i]
        best = fold(best, fabs(gi), True)
    return best


cdef double _breakpoints_chunk(const void* args, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """out = t_i (the step along -g at which x_i meets its bound; inf when it never does),
    out2 = d_i = -g_i where t_i > 0, else 0.  Returns the chunk's sum of d_i^2 (in element order)."""
    cdef const BoxArgs* a = <const BoxArgs*>args
    cdef Py_ssize_t i
    cdef double gi, ti, di, total = 0
    for i in range(start, stop):
        gi = a.d[i]
        if gi < 0:
            ti = (a.x[i] - a.upper[i]) / gi
        elif gi > 0:
            ti = (a.x[i] - a.lower[i]) / gi
        else:
            ti = INFINITY
        di = -gi if ti > 0 else 0.0
        a.out[i] = ti
        a.out2[i] = di
        total = total + di * di
    return total


cdef inline double _max_step_range(const BoxArgs* a, Py_ssize_t start, Py_ssize_t stop, double big) noexcept nogil:
    cdef Py_ssize_t i
    cdef double di, t, best = big
    for i in range(start, stop):
        di = a.d[i]
        if di > 0:
            t = (a.upper[i] - a.x[i]) / di
        elif di < 0:
            t = (a.lower[i] - a.x[i]) / di
        else:
            continue
        if t < best:
            best = t
    return best


cdef double max_step_n(const double* x, const double* d, const double* lower, const double* upper, double big,
                       Py_ssize_t n, int num_threads) noexcept nogil:
    """min(big, min over d_i != 0 of the step at which x_i + t d_i meets its bound); -1 when out of memory.

    A minimum is exact, so the order of the fold does not matter; chunks are still fixed and folded in order.
    """
    cdef BoxArgs args = BoxArgs(NULL, NULL, x, d, lower, upper, 0.0)
    cdef Split s = split(n, sizeof(double), num_threads)
    cdef Py_ssize_t c
    cdef double best = big
    cdef double* partial
    if s.team == 1:
        return _max_step_range(&args, 0, n, big)
    partial = <double*>malloc(s.nchunks * sizeof(double))
    if partial == NULL:
        return _max_step_range(&args, 0, n, big)
    for c in prange(s.nchunks, schedule="static", num_threads=s.team):
        partial[c] = _max_step_range(&args, c * s.chunk, chunk_stop(c, s.chunk, n), big)
    for c in range(s.nchunks):
        if partial[c] < best:
            best = partial[c]
    free(partial)
    return best


# --------------------------------------------------------------------------
# Python entry points
# --------------------------------------------------------------------------
cdef _check(Py_ssize_t n, const double[::1] v, str name):
    if v.shape[0] != n:
        raise ValueError(f"{name} has {v.shape[0]} elements, expected {n}")


def project(double[::1] out not None, const double[::1] x not None, const double[::1] lower not None,
            const double[::1] upper not None, double stp=0.0, const double[::1] d=None, int num_threads=1):
    """out = P(x + stp d): x (plus stp d when d is given) clipped into [lower, upper]; out may be x."""
    cdef Py_ssize_t n = out.shape[0]
    _check(n, x, "x")
    _check(n, lower, "lower")
    _check(n, upper, "upper")
    if d is not None:
        _check(n, d, "d")
    if n == 0:
        return
    cdef const double* dp = NULL
    if d is not None:
        dp = &d[0]
    cdef BoxArgs args = BoxArgs(&out[0], NULL, &x[0], dp, &lower[0], &upper[0], stp)
    with nogil:
        parallel_for(_step_range, &args, n, sizeof(double), num_threads)


def projected_gradient_norm(const double[::1] x not None, const double[::1] g not None,
                            const double[::1] lower not None, const double[::1] upper not None, int num_threads=1):
    """max_i |P(x - g)_i - x_i|, computed as L-BFGS-B's projgr does (x inside the box); NaN if g has a NaN."""
    cdef Py_ssize_t n = x.shape[0]
    _check(n, g, "g")
    _check(n, lower, "lower")
    _check(n, upper, "upper")
    if n == 0:
        return 0.0
    cdef BoxArgs args = BoxArgs(NULL, NULL, &x[0], &g[0], &lower[0], &upper[0], 0.0)
    cdef double best
    with nogil:
        best = ordered_reduce(_projgrad_chunk, &args, n, sizeof(double), num_threads, True)
    return best


def breakpoints(double[::1] t not None, double[::1] d not None, const double[::1] x not None,
                const double[::1] g not None, const double[::1] lower not None, const double[::1] upper not None,
                int num_threads=1):
    """t_i: the step along -g at which x_i reaches its bound (inf if never, 0 if it is there already);
    d_i = -g_i where t_i > 0, else 0.  Returns d . d (chunk sums folded in order)."""
    cdef Py_ssize_t n = x.shape[0]
    for v, name in ((t, "t"), (d, "d"), (g, "g"), (lower, "lower"), (upper, "upper")):
        _check(n, v, name)
    if n == 0:
        return 0.0
    cdef BoxArgs args = BoxArgs(&t[0], &d[0], &x[0], &g[0], &lower[0], &upper[0], 0.0)
    cdef double total
    with nogil:
        total = ordered_sum(_breakpoints_chunk, &args, n, sizeof(double), num_threads)
    return total


def max_step(const double[::1] x not None, const double[::1] d not None, const double[::1] lower not None,
             const double[::1] upper not None, double big=1e10, int num_threads=1):
    """The largest t <= big with lower <= x + t d <= upper (x inside the box)."""
    cdef Py_ssize_t n = x.shape[0]
    _check(n, d, "d")
    _check(n, lower, "lower")
    _check(n, upper, "upper")
    if n == 0:
        return big
    cdef double best
    with nogil:
        best = max_step_n(&x[0], &d[0], &lower[0], &upper[0], big, n, num_threads)
    return best


def cauchy_walk(const Py_ssize_t[::1] order not None, const double[::1] t not None, double[::1] d not None,
                const double[::1] x not None, const double[::1] lower not None, const double[::1] upper not None,
                const double[:, ::1] S not None, const double[:, ::1] Y not None, const Py_ssize_t[::1] rows not None,
                const double[:, ::1] M not None, double theta, double[::1] p not None, double[::1] c not None,
                double f1, double f2, Py_ssize_t nmoving):
    """Walk the projected-gradient path x(t) = P(x - t g) breakpoint by breakpoint (Algorithm CP).

    ``order``: the indices of the finite positive breakpoints ``t``, sorted by t.
    ``d``: -g with zeros where t == 0 (``breakpoints``); entries passed are zeroed.
    ``S``, ``Y``: the ring buffers; ``rows``: the k pairs in use, oldest first;
    W = [Y^T, theta S^T] (n x 2k), ``M`` (2k x 2k) the middle matrix, ``p`` = W^T d
    on entry (updated), ``c`` receives W^T (x_cp - x).  ``f1``, ``f2``: the
    model's first and second derivative along d at t = 0; ``nmoving``: the
    number of nonzero entries of d.

    Returns (tsum, passed): x_cp = x + tsum d (with the passed entries, now
    zero in d, at their bound ``order[:passed]``).
    """
    cdef Py_ssize_t nb = order.shape[0], k = rows.shape[0], k2 = 2 * k, n = x.shape[0]
    cdef Py_ssize_t j, a, b, i, r
    cdef double eps = np.finfo(np.float64).eps
    cdef double f2_org = f2, dtm, tj = 0, tj0, dt, tsum = 0, dibp, dibp2, zibp, wmc, wmp, wmw, vq
    if p.shape[0] != k2 or c.shape[0] != k2 or M.shape[0] != k2 or M.shape[1] != k2:
        raise ValueError("p, c and M must have 2k entries (rows)")
    for vec, name in ((t, "t"), (d, "d"), (lower, "lower"), (upper, "upper")):
        _check(n, vec, name)
    if k and (S.shape[1] != n or Y.shape[1] != n):
        raise ValueError("S and Y must have n columns")
    for j in range(nb):
        if not 0 <= order[j] < n:
            raise ValueError("order holds an index outside the vector")
    for j in range(k):
        if not 0 <= rows[j] < S.shape[0]:
            raise ValueError("rows holds an index outside the history")
    cdef double[::1] wbp = np.zeros(max(k2, 1))
    cdef Py_ssize_t passed = 0
    with nogil:
        for a in range(k2):
            c[a] = 0.0
        dtm = -f1 / f2
        for j in range(nb):
            i = order[j]
            tj0 = tj
            tj = t[i]
            dt = tj - tj0
            if dtm < dt:
                break
            tsum = tsum + dt
            passed = passed + 1
            nmoving = nmoving - 1
            dibp = d[i]
            d[i] = 0.0
            if dibp > 0:
                zibp = upper[i] - x[i]
            else:
                zibp = lower[i] - x[i]
            dibp2 = dibp * dibp
            f1 = f1 + dt * f2 + dibp2 - theta * dibp * zibp
            f2 = f2 - theta * dibp2
            if k > 0:
                for a in range(k2):
                    c[a] = c[a] + dt * p[a]
                for a in range(k):
                    r = rows[a]
                    wbp[a] = Y[r, i]
                    wbp[k + a] = theta * S[r, i]
                wmc = 0
                wmp = 0
                wmw = 0
                for a in range(k2):
                    vq = 0
                    for b in range(k2):
                        vq = vq + M[a, b] * wbp[b]
                    wmc = wmc + c[a] * vq
                    wmp = wmp + p[a] * vq
                    wmw = wmw + wbp[a] * vq
                for a in range(k2):
                    p[a] = p[a] - dibp * wbp[a]
                f1 = f1 + dibp * wmc
                f2 = f2 + 2.0 * dibp * wmp - dibp2 * wmw
            if f2 < eps * f2_org:
                f2 = eps * f2_org
            if nmoving <= 0:
                dtm = 0.0
                break
            dtm = -f1 / f2
        if dtm < 0 or dtm != dtm:
            dtm = 0.0
        tsum = tsum + dtm
        for a in range(k2):
            c[a] = c[a] + dtm * p[a]
    return tsum, passed
