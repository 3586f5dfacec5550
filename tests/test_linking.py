"""Compiled code calling fastopt's kernels with no Python in the loop.

At test time this builds two small third-party extension modules against the
fastopt being tested, with nothing but ``fastopt.get_include()`` to find it:
one in Cython (``cimport fastopt.cython_kernels``, calls inside
``with nogil:``) and one in C (``#include "fastopt.h"``, ``fastopt_import()``).
Their results must be the Python API's, bit for bit, and the hyperparameter
structs must have one layout whether C or Cython looks at them.  Both also
call a stored update (a ``fastopt_storage``: int8 or bfloat16 state, bfloat16
parameters with a float32 master copy or stochastic rounding keyed by
``fastopt_rounding_key``), checked against ``fastopt.Adam(state_dtype=...)``
and ``BoundStep``.
"""
import importlib.util
import os
import pathlib
import re
import struct
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

import fastopt
from fastopt import _kernels, _storage, _update_rules

PXD_ROOT, HEADER_DIR = fastopt.get_include()
HEADER = pathlib.Path(HEADER_DIR) / "fastopt.h"
UPDATE_RULES_PXD = pathlib.Path(PXD_ROOT) / "fastopt" / "_update_rules.pxd"


def header_structs():
    """{C struct name: [(C type, field), ...]} for the hyperparameter structs in fastopt.h."""
    text = HEADER.read_text()
    found = {}
    for name, body in re.findall(r"typedef struct (fastopt_\w+_hyper) \{(.*?)\} \1;", text, re.S):
        found[name] = re.findall(r"^\s*([^;/*]+?)\s+(\w+);", body, re.M)
    return found


def cython_struct_names():
    """{C struct name: Cython name} as _update_rules.pxd declares them."""
    return {c: cy for cy, c in re.findall(r'ctypedef struct (\w+) "(fastopt_\w+_hyper)":', UPDATE_RULES_PXD.read_text())}


# --------------------------------------------------------------------------
# The third-party modules
# --------------------------------------------------------------------------
C_SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <string.h>
#include "fastopt.h"

typedef struct { const char *type, *field; size_t offset, size, type_size; } member;
static const member MEMBERS[] = {
@MEMBERS@
};

static PyObject *layout(PyObject *self, PyObject *unused)
{
    PyObject *out = PyList_New(0), *row;
    size_t i;
    (void)self;
    (void)unused;
    for (i = 0; out != NULL && i < sizeof(MEMBERS) / sizeof(MEMBERS[0]); i++) {
        row = Py_BuildValue("(ssnnn)", MEMBERS[i].type, MEMBERS[i].field, (Py_ssize_t)MEMBERS[i].offset,
                            (Py_ssize_t)MEMBERS[i].size, (Py_ssize_t)MEMBERS[i].type_size);
        if (row == NULL || PyList_Append(out, row) < 0) {
            Py_CLEAR(out);
        }
        Py_XDECREF(row);
    }
    return out;
}

static PyObject *simd(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyUnicode_FromString(fastopt_capi->simd);
}

/* Buffers of objs[0..count) (None allowed where optional[k]); 0, or -1 with an exception set. */
static int take(PyObject **objs, Py_buffer *views, int count, const int *optional)
{
    int k;
    for (k = 0; k < count; k++) {
        views[k].obj = NULL;
        if (objs[k] == Py_None && optional[k]) {
            views[k].buf = NULL;
            continue;
        }
        if (PyObject_GetBuffer(objs[k], &views[k], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (k == 1 ? 0 : PyBUF_WRITABLE)) < 0
                || views[k].itemsize != views[0].itemsize) {
            if (views[k].obj != NULL) {
                PyBuffer_Release(&views[k]);
                PyErr_SetString(PyExc_TypeError, "arrays of one dtype only");
            }
            while (k-- > 0) {
                if (views[k].obj != NULL) PyBuffer_Release(&views[k]);
            }
            return -1;
        }
    }
    return 0;
}

static void give_back(Py_buffer *views, int count)
{
    while (count-- > 0) {
        if (views[count].obj != NULL) PyBuffer_Release(&views[count]);
    }
}

/* adam(param, grads[steps, n], exp_avg, exp_avg_sq, max_exp_avg_sq or None,
 *      (lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled), num_threads) */
