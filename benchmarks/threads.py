"""Where does a second thread pay off?  Step time of the raw kernels by size and thread count.

Run:  python benchmarks/threads.py [--dtype float32] [--repeats 15]

Each size is timed with every thread count interleaved (round-robin), and the
median of the repetitions is reported, so machine noise hits all columns alike.
The kernels themselves choose a team no larger than the chunk rule allows
(see fastopt._parallel), so this shows the effect of that rule.
"""
import argparse
import os
import time

import numpy as np

import fastopt
from fastopt._update_rules import BoundStep

SIZES = [1024, 2048, 3072, 4096, 8192, 16384, 65536, 262144, 1 << 20]


def kernels(n, dtype):
    p, g = np.zeros(n, dtype), np.full(n, 0.5, dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    sgd = BoundStep("sgd", p, g, (None,), fastopt.SGD([p]).param_groups[0].kernel_hyper())
    adam = BoundStep("adam", p, g, (m, v, None), fastopt.Adam([p]).param_groups[0].kernel_hyper())
    return {
        "sgd": lambda t: sgd.run(num_threads=t),
        "adam": lambda t: adam.run(num_threads=t),
    }


def time_once(fn, threads, inner):
    start = time.perf_counter()
    for _ in range(inner):
        fn(threads)
    return (time.perf_counter() - start) / inner


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--max-threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    thread_counts = list(range(1, args.max_threads + 1))
    print(f"fastopt {fastopt.__version__}, {args.dtype}, medians of {args.repeats} interleaved repeats (us/step)")
    print(f"{'kernel':<6} {'n':>9} " + " ".join(f"{t:>3} thr" for t in thread_counts) + "   speed-up")
    for n in SIZES:
        inner = max(1, 200_000 // n)
        for name, fn in kernels(n, np.dtype(args.dtype)).items():
            for t in thread_counts:  # warm up pages and the thread pool
                fn(t)
            samples = {t: [] for t in thread_counts}
            for _ in range(args.repeats):
                for t in thread_counts:
                    samples[t].append(time_once(fn, t, inner))
            med = {t: np.median(s) * 1e6 for t, s in samples.items()}
            cells = " ".join(f"{med[t]:7.1f}" for t in thread_counts)
            print(f"{name:<6} {n:>9} {cells}   {med[1] / med[thread_counts[-1]]:5.2f}x")


if __name__ == "__main__":
    main()
