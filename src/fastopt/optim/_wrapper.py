"""The base of the wrappers that take a fastopt optimizer: what they share with it, and their own state."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fastopt import _storage
from fastopt._validation import integer
from fastopt.optim._stepping import MAX_STEP
from fastopt.optim.optimizer import Optimizer

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fastopt._typing import ParamGroup as GroupSpec
    from fastopt._typing import Scalar, StateDict
    from fastopt.optim._hyper import ParamGroup
    from fastopt.optim._params import ParamLayout
    from fastopt.optim.optimizer import StateLayout


class OptimizerWrapper:
    """Base class of the wrappers that take a fastopt optimizer and add to its step.

    The wrapped optimizer (``optimizer``) keeps its parameter groups (which
    schedules set: ``param_groups`` and ``lr`` are its own), its per-slot
    state and its locks.  A wrapper keeps per-slot state of its own under
    the keys ``wrapper_arrays`` and ``wrapper_scalars`` (prefixed with its
    name, so they never meet the rule's), which :meth:`state_dict` merges
    into the wrapped optimizer's per-slot state and :meth:`load_state_dict`
    takes out again: so ``fastopt.save``/``fastopt.load`` checkpoint a
    wrapper as they do an optimizer, and resuming gives the same bits.

    Parameters
    ----------
    optimizer : fastopt.optim.Optimizer
        The optimizer to wrap; not a schedule-free one, whose parameters
        move between two points (``train()``/``eval()``).
    """

    wrapper_arrays: tuple[str, ...] = ()   # per-slot arrays, as large as the slot: (key, ...)
    wrapper_scalars: tuple[str, ...] = ()  # per-slot counts: (key, ...)

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__} wraps a fastopt.optim.Optimizer, got {type(optimizer).__name__}")
        if callable(getattr(optimizer, "eval", None)):
            raise ValueError(f"{type(self).__name__} does not wrap {type(optimizer).__name__}: its parameters move "
                             "between two points (train()/eval()), which the wrapper would not follow")
        self.optimizer: Optimizer = optimizer
        self._extra: list[dict[str, Any]] = [{} for _ in optimizer.state]  # per slot: this wrapper's state

    @property
    def checkpoint_name(self) -> str:
        """What checkpoints record as the optimizer's class: ``"Lookahead(AdamW)"``, say."""
        return f"{type(self).__name__}({type(self.optimizer).__name__})"

    def add_param_group(self, param_group: GroupSpec) -> None:
        """The wrapped optimizer's :meth:`~fastopt.optim.Optimizer.add_param_group`."""
        with self.optimizer._exclusive():
            self.optimizer.add_param_group(param_group)
            self._follow_groups()

    # What schedules, fit and checkpoints see: the wrapped optimizer's.
    @property
    def param_groups(self) -> Sequence[ParamGroup]:
        """The wrapped optimizer's parameter groups."""
        return self.optimizer.param_groups

    @property
    def defaults(self) -> ParamGroup:
        return self.optimizer.defaults

    @property
    def state(self) -> Sequence[dict[str, Any]]:
        """The wrapped optimizer's per-slot state (this wrapper's own is in :meth:`state_dict`)."""
        return self.optimizer.state

    @property
    def lr(self) -> float:
        """The wrapped optimizer's learning rate (see :attr:`fastopt.optim.Optimizer.lr`)."""
        return self.optimizer.lr

    @lr.setter
    def lr(self, value: Scalar) -> None:
        self.optimizer.lr = value

    @property
    def _layout(self) -> ParamLayout:
        return self.optimizer._layout

    # The wrapped optimizer's options and counts, read-only here (set them on ``optimizer``).
    @property
    def skipped_steps(self) -> int:
        """The wrapped optimizer's."""
        return self.optimizer.skipped_steps

    @property
    def skip_nonfinite(self) -> bool:
        """The wrapped optimizer's."""
        return self.optimizer.skip_nonfinite

    @property
    def state_dtype(self) -> str | None:
        """The wrapped optimizer's."""
        return self.optimizer.state_dtype

    @property
    def master_weights(self) -> bool:
        """The wrapped optimizer's."""
        return self.optimizer.master_weights

    @property
    def stochastic_rounding(self) -> bool:
        """The wrapped optimizer's."""
        return self.optimizer.stochastic_rounding

    @property
    def seed(self) -> int:
        """The wrapped optimizer's."""
        return self.optimizer.seed

    @property
    def state_scalars(self) -> tuple[str, ...]:
        return tuple(self.optimizer.state_scalars) + self.wrapper_scalars

    def state_layout(self, index: int) -> StateLayout:
        """The wrapped optimizer's ``state_layout(index)`` and this wrapper's arrays."""
        layout = dict(self.optimizer.state_layout(index))
        for key in self.wrapper_arrays:
            layout[key] = ((self._layout.slots[index].param.size,), self._array_dtype(index))
        return layout

    def _array_dtype(self, index: int) -> np.dtype[Any]:
        """The dtype of this wrapper's arrays of slot ``index``: float32 for bfloat16 parameters, else theirs."""
        dtype = self._layout.slots[index].param.dtype
        return _storage.FLOAT32 if dtype == _storage.BFLOAT16 else dtype

    def _follow_groups(self) -> None:
        """Make room for the slots a later ``add_param_group`` on the wrapped optimizer added (under its locks)."""
        missing = len(self.optimizer.state) - len(self._extra)
        if missing > 0:
            self._extra += [{} for _ in range(missing)]

    def zero_grad(self) -> None:
        """The wrapped optimizer's :meth:`~fastopt.optim.Optimizer.zero_grad`."""
        self.optimizer.zero_grad()

    def state_dict(self) -> StateDict:
        """The wrapped optimizer's state_dict, with this wrapper's per-slot state in its slots' entries."""
        with self.optimizer._exclusive():
            saved = self.optimizer.state_dict()
            for index, extra in enumerate(self._extra):
                if extra:
                    saved["state"].setdefault(index, {}).update(
                        {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in extra.items()})
            return saved

    def load_state_dict(self, state_dict: StateDict) -> None:
        """Restore a snapshot of :meth:`state_dict`; everything is checked before anything changes."""
        with self.optimizer._exclusive():
            if not isinstance(state_dict, dict) or "state" not in state_dict:
                raise TypeError("state_dict must be a dict with 'state' and 'param_groups', as state_dict() returns")
            inner_state: dict[Any, dict[str, Any]] = {}
            extra: list[dict[str, Any]] = [{} for _ in self.optimizer.state]
            mine = set(self.wrapper_arrays) | set(self.wrapper_scalars)
            for key, saved in dict(state_dict["state"]).items():
                index = self.optimizer._slot_index(key)
                if not isinstance(saved, dict):
                    raise TypeError(f"state for slot {index} in the state_dict must be a dict")
                extra[index] = self._checked_extra(index, {k: v for k, v in saved.items() if k in mine})
                rest = {k: v for k, v in saved.items() if k not in mine}
                if rest:
                    inner_state[key] = rest
            self.optimizer.load_state_dict({**state_dict, "state": inner_state})
            self._extra = extra

    def _checked_extra(self, index: int, saved: dict[str, Any]) -> dict[str, Any]:
        """Slot ``index``'s wrapper state from a state_dict, checked: all of it or none, each of its shape."""
        if saved and set(saved) != set(self.wrapper_arrays) | set(self.wrapper_scalars):
            raise ValueError(f"{type(self).__name__} state of slot {index} must hold all of "
                             f"{self.wrapper_arrays + self.wrapper_scalars} or none, got {sorted(saved)}")
        checked: dict[str, Any] = {}
        layout = self.state_layout(index)
        for key, value in saved.items():
            if key in self.wrapper_arrays:
                array = np.asarray(value)
                shape, dtype = layout[key]
                if array.shape != shape or array.dtype != dtype:
                    raise ValueError(f"state {key!r} of slot {index} is {array.dtype}{list(array.shape)} in the "
                                     f"state_dict, expected {dtype}{list(shape)}")
                checked[key] = array.copy()
            else:
                checked[key] = integer(f"state {key!r} of slot {index}", value, 0)
                if checked[key] >= MAX_STEP:
                    raise ValueError(f"state {key!r} of slot {index} must be below 2**63 - 1, got {value!r}")
        return checked

    def __repr__(self) -> str:
        inner = "\n".join("    " + line for line in repr(self.optimizer).splitlines())
        return f"{type(self).__name__}({self._settings()},\n{inner}\n)"

    def _settings(self) -> str:
        return ""
