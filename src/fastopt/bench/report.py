"""Tables, JSON and an optional chart for benchmark results."""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fastopt.bench import cases

if TYPE_CHECKING:
    import os

IN_CACHE_BYTES = 64 << 20  # working sets below this may stay in this machine's 32 MiB L3 and 1 MiB L2s


def in_cache(working_set_bytes: float) -> bool:
    return working_set_bytes < IN_CACHE_BYTES


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def table(results: Iterable[Mapping[str, Any]], implementations: Sequence[str]) -> str:
    """Markdown table: one row per (shape, rule), step times, fastopt's speed-up and roofline shares.

    "% of same-stream" is the same-stream kernel's time (the rule's arrays, trivial math) over
    fastopt's; "% of axpy roofline" is the step's bytes at the axpy bandwidth over fastopt's time.
    "storage" is params/state (``cases.STORAGES``), "B/elem" the bytes fastopt's step moves per element,
    "x vs fastest peer" the fastest other library's time in the row (``cases.PEERS``) over fastopt's.
    """
    others = [i for i in implementations if i != "fastopt"]
    head = (["shape", "rule", "storage", "B/elem", "fastopt", "same-stream", "% of same-stream",
             "% of axpy roofline"] + others + [f"x vs {i}" for i in others] + ["x vs fastest peer"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        t = r["seconds"]
        fast = t.get("fastopt")
        if in_cache(r["bytes_per_element"] * r["elements"]):
            share = "in cache"  # the DRAM roofline does not bound a step that never leaves the caches
        else:
            share = f"{100 * r['roofline_seconds'] / fast:.0f}%" if fast else "-"
        stream = (r.get("same_stream") or {}).get("seconds")
        stream_share = f"{100 * stream / fast:.0f}%" if fast and stream else "-"
        speedups = [f"{t[i] / fast:.2f}x" if fast and t.get(i) else "-" for i in others]
        peers = {i: t[i] for i in cases.PEERS if t.get(i)}
        best = min(peers, key=peers.__getitem__) if peers else None
        vs_best = f"{peers[best] / fast:.2f}x ({best})" if fast and best else "-"
        bpe = r["bytes_per_element"]
        row = ([r["shape"], r["rule"], r.get("storage", cases.FLOAT32), f"{bpe:.4g}", _fmt(fast), _fmt(stream),
                stream_share, share] + [_fmt(t.get(i)) for i in others] + speedups + [vs_best])
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_json(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> None:
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=2)


def write_png(path: str | os.PathLike[str], results: Sequence[Mapping[str, Any]],
              implementations: Sequence[str]) -> bool:
    """Bar chart of step time per implementation for each case (log scale); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels = [f"{r['rule']} {r.get('storage', cases.FLOAT32)}\n{r['shape']}" for r in results]
    width = 0.8 / len(implementations)
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(labels)), 5))
    for k, impl in enumerate(implementations):
        xs = [i + k * width for i, r in enumerate(results) if r["seconds"].get(impl)]
        ys = [r["seconds"][impl] * 1e3 for r in results if r["seconds"].get(impl)]
        ax.bar(xs, ys, width, label=impl)
    ax.set_yscale("log")
    ax.set_ylabel("ms per step (log)")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))])
    ax.set_xticklabels(labels, fontsize=7)
    ax.legend(fontsize=7, ncol=4)
    ax.set_title("fastopt bench: time per optimizer step (storage: params/state)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
