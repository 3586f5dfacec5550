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
say otherwise (:func:`shard_bounds`, :func:`shard`, ``zero_grad``,
``state_dict``, the hyperparameter and per-rank state accessors): all
ranks of ``comm`` must call them, in the same order.

Every collective call starts the same way, before any data moves: each
rank runs its own checks (its arguments, that the buffers it will write
are writeable, for a step that the inner optimizer's state is usable)
and builds a small signature of what the ranks must agree on (the
ParamSet's layout where it is checked, the root, whether a count is
given, and in a step a digest of ``skip_nonfinite``, ``average`` and
every hyperparameter in ``param_groups``, recomputed only when a group
changed).  One ``Allgather`` of 32 bytes per rank (failed or not, a
digest of the call, a digest of the signature, the count to sum) then
decides.  If a rank failed a check, the ranks are in different calls, or
a signature differs, every rank raises the same exception with the same
message, naming the rank(s) and what differs, and nothing changes on any
rank; only then does a second, slower exchange take place, to find the
details.  A ParamSet whose size, dtype or tensors differ between ranks,
a learning rate changed on one rank only, ``step(count=...)`` on some
ranks only, or a read-only ``ps.data`` on one rank thus raise everywhere
instead of deadlocking or mixing unrelated updates.  A step or
:meth:`DataParallel.allreduce_grads` costs that one small exchange (one
message latency) on top of its data collectives; a count no longer
costs an ``Allreduce`` of its own, since it travels in the same message.

Limits
------
:class:`ShardedOptimizer` takes a whole ParamSet: no parameter groups.
A sharded step moves the arena twice (reduce-scatter, then all-gather),
about the traffic of one ``Allreduce``.  Buffers of more than 2**31 - 1
elements need mpi4py 4 and an MPI-4 library (large counts).
"""
import functools
import hashlib
import math
import struct
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
from fastopt._validation import (
    FLOAT_DTYPES, check_disjoint, check_float_array, check_writeable, flag, int_at_least, sample_count,
)
from fastopt.optim._stepping import MAX_STEP
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
    size = int_at_least("size", size, expected=">= 0")
    nranks = int_at_least("nranks", nranks, 1, expected=">= 1")
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
    start, stop = _block(int_at_least("n", n, expected=">= 0"), comm.Get_size(), comm.Get_rank())
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


def _digest(value):
    """A 62-bit digest of ``repr(value)``: the same on every rank and in every run (unlike ``hash``)."""
    raw = hashlib.blake2b(repr(value).encode(), digest_size=8).digest()
    return int.from_bytes(raw, "little") >> 2


@functools.lru_cache(maxsize=512)
def _cached_digest(value):
    return _digest(value)


def _signature_digest(signature):
    """:func:`_digest` of a signature, from a cache when the signature is hashable.

    The cache is keyed by equality, so it needs the values of a field to
    have one type (``("average", True)`` never ``("average", 1)``): the
    signatures built in this module do.
    """
    try:
        return _cached_digest(signature)
    except TypeError:  # unhashable (a list of dict keys, say)
        return _digest(signature)


#: Error classes kept when one rank's error is raised on all; others become RuntimeError.
_ERRORS = {"TypeError": TypeError, "ValueError": ValueError}
#: One rank's part of the quick exchange in :func:`_agree`: failed, call digest, signature digest, value to sum.
_VOTE = struct.Struct("=qqqd")


def _agree(comm, what, build, *, details=None, total=False):
    """Run the local checks ``build()`` on every rank; go on only if all ranks passed them and agree.

    Every collective here starts with this call, before any data moves.
    Each rank sends 32 bytes (an ``Allgather``: failed or not, a digest of
    ``what``, a digest of its signature, and the value to sum); when no
    rank failed and all digests match, that is the only communication.
    Otherwise a second exchange (an ``allgather`` of the error messages and
    signatures) works out what went wrong, and every rank raises the same
    exception with the same message:

    * a rank whose ``build()`` raised: ``<what> failed on rank <r>:
      <Class>: <message>`` (the class kept for TypeError and ValueError,
      RuntimeError otherwise; on the failing rank the original exception is
      its ``__cause__``).  On a one-rank communicator the original
      exception is raised as it is;
    * ranks in different calls (``what`` differs): RuntimeError naming the
      call of every rank;
    * fields of the signature that differ: ValueError ``<what>: <field>
      differs across ranks (<value> on rank(s) ...; ...)`` for each.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm
    what : str
        The call, as the messages name it.
    build : callable
        Local checks, no communication.  Returns ``(result, signature)``,
        or ``(result, signature, value)`` with ``total``.  ``signature`` is
        a tuple of ``(field, value)`` pairs that must be equal (``repr``)
        on every rank, with values of one type per field.
    details : callable, optional
        Pairs that name what differs better than ``signature`` (which may
        hold a digest of them); called only when the digests differ.
    total : bool, default False
        Also return the sum over the ranks of ``value`` (a float), rounded
        once (``math.fsum``): the same float on every rank.

    Returns
    -------
    result, or (result, total)
    """
    result = signature = error = None
    value = 0.0
    try:
        if total:
            result, signature, value = build()
        else:
            result, signature = build()
        code = _signature_digest(signature)
    except Exception as exc:  # noqa: BLE001 - raised below, on every rank alike
        error, code = exc, 0
    if comm.Get_size() == 1:
        if error is not None:
            raise error
        return (result, float(value)) if total else result
    size = comm.Get_size()
    vote = _VOTE.pack(error is not None, _cached_digest(what), code, value)
    votes = bytearray(_VOTE.size * size)
    comm.Allgather([vote, MPI.INT64_T], [votes, MPI.INT64_T])  # the double travels as its 8 bytes
    if error is not None or votes != vote * size:  # else every rank sent these bytes: all passed, and agree
        words = memoryview(votes).cast("q")
        if any(words[0::4]) or words[1::4].tobytes() != vote[8:16] * size \
                or words[2::4].tobytes() != vote[16:24] * size:
            _disagree(comm, what, error, signature if details is None or error is not None else details)
        value = math.fsum(memoryview(votes).cast("d")[3::4])
    elif value:
        value *= size  # (fsum of ``size`` equal values, without the round trip through memoryview)
    return (result, value) if total else result


def _disagree(comm, what, error, signature):
    """The slow path of :func:`_agree`: find out what went wrong on which rank and raise it everywhere."""
    report = None if error is None else (type(error).__name__, str(error))
    if report is None and callable(signature):
        try:
            signature = signature()
        except Exception as exc:  # noqa: BLE001 - as in _agree
            error, report = exc, (type(exc).__name__, str(exc))
    gathered = comm.allgather((what, report, tuple(signature) if report is None else ()))
    failed = [(rank, r) for rank, (_, r, _) in enumerate(gathered) if r is not None]
    if failed:
        cls, message = _failure(what, failed)
        raise cls(message) from error
    calls = [call for call, _, _ in gathered]
    if len(set(calls)) > 1:
        raise RuntimeError(f"the ranks are in different calls ({_by_value(calls, str)}); every rank must make "
                           "the same collective calls in the same order")
    signatures = [dict(pairs) for _, _, pairs in gathered]
    fields = list(dict.fromkeys(field for _, _, pairs in gathered for field, _ in pairs))
    differences = []
    for field in fields:
        values = [pairs.get(field, "(absent)") for pairs in signatures]
        if any(repr(v) != repr(values[0]) for v in values):
            differences.append(f"{field} differs across ranks ({_by_value(values, _short)})")
    if not differences:  # the digests differ, but not the pairs sent: a signature out of date
        differences.append("the ranks' settings differ, but their details do not show how")
    raise ValueError(f"{what}: {', and '.join(differences)}")


def _by_value(values, show):
    """``"<value> on rank(s) ...; ..."``: the ranks grouped by the value they hold, in rank order."""
    groups = {}
    for rank, value in enumerate(values):
        groups.setdefault(repr(value), (value, []))[1].append(rank)
    return "; ".join(f"{show(value)} on rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"
                     for value, ranks in groups.values())


def _failure(what, failed):
    """(class, message) for the errors ``[(rank, (class name, message)), ...]`` of the failing ranks."""
    groups = {}
    for rank, report in failed:
        groups.setdefault(report, []).append(rank)
    parts = "; ".join(f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}: {kind}: {message}"
                      for (kind, message), ranks in groups.items())
    return _ERRORS.get(failed[0][1][0], RuntimeError), f"{what} failed on {parts}"


def _root(comm, root):
    rank = int_at_least("root", root, expected=">= 0")
    if rank >= comm.Get_size():
        raise ValueError(f"root must be a rank of comm (0 to {comm.Get_size() - 1}), got {rank}")
    return rank


def _paramset_signature(ps):
    layout = tuple((name, tuple(int(d) for d in ps.shapes[name]), ps.slices[name].start) for name in ps.names)
    return (("ParamSet size", ps.size), ("ParamSet dtype", ps.dtype.name),
            ("ParamSet tensors (names, shapes, offsets)", layout))


def _buffers(obj, what, attr, layout=True):
    """1-D views of the arrays ``obj`` names (``ps.<attr>`` for a ParamSet) and their signature.

    With ``layout`` the signature has the ParamSet's tensors, or the
    container, keys and shapes of the arrays; without, only what the
    collective itself needs to match: the length and dtype of each buffer.
    """
    if isinstance(obj, ParamSet):
        flat = getattr(obj, attr)
        check_writeable(flat, f"ParamSet.{attr}")
        if layout:
            return [flat], _paramset_signature(obj)
        return [flat], (("buffers (elements, dtype)", ((obj.size, obj.dtype.name),)),)
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
    if not layout:
        return views, (("buffers (elements, dtype)", tuple((v.size, v.dtype.name) for v in views)),)
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


def _options(average, count):
    """Local checks of ``average`` and ``count``: (average, weight or None) and their signature pairs."""
    average = flag("average", average)
    weight = None if count is None else sample_count("count", count)
    if weight is not None and not average:
        raise ValueError("count weights an average; it needs average=True")
    return average, weight, _OPTIONS[average, weight is not None]


_OPTIONS = {(a, c): (("average", a), ("count given", c)) for a in (False, True) for c in (False, True)}


def _check_total(total):
    """The summed count, refused (on every rank alike: they hold the same sum) when it is 0."""
    if not total > 0:
        raise ValueError("count is 0 on every rank: there is no sample to average over")
    return total


# --------------------------------------------------------------------------- data parallel
def allreduce_grads(grads, comm=None, *, average=True, count=None, check=True):
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
    comm = _comm(comm)

    def build():
        check_ = flag("check", check)
        arrays, signature = _buffers(grads, "grads", "grad", layout=check_)
        average_, weight, options = _options(average, count)
        return (arrays, average_, weight), (("check", check_),) + signature + options, weight or 0.0

    (arrays, average_, weight), total = _agree(comm, "allreduce_grads", build, total=True)
    _allreduce(comm, arrays, average_, weight, total)


def _allreduce(comm, arrays, average, weight, total):
    divisor = comm.Get_size() if average else 1
    if weight is not None:
        divisor = _check_total(total)
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
    comm = _comm(comm)

    def build():
        check_ = flag("check", check)
        arrays, signature = _buffers(params, "params", "data", layout=check_)
        rank = _root(comm, root)
        return (arrays, rank), (("check", check_),) + signature + (("root", rank),)

    arrays, rank = _agree(comm, "broadcast_params", build)
    _packed(arrays, lambda buffer: comm.Bcast([buffer, _MPI_TYPES[buffer.dtype]], root=rank))


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

    def __init__(self, ps, comm=None, *, root=0, broadcast=True):
        self.comm = _comm(comm)

        def build():
            if not isinstance(ps, ParamSet):
                raise TypeError(f"DataParallel needs a ParamSet, got {type(ps).__name__}")
            rank = _root(self.comm, root)
            broadcast_ = flag("broadcast", broadcast)
            if broadcast_:
                check_writeable(ps.data, "ParamSet.data")
            unchecked = (("check", False),) + _buffers(ps, "grads", "grad", layout=False)[1]  # may refuse ps.grad
            return (rank, broadcast_, unchecked), _paramset_signature(ps) + (("root", rank), ("broadcast", broadcast_))

        root, broadcast, self._unchecked = _agree(self.comm, "DataParallel", build)
        self.ps = ps
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        if broadcast:
            self.comm.Bcast([ps.data, _MPI_TYPES[ps.dtype]], root=root)

    def allreduce_grads(self, *, average=True, count=None):
        """Average (or sum) ``ps.grad`` over the ranks in place: :func:`allreduce_grads` with ``check=False``.

        Collective; all ranks pass the same ``average`` and either all or
        none a ``count``, else every rank raises (and no gradient changes).
        """
        grad = self.ps.grad

        def build():  # what allreduce_grads(ps, check=False) checks, with its signature: they may be mixed
            if not grad.flags.writeable:
                check_writeable(grad, "ParamSet.grad")
            average_, weight, options = _options(average, count)
            return (average_, weight), self._unchecked + options, weight or 0.0

        (average, weight), total = _agree(self.comm, "allreduce_grads", build, total=True)
        _allreduce(self.comm, [grad], average, weight, total)

    def broadcast_params(self, root=0):
        """Copy rank ``root``'s ``ps.data`` to every rank: :func:`broadcast_params` with ``check=False``."""
        broadcast_params(self.ps, self.comm, root, check=False)

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
    broadcast); so is every :meth:`step`, which first makes sure, in one
    tiny exchange, that the ranks still agree (on a count given or not,
    ``skip_nonfinite``, ``average`` and every hyperparameter in
    :attr:`param_groups`) and that no rank would fail mid-way (a read-only
    ``ps.data``, a replaced state array): else every rank raises the same
    error and no rank changes anything.

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
    reduce_grads : bool
        Fixed when built (read-only).
    average, skip_nonfinite : bool
        May be changed between steps, on every rank alike.
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
        self._reduce_grads = reduce_grads
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
        self._settings_key = self._settings_code = None
        self._checked_arrays = ()  # the inner state arrays as _check_state last saw them
        self._data = ps.data  # the same array as long as the ParamSet lives
        if broadcast:
            comm.Bcast([ps.data, self._type], root=0)

    @property
    def reduce_grads(self):
        """Whether a step reduce-scatters ``ps.grad`` (fixed when built: it decides what :attr:`grad_shard` is)."""
        return self._reduce_grads

    # ------------------------------------------------------------------ steps
    def step(self, *, count=None):
        """Reduce-scatter the gradients, update this rank's slice, all-gather the parameters.

        Collective.  Before any data moves, every rank checks its own side
        (``ps.data`` writeable, ``count`` valid, the inner optimizer's state
        arrays usable) and the ranks compare, in one tiny ``Allgather``, a
        signature of the step: whether a count is given, ``skip_nonfinite``,
        ``average`` and every hyperparameter in ``param_groups``.  If any
        rank fails a check or any setting differs, every rank raises the
        same error and nothing changes on any rank.

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

        Raises
        ------
        TypeError, ValueError
            On every rank, with the same message, when a rank's check
            fails (the message names the rank) or the ranks' settings
            differ (it names each setting that differs and its value on
            every rank).
        RuntimeError
            On every rank, when another rank is in a different collective
            call.
        """
        with self.optimizer._exclusive():  # no other thread on this rank steps, saves or loads ps meanwhile
            return self._step(count)

    def _step(self, count):
        (weight, skip, average), total = _agree(self.comm, "ShardedOptimizer.step", lambda: self._step_checks(count),
                                                details=lambda: self._settings_pairs(count_given=count is not None),
                                                total=True)
        comm, grad = self.comm, self.ps.grad
        if self._reduce_grads:
            divisor = self.size if average else 1
            if weight is not None:
                divisor = _check_total(total)
                np.multiply(grad, weight, out=grad)
            comm.Reduce_scatter([grad, self._type], [self.grad_shard, self._type],
                                recvcounts=self._counts, op=MPI.SUM)
            if divisor != 1:
                np.divide(self.grad_shard, divisor, out=self.grad_shard)
        if skip:
            shard_grad = self.grad_shard
            bad = np.array([1 if shard_grad.size and nonfinite_count(shard_grad, get_num_threads()) else 0],
                           dtype=np.int32)
            comm.Allreduce(MPI.IN_PLACE, [bad, MPI.INT], op=MPI.MAX)
            if bad[0]:
                self.skipped_steps += 1
                return False
        try:
            self.optimizer.step(self._grads)
        finally:
            # The checks above cover what the inner step validates, and it validates before it updates
            # anything; should it raise all the same, this rank still joins the all-gather (with its
            # slice as it was) rather than leave the other ranks waiting in it.
            comm.Allgatherv(MPI.IN_PLACE, [self.ps.data, self._counts, self._displs, self._type])
        return True

    def _step_checks(self, count):
        """This rank's checks before a step: ((weight, skip, average), signature, weight or 0)."""
        if not self._data.flags.writeable:
            check_writeable(self._data, "ParamSet.data")
        skip, average = self._flags()
        weight = None
        if count is not None:
            if not (self._reduce_grads and average):
                raise ValueError("step(count=...) needs reduce_grads=True and average=True")
            weight = sample_count("count", count)
            check_writeable(self.ps.grad, "ParamSet.grad")  # multiplied by the count in place
        self._check_state()
        signature = (("count given", weight is not None), ("settings", self._settings(skip, average)))
        return (weight, skip, average), signature, 0.0 if weight is None else weight

    def _flags(self):
        """``skip_nonfinite`` and ``average``, checked."""
        return flag("skip_nonfinite", self.skip_nonfinite), flag("average", self.average)

    def _settings(self, skip, average):
        """Digest of what every rank's step must share, recomputed only when a group's ``version`` changed."""
        try:
            key = [group.version for group in self.optimizer.param_groups]
        except AttributeError:  # groups that do not count their changes: no cache
            key = None
        else:
            key += (skip, average)
        if key is None or key != self._settings_key:
            self._settings_code = _digest(self._settings_pairs(skip, average))
            self._settings_key = key
        return self._settings_code

    def _settings_pairs(self, skip=None, average=None, *, count_given=None):
        """The settings behind :meth:`_settings`, as ``(field, value)`` pairs (with "count given" first if given).

        ``skip`` and ``average`` default to this object's (checked) values.
        """
        if skip is None or average is None:
            skip, average = self._flags()
        pairs = [] if count_given is None else [("count given", count_given)]
        pairs += [("skip_nonfinite", skip), ("average", average)]
        groups = self.optimizer.param_groups
        rules = self.optimizer.rules
        pairs.append(("number of parameter groups", len(groups)))
        for g, group in enumerate(groups):
            pairs += [(f"param_groups[{g}][{key!r}]", group[key]) for key in sorted(group) if key in rules]
        return tuple(pairs)

    def _check_state(self):
        """Refuse inner state that its step would refuse only mid-way (after the gradients moved).

        The inner optimizer checks its state arrays when it binds its
        kernel to them, which it does again only when one is replaced: so
        are they checked here, when one is replaced.  The step count (and
        NAdam's ``mu_product``) are read on every step.
        """
        inner = self.optimizer
        if len(inner.param_groups) != 1:
            raise ValueError("the inner optimizer must keep its one parameter group (ShardedOptimizer steps one "
                             "slice of the ParamSet); add_param_group is not supported here")
        if inner.skip_nonfinite:
            raise ValueError("the inner optimizer's skip_nonfinite must stay False (each rank would skip on its "
                             "own slice); set ShardedOptimizer.skip_nonfinite, which the ranks decide together")
        state = inner.state[0]
        checked = self._checked_arrays  # ((name, array or None), ...) as last checked
        for name, array in checked:
            if state.get(name) is not array:
                break
        else:
            if checked:
                checked = None
        if checked is not None:
            n, dtype = self.hi - self.lo, self.ps.dtype
            pairs = tuple((name, state.get(name)) for name in inner.state_arrays)
            for name, array in pairs:
                if array is not None and not (isinstance(array, np.ndarray) and array.dtype == dtype
                                              and array.shape == (n,) and array.flags.c_contiguous
                                              and array.flags.writeable):
                    got = (f"{array.dtype}{list(array.shape)}" if isinstance(array, np.ndarray)
                           else type(array).__name__)
                    if isinstance(array, np.ndarray):
                        got += "".join(note for ok, note in ((array.flags.writeable, ", read-only"),
                                                            (array.flags.c_contiguous, ", not contiguous"))
                                       if not ok)
                    raise ValueError(f"optimizer state {name!r} must be a writeable contiguous {dtype}[{n}] "
                                     f"array (this rank's slice), got {got}")
            self._checked_arrays = pairs
        for name in inner.state_scalars:
            if name not in state:
                continue
            value = state[name]
            if name == "step":  # bool is no int here: type(True) is bool
                if not ((type(value) is int or isinstance(value, np.integer)) and 0 <= value < MAX_STEP):
                    raise ValueError(f"optimizer state 'step' must be an integer in [0, 2**63 - 1), got {value!r}")
            elif not (type(value) is float or type(value) is int or isinstance(value, (np.integer, np.floating))):
                raise ValueError(f"optimizer state {name!r} must be a number, got {value!r}")

    def zero_grad(self):
        """Zero this rank's whole gradient buffer ``ps.grad`` (not a collective)."""
        self.ps.zero_grad()

    # ---------------------------------------------------------------- hyperparameters
    @property
    def param_groups(self):
        """The inner optimizer's parameter groups (one), which learning-rate schedules set.

        Every rank must set the same values (a schedule stepped on every
        rank does): the next :meth:`step` compares them and refuses, on
        every rank, when any hyperparameter differs.
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

    def _state_signature(self):
        """What every rank's state must share for the ranks to hold parts of one optimizer's state."""
        self._check_state()
        skip, average = self._flags()
        return (("state step", self.optimizer.state[0].get("step")), ("skipped_steps", self.skipped_steps),
                ("settings", self._settings(skip, average)))

    def _state_details(self):
        return self._state_signature()[:2] + self._settings_pairs()

    def load_state_dict(self, state_dict):
        """Restore what :meth:`state_dict` returned on this rank (collective).

        Every rank loads its own shard's state, and all ranks then compare
        (one tiny exchange) the step count, ``skipped_steps`` and the
        hyperparameters of what they loaded: shards of different
        checkpoints, or an invalid state on any rank, raise the same error
        on every rank and leave every rank's state as it was.
        """
        backup = None

        def build():
            nonlocal backup
            if not isinstance(state_dict, Mapping) or not {"optimizer", "shard"} <= set(state_dict):
                raise TypeError("state_dict must be a dict from ShardedOptimizer.state_dict(), with 'optimizer' "
                                "and 'shard'; for a plain optimizer's state use load_consolidated_state_dict()")
            saved = dict(state_dict["shard"])
            mine = self._shard_info()
            if saved != mine:
                raise ValueError(f"state_dict holds the shard {saved}, but this rank's is {mine}")
            skipped = int_at_least("skipped_steps", state_dict.get("skipped_steps", 0), expected=">= 0")
            previous = (self.optimizer.state_dict(), self.skipped_steps)
            self.optimizer.load_state_dict(state_dict["optimizer"])  # all checked before anything changes
            backup = previous
            self.skipped_steps = skipped
            return None, self._state_signature()

        self._agree_or_restore("ShardedOptimizer.load_state_dict", build, lambda: backup)

    def _agree_or_restore(self, what, build, backup):
        """:func:`_agree` on a ``build`` that loads state; on any rank's error every rank restores ``backup()``."""
        try:
            _agree(self.comm, what, build, details=self._state_details)
        except BaseException:
            saved = backup()
            if saved is not None:
                self.optimizer.load_state_dict(saved[0])
                self.skipped_steps = saved[1]
            raise

    def consolidated_state_dict(self, root=0):
        """The whole optimizer's state, assembled on rank ``root`` (collective).

        Returns, on ``root``, the ``state_dict()`` that one
        ``optimizer_class(ps, **hyper)`` would have after the same steps (its
        state arrays gathered over the ranks, ``ps.size`` elements each);
        load it into such an optimizer, or save it with
        :func:`fastopt.save` through one.  Other ranks get None.  ``root``
        needs memory for the whole state for a moment.  The ranks first
        agree on ``root``, on the state arrays they hold, the step count and
        the hyperparameters; else every rank raises the same error.
        """
        comm = self.comm

        def build():
            rank = _root(comm, root)
            state = self.optimizer.state[0]
            arrays = tuple(name for name in self.optimizer.state_arrays if name in state)
            return (rank, arrays), (("root", rank), ("state arrays", arrays)) + self._state_signature()

        root, arrays = _agree(comm, "ShardedOptimizer.consolidated_state_dict", build,
                              details=lambda: build()[1][:-1] + self._settings_pairs())
        state = self.optimizer.state[0]
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
        the same layout (its slot key may be ``0`` or ``"0"``); other ranks
        pass None.  It may come from a run on a different number of ranks.
        Either every rank loads its part or, on an error anywhere, every
        rank raises and none changes.
        """
        comm, what = self.comm, "ShardedOptimizer.load_consolidated_state_dict"

        def check_root():
            rank = _root(comm, root)
            return rank, (("root", rank),)

        root = _agree(comm, what, check_root)
        header = error = slot = None
        if self.rank == root:
            try:
                header, slot = self._consolidated_header(state_dict)
            except Exception as exc:  # noqa: BLE001 - announced to every rank, then raised
                error = exc
        header, report = comm.bcast((header, None if error is None else (type(error).__name__, str(error))),
                                    root=root)
        if report is not None:
            if self.size == 1:
                raise error
            cls, message = _failure(what, [(root, report)])
            raise cls(message) from error
        groups, scalars, names, skipped = header
        shards = {}
        for name in names:
            source = None
            if self.rank == root:
                source = [np.ascontiguousarray(slot[name], dtype=self.ps.dtype).reshape(-1),
                          self._counts, self._displs, self._type]
            shards[name] = np.empty(self.hi - self.lo, self.ps.dtype)
            comm.Scatterv(source, [shards[name], self._type], root=root)
        mine = {"state": {0: {**scalars, **shards}} if (scalars or shards) else {},
                "param_groups": groups, "skipped_steps": 0}
        backup = None

        def build():
            nonlocal backup
            previous = (self.optimizer.state_dict(), self.skipped_steps)
            self.optimizer.load_state_dict(mine)
            backup = previous
            self.skipped_steps = skipped
            return None, self._state_signature()

        self._agree_or_restore(what, build, lambda: backup)

    def _consolidated_header(self, state_dict):
        """Check a whole-optimizer state on ``root``: ((param_groups, scalars, array names, skipped), slot)."""
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise TypeError("state_dict must be a dict with 'state' and 'param_groups', as state_dict() of a "
                            "plain optimizer or consolidated_state_dict() returns")
        state = dict(state_dict["state"])
        if set(state) - {0, "0"} or len(state) > 1:
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
        skipped = int_at_least("skipped_steps", state_dict.get("skipped_steps", 0), expected=">= 0")
        return (groups, scalars, names, skipped), slot

    def __repr__(self):
        return (f"ShardedOptimizer({self.optimizer_class.__name__}, {self.ps!r}, rank={self.rank}, "
                f"size={self.size}, slice=[{self.lo}:{self.hi}])")
