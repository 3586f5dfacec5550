"""The machine's memory bandwidth, measured STREAM-style, and the fastest step it allows.

Two yardsticks, both from :mod:`fastopt._stream` and driven like the update rules:

* the in-place axpy (``a += s*b``, 12 bytes per float32 element), one bandwidth for every rule;
* the same-stream kernel of a rule (:func:`same_stream_step`): one read-only array and one
  written array per array the rule writes (parameter and state), same element type, trivial
  math; its time over the rule's elements is that rule's honest roofline.  More streams in
  flight draw more bandwidth than the axpy's two, so the axpy roofline flatters a rule with
  state (Adam reads 4 and writes 3 arrays).
"""
import time

import numpy as np

from fastopt._stream import axpy, stream

AXPY_BYTES = 12  # a += s*b in float32: read a and b, write a


def measure_bandwidth(num_threads, n=1 << 25, repeats=9):
    """Median in-place axpy bandwidth in GB/s over arrays far larger than any cache (2 x 128 MiB by default)."""
    a, b = np.zeros(n, np.float32), np.ones(n, np.float32)
    axpy(a, b, 1e-3, num_threads)  # fault the pages in
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        axpy(a, b, 1e-3, num_threads)
        times.append(time.perf_counter() - start)
    return AXPY_BYTES * n / np.median(times) / 1e9


def axpy_step(elements, num_threads):
    """A zero-argument callable running the in-place axpy over ``elements`` float32 values."""
    a, b = np.zeros(elements, np.float32), np.ones(elements, np.float32)
    return lambda: axpy(a, b, 1e-3, num_threads)


def roofline_seconds(bytes_per_element, elements, bandwidth_gbs):
    """Time a step would take if it only moved its bytes at the measured bandwidth."""
    return bytes_per_element * elements / (bandwidth_gbs * 1e9)


def same_stream_arrays(states):
    """(arrays read, arrays written) by a rule with ``states`` state arrays per parameter:
    it reads the gradient, the parameter and each state, and writes back all but the gradient."""
    return 2 + states, 1 + states


def same_stream_bytes(states, itemsize=4):
    read, written = same_stream_arrays(states)
    return itemsize * (read + written)


def same_stream_step(elements, states, num_threads, dtype=np.float32):
    """A zero-argument callable running the same-stream kernel of a rule with ``states`` state
    arrays over ``elements`` values of ``dtype`` (one contiguous array each, like a ParamSet)."""
    _, written = same_stream_arrays(states)
    read = np.ones(elements, dtype)
    targets = [np.zeros(elements, dtype) for _ in range(written)]  # first touch: by the kernel's threads
    return lambda: stream(read, targets, 1e-3, num_threads)
