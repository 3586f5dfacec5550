"""The hyperparameters a playground user may set, besides the learning rate, and how they are checked.

Each optimizer exposes the knobs of :data:`EXPOSED` (its learning rate always); their defaults are the
fastopt class's own, overridden by the playground's (:data:`fastopt.playground.runner.OPTIMIZERS`).  The
ranges are the playground's, narrower than fastopt's where fastopt's are open-ended, so that a typo (or an
absurd request to the server) is refused with a message instead of running: fastopt's constructors
still check every value the playground lets through.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import TypedDict, cast

import fastopt
from fastopt.playground.runner import OPTIMIZERS

__all__ = ["EXPOSED", "KNOBS", "LR", "Knob", "check_hyperparameters", "defaults", "describe"]


@dataclass(frozen=True)
class Knob:
    """One hyperparameter of the playground: its range, and how the page's slider spans it.

    Attributes
    ----------
    name : str
        The keyword argument of the fastopt class.
    label : str
        What the page calls it.
    low, high : float
        Accepted values: ``low <= v <= high``, except that ``low`` itself is excluded when
        ``low_open`` and ``high`` when ``high_open``.
    scale : {"log", "linear"}
        How the page's slider moves between ``slider[0]`` and ``slider[1]``.
    slider : tuple of float
        The slider's span (a number typed next to it may go beyond, up to the accepted range).
    """

    name: str
    label: str
    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    scale: str = "linear"
    slider: tuple[float, float] = (0.0, 1.0)

    def range_text(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"

    def check(self, optimizer: str, value: object) -> float:
        """``value`` as a float; ValueError naming the optimizer and the knob when it is out of range."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{self.name} of {optimizer} must be a number, got {value!r}")
        value = float(value)
        inside = (math.isfinite(value) and (value > self.low if self.low_open else value >= self.low)
                  and (value < self.high if self.high_open else value <= self.high))
        if not inside:
            raise ValueError(f"{self.name} of {optimizer} must be in {self.range_text()}, got {value!r}")
        return value

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "label": self.label, "low": self.low, "high": self.high,
                "low_open": self.low_open, "high_open": self.high_open, "scale": self.scale,
                "slider": list(self.slider)}


class _Range(TypedDict):
    """The keyword arguments of :class:`Knob` that ``_UNIT`` holds."""

    low: float
    high: float
    high_open: bool
    slider: tuple[float, float]


LR = Knob("lr", "learning rate", 0.0, 100.0, low_open=True, scale="log", slider=(1e-5, 10.0))
_UNIT: _Range = {"low": 0.0, "high": 1.0, "high_open": True, "slider": (0.0, 0.9999)}
# ``betas`` is a tuple: each of its entries is checked against the "beta" knob.
KNOBS = {k.name: k for k in (
    LR,
    Knob("momentum", "momentum", **_UNIT),
    Knob("beta", "beta", **_UNIT),
    Knob("alpha", "alpha (smoothing)", **_UNIT),
    Knob("rho", "rho", **_UNIT),
    Knob("weight_decay", "weight decay", 0.0, 1.0, slider=(0.0, 0.1)),
)}

_BETAS = ("betas", "weight_decay")
# playground optimizer -> the knobs it exposes besides lr, in the page's order
EXPOSED = {
    "sgd": ("momentum", "weight_decay"),
    "momentum": ("momentum", "weight_decay"),
    "nesterov": ("momentum", "weight_decay"),
    "adagrad": ("weight_decay",),
    "rmsprop": ("alpha", "momentum", "weight_decay"),
    "adam": _BETAS,
    "adamw": _BETAS,
    "adamax": _BETAS,
    "nadam": _BETAS,
    "radam": _BETAS,
    "adadelta": ("rho", "weight_decay"),
    "lion": _BETAS,
    "adopt": _BETAS,
    "ademamix": _BETAS,
    "sgd-schedulefree": ("momentum", "weight_decay"),
    "adamw-schedulefree": _BETAS,
    "lamb": _BETAS,
    "lars": ("momentum", "weight_decay"),
    "adafactor": ("weight_decay",),
    "prodigy": _BETAS,
    "muon": ("momentum", "weight_decay"),
}


def defaults(name: str) -> dict[str, float | list[float]]:
    """``{knob: default}`` of the knobs ``name`` exposes (lr excluded): the class's defaults, then the playground's.

    Parameters
    ----------
    name : str
        A key of :data:`fastopt.playground.OPTIMIZERS`.
    """
    cls_name, kwargs = OPTIMIZERS[name]
    signature = inspect.signature(getattr(fastopt, cls_name))
    values: dict[str, float | list[float]] = {}
    for knob in EXPOSED[name]:
        value = kwargs.get(knob, signature.parameters[knob].default)
        values[knob] = [float(v) for v in value] if knob == "betas" else float(value)
    return values


def check_hyperparameters(name: str, values: object) -> dict[str, float | tuple[float, ...]]:
    """Check the knobs ``values`` (a dict, lr excluded) given to optimizer ``name``; return them as floats.

    Parameters
    ----------
    name : str
        A key of :data:`fastopt.playground.OPTIMIZERS`.
    values : dict
        ``{knob: value}`` for some of the knobs :data:`EXPOSED` lists for ``name``
        (``betas`` as a list).

    Raises
    ------
    ValueError
        For a knob ``name`` does not expose, a value of the wrong type, length or range; the message
        names the optimizer and the knob.
    """
    if not isinstance(values, dict):
        raise ValueError(f"the hyperparameters of {name} must be an object, got {values!r}")
    unknown = sorted(set(values) - set(EXPOSED[name]))
    if unknown:
        raise ValueError(f"{name} has no hyperparameter {', '.join(map(repr, unknown))} here; "
                         f"it takes lr and {', '.join(EXPOSED[name])}")
    checked: dict[str, float | tuple[float, ...]] = {}
    for knob, value in values.items():
        if knob == "betas":
            size = len(cast("list[float]", defaults(name)["betas"]))  # betas: the one list-valued knob
            if not isinstance(value, (list, tuple)) or len(value) != size:
                raise ValueError(f"betas of {name} must be a list of {size} numbers, got {value!r}")
            checked[knob] = tuple(KNOBS["beta"].check(name, v) for v in value)
        else:
            checked[knob] = KNOBS[knob].check(name, value)
    return checked


def describe(name: str) -> dict[str, object]:
    """What the page needs to know of optimizer ``name``: its class and knobs with their defaults.

    Parameters
    ----------
    name : str
        A key of :data:`fastopt.playground.OPTIMIZERS`.
    """
    cls_name, _ = OPTIMIZERS[name]
    return {"name": name, "class": f"fastopt.{cls_name}", "hyperparameters": defaults(name)}
