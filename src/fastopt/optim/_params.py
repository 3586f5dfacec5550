"""What an optimizer updates, cut into slots: contiguous 1-D arrays, one kernel call each.

``params`` may be

* a ParamSet: one slot over its whole buffer;
* ``ps.select(names)``: one slot per run of selected tensors that are
  neighbours in the ParamSet's layout;
* a list, tuple or dict of arrays: one slot per array;
* a list of parameter groups, dicts whose ``"params"`` entry is any of the
  above and whose other entries override the optimizer's defaults.

Gradients come in the same structure (see :meth:`ParamLayout.gradients`).
Everything is validated before any kernel runs, so a refused step changes
nothing.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from fastopt._memory import byte_span
from fastopt._validation import as_array, check_disjoint, check_grad, check_param, check_writeable
from fastopt.paramset import ParamSelection, ParamSet

if TYPE_CHECKING:
    from fastopt._typing import Array, Grads, ParamGroup, Params


class Slot:
    """One contiguous parameter array and where its gradient comes from."""

    __slots__ = ("name", "param", "owner", "group", "paramset", "run", "names")

    def __init__(self, name: str, param: Array, owner: Any, group: int, paramset: ParamSet | None = None,
                 run: slice | None = None, names: tuple[str, ...] | None = None) -> None:
        self.name = name          # for error messages
        self.param = param        # 1-D view the kernel updates
        self.owner = owner        # the array whose writeable flag guards ``param``
        self.group = group        # index of its parameter group
        self.paramset = paramset  # the ParamSet it lives in, if any
        self.run = run            # its slice of that ParamSet's buffers
        self.names = names        # the ParamSet's tensors it holds (None: all of them)


class Tensor:
    """One tensor of a slot: its elements ``[start, stop)`` of the slot's array, its shape and its name."""

    __slots__ = ("start", "stop", "shape", "name")

    def __init__(self, start: int, stop: int, shape: Sequence[int], name: str) -> None:
        self.start, self.stop, self.shape, self.name = start, stop, tuple(shape), name


def slot_tensors(slot: Slot) -> tuple[Tensor, ...]:
    """The tensors of ``slot``, in its order: a ParamSet slot holds the named tensors of its run (with their
    shapes), an array slot is one tensor of the array's shape."""
    if slot.paramset is None:
        return (Tensor(0, slot.param.size, np.shape(slot.owner), slot.name),)
    ps, run = slot.paramset, cast(slice, slot.run)  # (a ParamSet slot has its run)
    names = ps.names if slot.names is None else slot.names  # a selection's own: not an empty neighbour's
    return tuple(Tensor(ps.slices[name].start - run.start, ps.slices[name].stop - run.start, ps.shapes[name], name)
                 for name in names)


