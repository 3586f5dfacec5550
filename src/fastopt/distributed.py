"""Training on several processes over MPI: gradient averaging and a sharded optimizer.

This module needs mpi4py and an MPI library (``pip install "fastopt[mpi]"``
plus, where no system MPI is installed, ``pip install mpich``); the rest of
fastopt never imports it.  Launch a script on every rank with ``mpiexec``::

    mpiexec -n 4 python -m mpi4py train.py

(``-m mpi4py`` makes an uncaught exception on one rank abort all of them,
instead of leaving the others waiting in a collective forever.)

Data parallel
-------------
Every rank holds the whole model and computes gradients on its own part
of each batch (:func:`shard` picks that part).  Because a
:class:`~fastopt.ParamSet` keeps all gradients in one buffer, averaging them
over the ranks is a single ``Allreduce`` (:func:`allreduce_grads`); every
rank then takes the same optimizer step and the replicas stay identical.
:func:`broadcast_params` copies rank 0's initial parameters to the others,
and :class:`DataParallel` bundles the three for one ParamSet.

Sharded optimizer (ZeRO stage 1)
--------------------------------
:class:`ShardedOptimizer` splits the ParamSet's flat buffer into one
contiguous slice per rank (:func:`shard_bounds`).  Each rank keeps
optimizer state (Adam's moments, say) for its slice only, so the state
memory per rank falls by the number of ranks.  A step reduce-scatters the
gradients (each rank receives the average over all ranks of its slice),
updates its slice with a plain fastopt optimizer, and all-gathers the
parameters into every rank's ``ps.data``.  The update rules are
elementwise, so the result is the step one optimizer on the whole buffer
would take with the averaged gradient.

Collectives and errors
----------------------
The functions and methods here are collective unless their docstrings
say otherwise (:func:`shard_bounds`, :func:`shard`, ``zero_grad``, the
hyperparameter and per-rank state accessors): all ranks of ``comm`` must
call them, in the same order.  Arguments are checked on all ranks together
before the first collective that moves data (one small ``allgather``): a
ParamSet whose size, dtype or tensors differ between ranks, different
hyperparameters, or an invalid argument on any single rank raises the
same error on every rank instead of deadlocking or mixing unrelated
buffers.  The hot paths (:meth:`ShardedOptimizer.step`,
:meth:`DataParallel.allreduce_grads`, and :func:`allreduce_grads` with
``check=False``) skip that exchange; they rely on the checks done when
the object was built.

Limits
------
:class:`ShardedOptimizer` takes a whole ParamSet: no parameter groups.
A sharded step moves the arena twice (reduce-scatter, then all-gather),
about the traffic of one ``Allreduce``.  Buffers of more than 2**31 - 1
elements need mpi4py 4 and an MPI-4 library (large counts).
"""
from collections.abc import Mapping

import numpy as np

try:
    from mpi4py import MPI
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        'fastopt.distributed needs mpi4py: pip install "fastopt[mpi]" (and an MPI library, for instance '
        "pip install mpich, unless the machine has one)"
    ) from exc

from fastopt._kernels import nonfinite_count
from fastopt._threads import get_num_threads
from fastopt._validation import FLOAT_DTYPES, check_disjoint, check_float_array, check_writeable
from fastopt.optim._hyper import flag
from fastopt.optim.optimizer import Optimizer
from fastopt.paramset import CACHE_LINE, ParamSet, _aligned_zeros

__all__ = [
    "DataParallel",
    "ShardedOptimizer",
    "allreduce_grads",
    "broadcast_params",
    "shard",
    "shard_bounds",
]

#: Arrays of a list smaller than this many bytes travel packed together (one message per dtype).
PACK_BYTES = 1 << 20

_MPI_TYPES = {np.dtype(np.float32): MPI.FLOAT, np.dtype(np.float64): MPI.DOUBLE}


# --------------------------------------------------------------------------- partitions
def _block(n, parts, index):
    """[start, stop) of block ``index`` when ``n`` items are cut into ``parts`` near-equal blocks."""
    base, extra = divmod(n, parts)
    start = index * base + min(index, extra)
    return start, start + base + (index < extra)


