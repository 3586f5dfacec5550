"""``python -m fastopt bench``: time every update rule against NumPy, torch.optim and the bandwidth roofline.

For each shape (one 16M tensor, 1000 x 10K, 2000 x 64, one 10K tensor) and
rule (SGD with momentum, Adagrad, RMSprop, Adam, AdamW; float32), every
implementation runs from the same data, interleaved repeat by repeat, and
the medians are compared:

* ``fastopt``: the optimizer on a ParamSet holding all tensors (one kernel call);
* ``fastopt-list``: the optimizer on the list of arrays (one call per tensor);
* ``numpy-textbook`` and ``numpy-inplace`` (see :mod:`fastopt.bench.numpy_rules`);
* ``torch-forloop``, ``torch-foreach``, ``torch-fused`` when torch is installed.

The roofline is the time the step's bytes (:func:`cases.bytes_per_element`)
take at the bandwidth of an in-place axpy (``a += s*b``, the access pattern
of every update rule) over as many elements, timed by the runner itself
within each case, interleaved with the implementations.
"""
import os
import platform
import time

import fastopt
from fastopt.bench import cases, report, roofline, runner

YARDSTICK = "axpy"


def run(rules=None, shapes=None, implementations=None, num_threads=None, repeats=7, json_path=None,
        png_path=None, echo=print):
    """Run the benchmark; return its results as a dict (also written to ``json_path`` / ``png_path``)."""
    rules = rules or list(cases.RULES)
    shapes = shapes or list(cases.SHAPES)
    implementations = implementations or list(cases.IMPLEMENTATIONS)
    num_threads = num_threads or fastopt.get_num_threads()
    try:
        import torch

        torch.set_num_threads(num_threads)
        torch_version = torch.__version__
    except ImportError:
        torch_version = None

    with fastopt.threads(num_threads):
        bandwidth = roofline.measure_bandwidth(num_threads)
        policy = fastopt._threads.WAIT_POLICY
        echo(f"fastopt {fastopt.__version__}, {num_threads} threads, float32, medians of {repeats} "
             f"interleaved repeats; axpy bandwidth {bandwidth:.1f} GB/s; torch {torch_version or 'not installed'}; "
             f"OMP_WAIT_POLICY {policy}")
        if torch_version and policy == "PASSIVE" and any(i.startswith("torch") for i in implementations):
            echo("note: torch's OpenMP runtime is the one fastopt loaded, so torch's idle threads sleep too and its "
                 "small steps are slower than with its default; for torch as its users run it, "
                 "use OMP_WAIT_POLICY=ACTIVE python -m fastopt bench")
        echo(report.table([], implementations))
        results = []
        for shape in shapes:
            elements = sum(s[0] for s in cases.SHAPES[shape])
            # The yardstick is timed inside every out-of-cache case, interleaved with the
            # implementations, so machine noise cannot tilt the roofline share.
            heaviest = max(cases.bytes_per_element(rule) for rule in rules)  # the table's own in-cache test
            yardstick = roofline.axpy_step(elements, num_threads) if not report.in_cache(heaviest * elements) else None
            for rule in rules:
                steps = {impl: cases.build(impl, rule, cases.SHAPES[shape]) for impl in implementations}
                steps = {k: v for k, v in steps.items() if v is not None}
                if yardstick is not None:
                    steps[YARDSTICK] = yardstick
                seconds = runner.time_interleaved(steps, repeats)
                bpe = cases.bytes_per_element(rule)
                axpy_seconds = seconds.pop(YARDSTICK, None)
                case_bandwidth = roofline.AXPY_BYTES * elements / axpy_seconds / 1e9 if axpy_seconds else None
                result = {"shape": shape, "rule": rule, "elements": elements, "bytes_per_element": bpe,
                          "bandwidth_gbs": case_bandwidth,
                          "roofline_seconds": roofline.roofline_seconds(bpe, elements, case_bandwidth or bandwidth),
                          "seconds": seconds}
                results.append(result)
                echo(report.table([result], implementations).splitlines()[-1])
                del steps
    payload = {
        "fastopt": fastopt.__version__, "torch": torch_version, "threads": num_threads,
        "bandwidth_gbs": bandwidth, "machine": platform.platform(), "processor": platform.processor(),
        "cpus": os.cpu_count(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "repeats": repeats,
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
