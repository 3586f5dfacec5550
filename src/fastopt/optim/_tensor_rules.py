"""The optimizers whose rules need numbers of whole tensors: the base they share.

Their hyperparameters and state arrays come from ``fastopt._rules.TENSOR_RULES``
(as the element-wise rules' come from ``RULES``); their passes are the
kernels of ``fastopt._tensorwise``.  Which tensors a slot holds is
read from its parameters: a ParamSet slot holds the named tensors of its
run (with their shapes), an array slot is one tensor of the array's shape.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fastopt._kernels import tensorwise
from fastopt.optim._params import slot_tensors
from fastopt.optim._stepping import MAX_STEP, _next_step
from fastopt.optim.optimizer import Optimizer

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import TypeVar

    from numpy.typing import NDArray

    from fastopt._typing import Array, Params
    from fastopt.optim._hyper import ParamGroup
    from fastopt.optim._params import Slot, Tensor
    from fastopt.optim.optimizer import StateLayout

    _T = TypeVar("_T")


class TensorwiseOptimizer(Optimizer):
    """Base class of the optimizers of ``fastopt._rules.TENSOR_RULES``.

    A subclass sets ``rule`` and implements :meth:`_run` (one slot's step).
    Every state array is used by every setting; the state is kept in the
    parameters' dtype (float32 or float64): these rules take no
    ``state_dtype`` other than None and no bfloat16 parameters yet.  A step
    checks every slot's state before any kernel runs, so a refused step
    changes nothing.
    """

    state_scalars: tuple[str, ...] = ("step",)

    def __init__(self, params: Params, defaults: Mapping[str, Any], **options: Any) -> None:
        # (what, slot index) -> what a slot's tensors make of it, worked out once (see _memo)
        self._memos: dict[tuple[str, int], Any] = {}
        super().__init__(params, defaults, **options)

    def __setstate__(self, saved: Mapping[str, Any]) -> None:
        self._memos = {}
        super().__setstate__(saved)

    def _memo(self, what: str, index: int, make: Callable[[], _T]) -> _T:
        """``make()``, computed once per slot: the slots never change, so neither does what follows from them."""
        key = (what, index)
        value: _T | None = self._memos.get(key)
        if value is None:
            value = self._memos[key] = make()
        return value

    def _check_storage(self, slots: Sequence[Slot]) -> None:
        if self.state_dtype is not None and self.state_dtype not in ("float32", "float64"):
            raise ValueError(f"{type(self).__name__} keeps its state in the parameters' dtype: state_dtype must be "
                             f"None, got {self.state_dtype!r}")
        for slot in slots:
            if slot.param.dtype not in (np.float32, np.float64):
                raise ValueError(f"{type(self).__name__} takes float32 or float64 parameters; {slot.name} is "
                                 f"{slot.param.dtype}")
            if self.state_dtype is not None and self.state_dtype != slot.param.dtype.name:
                raise ValueError(f"{type(self).__name__} keeps its state in the parameters' dtype: "
                                 f"state_dtype={self.state_dtype!r} does not go with {slot.name}, "
                                 f"{slot.param.dtype}")
        super()._check_storage(slots)

    def _needed(self, group: ParamGroup) -> Sequence[bool]:
        return (True,) * len(self.state_arrays)

    def tensors(self, index: int) -> tuple[Tensor, ...]:
        """The tensors of slot ``index``: ``Tensor`` objects (``start``, ``stop`` in the slot, ``shape``, ``name``)."""
        return self._memo("tensors", index, lambda: slot_tensors(self._layout.slots[index]))

    def _pieces(self, index: int) -> NDArray[np.intp]:
        """Slot ``index``'s tensors cut into pieces (``fastopt._tensorwise.pieces``), made once."""
        return self._memo("pieces", index, lambda: tensorwise.pieces(
            [(t.start, t.stop) for t in self.tensors(index)], self._layout.slots[index].param.itemsize))

    def _update(self, grads: list[Array | None], num_threads: int) -> None:
        work = []
        for index, grad in enumerate(grads):
            if grad is None:
                continue
            state = self._states[index]
            step = state.get("step", 0)
            if type(step) is not int or not 0 <= step < MAX_STEP:
                step = _next_step(self, index, step)
            arrays, new = self._arrays(index, state)
            work.append((index, grad, step + 1, arrays, new))
        counted = self._run_all(work, num_threads)
        for index, _, step, _, new in work:
            self._states[index].update(new)
            if counted:
                self._states[index]["step"] = step
            else:
                self._states[index].setdefault("step", step - 1)

    def _run_all(self, work: list[tuple[int, Array, int, list[Array], dict[str, Array]]],
                 num_threads: int) -> bool:
        """Run the step on ``work``: ``(index, grad, step, state arrays, new arrays)`` per slot with a gradient;
        False where the rule took no step after all (its state arrays are kept, its step counts are not)."""
        for index, grad, step, arrays, _ in work:
            hyper = self._groups[self._slot_group[index]].kernel_hyper()
            self._run(index, self._layout.slots[index].param, grad, arrays, hyper, step, num_threads)
        return True

    def _arrays(self, index: int, state: dict[str, Any]) -> tuple[list[Array], dict[str, Array]]:
        """Slot ``index``'s state arrays in the rule's order, checked (those it lacks made, not yet stored)."""
        layout = self.state_layout(index)
        slot = self._layout.slots[index]
        group = self._groups[self._slot_group[index]]
        arrays: list[Array] = []
        new: dict[str, Array] = {}
        for name in self.state_arrays:
            array = state.get(name)
            shape, dtype = layout[name]
            if array is None:
                value = self._initial_value(name, group, slot.param)
                array = new[name] = np.array(value, dtype) if np.ndim(value) else np.full(shape, value, dtype)
            elif (not isinstance(array, np.ndarray) or array.shape != shape or array.dtype != dtype
                  or not array.flags.c_contiguous or not array.flags.writeable):
                raise ValueError(f"state {name!r} of {slot.name} must be a writeable contiguous {dtype}{list(shape)} "
                                 f"array, got {getattr(array, 'dtype', type(array).__name__)}"
                                 f"{list(getattr(array, 'shape', ()))}")
            arrays.append(array)
        return arrays, new

    def _run(self, index: int, param: Array, grad: Array, arrays: list[Array], hyper: dict[str, Any], step: int,
             num_threads: int) -> None:
        """Slot ``index``'s step ``step`` (counted from 1) with the group's kernel hyperparameters ``hyper``."""
        raise NotImplementedError

    def state_layout(self, index: int) -> StateLayout:
        n = self._layout.slots[index].param.size
        dtype = self._layout.slots[index].param.dtype
        return {name: ((n,), dtype) for name in self.state_arrays}
