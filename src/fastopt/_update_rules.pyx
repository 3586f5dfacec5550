"""Fused update-rule kernels: one pass over memory per step, OpenMP over chunks.

Each rule has three layers:

* ``_<rule>_range``: the element loop over ``[start, stop)``, written so the
  compiler vectorizes it (no calls, no aliasing between arrays);
* ``<rule>_update``: the nogil C entry point declared in the .pxd, which casts
  the hyperparameters to the element type once and runs the range function
  over fixed chunks with a static OpenMP schedule;
* ``<rule>_step``: the Python binding over 1-D contiguous memoryviews, which
  releases the GIL.  Argument validation belongs to the Python layer
  (``fastopt.optim``); the binding only refuses lengths that would make the
  kernel read or write out of bounds.

Each rule performs the same IEEE operations, in the same order, as the
reference written with NumPy in ``tests/reference.py``; with floating-point
contraction off (see setup.py) the results are identical bit for bit, and they
do not depend on the thread count.
"""
from cython.parallel cimport prange
from libc.math cimport pow, sqrt, sqrtf

from fastopt._parallel cimport chunk_length, chunk_stop, num_chunks, team_size


cdef inline floating _sqrt(floating x) noexcept nogil:
    """Square root in the element's own precision (libc's sqrt would promote floats to double)."""
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


# --------------------------------------------------------------------------
# SGD:  d = (-g if maximize else g) + weight_decay * p ;  p = p + (-lr) * d
# --------------------------------------------------------------------------
cdef inline void _sgd_range(floating* p, const floating* g, Py_ssize_t start, Py_ssize_t stop,
                            floating sign, floating wd, bint has_wd, floating neg_lr) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d
    for i in range(start, stop):
        d = sign * g[i]
        if has_wd:
            d = d + wd * p[i]
        p[i] = p[i] + neg_lr * d


cdef void sgd_update(floating* param, const floating* grad, Py_ssize_t n,
                     const SGDHyper* hyper, int num_threads) noexcept nogil:
    cdef floating sign = -1 if hyper.maximize else 1
    cdef floating wd = <floating>hyper.weight_decay
    cdef floating neg_lr = <floating>(-hyper.lr)
    cdef bint has_wd = hyper.weight_decay != 0
    cdef Py_ssize_t c, chunk = chunk_length(sizeof(floating))
    cdef Py_ssize_t nchunks = num_chunks(n, chunk)
    for c in prange(nchunks, schedule="static", num_threads=team_size(nchunks, num_threads)):
        _sgd_range(param, grad, c * chunk, chunk_stop(c, chunk, n), sign, wd, has_wd, neg_lr)


def sgd_step(floating[::1] param, const floating[::1] grad, double lr, double weight_decay=0.0,
             bint maximize=False, int num_threads=1):
    """In-place SGD step on 1-D contiguous arrays (no validation beyond lengths)."""
    _check_lengths(param.shape[0], grad.shape[0])
    cdef SGDHyper hyper = SGDHyper(lr=lr, weight_decay=weight_decay, maximize=maximize)
    if param.shape[0] == 0:
        return
    with nogil:
        sgd_update(&param[0], &grad[0], param.shape[0], &hyper, num_threads)


# --------------------------------------------------------------------------
# Adam (torch.optim.Adam, amsgrad=False):
#   d  = (-g if maximize else g) + weight_decay * p
#   m  = lerp(m, d, 1 - beta1)              (torch.lerp's two-branch formula)
#   v  = v * beta2 + ((1 - beta2) * d) * d
#   p  = p + (-step_size * m) / (sqrt(v) / sqrt(bias_correction2) + eps)
# with step_size = lr / (1 - beta1**t), bias_correction2 = 1 - beta2**t.
# --------------------------------------------------------------------------
cdef inline void _adam_range(floating* p, const floating* g, floating* m, floating* v,
                             Py_ssize_t start, Py_ssize_t stop,
                             floating sign, floating wd, bint has_wd,
                             floating w1, floating one_minus_w1, bint lerp_from_m,
                             floating beta2, floating one_minus_beta2,
                             floating bc2_sqrt, floating eps, floating neg_step_size) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d, mi, vi
    for i in range(start, stop):
        d = sign * g[i]
        if has_wd:
            d = d + wd * p[i]
        mi = m[i]
        if lerp_from_m:
            mi = mi + w1 * (d - mi)
        else:
            mi = d - (d - mi) * one_minus_w1
        vi = v[i] * beta2 + (one_minus_beta2 * d) * d
        m[i] = mi
        v[i] = vi
        p[i] = p[i] + (neg_step_size * mi) / (_sqrt(vi) / bc2_sqrt + eps)


cdef void adam_update(floating* param, const floating* grad, floating* exp_avg,
                      floating* exp_avg_sq, Py_ssize_t n,
                      const AdamHyper* hyper, int num_threads) noexcept nogil:
    cdef double w1 = 1.0 - hyper.beta1
    cdef double t = <double>hyper.step
    cdef floating sign = -1 if hyper.maximize else 1
    cdef floating wd = <floating>hyper.weight_decay
    cdef floating fw1 = <floating>w1
    cdef floating one_minus_w1 = <floating>(1.0 - w1)
    cdef floating beta2 = <floating>hyper.beta2
    cdef floating one_minus_beta2 = <floating>(1.0 - hyper.beta2)
    cdef floating bc2_sqrt = <floating>sqrt(1.0 - pow(hyper.beta2, t))
    cdef floating eps = <floating>hyper.eps
    cdef floating neg_step_size = <floating>(-(hyper.lr / (1.0 - pow(hyper.beta1, t))))
    cdef bint has_wd = hyper.weight_decay != 0
    cdef bint lerp_from_m = w1 < 0.5
    cdef Py_ssize_t c, chunk = chunk_length(sizeof(floating))
    cdef Py_ssize_t nchunks = num_chunks(n, chunk)
    for c in prange(nchunks, schedule="static", num_threads=team_size(nchunks, num_threads)):
        _adam_range(param, grad, exp_avg, exp_avg_sq, c * chunk, chunk_stop(c, chunk, n),
                    sign, wd, has_wd, fw1, one_minus_w1, lerp_from_m,
                    beta2, one_minus_beta2, bc2_sqrt, eps, neg_step_size)


def adam_step(floating[::1] param, const floating[::1] grad, floating[::1] exp_avg,
              floating[::1] exp_avg_sq, double lr, double beta1, double beta2, double eps,
              double weight_decay, bint maximize, long long step, int num_threads=1):
    """In-place Adam step on 1-D contiguous arrays (no validation beyond lengths)."""
    cdef Py_ssize_t n = param.shape[0]
    _check_lengths(n, grad.shape[0], exp_avg.shape[0], exp_avg_sq.shape[0])
    cdef AdamHyper hyper = AdamHyper(lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                                     weight_decay=weight_decay, maximize=maximize, step=step)
    if n == 0:
        return
    with nogil:
        adam_update(&param[0], &grad[0], &exp_avg[0], &exp_avg_sq[0], n, &hyper, num_threads)


cdef inline void _check_lengths(Py_ssize_t n, Py_ssize_t a, Py_ssize_t b=-1, Py_ssize_t c=-1) except *:
    if a != n or (b >= 0 and b != n) or (c >= 0 and c != n):
        raise ValueError(f"kernel arrays must all have {n} elements")
