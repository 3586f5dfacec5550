/*
 * fastopt.h -- fastopt's update-rule kernels for C and C++ extension modules.
 *
 * The kernels live in the compiled Python package; this header gives other
 * compiled code their hyperparameter structs, their signatures and a way to
 * reach them with no Python in the loop:
 *
 *     #include "fastopt.h"      (directory: fastopt.get_include())
 *
 *     // once, with the GIL held, e.g. in the module's init function:
 *     if (fastopt_import() < 0) return NULL;   // a Python exception is set
 *
 *     // then from any thread, with or without the GIL:
 *     fastopt_adam_hyper h = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
 *     fastopt_adam_update_f32(param, grad, exp_avg, exp_avg_sq, NULL, n, &h, step, 1);
 *
 * fastopt_import() imports fastopt and takes the table of kernel entry points
 * (a fastopt_api, published as a capsule) from the kernel build that fastopt's
 * Python API uses (fastopt._kernels: AVX2 where the CPU has it, unless
 * FASTOPT_KERNELS says otherwise), so C callers get the same bits and the same
 * speed as fastopt.Adam and friends.  Each translation unit that calls the
 * kernels calls fastopt_import() first: the table pointer, fastopt_capi, is
 * static to the file.  Calls after the first return at once.
 *
 * What a kernel does, and what it expects, is documented with its Cython
 * declaration in src/fastopt/_update_rules.pxd; in short: each call updates
 * n contiguous elements in place, in one pass over memory, using at most
 * num_threads OpenMP threads.  Kernels validate nothing: every pointer must be
 * valid for n elements and no two arrays may overlap.  An optional state array
 * (the momentum buffer without momentum, max_exp_avg_sq without amsgrad,
 * grad_avg when not centered) may be NULL.  step counts from 1 for the step
 * being taken.  Hyperparameters are doubles named like the keyword arguments
 * of the Python optimizers (betas split into beta1 and beta2); flags are ints
 * (0 or 1).
 *
 * The hyperparameter structs below are the ones the kernels are compiled with
 * (src/fastopt/_update_rules.pxd declares them from this header), so their
 * layout cannot drift apart.  The table only ever grows at its end; a change
 * to anything already in it raises FASTOPT_ABI_VERSION, and fastopt_import()
 * refuses a fastopt whose version differs from the header's.
 */
#ifndef FASTOPT_H
#define FASTOPT_H

#include <Python.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FASTOPT_ABI_VERSION 1
#define FASTOPT_CAPSULE_NAME "fastopt._update_rules._C_API"

/* ------------------------------------------------------------------------
 * Hyperparameters, one struct per rule
 * ------------------------------------------------------------------------ */
typedef struct fastopt_sgd_hyper {
    double lr;
    double momentum;
    double dampening;
    double weight_decay;
    int nesterov;
    int maximize;
} fastopt_sgd_hyper;

typedef struct fastopt_adagrad_hyper {
    double lr;
    double lr_decay;
    double weight_decay;
    double eps;
    int maximize;
} fastopt_adagrad_hyper;

typedef struct fastopt_rmsprop_hyper {
    double lr;
    double alpha;
    double eps;
    double weight_decay;
    double momentum;
    int centered;
    int maximize;
} fastopt_rmsprop_hyper;

/* Adam and AdamW: AdamW is Adam with decoupled_weight_decay = 1. */
typedef struct fastopt_adam_hyper {
    double lr;
    double beta1;
    double beta2;
    double eps;
    double weight_decay;
    int amsgrad;
    int maximize;
    int decoupled_weight_decay;
} fastopt_adam_hyper;

typedef struct fastopt_adamax_hyper {
    double lr;
    double beta1;
    double beta2;
    double eps;
    double weight_decay;
    int maximize;
} fastopt_adamax_hyper;

typedef struct fastopt_nadam_hyper {
    double lr;
    double beta1;
    double beta2;
    double eps;
    double weight_decay;
    double momentum_decay;
    int decoupled_weight_decay;
    int maximize;
} fastopt_nadam_hyper;

typedef struct fastopt_radam_hyper {
    double lr;
    double beta1;
    double beta2;
    double eps;
    double weight_decay;
    int decoupled_weight_decay;
    int maximize;
} fastopt_radam_hyper;

typedef struct fastopt_adadelta_hyper {
    double lr;
    double rho;
    double eps;
    double weight_decay;
    int maximize;
} fastopt_adadelta_hyper;

typedef struct fastopt_lion_hyper {
    double lr;
    double beta1;
    double beta2;
    double weight_decay;
    int maximize;
} fastopt_lion_hyper;

/* ------------------------------------------------------------------------
 * Kernel signatures, float32 (_f32) and float64 (_f64)
 * ------------------------------------------------------------------------ */

/* momentum_buffer_is_new: the buffer holds garbage and is set to the gradient
 * (plus weight decay), as on the first step with momentum. */
typedef void (*fastopt_sgd_update_f32_fn)(
    float *param, const float *grad, float *momentum_buffer, Py_ssize_t n,
    const fastopt_sgd_hyper *hyper, int momentum_buffer_is_new, int num_threads);
