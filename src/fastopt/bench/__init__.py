"""``python -m fastopt bench``: time every update rule against NumPy, torch.optim and the bandwidth roofline.

For each shape (one 16M tensor, 1000 x 10K, 2000 x 64, one 10K tensor) and
rule (SGD with momentum, Adagrad, RMSprop, Adam, AdamW; float32), every
implementation runs from the same data, interleaved repeat by repeat, and
the medians are compared:

* ``fastopt``: the optimizer on a ParamSet holding all tensors (one kernel call);
* ``fastopt-list``: the optimizer on the list of arrays (one call per tensor);
* ``numpy-textbook`` and ``numpy-inplace`` (see :mod:`fastopt.bench.numpy_rules`);
* ``torch-forloop``, ``torch-foreach``, ``torch-fused`` when torch is installed;
* ``deepspeed``: DeepSpeedCPUAdam (Adam and AdamW) when DeepSpeed is installed
  (``pip install deepspeed ninja py-cpuinfo``; it compiles its op on first use).
* ``bnb-adam8bit``: bitsandbytes' 8-bit Adam on the CPU (int8 rows only) when
  bitsandbytes is installed; about a second per 16M step, so it is sampled in
  a few of the repeats only (``cases.MOST_REPEATS``).

Adam also gets a row for each storage type of ``cases.STORAGES`` (float32
parameters with bfloat16 or int8 state; bfloat16 parameters with bfloat16 or
int8 state, plain, with a float32 master copy, or rounded stochastically) on
the same shapes: fastopt and fastopt-list step in that storage, the peers run
their own float32 (or 8-bit) step.  Each row has its bytes per element, counted
from the storage (``cases.step_arrays``), and its ratio to the fastest peer.

A peer that is not installed is skipped, with a note saying why.

Two rooflines, both timed by the runner itself within each case, interleaved
with the implementations:

* the same-stream roofline: for each rule, a STREAM-style kernel that reads and
  writes as many arrays of the same element type as the rule does (Adam
  float32: reads 4, writes 3, 28 bytes per element) with trivial math, over
  the same elements (:func:`roofline.same_stream_step`); a rule cannot beat
  it by much, in or out of cache;
* the axpy roofline: the step's bytes (:func:`cases.bytes_per_element`) at
  the bandwidth of an in-place axpy (``a += s*b``) over as many elements,
  only for cases larger than the caches.  Two streams draw less bandwidth
  than seven, so this one can read over 100%.
"""
from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import fastopt
from fastopt.bench import cases, report, roofline, runner

if TYPE_CHECKING:
    from fastopt.bench.cases import Step

YARDSTICK = "axpy"
SAME_STREAM = "same-stream"


