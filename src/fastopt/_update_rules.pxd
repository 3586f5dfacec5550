# cython: language_level=3
"""C-level update rules, callable from other Cython code inside ``with nogil:``.

Every rule updates ``n`` contiguous elements in place in one pass over memory.
Its hyperparameters come as a struct of doubles (the same names as the
keyword arguments of the Python optimizer, ``betas`` split into ``beta1`` and
``beta2``); per-step scalars such as bias corrections are computed from them
in double precision, then cast once to the element type.  ``num_threads`` is
the largest team to use (see ``fastopt._parallel`` for how work is split).

The kernels do no validation: pointers must be valid for ``n`` elements and
must not overlap.  An optional state array (``momentum_buffer`` when
momentum is 0, ``max_exp_avg_sq`` without amsgrad, ``grad_avg`` when not
centered) may be NULL.  ``step`` counts from 1 for the step being taken.

Cython code that cimports from this module binds to the baseline build of the
kernels, whatever build fastopt's Python API chose; ``fastopt.cython_kernels``
declares the same functions and calls the chosen build (AVX2 where the CPU has
it), so third-party code should cimport from there.  Either way the C
compiler needs ``fastopt.get_include()`` on its include path: the structs are
declared in ``fastopt.h``.
"""
from cython cimport floating


# The structs are csrc/fastopt.h's, so C callers see the layout the kernels use.
cdef extern from "fastopt.h" nogil:
    ctypedef struct SGDHyper "fastopt_sgd_hyper":
        double lr
        double momentum
        double dampening
        double weight_decay
        bint nesterov
        bint maximize

    ctypedef struct AdagradHyper "fastopt_adagrad_hyper":
        double lr
        double lr_decay
        double weight_decay
        double eps
        bint maximize

    ctypedef struct RMSpropHyper "fastopt_rmsprop_hyper":
        double lr
        double alpha
        double eps
        double weight_decay
        double momentum
        bint centered
        bint maximize

    ctypedef struct AdamHyper "fastopt_adam_hyper":
        double lr
        double beta1
        double beta2
        double eps
        double weight_decay
        bint amsgrad
        bint maximize
        bint decoupled_weight_decay

    ctypedef struct AdamaxHyper "fastopt_adamax_hyper":
        double lr
        double beta1
        double beta2
        double eps
        double weight_decay
        bint maximize

    ctypedef struct NAdamHyper "fastopt_nadam_hyper":
        double lr
        double beta1
        double beta2
        double eps
        double weight_decay
        double momentum_decay
        bint decoupled_weight_decay
        bint maximize

    ctypedef struct RAdamHyper "fastopt_radam_hyper":
        double lr
        double beta1
        double beta2
        double eps
        double weight_decay
        bint decoupled_weight_decay
        bint maximize

    ctypedef struct AdadeltaHyper "fastopt_adadelta_hyper":
        double lr
        double rho
        double eps
        double weight_decay
        bint maximize

    ctypedef struct LionHyper "fastopt_lion_hyper":
        double lr
        double beta1
        double beta2
        double weight_decay
        bint maximize


# momentum_buffer_is_new: the buffer holds garbage and is set to the gradient
# (torch.optim.SGD clones the gradient into a missing buffer).
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

# mu_product: the running product of the momentum coefficients, 1.0 before the
# first step; updated in place.
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
