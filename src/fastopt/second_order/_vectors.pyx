# cython: language_level=3
"""Vector and matrix passes of the quasi-Newton methods: float64, nogil, OpenMP over fixed chunks.

Every reduction (dot products, maxima) folds per-chunk partial results in
chunk order, and chunks are fixed by the array length alone
(``fastopt._parallel``), so results are the same bits for any thread count.
Within a chunk a dot product is a four-lane ``lane_sum``; the new-pair pass sums its five products
in two lanes (``csrc/fastopt_pair_dots.h``).

L-BFGS keeps its history as two ``(m, n)`` C-contiguous arrays ``S`` and
``Y`` used as a ring buffer.  The minimizer never runs the two-loop recursion
over the vectors: it keeps the dot products the recursion needs (s_i . y_j,
y_i . y_j, g . s_i, g . y_i) and runs the recursion on them (``lbfgs_direction``:
O(m^2) numbers, then one pass that sums the direction from the history), and
one pass per accepted step stores the new pair and computes its dot products
with the history and the new gradient (``lbfgs_new_pair``).  That is two
reads of the history per iteration where the recursion over vectors makes
2m passes over memory (the "vector-free" form of Chen et al., NIPS 2014).
``two_loop`` is the textbook recursion over the vectors, for products with
arbitrary vectors (the inverse-Hessian operator) and as the tests' yardstick.
BFGS keeps a dense inverse Hessian and updates it with one read of the
matrix for its two matrix-vector products and one read-write pass for the
rank-two update.
"""
import numpy as np

from libc.math cimport fabs
from libc.stdlib cimport free, malloc

from fastopt._parallel cimport (TIMES_Y, chunk_length, chunk_stop, fold, lane_sum, num_chunks, ordered_reduce,
                               ordered_sum, parallel_for, parallel_rows, split)


cdef extern from "fastopt_pair_dots.h" nogil:
    # out[0:5] = s_new . yr, y_new . sr, y_new . yr, g_new . sr, g_new . yr over [start, stop), in one pass.
    void fastopt_five_dots(const double* s_new, const double* y_new, const double* g_new, const double* sr,
                           const double* yr, Py_ssize_t start, Py_ssize_t stop, double* out)


cdef enum:
    HISTORY_BLOCK_CHUNKS = 16  # the history passes walk the rows over 16 chunks (64 KiB) at a time


# A history pass's work on chunks [first, last) (chunk indices, one block).
ctypedef void (*block_fn)(const void* args, Py_ssize_t first, Py_ssize_t last) noexcept nogil