class _Container:
    """One group's ``params``: its slots, and how to find their gradients in ``grads``."""

    def __init__(self, params: Any, group: int, prefix: str) -> None:
        self.params = params  # what copies, pickles and add_param_group rebuild from (a list or dict: a copy)
        self.paramset: ParamSet | None = None
        self.options: dict[str, Any]  # set by ParamLayout._container
        self.slots: list[Slot]
        self.keys: Any  # None for a ParamSet, else the keys (or indices) of the arrays in ``params``
        if isinstance(params, (ParamSet, ParamSelection)):
            selection = params if isinstance(params, ParamSelection) else None
            self.paramset = ps = selection.paramset if selection else cast(ParamSet, params)
            runs: Sequence[tuple[slice, tuple[str, ...] | None]] = (
                selection.runs if selection else [(slice(0, ps.size), None)])
            self.slots = [
                Slot(f"{prefix}{_paramset_label(names)}", ps.data[run], ps.data, group, ps, run, names)
                for run, names in runs
            ]
            self.keys = None
            return
        if isinstance(params, Mapping):
            self.params = params = dict(params)  # the caller may change theirs; the slots stay these
            self.keys = list(params)
            labels = [f"{prefix}params[{k!r}]" for k in self.keys]
            arrays = [params[k] for k in self.keys]
        elif isinstance(params, (list, tuple)):
            self.params = params = type(params)(params) if type(params) in (list, tuple) else list(params)
            self.keys = range(len(params))
            labels = [f"{prefix}params[{i}]" for i in self.keys]
            arrays = list(params)
        else:
            raise TypeError("params must be a ParamSet, ps.select(...), or a list, tuple or dict of numpy "
                            f"arrays, or a list of parameter groups; got {type(params).__name__}")
        arrays = [as_array(a, label) for a, label in zip(arrays, labels)]  # DLPack producers: views, not copies
        for array, label in zip(arrays, labels):
            check_param(array, label)
        # view(np.ndarray): a subclass (np.matrix, say) may not reshape to 1-D; memory stays shared.
        self.slots = [Slot(label, a.view(np.ndarray).reshape(-1), a, group) for a, label in zip(arrays, labels)]
        self.is_mapping = isinstance(params, Mapping)
        self.grad_labels = [f"{prefix}grads[{k!r}]" for k in self.keys]  # made once: steps are hot

    def gradients(self, grads: Any, prefix: str) -> list[tuple[Slot, Array | None, str | None]]:
        """[(slot, 1-D grad or None, label)]; the label is None for a ParamSet's own grad buffer."""
        if self.paramset is not None:
            ps = self.paramset
            if grads is None:  # the ParamSet's own gradient buffer: nothing to check
                return [(s, ps.grad[s.run], None) for s in self.slots]
            grads = check_grad(as_array(grads, f"{prefix}grads"), ps.data, f"{prefix}grads", "ParamSet.data")
            return [(s, grads[s.run], f"{prefix}grads") for s in self.slots]
        if grads is None:
            raise TypeError("step() needs grads when the optimizer was built on arrays rather than a ParamSet")
        if self.is_mapping:
            if not isinstance(grads, Mapping):
                raise TypeError(f"{prefix}grads must be a dict like params, got {type(grads).__name__}")
            missing = [k for k in self.keys if k not in grads]
            keys = set(self.keys)
            extra = [k for k in grads if k not in keys]
            if missing or extra:
                raise ValueError(f"{prefix}grads keys must match params: missing {missing}, unexpected {extra}")
        else:
            if not isinstance(grads, (list, tuple)):
                raise TypeError(f"{prefix}grads must be a list or tuple like params, got {type(grads).__name__}")
            if len(grads) != len(self.slots):
                raise ValueError(f"{prefix}grads has {len(grads)} arrays but params has {len(self.slots)}")
        out: list[tuple[Slot, Array | None, str | None]] = []
        for slot, key, label in zip(self.slots, self.keys, self.grad_labels):
            grad = grads[key]
            if grad is not None:
                grad = as_array(grad, label)
                check_grad(grad, slot.owner, label, slot.name)
                if type(grad) is not np.ndarray or grad.ndim != 1:  # else the same object: its binding holds
                    grad = grad.view(np.ndarray).reshape(-1)
            out.append((slot, grad, label))
        return out


def _paramset_label(names: tuple[str, ...] | None) -> str:
    return "ParamSet.data" if names is None else f"ParamSet{list(names)}"


def is_group_list(params: object) -> bool:
    """True for a list/tuple of parameter-group dicts (torch.optim's per-group options)."""
    if not isinstance(params, (list, tuple)) or not params:
        return False
    dicts = [isinstance(p, Mapping) for p in params]
    if any(dicts) and not all(dicts):
        raise TypeError("params mixes parameter-group dicts with arrays; use one or the other")
    return all(dicts)


