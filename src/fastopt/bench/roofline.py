"""The machine's memory bandwidth, measured STREAM-style, and the fastest step it allows.

Two yardsticks, both from :mod:`fastopt._stream` and driven like the update rules:

* the in-place axpy (``a += s*b``, 12 bytes per float32 element), one bandwidth for every rule;
* the same-stream kernel of a rule (:func:`same_stream_step`): one read-only array and one
  written array per array the rule writes (parameter and state), same element type, trivial
  math; its time over the rule's elements is that rule's honest roofline.  More streams in
  flight draw more bandwidth than the axpy's two, so the axpy roofline flatters a rule with
  state (Adam reads 4 and writes 3 arrays).

Other storage types (bfloat16 parameters, bfloat16 or int8 state, a float32 master copy) move
arrays of several sizes.  :func:`layout_stream_step` takes the step's own arrays
(``cases.step_arrays``: each one's bytes, and whether it is written) and streams over arrays of
exactly those byte sizes, as float32 elements: one stream call per size, reading the gradient (or,
where a size has no read-only array, its first written array in place of it: ``w += s * w`` reads
and writes ``w`` once) and writing the others.  It moves the step's bytes through the same number
of arrays, but the sizes run one after the other, each with fewer streams in flight than the
rule's single pass.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from fastopt._stream import axpy, stream

if TYPE_CHECKING:
    from fastopt.bench.cases import StepArray

AXPY_BYTES = 12  # a += s*b in float32: read a and b, write a


def measure_bandwidth(num_threads: int, n: int = 1 << 25, repeats: int = 9) -> float:
    """Median in-place axpy bandwidth in GB/s over arrays far larger than any cache (2 x 128 MiB by default)."""
    a, b = np.zeros(n, np.float32), np.ones(n, np.float32)
    axpy(a, b, 1e-3, num_threads)  # fault the pages in
    times: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        axpy(a, b, 1e-3, num_threads)
        times.append(time.perf_counter() - start)
    return AXPY_BYTES * n / np.median(times) / 1e9


def axpy_step(elements: int, num_threads: int) -> Callable[[], None]:
    """A zero-argument callable running the in-place axpy over ``elements`` float32 values."""
    a, b = np.zeros(elements, np.float32), np.ones(elements, np.float32)
    return lambda: axpy(a, b, 1e-3, num_threads)


def roofline_seconds(bytes_per_element: float, elements: int, bandwidth_gbs: float) -> float:
    """Time a step would take if it only moved its bytes at the measured bandwidth."""
    return bytes_per_element * elements / (bandwidth_gbs * 1e9)


def same_stream_arrays(states: int) -> tuple[int, int]:
    """(arrays read, arrays written) by a rule with ``states`` state arrays per parameter:
    it reads the gradient, the parameter and each state, and writes back all but the gradient."""
    return 2 + states, 1 + states


def same_stream_bytes(states: int, itemsize: int = 4) -> int:
    read, written = same_stream_arrays(states)
    return itemsize * (read + written)


def same_stream_step(elements: int, states: int, num_threads: int,
                     dtype: type[np.float32] | type[np.float64] = np.float32) -> Callable[[], None]:
    """A zero-argument callable running the same-stream kernel of a rule with ``states`` state
    arrays over ``elements`` values of ``dtype`` (one contiguous array each, like a ParamSet)."""
    _, written = same_stream_arrays(states)
    read = np.ones(elements, dtype)
    targets = [np.zeros(elements, dtype) for _ in range(written)]  # first touch: by the kernel's threads
    return lambda: stream(read, targets, 1e-3, num_threads)


def layout_stream_calls(arrays: Iterable[StepArray]) -> list[tuple[int, str | None, list[str]]]:
    """How :func:`layout_stream_step` streams over ``arrays`` (``[(key, nbytes, written)]``):
    ``[(nbytes, read_key or None, [written keys])]``, one stream call each (read None: the first
    written array is read in place of a read-only one)."""
    sizes: dict[int, tuple[list[str], list[str]]] = {}
    for key, nbytes, is_written in arrays:
        sizes.setdefault(nbytes, ([], []))[1 if is_written else 0].append(key)
    calls: list[tuple[int, str | None, list[str]]] = []
    for nbytes, (read, written) in sizes.items():
        if len(read) > 1 or not written:
            raise ValueError(f"no stream call reads {read} and writes {written}")
        for k in range(0, len(written), 4):  # the kernel writes 1 to 4 arrays a call
            calls.append((nbytes, read[0] if read and k == 0 else None, written[k:k + 4]))
    return calls


def layout_stream_bytes(arrays: Iterable[StepArray]) -> int:
    """Bytes the calls of :func:`layout_stream_calls` move: each read array once, each written one twice."""
    return sum(nbytes * ((1 if read else 0) + 2 * len(written))
               for nbytes, read, written in layout_stream_calls(arrays))


def layout_stream_step(arrays: Iterable[StepArray], num_threads: int) -> Callable[[], None]:
    """A zero-argument callable streaming over float32 arrays of the byte sizes of ``arrays`` (see
    :func:`layout_stream_calls`), one stream call per size."""
    plan: list[tuple[NDArray[np.float32], list[NDArray[np.float32]]]] = []
    for nbytes, read, written in layout_stream_calls(arrays):
        n = -(-nbytes // 4)
        targets = [np.zeros(n, np.float32) for _ in written]  # first touch: by the kernel's threads
        plan.append((np.ones(n, np.float32) if read else targets[0], targets))

    def step() -> None:
        for r, targets in plan:
            stream(r, targets, 1e-3, num_threads)
    return step
