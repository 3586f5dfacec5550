# cython: language_level=3
"""Work splitting shared by every kernel.

A kernel over ``n`` elements is cut into fixed chunks of FASTOPT_CHUNK_BYTES
(4 KiB, a multiple of the 64-byte cache line), numbered from the start of the
array; when the array starts on a cache line (a ParamSet's buffers always
do), so does every chunk.
Chunk boundaries depend only on ``n`` and the element size, never on the
thread count, so per-chunk reductions combined in chunk order give the same
bits for any number of threads.  Threads take contiguous runs of chunks
(static schedule), and each thread gets at least
FASTOPT_MIN_CHUNKS_PER_THREAD chunks, so small arrays run on the calling
thread alone: waking a thread would cost more than the work.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport fabs
from libc.stdlib cimport free, malloc


cdef extern from "fastopt_config.h" nogil:
    int omp_get_max_threads()
    int omp_get_num_procs()
    const int FASTOPT_OPENMP_VERSION
    const int FASTOPT_SIMD_BYTES
    const char* FASTOPT_SIMD_NAME
    const char* FASTOPT_BUILD_FLAGS
    const char* FASTOPT_COMPILER
    const Py_ssize_t FASTOPT_CHUNK_BYTES
    const Py_ssize_t FASTOPT_MIN_CHUNKS_PER_THREAD
    const Py_ssize_t FASTOPT_CACHE_LINE
    int fastopt_cpu_has_avx2()
    int fastopt_cpu_has_avx512()


cdef inline Py_ssize_t chunk_length(Py_ssize_t itemsize) noexcept nogil:
    """Elements per chunk for elements of ``itemsize`` bytes."""
    return FASTOPT_CHUNK_BYTES // itemsize


cdef inline Py_ssize_t num_chunks(Py_ssize_t n, Py_ssize_t chunk) noexcept nogil:
    return (n + chunk - 1) // chunk


cdef inline Py_ssize_t chunk_stop(Py_ssize_t c, Py_ssize_t chunk, Py_ssize_t n) noexcept nogil:
    """One past the last element of chunk ``c``."""
    cdef Py_ssize_t stop = (c + 1) * chunk
    return stop if stop < n else n


cdef struct Split:
    Py_ssize_t chunk    # elements per chunk
    Py_ssize_t nchunks  # chunks in the array
    int team            # threads to use; 1 means: call the range function directly, no OpenMP region


cdef inline Split split(Py_ssize_t n, Py_ssize_t itemsize, int requested) noexcept nogil:
    """How a kernel over ``n`` elements of ``itemsize`` bytes cuts its work."""
    cdef Split s
    s.chunk = chunk_length(itemsize)
    s.nchunks = num_chunks(n, s.chunk)
    s.team = team_size(s.nchunks, requested)
    return s


cdef inline int team_size(Py_ssize_t nchunks, int requested) noexcept nogil:
    """Threads to use for ``nchunks`` chunks: at most ``requested``, at least 1,
    and no thread with fewer than FASTOPT_MIN_CHUNKS_PER_THREAD chunks."""
    cdef Py_ssize_t most = nchunks // FASTOPT_MIN_CHUNKS_PER_THREAD
    if requested < 1 or most <= 1:
        return 1
    return requested if requested < most else <int>most


# --------------------------------------------------------------------------
# Drivers.  A kernel packs its arrays and scalars in a struct and passes its
# address as ``args``; the driver decides who runs which part.
# --------------------------------------------------------------------------

# A kernel's loop over elements [start, stop).
ctypedef void (*range_fn)(const void* args, Py_ssize_t start, Py_ssize_t stop) noexcept nogil
# A reduction's loop over one chunk [start, stop), returning the chunk's partial result.
ctypedef double (*partial_fn)(const void* args, Py_ssize_t start, Py_ssize_t stop) noexcept nogil
# A kernel's work on row (or channel, or tile) ``r``.
ctypedef void (*row_fn)(const void* args, Py_ssize_t r) noexcept nogil


cdef inline void parallel_for(range_fn body, const void* args, Py_ssize_t n, Py_ssize_t itemsize,
                              int num_threads) noexcept nogil:
    """Run ``body`` over [0, n) for an element-wise kernel.

    Each thread of the team calls it once, over its own contiguous run of
    whole chunks; a team of one calls it once over everything, with no
    OpenMP region.  Element-wise results do not depend on where the ranges
    are cut, so ``body`` may be called over any run of whole chunks.
    """
    cdef Split s = split(n, itemsize, num_threads)
    cdef Py_ssize_t t, first, last
    if s.team == 1:
        body(args, 0, n)
        return
    for t in prange(s.team, schedule="static", num_threads=s.team):
        first = t * s.nchunks // s.team
        last = (t + 1) * s.nchunks // s.team
        body(args, first * s.chunk, chunk_stop(last - 1, s.chunk, n))


cdef inline double fold(double total, double part, bint maximum) noexcept nogil:
    """``total + part``, or with ``maximum`` the larger of the two where a NaN ``part`` sticks."""
    if maximum:
        return part if (part > total or part != part) else total
    return total + part


cdef inline double ordered_reduce(partial_fn body, const void* args, Py_ssize_t n, Py_ssize_t itemsize,
                                  int num_threads, bint maximum) noexcept nogil:
    """Fold what ``body`` returns for each chunk of [0, n) in chunk order, starting from 0 (see ``fold``).

    Threads take contiguous runs of chunks and store one partial per chunk;
    the calling thread then folds them in chunk order.  A team of one (or
    no memory for the partials) folds the same chunks in turn, so the
    result has the same bits for any ``num_threads``.
    """
    cdef Split s = split(n, itemsize, num_threads)
    cdef Py_ssize_t c
    cdef double total = 0
    cdef double* partial = NULL
    if s.team > 1:
        partial = <double*>malloc(s.nchunks * sizeof(double))
    if partial == NULL:
        for c in range(s.nchunks):
            total = fold(total, body(args, c * s.chunk, chunk_stop(c, s.chunk, n)), maximum)
        return total
    for c in prange(s.nchunks, schedule="static", num_threads=s.team):
        partial[c] = body(args, c * s.chunk, chunk_stop(c, s.chunk, n))
    for c in range(s.nchunks):
        total = fold(total, partial[c], maximum)
    free(partial)
    return total


cdef inline double ordered_sum(partial_fn body, const void* args, Py_ssize_t n, Py_ssize_t itemsize,
                               int num_threads) noexcept nogil:
    """The sum of ``body``'s chunk partials, added in chunk order: the same bits for any ``num_threads``."""
    return ordered_reduce(body, args, n, itemsize, num_threads, False)