def _count(name, value, low=0):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def shard_bounds(size, nranks, dtype=np.float64):
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
    size = _count("size", size)
    nranks = _count("nranks", nranks, low=1)
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    unit = max(CACHE_LINE // dtype.itemsize, 1)
    lines = -(-size // unit)
    return [(min(start * unit, size), min(stop * unit, size))
            for start, stop in (_block(lines, nranks, r) for r in range(nranks))]


def shard(n, comm=None):
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
    comm = _comm(comm)
    start, stop = _block(_count("n", n), comm.Get_size(), comm.Get_rank())
    return slice(start, stop)


# --------------------------------------------------------------------------- agreement
def _comm(comm):
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
        raise TypeError(f"comm must be an mpi4py intracommunicator such as MPI.COMM_WORLD, got {comm!r}")
    return comm


def _short(value, limit=120):
    text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _agree(comm, what, build):
    """Run ``build()`` on every rank and make sure all ranks got the same answer, or all raise.

    ``build`` returns ``(result, signature)``, the signature a tuple of
    ``(field, value)`` pairs that must be equal on all ranks.  One
    ``allgather`` exchanges the signatures and any exception: an exception
    on one rank is raised on all of them (its own on that rank; a TypeError,
    ValueError or RuntimeError naming that rank on the others), and the
    first field that differs between ranks raises ValueError everywhere.
    """
    result = signature = error = None
    try:
        result, signature = build()
    except Exception as exc:  # noqa: BLE001 - re-raised below, after the other ranks know
        error = exc
    report = None if error is None else (type(error).__name__, str(error))
    gathered = comm.allgather((signature, report))
    failed = [(rank, report) for rank, (_, report) in enumerate(gathered) if report is not None]
    if failed:
        if error is not None:
            raise error
        rank, (kind, message) = failed[0]
        _raise_remote(what, rank, kind, message)
    first = gathered[0][0]
    for index, (field, _) in enumerate(first):
        values = [signature[index][1] for signature, _ in gathered]
        if any(v != values[0] for v in values):
            by_value = {}
            for rank, value in enumerate(values):
                by_value.setdefault(repr(value), (value, []))[1].append(rank)
            parts = [f"{_short(value)} on rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"
                     for value, ranks in by_value.values()]
            raise ValueError(f"{what}: {field} differs across ranks ({'; '.join(parts)})")
    return result


def _raise_remote(what, rank, kind, message):
    """Raise, on a rank where nothing failed, the error that rank ``rank`` raised."""
    cls = {"TypeError": TypeError, "ValueError": ValueError}.get(kind, RuntimeError)
    raise cls(f"{what} failed on rank {rank}: {kind}: {message}")


def _root(comm, root):
    rank = _count("root", root)
    if rank >= comm.Get_size():
        raise ValueError(f"root must be a rank of comm (0 to {comm.Get_size() - 1}), got {rank}")
    return rank


def _paramset_signature(ps):
    layout = tuple((name, ps.shapes[name], ps.slices[name].start) for name in ps.names)
    return (("ParamSet size", ps.size), ("ParamSet dtype", ps.dtype.name),
            ("ParamSet tensors (names, shapes, offsets)", layout))


def _buffers(obj, what, attr):
    """1-D views of the arrays ``obj`` names (``ps.<attr>`` for a ParamSet) and their signature."""
    if isinstance(obj, ParamSet):
        flat = getattr(obj, attr)
        check_writeable(flat, f"ParamSet.{attr}")
        return [flat], _paramset_signature(obj)
    if isinstance(obj, np.ndarray):
        items, kind = [(None, obj)], "ndarray"
    elif isinstance(obj, Mapping):
        items, kind = list(obj.items()), "dict"
    elif isinstance(obj, (list, tuple)):
        items, kind = list(enumerate(obj)), "list"
    else:
        raise TypeError(f"{what} must be a ParamSet, a numpy.ndarray, or a list, tuple or dict of them; "
                        f"got {type(obj).__name__}")
    labels, views = [], []
    for key, array in items:
        label = what if key is None else f"{what}[{key!r}]"
        check_float_array(array, label)
        check_writeable(array, label)
        labels.append(label)
        views.append(array.view(np.ndarray).reshape(-1))
    check_disjoint(views, labels, what)
    keys = [key for key, _ in items] if kind == "dict" else len(items)
    shapes = tuple((tuple(array.shape), array.dtype.name) for _, array in items)
    return views, (("container", kind), ("keys" if kind == "dict" else "length", keys),
                   ("shapes and dtypes", shapes))


def _packed(arrays, operate):
    """Apply ``operate`` (in place, on a 1-D buffer) to every array; small arrays go packed per dtype."""
    small = {}
    for array in arrays:
        if array.size == 0:
            continue
        if len(arrays) == 1 or array.nbytes >= PACK_BYTES:
            operate(array)
        else:
            small.setdefault(array.dtype, []).append(array)
    for group in small.values():
        if len(group) == 1:
            operate(group[0])
            continue
        buffer = np.concatenate(group)
        operate(buffer)
        offset = 0
        for array in group:
            array[...] = buffer[offset:offset + array.size]
            offset += array.size


def _real_count(count):
    if isinstance(count, (bool, np.bool_)) or not isinstance(count, (int, float, np.integer, np.floating)):
        raise TypeError(f"count must be a number of samples, got {type(count).__name__}")
    value = float(count)
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"count must be finite and >= 0, got {count!r}")
    return value


def _total_count(comm, count):
    """Sum of ``count`` over the ranks (float64), refusing a total of 0 on every rank alike."""
    total = np.array([count], dtype=np.float64)
    comm.Allreduce(MPI.IN_PLACE, [total, MPI.DOUBLE], op=MPI.SUM)
    if not total[0] > 0:
        raise ValueError("count is 0 on every rank: there is no sample to average over")
    return float(total[0])


# --------------------------------------------------------------------------- data parallel
def allreduce_grads(grads, comm=None, *, average=True, count=None, check=True):
    """Sum gradients over all ranks, in place, and by default divide by the number of ranks.

    Collective.  For a ParamSet this is one ``Allreduce`` over ``ps.grad``
    (padding included) and one division.

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
        mean over all samples, ``sum(count_r * g_r) / sum(count_r)``.  Costs
        one more tiny ``Allreduce``; needs ``average=True``.  A rank with no
        samples passes 0 (its gradient is ignored).
    check : bool, default True
        Check first, with one small ``allgather``, that every rank passes
        gradients of the same size, dtype and layout and the same options.
        ``check=False`` saves that round trip in a training loop once the
        layout is known to agree (see also :class:`DataParallel`); all ranks
        must then pass the same ``check``.

    Raises
    ------
    TypeError, ValueError
        On every rank, when ``check`` is on and any rank's arguments are
        invalid or differ from the others'.
    """
    comm = _comm(comm)

    def build():
        arrays, signature = _buffers(grads, "grads", "grad")
        weight = None if count is None else _real_count(count)
        if weight is not None and not average:
            raise ValueError("count weights an average; it needs average=True")
        return (arrays, weight), signature + (("average", bool(average)), ("count given", weight is not None))

    if check:
        arrays, weight = _agree(comm, "allreduce_grads", build)
    else:
        arrays, weight = build()[0]
    _allreduce(comm, arrays, average, weight)


def _allreduce(comm, arrays, average, weight):
    divisor = comm.Get_size() if average else 1
    if weight is not None:
        divisor = _total_count(comm, weight)
        for array in arrays:
            np.multiply(array, weight, out=array)

    def operate(buffer):
        comm.Allreduce(MPI.IN_PLACE, [buffer, _MPI_TYPES[buffer.dtype]], op=MPI.SUM)
        if divisor != 1:
            np.divide(buffer, divisor, out=buffer)

    _packed(arrays, operate)


def broadcast_params(params, comm=None, root=0, *, check=True):
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
        The rank whose values are sent.
    check : bool, default True
        Check first that all ranks pass the same layout and root (see
        :func:`allreduce_grads`).
    """
    comm = _comm(comm)

    def build():
        arrays, signature = _buffers(params, "params", "data")
        rank = _root(comm, root)
        return (arrays, rank), signature + (("root", rank),)

    arrays, rank = _agree(comm, "broadcast_params", build) if check else build()[0]
    _packed(arrays, lambda buffer: comm.Bcast([buffer, _MPI_TYPES[buffer.dtype]], root=rank))


class DataParallel:
    """One ParamSet trained data-parallel: the checks done once, then cheap collectives.

    Building it is collective: it checks that every rank's ParamSet has the
    same size, dtype and tensors and (by default) broadcasts rank
    ``root``'s parameters to the others.

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

    def __init__(self, ps, comm=None, *, root=0, broadcast=True):
        self.comm = _comm(comm)

        def build():
            if not isinstance(ps, ParamSet):
                raise TypeError(f"DataParallel needs a ParamSet, got {type(ps).__name__}")
            rank = _root(self.comm, root)
            return (rank, flag("broadcast", broadcast)), _paramset_signature(ps) + (
                ("root", rank), ("broadcast", bool(broadcast)))

        root, broadcast = _agree(self.comm, "DataParallel", build)
        self.ps = ps
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        if broadcast:
            self.broadcast_params(root)

    def allreduce_grads(self, *, average=True, count=None):
        """Average (or sum) ``ps.grad`` over the ranks in place: see :func:`allreduce_grads`.

        Unchecked: all ranks must pass the same ``average`` and either all
        or none a ``count``.
        """
        weight = None if count is None else _real_count(count)
        if weight is not None and not average:
            raise ValueError("count weights an average; it needs average=True")
        _allreduce(self.comm, [self.ps.grad], average, weight)

    def broadcast_params(self, root=0):
        """Copy rank ``root``'s ``ps.data`` to every rank (collective, unchecked)."""
        self.comm.Bcast([self.ps.data, _MPI_TYPES[self.ps.dtype]], root=root)

    def shard(self, n):
        """This rank's slice of ``n`` samples: see :func:`shard`."""
        return shard(n, self.comm)

    def __repr__(self):
        return f"DataParallel({self.ps!r}, rank={self.rank}, size={self.size})"


# --------------------------------------------------------------------------- sharded optimizer
class ShardedOptimizer:
    """A fastopt optimizer whose state is split over the ranks (ZeRO stage 1).

    Rank ``r`` owns the slice ``ps.data[lo:hi]`` given by
    :func:`shard_bounds(ps.size, comm.size, ps.dtype) <shard_bounds>` and
    keeps optimizer state for those elements only: about ``1/size`` of
    what one optimizer on the whole ParamSet holds.  Building it is
    collective (the ParamSet, the optimizer class and the hyperparameters
    must agree on all ranks, and by default rank 0's parameters are
    broadcast); so is every :meth:`step`.

    A step

    1. reduce-scatters ``ps.grad`` (each rank's local gradient, padding
       included): rank ``r`` receives the sum over all ranks of its slice,
       divided by the number of ranks (``average``) or weighted by sample
       counts (``step(count=...)``), into its own buffer :attr:`grad_shard`;
       ``ps.grad`` is left as it was (multiplied by ``count`` when given);
    2. updates ``ps.data[lo:hi]`` with the inner optimizer;
    3. all-gathers the slices into ``ps.data`` on every rank, in place.

    The update rules are elementwise, so every rank ends with the
    parameters one optimizer on the whole ParamSet would produce from the
    averaged gradient.

    Parameters
    ----------
    optimizer_class : type
        A fastopt optimizer class (:class:`fastopt.Adam`, :class:`fastopt.SGD`, ...).
    ps : ParamSet
        The whole model.  Parameter groups (``ps.select``) are not supported:
        every element gets the same hyperparameters.
    comm : mpi4py.MPI.Intracomm, optional
        Defaults to ``MPI.COMM_WORLD``.
    reduce_grads : bool, default True
        Reduce-scatter ``ps.grad`` in each step.  False: ``ps.grad`` already
        holds the averaged gradient on every rank (from
        :func:`allreduce_grads`, say) and the step reads its own slice of it.
    average : bool, default True
        Divide the reduced gradients by the number of ranks (see
        :func:`allreduce_grads`); False keeps the sum.
    broadcast : bool, default True
        Copy rank 0's parameters into every rank's ``ps.data`` now, so that
        all ranks start from the same model.
    **hyper
        The optimizer's hyperparameters (``lr=...``, ``betas=...``,
        ``skip_nonfinite=...``).  With ``skip_nonfinite=True`` the ranks
        decide together: a non-finite averaged gradient anywhere skips the
        step on every rank.

    Attributes
    ----------
    optimizer : fastopt.optim.Optimizer
        The inner optimizer, built on ``[ps.data[lo:hi]]``.
    bounds : list of (int, int)
        Every rank's slice, in rank order.
    lo, hi : int
        This rank's slice (``lo == hi`` when it owns nothing, which happens
        when the ParamSet has fewer cache lines than there are ranks).
    grad_shard : numpy.ndarray
        This rank's averaged gradient after a step (``hi - lo`` elements).
    rank, size : int
    skipped_steps : int
        Steps skipped on all ranks for a non-finite gradient.

    Examples
    --------
    >>> opt = ShardedOptimizer(fastopt.AdamW, ps, lr=1e-3)    # doctest: +SKIP
    >>> sched = fastopt.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=1000)  # doctest: +SKIP
    >>> for step in range(1000):                             # doctest: +SKIP
    ...     opt.zero_grad()
    ...     compute_grads(ps, *local_batch())   # this rank's gradient, into ps.grad
    ...     opt.step()
    ...     sched.step()
    """

    def __init__(self, optimizer_class, ps, comm=None, *, reduce_grads=True, average=True, broadcast=True,
                 **hyper):
        self.comm = comm = _comm(comm)
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

        def build():
            if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
                raise TypeError("optimizer_class must be a fastopt optimizer class such as fastopt.Adam, "
                                f"got {optimizer_class!r}")
            if not isinstance(ps, ParamSet):
                raise TypeError(f"ShardedOptimizer needs a ParamSet, got {type(ps).__name__}"
                                + (" (parameter groups are not supported)" if isinstance(ps, (list, tuple))
                                   else ""))
            check_writeable(ps.data, "ParamSet.data")
            options = dict(hyper)
            skip = flag("skip_nonfinite", options.pop("skip_nonfinite", False))
            options_flags = (flag("reduce_grads", reduce_grads), flag("average", average),
                             flag("broadcast", broadcast))
            bounds = shard_bounds(ps.size, self.size, ps.dtype)
            lo, hi = bounds[self.rank]
            inner = optimizer_class([ps.data[lo:hi]], **options)
            hyperparameters = tuple(sorted((k, repr(v)) for k, v in inner.defaults.items()))
            signature = _paramset_signature(ps) + (
                ("optimizer class", f"{optimizer_class.__module__}.{optimizer_class.__qualname__}"),
                ("hyperparameters", hyperparameters), ("skip_nonfinite", skip),
                ("reduce_grads, average, broadcast", options_flags))
            return (inner, bounds, skip, options_flags), signature

        inner, bounds, skip, (reduce_grads, average, broadcast) = _agree(comm, "ShardedOptimizer", build)
        self.optimizer_class = optimizer_class
        self.ps = ps
        self.optimizer = inner
        self.bounds = bounds
        self.lo, self.hi = bounds[self.rank]
        self.reduce_grads = reduce_grads
        self.average = average
        self.skip_nonfinite = skip
        self.skipped_steps = 0
        self._type = _MPI_TYPES[ps.dtype]
        self._counts = [hi - lo for lo, hi in bounds]
        self._displs = [lo for lo, _ in bounds]
        if reduce_grads:
            self.grad_shard = _aligned_zeros(self.hi - self.lo, ps.dtype)
        else:
            self.grad_shard = ps.grad[self.lo:self.hi]
        self._grads = [self.grad_shard]  # the same objects every step, so the kernel stays bound
        if broadcast:
            comm.Bcast([ps.data, self._type], root=0)

    # ------------------------------------------------------------------ steps
    def step(self, *, count=None):
        """Reduce-scatter the gradients, update this rank's slice, all-gather the parameters.

        Collective.

        Parameters
        ----------
        count : float, optional
            The number of samples this rank's gradient is the mean over,
            when ranks hold different numbers: the slices then receive
            ``sum(count_r * g_r) / sum(count_r)`` (see
            :func:`allreduce_grads`).  ``ps.grad`` is multiplied by
            ``count`` in place.  Needs ``reduce_grads`` and ``average``;
            all ranks must pass one or none.

        Returns
        -------
        bool
            True if the step was applied; False if it was skipped on every
            rank for a non-finite gradient (``skip_nonfinite``).
        """
        comm, grad = self.comm, self.ps.grad
        weight = None
        if count is not None:
            if not (self.reduce_grads and self.average):
                raise ValueError("step(count=...) needs reduce_grads=True and average=True")
            weight = _real_count(count)
        if self.reduce_grads:
            divisor = self.size if self.average else 1
            if weight is not None:
                divisor = _total_count(comm, weight)
                np.multiply(grad, weight, out=grad)
            comm.Reduce_scatter([grad, self._type], [self.grad_shard, self._type],
                                recvcounts=self._counts, op=MPI.SUM)
            if divisor != 1:
                np.divide(self.grad_shard, divisor, out=self.grad_shard)
        if self.skip_nonfinite:
            shard_grad = self.grad_shard
            bad = np.array([1 if shard_grad.size and nonfinite_count(shard_grad, get_num_threads()) else 0],
                           dtype=np.int32)
            comm.Allreduce(MPI.IN_PLACE, [bad, MPI.INT], op=MPI.MAX)
            if bad[0]:
                self.skipped_steps += 1
                return False
        self.optimizer.step(self._grads)
        comm.Allgatherv(MPI.IN_PLACE, [self.ps.data, self._counts, self._displs, self._type])
        return True

    def zero_grad(self):
        """Zero this rank's whole gradient buffer ``ps.grad`` (not a collective)."""
        self.ps.zero_grad()

    # ---------------------------------------------------------------- hyperparameters
    @property
    def param_groups(self):
        """The inner optimizer's parameter groups (one), which learning-rate schedules set.

        Every rank must set the same values (a schedule stepped on every
        rank does).
        """
        return self.optimizer.param_groups

    @property
    def defaults(self):
        return self.optimizer.defaults

    @property
    def lr(self):
        """The learning rate; setting it sets the inner optimizer's."""
        return self.optimizer.lr

    @lr.setter
    def lr(self, value):
        self.optimizer.lr = value

    @property
    def state(self):
        """The inner optimizer's state: this rank's slice only."""
        return self.optimizer.state

    def state_bytes(self):
        """Bytes of optimizer state arrays held by this rank (0 before the first step; not a collective).

        Excludes :attr:`grad_shard` (``(hi - lo) * itemsize`` bytes more with
        ``reduce_grads``) and the ParamSet itself.
        """
        return sum(value.nbytes for slot in self.optimizer.state for value in slot.values()
                   if isinstance(value, np.ndarray))

    # ---------------------------------------------------------------- state dicts
    def _shard_info(self):
        return {"rank": self.rank, "size": self.size, "lo": self.lo, "hi": self.hi,
                "paramset_size": self.ps.size, "dtype": self.ps.dtype.name}

    def state_dict(self):
        """This rank's state (not a collective): its slice of the state only.

        Returns ``{"optimizer": <inner state_dict>, "shard": {...},
        "skipped_steps": int}``; ``shard`` records the rank, the number of
        ranks, the slice and the ParamSet's size and dtype.  It loads only
        into the same rank of a ShardedOptimizer built the same way on as
        many ranks; :meth:`consolidated_state_dict` gives a state that does
        not depend on the number of ranks.
        """
        return {"optimizer": self.optimizer.state_dict(), "shard": self._shard_info(),
                "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict):
        """Restore what :meth:`state_dict` returned on this rank (not a collective)."""
        if not isinstance(state_dict, Mapping) or not {"optimizer", "shard"} <= set(state_dict):
            raise TypeError("state_dict must be a dict from ShardedOptimizer.state_dict(), with 'optimizer' and "
                            "'shard'; for a plain optimizer's state use load_consolidated_state_dict()")
        saved = dict(state_dict["shard"])
        mine = self._shard_info()
        if saved != mine:
            raise ValueError(f"state_dict holds the shard {saved}, but this rank's is {mine}")
        skipped = _count("skipped_steps", state_dict.get("skipped_steps", 0))
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self.skipped_steps = skipped

    def consolidated_state_dict(self, root=0):
        """The whole optimizer's state, assembled on rank ``root`` (collective).

        Returns, on ``root``, the ``state_dict()`` that one
        ``optimizer_class(ps, **hyper)`` would have after the same steps (its
        state arrays gathered over the ranks, ``ps.size`` elements each);
        load it into such an optimizer, or save it with
        :func:`fastopt.save` through one.  Other ranks get None.  ``root``
        needs memory for the whole state for a moment.
        """
        comm = self.comm
        state = self.optimizer.state[0]
        arrays = [name for name in self.optimizer.state_arrays if name in state]

        def build():
            rank = _root(comm, root)
            return rank, (("root", rank), ("state arrays", tuple(arrays)))

        root = _agree(comm, "consolidated_state_dict", build)
        full = {}
        for name in arrays:
            out = np.empty(self.ps.size, self.ps.dtype) if self.rank == root else None
            target = [out, self._counts, self._displs, self._type] if self.rank == root else None
            comm.Gatherv([state[name], self._type], target, root=root)
            full[name] = out
        if self.rank != root:
            return None
        inner = self.optimizer.state_dict()
        slot = {key: value for key, value in inner["state"].get(0, {}).items() if key not in full}
        slot.update(full)
        return {"state": {0: slot} if state else {}, "param_groups": inner["param_groups"],
                "skipped_steps": self.skipped_steps}

    def load_consolidated_state_dict(self, state_dict, root=0):
        """Load a whole-optimizer state, given on rank ``root``, and scatter it (collective).

        ``state_dict`` is what :meth:`consolidated_state_dict` returns, or
        the ``state_dict()`` of a plain ``optimizer_class`` on a ParamSet of
        the same layout; other ranks pass None.  It may come from a run on
        a different number of ranks.  Either every rank loads its part or,
        on an error anywhere, every rank raises and none changes.
        """
        comm, what = self.comm, "load_consolidated_state_dict"

        def check_root():
            rank = _root(comm, root)
            return rank, (("root", rank),)

        root = _agree(comm, what, check_root)
        header = error = None
        if self.rank == root:
            try:
                header = self._consolidated_header(state_dict)
            except Exception as exc:  # noqa: BLE001 - announced to every rank, then raised
                error = exc
        header, report = comm.bcast((header, None if error is None else (type(error).__name__, str(error))),
                                    root=root)
        if error is not None:
            raise error
        if report is not None:
            _raise_remote(what, root, *report)
        groups, scalars, names, skipped = header
        shards = {}
        for name in names:
            source = None
            if self.rank == root:
                source = [np.ascontiguousarray(state_dict["state"][0][name]).reshape(-1),
                          self._counts, self._displs, self._type]
            shards[name] = np.empty(self.hi - self.lo, self.ps.dtype)
            comm.Scatterv(source, [shards[name], self._type], root=root)
        mine = {"state": {0: {**scalars, **shards}} if (scalars or shards) else {},
                "param_groups": groups, "skipped_steps": 0}
        backup = self.optimizer.state_dict()

        def build():
            self.optimizer.load_state_dict(mine)
            return None, ()

        try:
            _agree(comm, what, build)
        except Exception:
            self.optimizer.load_state_dict(backup)
            raise
        self.skipped_steps = skipped

    def _consolidated_header(self, state_dict):
        """Check a whole-optimizer state on ``root``: (param_groups, scalars, array names, skipped)."""
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise TypeError("state_dict must be a dict with 'state' and 'param_groups', as state_dict() of a "
                            "plain optimizer or consolidated_state_dict() returns")
        state = dict(state_dict["state"])
        if set(state) - {0, "0"}:
            raise ValueError(f"state_dict has state for slots {sorted(map(str, state))}; an optimizer on one "
                             "whole ParamSet has slot 0 only")
        slot = dict(state.get(0, state.get("0", {})))
        names, scalars = [], {}
        for key, value in slot.items():
            if key in self.optimizer.state_arrays:
                array = np.asarray(value)
                if array.dtype != self.ps.dtype or array.shape != (self.ps.size,):
                    raise ValueError(f"state {key!r} is {array.dtype}{list(array.shape)} in the state_dict, "
                                     f"expected {self.ps.dtype}[{self.ps.size}]")
                names.append(key)
            else:
                scalars[key] = value  # checked by the inner optimizer's load_state_dict
        groups = [dict(group) if isinstance(group, Mapping) else group for group in state_dict["param_groups"]]
        skipped = _count("skipped_steps", state_dict.get("skipped_steps", 0))
        return groups, scalars, names, skipped

    def __repr__(self):
        return (f"ShardedOptimizer({self.optimizer_class.__name__}, {self.ps!r}, rank={self.rank}, "
                f"size={self.size}, slice=[{self.lo}:{self.hi}])")
