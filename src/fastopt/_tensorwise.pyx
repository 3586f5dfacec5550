# cython: language_level=3
"""Kernels of the update rules that need numbers of whole tensors (``fastopt._rules.TENSOR_RULES``).

A slot (one contiguous array: a ParamSet, a run of its tensors, or one
array) holds one or more tensors, and these rules need a number of each
tensor -- its norms, its row and column sums -- before any of its elements
can be updated.  So each step is a few passes: the reductions, a few
per-tensor scalars in double precision, then the update.

Determinism.  LAMB and LARS cut the slot into *pieces*: each tensor cut at
the slot's chunk boundaries (``fastopt._parallel``), listed in order
(:func:`pieces`).  Threads take runs of pieces; every piece stores its own
partial sums, and the calling thread adds them into each tensor's total in
piece order.  Adafactor works tensor by tensor in rows (a matrix's rows, a
vector's chunks) and column blocks of fixed width, each partial stored and
added in order.  Every cut depends on the shapes alone, so the results have
the same bits for any thread count.  Sums are accumulated in double; element
arithmetic is in the parameters' precision, as in the peers.

Python passes validated arrays (``fastopt.optim._tensor_rules``); the checks
here only keep the kernels in bounds.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport fabs, pow, sqrt, sqrtf
from libc.stdlib cimport free, malloc

import numpy as np

from fastopt._parallel cimport SQUARE, chunk_length, lane_sum, lane_total, ordered_sum, parallel_rows, split

cdef enum:
    LANES = 8  # running sums per piece: every LANES-th element in each, so the loops vectorize (see lane_sum)


cdef inline floating _root(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _lerp(floating start, floating end, floating weight) noexcept nogil:
    """torch.lerp's formula, as the element-wise kernels have it (fastopt/_update_rules.pyx.tp)."""
    if (weight if weight >= 0 else -weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (<floating>1 - weight)


cdef inline floating _floor(floating x, floating low) noexcept nogil:
    """torch.clamp(x, min=low): NaN stays NaN."""
    return low if x < low else x


cdef void* _data(object array, object dtype, Py_ssize_t n, bint writable, str name) except *:
    """The data pointer of a 1-D C-contiguous array of ``dtype`` and ``n`` elements (the caller keeps it alive)."""
    if (not isinstance(array, np.ndarray) or array.dtype != dtype or array.ndim != 1
            or not array.flags.c_contiguous or writable and not array.flags.writeable):
        raise ValueError(f"{name} must be a {'writeable ' if writable else ''}1-D contiguous {dtype} array")
    if array.shape[0] != n:
        raise ValueError(f"{name} has {array.shape[0]} elements, {n} expected")
    return <void*><size_t>array.__array_interface__["data"][0]


cdef object _private(object rows, Py_ssize_t columns, str name):
    """A private C-contiguous copy of the integer rows ``rows`` (``columns`` per row): the kernels read them
    without the GIL, so no other thread may change them between the checks and the passes."""
    copy = np.array(rows, dtype=np.intp, order="C", copy=True)
    if copy.ndim != 2 or copy.shape[1] != columns:
        raise ValueError(f"{name} must have {columns} columns, got shape {copy.shape}")
    return copy


cdef object _float_dtype(object array, str name):
    """``array``'s dtype, which must be native float32 or float64 (the only element types these kernels read)."""
    dtype = getattr(array, "dtype", None)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)) or getattr(array, "ndim", 0) != 1:
        raise ValueError(f"{name} must be a 1-D float32 or float64 array, got "
                         f"{getattr(array, 'dtype', type(array).__name__)}")
    return dtype