static PyObject *adam(PyObject *self, PyObject *args)
{
    static const int optional[5] = {0, 0, 0, 0, 1};
    PyObject *objs[5];
    Py_buffer v[5];
    fastopt_adam_hyper h;
    int num_threads;
    Py_ssize_t n, steps, t;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOO(dddddppp)i", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4],
                          &h.lr, &h.beta1, &h.beta2, &h.eps, &h.weight_decay, &h.amsgrad, &h.maximize,
                          &h.decoupled_weight_decay, &num_threads)
            || take(objs, v, 5, optional) < 0) {
        return NULL;
    }
    n = v[0].len / v[0].itemsize;
    steps = v[1].len / v[0].len;
    Py_BEGIN_ALLOW_THREADS
    for (t = 0; t < steps; t++) {
        if (v[0].itemsize == 4) {
            fastopt_adam_update_f32((float *)v[0].buf, (const float *)v[1].buf + t * n, (float *)v[2].buf,
                                    (float *)v[3].buf, (float *)v[4].buf, n, &h, t + 1, num_threads);
        } else {
            fastopt_adam_update_f64((double *)v[0].buf, (const double *)v[1].buf + t * n, (double *)v[2].buf,
                                    (double *)v[3].buf, (double *)v[4].buf, n, &h, t + 1, num_threads);
        }
    }
    Py_END_ALLOW_THREADS
    give_back(v, 5);
    Py_RETURN_NONE;
}

/* nadam(param, grads[steps, n], exp_avg, exp_avg_sq,
 *       (lr, beta1, beta2, eps, weight_decay, momentum_decay, decoupled, maximize), num_threads) -> mu_product */
static PyObject *nadam(PyObject *self, PyObject *args)
{
    static const int optional[4] = {0, 0, 0, 0};
    PyObject *objs[4];
    Py_buffer v[4];
    fastopt_nadam_hyper h;
    int num_threads;
    double mu_product = 1.0;
    Py_ssize_t n, steps, t;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOO(ddddddpp)i", &objs[0], &objs[1], &objs[2], &objs[3],
                          &h.lr, &h.beta1, &h.beta2, &h.eps, &h.weight_decay, &h.momentum_decay,
                          &h.decoupled_weight_decay, &h.maximize, &num_threads)
            || take(objs, v, 4, optional) < 0) {
        return NULL;
    }
    n = v[0].len / v[0].itemsize;
    steps = v[1].len / v[0].len;
    Py_BEGIN_ALLOW_THREADS
    for (t = 0; t < steps; t++) {
        if (v[0].itemsize == 4) {
            fastopt_nadam_update_f32((float *)v[0].buf, (const float *)v[1].buf + t * n, (float *)v[2].buf,
                                     (float *)v[3].buf, n, &h, t + 1, &mu_product, num_threads);
        } else {
            fastopt_nadam_update_f64((double *)v[0].buf, (const double *)v[1].buf + t * n, (double *)v[2].buf,
                                     (double *)v[3].buf, n, &h, t + 1, &mu_product, num_threads);
        }
    }
    Py_END_ALLOW_THREADS
    give_back(v, 4);
    return PyFloat_FromDouble(mu_product);
}

