"""``python -m fastopt playground``: argument parsing and the command itself."""
from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from fastopt.playground import plot as plotting
from fastopt.playground.report import format_surfaces, format_table, write_csv
from fastopt.playground.runner import DEFAULT_OPTIMIZERS, OPTIMIZERS, run
from fastopt.playground.server import DEFAULT_PORT, serve
from fastopt.playground.surfaces import SURFACES, get_surface

__all__ = ["add_arguments", "main"]

INSTALL_HINT = 'pip install matplotlib  (or: pip install "fastopt[bench]")'


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def parse_start(text: str) -> tuple[float, float]:
    """``"x,y"`` -> ``(x, y)`` as floats."""
    parts = text.split(",")
    try:
        point = tuple(float(p) for p in parts)
    except ValueError:
        point = ()
    if len(point) != 2 or not all(math.isfinite(v) for v in point):
        raise argparse.ArgumentTypeError(f"expected two finite numbers as x,y (e.g. --start=-1.5,2), got {text!r}")
    return point


def parse_optimizers(text: str) -> list[str]:
    """``"adam,sgd"`` -> ``["adam", "sgd"]``; ``"all"`` -> every optimizer."""
    if text.strip() == "all":
        return list(OPTIMIZERS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown optimizer(s) {', '.join(map(repr, unknown or [text]))}; "
                                         f"choose from {', '.join(OPTIMIZERS)} (or all)")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"an optimizer is named twice in {text!r}")
    return names


def parse_lr(text: str) -> float | dict[str, float]:
    """``"0.01"`` -> 0.01 for every optimizer; ``"adam=0.1,sgd=1e-3"`` -> a dict (the others keep their defaults)."""
    if "=" not in text:
        return _positive_float(text)
    rates = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in OPTIMIZERS:
            raise argparse.ArgumentTypeError(f"unknown optimizer {name!r} in --lr; choose from {', '.join(OPTIMIZERS)}")
        rates[name] = _positive_float(value)
    return rates


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the playground's options to an argparse (sub)parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The parser (``python -m fastopt playground``'s subparser); returned.
    """
    parser.add_argument("--surface", default="rosenbrock", choices=list(SURFACES),
                        help="the loss surface (default: rosenbrock; --list describes them)")
    parser.add_argument("--optimizers", type=parse_optimizers, default=list(DEFAULT_OPTIMIZERS),
                        help=f"comma-separated subset of {','.join(OPTIMIZERS)}, or all "
                             f"(default: {','.join(DEFAULT_OPTIMIZERS)})")
    parser.add_argument("--lr", type=parse_lr, default=None,
                        help="one learning rate for every optimizer, or name=lr pairs such as adam=0.1,sgd=1e-3 "
                             "(default: each optimizer's default on the surface; --list shows them)")
    parser.add_argument("--steps", type=_positive_int, default=None,
                        help="steps per optimizer (default: the surface's)")
    parser.add_argument("--start", type=parse_start, default=None, metavar="X,Y",
                        help="start point (default: the surface's); write --start=-1.5,2 when x is negative")
    parser.add_argument("--tol", type=_positive_float, default=1e-3,
                        help="report the first step whose loss is within TOL of the minimum (default: 1e-3)")
    parser.add_argument("--png", default="fastopt-playground.png",
                        help="where to save the figure (needs matplotlib; default: fastopt-playground.png)")
    parser.add_argument("--no-png", action="store_true", help="do not draw the figure")
    parser.add_argument("--csv", default=None,
                        help="also write the trajectories as CSV (optimizer,step,x,y,loss); without matplotlib "
                             "they go to the --png path with a .csv suffix unless this is given")
    parser.add_argument("--list", action="store_true",
                        help="describe the surfaces and default learning rates, then exit")
    page = parser.add_argument_group("interactive page")
    page.add_argument("--serve", action="store_true",
                      help="instead, serve the interactive playground on 127.0.0.1 and open it in a browser "
                           "(--surface and --optimizers preselect its controls; Ctrl-C stops it)")
    page.add_argument("--port", type=_port, default=None,
                      help=f"with --serve: the port (default: {DEFAULT_PORT}; 0: any free port)")
    page.add_argument("--no-browser", action="store_true", help="with --serve: print the URL, open no browser")
    return parser


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return value


def _serve(args: argparse.Namespace, parser_defaults: Mapping[str, Any], out: Callable[[str], object]) -> int:
    """``--serve``: the options that only apply to a static run are refused rather than ignored."""
    static_only = [f"--{name.replace('_', '-')}" for name in ("lr", "steps", "start", "tol", "png", "csv", "no_png")
                   if getattr(args, name) != parser_defaults[name]]
    if static_only:
        print(f"playground: error: {', '.join(static_only)} do not apply with --serve (set them on the page)",
              file=sys.stderr)
        return 2
    query = {}
    if args.surface != parser_defaults["surface"]:
        query["surface"] = args.surface
    if list(args.optimizers) != list(parser_defaults["optimizers"]):
        query["optimizers"] = ",".join(args.optimizers)
    return serve(DEFAULT_PORT if args.port is None else args.port, open_browser=not args.no_browser,
                 query=query, out=out)


def _csv_fallback(png_path: str) -> str:
    return os.path.splitext(png_path)[0] + ".csv"


def main(args: argparse.Namespace, out: Callable[[str], object] = print) -> int:
    """Run the command described by parsed ``args``; return the exit status.

    Prints the summary table; saves the figure (or, without matplotlib,
    says how to install it and writes the CSV instead) and the CSV when
    asked.  Invalid values give a message on stderr and status 2.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser that :func:`add_arguments` set up.
    out : callable, default print
        Where the command's lines go (the errors go to stderr).
    """
    if args.list:
        out(format_surfaces())
        return 0
    if args.serve:
        return _serve(args, _DEFAULTS, out)
    if args.port is not None or args.no_browser:
        print("playground: error: --port and --no-browser apply only with --serve", file=sys.stderr)
        return 2
    try:
        surface = get_surface(args.surface)
        trajectories = run(surface, args.optimizers, lr=args.lr, steps=args.steps, start=args.start)
    except ValueError as exc:
        print(f"playground: error: {exc}", file=sys.stderr)
        return 2
    first = trajectories[0]
    out(f"{surface.name}: f(x, y) = {surface.formula}; start ({first.points[0][0]:g}, {first.points[0][1]:g}), "
        f"{first.steps} steps")
    out(format_table(surface, trajectories, args.tol))
    csv_path = args.csv
    if not args.no_png:
        plt = plotting.load_pyplot()
        if plt is None:
            csv_path = csv_path or _csv_fallback(args.png)
            out(f"matplotlib is not installed, so no figure was drawn; install it with: {INSTALL_HINT}")
        else:
            plotting.plot(surface, trajectories, args.png, plt=plt)
            out(f"figure saved to {args.png}")
    if csv_path:
        write_csv(csv_path, trajectories)
        out(f"trajectories written to {csv_path}")
    return 0


_DEFAULTS = vars(add_arguments(argparse.ArgumentParser()).parse_args([]))
