"""Learning-rate schedules: torch.optim.lr_scheduler's names, arguments and values.

A schedule wraps an optimizer and, at each :meth:`~LRScheduler.step`,
writes the learning rate of the next step into every parameter group
(``group["lr"]``); the optimizer's next ``step()`` uses it.  Build the
schedule after the optimizer and call ``sched.step()`` once per step (or
epoch), after ``opt.step()``::

    opt = fastopt.SGD(params, lr=0.1, momentum=0.9)
    sched = CosineAnnealingLR(opt, T_max=1000)
    for _ in range(1000):
        opt.step(grads)
        sched.step()

Stepping reproduces torch's values: the schedules torch computes
recursively from the current learning rate (StepLR, ExponentialLR,
CosineAnnealingLR, ...) are computed here by the same recursion, so
schedules that share an optimizer compose as they do in torch (see
:class:`ChainedScheduler`).

Every schedule except :class:`ReduceLROnPlateau` and
:class:`ChainedScheduler` is also a plain function of the step count:
``sched(t)`` is the learning rate of the first parameter group after ``t``
steps, and ``sched.lr_at(t)`` the list for all groups, both computed in
closed form from the initial learning rates without touching the
optimizer.  Where ``step()`` uses a recursion the two agree to rounding
(well below 1e-12 relative over thousands of steps).  Instead of an
optimizer, a schedule takes a float learning rate (or a list of them, one
per group), to be used as a function alone:

>>> sched = CosineAnnealingLR(0.1, T_max=100)
>>> sched(0), sched(50), sched(100)
(0.1, 0.05, 0.0)

Each schedule records the learning rates it starts from as ``"initial_lr"``
in the parameter groups, as torch does; they are saved with the
optimizer's state, and a schedule built with ``last_epoch=k`` on an
optimizer restored from a checkpoint continues from step ``k + 1``.  A
schedule's own position (and everything else it holds) is saved by
:meth:`LRScheduler.state_dict`.

Differences from torch, all deliberate: ``step()`` takes no ``epoch``
(deprecated in torch; use ``lr_at`` for fractional epochs); resuming with
``last_epoch=k`` sets the closed-form rate of step ``k + 1`` (torch keeps
the group's current rate for most schedules); arguments torch accepts but
that break or mean nothing are refused (unsorted or repeated milestones,
``total_iters=0``, ``ConstantLR(factor=0)``, non-integer step counts,
negative rates); no warnings about the order of ``opt.step()`` and
``sched.step()``; :class:`SequentialLR` takes no composed schedules (torch
cannot restart them either); :class:`ChainedScheduler` counts its steps in
``last_epoch``; CyclicLR and OneCycleLR keep their bounds to themselves
instead of adding ``max_lr``/``min_lr``/``max_momentum``/``base_momentum``
to the groups.
"""
from __future__ import annotations

import copy
import functools
import math
import types
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, Literal, Protocol, SupportsFloat, TypeVar, Union

from fastopt._validation import (
    check_callable, choice, bounded_real, flag, fractional_step, integer,
)

if TYPE_CHECKING:
    from fastopt._typing import StateDict

_T = TypeVar("_T")


class HasParamGroups(Protocol):
    """What a schedule sets the learning rates of: an optimizer, i.e. anything with ``param_groups``.

    Each group is a dict holding at least ``"lr"`` (torch.optim's optimizers
    qualify too).
    """

    @property
    def param_groups(self) -> Sequence[MutableMapping[str, Any]]: ...


if TYPE_CHECKING:
    # What a schedule is built on: an optimizer, a float learning rate, or one per group.
    _Target = Union[HasParamGroups, float, Sequence[float]]
    # A value given per parameter group, or one for all.
    _PerGroup = Union[float, Sequence[float]]

__all__ = [
    "LRScheduler", "LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR", "ConstantLR", "LinearLR",
    "ExponentialLR", "PolynomialLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "CyclicLR",
    "OneCycleLR", "SequentialLR", "ChainedScheduler", "ReduceLROnPlateau",
]


# ------------------------------------------------------------------ argument checks
def _milestones(name: str, value: Any, low: int) -> list[int]:
    """A strictly increasing list of integers >= low."""
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a list of integers, got {type(value).__name__}")
    steps = [integer(f"{name}[{i}]", m, low) for i, m in enumerate(value)]
    if any(a >= b for a, b in zip(steps, steps[1:])):
        raise ValueError(f"{name} must be strictly increasing, got {steps}")
    return steps


def _per_group(name: str, value: Any, count: int, check: Callable[..., _T], *args: Any) -> list[_T]:
    """One value per parameter group: a list or tuple with one per group, or one value for all.

    Each is checked as ``check(name, value, *args)``.
    """
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(f"{name} has {len(value)} values, but there are {count} parameter groups")
        return [check(f"{name}[{i}]", v, *args) for i, v in enumerate(value)]
    return [check(name, value, *args)] * count


# ------------------------------------------------------------------ targets and state
class _Rates:
    """Parameter groups holding only a learning rate: what a schedule built on floats writes to."""

    def __init__(self, lrs: Iterable[float]) -> None:
        self.param_groups: list[dict[str, Any]] = [{"lr": lr} for lr in lrs]

    def __repr__(self) -> str:
        return f"<learning rates {[group['lr'] for group in self.param_groups]}>"


def _target(optimizer: Any) -> HasParamGroups:
    """What a schedule writes to: the optimizer, or groups made for a float learning rate (or a list)."""
    if isinstance(optimizer, Real) and not isinstance(optimizer, bool):
        return _Rates([bounded_real("lr", optimizer, 0.0)])
    if isinstance(optimizer, (list, tuple)) and optimizer and all(
            isinstance(lr, Real) and not isinstance(lr, bool) for lr in optimizer):
        return _Rates([bounded_real(f"lr[{i}]", lr, 0.0) for i, lr in enumerate(optimizer)])
    groups = getattr(optimizer, "param_groups", None)
    if not (isinstance(groups, list) and groups and all(isinstance(g, Mapping) and "lr" in g for g in groups)):
        raise TypeError("a schedule needs an optimizer (an object whose param_groups is a non-empty list of "
                        f"dicts with an 'lr') or a float learning rate, got {type(optimizer).__name__}")
    return optimizer  # type: ignore[no-any-return]


