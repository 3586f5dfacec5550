"""Checks on user arrays, done in Python before any kernel runs.

Kernels update arrays in place, so fastopt never converts or copies a
parameter or gradient behind the user's back: an array that is not exactly
what a kernel needs is refused with an error naming it.
"""
import math

import numpy as np

from fastopt._memory import byte_span

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float(value):
    """``float(value)`` for a real number, with ints beyond float's range as infinities (not OverflowError)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def check_float_array(arr, name):
    """Require a C-contiguous float32/float64 ndarray; return it unchanged."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(arr).__name__}")
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {arr.dtype}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (fastopt updates arrays in place and never copies them)")
    if not arr.flags.aligned:
        raise ValueError(f"{name} is not aligned to its dtype's size (a view at an odd byte offset?)")
    return arr


def check_writeable(arr, name):
    if not arr.flags.writeable:
        raise ValueError(f"{name} is read-only; fastopt updates parameters in place")


def check_param(arr, name):
    """A parameter: a writeable C-contiguous float32/float64 ndarray."""
    check_float_array(arr, name)
    check_writeable(arr, name)
    return arr


def check_grad(grad, param, grad_name, param_name):
    """A gradient matching ``param`` in dtype and shape (overlap is checked by the caller)."""
    check_float_array(grad, grad_name)
    if grad.dtype != param.dtype:
        raise TypeError(f"{grad_name} has dtype {grad.dtype} but {param_name} has dtype {param.dtype}")
    if grad.shape != param.shape:
        raise ValueError(f"{grad_name} has shape {grad.shape} but {param_name} has shape {param.shape}")
    return grad


def check_disjoint(arrays, names, what):
    """Raise ValueError if any two non-empty arrays overlap in memory.

    ``arrays`` must be C-contiguous, so an array occupies exactly the bytes
    between its first and last element.  Sorting by start address finds any
    overlap in O(n log n).  Returns the sorted ``(start, end, index)`` spans.
    """
    spans = sorted((byte_span(a) + (i,) for i, a in enumerate(arrays) if a.size), key=lambda s: s[0])
    for (_, end, i), (start, _, j) in zip(spans, spans[1:]):
        if start < end:
            first, second = sorted((i, j))
            raise ValueError(f"{what} {names[first]} and {names[second]} share memory; each must be a separate array")
    return spans
