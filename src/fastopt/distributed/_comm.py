"""The MPI side of fastopt.distributed: mpi4py, communicators, buffers and what a collective moves.

Nothing here communicates but :func:`packed_collective`'s ``operate``; the checks
(:func:`communicator`, :func:`root_rank`, :func:`checked_buffers`, :func:`averaging_options`) run on
one rank, inside the ``build`` of :func:`fastopt.distributed._agreement._agree`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

try:
    from mpi4py import MPI as MPI  # (re-exported: the other modules take MPI from here)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        'fastopt.distributed needs mpi4py: pip install "fastopt[mpi]" (and an MPI library, for instance '
        "pip install mpich, unless the machine has one)"
    ) from exc

from fastopt._validation import (
    bounded_real, check_disjoint, check_float_array, check_writeable, flag, integer,
)
from fastopt.paramset import ParamSet

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from fastopt._typing import NDArray

    #: A signature: ``(field, value)`` pairs that must be equal on every rank.
    Signature = tuple[tuple[str, Any], ...]


def sample_count(count: object) -> float:
    """A ``count`` of samples: a finite real number >= 0, as a float."""
    return bounded_real("count", count, 0.0, expected="a number of samples", must="finite and >= 0")


#: Arrays of a list smaller than this many bytes travel packed together (one message per dtype).
PACK_BYTES: int = 1 << 20

MPI_TYPES: dict[np.dtype[Any], MPI.Datatype] = {np.dtype(np.float32): MPI.FLOAT, np.dtype(np.float64): MPI.DOUBLE}


# --------------------------------------------------------------------------- communicators
def communicator(comm: MPI.Intracomm | None) -> MPI.Intracomm:
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
        raise TypeError(f"comm must be an mpi4py intracommunicator such as MPI.COMM_WORLD, got {comm!r}")
    return comm


def root_rank(comm: MPI.Comm, root: int) -> int:
    rank = integer("root", root, 0)
    if rank >= comm.Get_size():
        raise ValueError(f"root must be a rank of comm (0 to {comm.Get_size() - 1}), got {rank}")
    return rank


# --------------------------------------------------------------------------- buffers
def paramset_signature(ps: ParamSet) -> Signature:
    layout = tuple((name, tuple(int(d) for d in ps.shapes[name]), ps.slices[name].start) for name in ps.names)
    return (("ParamSet size", ps.size), ("ParamSet dtype", ps.dtype.name),
            ("ParamSet tensors (names, shapes, offsets)", layout))


def checked_buffers(obj: Any, what: str, attr: str, layout: bool = True) -> tuple[list[NDArray[Any]], Signature]:
    """1-D views of the arrays ``obj`` names (``ps.<attr>`` for a ParamSet) and their signature.

    With ``layout`` the signature has the ParamSet's tensors, or the
    container, keys and shapes of the arrays; without, only what the
    collective itself needs to match: the length and dtype of each buffer.
    """
    if isinstance(obj, ParamSet):
        flat = getattr(obj, attr)
        check_float_array(flat, f"ParamSet.{attr}")  # a bfloat16 ParamSet: MPI has no type for it
        check_writeable(flat, f"ParamSet.{attr}")
        if layout:
            return [flat], paramset_signature(obj)
        return [flat], (("buffers (elements, dtype)", ((obj.size, obj.dtype.name),)),)
    items: list[tuple[Any, Any]]  # (key or None, array)
    if isinstance(obj, np.ndarray):
        items, kind = [(None, obj)], "ndarray"
    elif isinstance(obj, Mapping):
        items, kind = list(obj.items()), "dict"
    elif isinstance(obj, (list, tuple)):
        items, kind = list(enumerate(obj)), "list"
    else:
        raise TypeError(f"{what} must be a ParamSet, a numpy.ndarray, or a list, tuple or dict of them; "
                        f"got {type(obj).__name__}")
    labels, views = [], []
    for key, array in items:
        label = what if key is None else f"{what}[{key!r}]"
        check_float_array(array, label)
        check_writeable(array, label)
        labels.append(label)
        views.append(array.view(np.ndarray).reshape(-1))
    check_disjoint(views, labels, what)
    if not layout:
        return views, (("buffers (elements, dtype)", tuple((v.size, v.dtype.name) for v in views)),)
    keys = [key for key, _ in items] if kind == "dict" else len(items)
    shapes = tuple((tuple(array.shape), array.dtype.name) for _, array in items)
    return views, (("container", kind), ("keys" if kind == "dict" else "length", keys),
                   ("shapes and dtypes", shapes))


def packed_collective(arrays: Sequence[NDArray[Any]], operate: Callable[[NDArray[Any]], object]) -> None:
    """Apply ``operate`` (in place, on a 1-D buffer) to every array; small arrays go packed per dtype."""
    small: dict[np.dtype[Any], list[NDArray[Any]]] = {}
    for array in arrays:
        if array.size == 0:
            continue
        if len(arrays) == 1 or array.nbytes >= PACK_BYTES:
            operate(array)
        else:
            small.setdefault(array.dtype, []).append(array)
    for group in small.values():
        if len(group) == 1:
            operate(group[0])
            continue
        buffer = np.concatenate(group)
        operate(buffer)
        offset = 0
        for array in group:
            array[...] = buffer[offset:offset + array.size]
            offset += array.size


# --------------------------------------------------------------------------- averaging options
def averaging_options(average: object, count: object) -> tuple[bool, float | None, Signature]:
    """Local checks of ``average`` and ``count``: (average, weight or None) and their signature pairs."""
    average = flag("average", average)
    weight = None if count is None else sample_count(count)
    if weight is not None and not average:
        raise ValueError("count weights an average; it needs average=True")
    return average, weight, _OPTIONS[average, weight is not None]


_OPTIONS = {(a, c): (("average", a), ("count given", c)) for a in (False, True) for c in (False, True)}


def check_total(total: float) -> float:
    """The summed count, refused (on every rank alike: they hold the same sum) when it is 0."""
    if not total > 0:
        raise ValueError("count is 0 on every rank: there is no sample to average over")
    return total
