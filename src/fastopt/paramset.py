"""ParamSet: every parameter and gradient of a model in two contiguous buffers."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from operator import index
from typing import TYPE_CHECKING, Any, Union, overload

import numpy as np

from fastopt._openmp_helpers import build_info
from fastopt._storage import BFLOAT16, PARAM_DTYPES, dtype_name
from fastopt._validation import as_array, dtype_names

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, DTypeLike

    from fastopt._typing import Array

    # What a ParamSet is built from: name -> shape (an int or a tuple of ints) or array, as a mapping or pairs.
    _Tensors = Union[Mapping[str, ArrayLike], Iterable[tuple[str, ArrayLike]]]
    # A mask of ParamSet.masked: a predicate mask(name, array) or a bool per name.
    _Mask = Union[Callable[[str, Array], Union[bool, np.bool_]], Mapping[str, Union[bool, np.bool_]]]

CACHE_LINE: int = build_info()["cache_line_bytes"]


class ParamSet(Mapping[str, "Array"]):
    """A flat arena holding all parameters of a model, plus a matching gradient arena.

    Each named tensor is a view into one contiguous 1-D buffer (``data``); its
    gradient is the view at the same offset into a second buffer (``grad``).
    An optimizer built on a ParamSet updates the whole model with one kernel
    call over ``data``, however many tensors it holds.

    Parameters
    ----------
    tensors : mapping or iterable of (name, value) pairs
        Each value is either a shape (an int or a tuple of ints), giving a
        tensor of zeros, or an array (anything ``numpy.asarray`` accepts),
        whose values are copied in.
    dtype : {None, numpy.float32, numpy.float64, ml_dtypes.bfloat16}, optional
        Element type of both buffers.  By default the common dtype of the
        given arrays, which must all be float32, all float64 or all bfloat16;
        float64 (as in NumPy) when only shapes are given.  With an explicit
        dtype, integer and other-precision float arrays are converted (to
        bfloat16 by rounding to nearest even, as ``astype`` does); complex,
        boolean and non-numeric arrays are refused.  Assigning to a tensor
        (``ps["W"] = value``) converts the same way.
    align : bool, default False
        Start every tensor on a 64-byte cache-line boundary.  The padding
        between tensors starts at zero in both buffers; no view exposes it,
        and the update rules keep it at zero as long as the gradient padding
        stays zero (writing to the flat ``grad`` buffer as a whole can change
        that).  The buffers themselves always start on a 64-byte boundary.

    Attributes
    ----------
    data, grad : numpy.ndarray
        The flat parameter and gradient buffers (1-D, C-contiguous, writeable),
        padding included.  Read-only attributes: write into them, don't
        rebind them.
    grads : Mapping[str, numpy.ndarray]
        Gradient views by name: ``ps.grads["W1"]`` has the shape of ``ps["W1"]``.
    names : tuple of str
        Tensor names in layout order.
    shapes : dict
        Shape of each tensor.
    slices : dict
        ``slice`` of each tensor in the flat buffers.
    dtype : numpy.dtype
    size : int
        Elements in each flat buffer, padding included.
    nbytes : int
        Bytes of the parameter buffer (the gradient buffer holds as many).

    Examples
    --------
    >>> import numpy as np
    >>> from fastopt import ParamSet
    >>> ps = ParamSet({"W": (3, 2), "b": np.ones(2, dtype=np.float32)})
    >>> ps["W"].shape, ps.grads["b"].shape, ps.data.shape, ps.dtype
    ((3, 2), (2,), (8,), dtype('float32'))

    In bfloat16, two bytes an element (``ml_dtypes.bfloat16``, NumPy's
    bfloat16 type):

    >>> import ml_dtypes
    >>> half = ParamSet({"W": (3, 2)}, dtype=ml_dtypes.bfloat16)
    >>> half["W"] = [[1.0, 2.0], [3.0, 4.0], [5.0, 1.00390625]]  # rounded to nearest even
    >>> half.dtype, half.nbytes, float(half["W"][2, 1])
    (dtype(bfloat16), 12, 1.0)
    """

    dtype: np.dtype[Any]
    align: bool
    slices: dict[str, slice]
    shapes: dict[str, tuple[int, ...]]
    size: int
    names: tuple[str, ...]
    grads: _ViewMap

    # Two signatures rather than one union, so that a dict literal such as {"w": 3, "b": ()} type-checks.
    @overload
    def __init__(self, tensors: Mapping[str, ArrayLike], dtype: DTypeLike | None = ..., *, align: bool = ...) -> None: ...
    @overload
    def __init__(self, tensors: Iterable[tuple[str, ArrayLike]], dtype: DTypeLike | None = ..., *,
                 align: bool = ...) -> None: ...
    def __init__(self, tensors: _Tensors, dtype: DTypeLike | None = None, *, align: bool = False) -> None:
        entries = _parse_entries(tensors)
        self.dtype = _resolve_dtype(entries, dtype)
        self.align = bool(align)
        itemsize = self.dtype.itemsize
        step = CACHE_LINE // itemsize if align else 1

        self.slices, self.shapes = {}, {}
        offset = 0
        for name, shape, _ in entries:
            offset = -(-offset // step) * step
            count = int(np.prod(shape, dtype=np.int64))
            self.slices[name] = slice(offset, offset + count)
            self.shapes[name] = shape
            offset += count
        self.size = offset
        self.names = tuple(self.slices)

        self._data = _aligned_zeros(self.size, self.dtype)
        self._grad = _aligned_zeros(self.size, self.dtype)
        self._params = _ViewMap(self._views(self._data), "ParamSet")
        self.grads = _ViewMap(self._views(self._grad), "ParamSet.grads")
        for name, _, value in entries:
            if value is not None:
                self._params[name] = value

    def _views(self, flat: Array) -> dict[str, Array]:
        return {n: flat[s].reshape(self.shapes[n]) for n, s in self.slices.items()}

    @property
    def data(self) -> Array:
        return self._data

    @property
    def grad(self) -> Array:
        return self._grad

    def __reduce__(self) -> tuple[Callable[..., ParamSet], tuple[Any, ...]]:
        """Copies and pickles rebuild the arena, so views and buffers stay one memory."""
        layout = [(n, self.shapes[n]) for n in self.names]
        # By name: bfloat16's dtype.str is "<V2", a plain void type.
        return _rebuild, (layout, dtype_name(self.dtype), self.align, self._data, self._grad)

    # Mapping protocol: name -> parameter view
    def __getitem__(self, name: str) -> Array:
        return self._params[name]

    def __setitem__(self, name: str, value: ArrayLike) -> None:
        """Copy ``value`` into the tensor ``name`` (its view and the buffer stay the same)."""
        self._params[name] = value

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    def zero_grad(self) -> None:
        """Set every gradient to zero (one pass over the gradient buffer)."""
        self.grad.fill(0)

    def select(self, names: str | Iterable[str]) -> ParamSelection:
        """The tensors ``names`` of this ParamSet, for a parameter group.

        Examples
        --------
        >>> import fastopt
        >>> ps = fastopt.ParamSet({"W1": (4, 4), "b1": 4, "W2": (4, 2), "b2": 2})
        >>> opt = fastopt.AdamW([
        ...     {"params": ps.select(["W1", "W2"])},
        ...     {"params": ps.select(["b1", "b2"]), "weight_decay": 0.0},
        ... ])
        """
        return ParamSelection(self, names)

    def masked(self, mask: _Mask) -> ParamSelection:
        """The tensors for which ``mask`` is true, as :meth:`select` gives them (the role of optax's ``masked``).

        ``mask`` is a callable ``mask(name, array) -> bool`` or a mapping
        ``{name: bool}`` over every tensor.  An optimizer built on the result
        updates those tensors in place and leaves the others alone; two
        complementary masks make two parameter groups.

        Examples
        --------
        >>> import numpy as np, fastopt
        >>> ps = fastopt.ParamSet({"W1": (4, 4), "b1": 4, "W2": (4, 2), "b2": 2})
        >>> def is_matrix(name, array):
        ...     return array.ndim > 1
        >>> opt = fastopt.AdamW([
        ...     {"params": ps.masked(is_matrix)},                                  # decayed
        ...     {"params": ps.masked(lambda n, a: not is_matrix(n, a)), "weight_decay": 0.0},
        ... ])
        >>> ps.masked(is_matrix)
        ParamSelection(['W1', 'W2'])
        """
        if isinstance(mask, Mapping):
            missing, unknown = sorted(set(self.names) - set(mask)), sorted(set(mask) - set(self.names))
            if missing or unknown:
                raise ValueError(f"a mask mapping must name every tensor: missing {missing}, unknown {unknown}")
            chosen = [name for name in self.names if _mask_value(name, mask[name])]
        elif callable(mask):
            chosen = [name for name in self.names if _mask_value(name, mask(name, self[name]))]
        else:
            raise TypeError(f"mask must be a callable (name, array) -> bool or a mapping of names to bools, got "
                            f"{type(mask).__name__}")
        if not chosen:
            raise ValueError("the mask selects no tensor")
        return ParamSelection(self, chosen)

    def __repr__(self) -> str:
        body = ", ".join(f"{n!r}: {self.shapes[n]}" for n in self.names)
        return f"ParamSet({{{body}}}, dtype={dtype_name(self.dtype)}, size={self.size})"


_DTYPES_BY_NAME = {dtype_name(d): d for d in PARAM_DTYPES}


def _mask_value(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"the mask of {name!r} must be a bool, got {value!r}")
    return bool(value)


def _rebuild(layout: list[tuple[str, tuple[int, ...]]], dtype: str, align: bool, data: Array,
             grad: Array) -> ParamSet:
    """A pickled ParamSet; ``dtype`` is a name of PARAM_DTYPES (or, from older pickles, a ``dtype.str``)."""
    ps = ParamSet(layout, dtype=_DTYPES_BY_NAME.get(dtype, dtype), align=align)
    ps.data[:] = data
    ps.grad[:] = grad
    return ps


class ParamSelection:
    """Some tensors of a ParamSet, as ``params`` of a parameter group.

    Selected tensors that are neighbours in the ParamSet's layout form one
    run (whatever order the names are listed in), and an optimizer updates
    each run with a single kernel call: lay the ParamSet out group by group
    to get one run per group.

    Parameters
    ----------
    paramset : ParamSet
    names : str or iterable of str
        Names of its tensors, each at most once (``ps.select(names)`` builds one).

    Attributes
    ----------
    paramset : ParamSet
    names : tuple of str
        The selected names, in layout order.
    runs : list of (slice, tuple of str)
        Contiguous runs of the flat buffers and the names each covers.
    """

    paramset: ParamSet
    names: tuple[str, ...]
    runs: list[tuple[slice, tuple[str, ...]]]

    def __init__(self, paramset: ParamSet, names: str | Iterable[str]) -> None:
        if isinstance(names, str):
            names = [names]
        names = list(names)
        if not names:
            raise ValueError("ParamSet.select() needs at least one name")
        for name in names:
            paramset[name]  # KeyError naming the unknown tensor
        if len(set(names)) != len(names):
            raise ValueError(f"ParamSet.select() got a name twice: {names}")
        chosen = set(names)
        self.paramset = paramset
        self.names = tuple(n for n in paramset.names if n in chosen)
        self.runs = []
        run_names: list[str] = []
        start: int | None = None
        stop: int | None = None
        for name in paramset.names:  # walk the layout, cutting where an unselected tensor intervenes
            if name not in chosen:
                if run_names:
                    self.runs.append((slice(start, stop), tuple(run_names)))
                run_names = []
                continue
            s = paramset.slices[name]
            if not run_names:
                start = s.start
            run_names.append(name)
            stop = s.stop
        if run_names:
            self.runs.append((slice(start, stop), tuple(run_names)))

    def __repr__(self) -> str:
        return f"ParamSelection({list(self.names)})"


class _ViewMap(Mapping[str, "Array"]):
    """Mapping name -> view into a flat buffer; assignment copies into the view."""

    def __init__(self, views: dict[str, Array], label: str) -> None:
        self._views = views
        self._label = label

    def __getitem__(self, name: str) -> Array:
        try:
            return self._views[name]
        except KeyError:
            raise KeyError(f"{self._label} has no tensor {name!r}; it holds {list(self._views)}") from None

    def __setitem__(self, name: str, value: ArrayLike) -> None:
        np.copyto(self[name], value, casting="same_kind")

    def __iter__(self) -> Iterator[str]:
        return iter(self._views)

    def __len__(self) -> int:
        return len(self._views)

    def __repr__(self) -> str:
        return f"{self._label}({list(self._views)})"


def _aligned_zeros(size: int, dtype: np.dtype[Any]) -> Array:
    """Zeros of ``size`` elements whose first element sits on a cache line."""
    pad = CACHE_LINE // dtype.itemsize
    raw = np.zeros(size + pad, dtype=dtype)
    start = (-raw.__array_interface__["data"][0] % CACHE_LINE) // dtype.itemsize
    return raw[start:start + size]


def _parse_entries(tensors: _Tensors) -> list[tuple[str, tuple[int, ...], Array | None]]:
    """[(name, shape, array_or_None)] from a mapping or (name, value) pairs."""
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    try:
        items = list(items)
    except TypeError:
        raise TypeError(f"ParamSet needs a dict of shapes or arrays, got {type(tensors).__name__}") from None
    entries: list[tuple[str, tuple[int, ...], Array | None]] = []
    seen: set[str] = set()
    for item in items:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise TypeError(f"ParamSet entries must be (name, value) pairs, got {item!r}") from None
        if not isinstance(name, str) or not name:
            raise TypeError(f"ParamSet tensor names must be non-empty strings, got {name!r}")
        if name in seen:
            raise ValueError(f"duplicate tensor name {name!r} in ParamSet")
        seen.add(name)
        shape = _as_shape(value)
        if shape is not None:
            entries.append((name, shape, None))
        else:
            array = _as_numeric_array(value, name)
            entries.append((name, array.shape, array))
    return entries


def _as_shape(value: Any) -> tuple[int, ...] | None:
    """The shape ``value`` spells (an int or a tuple of ints), or None if it is data."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, (np.ndarray, list)):
        return None
    try:
        dims: tuple[int, ...] = (index(value),)
    except TypeError:
        if not isinstance(value, tuple):
            return None
        try:
            dims = tuple(index(d) for d in value)
        except TypeError:
            return None
    if any(d < 0 for d in dims):
        raise ValueError(f"ParamSet shapes must be non-negative, got {value!r}")
    return dims


def _as_numeric_array(value: object, name: str) -> Array:
    value = as_array(value, f"ParamSet tensor {name!r}")  # a DLPack producer's values, however NumPy reads them
    try:
        array = np.asarray(value)
    except Exception as exc:
        raise TypeError(f"ParamSet tensor {name!r}: cannot make an array from {type(value).__name__}: {exc}") from None
    if array.dtype.kind not in "iuf" and array.dtype != BFLOAT16:
        raise TypeError(
            f"ParamSet tensor {name!r} must be real numbers (int, float or bfloat16), got dtype {array.dtype}"
        )
    return array


def _resolve_dtype(entries: list[tuple[str, tuple[int, ...], Array | None]], dtype: DTypeLike | None) -> np.dtype[Any]:
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype not in PARAM_DTYPES:
            raise TypeError(f"ParamSet dtype must be {dtype_names(PARAM_DTYPES)}, got {dtype}")
        return dtype
    found = {name: a.dtype for name, _, a in entries if a is not None}
    if not found:
        return np.dtype(np.float64)
    for name, dt in found.items():
        if dt not in PARAM_DTYPES:
            raise TypeError(f"ParamSet tensor {name!r} has dtype {dt}; pass dtype=numpy.float32, numpy.float64 "
                            "or ml_dtypes.bfloat16 to convert it")
    kinds = sorted(set(found.values()), key=str)
    if len(kinds) > 1:
        detail = ", ".join(f"{n}: {d}" for n, d in found.items())
        raise TypeError(f"ParamSet tensors have mixed dtypes ({detail}); pass dtype= to choose one")
    return kinds[0]
