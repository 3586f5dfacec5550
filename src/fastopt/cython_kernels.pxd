# cython: language_level=3
"""fastopt's update rules for other Cython code, in the build fastopt uses.

``cimport`` the kernels and their hyperparameter structs from here and call
them inside ``with nogil:``::

    from fastopt.cython_kernels cimport AdamHyper, adam_update

Each function is fused over ``float`` and ``double`` and calls the kernel
build that fastopt's Python API chose at import (``fastopt._kernels``: AVX2
where the CPU has it, unless ``FASTOPT_KERNELS`` says otherwise), so results
are bit for bit those of ``fastopt.Adam`` and friends.  Arguments, structs and
rules are those of ``fastopt/_update_rules.pxd``, where each is described;
kernels validate nothing.  Compile with ``fastopt.get_include()`` on the C
include path (the structs come from ``fastopt.h``).
"""
from cython cimport floating

from fastopt._update_rules cimport (
    AdadeltaHyper, AdagradHyper, AdamaxHyper, AdamHyper, LionHyper, NAdamHyper, RAdamHyper, RMSpropHyper,
    SGDHyper,
)


cdef void sgd_update(floating* param, const floating* grad, floating* momentum_buffer,
                     Py_ssize_t n, const SGDHyper* hyper, bint momentum_buffer_is_new,
                     int num_threads) noexcept nogil

cdef void adagrad_update(floating* param, const floating* grad, floating* state_sum,
                         Py_ssize_t n, const AdagradHyper* hyper, long long step,
                         int num_threads) noexcept nogil

cdef void rmsprop_update(floating* param, const floating* grad, floating* square_avg,
                         floating* momentum_buffer, floating* grad_avg,
                         Py_ssize_t n, const RMSpropHyper* hyper, int num_threads) noexcept nogil

cdef void adam_update(floating* param, const floating* grad, floating* exp_avg,
                      floating* exp_avg_sq, floating* max_exp_avg_sq,
                      Py_ssize_t n, const AdamHyper* hyper, long long step,
                      int num_threads) noexcept nogil

cdef void adamax_update(floating* param, const floating* grad, floating* exp_avg,
                        floating* exp_inf, Py_ssize_t n, const AdamaxHyper* hyper,
                        long long step, int num_threads) noexcept nogil

cdef void nadam_update(floating* param, const floating* grad, floating* exp_avg,
                       floating* exp_avg_sq, Py_ssize_t n, const NAdamHyper* hyper,
                       long long step, double* mu_product, int num_threads) noexcept nogil

cdef void radam_update(floating* param, const floating* grad, floating* exp_avg,
                       floating* exp_avg_sq, Py_ssize_t n, const RAdamHyper* hyper,
                       long long step, int num_threads) noexcept nogil

cdef void adadelta_update(floating* param, const floating* grad, floating* square_avg,
                          floating* acc_delta, Py_ssize_t n, const AdadeltaHyper* hyper,
                          int num_threads) noexcept nogil

cdef void lion_update(floating* param, const floating* grad, floating* exp_avg,
                      Py_ssize_t n, const LionHyper* hyper, int num_threads) noexcept nogil

cdef Py_ssize_t count_nonfinite(const floating* x, Py_ssize_t n, int num_threads) noexcept nogil