def pieces(bounds, Py_ssize_t itemsize):
    """``(start, stop, tensor)`` rows: each tensor ``[start, stop)`` of ``bounds`` cut at chunk boundaries, in order.

    ``bounds`` lists the slot's tensors as ``(start, stop)`` pairs, in
    order and disjoint; empty tensors have no piece.
    """
    if itemsize not in (4, 8):
        raise ValueError(f"itemsize must be 4 (float32) or 8 (float64), got {itemsize}")
    cdef Py_ssize_t chunk = chunk_length(itemsize)
    rows = []
    for t, (start, stop) in enumerate(bounds):
        if stop > start:
            edges = np.concatenate(([start], np.arange((start // chunk + 1) * chunk, stop, chunk), [stop]))
            rows.append(np.stack([edges[:len(edges) - 1], edges[1:], np.full(len(edges) - 1, t)], axis=1))
    return np.ascontiguousarray(np.concatenate(rows) if rows else np.zeros((0, 3)), dtype=np.intp)


# --------------------------------------------------------------------------
# Passes over pieces: LAMB and LARS (per-tensor norms, a trust ratio per tensor, then the update) and Prodigy
# (two sums over every slot, the D estimate, then the update)
# --------------------------------------------------------------------------
cdef struct _Pass:
    void* p
    const void* g
    void* x[4]                 # the rule's state arrays, in its order
    const Py_ssize_t* pieces   # (start, stop, tensor) triples
    const double* ratio        # per tensor, for the update pass
    double s[12]               # the rule's scalars (cast to the element type in each pass)
    bint flag                  # LARS: nesterov; Prodigy: beta1 > 0
    bint is_double


ctypedef void (*piece_fn)(const _Pass* a, Py_ssize_t q, double* sums) noexcept nogil


cdef void _each_piece(piece_fn body, const _Pass* a, Py_ssize_t npieces, double* sums, int nsums,
                      int team) noexcept nogil:
    """``body`` on every piece; piece q's partial sums go to ``sums[q * nsums:]``."""
    cdef Py_ssize_t q
    if team <= 1:
        for q in range(npieces):
            body(a, q, sums + q * nsums if sums != NULL else NULL)
        return
    for q in prange(npieces, schedule="static", num_threads=team):
        body(a, q, sums + q * nsums if sums != NULL else NULL)


cdef inline void _lamb_moments(floating* p, const floating* g, floating* m, floating* v, Py_ssize_t i,
                               floating sign, floating beta1, floating w1, floating beta2, floating w2, floating bc1,
                               floating bc2, floating eps, floating wd, double* sp, double* su) noexcept nogil:
    """Element i of LAMB's first pass: the moments, and |p|^2 and |u|^2 added into a lane's sums."""
    cdef floating d = sign * g[i]
    cdef floating mi = w1 * d + beta1 * m[i]
    cdef floating vi = w2 * (d * d) + beta2 * v[i]
    cdef floating u
    m[i] = mi
    v[i] = vi
    u = (mi / bc1) / (_root(vi / bc2) + eps)
    if wd != 0:
        u = u + wd * p[i]
    sp[0] = sp[0] + <double>p[i] * p[i]
    su[0] = su[0] + <double>u * u


cdef inline void _lamb_pass(const floating* tag, const _Pass* a, Py_ssize_t q, double* sums) noexcept nogil:
    """LAMB: with ``sums``, update the moments and add |p|^2 and |u|^2 of the piece; without, apply the update."""
    cdef floating* p = <floating*>a.p
    cdef const floating* g = <const floating*>a.g
    cdef floating* m = <floating*>a.x[0]
    cdef floating* v = <floating*>a.x[1]
    cdef floating sign = <floating>a.s[0], beta1 = <floating>a.s[1], w1 = <floating>a.s[2]
    cdef floating beta2 = <floating>a.s[3], w2 = <floating>a.s[4], bc1 = <floating>a.s[5]
    cdef floating bc2 = <floating>a.s[6], eps = <floating>a.s[7], wd = <floating>a.s[8], neg_lr = <floating>a.s[9]
    cdef floating u, r
    cdef double sp[LANES]
    cdef double su[LANES]
    cdef Py_ssize_t i, k, b, start = a.pieces[3 * q], stop = a.pieces[3 * q + 1]
    if sums != NULL:
        for k in range(LANES):
            sp[k] = 0
            su[k] = 0
        i = start
        for b in range((stop - start) // LANES):
            for k in range(LANES):
                _lamb_moments(p, g, m, v, i + k, sign, beta1, w1, beta2, w2, bc1, bc2, eps, wd, &sp[k], &su[k])
            i = i + LANES
        for i in range(i, stop):
            _lamb_moments(p, g, m, v, i, sign, beta1, w1, beta2, w2, bc1, bc2, eps, wd, &sp[0], &su[0])
        sums[0] = lane_total(sp, LANES)
        sums[1] = lane_total(su, LANES)
        return
    r = <floating>a.ratio[a.pieces[3 * q + 2]]
    for i in range(start, stop):
        u = (m[i] / bc1) / (_root(v[i] / bc2) + eps)
        if wd != 0:
            u = u + wd * p[i]
        p[i] = p[i] + neg_lr * (u * r)


cdef inline void _lars_norms(const floating* p, const floating* g, Py_ssize_t i, floating sign, floating wd,
                             double* sp, double* sd) noexcept nogil:
    """Element i of LARS's first pass: |p|^2 and |d|^2 added into a lane's sums."""
    cdef floating d = sign * g[i]
    if wd != 0:
        d = d + wd * p[i]
    sp[0] = sp[0] + <double>p[i] * p[i]
    sd[0] = sd[0] + <double>d * d


cdef inline void _lars_pass(const floating* tag, const _Pass* a, Py_ssize_t q, double* sums) noexcept nogil:
    """LARS: with ``sums``, add |p|^2 and |d|^2 of the piece; without, apply the update."""
    cdef floating* p = <floating*>a.p
    cdef const floating* g = <const floating*>a.g
    cdef floating* b = <floating*>a.x[0]
    cdef floating sign = <floating>a.s[0], wd = <floating>a.s[1], momentum = <floating>a.s[2]
    cdef floating neg_lr = <floating>a.s[3]
    cdef floating d, u, bi, r
    cdef bint nesterov
    cdef double sp[LANES]
    cdef double sd[LANES]
    cdef Py_ssize_t i, k, c, start = a.pieces[3 * q], stop = a.pieces[3 * q + 1]
    if sums != NULL:
        for k in range(LANES):
            sp[k] = 0
            sd[k] = 0
        i = start
        for c in range((stop - start) // LANES):
            for k in range(LANES):
                _lars_norms(p, g, i + k, sign, wd, &sp[k], &sd[k])
            i = i + LANES
        for i in range(i, stop):
            _lars_norms(p, g, i, sign, wd, &sp[0], &sd[0])
        sums[0] = lane_total(sp, LANES)
        sums[1] = lane_total(sd, LANES)
        return
    r = <floating>a.ratio[a.pieces[3 * q + 2]]
    nesterov = a.flag  # a local: the stores below may alias the struct (no strict aliasing), so the loop unswitches
    for i in range(start, stop):
        d = sign * g[i]
        if wd != 0:
            d = d + wd * p[i]
        u = neg_lr * (d * r)
        bi = u + momentum * b[i]
        b[i] = bi
        p[i] = p[i] + (u + momentum * bi if nesterov else bi)


cdef inline void _prodigy_stats(floating* p, const floating* g, floating* m, floating* v, floating* s,
                                const floating* p0, Py_ssize_t i, bint use_m, floating sign, floating l2,
                                floating beta1, floating c1, floating beta2, floating c2, floating beta3, floating cs,
                                double* numerator, double* total) noexcept nogil:
    """Element i of Prodigy's first pass: the moments and s, and its d_numerator and d_denom terms into a lane's."""
    cdef floating gi = sign * g[i]
    cdef floating si
    if l2 != 0:
        gi = gi + l2 * p[i]
    numerator[0] = numerator[0] + <double>gi * (p0[i] - p[i])
    if use_m:
        m[i] = m[i] * beta1 + c1 * gi
    v[i] = v[i] * beta2 + (c2 * gi) * gi
    si = s[i] * beta3 + cs * gi
    s[i] = si
    total[0] = total[0] + fabs(<double>si)


cdef inline void _prodigy_pass(const floating* tag, const _Pass* a, Py_ssize_t q, double* sums) noexcept nogil:
    """Prodigy: with ``sums``, update the moments and ``s`` and add the piece's d_numerator and d_denom terms;
    without, apply the update."""
    cdef floating* p = <floating*>a.p
    cdef const floating* g = <const floating*>a.g
    cdef floating* m = <floating*>a.x[0]
    cdef floating* v = <floating*>a.x[1]
    cdef floating* s = <floating*>a.x[2]
    cdef const floating* p0 = <const floating*>a.x[3]
    cdef floating sign = <floating>a.s[0], l2 = <floating>a.s[1], beta1 = <floating>a.s[2], c1 = <floating>a.s[3]
    cdef floating beta2 = <floating>a.s[4], c2 = <floating>a.s[5], beta3 = <floating>a.s[6], cs = <floating>a.s[7]
    cdef floating d_eps = <floating>a.s[8], neg_wd_dlr = <floating>a.s[9], neg_dlr = <floating>a.s[10]
    cdef floating neg_dlr_d = <floating>a.s[11]
    cdef floating gi, pi, denom
    cdef bint use_m = a.flag  # a local, as in LARS
    cdef double numerator[LANES]
    cdef double total[LANES]
    cdef Py_ssize_t i, k, c, start = a.pieces[3 * q], stop = a.pieces[3 * q + 1]
    if sums != NULL:
        for k in range(LANES):
            numerator[k] = 0
            total[k] = 0
        i = start
        for c in range((stop - start) // LANES):
            for k in range(LANES):
                _prodigy_stats(p, g, m, v, s, p0, i + k, use_m, sign, l2, beta1, c1, beta2, c2, beta3, cs,
                               &numerator[k], &total[k])
            i = i + LANES
        for i in range(i, stop):
            _prodigy_stats(p, g, m, v, s, p0, i, use_m, sign, l2, beta1, c1, beta2, c2, beta3, cs, &numerator[0],
                           &total[0])
        sums[0] = lane_total(numerator, LANES)
        sums[1] = lane_total(total, LANES)
        return
    for i in range(start, stop):
        denom = _root(v[i]) + d_eps
        pi = p[i]
        if neg_wd_dlr != 0:
            pi = pi + neg_wd_dlr * pi
        if use_m:
            p[i] = pi + neg_dlr * (m[i] / denom)
        else:
            gi = sign * g[i]
            if l2 != 0:
                gi = gi + l2 * p[i]
            p[i] = pi + neg_dlr_d * (gi / denom)


cdef void _prodigy_piece(const _Pass* a, Py_ssize_t q, double* sums) noexcept nogil:
    if a.is_double:
        _prodigy_pass(<const double*>NULL, a, q, sums)
    else:
        _prodigy_pass(<const float*>NULL, a, q, sums)


cdef void _lamb_piece(const _Pass* a, Py_ssize_t q, double* sums) noexcept nogil:
    if a.is_double:
        _lamb_pass(<const double*>NULL, a, q, sums)
    else:
        _lamb_pass(<const float*>NULL, a, q, sums)


cdef void _lars_piece(const _Pass* a, Py_ssize_t q, double* sums) noexcept nogil:
    if a.is_double:
        _lars_pass(<const double*>NULL, a, q, sums)
    else:
        _lars_pass(<const float*>NULL, a, q, sums)


cdef int _trust_ratio_step(piece_fn body, _Pass* a, Py_ssize_t n, Py_ssize_t npieces, Py_ssize_t ntensors,
                           double trust_coefficient, double eps, int num_threads, double[::1] ratios) except -1:
    """The reduction pass, each tensor's trust ratio (into ``ratios``), then the update pass."""
    cdef int team = split(n, 8 if a.is_double else 4, num_threads).team
    cdef double* partial = <double*>malloc((2 * npieces + 1) * sizeof(double))
    cdef double* totals = <double*>malloc((2 * ntensors + 1) * sizeof(double))
    cdef Py_ssize_t q, t
    cdef double pn, un
    if partial == NULL or totals == NULL:
        free(partial)
        free(totals)
        raise MemoryError()
    with nogil:
        _each_piece(body, a, npieces, partial, 2, team)
        for t in range(2 * ntensors):
            totals[t] = 0
        for q in range(npieces):  # in piece order: the same bits for any team
            t = a.pieces[3 * q + 2]
            totals[2 * t] = totals[2 * t] + partial[2 * q]
            totals[2 * t + 1] = totals[2 * t + 1] + partial[2 * q + 1]
        for t in range(ntensors):
            pn = sqrt(totals[2 * t])
            un = sqrt(totals[2 * t + 1])
            ratios[t] = 1.0 if pn == 0 or un == 0 else trust_coefficient * pn / (un + eps)
        a.ratio = &ratios[0] if ntensors else NULL
        _each_piece(body, a, npieces, NULL, 0, team)
    free(partial)
    free(totals)
    return 0


cdef _Pass _bind(param, grad, tuple state, const Py_ssize_t[:, ::1] cuts, Py_ssize_t ntensors) except *:
    """The pass arguments over ``param``'s elements, checked to stay in bounds: every piece inside them and
    naming one of ``ntensors`` tensors."""
    cdef _Pass a
    cdef Py_ssize_t n, q
    dtype = _float_dtype(param, "param")
    n = param.shape[0]
    a.is_double = dtype == np.float64
    a.p = _data(param, dtype, n, True, "param")
    a.g = _data(grad, dtype, n, False, "grad")
    for k in range(4):
        a.x[k] = _data(state[k], dtype, n, True, "state") if k < len(state) else NULL
    for q in range(cuts.shape[0]):  # in bounds, in order and disjoint (threads write them), naming a tensor
        if not (0 <= cuts[q, 0] <= cuts[q, 1] <= n and 0 <= cuts[q, 2] < ntensors
                and (q == 0 or cuts[q - 1, 1] <= cuts[q, 0])):
            raise ValueError(f"piece {q} is outside the {n} elements, overlaps the one before or names no tensor "
                             f"of {ntensors}")
    a.pieces = &cuts[0, 0] if cuts.shape[0] else NULL
    a.ratio = NULL
    a.flag = False
    return a


def lamb_step(param, grad, exp_avg, exp_avg_sq, pieces, double[::1] ratios, double lr,
              double beta1, double beta2, double eps, double weight_decay, bint maximize, long long step,
              int num_threads=1):
    """One LAMB step in place over a slot's tensors (``pieces``: the rows :func:`pieces` makes); each tensor's trust ratio goes
    to ``ratios`` (one entry per tensor)."""
    cdef const Py_ssize_t[:, ::1] cuts = _private(pieces, 3, "pieces")
    cdef _Pass a = _bind(param, grad, (exp_avg, exp_avg_sq), cuts, ratios.shape[0])
    cdef double t = <double>step
    a.s[0], a.s[1], a.s[2], a.s[3], a.s[4] = -1.0 if maximize else 1.0, beta1, 1.0 - beta1, beta2, 1.0 - beta2
    a.s[5], a.s[6], a.s[7], a.s[8], a.s[9] = 1.0 - pow(beta1, t), 1.0 - pow(beta2, t), eps, weight_decay, -lr
    _trust_ratio_step(_lamb_piece, &a, param.shape[0], cuts.shape[0], ratios.shape[0], 1.0, 0.0, num_threads,
                      ratios)


def lars_step(param, grad, momentum_buffer, pieces, double[::1] ratios, double lr,
              double momentum, double weight_decay, double trust_coefficient, double eps, bint nesterov,
              bint maximize, int num_threads=1):
    """One LARS step in place over a slot's tensors (``pieces``: the rows :func:`pieces` makes); each tensor's trust ratio goes
    to ``ratios``."""
    cdef const Py_ssize_t[:, ::1] cuts = _private(pieces, 3, "pieces")
    cdef _Pass a = _bind(param, grad, (momentum_buffer,), cuts, ratios.shape[0])
    a.s[0], a.s[1], a.s[2], a.s[3] = -1.0 if maximize else 1.0, weight_decay, momentum, -lr
    a.flag = nesterov
    _trust_ratio_step(_lars_piece, &a, param.shape[0], cuts.shape[0], ratios.shape[0], trust_coefficient, eps,
                      num_threads, ratios)


# --------------------------------------------------------------------------
# Adafactor: tensor by tensor, in rows
# --------------------------------------------------------------------------
cdef enum:
    COLUMN_BLOCK = 256  # the column sums' fixed block width: items of work are (matrix, block) pairs


cdef struct _Factor:
    void* p                  # this tensor's elements
    const void* g
    void* row                # batch x rows (factored) ...
    void* col                # ... and batch x cols, or
    void* var                # size (vectors)
    Py_ssize_t batch, rows, cols, size, width, nblocks
    double* colsum           # batch x cols
    double* rowpart          # batch x rows x nblocks
    double* rowsq            # per row (of ``width`` elements): the sum of u^2
    double* scale            # per matrix of the batch: max(mean row_var, eps1), in the element type
    double sign, weight, eps1_squared, decay, coef
    bint factored, is_double


cdef inline void _square_into(const floating* row, Py_ssize_t c, double* colsum, double* lane) noexcept nogil:
    cdef double x = <double>row[c] * row[c]
    colsum[c] = colsum[c] + x
    lane[0] = lane[0] + x


cdef inline void _column_block(const floating* tag, const _Factor* f, Py_ssize_t item) noexcept nogil:
    """Item (matrix b, block k): the column sums of d^2 of block k, and each row's partial sum over it."""
    cdef const floating* g = <const floating*>f.g
    cdef Py_ssize_t b = item // f.nblocks, k = item % f.nblocks, r, c, j, lane
    cdef Py_ssize_t c0 = k * COLUMN_BLOCK, c1 = min(f.cols, c0 + COLUMN_BLOCK)
    cdef double* colsum = f.colsum + b * f.cols
    cdef const floating* row
    cdef double acc[LANES]
    for c in range(c0, c1):
        colsum[c] = 0
    for r in range(f.rows):
        row = g + (b * f.rows + r) * f.cols
        for lane in range(LANES):
            acc[lane] = 0
        c = c0
        for j in range((c1 - c0) // LANES):
            for lane in range(LANES):
                _square_into(row, c + lane, colsum, &acc[lane])
            c = c + LANES
        for c in range(c, c1):
            _square_into(row, c, colsum, &acc[0])
        f.rowpart[(b * f.rows + r) * f.nblocks + k] = lane_total(acc, LANES)


cdef inline floating _scaled(floating d, floating v, floating floor) noexcept nogil:
    """torch's update: rsqrt(clamp(v, min=eps1^2)) * d."""
    return (<floating>1 / _root(_floor(v, floor))) * d


cdef inline void _factored_square(const floating* g, const floating* col, Py_ssize_t i, Py_ssize_t start,
                                  floating sign, floating rv, floating scale, floating floor,
                                  double* lane) noexcept nogil:
    cdef floating u = _scaled(sign * g[i], (rv * col[i - start]) / scale, floor)
    lane[0] = lane[0] + <double>u * u


cdef inline void _vector_square(const floating* g, floating* var, Py_ssize_t i, floating sign, floating w,
                                floating floor, double* lane) noexcept nogil:
    """A vector's element: its variance updated, and u^2 into a lane."""
    cdef floating d = sign * g[i]
    cdef floating v = _lerp(var[i], d * d, w)
    cdef floating u
    var[i] = v
    u = _scaled(d, v, floor)
    lane[0] = lane[0] + <double>u * u


cdef inline void _update_row(const floating* tag, const _Factor* f, Py_ssize_t r, bint apply) noexcept nogil:
    """Row r (of ``width`` elements): with ``apply``, p = p decay + coef u (decay 1 is exact); else the sum of
    u^2 into ``rowsq`` (vectors update their variance here first)."""
    cdef floating* p = <floating*>f.p
    cdef const floating* g = <const floating*>f.g
    cdef floating* var = <floating*>f.var
    cdef const floating* col = NULL
    cdef floating sign = <floating>f.sign, w = <floating>f.weight, floor = <floating>f.eps1_squared
    cdef floating decay = <floating>f.decay, coef = <floating>f.coef
    cdef floating rv = 0, scale = 1
    cdef bint factored = f.factored  # a local, as in LARS
    cdef Py_ssize_t i, j, lane, start = r * f.width, stop = min(f.size, start + f.width)
    cdef double acc[LANES]
    if factored:
        rv = (<floating*>f.row)[r]
        col = <const floating*>f.col + (r // f.rows) * f.cols
        scale = <floating>f.scale[r // f.rows]
    if apply:
        if factored:
            for i in range(start, stop):
                p[i] = p[i] * decay + coef * _scaled(sign * g[i], (rv * col[i - start]) / scale, floor)
        else:
            for i in range(start, stop):
                p[i] = p[i] * decay + coef * _scaled(sign * g[i], var[i], floor)
        return
    for lane in range(LANES):
        acc[lane] = 0
    i = start
    for j in range((stop - start) // LANES):
        for lane in range(LANES):
            if factored:
                _factored_square(g, col, i + lane, start, sign, rv, scale, floor, &acc[lane])
            else:
                _vector_square(g, var, i + lane, sign, w, floor, &acc[lane])
        i = i + LANES
    for i in range(i, stop):
        if factored:
            _factored_square(g, col, i, start, sign, rv, scale, floor, &acc[0])
        else:
            _vector_square(g, var, i, sign, w, floor, &acc[0])
    f.rowsq[r] = lane_total(acc, LANES)


cdef void _column_block_fn(const void* f, Py_ssize_t item) noexcept nogil:
    if (<const _Factor*>f).is_double:
        _column_block(<const double*>NULL, <const _Factor*>f, item)
    else:
        _column_block(<const float*>NULL, <const _Factor*>f, item)


cdef void _norm_row_fn(const void* f, Py_ssize_t r) noexcept nogil:
    if (<const _Factor*>f).is_double:
        _update_row(<const double*>NULL, <const _Factor*>f, r, False)
    else:
        _update_row(<const float*>NULL, <const _Factor*>f, r, False)


cdef void _apply_row_fn(const void* f, Py_ssize_t r) noexcept nogil:
    if (<const _Factor*>f).is_double:
        _update_row(<const double*>NULL, <const _Factor*>f, r, True)
    else:
        _update_row(<const float*>NULL, <const _Factor*>f, r, True)


cdef double _sum_squares_f32(const void* x, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    return lane_sum(<const float*>x, <const float*>x, start, stop, 0.0, 1.0, SQUARE, 8)


cdef double _sum_squares_f64(const void* x, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    return lane_sum(<const double*>x, <const double*>x, start, stop, 0.0, 1.0, SQUARE, 8)


cdef inline void _moments(const floating* tag, _Factor* f) noexcept nogil:
    """Factored: fold the column blocks into the new row_var and col_var, and each matrix's scale."""
    cdef floating* row = <floating*>f.row
    cdef floating* col = <floating*>f.col
    cdef floating w = <floating>f.weight
    cdef Py_ssize_t b, r, c, k
    cdef double s, total
    for b in range(f.batch):
        total = 0
        for r in range(b * f.rows, (b + 1) * f.rows):
            s = 0
            for k in range(f.nblocks):
                s = s + f.rowpart[r * f.nblocks + k]
            row[r] = _lerp(row[r], <floating>(s / f.cols), w)
            total = total + row[r]
        for c in range(b * f.cols, (b + 1) * f.cols):
            col[c] = _lerp(col[c], <floating>(f.colsum[c] / f.rows), w)
        f.scale[b] = <double>_floor(<floating>(total / f.rows), <floating>f.scale[b])  # scale[b] held eps1


cdef int _adafactor_tensor(_Factor* f, double lr, double rho, double eps1, double eps2, double d_clip,
                           int num_threads) noexcept nogil:
    """One tensor's step; -1 when out of memory (the caller frees the work arrays)."""
    cdef Py_ssize_t itemsize = 8 if f.is_double else 4, nrows, r, b
    cdef int team = split(f.size, itemsize, num_threads).team
    cdef double pnorm, unorm = 0, alpha, root_n = sqrt(<double>f.size)
    if f.size == 0:
        return 0
    pnorm = sqrt(ordered_sum(_sum_squares_f64 if f.is_double else _sum_squares_f32, f.p, f.size, itemsize,
                             num_threads))
    alpha = max(eps2, pnorm / root_n) * rho
    if f.factored:
        f.width = f.cols
        f.nblocks = (f.cols + COLUMN_BLOCK - 1) // COLUMN_BLOCK
        nrows = f.batch * f.rows
        f.colsum = <double*>malloc(f.batch * f.cols * sizeof(double))
        f.rowpart = <double*>malloc(nrows * f.nblocks * sizeof(double))
        f.scale = <double*>malloc(f.batch * sizeof(double))
        if f.colsum == NULL or f.rowpart == NULL or f.scale == NULL:
            return -1
        for b in range(f.batch):
            f.scale[b] = eps1
        parallel_rows(_column_block_fn, f, f.batch * f.nblocks, team)
        if f.is_double:
            _moments(<const double*>NULL, f)
        else:
            _moments(<const float*>NULL, f)
    else:
        f.width = chunk_length(itemsize)
        nrows = (f.size + f.width - 1) // f.width
    f.rowsq = <double*>malloc(nrows * sizeof(double))
    if f.rowsq == NULL:
        return -1
    parallel_rows(_norm_row_fn, f, nrows, team)
    for r in range(nrows):
        unorm = unorm + f.rowsq[r]
    f.coef = -alpha / max(1.0, sqrt(unorm) / (root_n * d_clip))
    parallel_rows(_apply_row_fn, f, nrows, team)
    return 0


def adafactor_step(param, grad, row_var, col_var, variance, descriptors, double lr,
                   double beta2_decay, double eps1, double eps2, double d, double weight_decay, bint maximize,
                   long long step, int num_threads=1):
    """One Adafactor step in place over a slot's tensors.

    ``descriptors`` has a row per tensor: ``(offset, batch, rows, cols,
    row_offset, col_offset, var_offset)``.  A factored tensor (``rows >
    0``) is ``batch`` matrices of ``rows x cols`` at ``offset``, with its
    ``row_var`` at ``row_offset`` (``batch * rows``) and its ``col_var`` at
    ``col_offset`` (``batch * cols``); any other tensor is ``cols`` elements
    with its ``variance`` at ``var_offset``.
    """
    dtype = _float_dtype(param, "param")
    cdef Py_ssize_t itemsize = dtype.itemsize, n = param.shape[0], t
    cdef bint is_double = dtype == np.float64
    cdef char* p = <char*>_data(param, dtype, n, True, "param")
    cdef const char* g = <const char*>_data(grad, dtype, n, False, "grad")
    cdef char* row = <char*>_data(row_var, dtype, row_var.shape[0], True, "row_var")
    cdef char* col = <char*>_data(col_var, dtype, col_var.shape[0], True, "col_var")
    cdef char* var = <char*>_data(variance, dtype, variance.shape[0], True, "variance")
    cdef _Factor f
    cdef int status
    cdef double t_step = <double>step, rho = min(lr, 1.0 / sqrt(t_step))
    cdef const Py_ssize_t[:, ::1] tensors = _private(descriptors, 7, "tensors")
    for t in range(tensors.shape[0]):
        offset, batch, rows, cols = tensors[t, 0], tensors[t, 1], tensors[t, 2], tensors[t, 3]
        ro, co, vo = tensors[t, 4], tensors[t, 5], tensors[t, 6]
        size = batch * rows * cols if rows else cols
        if (min(offset, batch, rows, cols, ro, co, vo) < 0 or offset + size > n
                or rows and (ro + batch * rows > row_var.shape[0] or co + batch * cols > col_var.shape[0])
                or not rows and vo + cols > variance.shape[0]):
            raise ValueError(f"tensor {t} of the descriptors lies outside its arrays")
    for t in range(tensors.shape[0]):
        f.is_double = is_double
        f.factored = tensors[t, 2] > 0
        f.batch, f.rows, f.cols = tensors[t, 1], tensors[t, 2], tensors[t, 3]
        f.size = f.batch * f.rows * f.cols if f.factored else f.cols
        f.p = p + tensors[t, 0] * itemsize
        f.g = g + tensors[t, 0] * itemsize
        f.row = row + tensors[t, 4] * itemsize
        f.col = col + tensors[t, 5] * itemsize
        f.var = var + tensors[t, 6] * itemsize
        f.sign = -1.0 if maximize else 1.0
        f.weight = pow(t_step, beta2_decay)
        f.eps1_squared = eps1 * eps1
        f.decay = 1.0 - lr * weight_decay
        f.colsum = f.rowpart = f.rowsq = f.scale = NULL
        with nogil:
            status = _adafactor_tensor(&f, lr, rho, eps1, eps2, d, num_threads)
        free(f.colsum)
        free(f.rowpart)
        free(f.rowsq)
        free(f.scale)
        if status:
            raise MemoryError()


def prodigy_pass(param, grad, tuple state, pieces, tuple scalars, bint use_exp_avg,
                 bint update, int num_threads=1):
    """One of Prodigy's two passes over a slot (``pieces``: :func:`pieces` of the whole slot): the statistics
    (``update`` False; returns the slot's (d_numerator, d_denom) terms, summed in piece order) or the update.

    ``state`` is (exp_avg, exp_avg_sq, s, p0); ``scalars`` the twelve numbers ``_prodigy_pass`` reads, in its
    order (unused ones 0).
    """
    if len(state) != 4:
        raise ValueError("Prodigy's state is (exp_avg, exp_avg_sq, s, p0)")
    cdef const Py_ssize_t[:, ::1] cuts = _private(pieces, 3, "pieces")
    cdef _Pass a = _bind(param, grad, state, cuts, 1)
    cdef Py_ssize_t q, npieces = cuts.shape[0]
    cdef int team = split(param.shape[0], 8 if a.is_double else 4, num_threads).team
    cdef double* partial
    cdef double numerator = 0, total = 0
    if len(scalars) != 12:
        raise ValueError("prodigy_pass takes 12 scalars")
    for q in range(12):
        a.s[q] = scalars[q]
    a.flag = use_exp_avg
    if update:
        with nogil:
            _each_piece(_prodigy_piece, &a, npieces, NULL, 0, team)
        return None
    partial = <double*>malloc((2 * npieces + 1) * sizeof(double))
    if partial == NULL:
        raise MemoryError()
    with nogil:
        _each_piece(_prodigy_piece, &a, npieces, partial, 2, team)
        for q in range(npieces):  # in piece order: the same bits for any team
            numerator = numerator + partial[2 * q]
            total = total + partial[2 * q + 1]
    free(partial)
    return numerator, total
