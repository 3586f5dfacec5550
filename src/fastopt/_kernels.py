"""The build of the update-rule kernels this process uses.

``fastopt._update_rules`` is compiled for the compiler's baseline instruction
set (SSE2 on x86-64); on x86-64, ``fastopt._update_rules_avx2`` is the same
source compiled for AVX2 (contraction stays off, so both give the same bits).
The AVX2 build is chosen when the CPU supports it; ``FASTOPT_KERNELS=baseline``
(or ``avx2``) in the environment forces a choice.
"""
import os

from fastopt._openmp_helpers import cpu_has_avx2


def _load(choice):
    if choice == "baseline":
        from fastopt import _update_rules as module
    else:
        from fastopt import _update_rules_avx2 as module
    return module


def _choose():
    wanted = os.environ.get("FASTOPT_KERNELS", "auto").strip().lower() or "auto"
    if wanted not in ("auto", "baseline", "avx2"):
        raise ImportError(f"FASTOPT_KERNELS must be auto, baseline or avx2, not {wanted!r}")
    if wanted == "baseline":
        return "baseline", _load("baseline")
    if not cpu_has_avx2():
        if wanted == "avx2":
            raise ImportError("FASTOPT_KERNELS=avx2, but this CPU does not run AVX2 + FMA code")
        return "baseline", _load("baseline")
    try:
        return "avx2", _load("avx2")
    except ImportError:
        if wanted == "avx2":
            raise
        return "baseline", _load("baseline")  # built without the AVX2 variant (non-x86 or old compiler)


NAME, kernels = _choose()
BoundStep = kernels.BoundStep
RULES = kernels.RULES
nonfinite_count = kernels.nonfinite_count
