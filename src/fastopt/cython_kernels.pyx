"""fastopt's update rules for other Cython code, in the build fastopt uses.

Each function declared in ``cython_kernels.pxd`` forwards to the entry point
of the same name in the table that ``fastopt_import()`` (csrc/fastopt.h)
fetches, at this module's import, from the kernel build fastopt's Python API
uses.  Cython imports this module when a module that cimports from it is
imported, so callers need no import call of their own.

Attributes
----------
SIMD : str
    The instruction set of the kernel build behind these functions, as in
    ``fastopt._kernels.kernels.BUILD["simd"]`` (e.g. ``"AVX2"``).
"""
cdef extern from "fastopt.h":
    ctypedef struct fastopt_api:
        const char* simd
    const fastopt_api* fastopt_capi
    int fastopt_import() except -1

cdef extern from "fastopt.h" nogil:
    void fastopt_sgd_update_f32(float*, const float*, float*, Py_ssize_t, const SGDHyper*, bint, int)
    void fastopt_sgd_update_f64(double*, const double*, double*, Py_ssize_t, const SGDHyper*, bint, int)
    void fastopt_adagrad_update_f32(float*, const float*, float*, Py_ssize_t, const AdagradHyper*, long long, int)
    void fastopt_adagrad_update_f64(double*, const double*, double*, Py_ssize_t, const AdagradHyper*, long long,
                                    int)
    void fastopt_rmsprop_update_f32(float*, const float*, float*, float*, float*, Py_ssize_t, const RMSpropHyper*,
                                    int)
    void fastopt_rmsprop_update_f64(double*, const double*, double*, double*, double*, Py_ssize_t,
                                    const RMSpropHyper*, int)
    void fastopt_adam_update_f32(float*, const float*, float*, float*, float*, Py_ssize_t, const AdamHyper*,
                                 long long, int)
    void fastopt_adam_update_f64(double*, const double*, double*, double*, double*, Py_ssize_t, const AdamHyper*,
                                 long long, int)
    void fastopt_adamax_update_f32(float*, const float*, float*, float*, Py_ssize_t, const AdamaxHyper*, long long,
                                   int)
    void fastopt_adamax_update_f64(double*, const double*, double*, double*, Py_ssize_t, const AdamaxHyper*,
                                   long long, int)
    void fastopt_nadam_update_f32(float*, const float*, float*, float*, Py_ssize_t, const NAdamHyper*, long long,
                                  double*, int)
    void fastopt_nadam_update_f64(double*, const double*, double*, double*, Py_ssize_t, const NAdamHyper*,
                                  long long, double*, int)
    void fastopt_radam_update_f32(float*, const float*, float*, float*, Py_ssize_t, const RAdamHyper*, long long,
                                  int)
    void fastopt_radam_update_f64(double*, const double*, double*, double*, Py_ssize_t, const RAdamHyper*,
                                  long long, int)
    void fastopt_adadelta_update_f32(float*, const float*, float*, float*, Py_ssize_t, const AdadeltaHyper*, int)
    void fastopt_adadelta_update_f64(double*, const double*, double*, double*, Py_ssize_t, const AdadeltaHyper*,
                                     int)
    void fastopt_lion_update_f32(float*, const float*, float*, Py_ssize_t, const LionHyper*, int)
    void fastopt_lion_update_f64(double*, const double*, double*, Py_ssize_t, const LionHyper*, int)
    Py_ssize_t fastopt_count_nonfinite_f32(const float*, Py_ssize_t, int)
    Py_ssize_t fastopt_count_nonfinite_f64(const double*, Py_ssize_t, int)


fastopt_import()
SIMD = fastopt_capi.simd.decode()


cdef void sgd_update(floating* param, const floating* grad, floating* momentum_buffer,
                     Py_ssize_t n, const SGDHyper* hyper, bint momentum_buffer_is_new,
                     int num_threads) noexcept nogil:
    if floating is float:
        fastopt_sgd_update_f32(param, grad, momentum_buffer, n, hyper, momentum_buffer_is_new, num_threads)
    else:
        fastopt_sgd_update_f64(param, grad, momentum_buffer, n, hyper, momentum_buffer_is_new, num_threads)


