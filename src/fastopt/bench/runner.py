"""Interleaved timing: every implementation of a case is timed in turn, repeat after repeat."""
from __future__ import annotations

import gc
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fastopt.bench.cases import Step


def calibrate(step: Step, target_seconds: float = 2e-3, most: int = 10_000) -> int:
    """How many steps make one sample last about ``target_seconds``."""
    start = time.perf_counter()
    step()
    once = max(time.perf_counter() - start, 1e-7)
    return int(min(most, max(1, target_seconds / once)))


def sampled_rounds(repeats: int, most: int | None) -> set[int]:
    """The rounds (of ``repeats``) in which an implementation sampled at most ``most`` times is timed:
    spread over the run, first and last included."""
    if most is None or most >= repeats:
        return set(range(repeats))
    return {int(round(x)) for x in np.linspace(0, repeats - 1, max(1, most)).tolist()}


def time_interleaved(steps: Mapping[str, Step], repeats: int,
                     most_repeats: Mapping[str, int] | None = None) -> dict[str, float]:
    """Median seconds per step for each callable in ``steps`` (a dict), sampled round-robin.

    Round-robin sampling means a noisy stretch of the machine hits every
    implementation alike, so the ratios between them stay meaningful.
    ``most_repeats`` (name -> count) caps the samples of slow implementations:
    one step per sample, in rounds spread over the run.
    """
    most_repeats = most_repeats or {}
    for step in steps.values():  # warm-up: first-touch page faults, lazy state, thread pools
        step()
    inner = {name: 1 if name in most_repeats else calibrate(step) for name, step in steps.items()}
    rounds = {name: sampled_rounds(repeats, most_repeats.get(name)) for name in steps}
    samples: dict[str, list[float]] = {name: [] for name in steps}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for k in range(repeats):
            for name, step in steps.items():
                if k not in rounds[name]:
                    continue
                n = inner[name]
                start = time.perf_counter()
                for _ in range(n):
                    step()
                samples[name].append((time.perf_counter() - start) / n)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: float(np.median(s)) for name, s in samples.items()}
