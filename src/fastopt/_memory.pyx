"""Raw memory: where an array's bytes are (the overlap checks run this on every gradient of every step), and a
parallel gather of many small pieces into one buffer."""
from cpython.buffer cimport PyBUF_ANY_CONTIGUOUS, PyBuffer_Release, PyObject_GetBuffer
from libc.string cimport memcpy

from fastopt._parallel cimport parallel_for


def byte_span(arr):
    """(first, last + 1) byte addresses of a contiguous array.

    The same numbers as ``arr.__array_interface__["data"][0]`` and
    ``arr.nbytes``, at a fiftieth of the cost: the buffer protocol instead
    of building a dict.  Raises BufferError for a non-contiguous array.
    """
    cdef Py_buffer view
    PyObject_GetBuffer(arr, &view, PyBUF_ANY_CONTIGUOUS)
    start = <size_t>view.buf
    end = start + <size_t>view.len
    PyBuffer_Release(&view)
    return start, end


cdef struct Gather:
    char* dst
    const Py_ssize_t* offsets  # where each piece goes: byte offsets into dst, ascending, pieces apart
    const size_t* sources      # where each piece comes from: addresses
    const Py_ssize_t* lengths  # piece sizes in bytes
    Py_ssize_t count


cdef void _gather_range(const void* args, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """Copy the parts of the pieces that fall in bytes [start, stop) of the destination."""
    cdef const Gather* g = <const Gather*>args
    cdef Py_ssize_t lo = 0, hi = g.count, mid, k, a, b
    while lo < hi:  # the first piece starting after ``start``; the one before it may reach into the range
        mid = (lo + hi) // 2
        if g.offsets[mid] <= start:
            lo = mid + 1
        else:
            hi = mid
    k = lo - 1 if lo > 0 else 0
    while k < g.count and g.offsets[k] < stop:
        a = g.offsets[k] if g.offsets[k] > start else start
        b = g.offsets[k] + g.lengths[k]
        b = b if b < stop else stop
        if a < b:
            memcpy(g.dst + a, <const char*>g.sources[k] + (a - g.offsets[k]), b - a)
        k += 1


def gather(unsigned char[::1] dst, const Py_ssize_t[::1] offsets, const size_t[::1] sources,
           const Py_ssize_t[::1] lengths, int num_threads):
    """Copy ``lengths[k]`` bytes from address ``sources[k]`` to byte ``offsets[k]`` of ``dst``, for every k.

    One parallel pass over the destination (fixed chunks, as every kernel
    splits its work), the GIL released: the copies of many small pieces
    cost one call.  The pieces must lie within ``dst``, in ascending order,
    apart from each other; the caller keeps the sources alive and readable
    for ``lengths[k]`` contiguous bytes (fastopt.torch folds gradients into
    its arena with it).
    """
    cdef Gather g
    cdef Py_ssize_t n = offsets.shape[0], k
    if sources.shape[0] != n or lengths.shape[0] != n:
        raise ValueError("gather needs one source and one length per offset")
    for k in range(n):
        if lengths[k] < 0 or offsets[k] < 0 or lengths[k] > dst.shape[0] - offsets[k] or (  # no overflow
                k and offsets[k] - offsets[k - 1] < lengths[k - 1]):
            raise ValueError(f"gather piece {k} is outside the destination, or out of order")
    if n == 0:
        return
    g.dst = <char*>&dst[0]
    g.offsets, g.sources, g.lengths, g.count = &offsets[0], &sources[0], &lengths[0], n
    with nogil:
        parallel_for(_gather_range, &g, offsets[n - 1] + lengths[n - 1], 1, num_threads)
