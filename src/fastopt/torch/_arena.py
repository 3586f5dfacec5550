"""Torch parameters moved into ParamSet arenas: the checks before, and the views after.

Adopting a parameter copies its values into a ParamSet (one per dtype) and
points ``param.data`` at its view of the arena; autograd then accumulates
into the matching view of the arena's gradient buffer once ``param.grad`` is
that view.  A parameter whose memory something else may still use (a view of
a larger tensor, one storage under two parameters) would be cut loose from it
by the move, so it is refused, as is anything the kernels cannot step.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fastopt.paramset import ParamSet

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

#: The parameter dtypes fastopt.torch adopts (bfloat16 parameters are not adopted yet).
DTYPES = (torch.float32, torch.float64)


class Entry:
    """One adopted parameter: the tensor, its arena and name there, and torch views of its two arena slices."""

    __slots__ = ("param", "index", "group", "paramset", "name", "data", "grad", "address", "offset", "nbytes")

    def __init__(self, param: torch.Tensor, index: int, group: int, paramset: ParamSet, name: str) -> None:
        self.param, self.index, self.group, self.paramset, self.name = param, index, group, paramset, name
        self.data = torch.from_numpy(paramset[name])
        self.grad = torch.from_numpy(paramset.grads[name])
        self.address = self.data.data_ptr() if param.numel() else None
        itemsize = paramset.dtype.itemsize
        self.offset, self.nbytes = paramset.slices[name].start * itemsize, param.numel() * itemsize  # in ps.grad


def check_params(params: Sequence[Any], label: str, others: Iterable[Any]) -> None:
    """Refuse any of ``params`` (tensors of one group, labelled ``label[i]``) that cannot be adopted.

    ``others`` are the parameters adopted already: none of ``params`` may
    share memory with them or with each other.
    """
    storages: dict[int, tuple[str, torch.Tensor]] = {}  # storage address -> (label, tensor)
    for other in others:
        if isinstance(other, torch.Tensor) and other.numel():
            storages[other.untyped_storage().data_ptr()] = ("a parameter of another group", other)
    for i, p in enumerate(params):
        name = f"{label}[{i}]"
        if isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str):  # named_parameters() (torch >= 2.6)
            name, p = f"{name} ({p[0]!r})", p[1]
        if not isinstance(p, torch.Tensor):
            continue  # torch.optim.Optimizer.add_param_group says what it takes
        if p.device.type != "cpu":
            raise ValueError(f"{name} is on {p.device}; fastopt.torch steps CPU tensors (build the optimizer on a "
                             "CPU model, or keep the optimizer of your device)")
        if p.layout != torch.strided:
            raise ValueError(f"{name} is a {p.layout} tensor; fastopt.torch steps dense (strided) parameters")
        if p.dtype not in DTYPES:
            raise TypeError(f"{name} has dtype {p.dtype}; fastopt.torch takes float32 or float64 parameters")
        if not p.is_contiguous():
            raise ValueError(f"{name} is not contiguous (strides {p.stride()}); its arena view would be, which "
                             "changes its memory format: make it contiguous first (p.data = p.data.contiguous())")
        if not p.numel():
            continue
        if p.storage_offset() or p.untyped_storage().nbytes() != p.numel() * p.element_size():
            raise ValueError(f"{name} is a view into a larger storage; moving it into the arena would cut it "
                             "loose from the tensor it views (give it storage of its own: p.data = p.data.clone())")
        address = p.untyped_storage().data_ptr()
        if address in storages:
            other, tensor = storages[address]
            if tensor is p:
                raise ValueError(f"{name} is also {other}: each parameter may appear once in an optimizer")
            raise ValueError(f"{name} shares its storage with {other}; moving each into the arena would separate "
                             "them (tie shared weights by using one Parameter)")
        storages[address] = (name, p)
        if p.grad is not None:
            check_grad(p.grad, p, f"{name}.grad")


def foldable(grad: torch.Tensor, param: torch.Tensor) -> bool:
    """True if ``grad`` can be copied into ``param``'s arena view as it is (the common case, checked quickly)."""
    return (grad.layout is torch.strided and grad.is_cpu and grad.dtype is param.dtype
            and grad.shape == param.shape)


def check_grad(grad: torch.Tensor, param: torch.Tensor, name: str) -> None:
    """A gradient fastopt can fold into the arena: a dense CPU tensor of ``param``'s dtype and shape.

    torch keeps a ``.grad`` to its parameter's dtype, shape and device, but
    ``p.grad.data = ...`` can change all three: every gradient is checked.
    """
    if grad.layout != torch.strided:
        raise ValueError(f"{name} is a {grad.layout} gradient (nn.Embedding(sparse=True)?); fastopt.torch "
                         "takes dense gradients")
    if grad.device.type != "cpu":
        raise ValueError(f"{name} is on {grad.device}; fastopt.torch takes CPU gradients")
    if grad.dtype != param.dtype or grad.shape != param.shape:
        raise ValueError(f"{name} is {grad.dtype}{list(grad.shape)}, but its parameter is "
                         f"{param.dtype}{list(param.shape)}")


def adopt(groups: Iterable[tuple[int, Sequence[torch.Tensor]]], first_index: int) -> list[Entry]:
    """Move the parameters of ``groups`` (``[(group index, [tensors])]``, checked) into new arenas.

    Parameters are numbered from ``first_index`` in the order given, which
    is torch's order of a state_dict; each dtype gets one ParamSet laid out
    in that order, so the parameters of a group that share a dtype are one
    contiguous run.  Returns the new entries, in that order.
    """
    by_dtype: dict[torch.dtype, list[tuple[int, int, torch.Tensor]]] = {}
    index = first_index
    for group, params in groups:
        for p in params:
            by_dtype.setdefault(p.dtype, []).append((index, group, p))
            index += 1
    entries: list[Entry] = []
    with torch.no_grad():
        for members in by_dtype.values():
            ps = ParamSet([(str(i), tuple(p.shape)) for i, _, p in members], dtype=_numpy_dtype(members[0][2].dtype))
            for i, group, p in members:
                entry = Entry(p, i, group, ps, str(i))
                entry.data.copy_(p)
                if p.grad is not None:
                    entry.grad.copy_(p.grad)
                entries.append(entry)
        for entry in entries:  # after every copy: a refused copy above leaves the model as it was
            entry.param.data = entry.data
            if entry.param.grad is not None:
                entry.param.grad = entry.grad
    entries.sort(key=lambda e: e.index)
    return entries


def _numpy_dtype(dtype: torch.dtype) -> type[np.floating[Any]]:
    if dtype not in _NUMPY_DTYPES:
        raise TypeError(f"fastopt.torch adopts {DTYPES} parameters, got {dtype}")
    return _NUMPY_DTYPES[dtype]


_NUMPY_DTYPES: dict[torch.dtype, type[np.floating[Any]]] = {torch.float32: np.float32, torch.float64: np.float64}