cdef inline void parallel_rows(row_fn body, const void* args, Py_ssize_t nrows, int team) noexcept nogil:
    """Call ``body(args, r)`` for every r in [0, nrows); threads take contiguous runs of rows.

    For kernels whose work comes in rows (matrix rows, channels, tiles)
    rather than in the chunks of one flat array: the caller sizes the
    ``team`` from the whole array (``split(rows * row_length, itemsize,
    ...)``, never a row as one element: a row wider than a chunk would make
    the chunk length 0).  A team of one, or a single row, runs in turn with
    no OpenMP region.
    """
    cdef Py_ssize_t r
    if team > nrows:
        team = <int>nrows
    if team <= 1:
        for r in range(nrows):
            body(args, r)
        return
    for r in prange(nrows, schedule="static", num_threads=team):
        body(args, r)


# --------------------------------------------------------------------------
# Lane sums
# --------------------------------------------------------------------------
cdef enum Term:
    VALUE     # v_i
    ABS       # |v_i|
    SQUARE    # v_i * v_i
    TIMES_Y   # v_i * y_i


cdef inline double lane_total(const double* acc, int lanes) noexcept nogil:
    """The ``lanes`` running sums (2, 4 or 8) added pairwise: ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))."""
    if lanes == 2:
        return acc[0] + acc[1]
    if lanes == 4:
        return (acc[0] + acc[1]) + (acc[2] + acc[3])
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


cdef inline double lane_sum(const floating* x, const floating* y, Py_ssize_t start, Py_ssize_t stop,
                            double shift, double divisor, Term term, int lanes) noexcept nogil:
    """The sum over [start, stop) of ``term`` of ``v_i = (x_i - shift) / divisor`` (in double).

    ``y`` is read only by TIMES_Y.  ``lanes`` (2, 4 or 8) running sums take
    every ``lanes``-th element, elements past the last multiple of ``lanes``
    go to the first, and ``lane_total`` adds them: an order fixed by the
    range alone, hence the same bits for any thread count.  Why this is
    fast: with floating-point contraction off and no -ffast-math (setup.py)
    the compiler keeps every addition in the order written, so one running
    sum would wait on its own adder at each element; independent lanes in a
    small array fill a vector register and the loop vectorizes without
    reordering anything.  The loop runs over a count of blocks because with
    -fwrapv (in Python's build flags) a ``while i + lanes <= stop`` loop has
    no trip count GCC can compute, and is not vectorized.  Call it with
    literal ``term``, ``lanes``, and a literal 0.0 ``shift`` or 1.0
    ``divisor`` where there is none: once inlined, the branches and the
    exact ``- 0.0`` and ``/ 1.0`` fold away.
    """
    cdef double acc[8]
    cdef double v
    cdef int k
    cdef Py_ssize_t b, i = start, blocks = (stop - start) // lanes
    for k in range(lanes):
        acc[k] = 0
    for b in range(blocks):
        for k in range(lanes):
            v = (<double>x[i + k] - shift) / divisor
            acc[k] = acc[k] + _term(v, y, i + k, term)
        i = i + lanes
    while i < stop:
        v = (<double>x[i] - shift) / divisor
        acc[0] = acc[0] + _term(v, y, i, term)
        i = i + 1
    return lane_total(acc, lanes)


cdef inline double _term(double v, const floating* y, Py_ssize_t i, Term term) noexcept nogil:
    if term == ABS:
        return fabs(v)
    if term == SQUARE:
        return v * v
    if term == TIMES_Y:
        return v * y[i]
    return v
