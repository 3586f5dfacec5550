# cython: language_level=3
"""Batch normalization kernels: nogil, OpenMP, float32/float64, fixed summation order.

An input of shape ``(N, C, *spatial)`` is handled as ``(N, C, S)`` with
``S = prod(spatial)`` (``S = 1`` for ``(N, C)``).  Channel ``c`` owns the
``N' = N * S`` elements ``x[n, c, s]``.

Statistics
----------
Per-channel sums are accumulated in double precision for both element types
(``lane_sum`` of ``fastopt._parallel``).
The mean and the centered sum of squares ``M2`` come from short two-pass
*pieces* merged in order with Chan et al.'s pairwise update::

    delta = mean_b - mean_a
    mean  = mean_a + delta * n_b / n
    M2    = M2_a + M2_b + delta**2 * n_a * n_b / n

A piece is read twice while it sits in L1 (two-pass, so a large common offset
costs no precision), and the whole input only once, instead of the three
passes of a plain mean-then-variance-then-normalize scheme.

Work split
----------
Two layouts, chosen from the shape alone (never from the thread count):

* ``S > 1`` (*planes*): one task per channel, run by one thread from start to
  finish -- statistics over the channel's ``N`` contiguous planes of ``S``
  elements in plane order, then the output pass over the same planes in
  reverse order, so it starts on the planes the statistics pass left in
  cache.  Threads take contiguous runs of channels; at most ``C`` threads.
* ``S == 1`` (*rows*): an ``(N, C)`` array read channel by channel would
  stride through memory and give small ``C`` little parallelism, so rows are
  cut into fixed tiles that each reduce every channel of their rows, leaving
  one partial result per channel; a second step merges a channel's partials
  in tile order, and a third pass writes the output tile by tile.  When
  ``C`` fits in a 256-byte row segment, a tile is a contiguous block of whole
  rows read as segments of ``K * C`` elements (``K`` rows), each position
  with its own accumulator -- the inner loop is contiguous and vectorized
  even for ``C = 1`` -- and a channel's ``K`` positions are added in order at
  the end of the tile.  Wider rows are cut into column tiles of equal width.
  Three parallel regions per call instead of one: threads are woken only for
  twice the usual work (``ROWS_CHUNKS``).

Both layouts reduce each channel in an order fixed by the shape, so results
are the same bits for any number of threads.  As in ``fastopt._parallel``,
small inputs run on the calling thread without an OpenMP region; every
step runs through ``parallel_rows``, over channels or tiles.

Element passes
--------------
The output ``y = (x - mean) * (weight * inv_std) + bias`` is computed in the
element type.  For float32 the mean is split into ``mean_hi + mean_lo``
(``mean_hi = float32(mean)``) and ``(x - mean_hi) - mean_lo`` is used:
``x - mean_hi`` is exact whenever ``x`` is within a factor of two of the
mean, so an input such as ``1e4 + noise`` keeps the accuracy of its noise.

Backward (training) uses per-channel sums ``sum(dy)`` and
``sum(dy * (x - mean))`` (double) and writes::

    dx = dy * k + ((x - mean) * q + r)
    k = weight * inv_std
    q = -k * inv_std**2 * sum(dy * (x - mean)) / N'
    r = -k * sum(dy) / N'

which is ``(1/N') inv_std (N' dy_hat - sum(dy_hat) - x_hat sum(dy_hat x_hat))``
with ``dy_hat = weight * dy`` rearranged so every per-element product uses a
per-channel coefficient.  In evaluation mode ``dx = dy * k``.

Argument validation belongs to ``fastopt.nn.batchnorm``; the entry points
here only refuse lengths that would make a kernel read or write out of bounds.
"""
from cpython.buffer cimport PyBUF_ANY_CONTIGUOUS, PyBuffer_Release, PyObject_GetBuffer
from cython cimport floating
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from fastopt._parallel cimport SQUARE, TIMES_Y, VALUE, Split, lane_sum, parallel_rows, split, team_size


cdef enum:
    PIECE_BYTES = 16384    # a two-pass piece: read twice while in L1
    TILE_ROW_BYTES = 256   # widest row segment of a rows-layout tile: 64 float32 or 32 float64
    TILE_MAX = 64          # TILE_ROW_BYTES / sizeof(float): sizes the tiles' stack arrays
    MIN_TILE_ROWS = 64     # rows per tile at least, so the partials stay small (<= 1/16 of x)
    ROWS_CHUNKS = 2        # a rows-layout thread gets at least twice the usual chunks (512 KiB)


ctypedef struct Moments:
    double n     # elements merged so far
    double mean
    double m2    # sum of squared deviations from mean


ctypedef struct Layout:
    Py_ssize_t N, C, S
    bint rows        # S == 1: tiles of rows; else one task per channel
    Py_ssize_t K     # rows layout: rows per segment when packed (C * itemsize <= 256), else 0
    Py_ssize_t W     # rows layout: elements per row segment of a tile, at most TILE_MAX
    Py_ssize_t R     # rows layout: rows per tile
    Py_ssize_t ntc   # rows layout: column tiles (1 when packed)
    Py_ssize_t nrb   # rows layout: row blocks
    Py_ssize_t ntasks
    int team         # threads; 1 means no OpenMP region


