# cython: language_level=3
"""Vector and matrix passes of the quasi-Newton methods: float64, nogil, OpenMP over fixed chunks.

Every reduction (dot products) sums per-chunk partial results in chunk
order, and chunks are fixed by the array length alone (``fastopt._parallel``),
so results are the same bits for any thread count.  Within a chunk, four
accumulators take every fourth element and are added in a fixed order:
the compiler keeps the written order of floating-point operations
(``-ffp-contract=off``, no ``-ffast-math``), and four independent sums keep
the adder busy where one would wait on itself.

L-BFGS keeps its history as two ``(m, n)`` C-contiguous arrays ``S`` and
``Y`` used as a ring buffer; the two-loop recursion runs entirely here, with
the update of each pass fused with the dot product the next pass needs.
BFGS keeps a dense inverse Hessian and updates it with one read of the
matrix for its two matrix-vector products and one read-write pass for the
rank-two update.
"""
import numpy as np

from cython.parallel cimport prange
from libc.math cimport fabs
from libc.stdlib cimport free, malloc

from fastopt._parallel cimport Split, chunk_stop, split


# --------------------------------------------------------------------------
# Chunk bodies
# --------------------------------------------------------------------------
cdef inline double _dot_range(const double* a, const double* b, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t i = start
    while i + 4 <= stop:
        s0 = s0 + a[i] * b[i]
        s1 = s1 + a[i + 1] * b[i + 1]
        s2 = s2 + a[i + 2] * b[i + 2]
        s3 = s3 + a[i + 3] * b[i + 3]
        i = i + 4
    while i < stop:
        s0 = s0 + a[i] * b[i]
        i = i + 1
    return (s0 + s1) + (s2 + s3)


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
    cdef double m = 0, v
    cdef Py_ssize_t i
    for i in range(start, stop):
        v = fabs(a[i])
        if v > m or v != v:  # a NaN sticks, so a non-finite gradient never passes a tolerance
            m = v
    return m


# --------------------------------------------------------------------------
# Whole-array passes
# --------------------------------------------------------------------------
cdef double combine_n(double* q, double scale, const double* x, double alpha, const double* y, const double* s,
                      Py_ssize_t n, int num_threads) noexcept nogil:
    """q = scale x + alpha y (see _combine_range), then return s . q, in one pass over memory.

    The dot product is summed chunk by chunk, in chunk order, whatever the
    number of threads (one thread walks the same chunks).
    """
    cdef Split sp = split(n, sizeof(double), num_threads)
    cdef Py_ssize_t c
    cdef double total = 0
    cdef double* partial = NULL
    if sp.team > 1:
        partial = <double*>malloc(sp.nchunks * sizeof(double))
    if partial == NULL:  # one thread (or no memory for the partial sums): the same chunks in turn
        for c in range(sp.nchunks):
            total = total + _combine_range(q, scale, x, alpha, y, s, c * sp.chunk, chunk_stop(c, sp.chunk, n))
        return total
    for c in prange(sp.nchunks, schedule="static", num_threads=sp.team):
        partial[c] = _combine_range(q, scale, x, alpha, y, s, c * sp.chunk, chunk_stop(c, sp.chunk, n))
    for c in range(sp.nchunks):
        total = total + partial[c]
    free(partial)
    return total


cdef double max_abs_n(const double* a, Py_ssize_t n, int num_threads) noexcept nogil:
    """max |a_i| (NaN if any element is NaN; 0 for an empty array)."""
    cdef Split sp = split(n, sizeof(double), num_threads)
    cdef Py_ssize_t c
    cdef double best = 0, v
    cdef double* partial = NULL
    if sp.team > 1:
        partial = <double*>malloc(sp.nchunks * sizeof(double))
    if partial == NULL:
        return _max_abs_range(a, 0, n)
    for c in prange(sp.nchunks, schedule="static", num_threads=sp.team):
        partial[c] = _max_abs_range(a, c * sp.chunk, chunk_stop(c, sp.chunk, n))
    for c in range(sp.nchunks):
        v = partial[c]
        if v > best or v != v:
            best = v
    free(partial)
    return best


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


cdef void bfgs_matvecs_n(const double* H, const double* g, const double* y, double* Hg, double* Hy,
                         Py_ssize_t n, int num_threads) noexcept nogil:
    """Hg = H g and Hy = H y with one read of the symmetric n x n matrix H (row by row)."""
    cdef Split sp = split(n * n, sizeof(double), num_threads)
    cdef Py_ssize_t r
    if sp.team == 1:
        for r in range(n):
            Hg[r] = _dot_range(H + r * n, g, 0, n)
            Hy[r] = _dot_range(H + r * n, y, 0, n)
        return
    for r in prange(n, schedule="static", num_threads=sp.team):
        Hg[r] = _dot_range(H + r * n, g, 0, n)
        Hy[r] = _dot_range(H + r * n, y, 0, n)


cdef void bfgs_update_n(double* H, const double* s, const double* Hy, double a, double b,
                        Py_ssize_t n, int num_threads) noexcept nogil:
    """H += a s s^T - b (Hy s^T + s Hy^T): the BFGS inverse update, one read-write pass over H."""
    cdef Split sp = split(n * n, sizeof(double), num_threads)
    cdef Py_ssize_t r
    if sp.team == 1:
        for r in range(n):
            _rank2_row(H + r * n, s, Hy, a * s[r] - b * Hy[r], b * s[r], n)
        return
    for r in prange(n, schedule="static", num_threads=sp.team):
        _rank2_row(H + r * n, s, Hy, a * s[r] - b * Hy[r], b * s[r], n)


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
             const double[:, ::1] Y not None, const double[::1] rho not None, Py_ssize_t oldest, Py_ssize_t count, double gamma, int num_threads=1):
    """d = -H g for the L-BFGS matrix held in the ring buffer (S, Y, rho); return g . d.  See two_loop_n."""
    cdef Py_ssize_t n = d.shape[0], m = S.shape[0]
    _same_length(n, g, "g")
    if S.shape[1] != n or Y.shape[0] != m or Y.shape[1] != n or rho.shape[0] != m:
        raise ValueError("S and Y must be (m, n) and rho (m,) for the n of d")
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


cdef _same_length(Py_ssize_t n, const double[::1] v, str name):
    if v is not None and v.shape[0] != n:
        raise ValueError(f"{name} has {v.shape[0]} elements, expected {n}")


cdef double[::1] _scratch(Py_ssize_t n):
    return np.empty(n)
