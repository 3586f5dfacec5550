"""Fused update-rule kernels: one pass over memory per step, OpenMP over chunks.

Each rule has three layers:

* ``_<rule>_range``: the element loop over ``[start, stop)``, written so the
  compiler vectorizes it (no calls left after inlining, no aliasing);
* ``<rule>_update``: the nogil C entry point declared in the .pxd; it turns
  the hyperparameters into per-step scalars (in double precision, as
  torch.optim does in Python), casts them once to the element type, and runs
  the range function over fixed chunks with a static OpenMP schedule;
* :class:`BoundStep`, the Python binding: a rule bound once to its arrays
  and hyperparameters, whose ``run()`` releases the GIL and calls the C
  entry point.  Argument validation belongs to the Python layer
  (``fastopt.optim``); binding only refuses dtypes, lengths and missing state
  arrays that would make a kernel read or write out of bounds.

Compiled code outside fastopt reaches the C entry points through the table
``_C_API`` (a capsule; see csrc/fastopt.h) or, from Cython, through
``fastopt.cython_kernels``, which reads that table.

Every rule performs torch.optim's operations (its single-tensor code path), in
the same order and in the parameter's precision.  The same operations are
written with NumPy in ``tests/reference.py``; with floating-point contraction
off (see setup.py) kernel and reference agree bit for bit, for any thread
count.
"""
from cpython.pycapsule cimport PyCapsule_New
from cython.parallel cimport prange
from libc.math cimport fabs, fabsf, pow, sqrt, sqrtf

from fastopt._parallel cimport (
    FASTOPT_BUILD_FLAGS, FASTOPT_SIMD_BYTES, FASTOPT_SIMD_NAME, Split, chunk_stop, split,
)

# What this build of the kernels targets (the same source is built once per instruction set).
BUILD = {"simd": FASTOPT_SIMD_NAME.decode(), "simd_bytes": FASTOPT_SIMD_BYTES, "flags": FASTOPT_BUILD_FLAGS.decode()}


