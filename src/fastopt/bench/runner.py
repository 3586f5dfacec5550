"""Interleaved timing: every implementation of a case is timed in turn, repeat after repeat."""
import gc
import time

import numpy as np


def calibrate(step, target_seconds=2e-3, most=10_000):
    """How many steps make one sample last about ``target_seconds``."""
    start = time.perf_counter()
    step()
    once = max(time.perf_counter() - start, 1e-7)
    return int(min(most, max(1, target_seconds / once)))


def time_interleaved(steps, repeats):
    """Median seconds per step for each callable in ``steps`` (a dict), sampled round-robin.

    Round-robin sampling means a noisy stretch of the machine hits every
    implementation alike, so the ratios between them stay meaningful.
    """
    for step in steps.values():  # warm-up: first-touch page faults, lazy state, thread pools
        step()
    inner = {name: calibrate(step) for name, step in steps.items()}
    samples = {name: [] for name in steps}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for name, step in steps.items():
                n = inner[name]
                start = time.perf_counter()
                for _ in range(n):
                    step()
                samples[name].append((time.perf_counter() - start) / n)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: float(np.median(s)) for name, s in samples.items()}
