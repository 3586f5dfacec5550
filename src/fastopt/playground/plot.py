"""The playground's figure: trajectories over the contour plot, and loss against step.

matplotlib is optional (``pip install "fastopt[bench]"``) and imported only
when a figure is drawn.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import os
    from types import ModuleType

    from matplotlib.axes import Axes
    from numpy.typing import NDArray

    from fastopt.playground.runner import Trajectory
    from fastopt.playground.surfaces import Surface

    # A surface's coordinates or losses over the plot's grid.
    _Grid = NDArray[np.float64]

__all__ = ["load_pyplot", "plot"]

MARKERS = ("o", "s", "^", "D", "v", "P", "<", "h", ">", "p", "d", "H")
# tab10, then two more that stay distinct from it and from the gold of the minima
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf", "#000000", "#6a3d9a")
GRID_POINTS = 400


def load_pyplot() -> ModuleType | None:
    """matplotlib.pyplot on the non-interactive Agg backend, or None if matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _grid(surface: Surface) -> tuple[_Grid, _Grid, _Grid]:
    xmin, xmax, ymin, ymax = surface.window
    X, Y = np.meshgrid(np.linspace(xmin, xmax, GRID_POINTS), np.linspace(ymin, ymax, GRID_POINTS))
    return X, Y, surface.value(X, Y)


def _levels(surface: Surface, Z: _Grid) -> tuple[_Grid, _Grid]:
    """Contour levels: log-spaced above the minimum for the polynomial valleys, evenly spaced otherwise."""
    if not surface.log_levels:
        return Z, np.linspace(Z.min(), Z.max(), 30)
    floor = surface.min_value if surface.min_value is not None else Z.min()
    height = Z - floor
    top = height.max()
    bottom = max(np.percentile(height, 0.05), top * 1e-9)
    return height, np.logspace(np.log10(bottom), np.log10(top), 30)


def _draw_surface(ax: Axes, surface: Surface) -> None:
    from matplotlib.colors import LogNorm

    X, Y, Z = _grid(surface)
    shown, levels = _levels(surface, Z)
    norm = LogNorm(levels[0], levels[-1]) if surface.log_levels else None
    ax.contourf(X, Y, shown, levels=levels, norm=norm, cmap="Greys", alpha=0.25, extend="both")
    ax.contour(X, Y, shown, levels=levels, norm=norm, colors="0.45", linewidths=0.5, alpha=0.6)
    xmin, xmax, ymin, ymax = surface.window
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    if surface.minima:
        mx, my = np.asarray(surface.minima).T
        ax.plot(mx, my, linestyle="none", marker="*", markersize=17, markerfacecolor="gold", markeredgecolor="k",
                zorder=5, label="known minimum")


def _label(t: Trajectory) -> str:
    text = f"{t.optimizer} (lr={t.lr:g})"
    return text + f", diverged at step {t.diverged_at}" if t.diverged else text


def _widths(count: int) -> NDArray[np.float64]:
    """Line widths from thick (first) to thin (last): paths that overlap show as nested stripes."""
    return np.linspace(5.0, 1.5, count) if count > 1 else np.array([2.0])


def _draw_trajectories(ax: Axes, trajectories: Sequence[Trajectory], colors: Sequence[str]) -> None:
    from matplotlib import patheffects

    outline = [patheffects.withStroke(linewidth=7, foreground="white")]
    for i, (t, color, marker, width) in enumerate(zip(trajectories, colors, MARKERS * 2, _widths(len(trajectories)))):
        xs, ys = t.points.T
        effects = outline if i == 0 else None  # one white outline under the stack sets it off from the contours
        ax.plot(xs, ys, color=color, linewidth=width, marker=marker, markersize=5, markevery=0.1,
                markeredgecolor="k", markeredgewidth=0.5, path_effects=effects, zorder=3 + 0.01 * i)
        ax.plot(xs[-1], ys[-1], linestyle="none", marker="X" if t.diverged else marker, markersize=11,
                color=color, markeredgecolor="k", zorder=6)
    start = trajectories[0].points[0]
    ax.plot(*start, linestyle="none", marker="o", markersize=11, markerfacecolor="white", markeredgecolor="k",
            markeredgewidth=2, zorder=7, label="start")
    ax.plot([], [], linestyle="none", marker="o", markersize=9, color="0.5", markeredgecolor="k", label="end")
    if any(t.diverged for t in trajectories):
        ax.plot([], [], linestyle="none", marker="X", markersize=9, color="0.5", markeredgecolor="k",
                label="last finite point of a diverged run")


def _loss_limits(trajectories: Sequence[Trajectory], log: bool) -> tuple[float, float]:
    """y-limits of the loss panel, set by the runs that did not diverge (a diverged run leaves the panel).

    On a log scale: from half the smallest loss (but at most 15 decades below the start) to twice the
    largest.  On a symlog scale: twice the extremes, away from zero.
    """
    calm = [t.losses for t in trajectories if not t.diverged] or [t.losses[:1] for t in trajectories]
    low, high = min(np.min(losses) for losses in calm), max(np.max(losses) for losses in calm)
    if log:
        return max(low, trajectories[0].losses[0] * 1e-15) / 2, 2 * high
    return (2 * low if low < 0 else low - 1), (2 * high if high > 0 else high + 1)


def _draw_losses(ax: Axes, surface: Surface, trajectories: Sequence[Trajectory], colors: Sequence[str]) -> None:
    for t, color, marker in zip(trajectories, colors, MARKERS * 2):
        ax.plot(np.arange(len(t.losses)), t.losses, color=color, linewidth=1.3, marker=marker, markersize=4,
                markevery=max(1, t.steps // 12), label=_label(t))
    losses = np.concatenate([t.losses for t in trajectories])
    log = bool(np.all(losses > 0))
    ax.set_yscale("log") if log else ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(_loss_limits(trajectories, log))
    if surface.min_value is not None:
        ax.axhline(surface.min_value, color="k", linewidth=0.8, linestyle=":")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("loss per step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def plot(surface: Surface, trajectories: Sequence[Trajectory], path: str | os.PathLike[str],
         plt: ModuleType | None = None) -> None:
    """Save the two-panel figure to ``path``.

    Parameters
    ----------
    surface : Surface
    trajectories : list of Trajectory
        Non-empty; all from the same start point.
    path : str or path-like
        Where to save; the format follows the suffix (PNG for ``.png``).
    plt : module, optional
        matplotlib.pyplot (default: :func:`load_pyplot`).

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    """
    plt = plt or load_pyplot()
    if plt is None:
        raise ImportError("matplotlib is required to draw the playground figure")
    colors = [COLORS[i % len(COLORS)] for i in range(len(trajectories))]
    fig, (ax_map, ax_loss) = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": (1.1, 1)})
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # the symlog scale of a far-out loss overflows harmlessly
            _draw_surface(ax_map, surface)
            _draw_trajectories(ax_map, trajectories, colors)
            ax_map.set_title(f"{surface.name}: f(x, y) = {surface.formula}", fontsize=10)
            ax_map.legend(fontsize=8, loc="upper left", framealpha=0.9)
            _draw_losses(ax_loss, surface, trajectories, colors)
            fig.tight_layout()
            fig.savefig(path, dpi=130)
    finally:
        plt.close(fig)
