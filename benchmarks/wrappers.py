"""What the wrappers and the schedule-free switch cost next to the step they wrap.

Run:  python benchmarks/wrappers.py [--size 16777216] [--threads 2] [--repeats 9]

One float32 ParamSet per case; every case is timed interleaved with the
others (round-robin, one call per sample) and the median is reported, so
machine noise hits all rows alike.  A median call hides a cost paid every
k-th call (Lookahead's synchronization); the per-call mean of Accumulate
averages its window, since its calls differ by design.  Bytes per element
moved: an AdamW step 28, a lerp pass 12 (a copy-back lerp 16).
"""
import argparse

import numpy as np

import fastopt
from fastopt.bench.runner import time_interleaved
from fastopt.optim.swa_utils import AveragedModel


def cases(n, seed=0):
    """{name: zero-argument callable}: each on its own ParamSet of ``n`` float32 elements."""
    rng = np.random.default_rng(seed)

    def paramset():
        ps = fastopt.ParamSet({"w": n}, dtype=np.float32, align=True)
        ps.data[:] = rng.standard_normal(n).astype(np.float32)
        ps.grad[:] = rng.standard_normal(n).astype(np.float32) * 1e-3
        return ps

    adamw = fastopt.AdamW(paramset(), lr=1e-4)
    accumulate = fastopt.Accumulate(fastopt.AdamW(paramset(), lr=1e-4), every=4)
    lookahead = fastopt.Lookahead(fastopt.AdamW(paramset(), lr=1e-4), k=5)
    ema = AveragedModel(paramset(), decay=0.999)
    ema.update_parameters()
    schedule_free = fastopt.AdamWScheduleFree(paramset(), lr=1e-4)
    schedule_free.step()

    def window():  # one Accumulate window: three folds and an update
        for _ in range(4):
            accumulate.step()

    def switch():
        schedule_free.eval()
        schedule_free.train()

    return {"AdamW step": adamw.step, "Accumulate(every=4), a window of 4 calls": window,
            "Lookahead(k=5), median call": lookahead.step, "EMA update": ema.update_parameters,
            "AdamWScheduleFree step": schedule_free.step, "AdamWScheduleFree eval() + train()": switch}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1 << 24)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    with fastopt.threads(args.threads):
        times = time_interleaved(cases(args.size), args.repeats)
    print(f"float32, {args.size} elements, {args.threads} threads, medians of {args.repeats} interleaved samples")
    for name, seconds in times.items():
        print(f"{name}: {seconds * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