def run(rules: Sequence[str] | None = None, shapes: Sequence[str] | None = None,
        implementations: Sequence[str] | None = None, num_threads: int | None = None, repeats: int = 7,
        json_path: str | None = None, png_path: str | None = None, echo: Callable[[str], object] = print,
        storages: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; return its results as a dict (also written to ``json_path`` / ``png_path``).

    ``storages``: names of ``cases.STORAGES`` (default: all); a rule of ``cases.STORAGE_RULES`` gets a
    row for each, every other rule its float32 row only.
    """
    rules = rules or list(cases.CONFIGS)
    storages = storages or list(cases.STORAGES)
    shapes = shapes or list(cases.SHAPES)
    implementations = implementations or list(cases.IMPLEMENTATIONS)
    num_threads = num_threads or fastopt.get_num_threads()
    torch_version: str | None
    try:
        import torch

        torch.set_num_threads(num_threads)
        torch_version = torch.__version__
    except ImportError:
        torch_version = None

    skipped = {impl: cases.unavailable(impl) for impl in implementations}
    skipped = {impl: why for impl, why in skipped.items() if why}
    implementations = [impl for impl in implementations if impl not in skipped]

    with fastopt.threads(num_threads):
        bandwidth = roofline.measure_bandwidth(num_threads)
        policy = fastopt._threads.WAIT_POLICY
        echo(f"fastopt {fastopt.__version__}, {num_threads} threads, storage params/state, medians of {repeats} "
             f"interleaved repeats; axpy bandwidth {bandwidth:.1f} GB/s; torch {torch_version or 'not installed'}; "
             f"OMP_WAIT_POLICY {policy}")
        for impl, why in skipped.items():
            echo(f"note: {impl} skipped: {why}")
        for impl, most in cases.MOST_REPEATS.items():
            if impl in implementations and most < repeats:
                echo(f"note: {impl} is slow: sampled in {most} of the {repeats} repeats, one step each")
        if torch_version and policy == "PASSIVE" and any(i.startswith(("torch", "deepspeed")) for i in implementations):
            echo("note: torch's OpenMP runtime is the one fastopt loaded, so torch's (and DeepSpeed's) idle threads "
                 "sleep too and their small steps are slower than with their default; for torch as its users run "
                 "it, use OMP_WAIT_POLICY=ACTIVE python -m fastopt bench")
        echo(report.table([], implementations))
        results: list[dict[str, Any]] = []
        for shape in shapes:
            elements = sum(s[0] for s in cases.SHAPES[shape])
            # The yardstick is timed inside every out-of-cache case, interleaved with the
            # implementations, so machine noise cannot tilt the roofline share.
            heaviest = max(cases.bytes_per_element(rule) for rule in rules)  # the table's own in-cache test
            yardstick = roofline.axpy_step(elements, num_threads) if not report.in_cache(heaviest * elements) else None
            for rule, storage in cases.rows(rules, storages):
                built = {impl: cases.build(impl, rule, cases.SHAPES[shape], storage=storage)
                         for impl in implementations}
                steps: dict[str, Step] = {k: v for k, v in built.items() if v is not None}
                del built
                arrays = cases.step_arrays(rule, storage, elements)
                # the same-stream kernel is one pass: no yardstick for the rules that cross memory several times
                single_pass = rule not in cases.PASSES
                if single_pass:
                    steps[SAME_STREAM] = roofline.layout_stream_step(arrays, num_threads)
                if yardstick is not None:
                    steps[YARDSTICK] = yardstick
                seconds = runner.time_interleaved(steps, repeats, cases.MOST_REPEATS)
                bpe = cases.moved_bytes(arrays) / elements
                axpy_seconds = seconds.pop(YARDSTICK, None)
                stream_seconds = seconds.pop(SAME_STREAM, None)
                case_bandwidth = roofline.AXPY_BYTES * elements / axpy_seconds / 1e9 if axpy_seconds else None
                result: dict[str, Any] = {"shape": shape, "rule": rule, "storage": storage, "elements": elements,
                          "bytes_per_element": bpe, "bandwidth_gbs": case_bandwidth,
                          "roofline_seconds": roofline.roofline_seconds(bpe, elements, case_bandwidth or bandwidth),
                          "same_stream": None, "seconds": seconds}
                if single_pass:
                    assert stream_seconds is not None  # timed with the others: steps[SAME_STREAM] above
                    calls = roofline.layout_stream_calls(arrays)
                    read = sum((r is not None) + len(w) for _, r, w in calls)  # the written arrays are read too
                    written = sum(len(w) for _, r, w in calls)
                    result["same_stream"] = {"read": read, "written": written, "seconds": stream_seconds,
                                             "calls": [[nbytes, len(w), r is not None] for nbytes, r, w in calls],
                                             "bandwidth_gbs": bpe * elements / stream_seconds / 1e9}
                results.append(result)
                echo(report.table([result], implementations).splitlines()[-1])
                del steps
    payload = {
        "fastopt": fastopt.__version__, "torch": torch_version, "threads": num_threads,
        "bandwidth_gbs": bandwidth, "machine": platform.platform(), "processor": platform.processor(),
        "cpus": os.cpu_count(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "repeats": repeats,
        "skipped": skipped,
        "build": fastopt.build_info(), "results": results,
    }
    if json_path:
        report.write_json(json_path, payload)
        echo(f"\nwrote {json_path}")
    if png_path:
        if report.write_png(png_path, results, implementations):
            echo(f"wrote {png_path}")
        else:
            echo("matplotlib is not installed: no chart (pip install matplotlib)")
    return payload
