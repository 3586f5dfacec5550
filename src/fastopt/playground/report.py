"""Text output of the playground: the summary table, the CSV of trajectories and the surface list."""
from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import IO, TYPE_CHECKING, cast

from fastopt.playground.runner import OPTIMIZERS
from fastopt.playground.surfaces import SURFACES

if TYPE_CHECKING:
    import os

    from fastopt.playground.runner import Trajectory
    from fastopt.playground.surfaces import Surface

__all__ = ["format_surfaces", "format_table", "write_csv"]

CSV_COLUMNS = ("optimizer", "step", "x", "y", "loss")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = [header, *rows]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def format_table(surface: Surface, trajectories: Iterable[Trajectory], tol: float) -> str:
    """The summary table: one row per trajectory, then one line per diverged run.

    Parameters
    ----------
    surface : Surface
    trajectories : list of Trajectory
    tol : float
        A step counts as converged when its loss is below
        ``surface.min_value + tol``; without known minima the column is "-".

    Returns
    -------
    str
    """
    header = ("optimizer", "lr", "final loss", "distance to minimum", f"steps to loss < {_target_text(surface, tol)}")
    rows, notes = [], []
    for t in trajectories:
        reached = None if surface.min_value is None else t.steps_to(surface.min_value + tol)
        final = f"{t.final_loss:.4g}" + (" (diverged)" if t.diverged else "")
        rows.append((t.optimizer, f"{t.lr:g}", final, _fmt(surface.distance_to_minimum(t.final_point), ".3g"),
                     _fmt(reached, "d")))
        if t.diverged_at is not None:  # t.diverged, spelled out for mypy: diverged_at is an int below
            notes.append(f"{t.optimizer} diverged: step {t.diverged_at} of {t.steps} produced a non-finite value; "
                         f"its trajectory stops at step {t.diverged_at - 1} (try a smaller --lr)")
    return "\n".join([_table(header, rows), *notes])


def _target_text(surface: Surface, tol: float) -> str:
    if surface.min_value is None:
        return "n/a"
    return f"{surface.min_value + tol:g}"


def write_csv(path: str | os.PathLike[str] | IO[str], trajectories: Iterable[Trajectory]) -> None:
    """Write every recorded point: columns optimizer, step, x, y, loss (full float precision).

    Parameters
    ----------
    path : str, path-like or text file
        A file name, or a text file opened with ``newline=""`` (which is left open).
    trajectories : iterable of Trajectory
    """
    if hasattr(path, "write"):
        _write_rows(cast("IO[str]", path), trajectories)  # mypy's hasattr does not narrow the union
        return
    with open(path, "w", newline="") as f:
        _write_rows(f, trajectories)


def _write_rows(f: IO[str], trajectories: Iterable[Trajectory]) -> None:
    writer = csv.writer(f)
    writer.writerow(CSV_COLUMNS)
    for t in trajectories:
        for step, ((x, y), loss) in enumerate(zip(t.points, t.losses)):
            writer.writerow((t.optimizer, step, repr(float(x)), repr(float(y)), repr(float(loss))))


def format_surfaces() -> str:
    """``--list``: every surface with its formula, defaults and minima, then the default learning rates."""
    blocks = []
    for s in SURFACES.values():
        minima = ", ".join(f"({x:.4g}, {y:.4g})" for x, y in s.minima) or "none (unbounded below)"
        xmin, xmax, ymin, ymax = s.window
        blocks.append(f"{s.name}: f(x, y) = {s.formula}\n"
                      f"    {s.note}\n"
                      f"    start ({s.start[0]:g}, {s.start[1]:g}), {s.steps} steps, "
                      f"window x in [{xmin:g}, {xmax:g}], y in [{ymin:g}, {ymax:g}]\n"
                      f"    minima: {minima}")
    header = ("default lr", *SURFACES)
    rows = [(name, *(f"{s.lrs[name]:g}" for s in SURFACES.values())) for name in OPTIMIZERS]
    return "\n\n".join(blocks) + "\n\n" + _table(header, rows)
