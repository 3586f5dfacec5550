"""The build of the kernels this process uses.

``fastopt._update_rules`` (and ``fastopt._tensorwise``, the tensor-wise
rules' passes) is compiled for the compiler's baseline instruction set (SSE2
on x86-64); on x86-64, ``fastopt._update_rules_avx2`` and
``fastopt._update_rules_avx512`` are the same source compiled for AVX2 + FMA
and for AVX-512 (contraction stays off, so every build gives the same bits),
and so are ``fastopt._tensorwise_avx2`` and ``_avx512``.
The widest build the CPU runs is chosen; ``FASTOPT_KERNELS=baseline``,
``avx2`` or ``avx512`` in the environment forces one (an error where the CPU
cannot run it or the build is missing).
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fastopt._openmp_helpers import cpu_runs

if TYPE_CHECKING:
    from types import ModuleType

# The builds, widest first: "baseline" is fastopt._update_rules, the others fastopt._update_rules_<name>.
BUILDS = ("avx512", "avx2", "baseline")


def load(build: str, module: str = "fastopt._update_rules") -> ModuleType:
    """The kernel ``module`` of ``build`` (ImportError where it was not compiled)."""
    suffix = "" if build == "baseline" else f"_{build}"
    return importlib.import_module(f"{module}{suffix}")


# The kernel modules every build has.
MODULES = ("fastopt._update_rules", "fastopt._tensorwise")


def _load_all(build: str) -> ModuleType:
    """Import every module of ``build`` (ImportError where one is missing); return the update rules'."""
    return [load(build, module) for module in MODULES][0]


def _runnable() -> Iterator[str]:
    """The builds this installation has and this CPU runs, widest first, each imported as it is found."""
    for build in BUILDS:
        if cpu_runs(build):
            try:
                _load_all(build)
            except ImportError:
                continue  # not compiled here: a non-x86 machine, FASTOPT_MARCH, or a compiler that cannot target it
            yield build


def available() -> list[str]:
    """The builds this installation has and this CPU runs, widest first."""
    return list(_runnable())


def _choose() -> tuple[str, ModuleType]:
    wanted = os.environ.get("FASTOPT_KERNELS", "auto").strip().lower() or "auto"
    if wanted == "auto":
        build = next(_runnable())  # the widest only: the others are not imported (the baseline is always there)
        return build, load(build)
    if wanted not in BUILDS:
        raise ImportError(f"FASTOPT_KERNELS must be auto, baseline, avx2 or avx512, not {wanted!r}")
    if not cpu_runs(wanted):
        raise ImportError(f"FASTOPT_KERNELS={wanted}, but this CPU does not run {wanted} code")
    try:
        return wanted, _load_all(wanted)
    except ImportError as exc:
        raise ImportError(f"FASTOPT_KERNELS={wanted}, but this installation has no {wanted} build of the "
                          "kernels (built with FASTOPT_MARCH, on a machine other than x86-64, or by a compiler "
                          f"that cannot target {wanted}): {exc}") from exc


if TYPE_CHECKING:  # every build has the baseline's interface: its stub, _update_rules.pyi
    from fastopt import _update_rules

    NAME: str
    kernels = _update_rules
else:
    NAME, kernels = _choose()
BoundStep = kernels.BoundStep
needed = kernels.needed
nonfinite_count = kernels.nonfinite_count
# The storage conversions the stored kernels use (csrc/fastopt_storage.h), on whole arrays.
bf16_round = kernels.bf16_round
bf16_widen = kernels.bf16_widen
quantize_blockwise = kernels.quantize_blockwise
dequantize_blockwise = kernels.dequantize_blockwise
rounding_key = kernels.rounding_key
lerp = kernels.lerp  # start = lerp(start, end, weight) over whole arrays in any storage
assign = kernels.assign  # start[...] = end over whole arrays, converting, on the kernels' threads
if TYPE_CHECKING:  # (as kernels: the stub of the baseline, _tensorwise.pyi)
    from fastopt import _tensorwise

    tensorwise = _tensorwise
else:
    tensorwise = load(NAME, "fastopt._tensorwise")  # the passes of fastopt._rules.TENSOR_RULES, same build
