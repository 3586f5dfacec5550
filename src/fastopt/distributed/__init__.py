"""Training on several processes over MPI: gradient averaging and a sharded optimizer.

This package needs mpi4py and an MPI library (``pip install "fastopt[mpi]"``
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

Modules
-------
The names above are all importable from here; they live in
``data_parallel`` (:func:`allreduce_grads`, :func:`broadcast_params`,
:class:`DataParallel`), ``sharded`` (:class:`ShardedOptimizer`),
``_partition`` (:func:`shard`, :func:`shard_bounds`), ``_agreement`` (the
cross-rank checks every collective starts with) and ``_comm`` (mpi4py,
communicators, buffers and the averaging options).
"""
from __future__ import annotations

#: Lists of arrays smaller than this many bytes travel packed (a copy of ``_comm.PACK_BYTES``:
#: read-only, since changing it here changes nothing).
from fastopt.distributed._comm import PACK_BYTES as PACK_BYTES
from fastopt.distributed._partition import shard, shard_bounds
from fastopt.distributed.data_parallel import DataParallel, allreduce_grads, broadcast_params
from fastopt.distributed.sharded import ShardedOptimizer

__all__ = [
    "DataParallel",
    "ShardedOptimizer",
    "allreduce_grads",
    "broadcast_params",
    "shard",
    "shard_bounds",
]

# The examples in the docstrings of the names defined in the submodules, for doctest.testmod(fastopt.distributed).
__test__ = {name: globals()[name] for name in __all__}