class ParamLayout:
    """All slots of an optimizer, in order, with the checks every step needs.

    Parameters
    ----------
    params
        See the module docstring.

    Attributes
    ----------
    group_options : list of dict
        Per group, the options given next to ``"params"`` (empty when
        ``params`` was not a list of groups).
    slots : list of Slot
    """

    def __init__(self, params: Params) -> None:
        self.grouped = is_group_list(params)
        specs: Any = params if self.grouped else [{"params": params}]
        self._index([self._container(spec, g, self.grouped) for g, spec in enumerate(specs)])

    def add_group(self, spec: ParamGroup) -> list[Slot]:
        """Append the parameter group ``spec`` (a dict with ``"params"``); return its new slots.

        Checked before anything changes: the new parameters must be valid and
        share no memory with the existing ones.  The layout is grouped from
        then on, so ``step(grads)`` takes one entry per group.
        """
        g = len(self.containers)
        container = self._container(spec, g, True)
        if not container.slots:
            raise ValueError(f"parameter group {g} has no parameters")
        # An ungrouped layout's one container is remade to label its arrays as group 0's.
        first = self.containers if self.grouped else [self._container({"params": self.params}, 0, True)]
        self._index(first + [container])
        self.grouped = True
        return container.slots

    @property
    def params(self) -> Params:
        """``params`` as the optimizer holds them (lists and dicts copied): copies and pickles rebuild from it."""
        if not self.grouped:
            return cast("Params", self.containers[0].params)
        return [{"params": c.params, **c.options} for c in self.containers]

    @staticmethod
    def _container(spec: Any, g: int, grouped: bool) -> _Container:
        if not isinstance(spec, Mapping):
            raise TypeError(f"parameter group {g} must be a dict with a 'params' entry, got {type(spec).__name__}")
        if "params" not in spec:
            raise ValueError(f"parameter group {g} has no 'params' entry")
        container = _Container(spec["params"], g, f"param_groups[{g}]." if grouped else "")
        container.options = {k: v for k, v in spec.items() if k != "params"}
        return container

    def _index(self, containers: list[_Container]) -> None:
        """Take ``containers`` as the layout, once their slots are known not to overlap."""
        slots = [s for c in containers for s in c.slots]
        if not slots:
            raise ValueError("optimizer got an empty parameter list")
        spans = check_disjoint([s.param for s in slots], [s.name for s in slots], "parameters")
        self.containers, self.slots, self._spans = containers, slots, spans
        self.group_options = [c.options for c in containers]
        self._starts = [span[0] for span in spans]
        self.paramsets = list({id(c.paramset): c.paramset for c in containers if c.paramset}.values())
        self._owners = list({id(s.owner): (s.owner, s.name) for s in slots}.values())
        # With every slot in a ParamSet, grads=None means the ParamSets' own, already-valid gradient views.
        self._own_grads: list[Array | None] | None = (
            [cast(ParamSet, s.paramset).grad[s.run] for s in slots]
            if all(c.paramset is not None for c in containers) else None)

    def gradients(self, grads: Grads) -> list[Array | None]:
        """Validate ``grads`` for one step: a 1-D gradient (or None: skip) per slot.

        ``grads`` has the structure of ``params``; for a list of groups, it is
        a list with one entry per group (or None when every group lives in a
        ParamSet, whose gradient buffers are then used).
        """
        for owner, name in self._owners:
            check_writeable(owner, name)
        if grads is None and self._own_grads is not None:
            return self._own_grads
        per_group: Sequence[Any]
        if not self.grouped:
            per_group = [grads]
        elif grads is None:
            per_group = [None] * len(self.containers)
        elif isinstance(grads, (list, tuple)) and len(grads) == len(self.containers):
            per_group = grads
        else:
            raise TypeError(f"grads must be a list with one entry per parameter group ({len(self.containers)})")
        result: list[Array | None] = []
        for index, (c, g) in enumerate(zip(self.containers, per_group)):
            prefix = f"param_groups[{index}]." if self.grouped else ""
            for slot, grad, label in c.gradients(g, prefix):
                if grad is not None and label is not None:
                    self._check_not_a_param(grad, label)
                result.append(grad)
        return result

    def _check_not_a_param(self, grad: Array, label: str) -> None:
        """A gradient must not overlap any parameter (the kernel would read what it writes)."""
        if not grad.size:
            return
        start, end = byte_span(grad)
        k = bisect_right(self._starts, end - 1) - 1  # the last parameter starting before the grad ends
        if k >= 0 and self._spans[k][1] > start:
            raise ValueError(f"{label} shares memory with {self.slots[self._spans[k][2]].name}; "
                             "a gradient must be a separate array")

