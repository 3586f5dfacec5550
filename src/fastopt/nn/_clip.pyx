# cython: language_level=3
"""Gradient clipping kernels: norm reductions, scaling and clamping in place.

Three passes over a contiguous float32 or float64 array, all ``nogil`` and
OpenMP-parallel over the fixed chunks of ``fastopt._parallel``:

* :func:`power_sum`: ``sum (|g_i| / divisor)^p`` for finite ``p > 0``, or
  ``max |g_i| / divisor`` for ``p = inf``.  Always accumulated in float64,
  float32 input included: each float32 element is widened to double before
  it is squared (the square of a float32 is then exact).  ``p = 2`` (sum of
  squares) and ``p = 1`` (sum of absolute values) have dedicated loops,
  ``p = inf`` takes the largest absolute value (exactly, by comparing bit
  patterns: see ``_max_abs_range``), and any other ``p`` calls libm's
  ``pow`` per element.
* :func:`scale_`: ``g_i = g_i * coef``, ``coef`` rounded once to the element
  type.
* :func:`clamp_`: ``g_i`` clamped into ``[lo, hi]``; NaN stays NaN.

Determinism.  Every reduction computes one partial result per chunk and
combines the partials in chunk order (``ordered_reduce`` of
``fastopt._parallel``), so the result has the same bits for any thread
count.  Within a chunk each sum is a ``lane_sum`` of eight lanes: lane ``k``
takes every eighth element from the ``k``-th, elements past the last
multiple of eight go to lane 0, and the lanes are added as
``((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))``.  The general-``p``
sum uses one accumulator per chunk (``pow`` dominates its cost).

Non-finite values.  A NaN element makes every sum NaN and makes the maximum
NaN (it is never skipped); an infinite element makes the sum or the maximum
infinite.  Nothing here guards against overflow or underflow: that is what
``divisor`` is for.  ``fastopt.nn.clip`` passes the largest ``|g_i|`` (from a
``p = inf`` pass) as the divisor, so that every term ``(|g_i| / divisor)^p``
lies in ``[0, 1]``, the largest is exactly 1, and the sum lies in ``[1, n]``
for any ``p``.

The Python entry points check only what keeps the kernels in bounds; the
user-facing checks live in ``fastopt.nn.clip``.
"""
from cython cimport floating
from libc.math cimport INFINITY, NAN, fabs, pow
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memcpy

from fastopt._parallel cimport ABS, SQUARE, lane_sum, ordered_reduce, parallel_for


cdef enum Reduction:
    SUM_SQUARES   # p = 2
    SUM_ABS       # p = 1
    MAX_ABS       # p = inf
    SUM_POWERS    # any other finite p > 0


# --------------------------------------------------------------------------
# Chunk bodies: each returns the chunk's partial result as a double
# --------------------------------------------------------------------------
cdef inline double _sum_powers_range(const floating* g, Py_ssize_t start, Py_ssize_t stop,
                                     double p, double divisor) noexcept nogil:
    # With divisor = max |g_i| every quotient is in [0, 1] (a correctly rounded
    # division of a |g_i| <= divisor cannot exceed 1), so no power overflows,
    # and the largest element's is exactly pow(1, p) = 1.  Dividing by 1 is exact.
    cdef double s = 0
    cdef Py_ssize_t i
    for i in range(start, stop):
        s = s + pow(fabs(<double>g[i]) / divisor, p)
    return s