typedef void (*fastopt_sgd_update_f64_fn)(
    double *param, const double *grad, double *momentum_buffer, Py_ssize_t n,
    const fastopt_sgd_hyper *hyper, int momentum_buffer_is_new, int num_threads);

typedef void (*fastopt_adagrad_update_f32_fn)(
    float *param, const float *grad, float *state_sum, Py_ssize_t n,
    const fastopt_adagrad_hyper *hyper, long long step, int num_threads);
typedef void (*fastopt_adagrad_update_f64_fn)(
    double *param, const double *grad, double *state_sum, Py_ssize_t n,
    const fastopt_adagrad_hyper *hyper, long long step, int num_threads);

typedef void (*fastopt_rmsprop_update_f32_fn)(
    float *param, const float *grad, float *square_avg, float *momentum_buffer,
    float *grad_avg, Py_ssize_t n, const fastopt_rmsprop_hyper *hyper, int num_threads);
typedef void (*fastopt_rmsprop_update_f64_fn)(
    double *param, const double *grad, double *square_avg, double *momentum_buffer,
    double *grad_avg, Py_ssize_t n, const fastopt_rmsprop_hyper *hyper, int num_threads);

typedef void (*fastopt_adam_update_f32_fn)(
    float *param, const float *grad, float *exp_avg, float *exp_avg_sq,
    float *max_exp_avg_sq, Py_ssize_t n, const fastopt_adam_hyper *hyper,
    long long step, int num_threads);
typedef void (*fastopt_adam_update_f64_fn)(
    double *param, const double *grad, double *exp_avg, double *exp_avg_sq,
    double *max_exp_avg_sq, Py_ssize_t n, const fastopt_adam_hyper *hyper,
    long long step, int num_threads);

typedef void (*fastopt_adamax_update_f32_fn)(
    float *param, const float *grad, float *exp_avg, float *exp_inf, Py_ssize_t n,
    const fastopt_adamax_hyper *hyper, long long step, int num_threads);
typedef void (*fastopt_adamax_update_f64_fn)(
    double *param, const double *grad, double *exp_avg, double *exp_inf, Py_ssize_t n,
    const fastopt_adamax_hyper *hyper, long long step, int num_threads);

/* mu_product: the running product of the momentum coefficients, 1.0 before
 * the first step; updated in place. */
typedef void (*fastopt_nadam_update_f32_fn)(
    float *param, const float *grad, float *exp_avg, float *exp_avg_sq, Py_ssize_t n,
    const fastopt_nadam_hyper *hyper, long long step, double *mu_product, int num_threads);
typedef void (*fastopt_nadam_update_f64_fn)(
    double *param, const double *grad, double *exp_avg, double *exp_avg_sq, Py_ssize_t n,
    const fastopt_nadam_hyper *hyper, long long step, double *mu_product, int num_threads);

typedef void (*fastopt_radam_update_f32_fn)(
    float *param, const float *grad, float *exp_avg, float *exp_avg_sq, Py_ssize_t n,
    const fastopt_radam_hyper *hyper, long long step, int num_threads);
typedef void (*fastopt_radam_update_f64_fn)(
    double *param, const double *grad, double *exp_avg, double *exp_avg_sq, Py_ssize_t n,
    const fastopt_radam_hyper *hyper, long long step, int num_threads);

typedef void (*fastopt_adadelta_update_f32_fn)(
    float *param, const float *grad, float *square_avg, float *acc_delta, Py_ssize_t n,
    const fastopt_adadelta_hyper *hyper, int num_threads);
typedef void (*fastopt_adadelta_update_f64_fn)(
    double *param, const double *grad, double *square_avg, double *acc_delta, Py_ssize_t n,
    const fastopt_adadelta_hyper *hyper, int num_threads);

typedef void (*fastopt_lion_update_f32_fn)(
    float *param, const float *grad, float *exp_avg, Py_ssize_t n,
    const fastopt_lion_hyper *hyper, int num_threads);
typedef void (*fastopt_lion_update_f64_fn)(
    double *param, const double *grad, double *exp_avg, Py_ssize_t n,
    const fastopt_lion_hyper *hyper, int num_threads);

/* The number of NaN and infinite elements of x. */
typedef Py_ssize_t (*fastopt_count_nonfinite_f32_fn)(const float *x, Py_ssize_t n, int num_threads);
typedef Py_ssize_t (*fastopt_count_nonfinite_f64_fn)(const double *x, Py_ssize_t n, int num_threads);

/* ------------------------------------------------------------------------
 * The table one kernel build publishes (its module attribute _C_API)
 * ------------------------------------------------------------------------ */