cdef inline void _by_blocks(block_fn body, const void* args, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """``body`` over the whole chunks of [start, stop), HISTORY_BLOCK_CHUNKS at a time.

    Why blocks: each history row is then read as a long sequential stream (which the prefetchers follow)
    while the block's own vectors stay in cache.  Element-wise results and per-chunk sums do not depend
    on which block holds a chunk, so the result does not depend on the thread count.
    """
    cdef Py_ssize_t chunk = chunk_length(sizeof(double))
    cdef Py_ssize_t k, b, first = start // chunk, last = num_chunks(stop, chunk)
    for k in range(num_chunks(last - first, HISTORY_BLOCK_CHUNKS)):
        b = first + k * HISTORY_BLOCK_CHUNKS
        body(args, b, min(last, b + HISTORY_BLOCK_CHUNKS))


# --------------------------------------------------------------------------
# Chunk bodies
# --------------------------------------------------------------------------
cdef inline double _dot_range(const double* a, const double* b, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    # Four lanes: every result of the quasi-Newton methods depends on this order.
    return lane_sum(a, b, start, stop, 0.0, 1.0, TIMES_Y, 4)


cdef inline double _combine_range(double* q, double c, const double* x, double alpha, const double* y,
                                  const double* s, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """q = c x + alpha y over the range (q untouched when x is NULL; no y term when y is NULL),
    then return s . q over it (0 when s is NULL)."""
    cdef Py_ssize_t i
    if x != NULL and y != NULL:
        for i in range(start, stop):
            q[i] = c * x[i] + alpha * y[i]
    elif x != NULL:
        for i in range(start, stop):
            q[i] = c * x[i]
    if s == NULL:
        return 0.0
    return _dot_range(s, q, start, stop)


cdef inline double _max_abs_range(const double* a, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    # A NaN sticks (see fold), so a non-finite gradient never passes a tolerance.
    cdef double m = 0
    cdef Py_ssize_t i
    for i in range(start, stop):
        m = fold(m, fabs(a[i]), True)
    return m


# --------------------------------------------------------------------------
# Whole-array passes
# --------------------------------------------------------------------------
cdef struct CombineArgs:
    double* q
    double scale
    const double* x
    double alpha
    const double* y
    const double* s


cdef double _combine_chunk(const void* args, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef const CombineArgs* a = <const CombineArgs*>args
    return _combine_range(a.q, a.scale, a.x, a.alpha, a.y, a.s, start, stop)


cdef double combine_n(double* q, double scale, const double* x, double alpha, const double* y, const double* s,
                      Py_ssize_t n, int num_threads) noexcept nogil:
    """q = scale x + alpha y (see _combine_range), then return s . q, in one pass over memory."""
    cdef CombineArgs args = CombineArgs(q, scale, x, alpha, y, s)
    return ordered_sum(_combine_chunk, &args, n, sizeof(double), num_threads)


cdef double _max_abs_chunk(const void* args, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    return _max_abs_range(<const double*>args, start, stop)


cdef double max_abs_n(const double* a, Py_ssize_t n, int num_threads) noexcept nogil:
    """max |a_i| (NaN if any element is NaN; 0 for an empty array)."""
    return ordered_reduce(_max_abs_chunk, a, n, sizeof(double), num_threads, True)


cdef double two_loop_n(double* d, const double* g, const double* S, const double* Y, const double* rho,
                       double* alpha, Py_ssize_t m, Py_ssize_t oldest, Py_ssize_t count, double gamma,
                       Py_ssize_t n, int num_threads) noexcept nogil:
    """d = -H g for the L-BFGS inverse-Hessian approximation H (Nocedal & Wright, Algorithm 7.4).

    Pairs (S[k], Y[k]) live in rows of (m, n) arrays; the ``count`` in use
    start at row ``oldest`` and wrap around.  H0 = gamma I.  Starting from
    q = -g makes the result -H g directly.  Each history pair costs one
    pass per loop: the update of q is fused with the dot product the next
    pair needs, and the last pass returns g . d (the line search's slope).
    ``alpha`` is scratch space for ``count`` numbers.
    """
    cdef Py_ssize_t j, row, nxt
    cdef double dot_next, beta
    if count == 0:
        return combine_n(d, -gamma, g, 0.0, NULL, g, n, num_threads)
    row = (oldest + count - 1) % m
    dot_next = combine_n(d, -1.0, g, 0.0, NULL, S + row * n, n, num_threads)  # q = -g; s_newest . q
    for j in range(count - 1, -1, -1):
        row = (oldest + j) % m
        alpha[j] = rho[row] * dot_next
        nxt = (oldest + j - 1) % m
        dot_next = combine_n(d, 1.0, d, -alpha[j], Y + row * n, S + nxt * n if j > 0 else NULL, n, num_threads)
    dot_next = combine_n(d, gamma, d, 0.0, NULL, Y + oldest * n, n, num_threads)  # r = gamma q; y_oldest . r
    for j in range(count):
        row = (oldest + j) % m
        beta = rho[row] * dot_next
        nxt = (oldest + j + 1) % m
        dot_next = combine_n(d, 1.0, d, alpha[j] - beta, S + row * n, Y + nxt * n if j + 1 < count else g,
                             n, num_threads)
    return dot_next


cdef inline void _pair_chunks(double* s_new, double* y_new, const double* d, double stp, const double* g_new,
                              const double* g_old, const double* S, const double* Y, const Py_ssize_t* rows,
                              Py_ssize_t nrows, Py_ssize_t n, Py_ssize_t chunk, Py_ssize_t first, Py_ssize_t last,
                              double* partial) noexcept nogil:
    """For chunks first..last-1: store s_new = stp d and y_new = g_new - g_old, then write each chunk's
    products with every history row r (see fastopt_pair_dots.h) to partial[c * width + 5 k ...] and its
    max |g_new| (NaN-sticky) to partial[c * width + 5 nrows], width = 5 nrows + 1.

    The products with g_new are computed, not derived from g_old's (g_old . s + y . s): when the
    gradient shrinks by orders of magnitude in a step, that sum cancels and loses them.  Rows are read
    one after the other across the block (see _by_blocks).
    """
    cdef Py_ssize_t i, k, c, width = 5 * nrows + 1
    for i in range(first * chunk, chunk_stop(last - 1, chunk, n)):
        s_new[i] = stp * d[i]
        y_new[i] = g_new[i] - g_old[i]
    for k in range(nrows):
        for c in range(first, last):
            fastopt_five_dots(s_new, y_new, g_new, S + rows[k] * n, Y + rows[k] * n, c * chunk,
                              chunk_stop(c, chunk, n), partial + c * width + 5 * k)
    for c in range(first, last):
        partial[c * width + width - 1] = _max_abs_range(g_new, c * chunk, chunk_stop(c, chunk, n))


cdef struct PairArgs:
    double* s_new
    double* y_new
    const double* d
    double stp
    const double* g_new
    const double* g_old
    const double* S
    const double* Y
    const Py_ssize_t* rows
    Py_ssize_t nrows
    Py_ssize_t n
    double* partial


cdef void _pair_block(const void* args, Py_ssize_t first, Py_ssize_t last) noexcept nogil:
    cdef const PairArgs* a = <const PairArgs*>args
    _pair_chunks(a.s_new, a.y_new, a.d, a.stp, a.g_new, a.g_old, a.S, a.Y, a.rows, a.nrows, a.n,
                 chunk_length(sizeof(double)), first, last, a.partial)


cdef void _pair_run(const void* args, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    _by_blocks(_pair_block, args, start, stop)


cdef double lbfgs_new_pair_n(double* s_new, double* y_new, const double* d, double stp, const double* g_new,
                             const double* g_old, const double* S, const double* Y, const Py_ssize_t* rows,
                             Py_ssize_t nrows, double* dots, Py_ssize_t n, int num_threads) noexcept nogil:
    """One pass: the new pair (s_new = stp d, y_new = g_new - g_old) and its dot products with the history.

    ``rows`` lists the ``nrows`` ring rows to take products with (the new
    pair's own row included, so s_new . y_new and y_new . y_new come out
    too).  ``dots[5 k + j]`` gets, for row ``rows[k]``: s_new . y, y_new . s,
    y_new . y, g_new . s, g_new . y.  Returns max |g_new| (NaN-sticky).
    Per-chunk results are folded in chunk order: the same bits for any
    thread count.  Returns -1 if scratch memory could not be allocated.
    """
    cdef Py_ssize_t c, j, width = 5 * nrows + 1, nchunks = num_chunks(n, chunk_length(sizeof(double)))
    cdef double best = 0
    cdef double* partial = <double*>malloc(nchunks * width * sizeof(double))
    if partial == NULL:
        return -1
    cdef PairArgs args = PairArgs(s_new, y_new, d, stp, g_new, g_old, S, Y, rows, nrows, n, partial)
    parallel_for(_pair_run, &args, n, sizeof(double), num_threads)
    for j in range(width - 1):
        dots[j] = 0
    for c in range(nchunks):
        for j in range(width - 1):
            dots[j] = dots[j] + partial[c * width + j]
        best = fold(best, partial[c * width + width - 1], True)
    free(partial)
    return best


cdef struct DirectionArgs:
    double* d
    double cg
    const double* g
    const double* S
    const double* Y
    const Py_ssize_t* rows
    const double* a
    const double* b
    Py_ssize_t k
    Py_ssize_t n
    double* partial


cdef void _direction_block(const void* args, Py_ssize_t first, Py_ssize_t last) noexcept nogil:
    """d = cg g + sum_j (a_j y_j + b_j s_j) over chunks [first, last), rows in the given order, and each
    chunk's g . d to partial[c]."""
    cdef const DirectionArgs* p = <const DirectionArgs*>args
    cdef Py_ssize_t chunk = chunk_length(sizeof(double))
    cdef Py_ssize_t i, j, c, lo = first * chunk, hi = chunk_stop(last - 1, chunk, p.n)
    cdef const double* sr
    cdef const double* yr
    cdef double aj, bj
    for i in range(lo, hi):
        p.d[i] = p.cg * p.g[i]
    for j in range(p.k):
        sr = p.S + p.rows[j] * p.n
        yr = p.Y + p.rows[j] * p.n
        aj = p.a[j]
        bj = p.b[j]
        for i in range(lo, hi):
            p.d[i] = p.d[i] + aj * yr[i] + bj * sr[i]
    for c in range(first, last):
        p.partial[c] = _dot_range(p.g, p.d, c * chunk, chunk_stop(c, chunk, p.n))


cdef void _direction_run(const void* args, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    _by_blocks(_direction_block, args, start, stop)


cdef double _coefficients(const double* SY, const double* YY, Py_ssize_t ld, const double* gS, const double* gY,
                          const double* rho, const Py_ssize_t* rows, Py_ssize_t k, double gamma,
                          double* a, double* b, double* alpha) noexcept nogil:
    """The two-loop recursion (Nocedal & Wright, Algorithm 7.4) on coefficients instead of vectors.

    Every vector the recursion forms is cg g + sum_j (a_j y_j + b_j s_j);
    its dot product with a history vector is then a sum over the stored
    products SY[r, c] = s_r . y_c, YY[r, c] = y_r . y_c, gS[r] = g . s_r and
    gY[r] = g . y_r (rows ``rows[0]``, oldest, to ``rows[k-1]``, newest).
    Starting from -g gives -H g.  Fills a, b; returns cg.
    """
    cdef Py_ssize_t i, j, ri
    cdef double cg = -1.0, t
    for j in range(k):
        a[j] = 0
        b[j] = 0
    for i in range(k - 1, -1, -1):
        ri = rows[i]
        t = cg * gS[ri]
        for j in range(i + 1, k):
            t = t + a[j] * SY[ri * ld + rows[j]]
        alpha[i] = rho[ri] * t
        a[i] = -alpha[i]
    cg = gamma * cg
    for j in range(k):
        a[j] = gamma * a[j]
    for i in range(k):
        ri = rows[i]
        t = cg * gY[ri]
        for j in range(k):
            t = t + a[j] * YY[ri * ld + rows[j]]
        for j in range(i):
            t = t + b[j] * SY[rows[j] * ld + ri]
        b[i] = alpha[i] - rho[ri] * t
    return cg


cdef double lbfgs_direction_n(double* d, const double* g, const double* S, const double* Y, const double* rho,
                              const double* SY, const double* YY, Py_ssize_t ld, const double* gS, const double* gY,
                              const Py_ssize_t* rows, Py_ssize_t k, double gamma, double* scratch,
                              Py_ssize_t n, int num_threads) noexcept nogil:
    """d = -H g from the stored products (see _coefficients) and one pass over the history; returns g . d.

    ``scratch`` holds 3 k numbers and then one per chunk of n.  The slope g . d is summed per chunk, in
    chunk order, from the d actually stored.
    """
    cdef double* a = scratch
    cdef double* b = scratch + k
    cdef double cg = _coefficients(SY, YY, ld, gS, gY, rho, rows, k, gamma, a, b, scratch + 2 * k)
    cdef double* partial = scratch + 3 * k
    cdef Py_ssize_t c, nchunks = num_chunks(n, chunk_length(sizeof(double)))
    cdef double total = 0
    cdef DirectionArgs args = DirectionArgs(d, cg, g, S, Y, rows, a, b, k, n, partial)
    parallel_for(_direction_run, &args, n, sizeof(double), num_threads)
    for c in range(nchunks):
        total = total + partial[c]
    return total


cdef struct MatrixArgs:
    double* H
    const double* u     # g, or s for the update
    const double* v     # y, or Hy for the update
    double* Hu          # Hg; NULL for the update
    double* Hv          # Hy
    double a, b         # the update's coefficients
    Py_ssize_t n


cdef void _matvecs_row(const void* args, Py_ssize_t r) noexcept nogil:
    cdef const MatrixArgs* m = <const MatrixArgs*>args
    m.Hu[r] = _dot_range(m.H + r * m.n, m.u, 0, m.n)
    m.Hv[r] = _dot_range(m.H + r * m.n, m.v, 0, m.n)


cdef void bfgs_matvecs_n(const double* H, const double* g, const double* y, double* Hg, double* Hy,
                         Py_ssize_t n, int num_threads) noexcept nogil:
    """Hg = H g and Hy = H y with one read of the symmetric n x n matrix H (row by row)."""
    cdef MatrixArgs args = MatrixArgs(<double*>H, g, y, Hg, Hy, 0.0, 0.0, n)
    parallel_rows(_matvecs_row, &args, n, split(n * n, sizeof(double), num_threads).team)


cdef void _update_row(const void* args, Py_ssize_t r) noexcept nogil:
    cdef const MatrixArgs* m = <const MatrixArgs*>args
    _rank2_row(m.H + r * m.n, m.u, m.v, m.a * m.u[r] - m.b * m.v[r], m.b * m.u[r], m.n)


cdef void bfgs_update_n(double* H, const double* s, const double* Hy, double a, double b,
                        Py_ssize_t n, int num_threads) noexcept nogil:
    """H += a s s^T - b (Hy s^T + s Hy^T): the BFGS inverse update, one read-write pass over H."""
    cdef MatrixArgs args = MatrixArgs(H, s, Hy, NULL, NULL, a, b, n)
    parallel_rows(_update_row, &args, n, split(n * n, sizeof(double), num_threads).team)


cdef inline void _rank2_row(double* row, const double* s, const double* Hy, double coef_s, double coef_hy,
                            Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        row[j] = row[j] + (coef_s * s[j] - coef_hy * Hy[j])


# --------------------------------------------------------------------------
# Python entry points (the drivers check shapes; these check only what keeps them in bounds)
# --------------------------------------------------------------------------
def combine(double[::1] out not None, double scale, const double[::1] x not None, double alpha=0.0, const double[::1] y=None,
            const double[::1] dot_with=None, int num_threads=1):
    """out = scale x + alpha y (y optional); return dot_with . out (0.0 without dot_with).

    ``x`` may be ``out`` itself.  One pass over memory.
    """
    cdef Py_ssize_t n = out.shape[0]
    _same_length(n, x, "x")
    _same_length(n, y, "y")
    _same_length(n, dot_with, "dot_with")
    cdef const double* yp = &y[0] if y is not None and n else NULL
    cdef const double* sp = &dot_with[0] if dot_with is not None and n else NULL
    if n == 0:
        return 0.0
    with nogil:
        total = combine_n(&out[0], scale, &x[0], alpha, yp, sp, n, num_threads)
    return total


def dot(const double[::1] a not None, const double[::1] b not None, int num_threads=1):
    """a . b, summed in fixed chunks: the same bits for any thread count."""
    cdef Py_ssize_t n = a.shape[0]
    _same_length(n, b, "b")
    if n == 0:
        return 0.0
    with nogil:
        total = combine_n(<double*>&b[0], 1.0, NULL, 0.0, NULL, &a[0], n, num_threads)
    return total


def max_abs(const double[::1] a not None, int num_threads=1):
    """max |a_i|: NaN when any element is NaN, 0.0 for an empty array."""
    if a.shape[0] == 0:
        return 0.0
    with nogil:
        best = max_abs_n(&a[0], a.shape[0], num_threads)
    return best


def two_loop(double[::1] d not None, const double[::1] g not None, const double[:, ::1] S not None,
             const double[:, ::1] Y not None, const double[::1] rho not None, Py_ssize_t oldest, Py_ssize_t count,
             double gamma, int num_threads=1):
    """d = -H g for the L-BFGS matrix held in the ring buffer (S, Y, rho); return g . d.  See two_loop_n."""
    cdef Py_ssize_t n = d.shape[0], m = S.shape[0]
    _history_shapes(S, Y, n)
    _same_length(n, g, "g")
    if rho.shape[0] != m:
        raise ValueError(f"rho must have one entry per history row ({m})")
    if not 0 <= count <= m or not (count == 0 or 0 <= oldest < m):
        raise ValueError(f"count={count}, oldest={oldest} do not fit a history of {m}")
    if n == 0:
        return 0.0
    cdef double[::1] alpha = _scratch(max(count, 1))
    cdef double slope
    with nogil:
        slope = two_loop_n(&d[0], &g[0], &S[0, 0] if m else NULL, &Y[0, 0] if m else NULL,
                           &rho[0] if m else NULL, &alpha[0], m, oldest, count, gamma, n, num_threads)
    return slope


def lbfgs_new_pair(double[:, ::1] S not None, double[:, ::1] Y not None, Py_ssize_t new_row,
                   const Py_ssize_t[::1] rows not None, const double[::1] d not None, double stp,
                   const double[::1] g_new not None, const double[::1] g_old not None, double[:, ::1] dots not None,
                   int num_threads=1):
    """Store s = stp d and y = g_new - g_old in row ``new_row`` of S and Y; products in one pass.

    ``rows`` are the ring rows to take products with (normally the history
    followed by ``new_row``); ``dots`` (5, len(rows)) receives, per row r:
    s . y_r, y . s_r, y . y_r, g_new . s_r, g_new . y_r.  Returns max |g_new|
    (NaN if g_new has a NaN).  See ``lbfgs_new_pair_n``.
    """
    cdef Py_ssize_t n = d.shape[0], m = S.shape[0], nrows = rows.shape[0], j
    _history_shapes(S, Y, n)
    _same_length(n, g_new, "g_new")
    _same_length(n, g_old, "g_old")
    if not 0 <= new_row < m:
        raise ValueError(f"new_row={new_row} is not a row of the history ({m} rows)")
    for j in range(nrows):
        if not 0 <= rows[j] < m:
            raise ValueError(f"rows[{j}]={rows[j]} is not a row of the history ({m} rows)")
    if dots.shape[0] != 5 or dots.shape[1] != nrows:
        raise ValueError(f"dots must have shape (5, {nrows})")
    cdef double[::1] flat = np.empty(5 * nrows + 1)
    cdef double best
    if n == 0:
        dots[:, :] = 0.0
        return 0.0
    with nogil:
        best = lbfgs_new_pair_n(&S[new_row, 0], &Y[new_row, 0], &d[0], stp, &g_new[0], &g_old[0], &S[0, 0],
                                &Y[0, 0], &rows[0] if nrows else NULL, nrows, &flat[0], n, num_threads)
    if best == -1:
        raise MemoryError("no memory for the per-chunk products")
    for j in range(nrows):
        dots[0, j], dots[1, j], dots[2, j], dots[3, j], dots[4, j] = (
            flat[5 * j], flat[5 * j + 1], flat[5 * j + 2], flat[5 * j + 3], flat[5 * j + 4])
    return best


def lbfgs_direction(double[::1] d not None, const double[::1] g not None, const double[:, ::1] S not None,
                    const double[:, ::1] Y not None, const double[::1] rho not None, const double[:, ::1] SY not None,
                    const double[:, ::1] YY not None, const double[::1] gS not None, const double[::1] gY not None,
                    const Py_ssize_t[::1] rows not None, double gamma, int num_threads=1):
    """d = -H g for the L-BFGS matrix of the pairs in ``rows`` (oldest first), H0 = gamma I; return g . d.

    Uses the stored products SY[r, c] = s_r . y_c, YY[r, c] = y_r . y_c,
    gS[r] = g . s_r, gY[r] = g . y_r (for the rows listed) instead of
    passes over the vectors; one pass over the history then forms d.
    Equal to ``two_loop`` up to rounding.
    """
    cdef Py_ssize_t n = d.shape[0], m = S.shape[0], k = rows.shape[0], j
    _history_shapes(S, Y, n)
    _same_length(n, g, "g")
    if rho.shape[0] != m or gS.shape[0] != m or gY.shape[0] != m:
        raise ValueError(f"rho, gS and gY must have one entry per history row ({m})")
    if SY.shape[0] != m or SY.shape[1] != m or YY.shape[0] != m or YY.shape[1] != m:
        raise ValueError(f"SY and YY must be ({m}, {m})")
    for j in range(k):
        if not 0 <= rows[j] < m:
            raise ValueError(f"rows[{j}]={rows[j]} is not a row of the history ({m} rows)")
    if n == 0:
        return 0.0
    cdef double[::1] scratch = _scratch(3 * k + num_chunks(n, chunk_length(sizeof(double))))
    cdef double slope
    with nogil:
        slope = lbfgs_direction_n(&d[0], &g[0], &S[0, 0] if m else NULL, &Y[0, 0] if m else NULL,
                                  &rho[0] if m else NULL, &SY[0, 0] if m else NULL, &YY[0, 0] if m else NULL, m,
                                  &gS[0] if m else NULL, &gY[0] if m else NULL, &rows[0] if k else NULL, k, gamma,
                                  &scratch[0], n, num_threads)
    return slope


def bfgs_matvecs(const double[:, ::1] H not None, const double[::1] g not None, const double[::1] y not None,
                 double[::1] Hg not None, double[::1] Hy not None,
                 int num_threads=1):
    """Hg = H g, Hy = H y in one read of H."""
    cdef Py_ssize_t n = H.shape[0]
    if H.shape[1] != n:
        raise ValueError("H must be square")
    for vec, name in ((g, "g"), (y, "y"), (Hg, "Hg"), (Hy, "Hy")):
        _same_length(n, vec, name)
    if n == 0:
        return
    with nogil:
        bfgs_matvecs_n(&H[0, 0], &g[0], &y[0], &Hg[0], &Hy[0], n, num_threads)


def bfgs_update(double[:, ::1] H not None, const double[::1] s not None, const double[::1] Hy not None,
                double a, double b,
                int num_threads=1):
    """H += a s s^T - b (Hy s^T + s Hy^T), in place."""
    cdef Py_ssize_t n = H.shape[0]
    if H.shape[1] != n:
        raise ValueError("H must be square")
    _same_length(n, s, "s")
    _same_length(n, Hy, "Hy")
    if n == 0:
        return
    with nogil:
        bfgs_update_n(&H[0, 0], &s[0], &Hy[0], a, b, n, num_threads)


cdef _history_shapes(const double[:, ::1] S, const double[:, ::1] Y, Py_ssize_t n):
    if S.shape[1] != n or Y.shape[0] != S.shape[0] or Y.shape[1] != n:
        raise ValueError(f"S and Y must both be (m, {n}) for vectors of length {n}; got ({S.shape[0]}, {S.shape[1]}) "
                         f"and ({Y.shape[0]}, {Y.shape[1]})")


cdef _same_length(Py_ssize_t n, const double[::1] v, str name):
    if v is not None and v.shape[0] != n:
        raise ValueError(f"{name} has {v.shape[0]} elements, expected {n}")


cdef double[::1] _scratch(Py_ssize_t n):
    return np.empty(n)
