"""Process-wide thread count for fastopt's kernels.

The count starts as the OpenMP runtime's default, which honours
``OMP_NUM_THREADS`` as it was when fastopt was first imported, and otherwise
is the number of processors.  Kernels cap it further: work is cut into fixed
4 KiB chunks and a thread is woken only when each thread gets at least 64
of them, so arrays under 512 KiB (131072 float32 elements) run on the
calling thread.  Results are bit-identical for any thread count.

The setting is global to the process (like ``torch.set_num_threads``), not
per Python thread.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import SupportsIndex


def _load_openmp_runtime() -> str:
    """Import the first OpenMP extension with idle threads set to sleep; return the policy in effect.

    fastopt's steps run between NumPy's matrix products, whose BLAS threads keep
    spinning for a while after each one; if fastopt's idle threads spun too, the
    two pools starved each other (README, "Threads").  The OpenMP runtime reads
    OMP_WAIT_POLICY once, when it loads: fastopt sets PASSIVE for that moment
    unless the environment already says something, then restores the
    environment (child processes do not inherit it).  The runtime is shared by
    every library linking ``libgomp.so.1`` (torch's wheel ships one): if one
    loaded it before fastopt, the policy it started with stays; if fastopt
    loads it, the others' idle threads sleep too.
    """
    given = os.environ.get("OMP_WAIT_POLICY")
    if given is not None:
        from fastopt import _openmp_helpers  # noqa: F401
        return given.upper()
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        from fastopt import _openmp_helpers  # noqa: F401
    finally:
        del os.environ["OMP_WAIT_POLICY"]
    return "PASSIVE"


WAIT_POLICY = _load_openmp_runtime()

from fastopt._openmp_helpers import openmp_enabled, runtime_max_threads  # noqa: E402
from fastopt._validation import integer  # noqa: E402

_OPENMP: bool = openmp_enabled()
MAX_THREADS = 2**31 - 1  # the kernels take a C int
_num_threads: int = runtime_max_threads()


def get_num_threads() -> int:
    """Return the number of threads kernels may use (1 when built without OpenMP)."""
    return _num_threads


def set_num_threads(n: SupportsIndex) -> int:
    """Set the number of threads kernels may use; return the previous value.

    Parameters
    ----------
    n : int
        From 1 to 2**31 - 1.  Without OpenMP the kernels always use 1 thread and a
        larger ``n`` is ignored with a ``RuntimeWarning``.

    Raises
    ------
    TypeError
        If ``n`` is not an integer.
    ValueError
        If ``n`` is less than 1.
    """
    global _num_threads
    count = integer("set_num_threads: n", n, expected="an int")
    if not 1 <= count <= MAX_THREADS:
        raise ValueError(f"set_num_threads: n must be between 1 and {MAX_THREADS}, got {count}")
    previous = _num_threads
    if not _OPENMP:
        if count > 1:
            warnings.warn("fastopt was built without OpenMP; kernels run on 1 thread", RuntimeWarning, stacklevel=2)
        count = 1
    _num_threads = count
    return previous


@contextmanager
def threads(n: SupportsIndex) -> Iterator[None]:
    """Context manager that sets the thread count and restores it on exit.

    Parameters
    ----------
    n : int
        The thread count inside the ``with`` block (as for :func:`set_num_threads`).

    Examples
    --------
    >>> import fastopt
    >>> with fastopt.threads(1):
    ...     fastopt.get_num_threads()
    1
    """
    previous = set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(previous)
