"""Where does a second thread pay off?  Step time of the raw kernels by size and thread count.

Run:  python benchmarks/threads.py [--dtype float32] [--repeats 15]

Each size is timed with every thread count interleaved (round-robin), and the
median of the repetitions is reported, so machine noise hits all columns alike.
``--after-matmul`` runs a small NumPy matrix product before each step, as a
training loop does: NumPy's BLAS threads keep spinning after it and compete
with fastopt's threads for the cores.
The kernels themselves choose a team no larger than the chunk rule allows
(see fastopt._parallel), so this shows the effect of that rule.
"""
import argparse
import os
import time

import numpy as np

import fastopt
from fastopt._update_rules import BoundStep

SIZES = [4096, 32768, 131072, 262144, 1 << 20, 1 << 22]


def kernels(n, dtype):
    p, g = np.zeros(n, dtype), np.full(n, 0.5, dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    sgd = BoundStep("sgd", p, g, (None,), fastopt.SGD([p]).param_groups[0].kernel_hyper())
    adam = BoundStep("adam", p, g, (m, v, None), fastopt.Adam([p]).param_groups[0].kernel_hyper())
    return {
        "sgd": lambda t: sgd.run(num_threads=t),
        "adam": lambda t: adam.run(num_threads=t),
    }


def time_once(fn, threads, inner, matmul=None):
    """Seconds per kernel call; with ``matmul``, one (untimed) small matrix product before each call."""
    if matmul is None:
        start = time.perf_counter()
        for _ in range(inner):
            fn(threads)
        return (time.perf_counter() - start) / inner
    total = 0.0
    for _ in range(inner):
        matmul()
        start = time.perf_counter()
        fn(threads)
        total += time.perf_counter() - start
    return total / inner


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--max-threads", type=int, default=os.cpu_count())
    parser.add_argument("--after-matmul", action="store_true",
                        help="run a small NumPy matrix product (64x64 @ 64x128) before each kernel call, as a "
                             "training loop does: BLAS threads left spinning compete with fastopt's")
    args = parser.parse_args()
    matmul = None
    if args.after_matmul:
        a, b = np.ones((64, 64), np.float32), np.ones((64, 128), np.float32)
        matmul = lambda: a @ b
    thread_counts = list(range(1, args.max_threads + 1))
    print(f"fastopt {fastopt.__version__}, {args.dtype}, medians of {args.repeats} interleaved repeats (us/step)"
          + (", a matrix product before each step" if matmul else ""))
    print(f"{'kernel':<6} {'n':>9} " + " ".join(f"{t:>3} thr" for t in thread_counts) + "   speed-up")
    for n in SIZES:
        inner = max(1, 200_000 // n) if matmul is None else max(3, 20_000 // n)
        for name, fn in kernels(n, np.dtype(args.dtype)).items():
            for t in thread_counts:  # warm up pages and the thread pool
                fn(t)
            samples = {t: [] for t in thread_counts}
            for _ in range(args.repeats):
                for t in thread_counts:
                    samples[t].append(time_once(fn, t, inner, matmul))
            med = {t: np.median(s) * 1e6 for t, s in samples.items()}
            cells = " ".join(f"{med[t]:7.1f}" for t in thread_counts)
            print(f"{name:<6} {n:>9} {cells}   {med[1] / med[thread_counts[-1]]:5.2f}x")


if __name__ == "__main__":
    main()
