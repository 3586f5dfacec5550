"""The objective's BLAS threads and L-BFGS's own threads, on the same cores.

NumPy's BLAS keeps its worker threads spinning after each call in case more
work comes (OpenBLAS for about 0.1 s, MKL for 0.2 s).  An L-BFGS iteration
calls the objective, whose ``x @ y`` wakes them, and then at once runs
fastopt's passes over the history on a team of threads: on a machine with
few cores the spinning threads take cores from the team, which waits for its
slowest member (at n = 10**6 on 2 cores, the peers case of
benchmarks/second_order.py, 31.5 ms of overhead per iteration instead of
24.9).

When those passes are what an iteration costs, one BLAS thread costs the
objective little and ends the contention.  So with ``blas_threads="auto"``
(the default) L-BFGS watches its first ``WATCHED`` iterations and, if its
time outside the objective was at least ``RATIO`` times the time inside (the
objective took at most a fifth of the iteration), limits BLAS to one thread
for the rest of the solve; with an integer it limits BLAS to that many
threads from the start; with False it leaves BLAS alone.  The limit is set
through threadpoolctl, which knows OpenBLAS, MKL and BLIS, and the previous
limits come back when the solve ends, however it ends.

Three consequences, documented where the option is:

* the limit is process-wide while it lasts: BLAS calls made by other Python
  threads, or by the callback, run on one thread too; of solves running at
  the same time in several threads only the first to limit BLAS does so (the
  others leave it alone), so that their restores cannot leave a limit behind;
* BLAS's own reductions (``x @ y``) round differently on another number of
  threads, so once "auto" limits BLAS the objective's values may change in
  their last bits, and whether it does depends on measured times: for runs
  that repeat bit for bit, pass False or an integer;
* L-BFGS-B (with bounds) does not watch: its compact-form products are BLAS
  calls of its own, which one thread would slow; an integer limits it too.

Nothing is limited when the history passes run on one thread anyway (small
n, or ``fastopt.set_num_threads(1)``): a spinning thread then has a core of
its own to spin on.
"""
from __future__ import annotations

import threading
from typing import Any, Literal, Union

import numpy as np

from fastopt._openmp_helpers import team_size
from fastopt._validation import positive_option

try:
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped, import-not-found, unused-ignore]  # (threadpoolctl ships no types)
except ImportError:  # a core dependency, but the solve must not need it
    threadpool_limits = None

WATCHED = 10  # iterations timed before "auto" decides
RATIO = 4.0   # "auto" limits BLAS when time outside the objective >= RATIO x time inside it

_lock = threading.Lock()
_holder: BlasThreads | None = None  # the BlasThreads whose limit is in force, if any


def checked_policy(value: object) -> Union[str, int]:
    """``blas_threads`` validated: "auto", False, or a positive integer (as every count option is checked)."""
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"option blas_threads must be 'auto', False or a positive integer; got {value!r}")
        return value
    if value is False or value is np.False_:
        return False
    threads: int = positive_option("blas_threads", value, integer=True)
    if threadpool_limits is None:
        raise ImportError(f"blas_threads={threads} needs threadpoolctl (pip install threadpoolctl)")
    return threads


def passes_are_parallel(n: int, threads: int) -> bool:
    """Whether a pass over n float64 elements runs on more than one thread."""
    return team_size(n, 8, threads) > 1


class BlasThreads:
    """The BLAS thread limit of one solve (see the module docstring); a context manager.

    Call :meth:`iteration` once per iteration with the iteration's wall time
    and the part of it spent in the objective.  ``limited`` is the limit in
    force (None: BLAS left as it was).
    """

    def __init__(self, policy: Union[str, int], parallel: bool) -> None:
        self.policy = policy
        self.limited: int | None = None
        self._limiter: Any = None
        self._inside = self._outside = 0.0
        self._seen = 0
        self._watching = policy == "auto" and parallel and threadpool_limits is not None

    def __enter__(self) -> BlasThreads:
        if self.policy is not False and self.policy != "auto":
            self._limit(self.policy)
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        global _holder
        if self._limiter is not None:
            with _lock:
                self._limiter.restore_original_limits()
                self._limiter = None
                _holder = None
        return False

    def iteration(self, seconds: float, objective_seconds: float) -> None:
        if not self._watching:
            return
        self._inside += objective_seconds
        self._outside += seconds - objective_seconds
        self._seen += 1
        if self._seen >= WATCHED:
            self._watching = False
            if self._outside >= RATIO * self._inside:
                self._limit(1)

    def _limit(self, threads: Any) -> None:
        global _holder
        with _lock:
            if _holder is not None:  # another solve holds a limit: leave BLAS to it (module docstring)
                return
            self._limiter = threadpool_limits(limits=threads, user_api="blas")
            self.limited = threads
            _holder = self
