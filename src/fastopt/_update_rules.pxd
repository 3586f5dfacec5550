# cython: language_level=3
"""C-level update rules, callable from other Cython code inside ``with nogil:``.

Every rule updates ``n`` contiguous elements in place in one pass over memory
and takes its hyperparameters as a struct of doubles, cast to the element type
once per call.  ``num_threads`` is the largest team to use; arrays of one chunk
or fewer run on the calling thread (see ``fastopt._parallel``).  The kernels do
no validation: pointers must be valid for ``n`` elements and must not overlap.
"""
from cython cimport floating


cdef struct SGDHyper:
    double lr
    double weight_decay
    bint maximize


cdef struct AdamHyper:
    double lr
    double beta1
    double beta2
    double eps
    double weight_decay
    bint maximize
    long long step  # the step being taken, counted from 1


cdef void sgd_update(floating* param, const floating* grad, Py_ssize_t n,
                     const SGDHyper* hyper, int num_threads) noexcept nogil

cdef void adam_update(floating* param, const floating* grad, floating* exp_avg,
                      floating* exp_avg_sq, Py_ssize_t n,
                      const AdamHyper* hyper, int num_threads) noexcept nogil