# --------------------------------------------------------------------------
# Element helpers (each inlines to a few instructions)
# --------------------------------------------------------------------------
cdef inline floating _sqrt(floating x) noexcept nogil:
    """Square root in the element's own precision (libc's sqrt would promote floats)."""
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _abs(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


cdef inline floating _maximum(floating a, floating b) noexcept nogil:
    """torch.maximum: the larger value, NaN if either is NaN."""
    return a if (a > b or a != a) else b


cdef inline floating _sign(floating x) noexcept nogil:
    """torch.sign: -1, 0 or 1, and NaN for NaN (branch-free, so loops using it vectorize)."""
    cdef floating s = <floating>(x > 0) - <floating>(x < 0)
    return s if x == x else x


cdef inline floating _lerp(floating start, floating end, floating weight) noexcept nogil:
    """torch.lerp's two-branch formula, exact at both ends.

    The literal is cast: Cython writes a bare ``1`` next to a float as the
    double ``1.0``, which would compute this branch in double precision.
    """
    if weight < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (<floating>1 - weight)


cdef inline floating _direction(floating g, floating p, floating sign, floating l2) noexcept nogil:
    """The gradient as the update rule sees it: negated to maximize, plus L2 decay."""
    cdef floating d = sign * g
    if l2 != 0:
        d = d + l2 * p
    return d


cdef inline floating _decayed(floating p, floating decay) noexcept nogil:
    """Decoupled weight decay: p * (1 - lr * weight_decay), skipped when it is 1."""
    return p * decay if decay != 1 else p


# --------------------------------------------------------------------------
# SGD (torch.optim.SGD)
#   d = ±g + wd p
#   b = d on the buffer's first use, else momentum b + (1 - dampening) d
#   d = d + momentum b (nesterov) or b
#   p = p + (-lr) d
# --------------------------------------------------------------------------
cdef inline void _sgd_range(floating* p, const floating* g, floating* buf,
                            Py_ssize_t start, Py_ssize_t stop, floating sign, floating l2,
                            bint use_momentum, bint fresh, bint nesterov, floating momentum,
                            floating one_minus_dampening, floating neg_lr) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d, b
    for i in range(start, stop):
        d = _direction(g[i], p[i], sign, l2)
        if use_momentum:
            b = d if fresh else buf[i] * momentum + one_minus_dampening * d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        p[i] = p[i] + neg_lr * d


cdef inline void _sgd_chunk(floating* p, const floating* g, floating* buf, Py_ssize_t start, Py_ssize_t stop,
                            floating sign, floating l2, bint use_momentum, bint fresh, bint nesterov,
                            floating momentum, floating one_minus_dampening, floating neg_lr) noexcept nogil:
    # Literal flags per call site: each inlined copy is specialised, free of conditional
    # loads and stores, and vectorizes (GCC does not unswitch loops this large by itself).
    if use_momentum:
        _sgd_range(p, g, buf, start, stop, sign, l2, True, fresh, nesterov, momentum, one_minus_dampening, neg_lr)
    else:
        _sgd_range(p, g, buf, start, stop, sign, l2, False, False, False, momentum, one_minus_dampening, neg_lr)


cdef void sgd_update(floating* param, const floating* grad, floating* momentum_buffer,
                     Py_ssize_t n, const SGDHyper* h, bint momentum_buffer_is_new,
                     int num_threads) noexcept nogil:
    cdef floating sign = -1 if h.maximize else 1
    cdef floating l2 = <floating>h.weight_decay
    cdef floating momentum = <floating>h.momentum
    cdef floating one_minus_dampening = <floating>(1.0 - h.dampening)
    cdef floating neg_lr = <floating>(-h.lr)
    cdef bint use_momentum = h.momentum != 0
    cdef Py_ssize_t c
    cdef Split s = split(n, sizeof(floating), num_threads)
    if s.team == 1:  # no OpenMP region at all: a small array costs only its loop
        _sgd_chunk(param, grad, momentum_buffer, 0, n, sign, l2, use_momentum, momentum_buffer_is_new,
                   h.nesterov, momentum, one_minus_dampening, neg_lr)
        return
    for c in prange(s.nchunks, schedule="static", num_threads=s.team):
        _sgd_chunk(param, grad, momentum_buffer, c * s.chunk, chunk_stop(c, s.chunk, n), sign, l2, use_momentum,
                   momentum_buffer_is_new, h.nesterov, momentum, one_minus_dampening, neg_lr)


# --------------------------------------------------------------------------
# Adagrad (torch.optim.Adagrad)
#   d = ±g + wd p ;  s = s + d d ;  p = p + (-clr d) / (sqrt(s) + eps)
#   clr = lr / (1 + (t - 1) lr_decay)
# --------------------------------------------------------------------------
cdef inline void _adagrad_range(floating* p, const floating* g, floating* s,
                                Py_ssize_t start, Py_ssize_t stop, floating sign, floating l2,
                                floating eps, floating neg_clr) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d, si
    for i in range(start, stop):
        d = _direction(g[i], p[i], sign, l2)
        si = s[i] + d * d
        s[i] = si
        p[i] = p[i] + (neg_clr * d) / (_sqrt(si) + eps)


cdef void adagrad_update(floating* param, const floating* grad, floating* state_sum,
                         Py_ssize_t n, const AdagradHyper* h, long long step,
                         int num_threads) noexcept nogil:
    cdef floating sign = -1 if h.maximize else 1
    cdef floating l2 = <floating>h.weight_decay
    cdef floating eps = <floating>h.eps
    cdef floating neg_clr = <floating>(-(h.lr / (1.0 + (step - 1) * h.lr_decay)))
    cdef Py_ssize_t c
    cdef Split s = split(n, sizeof(floating), num_threads)
    if s.team == 1:  # no OpenMP region at all: a small array costs only its loop
        _adagrad_range(param, grad, state_sum, 0, n,
                       sign, l2, eps, neg_clr)
        return
    for c in prange(s.nchunks, schedule="static", num_threads=s.team):
        _adagrad_range(param, grad, state_sum, c * s.chunk, chunk_stop(c, s.chunk, n),
                       sign, l2, eps, neg_clr)


# --------------------------------------------------------------------------
# RMSprop (torch.optim.RMSprop)
#   d = ±g + wd p ;  v = alpha v + ((1 - alpha) d) d
#   centered: a = lerp(a, d, 1 - alpha), avg = sqrt(v - a a) + eps ; else avg = sqrt(v) + eps
#   momentum: b = momentum b + d / avg, p = p + (-lr) b ; else p = p + (-lr d) / avg
# --------------------------------------------------------------------------
cdef inline void _rmsprop_range(floating* p, const floating* g, floating* v, floating* buf,
                                floating* a, Py_ssize_t start, Py_ssize_t stop,
                                floating sign, floating l2, floating alpha, floating one_minus_alpha,
                                floating eps, bint use_momentum, floating momentum, bint centered,
                                floating neg_lr) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d, vi, ai, avg, b
    for i in range(start, stop):
        d = _direction(g[i], p[i], sign, l2)
        vi = v[i] * alpha + (one_minus_alpha * d) * d
        v[i] = vi
        if centered:
            ai = _lerp(a[i], d, one_minus_alpha)
            a[i] = ai
            avg = _sqrt(vi - ai * ai) + eps
        else:
            avg = _sqrt(vi) + eps
        if use_momentum:
            b = buf[i] * momentum + d / avg
            buf[i] = b
            p[i] = p[i] + neg_lr * b
        else:
            p[i] = p[i] + (neg_lr * d) / avg


cdef inline void _rmsprop_chunk(floating* p, const floating* g, floating* v, floating* buf, floating* a,
                                Py_ssize_t start, Py_ssize_t stop, floating sign, floating l2, floating alpha,
                                floating one_minus_alpha, floating eps, bint use_momentum, floating momentum,
                                bint centered, floating neg_lr) noexcept nogil:
    # Literal flags per call site (see _sgd_chunk).
    if use_momentum and centered:
        _rmsprop_range(p, g, v, buf, a, start, stop, sign, l2, alpha, one_minus_alpha, eps, True, momentum, True,
                       neg_lr)
    elif use_momentum:
        _rmsprop_range(p, g, v, buf, a, start, stop, sign, l2, alpha, one_minus_alpha, eps, True, momentum, False,
                       neg_lr)
    elif centered:
        _rmsprop_range(p, g, v, buf, a, start, stop, sign, l2, alpha, one_minus_alpha, eps, False, momentum, True,
                       neg_lr)
    else:
        _rmsprop_range(p, g, v, buf, a, start, stop, sign, l2, alpha, one_minus_alpha, eps, False, momentum, False,
                       neg_lr)


cdef void rmsprop_update(floating* param, const floating* grad, floating* square_avg,
                         floating* momentum_buffer, floating* grad_avg,
                         Py_ssize_t n, const RMSpropHyper* h, int num_threads) noexcept nogil:
    cdef floating sign = -1 if h.maximize else 1
    cdef floating l2 = <floating>h.weight_decay
    cdef floating alpha = <floating>h.alpha
    cdef floating one_minus_alpha = <floating>(1.0 - h.alpha)
    cdef floating eps = <floating>h.eps
    cdef floating momentum = <floating>h.momentum
    cdef floating neg_lr = <floating>(-h.lr)
    cdef bint use_momentum = h.momentum > 0
    cdef Py_ssize_t c
    cdef Split s = split(n, sizeof(floating), num_threads)
    if s.team == 1:  # no OpenMP region at all: a small array costs only its loop
        _rmsprop_chunk(param, grad, square_avg, momentum_buffer, grad_avg, 0, n, sign, l2, alpha,
                       one_minus_alpha, eps, use_momentum, momentum, h.centered, neg_lr)
        return
    for c in prange(s.nchunks, schedule="static", num_threads=s.team):
        _rmsprop_chunk(param, grad, square_avg, momentum_buffer, grad_avg, c * s.chunk, chunk_stop(c, s.chunk, n),
                       sign, l2, alpha, one_minus_alpha, eps, use_momentum, momentum, h.centered, neg_lr)


# --------------------------------------------------------------------------
# Adam / AdamW (torch.optim.Adam, decoupled_weight_decay=True is AdamW)
#   p = p (1 - lr wd) (decoupled) ;  d = ±g + wd p (otherwise)
#   m = lerp(m, d, 1 - beta1) ;  v = beta2 v + ((1 - beta2) d) d
#   vmax = maximum(vmax, v) (amsgrad, used in place of v below)
#   p = p + (-step_size m) / (sqrt(v) * bias_correction2 ** -0.5 + eps)
#   step_size = lr / (1 - beta1 ** t), bias_correction2 = 1 - beta2 ** t
# --------------------------------------------------------------------------
cdef inline void _adam_range(floating* p, const floating* g, floating* m, floating* v,
                             floating* vmax, Py_ssize_t start, Py_ssize_t stop,
                             floating sign, floating l2, floating decay, floating w1,
                             floating beta2, floating one_minus_beta2, bint amsgrad,
                             floating inv_bc2_sqrt, floating eps, floating neg_step_size) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating pi, d, mi, vi
    for i in range(start, stop):
        pi = _decayed(p[i], decay)
        d = _direction(g[i], pi, sign, l2)
        mi = _lerp(m[i], d, w1)
        vi = v[i] * beta2 + (one_minus_beta2 * d) * d
        m[i] = mi
        v[i] = vi
        if amsgrad:
            vi = _maximum(vmax[i], vi)
            vmax[i] = vi
        p[i] = pi + (neg_step_size * mi) / (_sqrt(vi) * inv_bc2_sqrt + eps)


cdef inline void _adam_chunk(floating* p, const floating* g, floating* m, floating* v, floating* vmax,
                             Py_ssize_t start, Py_ssize_t stop, floating sign, floating l2, floating decay,
                             floating w1, floating beta2, floating one_minus_beta2, bint amsgrad,
                             floating inv_bc2_sqrt, floating eps, floating neg_step_size) noexcept nogil:
    # A literal flag per call site (see _sgd_chunk).
    if amsgrad:
        _adam_range(p, g, m, v, vmax, start, stop, sign, l2, decay, w1, beta2, one_minus_beta2, True, inv_bc2_sqrt,
                    eps, neg_step_size)
    else:
        _adam_range(p, g, m, v, vmax, start, stop, sign, l2, decay, w1, beta2, one_minus_beta2, False, inv_bc2_sqrt,
                    eps, neg_step_size)


cdef void adam_update(floating* param, const floating* grad, floating* exp_avg,
                      floating* exp_avg_sq, floating* max_exp_avg_sq,
                      Py_ssize_t n, const AdamHyper* h, long long step,
                      int num_threads) noexcept nogil:
    cdef double t = <double>step
    cdef bint decoupled = h.decoupled_weight_decay
    cdef floating sign = -1 if h.maximize else 1
    cdef floating l2 = 0 if decoupled else <floating>h.weight_decay
    cdef floating decay = <floating>(1.0 - h.lr * h.weight_decay) if decoupled else 1
    cdef floating w1 = <floating>(1.0 - h.beta1)
    cdef floating beta2 = <floating>h.beta2
    cdef floating one_minus_beta2 = <floating>(1.0 - h.beta2)
    cdef floating inv_bc2_sqrt = <floating>pow(1.0 - pow(h.beta2, t), -0.5)
    cdef floating eps = <floating>h.eps
    cdef floating neg_step_size = <floating>(-(h.lr / (1.0 - pow(h.beta1, t))))
    cdef Py_ssize_t c
    cdef Split s = split(n, sizeof(floating), num_threads)
    if s.team == 1:  # no OpenMP region at all: a small array costs only its loop
        _adam_chunk(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, 0, n, sign, l2, decay, w1, beta2,
                    one_minus_beta2, h.amsgrad, inv_bc2_sqrt, eps, neg_step_size)
        return
    for c in prange(s.nchunks, schedule="static", num_threads=s.team):
        _adam_chunk(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, c * s.chunk, chunk_stop(c, s.chunk, n),
                    sign, l2, decay, w1, beta2, one_minus_beta2, h.amsgrad, inv_bc2_sqrt, eps, neg_step_size)


# --------------------------------------------------------------------------
# Adamax (torch.optim.Adamax)
#   d = ±g + wd p ;  m = lerp(m, d, 1 - beta1) ;  u = maximum(beta2 u, |d| + eps)
#   p = p + (-clr m) / u,  clr = lr / (1 - beta1 ** t)
# --------------------------------------------------------------------------
cdef inline void _adamax_range(floating* p, const floating* g, floating* m, floating* u,
                               Py_ssize_t start, Py_ssize_t stop, floating sign, floating l2,
                               floating w1, floating beta2, floating eps,
                               floating neg_clr) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d, mi, ui
    for i in range(start, stop):
        d = _direction(g[i], p[i], sign, l2)
        mi = _lerp(m[i], d, w1)
        ui = _maximum(u[i] * beta2, _abs(d) + eps)
        m[i] = mi
        u[i] = ui
        p[i] = p[i] + (neg_clr * mi) / ui


cdef void adamax_update(floating* param, const floating* grad, floating* exp_avg,
                        floating* exp_inf, Py_ssize_t n, const AdamaxHyper* h,
                        long long step, int num_threads) noexcept nogil:
    cdef floating sign = -1 if h.maximize else 1
    cdef floating l2 = <floating>h.weight_decay
    cdef floating w1 = <floating>(1.0 - h.beta1)
    cdef floating beta2 = <floating>h.beta2
    cdef floating eps = <floating>h.eps
    cdef floating neg_clr = <floating>(-(h.lr / (1.0 - pow(h.beta1, <double>step))))
    cdef Py_ssize_t c
    cdef Split s = split(n, sizeof(floating), num_threads)
    if s.team == 1:  # no OpenMP region at all: a small array costs only its loop
        _adamax_range(param, grad, exp_avg, exp_inf, 0, n,
                      sign, l2, w1, beta2, eps, neg_clr)
        return
    for c in prange(s.nchunks, schedule="static", num_threads=s.team):
        _adamax_range(param, grad, exp_avg, exp_inf, c * s.chunk, chunk_stop(c, s.chunk, n),
                      sign, l2, w1, beta2, eps, neg_clr)


# --------------------------------------------------------------------------
# NAdam (torch.optim.NAdam)
#   p = p (1 - lr wd) (decoupled) ;  d = ±g + wd p (otherwise)
#   m = lerp(m, d, 1 - beta1) ;  v = beta2 v + ((1 - beta2) d) d
#   denom = sqrt(v / (1 - beta2 ** t)) + eps
#   p = p + (c_grad d) / denom ;  p = p + (c_avg m) / denom
#   mu_t = beta1 (1 - 0.5 * 0.96 ** (t momentum_decay)), mu_product *= mu_t,
#   c_grad = -lr (1 - mu_t) / (1 - mu_product), c_avg = -lr mu_{t+1} / (1 - mu_product mu_{t+1})
# --------------------------------------------------------------------------
cdef inline void _nadam_range(floating* p, const floating* g, floating* m, floating* v,
                              Py_ssize_t start, Py_ssize_t stop, floating sign, floating l2,
                              floating decay, floating w1, floating beta2,
                              floating one_minus_beta2, floating bc2, floating eps,
                              floating c_grad, floating c_avg) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating pi, d, mi, vi, denom
    for i in range(start, stop):
        pi = _decayed(p[i], decay)
        d = _direction(g[i], pi, sign, l2)
        mi = _lerp(m[i], d, w1)
        vi = v[i] * beta2 + (one_minus_beta2 * d) * d
        m[i] = mi
        v[i] = vi
        denom = _sqrt(vi / bc2) + eps
        pi = pi + (c_grad * d) / denom
        p[i] = pi + (c_avg * mi) / denom


cdef void nadam_update(floating* param, const floating* grad, floating* exp_avg,
                       floating* exp_avg_sq, Py_ssize_t n, const NAdamHyper* h,
                       long long step, double* mu_product, int num_threads) noexcept nogil:
    cdef double t = <double>step
    cdef double mu = h.beta1 * (1.0 - 0.5 * pow(0.96, t * h.momentum_decay))
    cdef double mu_next = h.beta1 * (1.0 - 0.5 * pow(0.96, (t + 1) * h.momentum_decay))
    mu_product[0] = mu_product[0] * mu
    cdef double mu_product_next = mu_product[0] * mu_next
    cdef bint decoupled = h.decoupled_weight_decay
    cdef floating sign = -1 if h.maximize else 1
    cdef floating l2 = 0 if decoupled else <floating>h.weight_decay
    cdef floating decay = <floating>(1.0 - h.lr * h.weight_decay) if decoupled else 1
    cdef floating w1 = <floating>(1.0 - h.beta1)
    cdef floating beta2 = <floating>h.beta2
    cdef floating one_minus_beta2 = <floating>(1.0 - h.beta2)
    cdef floating bc2 = <floating>(1.0 - pow(h.beta2, t))
    cdef floating eps = <floating>h.eps
    cdef floating c_grad = <floating>(-h.lr * (1.0 - mu) / (1.0 - mu_product[0]))
    cdef floating c_avg = <floating>((-h.lr * mu_next) / (1.0 - mu_product_next))
    cdef Py_ssize_t c
    cdef Split s = split(n, sizeof(floating), num_threads)
    if s.team == 1:  # no OpenMP region at all: a small array costs only its loop
        _nadam_range(param, grad, exp_avg, exp_avg_sq, 0, n,
                     sign, l2, decay, w1, beta2, one_minus_beta2, bc2, eps, c_grad, c_avg)
        return
    for c in prange(s.nchunks, schedule="static", num_threads=s.team):
        _nadam_range(param, grad, exp_avg, exp_avg_sq, c * s.chunk, chunk_stop(c, s.chunk, n),
                     sign, l2, decay, w1, beta2, one_minus_beta2, bc2, eps, c_grad, c_avg)


# --------------------------------------------------------------------------
# RAdam (torch.optim.RAdam)
#   p = p (1 - lr wd) (decoupled) ;  d = ±g + wd p (otherwise)
#   m = lerp(m, d, 1 - beta1) ;  v = beta2 v + ((1 - beta2) d) d
#   u = (m / (1 - beta1 ** t)) lr
#   if rho_t > 5:  u = (u (bias_correction2 ** 0.5 / (sqrt(v) + eps))) rect
#   p = p - u
#   rho_inf = 2 / (1 - beta2) - 1, rho_t = rho_inf - 2 t beta2 ** t / bias_correction2,
#   rect = ((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t)) ** 0.5
# --------------------------------------------------------------------------
cdef inline void _radam_range(floating* p, const floating* g, floating* m, floating* v,
                              Py_ssize_t start, Py_ssize_t stop, floating sign, floating l2,
                              floating decay, floating w1, floating beta2,
                              floating one_minus_beta2, floating bc1, floating lr,
                              bint rectify, floating bc2_sqrt, floating eps,
                              floating rect) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating pi, d, mi, vi, u
    for i in range(start, stop):
        pi = _decayed(p[i], decay)
        d = _direction(g[i], pi, sign, l2)
        mi = _lerp(m[i], d, w1)
        vi = v[i] * beta2 + (one_minus_beta2 * d) * d
        m[i] = mi
        v[i] = vi
        u = (mi / bc1) * lr
        if rectify:
            u = (u * (bc2_sqrt / (_sqrt(vi) + eps))) * rect
        p[i] = pi - u


cdef void radam_update(floating* param, const floating* grad, floating* exp_avg,
                       floating* exp_avg_sq, Py_ssize_t n, const RAdamHyper* h,
                       long long step, int num_threads) noexcept nogil:
    cdef double t = <double>step
    cdef double bc2 = 1.0 - pow(h.beta2, t)
    cdef double rho_inf = 2.0 / (1.0 - h.beta2) - 1.0
    cdef double rho_t = rho_inf - 2.0 * t * pow(h.beta2, t) / bc2
    cdef bint rectify = rho_t > 5.0
    cdef double rect = 0.0
    if rectify:
        rect = pow((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t), 0.5)
    cdef bint decoupled = h.decoupled_weight_decay
    cdef floating sign = -1 if h.maximize else 1
    cdef floating l2 = 0 if decoupled else <floating>h.weight_decay
    cdef floating decay = <floating>(1.0 - h.lr * h.weight_decay) if decoupled else 1
    cdef floating w1 = <floating>(1.0 - h.beta1)
    cdef floating beta2 = <floating>h.beta2
    cdef floating one_minus_beta2 = <floating>(1.0 - h.beta2)
    cdef floating bc1 = <floating>(1.0 - pow(h.beta1, t))
    cdef floating bc2_sqrt = <floating>pow(bc2, 0.5)
    cdef Py_ssize_t c
    cdef Split s = split(n, sizeof(floating), num_threads)
    if s.team == 1:  # no OpenMP region at all: a small array costs only its loop
        _radam_range(param, grad, exp_avg, exp_avg_sq, 0, n,
                     sign, l2, decay, w1, beta2, one_minus_beta2, bc1, <floating>h.lr,
                     rectify, bc2_sqrt, <floating>h.eps, <floating>rect)
        return
    for c in prange(s.nchunks, schedule="static", num_threads=s.team):
        _radam_range(param, grad, exp_avg, exp_avg_sq, c * s.chunk, chunk_stop(c, s.chunk, n),
                     sign, l2, decay, w1, beta2, one_minus_beta2, bc1, <floating>h.lr,
                     rectify, bc2_sqrt, <floating>h.eps, <floating>rect)


# --------------------------------------------------------------------------
# Adadelta (torch.optim.Adadelta)
#   d = ±g + wd p ;  v = rho v + ((1 - rho) d) d
#   delta = (sqrt(a + eps) / sqrt(v + eps)) d ;  a = rho a + ((1 - rho) delta) delta
#   p = p + (-lr) delta
# --------------------------------------------------------------------------
cdef inline void _adadelta_range(floating* p, const floating* g, floating* v, floating* a,
                                 Py_ssize_t start, Py_ssize_t stop, floating sign, floating l2,
                                 floating rho, floating one_minus_rho, floating eps,
                                 floating neg_lr) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d, vi, delta
    for i in range(start, stop):
        d = _direction(g[i], p[i], sign, l2)
        vi = v[i] * rho + (one_minus_rho * d) * d
        v[i] = vi
        delta = (_sqrt(a[i] + eps) / _sqrt(vi + eps)) * d
        a[i] = a[i] * rho + (one_minus_rho * delta) * delta
        p[i] = p[i] + neg_lr * delta


cdef void adadelta_update(floating* param, const floating* grad, floating* square_avg,
                          floating* acc_delta, Py_ssize_t n, const AdadeltaHyper* h,
                          int num_threads) noexcept nogil:
    cdef floating sign = -1 if h.maximize else 1
    cdef floating l2 = <floating>h.weight_decay
    cdef floating rho = <floating>h.rho
    cdef floating one_minus_rho = <floating>(1.0 - h.rho)
    cdef floating eps = <floating>h.eps
    cdef floating neg_lr = <floating>(-h.lr)
    cdef Py_ssize_t c
    cdef Split s = split(n, sizeof(floating), num_threads)
    if s.team == 1:  # no OpenMP region at all: a small array costs only its loop
        _adadelta_range(param, grad, square_avg, acc_delta, 0, n,
                        sign, l2, rho, one_minus_rho, eps, neg_lr)
        return
    for c in prange(s.nchunks, schedule="static", num_threads=s.team):
        _adadelta_range(param, grad, square_avg, acc_delta, c * s.chunk, chunk_stop(c, s.chunk, n),
                        sign, l2, rho, one_minus_rho, eps, neg_lr)


# --------------------------------------------------------------------------
# Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms")
#   p = p (1 - lr wd) ;  d = ±g
#   p = p + (-lr) sign(beta1 m + (1 - beta1) d) ;  m = beta2 m + (1 - beta2) d
# --------------------------------------------------------------------------
cdef inline void _lion_range(floating* p, const floating* g, floating* m,
                             Py_ssize_t start, Py_ssize_t stop, floating sign, floating decay,
                             floating beta1, floating one_minus_beta1, floating beta2,
                             floating one_minus_beta2, floating neg_lr) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating d, mi
    for i in range(start, stop):
        d = sign * g[i]
        mi = m[i]
        p[i] = _decayed(p[i], decay) + neg_lr * _sign(mi * beta1 + one_minus_beta1 * d)
        m[i] = mi * beta2 + one_minus_beta2 * d


cdef void lion_update(floating* param, const floating* grad, floating* exp_avg,
                      Py_ssize_t n, const LionHyper* h, int num_threads) noexcept nogil:
    cdef floating sign = -1 if h.maximize else 1
    cdef floating decay = <floating>(1.0 - h.lr * h.weight_decay)
    cdef Py_ssize_t c
    cdef Split s = split(n, sizeof(floating), num_threads)
    if s.team == 1:  # no OpenMP region at all: a small array costs only its loop
        _lion_range(param, grad, exp_avg, 0, n, sign, decay,
                    <floating>h.beta1, <floating>(1.0 - h.beta1), <floating>h.beta2,
                    <floating>(1.0 - h.beta2), <floating>(-h.lr))
        return
    for c in prange(s.nchunks, schedule="static", num_threads=s.team):
        _lion_range(param, grad, exp_avg, c * s.chunk, chunk_stop(c, s.chunk, n), sign, decay,
                    <floating>h.beta1, <floating>(1.0 - h.beta1), <floating>h.beta2,
                    <floating>(1.0 - h.beta2), <floating>(-h.lr))


# --------------------------------------------------------------------------
# Non-finite detection (for skip_nonfinite): x - x is 0 exactly when x is finite.
# --------------------------------------------------------------------------
cdef inline Py_ssize_t _count_nonfinite_range(const floating* x, Py_ssize_t start,
                                              Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t i, count = 0
    for i in range(start, stop):
        count += (x[i] - x[i]) != 0
    return count


cdef Py_ssize_t count_nonfinite(const floating* x, Py_ssize_t n, int num_threads) noexcept nogil:
    cdef Py_ssize_t c, total = 0
    cdef Split s = split(n, sizeof(floating), num_threads)
    if s.team == 1:
        return _count_nonfinite_range(x, 0, n)
    for c in prange(s.nchunks, schedule="static", num_threads=s.team):
        total += _count_nonfinite_range(x, c * s.chunk, chunk_stop(c, s.chunk, n))
    return total


# --------------------------------------------------------------------------
# C API: the table of entry points csrc/fastopt.h's fastopt_import() reads
# --------------------------------------------------------------------------
cdef extern from "fastopt.h" nogil:
    const int FASTOPT_ABI_VERSION
    const char* FASTOPT_CAPSULE_NAME

    # Member types as in the header; the C compiler checks each assignment below against them.
    ctypedef struct fastopt_api:
        int abi_version
        size_t size
        const char* simd
        void (*sgd_update_f32)(float*, const float*, float*, Py_ssize_t, const SGDHyper*, bint,
                               int) noexcept nogil
        void (*sgd_update_f64)(double*, const double*, double*, Py_ssize_t, const SGDHyper*, bint,
                               int) noexcept nogil
        void (*adagrad_update_f32)(float*, const float*, float*, Py_ssize_t, const AdagradHyper*, long long,
                                   int) noexcept nogil
        void (*adagrad_update_f64)(double*, const double*, double*, Py_ssize_t, const AdagradHyper*, long long,
                                   int) noexcept nogil
        void (*rmsprop_update_f32)(float*, const float*, float*, float*, float*, Py_ssize_t, const RMSpropHyper*,
                                   int) noexcept nogil
        void (*rmsprop_update_f64)(double*, const double*, double*, double*, double*, Py_ssize_t,
                                   const RMSpropHyper*, int) noexcept nogil
        void (*adam_update_f32)(float*, const float*, float*, float*, float*, Py_ssize_t, const AdamHyper*,
                                long long, int) noexcept nogil
        void (*adam_update_f64)(double*, const double*, double*, double*, double*, Py_ssize_t, const AdamHyper*,
                                long long, int) noexcept nogil
        void (*adamax_update_f32)(float*, const float*, float*, float*, Py_ssize_t, const AdamaxHyper*, long long,
                                  int) noexcept nogil
        void (*adamax_update_f64)(double*, const double*, double*, double*, Py_ssize_t, const AdamaxHyper*,
                                  long long, int) noexcept nogil
        void (*nadam_update_f32)(float*, const float*, float*, float*, Py_ssize_t, const NAdamHyper*, long long,
                                 double*, int) noexcept nogil
        void (*nadam_update_f64)(double*, const double*, double*, double*, Py_ssize_t, const NAdamHyper*,
                                 long long, double*, int) noexcept nogil
        void (*radam_update_f32)(float*, const float*, float*, float*, Py_ssize_t, const RAdamHyper*, long long,
                                 int) noexcept nogil
        void (*radam_update_f64)(double*, const double*, double*, double*, Py_ssize_t, const RAdamHyper*,
                                 long long, int) noexcept nogil
        void (*adadelta_update_f32)(float*, const float*, float*, float*, Py_ssize_t, const AdadeltaHyper*,
                                    int) noexcept nogil
        void (*adadelta_update_f64)(double*, const double*, double*, double*, Py_ssize_t, const AdadeltaHyper*,
                                    int) noexcept nogil
        void (*lion_update_f32)(float*, const float*, float*, Py_ssize_t, const LionHyper*, int) noexcept nogil
        void (*lion_update_f64)(double*, const double*, double*, Py_ssize_t, const LionHyper*, int) noexcept nogil
        Py_ssize_t (*count_nonfinite_f32)(const float*, Py_ssize_t, int) noexcept nogil
        Py_ssize_t (*count_nonfinite_f64)(const double*, Py_ssize_t, int) noexcept nogil


cdef fastopt_api _c_api
_c_api.abi_version = FASTOPT_ABI_VERSION
_c_api.size = sizeof(fastopt_api)
_c_api.simd = FASTOPT_SIMD_NAME
_c_api.sgd_update_f32 = sgd_update[float]
_c_api.sgd_update_f64 = sgd_update[double]
_c_api.adagrad_update_f32 = adagrad_update[float]
_c_api.adagrad_update_f64 = adagrad_update[double]
_c_api.rmsprop_update_f32 = rmsprop_update[float]
_c_api.rmsprop_update_f64 = rmsprop_update[double]
_c_api.adam_update_f32 = adam_update[float]
_c_api.adam_update_f64 = adam_update[double]
_c_api.adamax_update_f32 = adamax_update[float]
_c_api.adamax_update_f64 = adamax_update[double]
_c_api.nadam_update_f32 = nadam_update[float]
_c_api.nadam_update_f64 = nadam_update[double]
_c_api.radam_update_f32 = radam_update[float]
_c_api.radam_update_f64 = radam_update[double]
_c_api.adadelta_update_f32 = adadelta_update[float]
_c_api.adadelta_update_f64 = adadelta_update[double]
_c_api.lion_update_f32 = lion_update[float]
_c_api.lion_update_f64 = lion_update[double]
_c_api.count_nonfinite_f32 = count_nonfinite[float]
_c_api.count_nonfinite_f64 = count_nonfinite[double]

# The same capsule name in every build (the table's layout, not the module, is what it names).
_C_API = PyCapsule_New(&_c_api, FASTOPT_CAPSULE_NAME, NULL)


# --------------------------------------------------------------------------
# Python binding: a step with its arrays and hyperparameters bound once
# --------------------------------------------------------------------------
cdef union AnyHyper:
    SGDHyper sgd
    AdagradHyper adagrad
    RMSpropHyper rmsprop
    AdamHyper adam
    AdamaxHyper adamax
    NAdamHyper nadam
    RAdamHyper radam
    AdadeltaHyper adadelta
    LionHyper lion


cdef enum RuleId:
    SGD, ADAGRAD, RMSPROP, ADAM, ADAMAX, NADAM, RADAM, ADADELTA, LION

# rule name -> (id, state arrays in kernel order)
RULES = {
    "sgd": (SGD, ("momentum_buffer",)),
    "adagrad": (ADAGRAD, ("sum",)),
    "rmsprop": (RMSPROP, ("square_avg", "momentum_buffer", "grad_avg")),
    "adam": (ADAM, ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")),
    "adamax": (ADAMAX, ("exp_avg", "exp_inf")),
    "nadam": (NADAM, ("exp_avg", "exp_avg_sq")),
    "radam": (RADAM, ("exp_avg", "exp_avg_sq")),
    "adadelta": (ADADELTA, ("square_avg", "acc_delta")),
    "lion": (LION, ("exp_avg",)),
}


cdef void* _address(object array, bint is_double, bint writable, Py_ssize_t n, str name) except *:
    """Data pointer of a 1-D contiguous float array of ``n`` elements (the caller keeps it alive)."""
    cdef float[::1] f
    cdef double[::1] d
    cdef const float[::1] cf
    cdef const double[::1] cd
    cdef Py_ssize_t length
    cdef void* ptr
    try:
        if is_double and writable:
            d = array
            length, ptr = d.shape[0], <void*>&d[0]
        elif is_double:
            cd = array
            length, ptr = cd.shape[0], <void*>&cd[0]
        elif writable:
            f = array
            length, ptr = f.shape[0], <void*>&f[0]
        else:
            cf = array
            length, ptr = cf.shape[0], <void*>&cf[0]
    except (ValueError, TypeError, BufferError) as exc:
        kind = "float64" if is_double else "float32"
        raise ValueError(f"{name} must be a {'writeable ' if writable else ''}1-D contiguous {kind} array: {exc}")
    if length != n:
        raise ValueError(f"{name} has {length} elements, the parameter {n}")
    return ptr


cdef void _run(BoundStep b, floating* p, long long step, double* mu_product, bint fresh,
               int num_threads) noexcept nogil:
    cdef const floating* g = <const floating*>b.grad
    cdef floating* s0 = <floating*>b.state[0]
    cdef floating* s1 = <floating*>b.state[1]
    cdef floating* s2 = <floating*>b.state[2]
    if b.rule == SGD:
        sgd_update(p, g, s0, b.n, &b.hyper.sgd, fresh, num_threads)
    elif b.rule == ADAGRAD:
        adagrad_update(p, g, s0, b.n, &b.hyper.adagrad, step, num_threads)
    elif b.rule == RMSPROP:
        rmsprop_update(p, g, s0, s1, s2, b.n, &b.hyper.rmsprop, num_threads)
    elif b.rule == ADAM:
        adam_update(p, g, s0, s1, s2, b.n, &b.hyper.adam, step, num_threads)
    elif b.rule == ADAMAX:
        adamax_update(p, g, s0, s1, b.n, &b.hyper.adamax, step, num_threads)
    elif b.rule == NADAM:
        nadam_update(p, g, s0, s1, b.n, &b.hyper.nadam, step, mu_product, num_threads)
    elif b.rule == RADAM:
        radam_update(p, g, s0, s1, b.n, &b.hyper.radam, step, num_threads)
    elif b.rule == ADADELTA:
        adadelta_update(p, g, s0, s1, b.n, &b.hyper.adadelta, num_threads)
    else:
        lion_update(p, g, s0, b.n, &b.hyper.lion, num_threads)


cdef class BoundStep:
    """One update rule bound to a parameter, its gradient and its state arrays.

    Binding checks dtypes and lengths once and keeps the arrays alive; each
    :meth:`run` is then a switch and a nogil kernel call, with no Python
    objects touched.  The Python layer (``fastopt.optim``) validates user
    input first; these checks only keep the kernels in bounds.

    Parameters
    ----------
    rule : str
        A key of ``RULES``.
    param : numpy.ndarray
        1-D, C-contiguous, writeable, float32 or float64.
    grad : numpy.ndarray
        Like ``param`` (may be read-only).
    state : tuple
        The rule's state arrays in ``RULES[rule][1]`` order, each like
        ``param`` or None where the hyperparameters do not use it.
    hyper : dict
        The kernel's hyperparameters (``betas`` split into ``beta1``, ``beta2``).
    """
    cdef readonly str rule_name
    cdef int rule
    cdef bint is_double
    cdef Py_ssize_t n
    cdef void* param
    cdef void* grad
    cdef void* state[3]
    cdef object keep  # (param, grad, state): the arrays behind the pointers
    cdef AnyHyper hyper

    def __init__(self, str rule, param, grad, tuple state, dict hyper):
        if self.keep is not None:
            raise TypeError("a BoundStep is bound once; make a new one")
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; known: {sorted(RULES)}")
        self.rule_name = rule
        self.rule, names = RULES[rule]
        if len(state) != len(names):
            raise ValueError(f"{rule} takes state arrays {names}, got {len(state)}")
        self.is_double = param.dtype.itemsize == 8
        self.n = param.shape[0] if param.ndim == 1 else -1
        if self.n < 0:
            raise ValueError("param must be 1-D")
        self.param = _address(param, self.is_double, True, self.n, "param")
        self.grad = _address(grad, self.is_double, False, self.n, "grad")
        self.state[0] = self.state[1] = self.state[2] = NULL
        for k, (array, name) in enumerate(zip(state, names)):
            if array is not None:
                self.state[k] = _address(array, self.is_double, True, self.n, name)
        self.keep = (param, grad, state)
        self.set_hyper(hyper)

    def set_grad(self, grad):
        """Point the step at another gradient array (same dtype and length)."""
        self.grad = _address(grad, self.is_double, False, self.n, "grad")
        self.keep = (self.keep[0], grad, self.keep[2])

    def set_hyper(self, dict hyper):
        """Take new hyperparameters, refusing settings whose state array was bound as None."""
        cdef AnyHyper h
        if self.rule == SGD:
            h.sgd = hyper
            needs = {0: h.sgd.momentum != 0}
        elif self.rule == RMSPROP:
            h.rmsprop = hyper
            needs = {1: h.rmsprop.momentum > 0, 2: h.rmsprop.centered}
        elif self.rule == ADAM:
            h.adam = hyper
            needs = {2: h.adam.amsgrad}
        else:
            needs = {k: True for k in range(len(RULES[self.rule_name][1]))}
            if self.rule == ADAGRAD:
                h.adagrad = hyper
            elif self.rule == ADAMAX:
                h.adamax = hyper
            elif self.rule == NADAM:
                h.nadam = hyper
            elif self.rule == RADAM:
                h.radam = hyper
            elif self.rule == ADADELTA:
                h.adadelta = hyper
            else:
                h.lion = hyper
        for k, needed in needs.items():
            if needed and self.state[k] == NULL:
                raise ValueError(f"{self.rule_name} with these hyperparameters needs a "
                                 f"{RULES[self.rule_name][1][k]} array, got None")
        self.hyper = h

    def run(self, long long step=1, double mu_product=1.0, bint fresh=False, int num_threads=1):
        """Take one step in place (``step`` counts from 1); return the new ``mu_product`` (NAdam)."""
        keep = self.keep  # the arrays stay alive through the call, whatever set_grad does meanwhile
        with nogil:
            if self.is_double:
                _run(self, <double*>self.param, step, &mu_product, fresh, num_threads)
            else:
                _run(self, <float*>self.param, step, &mu_product, fresh, num_threads)
        return mu_product


def nonfinite_count(const floating[::1] x not None, int num_threads=1):
    """Number of NaN or infinite elements in a 1-D contiguous array."""
    cdef Py_ssize_t total
    with nogil:
        total = count_nonfinite(&x[0], x.shape[0], num_threads)
    return total