cdef inline Layout _layout(Py_ssize_t N, Py_ssize_t C, Py_ssize_t S, Py_ssize_t itemsize, int requested) noexcept nogil:
    cdef Layout L
    cdef Split sp = split(N * C * S, itemsize, requested)
    cdef Py_ssize_t widest = TILE_ROW_BYTES // itemsize, piece = PIECE_BYTES // itemsize
    L.N = N
    L.C = C
    L.S = S
    L.rows = S == 1 and C > 0
    L.K = L.W = L.R = L.ntc = L.nrb = 0
    L.ntasks = C
    if L.rows:
        if C <= widest:  # packed: K consecutive rows form one segment of W = K * C elements
            L.K = widest // C
            L.W = L.K * C
            L.ntc = 1
            L.R = (piece + C - 1) // C
            if L.R < MIN_TILE_ROWS:
                L.R = MIN_TILE_ROWS
            L.R = (L.R + L.K - 1) // L.K * L.K
        else:  # column tiles of (nearly) equal width W
            L.ntc = (C + widest - 1) // widest
            L.W = (C + L.ntc - 1) // L.ntc
            L.R = (piece + L.W - 1) // L.W
            if L.R < MIN_TILE_ROWS:
                L.R = MIN_TILE_ROWS
        L.nrb = (N + L.R - 1) // L.R
        L.ntasks = L.ntc * L.nrb
        sp.team = team_size(sp.nchunks // ROWS_CHUNKS, requested)
    L.team = sp.team
    if L.team > L.ntasks:
        L.team = <int>L.ntasks
    if L.team < 1:
        L.team = 1
    return L


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------
cdef inline Moments _merge(Moments a, double n, double mean, double m2) noexcept nogil:
    """Add a piece of ``n`` elements with the given mean and M2 to ``a`` (Chan et al.)."""
    cdef double total, delta, frac
    if a.n == 0:
        a.n = n
        a.mean = mean
        a.m2 = m2
        return a
    total = a.n + n
    delta = mean - a.mean
    frac = n / total
    a.mean = a.mean + delta * frac
    a.m2 = (a.m2 + m2) + (delta * delta) * (a.n * frac)
    a.n = total
    return a


cdef inline double _sum(const floating* p, Py_ssize_t n) noexcept nogil:
    return lane_sum(p, p, 0, n, 0.0, 1.0, VALUE, 8)


cdef inline double _sum_sq_dev(const floating* p, Py_ssize_t n, double m) noexcept nogil:
    """sum((p - m)**2) in double."""
    return lane_sum(p, p, 0, n, m, 1.0, SQUARE, 8)


cdef inline void _grad_sums(const floating* dy, const floating* x, Py_ssize_t n, double m,
                            double* sum_dy, double* sum_dyxc) noexcept nogil:
    """Add sum(dy) and sum(dy * (x - m)) over n elements (four lanes each; the second pass reads from L1)."""
    sum_dy[0] = sum_dy[0] + lane_sum(dy, dy, 0, n, 0.0, 1.0, VALUE, 4)
    sum_dyxc[0] = sum_dyxc[0] + lane_sum(x, dy, 0, n, m, 1.0, TIMES_Y, 4)


cdef inline void _split_mean(double mean, floating* hi, floating* lo) noexcept nogil:
    """mean ~= hi + lo in the element type (lo is 0 for float64)."""
    hi[0] = <floating>mean
    lo[0] = <floating>(mean - <double>hi[0])


cdef inline void _affine_run(const floating* x, floating* y, Py_ssize_t n,
                             floating mhi, floating mlo, floating scale, floating shift) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        y[i] = ((x[i] - mhi) - mlo) * scale + shift


cdef inline void _dx_train_run(const floating* dy, const floating* x, floating* dx, Py_ssize_t n,
                               floating mhi, floating mlo, floating k, floating q, floating r) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dx[i] = dy[i] * k + (((x[i] - mhi) - mlo) * q + r)


cdef inline void _dx_eval_run(const floating* dy, floating* dx, Py_ssize_t n, floating k) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        dx[i] = dy[i] * k


cdef inline double _weight_at(const floating* w, Py_ssize_t c) noexcept nogil:
    return <double>w[c] if w != NULL else 1.0


cdef inline void _store_param_grads(floating* dweight, floating* dbias, Py_ssize_t c, double sum_dy,
                                    double sum_dyxc, double inv_std, bint accumulate) noexcept nogil:
    if dweight != NULL:
        dweight[c] = (dweight[c] + <floating>(sum_dyxc * inv_std)) if accumulate else <floating>(sum_dyxc * inv_std)
    if dbias != NULL:
        dbias[c] = (dbias[c] + <floating>sum_dy) if accumulate else <floating>sum_dy


# --------------------------------------------------------------------------
# Planes layout (S > 1): one channel per task
# --------------------------------------------------------------------------
cdef inline Moments _channel_moments(const floating* xc, Py_ssize_t N, Py_ssize_t stride, Py_ssize_t S) noexcept nogil:
    """Mean and M2 of one channel (N planes of S elements, ``stride`` apart), by pieces."""
    cdef Py_ssize_t piece = PIECE_BYTES // sizeof(floating)
    cdef Py_ssize_t n, n1, s0, length, per
    cdef double total, m, q
    cdef Moments acc
    acc.n = 0
    acc.mean = 0
    acc.m2 = 0
    if S >= piece:  # pieces inside a plane
        for n in range(N):
            s0 = 0
            while s0 < S:
                length = piece if S - s0 > piece else S - s0
                m = _sum(xc + n * stride + s0, length) / <double>length
                q = _sum_sq_dev(xc + n * stride + s0, length, m)
                acc = _merge(acc, <double>length, m, q)
                s0 = s0 + length
    else:  # pieces of whole planes
        per = piece // S
        n = 0
        while n < N:
            n1 = n + per if N - n > per else N
            total = 0
            for s0 in range(n, n1):
                total = total + _sum(xc + s0 * stride, S)
            length = (n1 - n) * S
            m = total / <double>length
            q = 0
            for s0 in range(n, n1):
                q = q + _sum_sq_dev(xc + s0 * stride, S, m)
            acc = _merge(acc, <double>length, m, q)
            n = n1
    return acc


cdef inline void _affine_channel(const floating* x, floating* y, Py_ssize_t c, Py_ssize_t N, Py_ssize_t C,
                                 Py_ssize_t S, double mean, double inv_std, const floating* w,
                                 const floating* b) noexcept nogil:
    cdef floating mhi, mlo
    cdef floating scale = <floating>(inv_std * _weight_at(w, c))
    cdef floating shift = b[c] if b != NULL else 0
    cdef Py_ssize_t n, off
    _split_mean(mean, &mhi, &mlo)
    for n in range(N - 1, -1, -1):  # last planes first: the statistics pass left them in cache
        off = (n * C + c) * S
        _affine_run(x + off, y + off, S, mhi, mlo, scale, shift)


cdef inline void _forward_channel(const floating* x, floating* y, Py_ssize_t c, Py_ssize_t N, Py_ssize_t C,
                                  Py_ssize_t S, const floating* w, const floating* b, double eps,
                                  double* mean, double* inv_std, double* m2) noexcept nogil:
    cdef Moments mo = _channel_moments(x + c * S, N, C * S, S)
    cdef double inv = 1.0 / sqrt(mo.m2 / mo.n + eps)
    mean[c] = mo.mean
    inv_std[c] = inv
    m2[c] = mo.m2
    _affine_channel(x, y, c, N, C, S, mo.mean, inv, w, b)


cdef inline void _backward_channel(const floating* dy, const floating* x, floating* dx, Py_ssize_t c,
                                   Py_ssize_t N, Py_ssize_t C, Py_ssize_t S, const floating* w,
                                   const double* mean, const double* inv_std, floating* dweight,
                                   floating* dbias, bint training, bint accumulate) noexcept nogil:
    cdef double sum_dy = 0, sum_dyxc = 0, k, inv = inv_std[c], m = mean[c], cnt = <double>(N * S)
    cdef floating mhi, mlo
    cdef Py_ssize_t n, off
    if training or dweight != NULL or dbias != NULL:
        for n in range(N):
            off = (n * C + c) * S
            _grad_sums(dy + off, x + off, S, m, &sum_dy, &sum_dyxc)
        _store_param_grads(dweight, dbias, c, sum_dy, sum_dyxc, inv, accumulate)
    k = _weight_at(w, c) * inv
    if training:  # last planes first: the sums pass left them in cache
        _split_mean(m, &mhi, &mlo)
        for n in range(N - 1, -1, -1):
            off = (n * C + c) * S
            _dx_train_run(dy + off, x + off, dx + off, S, mhi, mlo, <floating>k,
                          <floating>(-k * (inv * inv) * sum_dyxc / cnt), <floating>(-k * sum_dy / cnt))
    else:
        for n in range(N - 1, -1, -1):
            off = (n * C + c) * S
            _dx_eval_run(dy + off, dx + off, S, <floating>k)


# --------------------------------------------------------------------------
# Rows layout (S == 1)
#
# Packed (C <= W): a tile is a block of R whole rows, contiguous in memory,
# read as segments of W = K * C elements (K rows); position j of a segment
# belongs to channel j % C.  Each position has its own accumulator (the
# loop vectorizes for any C), and a channel's K positions are added in
# position order at the end of the tile.
# Column tiles (C > W): a tile is R rows by up to W columns.
# --------------------------------------------------------------------------
cdef inline void _tile_bounds(const Layout* L, Py_ssize_t t, Py_ssize_t* r0, Py_ssize_t* r1,
                              Py_ssize_t* c0, Py_ssize_t* c1) noexcept nogil:
    """Tile t covers rows [r0, r1) and columns [c0, c1); tiles run row block by row block."""
    cdef Py_ssize_t rb = t // L.ntc, ct = t % L.ntc
    r0[0] = rb * L.R
    r1[0] = r0[0] + L.R if L.N - r0[0] > L.R else L.N
    c0[0] = ct * L.W if L.K == 0 else 0
    c1[0] = (c0[0] + L.W if L.C - c0[0] > L.W else L.C) if L.K == 0 else L.C


cdef inline void _fold(const double* a, Py_ssize_t C, Py_ssize_t K, double* out) noexcept nogil:
    """out[c] = a[c] + a[C + c] + ... + a[(K - 1) C + c], added in that order."""
    cdef Py_ssize_t c, k
    cdef double s
    for c in range(C):
        s = a[c]
        for k in range(1, K):
            s = s + a[k * C + c]
        out[c] = s


cdef inline void _spread(const double* v, Py_ssize_t C, Py_ssize_t K, double* out) noexcept nogil:
    """out[k C + c] = v[c]: a per-channel value at every position of a packed segment."""
    cdef Py_ssize_t c, k
    for k in range(K):
        for c in range(C):
            out[k * C + c] = v[c]


cdef inline void _spread_coef(const floating* v, Py_ssize_t C, Py_ssize_t K, floating* out) noexcept nogil:
    cdef Py_ssize_t c, k
    for k in range(K):
        for c in range(C):
            out[k * C + c] = v[c]


cdef inline void _packed_moments(const floating* x, const Layout* L, Py_ssize_t t, double* pmean,
                                 double* pm2) noexcept nogil:
    """Two-pass mean and M2 per channel of packed tile t, stored at [t, channel] of pmean/pm2."""
    cdef Py_ssize_t r0, r1, c0, c1, i, j, c, length, C = L.C, W = L.W
    cdef double a[TILE_MAX]
    cdef double m[TILE_MAX]
    cdef double s[TILE_MAX]
    cdef double d, d2, cnt
    cdef const floating* p
    _tile_bounds(L, t, &r0, &r1, &c0, &c1)
    p = x + r0 * C
    length = (r1 - r0) * C
    cnt = <double>(r1 - r0)
    for j in range(W):
        a[j] = 0
    i = 0
    while i + 2 * W <= length:  # two segments per update of the accumulators
        for j in range(W):
            a[j] = a[j] + (<double>p[i + j] + <double>p[i + W + j])
        i = i + 2 * W
    while i + W <= length:
        for j in range(W):
            a[j] = a[j] + p[i + j]
        i = i + W
    for j in range(length - i):  # whole rows, fewer than K
        a[j] = a[j] + p[i + j]
    _fold(a, C, L.K, s)
    for c in range(C):
        s[c] = s[c] / cnt
        pmean[t * C + c] = s[c]
    _spread(s, C, L.K, m)
    for j in range(W):
        a[j] = 0
    i = 0
    while i + 2 * W <= length:
        for j in range(W):
            d = p[i + j] - m[j]
            d2 = p[i + W + j] - m[j]
            a[j] = a[j] + (d * d + d2 * d2)
        i = i + 2 * W
    while i + W <= length:
        for j in range(W):
            d = p[i + j] - m[j]
            a[j] = a[j] + d * d
        i = i + W
    for j in range(length - i):
        d = p[i + j] - m[j]
        a[j] = a[j] + d * d
    _fold(a, C, L.K, pm2 + t * C)


cdef inline void _tile_moments(const floating* x, const Layout* L, Py_ssize_t t, double* pmean,
                               double* pm2) noexcept nogil:
    """Two-pass mean and M2 per column of column tile t, stored at [row block, column] of pmean/pm2."""
    cdef Py_ssize_t r0, r1, c0, c1, n, j, T, C = L.C
    cdef double a[TILE_MAX]
    cdef double m[TILE_MAX]
    cdef double d, cnt
    cdef const floating* p
    _tile_bounds(L, t, &r0, &r1, &c0, &c1)
    T = c1 - c0
    cnt = <double>(r1 - r0)
    for j in range(T):
        a[j] = 0
    for n in range(r0, r1):
        p = x + n * C + c0
        for j in range(T):
            a[j] = a[j] + p[j]
    for j in range(T):
        m[j] = a[j] / cnt
        a[j] = 0
    for n in range(r0, r1):
        p = x + n * C + c0
        for j in range(T):
            d = p[j] - m[j]
            a[j] = a[j] + d * d
    n = (r0 // L.R) * C + c0
    for j in range(T):
        pmean[n + j] = m[j]
        pm2[n + j] = a[j]


cdef inline void _rows_moments(const floating* x, const Layout* L, Py_ssize_t t, double* pmean,
                               double* pm2) noexcept nogil:
    if L.K:
        _packed_moments(x, L, t, pmean, pm2)
    else:
        _tile_moments(x, L, t, pmean, pm2)


cdef inline void _packed_grad_sums(const floating* dy, const floating* x, const Layout* L, Py_ssize_t t,
                                   const double* mean, double* psdy, double* psdyxc) noexcept nogil:
    """sum(dy) and sum(dy * (x - mean)) per channel of packed tile t, stored at [t, channel]."""
    cdef Py_ssize_t r0, r1, c0, c1, i, j, length, C = L.C, W = L.W
    cdef double a[TILE_MAX]
    cdef double b[TILE_MAX]
    cdef double m[TILE_MAX]
    cdef double g, g2
    cdef const floating* p
    cdef const floating* q
    _tile_bounds(L, t, &r0, &r1, &c0, &c1)
    p = dy + r0 * C
    q = x + r0 * C
    length = (r1 - r0) * C
    _spread(mean, C, L.K, m)
    for j in range(W):
        a[j] = 0
        b[j] = 0
    i = 0
    while i + 2 * W <= length:  # two segments per update of the accumulators
        for j in range(W):
            g = p[i + j]
            g2 = p[i + W + j]
            a[j] = a[j] + (g + g2)
            b[j] = b[j] + (g * (q[i + j] - m[j]) + g2 * (q[i + W + j] - m[j]))
        i = i + 2 * W
    while i + W <= length:
        for j in range(W):
            g = p[i + j]
            a[j] = a[j] + g
            b[j] = b[j] + g * (q[i + j] - m[j])
        i = i + W
    for j in range(length - i):
        g = p[i + j]
        a[j] = a[j] + g
        b[j] = b[j] + g * (q[i + j] - m[j])
    _fold(a, C, L.K, psdy + t * C)
    _fold(b, C, L.K, psdyxc + t * C)


cdef inline void _tile_grad_sums(const floating* dy, const floating* x, const Layout* L, Py_ssize_t t,
                                 const double* mean, double* psdy, double* psdyxc) noexcept nogil:
    """sum(dy) and sum(dy * (x - mean)) per column of column tile t, stored at [row block, column]."""
    cdef Py_ssize_t r0, r1, c0, c1, n, j, T, C = L.C
    cdef double a[TILE_MAX]
    cdef double b[TILE_MAX]
    cdef double g
    cdef const floating* p
    cdef const floating* q
    _tile_bounds(L, t, &r0, &r1, &c0, &c1)
    T = c1 - c0
    mean = mean + c0
    for j in range(T):
        a[j] = 0
        b[j] = 0
    for n in range(r0, r1):
        p = dy + n * C + c0
        q = x + n * C + c0
        for j in range(T):
            g = p[j]
            a[j] = a[j] + g
            b[j] = b[j] + g * (q[j] - mean[j])
    n = (r0 // L.R) * C + c0
    for j in range(T):
        psdy[n + j] = a[j]
        psdyxc[n + j] = b[j]


cdef inline void _rows_grad_sums(const floating* dy, const floating* x, const Layout* L, Py_ssize_t t,
                                 const double* mean, double* psdy, double* psdyxc) noexcept nogil:
    if L.K:
        _packed_grad_sums(dy, x, L, t, mean, psdy, psdyxc)
    else:
        _tile_grad_sums(dy, x, L, t, mean, psdy, psdyxc)


cdef inline void _rows_affine(const floating* x, floating* y, const Layout* L, Py_ssize_t t,
                              const floating* coef) noexcept nogil:
    """y = ((x - hi) - lo) * scale + shift over tile t; coef rows (C each): hi, lo, scale, shift."""
    cdef Py_ssize_t r0, r1, c0, c1, i, j, n, length, W, C = L.C
    cdef floating hi[TILE_MAX]
    cdef floating lo[TILE_MAX]
    cdef floating sc[TILE_MAX]
    cdef floating sh[TILE_MAX]
    _tile_bounds(L, t, &r0, &r1, &c0, &c1)
    if L.K:  # one contiguous run of whole rows, per-position coefficients
        W = L.W
        _spread_coef(coef, C, L.K, hi)
        _spread_coef(coef + C, C, L.K, lo)
        _spread_coef(coef + 2 * C, C, L.K, sc)
        _spread_coef(coef + 3 * C, C, L.K, sh)
        x = x + r0 * C
        y = y + r0 * C
        length = (r1 - r0) * C
    else:  # rows of W columns
        W = c1 - c0
        for j in range(W):
            hi[j] = coef[c0 + j]
            lo[j] = coef[C + c0 + j]
            sc[j] = coef[2 * C + c0 + j]
            sh[j] = coef[3 * C + c0 + j]
        x = x + r0 * C + c0
        y = y + r0 * C + c0
        length = (r1 - r0) * C
    i = 0
    n = L.W if L.K else C  # distance between segments
    while i + W <= length:
        for j in range(W):
            y[i + j] = ((x[i + j] - hi[j]) - lo[j]) * sc[j] + sh[j]
        i = i + n
    for j in range(length - i if length - i < W else W):
        y[i + j] = ((x[i + j] - hi[j]) - lo[j]) * sc[j] + sh[j]


cdef inline void _rows_dx(const floating* dy, const floating* x, floating* dx, const Layout* L, Py_ssize_t t,
                          const floating* coef, bint training) noexcept nogil:
    """dx over tile t; coef rows (C each): hi, lo, k, q, r -- only k in evaluation mode."""
    cdef Py_ssize_t r0, r1, c0, c1, i, j, n, off, length, W, C = L.C
    cdef floating hi[TILE_MAX]
    cdef floating lo[TILE_MAX]
    cdef floating k[TILE_MAX]
    cdef floating q[TILE_MAX]
    cdef floating r[TILE_MAX]
    _tile_bounds(L, t, &r0, &r1, &c0, &c1)
    if L.K:
        W = L.W
        n = W
        off = r0 * C
        _spread_coef(coef + 2 * C, C, L.K, k)
        if training:
            _spread_coef(coef, C, L.K, hi)
            _spread_coef(coef + C, C, L.K, lo)
            _spread_coef(coef + 3 * C, C, L.K, q)
            _spread_coef(coef + 4 * C, C, L.K, r)
    else:
        W = c1 - c0
        n = C
        off = r0 * C + c0
        for j in range(W):
            k[j] = coef[2 * C + c0 + j]
            if training:
                hi[j] = coef[c0 + j]
                lo[j] = coef[C + c0 + j]
                q[j] = coef[3 * C + c0 + j]
                r[j] = coef[4 * C + c0 + j]
    dy = dy + off
    x = x + off
    dx = dx + off
    length = (r1 - r0) * C
    i = 0
    if training:
        while i + W <= length:
            for j in range(W):
                dx[i + j] = dy[i + j] * k[j] + (((x[i + j] - hi[j]) - lo[j]) * q[j] + r[j])
            i = i + n
        for j in range(length - i if length - i < W else W):
            dx[i + j] = dy[i + j] * k[j] + (((x[i + j] - hi[j]) - lo[j]) * q[j] + r[j])
    else:
        while i + W <= length:
            for j in range(W):
                dx[i + j] = dy[i + j] * k[j]
            i = i + n
        for j in range(length - i if length - i < W else W):
            dx[i + j] = dy[i + j] * k[j]


cdef inline void _rows_forward_channel(Py_ssize_t c, const Layout* L, const double* pmean, const double* pm2,
                                       const floating* w, const floating* b, double eps, double* mean,
                                       double* inv_std, double* m2, floating* coef) noexcept nogil:
    """Merge channel c's tile partials in row-block order; write its statistics and output coefficients."""
    cdef Py_ssize_t rb, C = L.C
    cdef Moments acc
    cdef double inv
    cdef floating hi, lo
    acc.n = 0
    acc.mean = 0
    acc.m2 = 0
    for rb in range(L.nrb):
        acc = _merge(acc, <double>(L.R if L.N - rb * L.R > L.R else L.N - rb * L.R),
                     pmean[rb * C + c], pm2[rb * C + c])
    inv = 1.0 / sqrt(acc.m2 / acc.n + eps)
    mean[c] = acc.mean
    inv_std[c] = inv
    m2[c] = acc.m2
    _split_mean(acc.mean, &hi, &lo)
    coef[c] = hi
    coef[C + c] = lo
    coef[2 * C + c] = <floating>(inv * _weight_at(w, c))
    coef[3 * C + c] = b[c] if b != NULL else 0


cdef inline void _rows_backward_channel(Py_ssize_t c, const Layout* L, const double* psdy, const double* psdyxc,
                                        const floating* w, const double* mean, const double* inv_std,
                                        floating* dweight, floating* dbias, bint training, bint sums,
                                        bint accumulate, floating* coef) noexcept nogil:
    """Combine channel c's partial sums in row-block order; write dweight/dbias and dx coefficients."""
    cdef Py_ssize_t rb, C = L.C
    cdef double sum_dy = 0, sum_dyxc = 0, inv = inv_std[c], k, cnt = <double>L.N
    cdef floating hi, lo
    if sums:
        for rb in range(L.nrb):
            sum_dy = sum_dy + psdy[rb * C + c]
            sum_dyxc = sum_dyxc + psdyxc[rb * C + c]
        _store_param_grads(dweight, dbias, c, sum_dy, sum_dyxc, inv, accumulate)
    k = _weight_at(w, c) * inv
    coef[2 * C + c] = <floating>k
    if training:
        _split_mean(mean[c], &hi, &lo)
        coef[c] = hi
        coef[C + c] = lo
        coef[3 * C + c] = <floating>(-k * (inv * inv) * sum_dyxc / cnt)
        coef[4 * C + c] = <floating>(-k * sum_dy / cnt)


# --------------------------------------------------------------------------
# Whole passes: each step runs on every channel or tile through parallel_rows
# --------------------------------------------------------------------------
cdef enum Step:
    FORWARD_CHANNEL      # planes layout: one channel's statistics and output
    AFFINE_CHANNEL       # planes layout: one channel's output from given statistics
    BACKWARD_CHANNEL     # planes layout: one channel's gradients
    TILE_MOMENTS         # rows layout, per tile ...
    TILE_AFFINE
    TILE_GRAD_SUMS
    TILE_DX
    CHANNEL_STATISTICS   # rows layout, per channel: merge the tiles' partials
    CHANNEL_COEFFICIENTS
    CHANNEL_GRADIENTS


ctypedef struct Pass:
    const Layout* L
    Step step
    bint single            # float32 elements, else float64
    bint training, sums, accumulate
    double eps
    const void* x
    const void* dy
    void* out              # y, or dx
    const void* w          # NULL: no weight
    const void* b          # NULL: no bias
    void* dweight          # NULL: not wanted
    void* dbias
    double* mean
    double* inv_std
    double* m2
    double* part_a         # rows layout: per tile (row block) and channel
    double* part_b
    void* coef             # rows layout: per-channel coefficients of the element type


cdef inline void _step(const Pass* a, Py_ssize_t r, floating tag) noexcept nogil:
    """Step ``a.step`` on channel or tile ``r`` for elements of ``tag``'s type (``tag`` only selects it)."""
    cdef const Layout* L = a.L
    cdef const floating* x = <const floating*>a.x
    cdef const floating* dy = <const floating*>a.dy
    cdef floating* out = <floating*>a.out
    cdef const floating* w = <const floating*>a.w
    cdef const floating* b = <const floating*>a.b
    cdef floating* coef = <floating*>a.coef
    cdef floating hi, lo
    if a.step == FORWARD_CHANNEL:
        _forward_channel(x, out, r, L.N, L.C, L.S, w, b, a.eps, a.mean, a.inv_std, a.m2)
    elif a.step == AFFINE_CHANNEL:
        _affine_channel(x, out, r, L.N, L.C, L.S, a.mean[r], a.inv_std[r], w, b)
    elif a.step == BACKWARD_CHANNEL:
        _backward_channel(dy, x, out, r, L.N, L.C, L.S, w, a.mean, a.inv_std, <floating*>a.dweight,
                          <floating*>a.dbias, a.training, a.accumulate)
    elif a.step == TILE_MOMENTS:
        _rows_moments(x, L, r, a.part_a, a.part_b)
    elif a.step == TILE_AFFINE:
        _rows_affine(x, out, L, r, coef)
    elif a.step == TILE_GRAD_SUMS:
        _rows_grad_sums(dy, x, L, r, a.mean, a.part_a, a.part_b)
    elif a.step == TILE_DX:
        _rows_dx(dy, x, out, L, r, coef, a.training)
    elif a.step == CHANNEL_STATISTICS:
        _rows_forward_channel(r, L, a.part_a, a.part_b, w, b, a.eps, a.mean, a.inv_std, a.m2, coef)
    elif a.step == CHANNEL_COEFFICIENTS:
        _split_mean(a.mean[r], &hi, &lo)
        coef[r] = hi
        coef[L.C + r] = lo
        coef[2 * L.C + r] = <floating>(a.inv_std[r] * _weight_at(w, r))
        coef[3 * L.C + r] = b[r] if b != NULL else 0
    else:  # CHANNEL_GRADIENTS
        _rows_backward_channel(r, L, a.part_a, a.part_b, w, a.mean, a.inv_std, <floating*>a.dweight,
                               <floating*>a.dbias, a.training, a.sums, a.accumulate, coef)


cdef void _task(const void* args, Py_ssize_t r) noexcept nogil:
    cdef const Pass* a = <const Pass*>args
    if a.single:
        _step(a, r, <float>0)
    else:
        _step(a, r, <double>0)


cdef inline void _run(Pass* a, Step step, Py_ssize_t count, int team) noexcept nogil:
    a.step = step
    parallel_rows(_task, a, count, team)


cdef void forward_n(Pass* a) noexcept nogil:
    """Training: batch statistics (mean, inv_std, m2) and the output; else the output from mean and inv_std.

    Rows layout scratch: part_a/part_b nrb * C (training), coef 4 * C.
    """
    cdef const Layout* L = a.L
    if not L.rows:
        _run(a, FORWARD_CHANNEL if a.training else AFFINE_CHANNEL, L.C, L.team)
        return
    if a.training:
        _run(a, TILE_MOMENTS, L.ntasks, L.team)
        _run(a, CHANNEL_STATISTICS, L.C, L.team)
    else:
        _run(a, CHANNEL_COEFFICIENTS, L.C, 1)
    _run(a, TILE_AFFINE, L.ntasks, L.team)


cdef void backward_n(Pass* a) noexcept nogil:
    """dx, and dweight/dbias where not NULL.  Rows layout scratch: part_a/part_b nrb * C, coef 5 * C."""
    cdef const Layout* L = a.L
    if not L.rows:
        _run(a, BACKWARD_CHANNEL, L.C, L.team)
        return
    if a.sums:
        _run(a, TILE_GRAD_SUMS, L.ntasks, L.team)
    _run(a, CHANNEL_GRADIENTS, L.C, L.team)
    _run(a, TILE_DX, L.ntasks, L.team)


# --------------------------------------------------------------------------
# Python entry points
# --------------------------------------------------------------------------
ctypedef struct Scratch:
    void* block      # the one allocation (free it)
    double* m2       # per channel
    double* part_a   # per row block and channel
    double* part_b
    void* coef       # per-channel coefficients of the element type


cdef Scratch _scratch(Py_ssize_t n_m2, Py_ssize_t n_part, Py_ssize_t n_coef, size_t itemsize) except *:
    """One malloc for a call's scratch arrays (cheaper than NumPy arrays for these few values)."""
    cdef Scratch s
    cdef size_t doubles = <size_t>(n_m2 + 2 * n_part)
    s.block = malloc(doubles * sizeof(double) + <size_t>n_coef * itemsize + 1)
    if s.block == NULL:
        raise MemoryError("batch norm scratch space")
    s.m2 = <double*>s.block
    s.part_a = s.m2 + n_m2
    s.part_b = s.part_a + n_part
    s.coef = <void*>(s.part_b + n_part)
    return s


cdef Pass _pass(const Layout* L, bint single, bint training, Scratch sc) noexcept:
    """A Pass with the layout, the scratch arrays and every other pointer NULL."""
    cdef Pass a
    memset(&a, 0, sizeof(Pass))
    a.L = L
    a.single = single
    a.training = training
    a.m2 = sc.m2
    a.part_a = sc.part_a
    a.part_b = sc.part_b
    a.coef = sc.coef
    return a


cdef inline void _need(Py_ssize_t got, Py_ssize_t want, str name) except *:
    if got != want:
        raise ValueError(f"{name} has {got} elements, expected {want}")


def first_overlap(list arrays, Py_ssize_t n_written):
    """(i, j), i < n_written, i < j, of the first two contiguous arrays that share memory; else None.

    None entries and empty arrays are skipped.  For the validation layer:
    a buffer-protocol read of each address, much cheaper than
    ``numpy.may_share_memory`` for every pair.
    """
    cdef Py_ssize_t i, j, n = len(arrays)
    cdef Py_buffer view
    cdef size_t[16] start
    cdef size_t[16] end
    if n > 16:
        raise ValueError("at most 16 arrays")
    for i in range(n):
        start[i] = end[i] = 0
        if arrays[i] is not None:
            PyObject_GetBuffer(arrays[i], &view, PyBUF_ANY_CONTIGUOUS)
            start[i] = <size_t>view.buf
            end[i] = start[i] + <size_t>view.len
            PyBuffer_Release(&view)
    for i in range(min(n_written, n)):
        if start[i] == end[i]:
            continue
        for j in range(i + 1, n):
            if start[j] != end[j] and start[i] < end[j] and start[j] < end[i]:
                return i, j
    return None


def layout(Py_ssize_t N, Py_ssize_t C, Py_ssize_t S, Py_ssize_t itemsize, int num_threads=1):
    """How a (N, C, S) input of ``itemsize``-byte elements is split: a dict (for tests and benchmarks)."""
    cdef Layout L = _layout(N, C, S, itemsize, num_threads)
    return {"rows": bool(L.rows), "packed_rows": L.K, "tile_rows": L.R, "tile_width": L.W, "tasks": L.ntasks,
            "threads": L.team}


def forward(const floating[::1] x not None, floating[::1] y not None, const floating[::1] weight,
            const floating[::1] bias, floating[::1] running_mean, floating[::1] running_var,
            double[::1] mean not None, double[::1] inv_std not None, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S,
            bint training, double momentum, double eps, int num_threads=1):
    """Batch-norm forward pass over ``x`` viewed as (N, C, S), written to ``y``.

    Training: the batch statistics go to ``mean`` and ``inv_std`` (double,
    length C), and ``running_mean``/``running_var`` (None to skip) are
    updated in place with ``momentum`` (unbiased variance).  Evaluation:
    ``mean`` and ``inv_std`` are inputs.  ``weight``/``bias`` may be None.
    """
    cdef Py_ssize_t total = N * C * S
    if N < 0 or C < 0 or S < 0:
        raise ValueError("N, C and S must be non-negative")
    _need(x.shape[0], total, "x")
    _need(y.shape[0], total, "y")
    _need(mean.shape[0], C, "mean")
    _need(inv_std.shape[0], C, "inv_std")
    if weight is not None:
        _need(weight.shape[0], C, "weight")
    if bias is not None:
        _need(bias.shape[0], C, "bias")
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must be given together")
    if running_mean is not None:
        _need(running_mean.shape[0], C, "running_mean")
        _need(running_var.shape[0], C, "running_var")
    if training and N * S < 2:
        raise ValueError("training needs more than one value per channel")
    if C == 0 or (total == 0 and not training):
        return
    cdef Layout L = _layout(N, C, S, sizeof(floating), num_threads)
    cdef const floating* w = &weight[0] if weight is not None else NULL
    cdef const floating* b = &bias[0] if bias is not None else NULL
    cdef Py_ssize_t c
    cdef double keep = 1.0 - momentum, unbias
    cdef Scratch sc = _scratch(C, L.nrb * C if L.rows and training else 0, 4 * C if L.rows else 0, sizeof(floating))
    cdef Pass a = _pass(&L, floating is float, training, sc)
    a.eps = eps
    a.x = &x[0]
    a.out = &y[0]
    a.w = w
    a.b = b
    a.mean = &mean[0]
    a.inv_std = &inv_std[0]
    try:
        with nogil:
            forward_n(&a)
        if training and running_mean is not None:
            unbias = 1.0 / <double>(N * S - 1)
            for c in range(C):
                running_mean[c] = <floating>(keep * running_mean[c] + momentum * mean[c])
                running_var[c] = <floating>(keep * running_var[c] + momentum * (sc.m2[c] * unbias))
    finally:
        free(sc.block)


def eval_statistics(const floating[::1] running_mean not None, const floating[::1] running_var not None,
                    double eps, double[::1] mean not None, double[::1] inv_std not None):
    """mean = running_mean and inv_std = 1 / sqrt(running_var + eps), in double."""
    cdef Py_ssize_t c, C = running_mean.shape[0]
    _need(running_var.shape[0], C, "running_var")
    _need(mean.shape[0], C, "mean")
    _need(inv_std.shape[0], C, "inv_std")
    for c in range(C):
        mean[c] = running_mean[c]
        inv_std[c] = 1.0 / sqrt(<double>running_var[c] + eps)


def backward(const floating[::1] dy not None, const floating[::1] x not None, floating[::1] dx not None,
             const floating[::1] weight, const double[::1] mean not None, const double[::1] inv_std not None,
             floating[::1] dweight, floating[::1] dbias, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S,
             bint training, bint accumulate=False, int num_threads=1):
    """Batch-norm backward pass over (N, C, S) arrays.

    Writes ``dx`` (which may be ``dy`` itself), and ``dweight`` = sum(dy * x_hat)
    and ``dbias`` = sum(dy) per channel unless they are None (added to their
    contents when ``accumulate``).  ``mean``/``inv_std`` are the statistics
    the forward pass used; ``weight`` is None for a non-affine layer.
    """
    cdef Py_ssize_t total = N * C * S
    cdef Py_ssize_t c
    if N < 0 or C < 0 or S < 0:
        raise ValueError("N, C and S must be non-negative")
    _need(dy.shape[0], total, "dy")
    _need(x.shape[0], total, "x")
    _need(dx.shape[0], total, "dx")
    _need(mean.shape[0], C, "mean")
    _need(inv_std.shape[0], C, "inv_std")
    if weight is not None:
        _need(weight.shape[0], C, "weight")
    if dweight is not None:
        _need(dweight.shape[0], C, "dweight")
    if dbias is not None:
        _need(dbias.shape[0], C, "dbias")
    if training and N * S < 2:
        raise ValueError("training needs more than one value per channel")
    cdef const floating* w = &weight[0] if weight is not None and C > 0 else NULL
    cdef floating* dw = &dweight[0] if dweight is not None and C > 0 else NULL
    cdef floating* db = &dbias[0] if dbias is not None and C > 0 else NULL
    if C == 0:
        return
    if total == 0:  # N or S is 0 (evaluation mode only): empty sums
        for c in range(C):
            if dw != NULL:
                dw[c] = dw[c] if accumulate else 0
            if db != NULL:
                db[c] = db[c] if accumulate else 0
        return
    cdef Layout L = _layout(N, C, S, sizeof(floating), num_threads)
    cdef bint sums = training or dw != NULL or db != NULL
    cdef Scratch sc = _scratch(0, L.nrb * C if L.rows and sums else 0, 5 * C if L.rows else 0, sizeof(floating))
    cdef Pass a = _pass(&L, floating is float, training, sc)
    a.sums = sums
    a.accumulate = accumulate
    a.x = &x[0]
    a.dy = &dy[0]
    a.out = &dx[0]
    a.w = w
    a.dweight = dw
    a.dbias = db
    a.mean = <double*>&mean[0]
    a.inv_std = <double*>&inv_std[0]
    try:
        with nogil:
            backward_n(&a)
    finally:
        free(sc.block)
