"""STREAM-style triad, the bandwidth yardstick of ``python -m fastopt bench``.

``a = b + s * c`` over float32 arrays, split like every fastopt kernel
(fixed chunks, static schedule), so its speed is the memory bandwidth the
update rules can hope for on this machine.
"""
from cython.parallel cimport prange

from fastopt._parallel cimport chunk_length, chunk_stop, num_chunks, team_size


cdef inline void _triad_range(float* a, const float* b, const float* c, float s,
                              Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, stop):
        a[i] = b[i] + s * c[i]


def triad(float[::1] a not None, const float[::1] b not None, const float[::1] c not None, float s,
          int num_threads=1):
    """a = b + s * c (float32, 1-D contiguous, equal lengths)."""
    cdef Py_ssize_t n = a.shape[0], ch = chunk_length(sizeof(float))
    if b.shape[0] != n or c.shape[0] != n:
        raise ValueError("triad arrays must have equal lengths")
    cdef Py_ssize_t k, nchunks = num_chunks(n, ch)
    if n == 0:
        return
    with nogil:
        for k in prange(nchunks, schedule="static", num_threads=team_size(nchunks, num_threads)):
            _triad_range(&a[0], &b[0], &c[0], s, k * ch, chunk_stop(k, ch, n))
