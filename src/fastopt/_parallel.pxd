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

from cython.parallel cimport prange


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


# A kernel's loop over elements [start, stop), its arrays and scalars packed in ``args``.
ctypedef void (*range_fn)(const void* args, Py_ssize_t start, Py_ssize_t stop) noexcept nogil


cdef inline void parallel_for(range_fn body, const void* args, Py_ssize_t n, Py_ssize_t itemsize,
                              int num_threads) noexcept nogil:
    """Run ``body`` over [0, n) for an element-wise kernel: each thread of the team calls it once,
    over its own contiguous run of whole chunks; a team of one calls it once over everything, with
    no OpenMP region.  (Element-wise results do not depend on where the ranges are cut.)"""
    cdef Split s = split(n, itemsize, num_threads)
    cdef Py_ssize_t t, first, last
    if s.team == 1:
        body(args, 0, n)
        return
    for t in prange(s.team, schedule="static", num_threads=s.team):
        first = t * s.nchunks // s.team
        last = (t + 1) * s.nchunks // s.team
        body(args, first * s.chunk, chunk_stop(last - 1, s.chunk, n))
