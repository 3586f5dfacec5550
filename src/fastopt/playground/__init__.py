"""The optimizer playground: fastopt's optimizers on classic 2-D test surfaces.

Each optimizer starts from the same point of a surface (Rosenbrock, Beale,
Himmelblau, a saddle, a tilted ravine, Rastrigin) and takes a fixed number
of steps with the surface's analytic gradient; the playground records every
point and loss, prints a summary, and draws the paths over the contour plot
next to the loss curves (with matplotlib) or writes them as CSV.

>>> from fastopt import playground
>>> paths = playground.run("himmelblau", ["adam", "momentum"], steps=300)
>>> [round(t.final_loss, 6) for t in paths]
[0.0, 0.0]

From the command line: ``python -m fastopt playground --surface beale
--optimizers all``; ``--list`` describes the surfaces and the default
learning rates.  ``python -m fastopt playground --serve`` serves the
interactive page instead, whose steps the server takes with these same
functions (:mod:`fastopt.playground.server` documents its JSON API).

Learning rates
--------------
Without ``--lr`` every optimizer runs with its default on the surface
(:attr:`Surface.lrs`, listed by ``--list``).  They were chosen from a sweep
over 1-2-5 grids so that each optimizer makes steady progress over the
surface's default number of steps without diverging, erring on the side of
showing the optimizer's character (SGD's zigzag in the ravine, RAdam's
plain-momentum warmup) rather than tuning each to its best.  Divergence is
handled, not avoided: a run stops at its first non-finite gradient, point
or loss, and the table says so.
"""
from __future__ import annotations

from fastopt.playground.cli import add_arguments, main
from fastopt.playground.plot import plot
from fastopt.playground.report import format_table, write_csv
from fastopt.playground.runner import DEFAULT_OPTIMIZERS, OPTIMIZERS, Trajectory, resolve_lrs, run, run_one
from fastopt.playground.surfaces import SURFACES, Surface, get_surface

__all__ = [
    "DEFAULT_OPTIMIZERS",
    "OPTIMIZERS",
    "SURFACES",
    "Surface",
    "Trajectory",
    "add_arguments",
    "format_table",
    "get_surface",
    "main",
    "plot",
    "resolve_lrs",
    "run",
    "run_one",
    "write_csv",
]