cdef inline double _max_abs_range(const floating* g, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """max |g_i| over the range, NaN if any element is NaN.

    Compares bit patterns: with the sign bit cleared, IEEE numbers order like
    their bits read as (non-negative) integers, and every NaN reads larger
    than infinity.  The largest pattern is therefore the maximum, or a NaN
    when there is one, and an integer maximum vectorizes where a
    floating-point one with NaN checks does not (for float64 that needs a
    64-bit compare, SSE4.2 or later; the baseline build runs it scalar).
    memcpy reads the bits without breaking C's aliasing rules; the compiler
    turns it into a plain load.
    """
    cdef int32_t b32, m32 = 0
    cdef int64_t b64, m64 = 0
    cdef float f
    cdef double d
    cdef Py_ssize_t i
    if floating is float:
        for i in range(start, stop):
            memcpy(&b32, &g[i], 4)
            b32 = b32 & 0x7fffffff
            m32 = b32 if b32 > m32 else m32
        if m32 > 0x7f800000:
            return NAN
        memcpy(&f, &m32, 4)
        return <double>f
    else:
        for i in range(start, stop):
            memcpy(&b64, &g[i], 8)
            b64 = b64 & 0x7fffffffffffffffLL
            m64 = b64 if b64 > m64 else m64
        if m64 > 0x7ff0000000000000LL:
            return NAN
        memcpy(&d, &m64, 8)
        return d


cdef inline double _reduce_range(const floating* g, Py_ssize_t start, Py_ssize_t stop, Reduction kind,
                                 double p, double divisor) noexcept nogil:
    # Literal arguments at every lane_sum call, so each inlined loop is specialised
    # (and 8 lanes, the order tests/test_clip.py replays).
    if kind == SUM_SQUARES:
        if divisor != 1.0:
            return lane_sum(g, g, start, stop, 0.0, divisor, SQUARE, 8)
        return lane_sum(g, g, start, stop, 0.0, 1.0, SQUARE, 8)
    if kind == SUM_ABS:
        if divisor != 1.0:
            return lane_sum(g, g, start, stop, 0.0, divisor, ABS, 8)
        return lane_sum(g, g, start, stop, 0.0, 1.0, ABS, 8)
    if kind == MAX_ABS:
        return _max_abs_range(g, start, stop)
    return _sum_powers_range(g, start, stop, p, divisor)


# --------------------------------------------------------------------------
# Whole-array passes (C level).  The drivers take untyped bodies, so each
# body reads the element type from its arguments.
# --------------------------------------------------------------------------
cdef struct Pass:
    void* g
    bint single      # float32 elements, else float64
    Reduction kind
    double p, divisor, lo, hi   # lo doubles as scale_'s coefficient


cdef double _reduce_chunk(const void* args, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef const Pass* a = <const Pass*>args
    if a.single:
        return _reduce_range(<const float*>a.g, start, stop, a.kind, a.p, a.divisor)
    return _reduce_range(<const double*>a.g, start, stop, a.kind, a.p, a.divisor)


cdef double reduce_n(const floating* g, Py_ssize_t n, Reduction kind, double p, double divisor,
                     int num_threads) noexcept nogil:
    """The chunked reduction of ``kind`` over ``n`` elements; the same bits for any ``num_threads``.

    For MAX_ABS the result is the undivided maximum (``divisor`` and ``p``
    are ignored); for SUM_POWERS every element is divided by ``divisor``,
    and for the other sums only when ``divisor != 1``.
    """
    cdef Pass a = Pass(<void*>g, floating is float, kind, p, divisor, 0.0, 0.0)
    return ordered_reduce(_reduce_chunk, &a, n, sizeof(floating), num_threads, kind == MAX_ABS)


cdef inline void _scale_range(floating* g, Py_ssize_t start, Py_ssize_t stop, floating coef) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, stop):
        g[i] = g[i] * coef


cdef void _scale_body(const void* args, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef const Pass* a = <const Pass*>args
    if a.single:
        _scale_range(<float*>a.g, start, stop, <float>a.lo)
    else:
        _scale_range(<double*>a.g, start, stop, a.lo)


cdef inline void _clamp_range(floating* g, Py_ssize_t start, Py_ssize_t stop, floating lo, floating hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating v
    for i in range(start, stop):
        v = g[i]
        v = lo if v < lo else v  # comparisons with NaN are false: NaN passes through both
        v = hi if v > hi else v
        g[i] = v


cdef void _clamp_body(const void* args, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef const Pass* a = <const Pass*>args
    if a.single:
        _clamp_range(<float*>a.g, start, stop, <float>a.lo, <float>a.hi)
    else:
        _clamp_range(<double*>a.g, start, stop, a.lo, a.hi)


# --------------------------------------------------------------------------
# Python entry points
# --------------------------------------------------------------------------
def power_sum(const floating[::1] g not None, double p, double divisor=1.0, int num_threads=1):
    """``sum (|g_i| / divisor)^p`` for finite ``p > 0``; ``max |g_i| / divisor`` for ``p = inf``.

    Accumulated in float64 chunk by chunk and combined in chunk order: the
    same bits for any ``num_threads``.  NaN if any element is NaN; 0.0 for an
    empty array.  Taking the ``1/p``-th power is left to the caller, who may
    combine several arrays first.

    Parameters
    ----------
    g : 1-D C-contiguous float32 or float64 array
    p : float
        ``p > 0``; ``inf`` for the maximum.
    divisor : float, default 1.0
        ``> 0``; divides every element before its power is taken.  With the
        largest ``|g_i|`` as divisor no term overflows or underflows
        spuriously: see the module docstring.  With 1.0 nothing is divided
        and the ``p = 1`` and ``p = 2`` loops are the plain sums.
    num_threads : int, default 1
        The largest OpenMP team to use.
    """
    cdef Py_ssize_t n = g.shape[0]
    cdef Reduction kind
    cdef double total
    if not p > 0:
        raise ValueError(f"p must be > 0, got {p}")
    if not 0 < divisor < INFINITY:
        raise ValueError(f"divisor must be finite and > 0, got {divisor}")
    if p == INFINITY:
        kind = MAX_ABS
    elif p == 2.0:
        kind = SUM_SQUARES
    elif p == 1.0:
        kind = SUM_ABS
    else:
        kind = SUM_POWERS
    if n == 0:
        return 0.0
    with nogil:
        total = reduce_n(&g[0], n, kind, p, divisor, num_threads)
    if kind == MAX_ABS and divisor != 1.0:
        total = total / divisor
    return total


def scale_(floating[::1] g not None, double coef, int num_threads=1):
    """``g *= coef`` in place, ``coef`` rounded once to g's dtype."""
    cdef Py_ssize_t n = g.shape[0]
    if n == 0:
        return
    cdef Pass a = Pass(&g[0], floating is float, SUM_SQUARES, 0.0, 1.0, coef, 0.0)
    with nogil:
        parallel_for(_scale_body, &a, n, sizeof(floating), num_threads)


def clamp_(floating[::1] g not None, double lo, double hi, int num_threads=1):
    """Clamp ``g`` into ``[lo, hi]`` in place (bounds rounded to g's dtype); NaN stays NaN."""
    cdef Py_ssize_t n = g.shape[0]
    if not lo <= hi:
        raise ValueError(f"clamp_ needs lo <= hi, got lo={lo}, hi={hi}")
    if n == 0:
        return
    cdef Pass a = Pass(&g[0], floating is float, SUM_SQUARES, 0.0, 1.0, lo, hi)
    with nogil:
        parallel_for(_clamp_body, &a, n, sizeof(floating), num_threads)