typedef struct fastopt_api {
    int abi_version;   /* the FASTOPT_ABI_VERSION the kernels were built with */
    size_t size;       /* sizeof(fastopt_api) there: newer builds may append entries */
    const char *simd;  /* the instruction set that build targets, e.g. "AVX2" or "SSE2" */
    fastopt_sgd_update_f32_fn sgd_update_f32;
    fastopt_sgd_update_f64_fn sgd_update_f64;
    fastopt_adagrad_update_f32_fn adagrad_update_f32;
    fastopt_adagrad_update_f64_fn adagrad_update_f64;
    fastopt_rmsprop_update_f32_fn rmsprop_update_f32;
    fastopt_rmsprop_update_f64_fn rmsprop_update_f64;
    fastopt_adam_update_f32_fn adam_update_f32;
    fastopt_adam_update_f64_fn adam_update_f64;
    fastopt_adamax_update_f32_fn adamax_update_f32;
    fastopt_adamax_update_f64_fn adamax_update_f64;
    fastopt_nadam_update_f32_fn nadam_update_f32;
    fastopt_nadam_update_f64_fn nadam_update_f64;
    fastopt_radam_update_f32_fn radam_update_f32;
    fastopt_radam_update_f64_fn radam_update_f64;
    fastopt_adadelta_update_f32_fn adadelta_update_f32;
    fastopt_adadelta_update_f64_fn adadelta_update_f64;
    fastopt_lion_update_f32_fn lion_update_f32;
    fastopt_lion_update_f64_fn lion_update_f64;
    fastopt_count_nonfinite_f32_fn count_nonfinite_f32;
    fastopt_count_nonfinite_f64_fn count_nonfinite_f64;
} fastopt_api;

/* Set by fastopt_import(); NULL before. */
static const fastopt_api *fastopt_capi = NULL;

/* Import fastopt and point fastopt_capi at the table of the kernel build its
 * Python API uses.  Call with the GIL held.  Returns 0, or -1 with a Python
 * exception set (fastopt missing, or built for another FASTOPT_ABI_VERSION). */
static inline int fastopt_import(void)
{
    PyObject *chooser, *kernels, *capsule;
    const fastopt_api *table;

    if (fastopt_capi != NULL) {
        return 0;
    }
    chooser = PyImport_ImportModule("fastopt._kernels");
    if (chooser == NULL) {
        return -1;
    }
    kernels = PyObject_GetAttrString(chooser, "kernels");
    Py_DECREF(chooser);
    if (kernels == NULL) {
        return -1;
    }
    capsule = PyObject_GetAttrString(kernels, "_C_API");
    Py_DECREF(kernels);
    if (capsule == NULL) {
        return -1;
    }
    table = (const fastopt_api *)PyCapsule_GetPointer(capsule, FASTOPT_CAPSULE_NAME);
    /* The table is static data of an extension module, which is never unloaded. */
    Py_DECREF(capsule);
    if (table == NULL) {
        return -1;
    }
    if (table->abi_version != FASTOPT_ABI_VERSION || table->size < sizeof(fastopt_api)) {
        PyErr_Format(PyExc_ImportError,
                     "this module was compiled against fastopt C API version %d (%zu-byte table), "
                     "but the installed fastopt provides version %d (%zu bytes): rebuild the module",
                     FASTOPT_ABI_VERSION, sizeof(fastopt_api), table->abi_version, table->size);
        return -1;
    }
    fastopt_capi = table;
    return 0;
}

/* The kernels by name, valid once fastopt_import() has succeeded. */
#define fastopt_sgd_update_f32 (fastopt_capi->sgd_update_f32)
#define fastopt_sgd_update_f64 (fastopt_capi->sgd_update_f64)
#define fastopt_adagrad_update_f32 (fastopt_capi->adagrad_update_f32)
#define fastopt_adagrad_update_f64 (fastopt_capi->adagrad_update_f64)
#define fastopt_rmsprop_update_f32 (fastopt_capi->rmsprop_update_f32)
#define fastopt_rmsprop_update_f64 (fastopt_capi->rmsprop_update_f64)
#define fastopt_adam_update_f32 (fastopt_capi->adam_update_f32)
#define fastopt_adam_update_f64 (fastopt_capi->adam_update_f64)
#define fastopt_adamax_update_f32 (fastopt_capi->adamax_update_f32)
#define fastopt_adamax_update_f64 (fastopt_capi->adamax_update_f64)
#define fastopt_nadam_update_f32 (fastopt_capi->nadam_update_f32)
#define fastopt_nadam_update_f64 (fastopt_capi->nadam_update_f64)
#define fastopt_radam_update_f32 (fastopt_capi->radam_update_f32)
#define fastopt_radam_update_f64 (fastopt_capi->radam_update_f64)
#define fastopt_adadelta_update_f32 (fastopt_capi->adadelta_update_f32)
#define fastopt_adadelta_update_f64 (fastopt_capi->adadelta_update_f64)
#define fastopt_lion_update_f32 (fastopt_capi->lion_update_f32)
#define fastopt_lion_update_f64 (fastopt_capi->lion_update_f64)
#define fastopt_count_nonfinite_f32 (fastopt_capi->count_nonfinite_f32)
#define fastopt_count_nonfinite_f64 (fastopt_capi->count_nonfinite_f64)

#ifdef __cplusplus
}
#endif

#endif /* FASTOPT_H */
