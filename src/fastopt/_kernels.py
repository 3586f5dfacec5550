"""The build of the update-rule kernels this process uses.

``fastopt._update_rules`` is compiled for the compiler's baseline instruction
set (SSE2 on x86-64); on x86-64, ``fastopt._update_rules_avx2`` and
``fastopt._update_rules_avx512`` are the same source compiled for AVX2 + FMA
and for AVX-512 (contraction stays off, so every build gives the same bits).
The widest build the CPU runs is chosen; ``FASTOPT_KERNELS=baseline``,
``avx2`` or ``avx512`` in the environment forces one (an error where the CPU
cannot run it or the build is missing).
"""
import importlib
import os

from fastopt._openmp_helpers import cpu_runs

# The builds, widest first: "baseline" is fastopt._update_rules, the others fastopt._update_rules_<name>.
BUILDS = ("avx512", "avx2", "baseline")


def load(build):
    """The kernel module of ``build`` (ImportError where it was not compiled)."""
    suffix = "" if build == "baseline" else f"_{build}"
    return importlib.import_module(f"fastopt._update_rules{suffix}")


def available():
    """The builds this installation has and this CPU runs, widest first."""
    out = []
    for build in BUILDS:
        try:
            if cpu_runs(build):
                load(build)
                out.append(build)
        except ImportError:
            pass  # not compiled here (non-x86 machine, old compiler)
    return out


def _choose():
    wanted = os.environ.get("FASTOPT_KERNELS", "auto").strip().lower() or "auto"
    if wanted not in ("auto",) + BUILDS:
        raise ImportError(f"FASTOPT_KERNELS must be auto, {', '.join(BUILDS[::-1])}; not {wanted!r}")
    if wanted == "auto":
        for build in BUILDS:
            if cpu_runs(build):
                try:
                    return build, load(build)
                except ImportError:
                    continue
    if not cpu_runs(wanted):
        raise ImportError(f"FASTOPT_KERNELS={wanted}, but this CPU does not run {wanted} code")
    return wanted, load(wanted)


NAME, kernels = _choose()
BoundStep = kernels.BoundStep
nonfinite_count = kernels.nonfinite_count
