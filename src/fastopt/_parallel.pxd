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