/* The buffer of obj, C-contiguous, of count elements of itemsize bytes, as views[*taken] (then counted). */
static int view_of(PyObject *obj, Py_buffer *views, int *taken, Py_ssize_t itemsize, Py_ssize_t count,
                   int writable, void **data)
{
    Py_buffer *v = &views[*taken];
    if (PyObject_GetBuffer(obj, v, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0) {
        return -1;
    }
    (*taken)++;
    if (v->itemsize != itemsize || v->len != count * itemsize) {
        PyErr_Format(PyExc_ValueError, "expected %zd elements of %zd bytes, got %zd bytes of %zd-byte items",
                     count, itemsize, v->len, v->itemsize);
        return -1;
    }
    *data = v->buf;
    return 0;
}

/* adam_stored(param, grads[steps, n], (exp_avg, exp_avg_sq, max_exp_avg_sq), master or None,
 *             (lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled), (seed, stream) or None,
 *             num_threads)
 * param and grads: float32, or bfloat16 as their uint16 bits (told apart by item size); each state: None, a
 * float32 or bfloat16-bits array, or an int8 pair (uint8 codes, float32 absmax).  A (seed, stream) pair rounds
 * stochastically, step t keyed by fastopt_rounding_key(seed, stream, t). */
static PyObject *adam_stored(PyObject *self, PyObject *args)
{
    PyObject *param, *grads, *states, *master, *key, *item;
    Py_buffer v[2 + 1 + 2 * 3];
    int taken = 0, k, num_threads;
    fastopt_adam_hyper h;
    fastopt_storage s;
    unsigned long long seed = 0, stream = 0;
    Py_ssize_t n, size, steps, t, rows;
    void *grad0 = NULL;
    (void)self;
    memset(&s, 0, sizeof s);
    if (!PyArg_ParseTuple(args, "OOO!O(dddddppp)Oi", &param, &grads, &PyTuple_Type, &states, &master,
                          &h.lr, &h.beta1, &h.beta2, &h.eps, &h.weight_decay, &h.amsgrad, &h.maximize,
                          &h.decoupled_weight_decay, &key, &num_threads)) {
        return NULL;
    }
    if (PyTuple_GET_SIZE(states) != 3) {
        PyErr_SetString(PyExc_ValueError, "adam has three state arrays");
        return NULL;
    }
    if (key != Py_None && !PyArg_ParseTuple(key, "KK", &seed, &stream)) {
        return NULL;
    }
    if (PyObject_GetBuffer(param, &v[0], PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    taken = 1;
    size = v[0].itemsize;
    n = v[0].len / size;
    s.param.dtype = size == 4 ? FASTOPT_FLOAT32 : FASTOPT_BFLOAT16;
    s.param.data = v[0].buf;
    s.grad.dtype = s.param.dtype;
    rows = PyObject_Length(grads);
    if (rows < 0 || view_of(grads, v, &taken, size, rows * n, 0, &grad0) < 0) {
        goto fail;
    }
    steps = rows;
    if (master != Py_None && view_of(master, v, &taken, 4, n, 1, (void **)&s.master) < 0) {
        goto fail;
    }
    for (k = 0; k < 3; k++) {
        item = PyTuple_GET_ITEM(states, k);
        if (item == Py_None) {
            continue;
        }
        if (PyTuple_Check(item)) {
            s.state[k].dtype = FASTOPT_INT8;
            if (PyTuple_GET_SIZE(item) != 2
                    || view_of(PyTuple_GET_ITEM(item, 0), v, &taken, 1, n, 1, &s.state[k].data) < 0
                    || view_of(PyTuple_GET_ITEM(item, 1), v, &taken, 4, (n + FASTOPT_BLOCK - 1) / FASTOPT_BLOCK, 1,
                               (void **)&s.state[k].absmax) < 0) {
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "an int8 state is (codes, absmax)");
                goto fail;
            }
        } else {
            Py_ssize_t state_size = 4;
            Py_buffer probe;
            if (PyObject_GetBuffer(item, &probe, PyBUF_C_CONTIGUOUS) == 0) {
                state_size = probe.itemsize;
                PyBuffer_Release(&probe);
            } else {
                PyErr_Clear();
            }
            s.state[k].dtype = state_size == 4 ? FASTOPT_FLOAT32 : FASTOPT_BFLOAT16;
            if (view_of(item, v, &taken, state_size, n, 1, &s.state[k].data) < 0) {
                goto fail;
            }
        }
    }
    s.stochastic_rounding = key != Py_None;
    Py_BEGIN_ALLOW_THREADS
    for (t = 0; t < steps; t++) {
        s.grad.data = (char *)grad0 + t * n * size;
        if (s.stochastic_rounding) {
            s.rounding_key = fastopt_rounding_key(seed, stream, (uint64_t)(t + 1));
        }
        fastopt_adam_update_stored(&s, n, &h, t + 1, num_threads);
    }
    Py_END_ALLOW_THREADS
    give_back(v, taken);
    Py_RETURN_NONE;
fail:
    give_back(v, taken);
    return NULL;
}

static PyObject *rounding_key(PyObject *self, PyObject *args)
{
    unsigned long long seed, stream, step;
    (void)self;
    if (!PyArg_ParseTuple(args, "KKK", &seed, &stream, &step)) {
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(fastopt_rounding_key(seed, stream, step));
}

static PyMethodDef methods[] = {
    {"layout", layout, METH_NOARGS, NULL},
    {"simd", simd, METH_NOARGS, NULL},
    {"adam", adam, METH_VARARGS, NULL},
    {"nadam", nadam, METH_VARARGS, NULL},
    {"adam_stored", adam_stored, METH_VARARGS, NULL},
    {"rounding_key", rounding_key, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "linkcheck_c", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_linkcheck_c(void)
{
    if (fastopt_import() < 0) {
        return NULL;
    }
    return PyModule_Create(&moduledef);
}
"""

CYTHON_SOURCE = """
# cython: language_level=3, boundscheck=False, wraparound=False
from cython cimport floating
from libc.string cimport memset

from fastopt.cython_kernels cimport @STRUCTS@
from libc.stdint cimport uint64_t
from fastopt.cython_kernels cimport AdamHyper, LionHyper, adam_update, count_nonfinite, lion_update
from fastopt.cython_kernels cimport adam_update_stored, fastopt_storage
# The storage constants and the key function come from the header (cython_kernels.pxd does not re-export them).
from fastopt._update_rules cimport FASTOPT_BFLOAT16, FASTOPT_FLOAT32, FASTOPT_INT8

cdef extern from "fastopt_storage.h" nogil:
    uint64_t fastopt_rounding_key(uint64_t seed, uint64_t stream, uint64_t step)
from fastopt._update_rules cimport adam_update as baseline_adam_update


def adam(floating[::1] param, const floating[:, ::1] grads, floating[::1] exp_avg, floating[::1] exp_avg_sq,
         floating[::1] max_exp_avg_sq, dict hyper, int num_threads, bint baseline=False):
    cdef AdamHyper h = hyper
    cdef Py_ssize_t n = param.shape[0]
    cdef long long t
    cdef floating* vmax = NULL
    if max_exp_avg_sq is not None:
        vmax = &max_exp_avg_sq[0]
    with nogil:
        for t in range(grads.shape[0]):
            if baseline:
                baseline_adam_update(&param[0], &grads[t, 0], &exp_avg[0], &exp_avg_sq[0], vmax, n, &h, t + 1,
                                     num_threads)
            else:
                adam_update(&param[0], &grads[t, 0], &exp_avg[0], &exp_avg_sq[0], vmax, n, &h, t + 1, num_threads)


def lion(floating[::1] param, const floating[:, ::1] grads, floating[::1] exp_avg, dict hyper, int num_threads):
    cdef LionHyper h = hyper
    cdef Py_ssize_t t
    with nogil:
        for t in range(grads.shape[0]):
            lion_update(&param[0], &grads[t, 0], &exp_avg[0], param.shape[0], &h, num_threads)


cdef void* _data(a):
    # The first element of numpy array a (the caller keeps it alive): any dtype, bfloat16 included.
    return <void*><size_t>a.ctypes.data


cdef int _dtype_of(a) except -1:
    return FASTOPT_FLOAT32 if a.dtype.itemsize == 4 else FASTOPT_BFLOAT16


def adam_stored(param, grads, tuple states, master, dict hyper, key, int num_threads):
    # As linkcheck_c.adam_stored, with numpy arrays: float32 or bfloat16 (ml_dtypes) param, grads and state.
    cdef AdamHyper h = hyper
    cdef fastopt_storage s
    cdef Py_ssize_t n = param.shape[0], t, steps = grads.shape[0], row = grads.strides[0]
    cdef uint64_t seed = 0, stream = 0
    cdef char* grad0 = <char*>_data(grads)
    memset(&s, 0, sizeof(s))
    s.param.dtype = _dtype_of(param)
    s.param.data = _data(param)
    s.grad.dtype = s.param.dtype
    if master is not None:
        s.master = <float*>_data(master)
    for k, array in enumerate(states):
        if array is None:
            continue
        if isinstance(array, tuple):
            s.state[k].dtype = FASTOPT_INT8
            s.state[k].data = _data(array[0])
            s.state[k].absmax = <float*>_data(array[1])
        else:
            s.state[k].dtype = _dtype_of(array)
            s.state[k].data = _data(array)
    if key is not None:
        s.stochastic_rounding = 1
        seed, stream = key
    with nogil:
        for t in range(steps):
            s.grad.data = grad0 + t * row
            if s.stochastic_rounding:
                s.rounding_key = fastopt_rounding_key(seed, stream, t + 1)
            adam_update_stored(&s, n, &h, t + 1, num_threads)


def nonfinite(const floating[::1] x):
    cdef Py_ssize_t count
    with nogil:
        count = count_nonfinite(&x[0], x.shape[0], 1)
    return count

@LAYOUT_FUNCTIONS@
"""

LAYOUT_FUNCTION = """
def layout_{c_name}(dict values):
    \"\"\"Cython's field names for the struct, and its bytes once filled from values.\"\"\"
    cdef {cy_name} h
    memset(&h, 0, sizeof(h))
    h = values
    return list(h), (<char*>&h)[:sizeof(h)]
"""

SETUP = """
import fastopt
from setuptools import Extension, setup
{extra}
setup(name="{name}", ext_modules={modules}, script_args=["build_ext", "--inplace"])
"""


@pytest.fixture(scope="module")
def compiler_type(tmp_path_factory):
    """The C compiler setuptools would use; skips the module when there is none that works."""
    pytest.importorskip("setuptools")  # builds the modules, and supplies distutils on Python >= 3.12
    from distutils.ccompiler import new_compiler
    from distutils.sysconfig import customize_compiler

    folder = tmp_path_factory.mktemp("probe")
    source = folder / "probe.c"
    source.write_text("#include <Python.h>\nint probe(void) { return (int)sizeof(Py_ssize_t); }\n")
    try:
        cc = new_compiler()
        customize_compiler(cc)
        cc.compile([str(source)], output_dir=str(folder), include_dirs=[sysconfig.get_paths()["include"]])
    except Exception as exc:  # CompileError, a missing compiler executable, missing Python headers
        pytest.skip(f"no C compiler that can build Python extensions: {exc}")
    return cc.compiler_type


def build(folder, name, setup_code):
    """Run setup_code as setup.py in folder (a fresh interpreter) and import the module it builds."""
    (folder / "setup.py").write_text(setup_code)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([PXD_ROOT, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "setup.py"], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        pytest.fail(f"building {name} failed:\n{output}")
    path = next(p for p in folder.iterdir() if p.name.startswith(name + ".") and p.suffix in (".so", ".pyd"))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build_output = output
    return module


@pytest.fixture(scope="module")
def c_module(compiler_type, tmp_path_factory):
    folder = tmp_path_factory.mktemp("linkcheck_c")
    members = []
    for c_name, fields in header_structs().items():
        for _, field in fields:
            members.append(f'    {{"{c_name}", "{field}", offsetof({c_name}, {field}), '
                           f'sizeof((({c_name} *)0)->{field}), sizeof({c_name})}},')
    (folder / "linkcheck_c.c").write_text(C_SOURCE.replace("@MEMBERS@", "\n".join(members)))
    flags = ["-Wall", "-Wextra"] if compiler_type in ("unix", "mingw32", "cygwin") else []
    modules = (f'[Extension("linkcheck_c", ["linkcheck_c.c"], include_dirs=fastopt.get_include(), '
               f'extra_compile_args={flags!r})]')
    module = build(folder, "linkcheck_c", SETUP.format(name="linkcheck_c", extra="", modules=modules))
    module.folder = folder
    return module


@pytest.fixture(scope="module")
def cython_module(compiler_type, tmp_path_factory):
    pytest.importorskip("Cython")
    folder = tmp_path_factory.mktemp("linkcheck_cy")
    names = cython_struct_names()
    source = CYTHON_SOURCE.replace("@STRUCTS@", ", ".join(sorted(names.values()))).replace(
        "@LAYOUT_FUNCTIONS@", "".join(LAYOUT_FUNCTION.format(c_name=c, cy_name=cy) for c, cy in names.items()))
    (folder / "linkcheck_cy.pyx").write_text(source)
    extra = "from Cython.Build import cythonize"
    modules = ('cythonize([Extension("linkcheck_cy", ["linkcheck_cy.pyx"], include_dirs=fastopt.get_include())], '
               'include_path=fastopt.get_include(), quiet=True)')
    return build(folder, "linkcheck_cy", SETUP.format(name="linkcheck_cy", extra=extra, modules=modules))


# --------------------------------------------------------------------------
# The same steps through the Python API
# --------------------------------------------------------------------------
def problem(dtype, n, steps=5, seed=0):
    rng = np.random.default_rng(seed)
    param = rng.standard_normal(n).astype(dtype)
    grads = rng.standard_normal((steps, n)).astype(dtype)
    grads[:, :3] = 0  # exact zeros in the mix
    return param, grads


def python_steps(optimizer, param, grads, **kwargs):
    """Final parameter and optimizer state after one step per row of grads."""
    ps = fastopt.ParamSet({"w": param.copy()})
    opt = optimizer(ps, **kwargs)
    for g in grads:
        ps.grads["w"][:] = g
        opt.step()
    return ps["w"].copy(), opt.state[0]


def assert_same_bits(actual, expected):
    assert actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual.view(f"u{actual.itemsize}"), expected.view(f"u{expected.itemsize}"))


ADAM = dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, amsgrad=True)
ADAM_HYPER = dict(lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1, amsgrad=True, maximize=False,
                  decoupled_weight_decay=False)
# A float32 array long enough that a kernel asked for two threads uses two (see fastopt._parallel).
CASES = [(np.float32, 1000, 1), (np.float64, 1000, 1), (np.float32, 300_000, 2)]


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------
def test_get_include_names_existing_directories_holding_the_files():
    paths = fastopt.get_include()
    assert len(paths) == 2 and all(os.path.isabs(p) and os.path.isdir(p) for p in paths)
    package = pathlib.Path(paths[0]) / "fastopt"
    for pxd in ("cython_kernels.pxd", "_update_rules.pxd"):
        assert (package / pxd).is_file()
    assert (pathlib.Path(paths[1]) / "fastopt.h").is_file()
    assert package.resolve() == pathlib.Path(fastopt.__file__).parent.resolve()


def test_header_and_pxd_declare_the_same_structs():
    structs = header_structs()
    assert structs and set(structs) == set(cython_struct_names())
    for fields in structs.values():  # Cython's double and bint; the layout test decodes these two
        assert fields and {kind for kind, _ in fields} <= {"double", "int"}


def test_c_and_cython_see_one_struct_layout(c_module, cython_module):
    c_layout = {}
    for c_name, field, offset, size, type_size in c_module.layout():
        c_layout.setdefault(c_name, ({}, type_size))[0][field] = (offset, size)
    for c_name, fields in header_structs().items():
        # Distinct values that survive the trip through either C type (flags alternate 0 and 1).
        values = {field: (k + 0.25 if kind == "double" else k % 2) for k, (kind, field) in enumerate(fields)}
        cython_fields, raw = getattr(cython_module, f"layout_{c_name}")(values)
        c_fields, c_size = c_layout[c_name]
        assert sorted(cython_fields) == sorted(c_fields), c_name
        assert len(raw) == c_size, c_name
        for kind, field in fields:
            offset, size = c_fields[field]
            assert size == struct.calcsize("d" if kind == "double" else "i")
            (seen,) = struct.unpack_from("d" if kind == "double" else "i", raw, offset)
            assert seen == values[field], (c_name, field)


def test_extensions_use_the_kernel_build_of_the_python_api(c_module, cython_module):
    import fastopt.cython_kernels

    expected = _kernels.kernels.BUILD["simd"]
    assert c_module.simd() == expected
    assert fastopt.cython_kernels.SIMD == expected


def test_c_import_follows_fastopt_kernels_environment_variable(c_module):
    code = f"import sys; sys.path.insert(0, {str(c_module.folder)!r}); import linkcheck_c; print(linkcheck_c.simd())"
    env = dict(os.environ, FASTOPT_KERNELS="baseline",
               PYTHONPATH=os.pathsep.join([PXD_ROOT, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == _update_rules.BUILD["simd"]


def test_header_compiles_without_warnings(c_module, compiler_type):
    if compiler_type not in ("unix", "mingw32", "cygwin"):
        pytest.skip("warning flags are set for gcc-like compilers only")
    assert "fastopt.h" not in c_module.build_output, c_module.build_output


@pytest.mark.parametrize("dtype, n, num_threads", CASES)
def test_cython_adam_matches_python_api(cython_module, dtype, n, num_threads):
    param, grads = problem(dtype, n)
    expected, state = python_steps(fastopt.Adam, param, grads, **ADAM)
    for baseline in (False, True):  # fastopt.cython_kernels, then fastopt._update_rules (the baseline build)
        p, m, v, vmax = param.copy(), np.zeros_like(param), np.zeros_like(param), np.zeros_like(param)
        cython_module.adam(p, grads, m, v, vmax, ADAM_HYPER, num_threads, baseline)
        assert_same_bits(p, expected)
        for name, array in (("exp_avg", m), ("exp_avg_sq", v), ("max_exp_avg_sq", vmax)):
            assert_same_bits(array, state[name])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cython_lion_and_count_nonfinite_match_python_api(cython_module, dtype):
    param, grads = problem(dtype, 777)
    expected, state = python_steps(fastopt.Lion, param, grads, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.5)
    p, m = param.copy(), np.zeros_like(param)
    cython_module.lion(p, grads, m, dict(lr=1e-3, beta1=0.9, beta2=0.95, weight_decay=0.5, maximize=False), 1)
    assert_same_bits(p, expected)
    assert_same_bits(m, state["exp_avg"])
    p[[5, 50, 500]] = [np.nan, np.inf, -np.inf]
    assert cython_module.nonfinite(p) == 3


@pytest.mark.parametrize("dtype, n, num_threads", CASES)
def test_c_adam_matches_python_api(c_module, dtype, n, num_threads):
    param, grads = problem(dtype, n)
    expected, state = python_steps(fastopt.Adam, param, grads, **ADAM)
    p, m, v, vmax = param.copy(), np.zeros_like(param), np.zeros_like(param), np.zeros_like(param)
    c_module.adam(p, grads, m, v, vmax, tuple(ADAM_HYPER.values()), num_threads)
    assert_same_bits(p, expected)
    for name, array in (("exp_avg", m), ("exp_avg_sq", v), ("max_exp_avg_sq", vmax)):
        assert_same_bits(array, state[name])

    # Without amsgrad the optional state array is NULL.
    expected, _ = python_steps(fastopt.AdamW, param, grads, lr=1e-2, weight_decay=0.1)
    p, m, v = param.copy(), np.zeros_like(param), np.zeros_like(param)
    c_module.adam(p, grads, m, v, None, (1e-2, 0.9, 0.999, 1e-8, 0.1, False, False, True), num_threads)
    assert_same_bits(p, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_c_nadam_matches_python_api(c_module, dtype):
    param, grads = problem(dtype, 1000)
    kwargs = dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-7, weight_decay=0.01, momentum_decay=4e-3,
                  decoupled_weight_decay=True)
    expected, state = python_steps(fastopt.NAdam, param, grads, **kwargs)
    p, m, v = param.copy(), np.zeros_like(param), np.zeros_like(param)
    mu_product = c_module.nadam(p, grads, m, v, (1e-2, 0.9, 0.99, 1e-7, 0.01, 4e-3, True, False), 1)
    assert_same_bits(p, expected)
    assert_same_bits(v, state["exp_avg_sq"])
    assert mu_product == state["mu_product"]



# --------------------------------------------------------------------------
# Stored updates: other storage types than the parameters' own (issue 14)
# --------------------------------------------------------------------------
BF16 = _storage.BFLOAT16
ADAM_STATE = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
# (name, parameter dtype, optimizer storage options, n, num_threads): float32 parameters with int8 state;
# bfloat16 parameters with bfloat16 state and a float32 master copy; bfloat16 parameters with int8 state,
# rounded stochastically.  Sizes with a short last int8 block; the long one is split between two threads.
STORED_CASES = [
    ("f32-int8", np.float32, dict(state_dtype="int8"), 1000, 1),
    ("f32-int8-2threads", np.float32, dict(state_dtype="int8"), 300_000 + 17, 2),
    ("bf16-bf16-master", BF16, dict(state_dtype="bfloat16", master_weights=True), 1000, 1),
    ("bf16-bf16-master-2threads", BF16, dict(state_dtype="bfloat16", master_weights=True), 300_000 + 17, 2),
    ("bf16-int8-stochastic", BF16, dict(state_dtype="int8", stochastic_rounding=True, seed=2**63 + 12345), 1000, 1),
]


def stored_problem(dtype, n, steps=5):
    param, grads = problem(np.float32, n, steps)
    return param.astype(dtype), grads.astype(dtype)


def fresh_state(storage, n, bits):
    """Zeroed Adam state in ``storage`` (as the optimizer starts it); bfloat16 as its uint16 bits if ``bits``."""
    def one():
        if storage == "int8":
            return np.zeros(n, np.uint8), np.zeros(_storage.absmax_length(n), np.float32)
        if storage == "bfloat16":
            return np.zeros(n, np.uint16 if bits else BF16)
        return np.zeros(n, np.float32)
    return tuple(one() for _ in ADAM_STATE)


def assert_same_state(states, expected, storage):
    for name, held in zip(ADAM_STATE, states):
        if storage == "int8":
            assert_same_bits(held[0], expected[name])
            assert_same_bits(held[1], expected[name + _storage.ABSMAX_SUFFIX])
        else:
            np.testing.assert_array_equal(held.view(np.uint16 if held.itemsize == 2 else np.uint32),
                                          expected[name].view(np.uint16 if held.itemsize == 2 else np.uint32))


def call_stored(module, param, grads, options, num_threads, bits):
    """The compiled module's stored Adam steps on copies: (param, state arrays, master)."""
    n = param.shape[0]
    states = fresh_state(options["state_dtype"], n, bits)
    master = param.astype(np.float32) if options.get("master_weights") else None
    key = (options["seed"], 0) if options.get("stochastic_rounding") else None  # the optimizer's stream: slot 0
    p, g = param.copy(), grads.copy()
    if bits and p.dtype == BF16:
        p, g = p.view(np.uint16), g.view(np.uint16)
    hyper = tuple(ADAM_HYPER.values()) if module.__name__ == "linkcheck_c" else ADAM_HYPER
    module.adam_stored(p, g, states, master, hyper, key, num_threads)
    return p.view(param.dtype), states, master


@pytest.mark.parametrize("module_name", ["c", "cython"])
@pytest.mark.parametrize("name, dtype, options, n, num_threads", STORED_CASES, ids=[c[0] for c in STORED_CASES])
def test_stored_adam_matches_python_api(request, module_name, name, dtype, options, n, num_threads):
    module = request.getfixturevalue(f"{module_name}_module")
    param, grads = stored_problem(dtype, n)
    expected, state = python_steps(fastopt.Adam, param, grads, **ADAM, **options)
    # C gets bfloat16 as uint16 bits through the buffer protocol; Cython takes the ml_dtypes arrays themselves.
    p, states, master = call_stored(module, param, grads, options, num_threads, bits=module_name == "c")
    assert_same_bits(p, expected)
    assert_same_state(states, state, options["state_dtype"])
    if master is not None:
        assert_same_bits(master, state[_storage.MASTER])
        assert_same_bits(p, master.astype(BF16))  # the parameters are the master copy rounded to nearest


@pytest.mark.parametrize("module_name", ["c", "cython"])
def test_stored_adam_stochastic_rounding_matches_bound_step(request, module_name):
    """Another stream than the optimizer's 0, the key computed by the header's fastopt_rounding_key."""
    module = request.getfixturevalue(f"{module_name}_module")
    seed, stream, n = 99, 7, 777
    param, grads = stored_problem(BF16, n)
    states = fresh_state("float32", n, bits=False)
    p = param.copy()
    step = _kernels.BoundStep("adam", p, grads[0], states, ADAM_HYPER, stochastic_rounding=True, seed=seed,
                              stream=stream)
    for t, g in enumerate(grads):
        step.set_grad(g)
        step.run(t + 1)
    mine = fresh_state("float32", n, bits=False)
    q = param.copy()
    if module_name == "c":
        module.adam_stored(q.view(np.uint16), grads.view(np.uint16), mine, None, tuple(ADAM_HYPER.values()),
                           (seed, stream), 1)
    else:
        module.adam_stored(q, grads, mine, None, ADAM_HYPER, (seed, stream), 1)
    assert_same_bits(q, p)
    for a, b in zip(mine, states):
        assert_same_bits(a, b)
    # Stochastic: the result is not simply the float32 result rounded to nearest.
    nearest = param.copy()
    module_states = fresh_state("float32", n, bits=False)
    if module_name == "c":
        module.adam_stored(nearest.view(np.uint16), grads.view(np.uint16), module_states, None,
                           tuple(ADAM_HYPER.values()), None, 1)
    else:
        module.adam_stored(nearest, grads, module_states, None, ADAM_HYPER, None, 1)
    assert not np.array_equal(nearest.view(np.uint16), q.view(np.uint16))


def test_c_rounding_key_is_the_python_api_key(c_module):
    for seed, stream, step in [(0, 0, 0), (1, 2, 3), (2**64 - 1, 2**63, 2**40 + 5), (12345, 0, 1)]:
        assert c_module.rounding_key(seed, stream, step) == _kernels.kernels.rounding_key(seed, stream, step)
