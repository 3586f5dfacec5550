"""The bandwidth yardstick of ``python -m fastopt bench``: an in-place axpy, ``a += s * b``.

Every update rule works in place (read a parameter and its state, write them
back), so its memory traffic is that of an in-place axpy, not of STREAM's
triad (which writes a fresh array and pays for write-allocate).  The loop is
split like every fastopt kernel (fixed chunks, static schedule), so its speed
is the memory bandwidth the update rules can hope for on this machine.
"""
from cython.parallel cimport prange

from fastopt._parallel cimport Split, chunk_stop, split


cdef inline void _axpy_range(float* a, const float* b, float s, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, stop):
        a[i] = a[i] + s * b[i]


def axpy(float[::1] a not None, const float[::1] b not None, float scale, int num_threads=1):
    """a += scale * b in place (float32, 1-D contiguous, equal lengths): 12 bytes moved per element."""
    cdef Py_ssize_t k, n = a.shape[0]
    if b.shape[0] != n:
        raise ValueError("axpy arrays must have equal lengths")
    cdef Split s = split(n, sizeof(float), num_threads)
    if n == 0:
        return
    with nogil:
        for k in prange(s.nchunks, schedule="static", num_threads=s.team):
            _axpy_range(&a[0], &b[0], scale, k * s.chunk, chunk_stop(k, s.chunk, n))
