"""Finite differences as SciPy takes them: ``"2-point"``, ``"3-point"`` and ``"cs"``, absolute or relative steps.

Steps follow ``scipy.optimize.approx_derivative``: a relative step ``r``
(``finite_diff_rel_step``, default sqrt(eps) for 2-point and complex step,
eps**(1/3) for 3-point) gives ``h_i = r * sign(x_i) * max(1, |x_i|)``; an
absolute step (the methods' ``eps`` option, used for ``jac=None``) is taken
as it is unless it vanishes against ``x_i``, where the relative rule takes
over.  Every step is rounded to what ``x + h`` represents.  Within bounds, a
step that would leave the box goes the other way, or, where that leaves it
too, into the wider side's room (2-point); a central difference that would
leave it becomes one-sided (3-point): ``fun`` is only evaluated inside the
box.  A variable fixed by equal bounds is not differenced (its entry is NaN).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from fastopt._typing import NDArray
    from fastopt.second_order._common import Box

EPS = np.finfo(np.float64).eps
METHODS = ("2-point", "3-point", "cs")
_DEFAULT_REL_STEP = {"2-point": math.sqrt(EPS), "3-point": EPS ** (1 / 3), "cs": math.sqrt(EPS)}


def steps(x: NDArray[np.float64], method: str, rel_step: Any = None, abs_step: Any = None) -> NDArray[np.float64]:
    """The step h_i for each variable, as ``scipy.optimize.approx_derivative`` chooses it."""
    sign = np.where(x >= 0, 1.0, -1.0)
    if rel_step is None:
        rel_step = _DEFAULT_REL_STEP[method]
    relative = np.asarray(rel_step, dtype=np.float64) * sign * np.maximum(1.0, np.abs(x))
    if abs_step is None:
        h = relative
    else:
        h = np.broadcast_to(np.asarray(abs_step, dtype=np.float64), x.shape) * 1.0
        h = np.where((x + h) - x == 0, _DEFAULT_REL_STEP[method] * sign * np.maximum(1.0, np.abs(x)), h)
    return h


def _inside(p: NDArray[Any], lower: Any, upper: Any) -> Any:
    return (p <= upper) & (p >= lower)


def _wider_room(x: NDArray[np.float64], lower: Any, upper: Any) -> Any:
    """The signed distance from x to the farther bound: where a step goes when neither direction fits."""
    room_up, room_down = upper - x, x - lower
    return np.where(room_up >= room_down, room_up, -room_down)


def _probe(x: NDArray[np.float64], i: Any, h: float) -> NDArray[np.float64]:
    p = np.array(x, dtype=np.float64)
    p[i] += h
    p.flags.writeable = False
    return p


def gradient(value_of: Callable[[NDArray[Any]], Any], x: NDArray[np.float64], f0: float, method: str, *,
             rel_step: Any = None, abs_step: Any = None, box: Box | None = None,
             evaluate: Callable[..., Iterable[Any]] = map) -> NDArray[np.float64]:
    """The gradient of ``value_of`` at ``x`` (``f0 = value_of(x)``) by ``method``.

    ``evaluate(value_of, points)`` evaluates a batch of points (``map`` by
    default; SciPy's ``workers``).  Each point is a new read-only array.
    Complex step: the points are complex, and ``value_of`` must return the
    complex value (its imaginary part carries the derivative).
    """
    n = x.size
    h = steps(x, method, rel_step, abs_step)
    lower, upper = (None, None) if box is None else box
    i: Any  # a variable's index: an int, or an intp from flatnonzero
    fixed: Any  # bool array
    points: list[NDArray[Any]]
    if method == "cs":
        points = []
        for i in range(n):
            p = x.astype(np.complex128)
            p[i] += 1j * h[i]
            p.flags.writeable = False
            points.append(p)
        return np.array([complex(v).imag for v in evaluate(value_of, points)]) / h
    if method == "2-point":
        fixed = np.zeros(n, dtype=bool)
        if box is not None:  # stay in the box: backwards where forward leaves it, else into the wider side
            fixed = lower == upper
            h = np.where(_inside(x + h, lower, upper), h,
                         np.where(_inside(x - h, lower, upper), -h, _wider_room(x, lower, upper)))
        free = np.flatnonzero(~fixed)
        points = [_probe(x, i, h[i]) for i in free]
        values = np.array(list(evaluate(value_of, points)), dtype=np.float64)
        g = np.full(n, np.nan)  # a variable fixed by equal bounds has no derivative to take
        g[free] = (values - f0) / np.array([p[i] - x[i] for p, i in zip(points, free)])
        return g
    # 3-point: central where both sides are inside the box, else one-sided (two points on the side with room)
    one_sided = np.zeros(n, dtype=bool)
    fixed = np.zeros(n, dtype=bool)
    if box is not None:
        fixed = lower == upper
        central_ok = _inside(x + h, lower, upper) & _inside(x - h, lower, upper)
        h = np.where(central_ok | _inside(x + 2 * h, lower, upper), h,
                     np.where(_inside(x - 2 * h, lower, upper), -h, _wider_room(x, lower, upper) / 2))
        one_sided = ~central_ok
    free = np.flatnonzero(~fixed)
    points = []
    for i in free:
        if one_sided[i]:
            points += [_probe(x, i, h[i]), _probe(x, i, 2 * h[i])]
        else:
            points += [_probe(x, i, h[i]), _probe(x, i, -h[i])]
    values = np.array(list(evaluate(value_of, points)), dtype=np.float64).reshape(-1, 2)
    g = np.full(n, np.nan)
    for j, i in enumerate(free):
        a, b = points[2 * j][i] - x[i], points[2 * j + 1][i] - x[i]
        if one_sided[i]:
            g[i] = (-3 * f0 + 4 * values[j, 0] - values[j, 1]) / b
        else:
            g[i] = (values[j, 0] - values[j, 1]) / (a - b)
    return g


def jacobian(gradient_of: Callable[[NDArray[Any]], NDArray[Any]], x: NDArray[np.float64], method: str, *,
             rel_step: Any = None) -> NDArray[np.float64]:
    """The Hessian as the finite-difference Jacobian of ``gradient_of`` (``"2-point"``, ``"3-point"``, ``"cs"``),
    symmetrized."""
    n = x.size
    h = steps(x, method, rel_step)
    H = np.empty((n, n))
    p: NDArray[Any]
    if method == "2-point":
        g0 = gradient_of(x)
    for i in range(n):
        if method == "cs":
            p = x.astype(np.complex128)
            p[i] += 1j * h[i]
            p.flags.writeable = False
            H[i] = np.imag(gradient_of(p)) / h[i]
        elif method == "2-point":
            p = _probe(x, i, h[i])
            H[i] = (gradient_of(p) - g0) / (p[i] - x[i])
        else:
            p, q = _probe(x, i, h[i]), _probe(x, i, -h[i])
            H[i] = (gradient_of(p) - gradient_of(q)) / (p[i] - q[i])
    return 0.5 * (H + H.T)
