"""Two-dimensional test surfaces with analytic gradients.

Each :class:`Surface` bundles a loss ``f(x, y)``, its gradient, a default
start point, a plotting window, its known global minima and the default
learning rate of every playground optimizer on it.  The functions take
scalars or NumPy arrays of matching shapes (the plot evaluates them on a
grid), and return ``inf`` or ``nan`` rather than raising when a point is so
far out that the arithmetic overflows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar, overload

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from fastopt._typing import ArrayLike

__all__ = ["SURFACES", "Surface", "get_surface"]

# A coordinate or a loss: a scalar, or an array of them (the plot evaluates a surface on a grid).
_V = TypeVar("_V", float, NDArray[np.float64])


class _Value(Protocol):
    """``value(x, y) -> f``: a scalar at a point, an array over arrays of matching shapes."""

    @overload
    def __call__(self, x: float, y: float, /) -> float: ...
    @overload
    def __call__(self, x: NDArray[np.float64], y: NDArray[np.float64], /) -> NDArray[np.float64]: ...


class _Gradient(Protocol):
    """``gradient(x, y) -> (df/dx, df/dy)``: scalars at a point, arrays over arrays of matching shapes."""

    @overload
    def __call__(self, x: float, y: float, /) -> tuple[float, float]: ...
    @overload
    def __call__(self, x: NDArray[np.float64], y: NDArray[np.float64], /
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...


@dataclass(frozen=True)
class Surface:
    """A 2-D loss surface for the playground.

    Attributes
    ----------
    name : str
        Key in :data:`SURFACES` and value of ``--surface``.
    formula : str
        The loss written out, for titles and ``--list``.
    value : callable
        ``value(x, y) -> f``; vectorized over arrays.
    gradient : callable
        ``gradient(x, y) -> (df/dx, df/dy)``; vectorized over arrays.
    start : tuple of float
        Default start point.
    window : tuple of float
        ``(xmin, xmax, ymin, ymax)`` of the contour plot.
    minima : tuple of tuple of float
        Known global minima (empty when the surface is unbounded below).
    min_value : float or None
        The loss at the minima; None when there are none.
    steps : int
        Default number of steps.
    lrs : dict
        Default learning rate of each optimizer name on this surface.
    log_levels : bool
        Whether the contour levels are spaced logarithmically.
    note : str
        One line on what the surface shows.
    """

    name: str
    formula: str
    value: _Value
    gradient: _Gradient
    start: tuple[float, float]
    window: tuple[float, float, float, float]
    minima: tuple[tuple[float, float], ...]
    min_value: float | None
    steps: int
    lrs: dict[str, float] = field(repr=False)
    log_levels: bool = True
    note: str = ""

    def distance_to_minimum(self, point: ArrayLike) -> float | None:
        """Euclidean distance from ``point`` to the nearest known minimum (None if there are none)."""
        if not self.minima:
            return None
        return float(np.min(np.hypot(*(np.asarray(self.minima) - np.asarray(point, dtype=float)).T)))


def _rosenbrock(x: _V, y: _V) -> _V:
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


def _rosenbrock_grad(x: _V, y: _V) -> tuple[_V, _V]:
    ridge = y - x * x
    return -2.0 * (1.0 - x) - 400.0 * x * ridge, 200.0 * ridge


def _beale_terms(x: _V, y: _V) -> tuple[_V, _V, _V]:
    return 1.5 - x + x * y, 2.25 - x + x * y * y, 2.625 - x + x * y ** 3


def _beale(x: _V, y: _V) -> _V:
    t1, t2, t3 = _beale_terms(x, y)
    return t1 * t1 + t2 * t2 + t3 * t3


def _beale_grad(x: _V, y: _V) -> tuple[_V, _V]:
    t1, t2, t3 = _beale_terms(x, y)
    gx = 2.0 * (t1 * (y - 1.0) + t2 * (y * y - 1.0) + t3 * (y ** 3 - 1.0))
    gy = 2.0 * x * (t1 + 2.0 * y * t2 + 3.0 * y * y * t3)
    return gx, gy


def _himmelblau(x: _V, y: _V) -> _V:
    return (x * x + y - 11.0) ** 2 + (x + y * y - 7.0) ** 2


def _himmelblau_grad(x: _V, y: _V) -> tuple[_V, _V]:
    a, b = x * x + y - 11.0, x + y * y - 7.0
    return 4.0 * x * a + 2.0 * b, 2.0 * a + 4.0 * y * b


def _saddle(x: _V, y: _V) -> _V:
    return x * x - y * y


def _saddle_grad(x: _V, y: _V) -> tuple[_V, _V]:
    return 2.0 * x, -2.0 * y


# The ravine 0.5 * (u^2 + K v^2) in coordinates (u, v) rotated by THETA from (x, y): its axes are not the
# coordinate axes, so per-coordinate step sizes (Adagrad, RMSprop, Adam) cannot undo the conditioning.
_RAVINE_K = 100.0
_RAVINE_COS, _RAVINE_SIN = math.cos(math.pi / 6), math.sin(math.pi / 6)


def _ravine_coords(x: _V, y: _V) -> tuple[_V, _V]:
    return _RAVINE_COS * x + _RAVINE_SIN * y, -_RAVINE_SIN * x + _RAVINE_COS * y


def _ravine(x: _V, y: _V) -> _V:
    u, v = _ravine_coords(x, y)
    return 0.5 * (u * u + _RAVINE_K * v * v)


def _ravine_grad(x: _V, y: _V) -> tuple[_V, _V]:
    u, v = _ravine_coords(x, y)
    kv = _RAVINE_K * v
    return _RAVINE_COS * u - _RAVINE_SIN * kv, _RAVINE_SIN * u + _RAVINE_COS * kv


def _rastrigin(x: _V, y: _V) -> _V:
    tau = 2.0 * np.pi
    f: _V = 20.0 + x * x + y * y - 10.0 * (np.cos(tau * x) + np.cos(tau * y))  # np.cos of a scalar is typed Any
    return f


def _rastrigin_grad(x: _V, y: _V) -> tuple[_V, _V]:
    tau = 2.0 * np.pi
    return 2.0 * x + 10.0 * tau * np.sin(tau * x), 2.0 * y + 10.0 * tau * np.sin(tau * y)


def _lrs(sgd: float, momentum: float, nesterov: float, adagrad: float, rmsprop: float, adam: float, adamw: float,
         adamax: float, nadam: float, radam: float, adadelta: float, lion: float, adopt: float, ademamix: float,
         sgd_schedulefree: float, adamw_schedulefree: float, lamb: float, lars: float, adafactor: float,
         prodigy: float, muon: float) -> dict[str, float]:
    return {"sgd": sgd, "momentum": momentum, "nesterov": nesterov, "adagrad": adagrad, "rmsprop": rmsprop,
            "adam": adam, "adamw": adamw, "adamax": adamax, "nadam": nadam, "radam": radam, "adadelta": adadelta,
            "lion": lion, "adopt": adopt, "ademamix": ademamix, "sgd-schedulefree": sgd_schedulefree,
            "adamw-schedulefree": adamw_schedulefree, "lamb": lamb, "lars": lars, "adafactor": adafactor,
            "prodigy": prodigy, "muon": muon}


_HIMMELBLAU_MINIMA = (
    (3.0, 2.0),
    (-2.805118086952745, 3.131312518250573),
    (-3.779310253377747, -3.2831859912861696),
    (3.5844283403304917, -1.8481265269644036),
)

# Default learning rates, in the order of _lrs: picked from sweeps over 1-2-5 grids (up to 1.0) so that each
# optimizer makes steady, non-diverging progress in the surface's default steps (SGD-type rates stay below the
# stability limit 2 / curvature; RAdam's first steps are plain momentum SGD, so its rate must be too).
SURFACES = {s.name: s for s in (
    Surface("rosenbrock", "(1 - x)^2 + 100 (y - x^2)^2", _rosenbrock, _rosenbrock_grad,
            start=(-1.5, 2.0), window=(-2.0, 2.0, -1.0, 3.0), minima=((1.0, 1.0),), min_value=0.0, steps=1000,
            lrs=_lrs(1e-3, 1e-3, 1e-3, 0.5, 0.01, 0.1, 0.1, 0.2, 0.02, 5e-3, 1.0, 0.01, 1.0, 0.5, 0.01, 0.5,
                     0.05, 1.0, 1.0, 1.0, 0.01),
            note="a curved, flat-bottomed valley: easy to reach, slow to follow to (1, 1)"),
    Surface("beale", "(1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2", _beale, _beale_grad,
            start=(1.0, 1.5), window=(-1.0, 4.5, -1.5, 2.5), minima=((3.0, 0.5),), min_value=0.0, steps=1000,
            lrs=_lrs(0.01, 2e-3, 2e-3, 1.0, 0.01, 0.1, 0.1, 0.5, 0.1, 0.01, 1.0, 0.02, 1.0, 0.5, 5e-3, 0.5,
                     0.02, 0.5, 0.01, 0.2, 0.01),
            note="steep walls (degree 8) around a narrow valley that flattens towards (3, 0.5)"),
    Surface("himmelblau", "(x^2 + y - 11)^2 + (x + y^2 - 7)^2", _himmelblau, _himmelblau_grad,
            start=(-0.4, -0.8), window=(-5.0, 5.0, -5.0, 5.0), minima=_HIMMELBLAU_MINIMA, min_value=0.0, steps=500,
            lrs=_lrs(0.01, 1e-3, 1e-3, 0.5, 0.01, 0.05, 0.05, 0.2, 0.05, 0.05, 1.0, 0.02, 0.5, 1.0, 0.1, 0.5,
                     0.02, 1.0, 0.02, 1.0, 0.02),
            note="four global minima: which basin each optimizer ends in depends on its path"),
    Surface("saddle", "x^2 - y^2", _saddle, _saddle_grad,
            start=(-1.5, 1e-3), window=(-2.0, 2.0, -2.0, 2.0), minima=(), min_value=None, steps=200,
            lrs=_lrs(0.01, 2e-3, 2e-3, 0.05, 5e-3, 0.01, 0.01, 0.01, 0.01, 0.02, 0.05, 0.01, 0.01, 0.01, 0.05, 0.01,
                     0.01, 1.0, 0.01, 0.01, 0.01),
            log_levels=False,
            note="a saddle point at the origin, unbounded below: how fast does each optimizer escape?"),
    Surface("ravine", "0.5 (u^2 + 100 v^2), (u, v) = (x, y) rotated by 30 degrees", _ravine, _ravine_grad,
            start=(-2.6, -0.9), window=(-3.0, 1.0, -2.0, 1.0), minima=((0.0, 0.0),), min_value=0.0, steps=300,
            lrs=_lrs(0.018, 5e-3, 5e-3, 1.0, 0.05, 0.1, 0.1, 0.5, 0.1, 0.02, 2.0, 0.05, 1.0, 1.0, 0.1, 1.0,
                     0.5, 1.0, 0.1, 1.0, 0.05),
            note="condition number 100 along tilted axes: plain SGD zigzags or crawls"),
    Surface("rastrigin", "20 + x^2 + y^2 - 10 (cos 2 pi x + cos 2 pi y)", _rastrigin, _rastrigin_grad,
            start=(-3.3, 2.7), window=(-5.12, 5.12, -5.12, 5.12), minima=((0.0, 0.0),), min_value=0.0, steps=500,
            lrs=_lrs(2e-3, 5e-3, 2e-3, 0.5, 0.01, 0.05, 0.05, 0.05, 0.05, 2e-3, 1.0, 0.01, 0.05, 0.05, 0.01, 0.05,
                     1.0, 0.2, 0.5, 0.05, 1.0),
            log_levels=False,
            note="a grid of local minima around the global one at the origin"),
)}


def get_surface(name: str | Surface) -> Surface:
    """Return the :class:`Surface` called ``name``.

    Parameters
    ----------
    name : str or Surface
        A key of :data:`SURFACES` (a Surface is returned as it is).

    Raises
    ------
    ValueError
        If there is no such surface; the message lists the known ones.
    """
    if isinstance(name, Surface):
        return name
    try:
        return SURFACES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown surface {name!r}; choose from {', '.join(SURFACES)}") from None
