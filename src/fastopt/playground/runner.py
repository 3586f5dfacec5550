"""Run fastopt's optimizers on a playground surface and record their trajectories."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

import fastopt
from fastopt.playground.surfaces import Surface, get_surface

if TYPE_CHECKING:
    from fastopt._typing import Array, ArrayLike, Params

__all__ = ["DEFAULT_OPTIMIZERS", "OPTIMIZERS", "Trajectory", "check_start", "make_optimizer", "resolve_lrs", "run",
           "run_one"]

# playground name -> (fastopt class name, keyword arguments besides lr); every other argument keeps
# its torch.optim default (AdamW's weight_decay=0.01 included).
OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("SGD", {}),
    "momentum": ("SGD", {"momentum": 0.9}),
    "nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}),
    "adagrad": ("Adagrad", {}),
    "rmsprop": ("RMSprop", {}),
    "adam": ("Adam", {}),
    "adamw": ("AdamW", {}),
    "adamax": ("Adamax", {}),
    "nadam": ("NAdam", {}),
    "radam": ("RAdam", {}),
    "adadelta": ("Adadelta", {}),
    "lion": ("Lion", {}),
    "adopt": ("ADOPT", {}),
    "ademamix": ("AdEMAMix", {}),
    "sgd-schedulefree": ("SGDScheduleFree", {}),
    "adamw-schedulefree": ("AdamWScheduleFree", {}),
    "lamb": ("LAMB", {}),
    "lars": ("LARS", {}),
    "adafactor": ("Adafactor", {}),
    "prodigy": ("Prodigy", {}),
    "muon": ("Muon", {"weight_decay": 0.0}),  # no decay: it would pull every path towards the origin
}
# Those that see the point as a 1 x 2 matrix: Muon orthogonalizes matrices (a vector would take its AdamW step).
AS_MATRIX = ("muon",)
DEFAULT_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")


@dataclass
class Trajectory:
    """The path of one optimizer on a surface.

    Attributes
    ----------
    optimizer : str
        Playground name of the optimizer (a key of :data:`OPTIMIZERS`).
    lr : float
        Learning rate it ran with.
    points : ndarray, shape (n + 1, 2)
        The start point and the point after each of the ``n`` recorded steps.
    losses : ndarray, shape (n + 1,)
        The loss at each point.
    steps : int
        Number of steps requested; ``n == steps`` unless the run diverged.
    diverged_at : int or None
        The step that produced the first non-finite gradient, point or loss
        (nothing from it on is recorded), or None.
    hyperparameters : dict
        The keyword arguments given besides ``lr`` on top of the
        playground's (empty for the playground's defaults).
    """

    optimizer: str
    lr: float
    points: NDArray[np.float64]
    losses: NDArray[np.float64]
    steps: int
    diverged_at: int | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def final_point(self) -> NDArray[np.float64]:
        point: NDArray[np.float64] = self.points[-1]  # numpy types an integer index's result as Any
        return point

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1])

    def steps_to(self, threshold: float) -> int | None:
        """First recorded step whose loss is below ``threshold``, or None."""
        below = np.flatnonzero(self.losses < threshold)
        return int(below[0]) if below.size else None


def _check_optimizers(names: Iterable[str]) -> list[str]:
    names = list(names)
    if not names:
        raise ValueError("no optimizers given")
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown:
        raise ValueError(f"unknown optimizer(s) {', '.join(map(repr, unknown))}; choose from {', '.join(OPTIMIZERS)}")
    return names


def _check_lr(name: str, lr: object) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"learning rate for {name} must be a positive finite number, got {lr!r}")
    return float(lr)


def _check_steps(steps: object) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return int(steps)


def check_start(surface: Surface, start: ArrayLike) -> NDArray[np.float64]:
    """``start`` as a float64 array of shape (2,); ValueError unless it is finite with a finite loss.

    Parameters
    ----------
    surface : Surface
    start : pair of float
    """
    point = np.asarray(start, dtype=np.float64)
    if point.shape != (2,) or not np.all(np.isfinite(point)):
        raise ValueError(f"start must be two finite numbers (x, y), got {start!r}")
    with np.errstate(all="ignore"):
        loss = surface.value(*point)
    if not np.isfinite(loss):
        raise ValueError(f"the loss of {surface.name} is not finite at the start point {tuple(point)}")
    return point


def resolve_lrs(surface: Surface | str, names: Iterable[str], lr: float | dict[str, float] | None = None
                ) -> dict[str, float]:
    """The learning rate of each optimizer in ``names``.

    Parameters
    ----------
    surface : Surface or str
    names : sequence of str
        Optimizer names (keys of :data:`OPTIMIZERS`).
    lr : float, dict or None
        One rate for every optimizer; or a dict from some names to rates
        (the others keep the surface's default); or None for the surface's
        defaults (:attr:`Surface.lrs`).

    Returns
    -------
    dict
        ``{name: lr}`` in the order of ``names``.
    """
    surface = get_surface(surface)
    names = _check_optimizers(names)
    if lr is None:
        lr = {}
    if isinstance(lr, dict):
        if lr:
            _check_optimizers(lr)
        return {n: _check_lr(n, lr.get(n, surface.lrs[n])) for n in names}
    return {n: _check_lr(n, lr) for n in names}


def make_optimizer(name: str, params: Params, lr: float, hyperparameters: Mapping[str, Any] | None = None
                   ) -> fastopt.Optimizer:
    """The fastopt optimizer that the playground calls ``name``, over ``params``.

    Parameters
    ----------
    name : str
        A key of :data:`OPTIMIZERS`.
    params
        What the optimizer updates (any ``params`` fastopt's optimizers take).
    lr : float
        Learning rate.
    hyperparameters : mapping, optional
        Keyword arguments of the fastopt class; they override the playground's.
    """
    cls_name, kwargs = OPTIMIZERS[_check_optimizers([name])[0]]
    optimizer: fastopt.Optimizer = getattr(fastopt, cls_name)(params, lr=lr, **{**kwargs, **(hyperparameters or {})})
    return optimizer


def _finite(*values: ArrayLike) -> bool:
    return all(np.all(np.isfinite(v)) for v in values)


def run_one(surface: Surface | str, name: str, lr: float, steps: int, start: ArrayLike,
            hyperparameters: Mapping[str, Any] | None = None) -> Trajectory:
    """Run one optimizer from ``start``; stop early at the first non-finite value.

    Parameters
    ----------
    surface : Surface or str
    name : str
        A key of :data:`OPTIMIZERS`.
    lr : float
        Learning rate.
    steps : int
        Number of steps to take.
    start : pair of float
        Start point.
    hyperparameters : dict, optional
        Keyword arguments of the fastopt class besides ``lr`` (``momentum``,
        ``betas``, ...), on top of the playground's.

    Returns
    -------
    Trajectory
        If step ``k`` meets a non-finite gradient, point or loss, the
        trajectory holds steps ``0 .. k - 1`` and ``diverged_at == k``.
        A schedule-free optimizer's points are its evaluation points (the
        average; gradients are taken elsewhere, between it and ``z``).
    """
    surface = get_surface(surface)
    steps = _check_steps(steps)
    x = check_start(surface, start).copy()  # the optimizer updates this array in place
    grad = np.empty(2)
    shape = (1, 2) if name in AS_MATRIX else (2,)
    hyperparameters = dict(hyperparameters or {})
    opt = make_optimizer(name, [x.reshape(shape)], _check_lr(name, lr), hyperparameters)
    found = getattr(opt, "averaged_point", None)  # schedule-free: record its evaluation point
    averaged_point: Callable[[int], Array] | None = found if callable(found) else None
    points = np.empty((steps + 1, 2))
    losses = np.empty(steps + 1)
    points[0], losses[0] = x, surface.value(*x)
    diverged_at = None
    with np.errstate(all="ignore"):  # overflow is expected when an optimizer diverges
        for k in range(1, steps + 1):
            grad[:] = surface.gradient(*x)
            if not _finite(grad):
                diverged_at = k
                break
            opt.step([grad.reshape(shape)])
            point = averaged_point(0).reshape(2) if averaged_point is not None else x
            loss = surface.value(*point)
            if not (_finite(point) and math.isfinite(loss)):
                diverged_at = k
                break
            points[k], losses[k] = point, loss
    n = steps if diverged_at is None else diverged_at - 1
    return Trajectory(name, float(lr), points[:n + 1].copy(), losses[:n + 1].copy(), steps, diverged_at,
                      hyperparameters)


def run(surface: Surface | str, optimizers: Iterable[str] = DEFAULT_OPTIMIZERS, *,
        lr: float | dict[str, float] | None = None, steps: int | None = None, start: ArrayLike | None = None
        ) -> list[Trajectory]:
    """Run each optimizer on ``surface`` from the same start point.

    Parameters
    ----------
    surface : Surface or str
        A surface or its name (see :data:`fastopt.playground.SURFACES`).
    optimizers : sequence of str
        Keys of :data:`OPTIMIZERS`.
    lr : float, dict or None
        See :func:`resolve_lrs`; None uses the surface's defaults.
    steps : int, optional
        Steps per optimizer (default: the surface's ``steps``).
    start : pair of float, optional
        Start point (default: the surface's ``start``).

    Returns
    -------
    list of Trajectory
        One per optimizer, in the order given.
    """
    surface = get_surface(surface)
    lrs = resolve_lrs(surface, optimizers, lr)
    steps = _check_steps(surface.steps if steps is None else steps)
    start = check_start(surface, surface.start if start is None else start)
    return [run_one(surface, name, rate, steps, start) for name, rate in lrs.items()]
