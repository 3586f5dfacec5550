"""The bandwidth yardsticks of ``python -m fastopt bench``: STREAM-style kernels with trivial math.

Every update rule works in place: it reads one array it does not write (the
gradient) and reads and writes back the parameter and each state array.
:func:`stream` has exactly that access pattern, ``w[i] = w[i] + s * r[i]``
for each of 1 to 4 written arrays ``w`` and one read-only array ``r``, in
float32 or float64; given the arrays a rule touches, its time is the honest
roofline for that rule (the same streams, the same bytes, no arithmetic to
speak of).  :func:`axpy` (``a += s * b``) is its one-array case.

The kernels are driven like the element-wise update rules
(:func:`fastopt._parallel.parallel_for`: fixed chunks, each thread one
contiguous run of whole chunks), so they see the same first-touch pages,
team sizes and thread ranges.
"""
from fastopt._parallel cimport parallel_for

ctypedef fused floating:
    float
    double

cdef enum:
    MOST_WRITTEN = 4


cdef struct StreamArgs:
    void* w[MOST_WRITTEN]
    const void* r
    double scale
    int nw


cdef inline void _body(floating* w0, floating* w1, floating* w2, floating* w3, const floating* r, floating s,
                       int nw, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    # One loop per count, so that each vectorizes with all of its streams in flight together.
    cdef Py_ssize_t i
    cdef floating x
    if nw == 1:
        for i in range(start, stop):
            w0[i] = w0[i] + s * r[i]
    elif nw == 2:
        for i in range(start, stop):
            x = s * r[i]
            w0[i] = w0[i] + x
            w1[i] = w1[i] + x
    elif nw == 3:
        for i in range(start, stop):
            x = s * r[i]
            w0[i] = w0[i] + x
            w1[i] = w1[i] + x
            w2[i] = w2[i] + x
    else:
        for i in range(start, stop):
            x = s * r[i]
            w0[i] = w0[i] + x
            w1[i] = w1[i] + x
            w2[i] = w2[i] + x
            w3[i] = w3[i] + x


cdef void _range_f32(const void* args, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef const StreamArgs* a = <const StreamArgs*>args
    _body(<float*>a.w[0], <float*>a.w[1], <float*>a.w[2], <float*>a.w[3], <const float*>a.r,
          <float>a.scale, a.nw, start, stop)


cdef void _range_f64(const void* args, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef const StreamArgs* a = <const StreamArgs*>args
    _body(<double*>a.w[0], <double*>a.w[1], <double*>a.w[2], <double*>a.w[3], <const double*>a.r,
          a.scale, a.nw, start, stop)


cdef void _run(const floating[::1] r, list written, double scale, int num_threads):
    cdef StreamArgs args
    cdef floating[::1] w
    cdef Py_ssize_t n = r.shape[0]
    cdef int k
    if not 1 <= len(written) <= MOST_WRITTEN:
        raise ValueError(f"stream writes 1 to {MOST_WRITTEN} arrays, not {len(written)}")
    views = []
    for k in range(len(written)):
        w = written[k]  # raises for another dtype, a read-only or non-contiguous array
        if w.shape[0] != n:
            raise ValueError("stream arrays must have equal lengths")
        views.append(w)  # keeps the buffers acquired while the kernel runs
        args.w[k] = &w[0] if n else NULL
    for k in range(len(written), MOST_WRITTEN):
        args.w[k] = args.w[0]  # never read: nw bounds the loop
    args.r = &r[0] if n else NULL
    args.scale = scale
    args.nw = len(written)
    if n == 0:
        return
    with nogil:
        if floating is float:
            parallel_for(_range_f32, &args, n, sizeof(float), num_threads)
        else:
            parallel_for(_range_f64, &args, n, sizeof(double), num_threads)


def stream(read not None, written, double scale=1e-3, int num_threads=1):
    """``w += scale * read`` for each array ``w`` of ``written`` (1 to 4), in place.

    All arrays are 1-D, contiguous, of equal length and one element type,
    float32 or float64 (``read`` may be read-only).  Moves
    ``itemsize * (1 + 2 * len(written))`` bytes per element: what an update
    rule with ``len(written) - 1`` state arrays moves (see ``bench.roofline``).
    """
    written = list(written)
    fmt = memoryview(read).format
    if fmt == "f":
        _run[float](read, written, scale, num_threads)
    elif fmt == "d":
        _run[double](read, written, scale, num_threads)
    else:
        raise TypeError(f"stream takes float32 or float64 arrays, not format {fmt!r}")


def axpy(float[::1] a not None, const float[::1] b not None, float scale, int num_threads=1):
    """a += scale * b in place (float32, 1-D contiguous, equal lengths): 12 bytes moved per element."""
    if b.shape[0] != a.shape[0]:
        raise ValueError("axpy arrays must have equal lengths")
    stream(b, [a], scale, num_threads)