def _function_state(fn: Any) -> Any:
    """What state_dict keeps of a user function: a callable object's attributes; nothing of plain code."""
    if isinstance(fn, list):
        return [_function_state(f) for f in fn]
    plain = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, functools.partial, type(None))
    if isinstance(fn, plain) or not hasattr(fn, "__dict__"):
        return None
    return copy.deepcopy(vars(fn))


def _restore_function(fn: Any, saved: Any) -> None:
    if isinstance(fn, list):
        for f, s in zip(fn, saved):
            _restore_function(f, s)
    elif saved is not None:
        vars(fn).update(copy.deepcopy(saved))


# ------------------------------------------------------------------ base class
class LRScheduler:
    """Base class of the schedules: the bookkeeping, with the math left to subclasses.

    The base class resolves the optimizer (or float learning rates), records
    ``"initial_lr"`` in the groups, counts steps in ``last_epoch``, writes
    learning rates into the groups, and saves and restores its state.  A
    subclass gives the closed form ``_lr(i, t)`` (group ``i`` after ``t``
    steps, from ``base_lrs[i]``) and, where torch recurses from the current
    learning rate, the recursion ``_next_lr(i, lr, t)`` (the learning rate at
    step ``t`` from ``lr``, the one at ``t - 1``; at ``t = 0``, what the
    schedule does on entry to the optimizer's current rate).

    Parameters
    ----------
    optimizer : Optimizer, float, or list of float
        The optimizer whose ``param_groups`` the schedule sets, or a learning
        rate (one per group) for a schedule used as a plain function of the
        step; it is then wrapped in an object with ``param_groups``,
        available as ``sched.optimizer``, on which further schedules can be
        built to compose them.
    last_epoch : int, default -1
        The last step taken: -1 to start the schedule.  To resume at step
        ``k + 1``, pass ``k`` and an optimizer whose groups hold
        ``"initial_lr"`` (restored from a checkpoint); the learning rate is
        then set from the closed form (torch keeps the group's current one).

    Attributes
    ----------
    optimizer
        What the schedule writes to.
    base_lrs : list of float
        The learning rates the schedule starts from, per group.
    last_epoch : int
        Steps taken since the start: 0 after construction.
    """

    _functions: tuple[str, ...] = ()  # attributes holding user callables
    _no_closed_form: str = ""         # why sched(t) is not available, where it is not

    optimizer: HasParamGroups
    base_lrs: list[float]
    last_epoch: int
    _last_lr: list[float]
    _group_count: int
    _schedulers: list[LRScheduler]  # composed schedules only

    def __init__(self, optimizer: _Target, last_epoch: int = -1, *, initial_lrs: Sequence[float] | None = None) -> None:
        self.optimizer = _target(optimizer)
        last_epoch = integer("last_epoch", last_epoch, -1)
        groups = self.optimizer.param_groups
        if initial_lrs is not None:  # the schedule says where it starts (CyclicLR, OneCycleLR)
            for group, lr in zip(groups, initial_lrs):
                group["initial_lr"] = lr
        elif last_epoch == -1:
            for group in groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            missing = [i for i, group in enumerate(groups) if "initial_lr" not in group]
            if missing:
                raise ValueError(f"param_groups {missing} hold no 'initial_lr', needed to resume a schedule "
                                 f"with last_epoch={last_epoch}: load the optimizer's state_dict first, "
                                 "or pass last_epoch=-1")
        self.base_lrs = [float(group["initial_lr"]) for group in groups]
        self._group_count = len(groups)
        self.last_epoch = last_epoch
        self._initial_step()

    # ------------------------------------------------------------- stepping
    def step(self) -> None:
        """Advance one step: set every group's ``lr`` to the schedule's value at ``last_epoch + 1``."""
        t = self.last_epoch + 1
        lrs = [self._next_lr(i, group["lr"], t) for i, group in enumerate(self._groups())]
        self.last_epoch = t
        self._write(t, lrs)

    def get_last_lr(self) -> list[float]:
        """The learning rates of the groups as the schedule last set them (a new list)."""
        return list(self._last_lr)

    def _initial_step(self) -> None:
        """Enter the schedule: step 0 from the current rates, as torch, or resume in closed form."""
        if self.last_epoch == -1:
            self.step()
        else:
            self._restart(self.last_epoch + 1)

    def _restart(self, t: int) -> None:
        """Jump to step ``t``, setting the closed-form learning rates."""
        self.last_epoch = t
        self._write(t, self.lr_at(t))

    def _write(self, t: float, lrs: Sequence[float]) -> None:
        for group, lr in zip(self._groups(), lrs):
            if group["lr"] != lr:  # an unchanged lr leaves the optimizer's bound kernels as they are
                group["lr"] = float(lr)
        self._last_lr = self._current()

    def _current(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def _groups(self) -> Sequence[MutableMapping[str, Any]]:
        """The optimizer's groups, checked to be as many as when this schedule was built."""
        groups = self.optimizer.param_groups
        if len(groups) != self._group_count:
            raise ValueError(f"the optimizer has {len(groups)} parameter groups, but this {type(self).__name__} "
                             f"was built for {self._group_count}: build the schedule after add_param_group()")
        return groups

    # ------------------------------------------------------------- closed form
    def __call__(self, t: float) -> float:
        """The learning rate of the first group after ``t`` steps, in closed form (see :meth:`lr_at`)."""
        return self.lr_at(t)[0]

    def lr_at(self, t: float) -> list[float]:
        """The learning rate of every group after ``t`` steps, in closed form.

        A pure function of ``t`` and the initial learning rates: neither the
        optimizer nor the schedule changes.  ``lr_at(last_epoch)`` equals
        :meth:`get_last_lr` up to rounding when nobody else changed the
        learning rates.

        Parameters
        ----------
        t : int or float
            Steps since the start, >= 0; fractional steps interpolate where
            the formula allows.

        Returns
        -------
        list of float

        Raises
        ------
        NotImplementedError
            For schedules without a closed form.
        """
        if self._no_closed_form:
            raise NotImplementedError(f"{type(self).__name__} has no closed form: {self._no_closed_form}")
        return [float(lr) for lr in self._lrs(fractional_step(t))]

    def _lrs(self, t: float) -> list[float]:
        return [self._lr(i, t) for i in range(len(self._groups()))]

    def _lr(self, i: int, t: float) -> float:
        raise NotImplementedError(f"{type(self).__name__} does not define its closed form _lr(i, t)")

    def _next_lr(self, i: int, lr: float, t: int) -> float:
        return self._lr(i, t)

    # ------------------------------------------------------------- state
    def state_dict(self) -> StateDict:
        """The schedule's state: its position, settings and learning rates, as a dict of plain data.

        Everything but the optimizer (whose learning rates the optimizer's
        own state_dict holds) is included; of a user function (``lr_lambda``,
        ``scale_fn``) only a callable object's attributes are kept, as in
        torch.  A schedule built on floats includes its ``param_groups``.
        """
        state = {}
        for key, value in vars(self).items():
            if key == "optimizer":
                if isinstance(value, _Rates):
                    state["param_groups"] = copy.deepcopy(value.param_groups)
            elif key in self._functions:
                state[key] = _function_state(value)
            elif key == "_schedulers":
                state[key] = [s.state_dict() for s in value]
            else:
                state[key] = copy.deepcopy(value)
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a state taken by :meth:`state_dict` of a schedule of the same kind.

        The dict is checked (recursively, for composed schedules) before
        anything changes.
        """
        self._check_state(state_dict)
        for key, value in state_dict.items():
            if key == "param_groups":
                self.optimizer.param_groups = copy.deepcopy(value)  # type: ignore[misc]  # a _Rates' list
            elif key in self._functions:
                _restore_function(getattr(self, key), value)
            elif key == "_schedulers":
                for s, saved in zip(self._schedulers, value):
                    s.load_state_dict(saved)
            else:
                setattr(self, key, copy.deepcopy(value))

    def _check_state(self, state_dict: object) -> None:
        name = type(self).__name__
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a dict, as {name}.state_dict() returns; "
                            f"got {type(state_dict).__name__}")
        expected = self.state_dict()
        missing, unknown = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
        if missing or unknown:
            raise ValueError(f"state_dict is not the state of this {name}: missing {missing}, unexpected {unknown}")
        if "_schedulers" in expected:
            saved = state_dict["_schedulers"]
            if not isinstance(saved, (list, tuple)) or len(saved) != len(self._schedulers):
                raise ValueError(f"state_dict of this {name} must hold the states of {len(self._schedulers)} schedules")
            for s, state in zip(self._schedulers, saved):
                s._check_state(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self.get_last_lr()})"


# ------------------------------------------------------------------ the schedules
class _Lambdas(LRScheduler):
    """Schedules given by user functions of the step, one per group."""

    _functions = ("lr_lambdas",)

    lr_lambdas: list[Callable[[int], float]]

    def __init__(self, optimizer: _Target, lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]],
                 last_epoch: int = -1) -> None:
        optimizer = _target(optimizer)
        self.lr_lambdas = _per_group("lr_lambda", lr_lambda, len(optimizer.param_groups), check_callable)
        super().__init__(optimizer, last_epoch)


class LambdaLR(_Lambdas):
    """The initial learning rate times a function of the step: ``lr = initial_lr * lr_lambda(t)``.

    Parameters
    ----------
    optimizer : Optimizer, float, or list of float
        See :class:`LRScheduler`.
    lr_lambda : callable or list of callable
        The factor as a function of the step count, or one function per group.
    last_epoch : int, default -1
        See :class:`LRScheduler`.

    Notes
    -----
    ``step()`` and ``sched(t)`` both evaluate ``lr_lambda`` (``sched(t)``
    calls it too, so a function with side effects sees the extra calls).
    ``state_dict`` keeps the attributes of callable objects, not functions.

    Examples
    --------
    >>> sched = LambdaLR(0.1, lambda t: 0.5 ** t)
    >>> sched(3)
    0.0125
    """

    def _lr(self, i: int, t: float) -> float:
        return self.base_lrs[i] * self.lr_lambdas[i](t)  # type: ignore[arg-type]  # lr_at(t): a fractional t too


class MultiplicativeLR(_Lambdas):
    """Each step multiplies the learning rate by a function of the step: ``lr_t = lr_{t-1} * lr_lambda(t)``.

    Parameters
    ----------
    optimizer : Optimizer, float, or list of float
        See :class:`LRScheduler`.
    lr_lambda : callable or list of callable
        The factor applied at step ``t`` (t >= 1), or one function per group.
    last_epoch : int, default -1
        See :class:`LRScheduler`.

    Notes
    -----
    ``sched(t)`` is ``initial_lr * lr_lambda(1) * ... * lr_lambda(t)``,
    multiplied in that order (the same bits as ``step()``); it takes an
    integer ``t`` and calls ``lr_lambda`` ``t`` times.
    """

    def _lr(self, i: int, t: float) -> float:
        if not isinstance(t, int):
            raise TypeError(f"MultiplicativeLR is a product over steps: t must be an integer, got {t!r}")
        lr = self.base_lrs[i]
        for k in range(1, t + 1):
            lr *= self.lr_lambdas[i](k)
        return lr

    def _next_lr(self, i: int, lr: float, t: int) -> float:
        return lr * self.lr_lambdas[i](t) if t > 0 else lr


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps.

    Closed form: ``initial_lr * gamma ** (t // step_size)``; ``step()``
    multiplies the current learning rate by ``gamma`` at each multiple of
    ``step_size``.

    Parameters
    ----------
    optimizer : Optimizer, float, or list of float
        See :class:`LRScheduler`.
    step_size : int
        Steps between decays, >= 1.
    gamma : float, default 0.1
        Factor of each decay, > 0.
    last_epoch : int, default -1
        See :class:`LRScheduler`.
    """

    def __init__(self, optimizer: _Target, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.step_size = integer("step_size", step_size, 1)
        self.gamma = bounded_real("gamma", gamma, 0.0, low_open=True)
        super().__init__(optimizer, last_epoch)

    def _lr(self, i: int, t: float) -> float:
        return self.base_lrs[i] * self.gamma ** (t // self.step_size)  # type: ignore[no-any-return]

    def _next_lr(self, i: int, lr: float, t: int) -> float:
        return lr * self.gamma if t > 0 and t % self.step_size == 0 else lr


class MultiStepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` at each milestone.

    Closed form: ``initial_lr * gamma ** (number of milestones <= t)``.

    Parameters
    ----------
    optimizer : Optimizer, float, or list of float
        See :class:`LRScheduler`.
    milestones : list of int
        Steps at which to decay, strictly increasing, >= 0 (torch also takes
        unsorted or repeated milestones; here that is an error).
    gamma : float, default 0.1
        Factor of each decay, > 0.
    last_epoch : int, default -1
        See :class:`LRScheduler`.
    """

    def __init__(self, optimizer: _Target, milestones: Iterable[int], gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.milestones = _milestones("milestones", milestones, 0)
        self.gamma = bounded_real("gamma", gamma, 0.0, low_open=True)
        super().__init__(optimizer, last_epoch)

    def _lr(self, i: int, t: float) -> float:
        return self.base_lrs[i] * self.gamma ** bisect_right(self.milestones, t)

    def _next_lr(self, i: int, lr: float, t: int) -> float:
        return lr * self.gamma if t in self.milestones else lr


class ConstantLR(LRScheduler):
    """Scale the learning rate by ``factor`` for the first ``total_iters`` steps, then restore it.

    Closed form: ``initial_lr * factor`` for ``t < total_iters``, then
    ``initial_lr``; ``step()`` divides by ``factor`` at ``total_iters``.

    Parameters
    ----------
    optimizer : Optimizer, float, or list of float
        See :class:`LRScheduler`.
    factor : float, default 1/3
        In (0, 1] (torch also allows 0, and then divides by it).
    total_iters : int, default 5
        Length of the scaled phase, >= 1.
    last_epoch : int, default -1
        See :class:`LRScheduler`.
    """

    def __init__(self, optimizer: _Target, factor: float = 1.0 / 3, total_iters: int = 5, last_epoch: int = -1) -> None:
        self.factor = bounded_real("factor", factor, 0.0, 1.0, low_open=True)
        self.total_iters = integer("total_iters", total_iters, 1)
        super().__init__(optimizer, last_epoch)

    def _lr(self, i: int, t: float) -> float:
        return self.base_lrs[i] * (self.factor + (t >= self.total_iters) * (1 - self.factor))

    def _next_lr(self, i: int, lr: float, t: int) -> float:
        if t == 0:
            return lr * self.factor
        return lr * (1.0 / self.factor) if t == self.total_iters else lr


class LinearLR(LRScheduler):
    """Scale the learning rate by a factor going linearly from ``start_factor`` to ``end_factor``.

    Closed form: ``initial_lr * (start_factor + (end_factor - start_factor)
    * min(t, total_iters) / total_iters)``; with the defaults, a linear
    warmup over 5 steps.  ``step()`` follows torch's recursion, which
    multiplies the current learning rate by the ratio of successive factors.

    Parameters
    ----------
    optimizer : Optimizer, float, or list of float
        See :class:`LRScheduler`.
    start_factor : float, default 1/3
        Factor at step 0, in (0, 1].
    end_factor : float, default 1.0
        Factor from step ``total_iters`` on, in [0, 1].
    total_iters : int, default 5
        Steps to go from one to the other, >= 1.
    last_epoch : int, default -1
        See :class:`LRScheduler`.
    """

    def __init__(self, optimizer: _Target, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5,
                 last_epoch: int = -1) -> None:
        self.start_factor = bounded_real("start_factor", start_factor, 0.0, 1.0, low_open=True)
        self.end_factor = bounded_real("end_factor", end_factor, 0.0, 1.0)
        self.total_iters = integer("total_iters", total_iters, 1)
        super().__init__(optimizer, last_epoch)

    def _lr(self, i: int, t: float) -> float:
        start, end = self.start_factor, self.end_factor
        return self.base_lrs[i] * (start + (end - start) * min(self.total_iters, t) / self.total_iters)

    def _next_lr(self, i: int, lr: float, t: int) -> float:
        start, end = self.start_factor, self.end_factor
        if t == 0:
            return lr * start
        if t > self.total_iters:
            return lr
        return lr * (1.0 + (end - start) / (self.total_iters * start + (t - 1) * (end - start)))


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` at every step: closed form ``initial_lr * gamma ** t``.

    Parameters
    ----------
    optimizer : Optimizer, float, or list of float
        See :class:`LRScheduler`.
    gamma : float
        Factor per step, > 0.
    last_epoch : int, default -1
        See :class:`LRScheduler`.
    """

    def __init__(self, optimizer: _Target, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = bounded_real("gamma", gamma, 0.0, low_open=True)
        super().__init__(optimizer, last_epoch)

    def _lr(self, i: int, t: float) -> float:
        return self.base_lrs[i] * self.gamma ** t  # type: ignore[no-any-return]

    def _next_lr(self, i: int, lr: float, t: int) -> float:
        return lr * self.gamma if t > 0 else lr


class PolynomialLR(LRScheduler):
    """Decay the learning rate polynomially to 0 over ``total_iters`` steps.

    Closed form: ``initial_lr * (1 - min(t, total_iters) / total_iters) ** power``;
    ``step()`` multiplies the current learning rate by the ratio of
    successive values, as torch.

    Parameters
    ----------
    optimizer : Optimizer, float, or list of float
        See :class:`LRScheduler`.
    total_iters : int, default 5
        Steps until the learning rate reaches 0, >= 1.
    power : float, default 1.0
        Exponent, >= 0.
    last_epoch : int, default -1
        See :class:`LRScheduler`.
    """

    def __init__(self, optimizer: _Target, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1) -> None:
        self.total_iters = integer("total_iters", total_iters, 1)
        self.power = bounded_real("power", power, 0.0)
        super().__init__(optimizer, last_epoch)

    def _lr(self, i: int, t: float) -> float:
        return self.base_lrs[i] * (1.0 - min(self.total_iters, t) / self.total_iters) ** self.power  # type: ignore[no-any-return]

    def _next_lr(self, i: int, lr: float, t: int) -> float:
        if t == 0 or t > self.total_iters:
            return lr
        return lr * ((1.0 - t / self.total_iters) / (1.0 - (t - 1) / self.total_iters)) ** self.power  # type: ignore[no-any-return]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the initial learning rate to ``eta_min`` over ``T_max`` steps.

    Closed form: ``eta_min + (initial_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``,
    which goes back up after ``T_max`` (period ``2 * T_max``), as in torch.
    ``step()`` uses torch's recursion, which scales ``lr - eta_min`` by the
    ratio of successive cosine terms (so another schedule's changes to the
    learning rate carry on); without such changes it agrees with the closed
    form to about 1e-13 relative over thousands of steps.

    Parameters
    ----------
    optimizer : Optimizer, float, or list of float
        See :class:`LRScheduler`.
    T_max : int
        Steps of the descent, >= 1.
    eta_min : float, default 0.0
        The lowest learning rate, >= 0.
    last_epoch : int, default -1
        See :class:`LRScheduler`.
    """

    def __init__(self, optimizer: _Target, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max = integer("T_max", T_max, 1)
        self.eta_min = bounded_real("eta_min", eta_min, 0.0)
        super().__init__(optimizer, last_epoch)

    def _lr(self, i: int, t: float) -> float:
        return self.eta_min + (self.base_lrs[i] - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2

    def _next_lr(self, i: int, lr: float, t: int) -> float:
        T, low = self.T_max, self.eta_min
        if t == 0:
            return lr
        if (t - 1 - T) % (2 * T) == 0:  # leaving the minimum, where the ratio below is 0/0
            return lr + (self.base_lrs[i] - low) * (1 - math.cos(math.pi / T)) / 2
        return (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T)) * (lr - low) + low


class CosineAnnealingWarmRestarts(LRScheduler):
    """Cosine annealing with warm restarts (SGDR): cycles of ``T_0``, ``T_0 * T_mult``, ... steps.

    Within a cycle of length ``T_i``, at ``T_cur`` steps into it:
    ``eta_min + (initial_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2``.
    ``step()`` and ``sched(t)`` both use this formula (the same bits); for
    fractional epochs, set the optimizer's learning rate from
    ``sched.lr_at(epoch + i / iters)`` (torch's deprecated ``step(epoch)``
    is not provided).

    Parameters
    ----------
    optimizer : Optimizer, float, or list of float
        See :class:`LRScheduler`.
    T_0 : int
        Length of the first cycle, >= 1.
    T_mult : int, default 1
        Growth factor of the cycle length, >= 1.
    eta_min : float, default 0.0
        The lowest learning rate, >= 0.
    last_epoch : int, default -1
        See :class:`LRScheduler`.
    """

    def __init__(self, optimizer: _Target, T_0: int, T_mult: int = 1, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_0 = integer("T_0", T_0, 1)
        self.T_mult = integer("T_mult", T_mult, 1)
        self.eta_min = bounded_real("eta_min", eta_min, 0.0)
        super().__init__(optimizer, last_epoch)

    def _cycle(self, t: float) -> tuple[float, int]:
        """(steps into the current cycle, its length) after ``t`` steps."""
        if self.T_mult == 1:
            return t % self.T_0, self.T_0
        length = self.T_0
        while t >= length:
            t -= length
            length *= self.T_mult
        return t, length

    def _lr(self, i: int, t: float) -> float:
        t_cur, t_i = self._cycle(t)
        return self.eta_min + (self.base_lrs[i] - self.eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


class _CyclesMomentum(LRScheduler):
    """Schedules that move the momentum (or Adam's beta1) against the learning rate."""

    cycle_momentum: bool
    use_beta1: bool
    base_momentums: list[float]
    max_momentums: list[float]

    def _setup_momentum(self, optimizer: HasParamGroups, cycle_momentum: bool, base_momentum: _PerGroup,
                        max_momentum: _PerGroup) -> None:
        self.cycle_momentum = flag("cycle_momentum", cycle_momentum, ints=Integral)
        if not self.cycle_momentum:
            return
        groups = optimizer.param_groups
        self.use_beta1 = "betas" in groups[0]
        key = "betas" if self.use_beta1 else "momentum"
        if not all(key in group for group in groups):
            raise ValueError("cycle_momentum=True needs an optimizer with 'momentum' or 'betas' in every parameter "
                             f"group ({type(optimizer).__name__} has neither); pass cycle_momentum=False")
        count = len(groups)
        self.base_momentums = _per_group("base_momentum", base_momentum, count, bounded_real, 0.0)
        self.max_momentums = _per_group("max_momentum", max_momentum, count, bounded_real, 0.0)

    def _write(self, t: float, lrs: Sequence[float]) -> None:
        if self.cycle_momentum:
            for i, group in enumerate(self._groups()):
                momentum = self._momentum(i, t)  # type: ignore[attr-defined]  # each subclass has one
                if self.use_beta1:
                    if group["betas"][0] != momentum:
                        group["betas"] = (momentum, *group["betas"][1:])
                elif group["momentum"] != momentum:
                    group["momentum"] = momentum
        super()._write(t, lrs)


class CyclicLR(_CyclesMomentum):
    """Cyclical learning rate: up from ``base_lr`` to ``max_lr`` and back, in cycles.

    Each cycle rises for ``step_size_up`` steps and falls for
    ``step_size_down``; the height is scaled per cycle (``"triangular"``: 1,
    ``"triangular2"``: halved each cycle) or per step (``"exp_range"``:
    ``gamma ** t``), or by ``scale_fn``.  With ``cycle_momentum`` the
    momentum (or beta1) cycles the other way between ``max_momentum`` and
    ``base_momentum``.  The learning rate at each step is a closed form:
    ``step()`` and ``sched(t)`` give the same bits.

    Parameters
    ----------
    optimizer : Optimizer, float, or list of float
        See :class:`LRScheduler`; its learning rates are replaced by ``base_lr``.
    base_lr, max_lr : float or list of float
        The bounds of the cycle, per group or for all, >= 0.
    step_size_up : float, default 2000
        Steps of the rising half, > 0.
    step_size_down : float, optional
        Steps of the falling half, > 0; ``step_size_up`` if None.
    mode : {"triangular", "triangular2", "exp_range"}, default "triangular"
        Ignored if ``scale_fn`` is given.
    gamma : float, default 1.0
        The per-step factor of ``"exp_range"``, > 0.
    scale_fn : callable, optional
        Scale of the height as a function of the cycle number (from 1) or
        of the step, per ``scale_mode``.
    scale_mode : {"cycle", "iterations"}, default "cycle"
        What ``scale_fn`` takes.
    cycle_momentum : bool, default True
        Cycle ``momentum`` (or ``betas[0]``); needs an optimizer that has one.
    base_momentum, max_momentum : float or list of float, default 0.8, 0.9
        The bounds of the momentum.
    last_epoch : int, default -1
        See :class:`LRScheduler`.
    """

    _functions = ("scale_fn",)

    def __init__(self, optimizer: _Target, base_lr: _PerGroup, max_lr: _PerGroup, step_size_up: float = 2000,
                 step_size_down: float | None = None,
                 mode: Literal["triangular", "triangular2", "exp_range"] = "triangular", gamma: float = 1.0,
                 scale_fn: Callable[[float], float] | None = None, scale_mode: Literal["cycle", "iterations"] = "cycle",
                 cycle_momentum: bool = True, base_momentum: _PerGroup = 0.8, max_momentum: _PerGroup = 0.9,
                 last_epoch: int = -1) -> None:
        optimizer = _target(optimizer)
        count = len(optimizer.param_groups)
        bases = _per_group("base_lr", base_lr, count, bounded_real, 0.0)
        self.max_lrs = _per_group("max_lr", max_lr, count, bounded_real, 0.0)
        up = bounded_real("step_size_up", step_size_up, 0.0, low_open=True)
        down = up if step_size_down is None else bounded_real("step_size_down", step_size_down, 0.0, low_open=True)
        self.total_size = up + down
        self.step_ratio = up / self.total_size
        self.mode = choice("mode", mode, ("triangular", "triangular2", "exp_range"))
        self.gamma = bounded_real("gamma", gamma, 0.0, low_open=True)
        self.scale_fn = None if scale_fn is None else check_callable("scale_fn", scale_fn)
        self.scale_mode = choice("scale_mode", scale_mode, ("cycle", "iterations"))
        self._setup_momentum(optimizer, cycle_momentum, base_momentum, max_momentum)
        super().__init__(optimizer, last_epoch, initial_lrs=bases)

    def _wave(self, t: float) -> tuple[float, float]:
        """(fraction of the way up, scale of the height) after ``t`` steps."""
        cycle = math.floor(1 + t / self.total_size)
        x = 1.0 + t / self.total_size - cycle
        up = x / self.step_ratio if x <= self.step_ratio else (x - 1) / (self.step_ratio - 1)
        if self.scale_fn is not None:
            scale = self.scale_fn(cycle if self.scale_mode == "cycle" else t)
        elif self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = 1 / (2.0 ** (cycle - 1))
        else:
            scale = self.gamma ** t
        return up, scale

    def _lr(self, i: int, t: float) -> float:
        up, scale = self._wave(t)
        base = self.base_lrs[i]
        return base + (self.max_lrs[i] - base) * up * scale

    def _momentum(self, i: int, t: float) -> float:
        up, scale = self._wave(t)
        top = self.max_momentums[i]
        return top - (top - self.base_momentums[i]) * up * scale


class OneCycleLR(_CyclesMomentum):
    """The 1cycle policy: warm up to ``max_lr``, then anneal far below the start, in ``total_steps``.

    The learning rate goes from ``max_lr / div_factor`` up to ``max_lr``
    over the first ``pct_start`` of the steps, then down to
    ``max_lr / (div_factor * final_div_factor)`` (with ``three_phase``:
    back to the start first, then down); each phase anneals by a half cosine
    or linearly.  With ``cycle_momentum`` the momentum (or beta1) moves the
    other way between ``max_momentum`` and ``base_momentum``.  The learning
    rate at each step is a closed form: ``step()`` and ``sched(t)`` give the
    same bits.  Stepping past ``total_steps`` raises ValueError.

    Parameters
    ----------
    optimizer : Optimizer, float, or list of float
        See :class:`LRScheduler`; its learning rates are replaced.
    max_lr : float or list of float
        The peak learning rate, per group or for all, >= 0.
    total_steps : int, optional
        Length of the cycle, >= 1; if None, ``epochs * steps_per_epoch``.
    epochs, steps_per_epoch : int, optional
        Used when ``total_steps`` is None, each >= 1.
    pct_start : float, default 0.3
        Fraction of the steps spent rising, in [0, 1].
    anneal_strategy : {"cos", "linear"}, default "cos"
    cycle_momentum : bool, default True
        Cycle ``momentum`` (or ``betas[0]``); needs an optimizer that has one.
    base_momentum, max_momentum : float or list of float, default 0.85, 0.95
        The bounds of the momentum.
    div_factor : float, default 25.0
        ``max_lr / div_factor`` is the initial learning rate, > 0.
    final_div_factor : float, default 1e4
        The final learning rate is the initial one over this, > 0.
    three_phase : bool, default False
    last_epoch : int, default -1
        See :class:`LRScheduler`.
    """

    def __init__(self, optimizer: _Target, max_lr: _PerGroup, total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: Literal["cos", "linear"] = "cos", cycle_momentum: bool = True,
                 base_momentum: _PerGroup = 0.85, max_momentum: _PerGroup = 0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False, last_epoch: int = -1) -> None:
        optimizer = _target(optimizer)
        if total_steps is not None:
            self.total_steps = integer("total_steps", total_steps, 1)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = integer("epochs", epochs, 1) * integer("steps_per_epoch", steps_per_epoch, 1)
        else:
            raise ValueError("OneCycleLR needs total_steps, or both epochs and steps_per_epoch")
        pct_start = bounded_real("pct_start", pct_start, 0.0, 1.0)
        self.anneal_strategy = choice("anneal_strategy", anneal_strategy, ("cos", "linear"))
        div_factor = bounded_real("div_factor", div_factor, 0.0, low_open=True)
        final_div_factor = bounded_real("final_div_factor", final_div_factor, 0.0, low_open=True)
        peaks = _per_group("max_lr", max_lr, len(optimizer.param_groups), bounded_real, 0.0)
        starts = [peak / div_factor for peak in peaks]
        # per group: the learning rates a phase runs between (start, peak, end) and the momenta (high, low)
        self._lr_levels = [(start, peak, start / final_div_factor) for start, peak in zip(starts, peaks)]
        # per phase: (last step, lr from, lr to, momentum from, momentum to), as indices into the levels
        total = self.total_steps
        if flag("three_phase", three_phase, ints=Integral):
            self._phases = [(float(pct_start * total) - 1, 0, 1, 0, 1), (float(2 * pct_start * total) - 2, 1, 0, 1, 0),
                            (total - 1, 0, 2, 0, 0)]
        else:
            self._phases = [(float(pct_start * total) - 1, 0, 1, 0, 1), (total - 1, 1, 2, 1, 0)]
        self._setup_momentum(optimizer, cycle_momentum, base_momentum, max_momentum)
        super().__init__(optimizer, last_epoch, initial_lrs=starts)

    def _position(self, t: float) -> tuple[tuple[float, int, int, int, int], float]:  # type: ignore[return]  # the last phase returns
        """(the phase, the fraction of it done) after ``t`` steps."""
        if t > self.total_steps:
            raise ValueError(f"OneCycleLR was asked for step {t}, past its total_steps={self.total_steps}")
        start = 0.0
        for phase in self._phases:
            if t <= phase[0] or phase is self._phases[-1]:
                return phase, (t - start) / (phase[0] - start)
            start = phase[0]

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _lr(self, i: int, t: float) -> float:
        (_, low, high, _, _), pct = self._position(t)
        return self._anneal(self._lr_levels[i][low], self._lr_levels[i][high], pct)

    def _momentum(self, i: int, t: float) -> float:
        (_, _, _, low, high), pct = self._position(t)
        levels = (self.max_momentums[i], self.base_momentums[i])
        return self._anneal(levels[low], levels[high], pct)


# ------------------------------------------------------------------ composition
class _Composite(LRScheduler):
    """Schedules made of other schedules on the same optimizer."""

    def _adopt(self, optimizer: _Target | None, schedulers: Sequence[LRScheduler]) -> None:
        name = type(self).__name__
        if not isinstance(schedulers, (list, tuple)):
            raise TypeError(f"{name} takes a list of schedules, got {type(schedulers).__name__}")
        if not schedulers:
            raise ValueError(f"{name} needs at least one schedule")
        for i, s in enumerate(schedulers):
            if not isinstance(s, LRScheduler):
                raise TypeError(f"{name}: schedulers[{i}] is a {type(s).__name__}, not a fastopt schedule")
            if isinstance(s, ReduceLROnPlateau):
                raise ValueError(f"{name} cannot hold a ReduceLROnPlateau (schedulers[{i}]): "
                                 "its step() needs a metric; step it separately")
        self.optimizer = schedulers[0].optimizer if optimizer is None else _target(optimizer)
        for i, s in enumerate(schedulers):
            if s.optimizer is not self.optimizer:
                raise ValueError(f"{name}: schedulers[{i}] sets another optimizer's learning rates; all must "
                                 "share one (for float learning rates, build the others on first.optimizer)")
        self._schedulers = list(schedulers)
        self._group_count = len(self.optimizer.param_groups)


class SequentialLR(_Composite):
    """Run schedules one after another, switching at the milestones (e.g. warmup, then cosine).

    Schedule ``k`` runs from step ``milestones[k-1]`` on, restarted there from
    its own step 0 (and the initial learning rates).  ``sched(t)`` is
    schedule ``k``'s closed form at ``t - milestones[k-1]``.

    Parameters
    ----------
    optimizer : Optimizer or None
        The optimizer all the schedules share (None: theirs).
    schedulers : list of LRScheduler
        Built on ``optimizer``, in order; neither ReduceLROnPlateau nor
        composed schedules.
    milestones : list of int
        One fewer than the schedules, strictly increasing, >= 1.
    last_epoch : int, default -1
        See :class:`LRScheduler`.

    Examples
    --------
    Linear warmup over 5 steps, then cosine annealing over 95, on floats:

    >>> warmup = LinearLR(0.1, start_factor=0.1, total_iters=5)
    >>> cosine = CosineAnnealingLR(warmup.optimizer, T_max=95)
    >>> sched = SequentialLR(warmup.optimizer, [warmup, cosine], milestones=[5])
    >>> round(sched(0), 12), sched(5), sched(100)
    (0.01, 0.1, 0.0)
    """

    milestones: list[int]

    def __init__(self, optimizer: _Target | None, schedulers: Sequence[LRScheduler], milestones: Iterable[int],
                 last_epoch: int = -1) -> None:
        self._adopt(optimizer, schedulers)
        nested = [i for i, s in enumerate(self._schedulers) if isinstance(s, _Composite)]
        if nested:
            raise ValueError(f"SequentialLR cannot restart composed schedules (schedulers {nested})")
        self.milestones = _milestones("milestones", milestones, 1)
        if len(self.milestones) != len(self._schedulers) - 1:
            raise ValueError(f"SequentialLR needs one milestone fewer than schedules: got {len(self._schedulers)} "
                             f"schedules and {len(self.milestones)} milestones")
        self.last_epoch = integer("last_epoch", last_epoch, -1) + 1
        for group in self.optimizer.param_groups:  # undo what building the schedules did to the rates
            group["lr"] = group["initial_lr"]
        active, t = self._locate(self.last_epoch)
        active.last_epoch = t - 1
        active._initial_step()
        self._last_lr = active.get_last_lr()

    def _locate(self, t: Any) -> tuple[LRScheduler, Any]:
        """The schedule running at step ``t`` and the steps since it started."""
        k = bisect_right(self.milestones, t)
        return self._schedulers[k], t - (self.milestones[k - 1] if k else 0)

    def step(self) -> None:
        """Advance one step: step the running schedule, or start the next one at a milestone."""
        self.last_epoch += 1
        active, t = self._locate(self.last_epoch)
        if t == 0:
            active._restart(0)
        else:
            active.step()
        self._last_lr = active.get_last_lr()

    def _lrs(self, t: float) -> list[float]:
        active, t = self._locate(t)
        return active.lr_at(t)


class ChainedScheduler(_Composite):
    """Step several schedules together, each acting on the learning rates the previous one set.

    For schedules torch computes recursively (e.g. ConstantLR and
    ExponentialLR) the effects multiply.  ``sched(t)`` is not available:
    the result depends on how the schedules' recursions interleave.

    Parameters
    ----------
    schedulers : list of LRScheduler
        Built on the same optimizer, in the order they are stepped; no
        ReduceLROnPlateau.
    optimizer : Optimizer, optional
        The optimizer they share (default: theirs).

    Attributes
    ----------
    last_epoch : int
        Steps taken (torch's ChainedScheduler keeps no count).
    """

    _no_closed_form = ("its schedules act in turn on the learning rate the previous one set; "
                       "use each schedule's own sched(t), or SequentialLR")

    def __init__(self, schedulers: Sequence[LRScheduler], optimizer: _Target | None = None) -> None:
        self._adopt(optimizer, schedulers)
        self.last_epoch = 0
        self._last_lr = self._current()

    def step(self) -> None:
        """Advance one step: step every schedule, in order."""
        for s in self._schedulers:
            s.step()
        self.last_epoch += 1
        self._last_lr = self._current()


class ReduceLROnPlateau(LRScheduler):
    """Reduce the learning rate when a metric has stopped improving.

    Call ``step(metrics)`` with the metric after each evaluation.  A value counts as an
    improvement on the best so far when it is lower (``mode="min"``) or
    higher (``"max"``) by more than ``threshold``, relative to the best
    (``threshold_mode="rel"``: below ``best * (1 - threshold)`` or above
    ``best * (1 + threshold)``) or absolute (``"abs"``).  After more than
    ``patience`` steps in a row without improvement, every learning rate is
    multiplied by ``factor`` (not below ``min_lr``; changes smaller than
    ``eps`` are skipped), then ``cooldown`` steps pass before counting again.

    There is no closed form: ``sched(t)`` raises NotImplementedError.

    Parameters
    ----------
    optimizer : Optimizer, float, or list of float
        See :class:`LRScheduler`.
    mode : {"min", "max"}, default "min"
    factor : float, default 0.1
        In [0, 1).
    patience : int, default 10
        Steps without improvement tolerated, >= 0.
    threshold : float, default 1e-4
        >= 0.
    threshold_mode : {"rel", "abs"}, default "rel"
    cooldown : int, default 0
        Steps to wait after a reduction, >= 0.
    min_lr : float or list of float, default 0
        The lowest learning rate, per group or for all, >= 0.
    eps : float, default 1e-8
        Smallest change applied, >= 0.

    Attributes
    ----------
    best : float
        The best metric so far.
    num_bad_epochs, cooldown_counter : int
        Steps without improvement, and cooldown steps left.
    last_epoch : int
        Steps taken.
    """

    _no_closed_form = "its learning rate depends on the metrics passed to step(metrics)"

    def __init__(self, optimizer: _Target, mode: Literal["min", "max"] = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: Literal["rel", "abs"] = "rel", cooldown: int = 0,
                 min_lr: _PerGroup = 0, eps: float = 1e-8) -> None:
        self.optimizer = _target(optimizer)
        self.mode = choice("mode", mode, ("min", "max"))
        self.factor = bounded_real("factor", factor, 0.0, 1.0, high_open=True)
        self.patience = integer("patience", patience, 0)
        self.threshold = bounded_real("threshold", threshold, 0.0)
        self.threshold_mode = choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.cooldown = integer("cooldown", cooldown, 0)
        self._group_count = len(self.optimizer.param_groups)
        self.min_lrs = _per_group("min_lr", min_lr, self._group_count, bounded_real, 0.0)
        self.eps = bounded_real("eps", eps, 0.0)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = self._current()

    def _improves(self, value: float) -> bool:
        best, threshold = self.best, self.threshold
        if self.mode == "min":
            return value < (best * (1.0 - threshold) if self.threshold_mode == "rel" else best - threshold)
        return value > (best * (threshold + 1.0) if self.threshold_mode == "rel" else best + threshold)

    def step(self, metrics: SupportsFloat) -> None:  # type: ignore[override]  # takes a metric, as in torch
        """Record one value of the metric and reduce the learning rates if it has stalled.

        Parameters
        ----------
        metrics : float
            The metric's value: any real number (a NumPy scalar, a 0-d
            array, a one-element tensor ...).
        """
        if isinstance(metrics, (str, bytes)):
            raise TypeError(f"metrics must be a number, got {type(metrics).__name__}")
        try:
            value = float(metrics)
        except (TypeError, ValueError):
            raise TypeError(f"metrics must be a number, got {type(metrics).__name__}") from None
        groups = self._groups()
        self.last_epoch += 1
        if self._improves(value):
            self.best, self.num_bad_epochs = value, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, floor in zip(groups, self.min_lrs):
                lr = max(group["lr"] * self.factor, floor)
                if group["lr"] - lr > self.eps:
                    group["lr"] = lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._current()
