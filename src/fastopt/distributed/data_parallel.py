"""Data parallel training: gradients averaged over the ranks, parameters broadcast from one."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union

import numpy as np

from fastopt._validation import check_writeable, flag
from fastopt.distributed._agreement import agree
from fastopt.distributed._comm import (
    MPI, MPI_TYPES, averaging_options, check_total, checked_buffers, communicator, packed_collective,
    paramset_signature, root_rank,
)
from fastopt.distributed._partition import shard
from fastopt.paramset import ParamSet

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from fastopt._typing import Array, NDArray, Scalar

    #: What the collectives take: a ParamSet (its ``grad`` or ``data`` buffer), an array, or a list, tuple or
    #: dict of arrays.
    #: A number of samples: a real number >= 0.
    Count = Union[Scalar, np.integer[Any]]
    Buffers = Union[ParamSet, Array, Sequence[Array], Mapping[Any, Array]]


def allreduce_grads(grads: Buffers, comm: MPI.Intracomm | None = None, *, average: bool = True,
                    count: Count | None = None, check: bool = True) -> None:
    """Sum gradients over all ranks, in place, and by default divide by the number of ranks.

    Collective.  For a ParamSet this is one ``Allreduce`` over ``ps.grad``
    (padding included) and one division, after the ranks' agreement (one
    tiny ``Allgather``, see "Collectives and errors" in the module help).

    Parameters
    ----------
    grads : ParamSet, numpy.ndarray, or list, tuple or dict of numpy.ndarray
        A ParamSet (its gradient buffer ``ps.grad``) or gradient arrays
        (float32/float64, C-contiguous, writeable, not overlapping).  In a
        list, arrays of at least :data:`PACK_BYTES` are reduced in place one
        by one and smaller ones packed into one message per dtype.
    comm : mpi4py.MPI.Intracomm, optional
        Defaults to ``MPI.COMM_WORLD``.
    average : bool, default True
        Divide the sum by the number of ranks: if every rank's gradient is
        the mean over an equal number of samples, the result is the mean
        over all of them.  False leaves the plain sum.
    count : float, optional
        The number of samples this rank's gradient is the mean over, when
        ranks hold different numbers (the last, short batch of an epoch):
        each rank's gradient is weighted by its count, and the result is the
        mean over all samples, ``sum(count_r * g_r) / sum(count_r)``.  Needs
        ``average=True``.  A rank with no samples passes 0 (its gradient is
        ignored).  All ranks pass a count, or none does.
    check : bool, default True
        Compare the layout of the gradients too (the ParamSet's tensors, or
        the container, keys and shapes of the arrays), not only the length
        and dtype of each buffer.  ``check=False`` saves building that
        signature in a training loop once the layout is known to agree (see
        also :class:`DataParallel`); all ranks must pass the same ``check``.

    Raises
    ------
    TypeError, ValueError
        On every rank, before any gradient changes, when any rank's
        arguments are invalid (a read-only buffer, a negative count) or
        differ from the others' (``average``, a count given or not, buffer
        lengths, and with ``check`` the layout).
    RuntimeError
        On every rank, when the ranks are in different collective calls.
    """
    comm = communicator(comm)

    def build() -> tuple[Any, ...]:
        check_ = flag("check", check)
        arrays, signature = checked_buffers(grads, "grads", "grad", layout=check_)
        average_, weight, options = averaging_options(average, count)
        return (arrays, average_, weight), (("check", check_),) + signature + options, weight or 0.0

    (arrays, average_, weight), total = agree(comm, "allreduce_grads", build, total=True)
    _allreduce(comm, arrays, average_, weight, total)


def _allreduce(comm: MPI.Intracomm, arrays: Sequence[NDArray[Any]], average: bool, weight: float | None,
               total: float) -> None:
    divisor: float = comm.Get_size() if average else 1
    if weight is not None:
        divisor = check_total(total)
        for array in arrays:
            np.multiply(array, weight, out=array)

    def operate(buffer: NDArray[Any]) -> None:
        comm.Allreduce(MPI.IN_PLACE, [buffer, MPI_TYPES[buffer.dtype]], op=MPI.SUM)
        if divisor != 1:
            np.divide(buffer, divisor, out=buffer)

    packed_collective(arrays, operate)


def broadcast_params(params: Buffers, comm: MPI.Intracomm | None = None, root: int = 0, *, check: bool = True) -> None:
    """Copy the parameters of rank ``root`` into every other rank's, in place.

    Collective.  Call it once after building the model, so that all
    replicas start from the same values.

    Parameters
    ----------
    params : ParamSet, numpy.ndarray, or list, tuple or dict of numpy.ndarray
        A ParamSet (its buffer ``ps.data``) or parameter arrays.
    comm : mpi4py.MPI.Intracomm, optional
        Defaults to ``MPI.COMM_WORLD``.
    root : int, default 0
        The rank whose values are sent; the same on every rank.
    check : bool, default True
        Compare the layout too (see :func:`allreduce_grads`); the root, and
        the length and dtype of each buffer, are compared either way.

    Raises
    ------
    TypeError, ValueError, RuntimeError
        On every rank, before any parameter changes, as for
        :func:`allreduce_grads`.
    """
    comm = communicator(comm)

    def build() -> tuple[Any, ...]:
        check_ = flag("check", check)
        arrays, signature = checked_buffers(params, "params", "data", layout=check_)
        rank = root_rank(comm, root)
        return (arrays, rank), (("check", check_),) + signature + (("root", rank),)

    arrays, rank = agree(comm, "broadcast_params", build)
    packed_collective(arrays, lambda buffer: comm.Bcast([buffer, MPI_TYPES[buffer.dtype]], root=rank))


class DataParallel:
    """One ParamSet trained data-parallel: the layout checked once, then cheap collectives.

    Building it is collective: it checks that every rank's ParamSet has the
    same size, dtype and tensors and (by default) broadcasts rank
    ``root``'s parameters to the others.  Its methods are
    :func:`allreduce_grads` and :func:`broadcast_params` with
    ``check=False``: each call still makes sure, with one tiny exchange,
    that the ranks agree on its options and that no rank's buffer is
    read-only, so a disagreement raises on every rank instead of
    deadlocking.

    Parameters
    ----------
    ps : ParamSet
    comm : mpi4py.MPI.Intracomm, optional
        Defaults to ``MPI.COMM_WORLD``.
    root : int, default 0
    broadcast : bool, default True
        Copy rank ``root``'s parameters into every rank's ``ps.data`` now.

    Attributes
    ----------
    ps : ParamSet
    comm : mpi4py.MPI.Intracomm
    rank, size : int
        This process's rank and the number of ranks.

    Examples
    --------
    >>> dp = DataParallel(ps)                                  # doctest: +SKIP
    >>> opt = fastopt.Adam(ps, lr=1e-3)                        # doctest: +SKIP
    >>> for Xb, yb in fastopt.minibatches(X, y, batch_size=256, seed=epoch):  # doctest: +SKIP
    ...     part = dp.shard(len(Xb))
    ...     compute_grads(ps, Xb[part], yb[part])   # mean over this rank's rows, into ps.grad
    ...     dp.allreduce_grads(count=len(yb[part]))
    ...     opt.step()
    """

    def __init__(self, ps: ParamSet, comm: MPI.Intracomm | None = None, *, root: int = 0,
                 broadcast: bool = True) -> None:
        self.comm = communicator(comm)

        def build() -> tuple[Any, ...]:
            if not isinstance(ps, ParamSet):
                raise TypeError(f"DataParallel needs a ParamSet, got {type(ps).__name__}")
            rank = root_rank(self.comm, root)
            broadcast_ = flag("broadcast", broadcast)
            if broadcast_:
                check_writeable(ps.data, "ParamSet.data")
            unchecked = (("check", False),) + checked_buffers(ps, "grads", "grad", layout=False)[1]  # may refuse ps.grad
            return (rank, broadcast_, unchecked), paramset_signature(ps) + (("root", rank), ("broadcast", broadcast_))

        root, broadcast, self._unchecked = agree(self.comm, "DataParallel", build)
        self.ps = ps
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        if broadcast:
            self.comm.Bcast([ps.data, MPI_TYPES[ps.dtype]], root=root)

    def allreduce_grads(self, *, average: bool = True, count: Count | None = None) -> None:
        """Average (or sum) ``ps.grad`` over the ranks in place: :func:`allreduce_grads` with ``check=False``.

        Collective; all ranks pass the same ``average`` and either all or
        none a ``count``, else every rank raises (and no gradient changes).
        """
        grad = self.ps.grad

        def build() -> tuple[Any, ...]:  # what allreduce_grads(ps, check=False) checks, with its signature: they may be mixed
            if not grad.flags.writeable:
                check_writeable(grad, "ParamSet.grad")
            average_, weight, options = averaging_options(average, count)
            return (average_, weight), self._unchecked + options, weight or 0.0

        (average, weight), total = agree(self.comm, "allreduce_grads", build, total=True)
        _allreduce(self.comm, [grad], average, weight, total)

    def broadcast_params(self, root: int = 0) -> None:
        """Copy rank ``root``'s ``ps.data`` to every rank: :func:`broadcast_params` with ``check=False``."""
        broadcast_params(self.ps, self.comm, root, check=False)

    def shard(self, n: int) -> slice:
        """This rank's slice of ``n`` samples: see :func:`shard`."""
        return shard(n, self.comm)

    def __repr__(self) -> str:
        return f"DataParallel({self.ps!r}, rank={self.rank}, size={self.size})"