cdef void adagrad_update(floating* param, const floating* grad, floating* state_sum,
                         Py_ssize_t n, const AdagradHyper* hyper, long long step,
                         int num_threads) noexcept nogil:
    if floating is float:
        fastopt_adagrad_update_f32(param, grad, state_sum, n, hyper, step, num_threads)
    else:
        fastopt_adagrad_update_f64(param, grad, state_sum, n, hyper, step, num_threads)


cdef void rmsprop_update(floating* param, const floating* grad, floating* square_avg,
                         floating* momentum_buffer, floating* grad_avg,
                         Py_ssize_t n, const RMSpropHyper* hyper, int num_threads) noexcept nogil:
    if floating is float:
        fastopt_rmsprop_update_f32(param, grad, square_avg, momentum_buffer, grad_avg, n, hyper, num_threads)
    else:
        fastopt_rmsprop_update_f64(param, grad, square_avg, momentum_buffer, grad_avg, n, hyper, num_threads)


cdef void adam_update(floating* param, const floating* grad, floating* exp_avg,
                      floating* exp_avg_sq, floating* max_exp_avg_sq,
                      Py_ssize_t n, const AdamHyper* hyper, long long step,
                      int num_threads) noexcept nogil:
    if floating is float:
        fastopt_adam_update_f32(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, n, hyper, step, num_threads)
    else:
        fastopt_adam_update_f64(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, n, hyper, step, num_threads)


cdef void adamax_update(floating* param, const floating* grad, floating* exp_avg,
                        floating* exp_inf, Py_ssize_t n, const AdamaxHyper* hyper,
                        long long step, int num_threads) noexcept nogil:
    if floating is float:
        fastopt_adamax_update_f32(param, grad, exp_avg, exp_inf, n, hyper, step, num_threads)
    else:
        fastopt_adamax_update_f64(param, grad, exp_avg, exp_inf, n, hyper, step, num_threads)


cdef void nadam_update(floating* param, const floating* grad, floating* exp_avg,
                       floating* exp_avg_sq, Py_ssize_t n, const NAdamHyper* hyper,
                       long long step, double* mu_product, int num_threads) noexcept nogil:
    if floating is float:
        fastopt_nadam_update_f32(param, grad, exp_avg, exp_avg_sq, n, hyper, step, mu_product, num_threads)
    else:
        fastopt_nadam_update_f64(param, grad, exp_avg, exp_avg_sq, n, hyper, step, mu_product, num_threads)


cdef void radam_update(floating* param, const floating* grad, floating* exp_avg,
                       floating* exp_avg_sq, Py_ssize_t n, const RAdamHyper* hyper,
                       long long step, int num_threads) noexcept nogil:
    if floating is float:
        fastopt_radam_update_f32(param, grad, exp_avg, exp_avg_sq, n, hyper, step, num_threads)
    else:
        fastopt_radam_update_f64(param, grad, exp_avg, exp_avg_sq, n, hyper, step, num_threads)


cdef void adadelta_update(floating* param, const floating* grad, floating* square_avg,
                          floating* acc_delta, Py_ssize_t n, const AdadeltaHyper* hyper,
                          int num_threads) noexcept nogil:
    if floating is float:
        fastopt_adadelta_update_f32(param, grad, square_avg, acc_delta, n, hyper, num_threads)
    else:
        fastopt_adadelta_update_f64(param, grad, square_avg, acc_delta, n, hyper, num_threads)


cdef void lion_update(floating* param, const floating* grad, floating* exp_avg,
                      Py_ssize_t n, const LionHyper* hyper, int num_threads) noexcept nogil:
    if floating is float:
        fastopt_lion_update_f32(param, grad, exp_avg, n, hyper, num_threads)
    else:
        fastopt_lion_update_f64(param, grad, exp_avg, n, hyper, num_threads)


cdef Py_ssize_t count_nonfinite(const floating* x, Py_ssize_t n, int num_threads) noexcept nogil:
    if floating is float:
        return fastopt_count_nonfinite_f32(x, n, num_threads)
    else:
        return fastopt_count_nonfinite_f64(x, n, num_threads)
