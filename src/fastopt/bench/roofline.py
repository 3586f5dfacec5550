"""The machine's memory bandwidth, measured the STREAM way, and the fastest step it allows."""
import time

import numpy as np

from fastopt._stream import triad

TRIAD_BYTES = 12  # STREAM's count for a = b + s*c in float32: read b and c, write a


def measure_bandwidth(num_threads, n=1 << 25, repeats=9):
    """Median triad bandwidth in GB/s over arrays far larger than any cache (3 x 128 MiB by default)."""
    a, b, c = np.zeros(n, np.float32), np.ones(n, np.float32), np.full(n, 2.0, np.float32)
    triad(a, b, c, 3.0, num_threads)  # fault the pages in
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        triad(a, b, c, 3.0, num_threads)
        times.append(time.perf_counter() - start)
    return TRIAD_BYTES * n / np.median(times) / 1e9


def roofline_seconds(bytes_per_element, elements, bandwidth_gbs):
    """Time a step would take if it only moved its bytes at the measured bandwidth."""
    return bytes_per_element * elements / (bandwidth_gbs * 1e9)
