"""Gradient clipping for NumPy gradients, in place.

Three functions, after ``torch.nn.utils``:

* :func:`clip_grad_norm_` scales all gradients together so that their total
  norm is at most ``max_norm``, and returns the norm they had;
* :func:`clip_grad_norm_per_array_` does the same for each array on its own;
* :func:`clip_grad_value_` clamps every element into ``[-clip_value, clip_value]``.

What they accept as ``grads``
-----------------------------
* a :class:`~fastopt.ParamSet`: its flat gradient buffer ``ps.grad``, so the
  whole model costs one kernel call per pass (for ``align=True`` the padding
  between tensors is part of that buffer: it is zero unless something wrote
  to it through ``ps.grad``, and a zero adds nothing to a norm; a NaN
  coefficient is applied tensor by tensor so that the padding stays zero);
* ``ps.select(names)``: one kernel call per run of neighbouring tensors;
* a single ndarray, or a list, tuple or dict of ndarrays.  Each array may
  have its own dtype (float32 or float64) and shape; it must be C-contiguous
  and writeable, and no two may share memory.  ``None`` entries (a
  parameter without a gradient) are skipped, as torch skips parameters
  whose ``.grad`` is None.

Nothing is converted or copied, and every check runs before the first kernel,
so a refused call changes nothing.

Numerics
--------
Norms are accumulated in float64 for float32 gradients too, chunk by chunk,
and the chunk results are combined in chunk order: the returned norm and
the clipped gradients have the same bits for any thread count
(:func:`fastopt.set_num_threads`).  For several arrays the global norm is
taken directly, ``(sum over arrays of sum |g|^p)^(1/p)``, with the per-array
sums added in the order given; torch takes the norm of the per-tensor norms,
the same number up to rounding.

No spurious overflow or underflow, for any ``p``: the norm is accurate to a
few units in the last place (times ``1/p`` for ``p < 1``) whenever it fits
in a float64, and inf when it does not, for elements anywhere from the
smallest subnormal to the largest float64.  For
``p = 1`` and ``p = 2`` the plain sum is taken first; when it overflowed
although every element is finite (float64 gradients beyond about 1e154 for
``p = 2``, where torch returns inf), or when squares fell below the normal
range (elements below about 1e-154), the norm is computed again as
``m * (sum (|g_i| / m)^p)^(1/p)`` with ``m = max |g_i|``.  Every other
finite ``p`` is always computed that way (a pass for ``m``, then the sum):
each term then lies in ``[0, 1]`` and the sum in ``[1, n]``, so ``p = 3000``
works on gradients of any magnitude, where ``sum |g_i|^p`` itself would
overflow or underflow.  The same bits for any thread count hold on every
path.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional, SupportsFloat, TypeVar, Union, overload

import numpy as np

from fastopt._threads import get_num_threads
from fastopt._validation import FLOAT_DTYPES, as_array, bounded_real, check_disjoint, check_param
from fastopt.nn import _clip
from fastopt.paramset import ParamSelection, ParamSet

if TYPE_CHECKING:
    from fastopt._typing import Array

    # What the clip functions take as ``grads`` (None entries: parameters without a gradient).
    _Gradients = Union[ParamSet, ParamSelection, Array, Sequence[Optional[Array]], Mapping[Any, Optional[Array]]]

_K = TypeVar("_K")

__all__ = ["EPS", "NonFiniteNormError", "clip_grad_norm_", "clip_grad_norm_per_array_", "clip_grad_value_"]

EPS: float = 1e-6
"""Added to the norm before dividing, as torch does: ``coef = max_norm / (norm + EPS)``."""


class NonFiniteNormError(RuntimeError):
    """The gradient norm is NaN or infinite and ``error_if_nonfinite=True`` asked to refuse it.

    A RuntimeError, as in torch; raised before any gradient is changed.
    """


# --------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------
def _max_norm(value: object) -> float:
    """``max_norm``: a number > 0, ``inf`` for no clipping; like torch, anything ``float()`` takes (a 0-d array)."""
    return bounded_real("max_norm", value, 0.0, low_open=True, allow_inf=True, float_like=True)


def _norm_type(value: object) -> float:
    """``norm_type`` (the p of the p-norm): a number > 0, or ``inf`` for the largest magnitude."""
    return bounded_real("norm_type", value, 0.0, low_open=True, allow_inf=True, float_like=True,
                        expected="a real number or inf")


def clip_grad_norm_(grads: _Gradients, max_norm: SupportsFloat, norm_type: SupportsFloat = 2.0,
                    error_if_nonfinite: bool = False) -> float:
    """Scale gradients in place so that their total norm is at most ``max_norm``.

    Computes the ``norm_type``-norm of all gradients together, as if they
    were concatenated into one vector, then multiplies every gradient by
    ``coef = max_norm / (total_norm + 1e-6)`` when that is below 1 (the
    1e-6 is torch's, see :data:`EPS`); otherwise the gradients are left
    untouched, bit for bit.

    Parameters
    ----------
    grads : ParamSet, ParamSelection, ndarray, or list, tuple or dict of ndarrays
        The gradients, updated in place (see the module docstring).  For a
        ParamSet this is ``ps.grad``, one kernel call per pass.
    max_norm : float
        Largest total norm allowed; ``> 0``.  ``inf`` makes the call a pure
        norm computation (a common torch idiom): the gradients are never
        changed, not even for a NaN or infinite norm (where torch, computing
        ``inf / inf``, would multiply them by NaN).
    norm_type : float, default 2.0
        ``p > 0``, or ``inf`` for the largest absolute value.  ``p = 2`` and
        ``p = 1`` have dedicated loops; other values take a pass for the
        largest absolute value, then call ``pow`` per element, and are much
        slower.  Any finite ``p`` works at any magnitude (no spurious
        overflow or underflow: see the module docstring).
    error_if_nonfinite : bool, default False
        Raise :class:`NonFiniteNormError` when the total norm is NaN or
        infinite, leaving the gradients unchanged.  Without it such a norm
        is used as torch uses it: a NaN norm makes ``coef`` NaN and every
        gradient element NaN; an infinite norm (some element is infinite)
        makes ``coef`` 0, so finite elements become 0 (keeping their sign)
        and infinite ones NaN.

    Returns
    -------
    float
        The total norm before clipping.  0.0 when there are no elements.

    Raises
    ------
    TypeError
        ``grads`` is not one of the accepted containers, an array is not a
        float32/float64 ndarray, or a number argument is not a real number.
    ValueError
        An array is not C-contiguous, is read-only or shares memory with
        another; ``max_norm <= 0``, ``norm_type <= 0`` or either is NaN.
    NonFiniteNormError
        See ``error_if_nonfinite``.

    Notes
    -----
    Differences from ``torch.nn.utils.clip_grad_norm_``: the norm is a
    Python float computed in float64 (torch computes it in the gradients'
    dtype, and float32 sums round more and overflow sooner); a float32
    gradient is multiplied by ``coef`` rounded to float32 from a float64
    ``coef``; ``norm_type`` must be positive (torch also takes 0 and -inf);
    sums that would overflow or underflow are scaled by the largest element
    (see the module docstring), so the norm is finite and accurate wherever
    it fits in a float64 (torch's overflows to inf, or underflows to 0); when
    ``coef`` is clamped to 1 the gradients are not multiplied at all;
    ``max_norm=inf`` never changes them.

    Examples
    --------
    >>> import numpy as np
    >>> from fastopt.nn.clip import clip_grad_norm_
    >>> g = [np.array([3.0, 0.0]), np.array([4.0])]
    >>> clip_grad_norm_(g, max_norm=1.0)
    5.0
    >>> np.round(g[0], 6), np.round(g[1], 6)
    (array([0.6, 0. ]), array([0.8]))
    """
    max_norm = _max_norm(max_norm)
    p = _norm_type(norm_type)
    source = _Source(grads)
    threads = get_num_threads()
    total = _norm(source.arrays, p, threads)
    if error_if_nonfinite and not math.isfinite(total):
        raise NonFiniteNormError(_nonfinite_message(total, p, "the gradients"))
    coef = max_norm / (total + EPS)
    if _scales(coef, max_norm):
        targets = source.tensor_views if coef != coef and source.tensor_views else source.arrays
        for array in targets:
            _clip.scale_(array, coef, threads)
    return total


@overload
def clip_grad_norm_per_array_(grads: ParamSet | ParamSelection, max_norm: SupportsFloat, norm_type: SupportsFloat = ...,
                              error_if_nonfinite: bool = ...) -> dict[str, float]: ...
@overload
def clip_grad_norm_per_array_(grads: Array, max_norm: SupportsFloat, norm_type: SupportsFloat = ...,
                              error_if_nonfinite: bool = ...) -> float: ...
@overload
def clip_grad_norm_per_array_(grads: Mapping[_K, Array | None], max_norm: SupportsFloat, norm_type: SupportsFloat = ...,
                              error_if_nonfinite: bool = ...) -> dict[_K, float]: ...
@overload
def clip_grad_norm_per_array_(grads: Sequence[Array | None], max_norm: SupportsFloat, norm_type: SupportsFloat = ...,
                              error_if_nonfinite: bool = ...) -> list[float]: ...
def clip_grad_norm_per_array_(grads: _Gradients, max_norm: SupportsFloat, norm_type: SupportsFloat = 2.0,
                              error_if_nonfinite: bool = False) -> float | list[float] | dict[Any, float]:
    """Clip each gradient array to its own norm ``max_norm``; return the norms.

    :func:`clip_grad_norm_` applied to every array separately: each array
    is multiplied by ``max_norm / (its_norm + 1e-6)`` when that is below 1.
    For a ParamSet or a selection the arrays are its tensors (by name), not
    the flat buffer.

    Parameters
    ----------
    grads, max_norm, norm_type
        As for :func:`clip_grad_norm_`.
    error_if_nonfinite : bool, default False
        Raise :class:`NonFiniteNormError` naming the first array whose norm
        is NaN or infinite; every norm is computed first, so a refused call
        changes no array.  Without it each array is treated as in
        :func:`clip_grad_norm_`.

    Returns
    -------
    float, list of float or dict of float
        The norms before clipping, shaped like ``grads``: a float for a
        single array, a list for a list or tuple (0.0 for a None entry), a
        dict for a dict, and a dict by tensor name for a ParamSet or
        selection.

    Examples
    --------
    >>> import numpy as np
    >>> from fastopt.nn.clip import clip_grad_norm_per_array_
    >>> g = {"a": np.array([3.0, 4.0]), "b": np.array([0.5])}
    >>> clip_grad_norm_per_array_(g, max_norm=1.0)
    {'a': 5.0, 'b': 0.5}
    >>> np.round(g["a"], 6), g["b"]
    (array([0.6, 0.8]), array([0.5]))
    """
    max_norm = _max_norm(max_norm)
    p = _norm_type(norm_type)
    source = _Source(grads, per_tensor=True)
    threads = get_num_threads()
    norms = [_norm([array], p, threads) for array in source.arrays]
    if error_if_nonfinite:
        for norm, label in zip(norms, source.labels):
            if not math.isfinite(norm):
                raise NonFiniteNormError(_nonfinite_message(norm, p, label))
    for norm, array in zip(norms, source.arrays):
        coef = max_norm / (norm + EPS)
        if _scales(coef, max_norm):
            _clip.scale_(array, coef, threads)
    return source.shape_like(norms)


def clip_grad_value_(grads: _Gradients, clip_value: SupportsFloat) -> None:
    """Clamp every gradient element into ``[-clip_value, clip_value]``, in place.

    Parameters
    ----------
    grads : ParamSet, ParamSelection, ndarray, or list, tuple or dict of ndarrays
        As for :func:`clip_grad_norm_`; a ParamSet costs one kernel call.
    clip_value : float
        ``>= 0``; rounded to each array's dtype.  ``inf`` changes nothing
        but the time spent.

    Returns
    -------
    None

    Notes
    -----
    As in torch, NaN elements stay NaN and infinities become
    ``±clip_value``.  With ``clip_value = 0`` every non-NaN element
    becomes zero.

    Examples
    --------
    >>> import numpy as np
    >>> from fastopt.nn.clip import clip_grad_value_
    >>> g = np.array([-3.0, 0.25, np.nan, np.inf])
    >>> clip_grad_value_(g, 1.0)
    >>> g
    array([-1.  ,  0.25,   nan,  1.  ])
    """
    clip_value = bounded_real("clip_value", clip_value, 0.0, allow_inf=True, float_like=True)
    source = _Source(grads)
    threads = get_num_threads()
    for array in source.arrays:
        _clip.clamp_(array, -clip_value, clip_value, threads)


# --------------------------------------------------------------------------
# What ``grads`` holds
# --------------------------------------------------------------------------
class _Source:
    """The 1-D arrays the kernels run over, validated, with labels for errors.

    ``arrays`` are flat views (one per array, run, or ParamSet buffer);
    ``labels`` name them in errors; ``tensor_views`` is set when a flat
    buffer has padding between tensors: a NaN coefficient is applied tensor
    by tensor so that the padding stays zero.  ``shape_like`` turns one
    number per array into the structure of ``grads``.
    """

    def __init__(self, grads: _Gradients, per_tensor: bool = False) -> None:
        self.tensor_views: list[Array] | None = None
        self.keys: Any = None    # dict keys, tensor names, or None
        self.kind: Any = None    # "single", "list" or "dict"
        self.slots: Any = None   # for lists/dicts: where each array sits, None entries included
        self.arrays: list[Array]
        self.labels: list[str]
        if isinstance(grads, (ParamSet, ParamSelection)):
            self._from_paramset(grads, per_tensor)
            return
        grads = as_array(grads, "grads")
        if isinstance(grads, np.ndarray):
            self.kind = "single"
            entries: list[tuple[str, Any]] = [("grads", grads)]
        elif isinstance(grads, Mapping):
            self.kind = "dict"
            self.keys = list(grads)
            entries = [(f"grads[{k!r}]", grads[k]) for k in self.keys]
        elif isinstance(grads, (list, tuple)):
            self.kind = "list"
            entries = [(f"grads[{i}]", g) for i, g in enumerate(grads)]
        else:
            raise TypeError("grads must be a ParamSet, ps.select(...), a numpy.ndarray, or a list, tuple or "
                            f"dict of numpy arrays; got {type(grads).__name__}")
        self.slots, self.arrays, self.labels = [], [], []
        for label, g in entries:
            if g is None and self.kind != "single":
                self.slots.append(None)
                continue
            g = as_array(g, label)
            check_param(g, label, FLOAT_DTYPES)  # the clipping kernels take no bfloat16 (yet)
            self.slots.append(len(self.arrays))
            # view(np.ndarray): a subclass may not reshape to 1-D; the memory is the same.
            self.arrays.append(g.view(np.ndarray).reshape(-1))
            self.labels.append(label)
        if len(self.arrays) > 1:
            check_disjoint(self.arrays, self.labels, "gradients")

    def _from_paramset(self, grads: ParamSet | ParamSelection, per_tensor: bool) -> None:
        ps = grads.paramset if isinstance(grads, ParamSelection) else grads
        check_param(ps.grad, "ParamSet.grad", FLOAT_DTYPES)
        names = grads.names if isinstance(grads, ParamSelection) else ps.names
        self.kind = "dict"
        if per_tensor:
            self.keys = list(names)
            self.slots = list(range(len(names)))
            self.arrays = [ps.grad[ps.slices[n]] for n in names]
            self.labels = [f"ParamSet.grads[{n!r}]" for n in names]
            return
        if isinstance(grads, ParamSelection):
            runs = [(run, run_names) for run, run_names in grads.runs]
            self.arrays = [ps.grad[run] for run, _ in runs]
            self.labels = [f"ParamSet.grad[{list(run_names)}]" for _, run_names in runs]
        else:
            self.arrays = [ps.grad]
            self.labels = ["ParamSet.grad"]
        if sum(a.size for a in self.arrays) != sum(ps.slices[n].stop - ps.slices[n].start for n in names):
            self.tensor_views = [ps.grad[ps.slices[n]] for n in names]

    def shape_like(self, values: list[float]) -> float | list[float] | dict[Any, float]:
        if self.kind == "single":
            return values[0]
        per_entry = [0.0 if slot is None else values[slot] for slot in self.slots]
        if self.kind == "dict":
            return dict(zip(self.keys, per_entry))
        return per_entry


def _scales(coef: float, max_norm: float) -> bool:
    """Whether gradients get multiplied by ``coef``: below 1, or NaN (as in torch), never for max_norm=inf."""
    return (coef < 1.0 or coef != coef) and max_norm != math.inf


# --------------------------------------------------------------------------
# Norms
# --------------------------------------------------------------------------
_SMALLEST_NORMAL = 2.0 ** -1022


def _norm(arrays: list[Array], p: float, threads: int) -> float:
    """The p-norm of the concatenation of ``arrays`` (float64 accumulation, given order).

    ``p = 1`` and ``p = 2`` first take the plain sum, one pass, and keep it
    unless it overflowed or (``p = 2``) is so small that squares below the
    normal range may have lost digits.  Otherwise, and always for any other
    finite ``p``, the norm is ``peak * (sum (|g_i| / peak)^p)^(1/p)`` with
    ``peak = max |g_i|`` from a first pass: every term lies in ``[0, 1]``,
    the largest is exactly 1, so the sum lies in ``[1, n]`` and neither
    overflows nor underflows, whatever ``p`` and the magnitudes.
    """
    if p == math.inf:
        return _combine([_clip.power_sum(a, p, 1.0, threads) for a in arrays], p)
    if p == 1.0 or p == 2.0:
        total = _combine([_clip.power_sum(a, p, 1.0, threads) for a in arrays], p)
        if total != total:  # a NaN element
            return total
        # Each square below 2**-1022 is off by at most 2**-1075, so the n squares are off by at
        # most n * 2**-1075 in all: a sum above n * 2**-1022 keeps its relative accuracy.
        if total < math.inf and (p == 1.0 or total > sum(a.size for a in arrays) * _SMALLEST_NORMAL):
            return math.sqrt(total) if p == 2.0 else total
    peak = _combine([_clip.power_sum(a, math.inf, 1.0, threads) for a in arrays], math.inf)
    if not 0.0 < peak < math.inf:
        return peak  # all zeros (or no elements), an infinite element, or a NaN
    total = _combine([_clip.power_sum(a, p, peak, threads) for a in arrays], p)
    return _scaled_root(peak, total, p)


def _scaled_root(peak: float, total: float, p: float) -> float:
    """``peak * total**(1/p)`` for ``total >= 1``; inf where that exceeds the float64 range."""
    if p == 1.0:
        return peak * total  # a product beyond the range is inf, no exception
    if p == 2.0:
        return peak * math.sqrt(total)
    try:
        return peak * math.pow(total, 1.0 / p)  # for p >= 1 the root is at most total, at most n
    except OverflowError:
        pass
    # p < 1: the root alone may exceed the range where the norm (a tiny peak) does not.  Its cube
    # root cannot overflow unless the norm does (peak >= 2**-1074, root >= 2**3072), and with each
    # factor >= 1 an overflowing partial product means an overflowing norm.
    try:
        third = math.pow(total, 1.0 / (3.0 * p))
    except OverflowError:
        return math.inf
    return peak * third * third * third


def _combine(values: list[float], p: float) -> float:
    """Sum of per-array sums in order, or, for p = inf, their maximum (NaN wins)."""
    total = 0.0
    if p == math.inf:
        for v in values:
            if v > total or v != v:
                total = v
        return total
    for v in values:
        total += v
    return total


def _nonfinite_message(norm: float, p: float, what: str) -> str:
    order = "inf" if p == math.inf else f"{p:g}"
    return (f"the {order}-norm of {what} is {norm}, so it cannot be clipped; pass "
            "error_if_nonfinite=False to scale by it anyway (NaN or infinite elements then turn NaN or 0)")
