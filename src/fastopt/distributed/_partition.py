"""How the ranks split the work: samples (:func:`shard`) and a flat buffer (:func:`shard_bounds`).

Neither is a collective: they read the rank and size of a communicator,
or only their arguments.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fastopt._validation import FLOAT_DTYPES, integer
from fastopt.distributed._comm import communicator
from fastopt.paramset import CACHE_LINE

if TYPE_CHECKING:
    from mpi4py import MPI
    from numpy.typing import DTypeLike


def _block(n: int, parts: int, index: int) -> tuple[int, int]:
    """[start, stop) of block ``index`` when ``n`` items are cut into ``parts`` near-equal blocks."""
    base, extra = divmod(n, parts)
    start = index * base + min(index, extra)
    return start, start + base + (index < extra)


def shard_bounds(size: int, nranks: int, dtype: DTypeLike = np.float64) -> list[tuple[int, int]]:
    """Where :class:`ShardedOptimizer` cuts a flat buffer: one ``(lo, hi)`` per rank.

    The buffer is counted in cache lines (64 bytes: 8 float64 or 16 float32
    elements, the last line perhaps partial).  The lines are dealt out in
    contiguous blocks, the first ``lines % nranks`` ranks taking one line
    more than the others, so

    * rank ``r`` owns elements ``lo <= i < hi``; the slices are in rank
      order, do not overlap and cover ``[0, size)``;
    * every ``lo`` is a multiple of a cache line (a ParamSet's buffers start
      on one), so no two ranks' slices share a line;
    * slice lengths differ by at most one cache line, except that the last
      non-empty slice may end early at ``size``;
    * when the buffer has fewer lines than there are ranks, the last ranks
      get empty slices (``lo == hi == size``).

    The bounds depend on ``size``, ``nranks`` and the dtype only.

    Parameters
    ----------
    size : int
        Elements in the buffer (``ParamSet.size``).
    nranks : int
        Number of ranks, at least 1.
    dtype : {numpy.float64, numpy.float32}
        Element type, which sets the elements per cache line.

    Returns
    -------
    list of (int, int)

    Examples
    --------
    >>> shard_bounds(100, 3)
    [(0, 40), (40, 72), (72, 100)]
    >>> shard_bounds(10, 3, "float32")
    [(0, 10), (10, 10), (10, 10)]
    """
    size = integer("size", size, 0)
    nranks = integer("nranks", nranks, 1)
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    unit = max(CACHE_LINE // dtype.itemsize, 1)
    lines = -(-size // unit)
    return [(min(start * unit, size), min(stop * unit, size))
            for start, stop in (_block(lines, nranks, r) for r in range(nranks))]


def shard(n: int, comm: MPI.Intracomm | None = None) -> slice:
    """This rank's part of ``n`` samples: a ``slice`` for indexing a batch.

    ``range(n)`` is cut into ``comm.size`` contiguous blocks in rank order,
    whose lengths differ by at most one (the first ``n % size`` ranks take
    one more); a rank gets an empty slice when ``n < size``.  Not a
    collective: it only reads the rank and size of ``comm``.

    Parameters
    ----------
    n : int
        Number of samples (rows of the batch every rank holds).
    comm : mpi4py.MPI.Intracomm, optional
        Defaults to ``MPI.COMM_WORLD``.

    Returns
    -------
    slice

    Examples
    --------
    Every rank draws the same batches (same seed) and keeps its part:

    >>> for Xb, yb in fastopt.minibatches(X, y, batch_size=256, seed=epoch):  # doctest: +SKIP
    ...     part = shard(len(Xb), comm)
    ...     loss_and_grad(ps, Xb[part], yb[part])
    ...     allreduce_grads(ps, comm, count=len(yb[part]))
    ...     opt.step()
    """
    comm = communicator(comm)
    start, stop = _block(integer("n", n, 0), comm.Get_size(), comm.Get_rank())
    return slice(start, stop)
