"""Build and runtime facts, as printed by ``python -m fastopt info``."""
from __future__ import annotations

import platform
from collections.abc import Mapping
from typing import Any

from fastopt import _kernels, _openmp_helpers, _threads


def build_info() -> dict[str, Any]:
    """Return a dict describing how fastopt was built and how it will run.

    Keys: ``version``, ``python``, ``platform``, ``compiler``, ``flags``
    (extra compiler flags), ``openmp`` (bool), ``openmp_version`` (the
    ``_OPENMP`` date, 0 without OpenMP), ``simd`` and ``simd_bytes`` (widest
    instruction set the compiler targeted), ``chunk_bytes``,
    ``min_chunks_per_thread``, ``cache_line_bytes``, ``processors``, ``num_threads``, ``wait_policy`` (the
    ``OMP_WAIT_POLICY`` fastopt's OpenMP runtime was loaded with: PASSIVE unless the environment set one), and the update-rule
    build in use: ``kernels`` ("baseline", "avx2" or "avx512"), ``kernel_simd``, ``kernel_flags``, and
    ``kernel_builds`` (the builds this installation has that this CPU runs, widest first).
    """
    from fastopt import __version__

    info: dict[str, Any] = {"version": __version__, "python": platform.python_version(), "platform": platform.platform()}
    info.update(_openmp_helpers.build_info())
    info["num_threads"] = _threads.get_num_threads()
    info["wait_policy"] = _threads.WAIT_POLICY
    info["kernels"] = _kernels.NAME
    info["kernel_simd"] = _kernels.kernels.BUILD["simd"]
    info["kernel_flags"] = _kernels.kernels.BUILD["flags"]
    info["kernel_builds"] = _kernels.available()
    return info


def format_info(info: Mapping[str, Any]) -> str:
    """Human-readable lines for :func:`build_info`'s dict."""
    openmp = f"on (OpenMP {info['openmp_version']})" if info["openmp"] else "OFF (serial build)"
    rows = [
        ("fastopt", info["version"]),
        ("python", f"{info['python']} on {info['platform']}"),
        ("compiler", info["compiler"]),
        ("build flags", info["flags"] or "(none)"),
        ("openmp", openmp),
        ("threads", f"{info['num_threads']} of {info['processors']} processors; idle threads "
                    f"{'sleep' if info['wait_policy'] == 'PASSIVE' else 'spin'} "
                    f"(OMP_WAIT_POLICY={info['wait_policy']})"),
        ("simd", f"{info['simd']} ({info['simd_bytes'] * 8}-bit vectors) baseline"),
        ("kernels", f"{info['kernels']} build in use ({info['kernel_simd']}); this CPU runs "
                    f"{', '.join(info['kernel_builds'])} (FASTOPT_KERNELS={'|'.join(_kernels.BUILDS[::-1])} to choose)"),
        ("chunks", f"{info['chunk_bytes']} bytes, at least {info['min_chunks_per_thread']} per thread "
                   f"({info['cache_line_bytes']}-byte cache lines)"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
