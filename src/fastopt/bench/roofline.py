"""The machine's memory bandwidth, measured STREAM-style, and the fastest step it allows."""
import time

import numpy as np

from fastopt._stream import axpy

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
