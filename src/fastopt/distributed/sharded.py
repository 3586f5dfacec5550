"""The sharded optimizer (ZeRO stage 1): each rank keeps the optimizer state of its slice of the ParamSet."""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from fastopt._kernels import nonfinite_count
from fastopt._rules import TENSOR_RULES
from fastopt._threads import get_num_threads
from fastopt._validation import check_writeable, flag, step_count
from fastopt.distributed._agreement import agree, digest, failure
from fastopt.distributed._comm import (
    MPI, MPI_TYPES, check_total, communicator, paramset_signature, root_rank, sample_count,
)
from fastopt.distributed._partition import shard_bounds
from fastopt.optim._stepping import MAX_STEP
from fastopt.optim.optimizer import Optimizer
from fastopt.paramset import ParamSet, _aligned_zeros

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from fastopt._typing import NDArray, Scalar, StateDict
    from fastopt.distributed._comm import Signature
    from fastopt.distributed.data_parallel import Count
    from fastopt.optim._hyper import ParamGroup as Group


def _check_arguments(optimizer_class: object, ps: object) -> None:
    """Refuse anything but a fastopt optimizer class and a whole ParamSet."""
    if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
        raise TypeError("optimizer_class must be a fastopt optimizer class such as fastopt.Adam, "
                        f"got {optimizer_class!r}")
    if callable(getattr(optimizer_class, "eval", None)):
        raise ValueError(f"ShardedOptimizer does not switch {optimizer_class.__name__}'s train()/eval() modes "
                         "across the ranks (each rank would move only its slice); use it on one process")
    if optimizer_class.rule in TENSOR_RULES:
        raise ValueError(f"ShardedOptimizer does not shard {optimizer_class.__name__}: its rule needs numbers of "
                         "whole tensors (norms, factored moments), which a rank's slice does not hold; use it on one "
                         "process")
    if not isinstance(ps, ParamSet):
        raise TypeError(f"ShardedOptimizer needs a ParamSet, got {type(ps).__name__}"
                        + (" (parameter groups are not supported)" if isinstance(ps, (list, tuple)) else ""))


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

    def __init__(self, optimizer_class: type[Optimizer], ps: ParamSet, comm: MPI.Intracomm | None = None, *,
                 reduce_grads: bool = True, average: bool = True, broadcast: bool = True, **hyper: Any) -> None:
        self.comm = comm = communicator(comm)
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        options = (reduce_grads, average, broadcast)
        inner, bounds, skip, (reduce_grads, average, broadcast) = agree(
            comm, "ShardedOptimizer", lambda: self._build(optimizer_class, ps, hyper, options))
        self.optimizer_class = optimizer_class
        self.ps = ps
        self.optimizer: Optimizer = inner
        self.bounds: list[tuple[int, int]] = bounds
        self.lo, self.hi = bounds[self.rank]
        self._reduce_grads = reduce_grads
        self.average: bool = average
        self.skip_nonfinite: bool = skip
        self.skipped_steps = 0
        self._type = MPI_TYPES[ps.dtype]
        self._counts = [hi - lo for lo, hi in bounds]
        self._displs = [lo for lo, _ in bounds]
        if reduce_grads:
            self.grad_shard = _aligned_zeros(self.hi - self.lo, ps.dtype)
        else:
            self.grad_shard = ps.grad[self.lo:self.hi]
        self._grads = [self.grad_shard]  # the same objects every step, so the kernel stays bound
        self._settings_key: list[Any] | None = None
        self._settings_code: int | None = None
        self._checked_arrays: tuple[tuple[str, Any], ...] = ()  # the inner state arrays as _check_state last saw them
        self._data = ps.data  # the same array as long as the ParamSet lives
        if broadcast:
            comm.Bcast([ps.data, self._type], root=0)

    def _build(self, optimizer_class: type[Optimizer], ps: ParamSet, hyper: dict[str, Any],
               options: tuple[bool, ...]) -> tuple[Any, Signature]:
        """This rank's checks when built, and its inner optimizer: ((inner, bounds, skip, options), signature)."""
        _check_arguments(optimizer_class, ps)
        check_writeable(ps.data, "ParamSet.data")
        hyper = dict(hyper)
        storage = sorted(k for k in ("state_dtype", "master_weights", "stochastic_rounding", "seed") if k in hyper)
        if storage:  # int8 blocks would start at each rank's slice, so results would depend on the rank count
            raise ValueError(f"ShardedOptimizer keeps the state in the parameters' dtype; {storage} are for "
                             "single-process optimizers")
        skip = flag("skip_nonfinite", hyper.pop("skip_nonfinite", False))
        options = tuple(flag(name, value) for name, value in zip(("reduce_grads", "average", "broadcast"), options))
        bounds = shard_bounds(ps.size, self.size, ps.dtype)
        lo, hi = bounds[self.rank]
        inner = optimizer_class([ps.data[lo:hi]], **hyper)
        hyperparameters = tuple(sorted((k, repr(v)) for k, v in inner.defaults.items()))
        signature = paramset_signature(ps) + (
            ("optimizer class", f"{optimizer_class.__module__}.{optimizer_class.__qualname__}"),
            ("hyperparameters", hyperparameters), ("skip_nonfinite", skip),
            ("reduce_grads, average, broadcast", options))
        return (inner, bounds, skip, options), signature

    @property
    def reduce_grads(self) -> bool:
        """Whether a step reduce-scatters ``ps.grad`` (fixed when built: it decides what :attr:`grad_shard` is)."""
        return self._reduce_grads

    # ------------------------------------------------------------------ steps
    def step(self, *, count: Count | None = None) -> bool:
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

    def _step(self, count: Count | None) -> bool:
        (weight, skip, average), total = agree(self.comm, "ShardedOptimizer.step", lambda: self._step_checks(count),
                                                details=lambda: self._settings_pairs(count_given=count is not None),
                                                total=True)
        if self._reduce_grads:
            self._reduce_scatter(weight, average, total)
        if skip and self._nonfinite_anywhere():
            self.skipped_steps += 1
            return False
        try:
            self.optimizer.step(self._grads)
        finally:
            # The checks above cover what the inner step validates, and it validates before it updates
            # anything; should it raise all the same, this rank still joins the all-gather (with its
            # slice as it was) rather than leave the other ranks waiting in it.
            self.comm.Allgatherv(MPI.IN_PLACE, [self.ps.data, self._counts, self._displs, self._type])
        return True

    def _reduce_scatter(self, weight: float | None, average: bool, total: float) -> None:
        """Into :attr:`grad_shard`: this rank's slice of ``ps.grad`` summed over the ranks, then averaged."""
        grad = self.ps.grad
        divisor: float = self.size if average else 1
        if weight is not None:
            divisor = check_total(total)
            np.multiply(grad, weight, out=grad)
        self.comm.Reduce_scatter([grad, self._type], [self.grad_shard, self._type],
                                 recvcounts=self._counts, op=MPI.SUM)
        if divisor != 1:
            np.divide(self.grad_shard, divisor, out=self.grad_shard)

    def _nonfinite_anywhere(self) -> bool:
        """Whether any rank's :attr:`grad_shard` holds a NaN or infinity (collective: one tiny Allreduce)."""
        shard_grad = self.grad_shard
        bad = np.array([1 if shard_grad.size and nonfinite_count(shard_grad, get_num_threads()) else 0],
                       dtype=np.int32)
        self.comm.Allreduce(MPI.IN_PLACE, [bad, MPI.INT], op=MPI.MAX)
        return bool(bad[0])

    def _step_checks(self, count: Count | None) -> tuple[Any, Signature, float]:
        """This rank's checks before a step: ((weight, skip, average), signature, weight or 0)."""
        if not self._data.flags.writeable:
            check_writeable(self._data, "ParamSet.data")
        skip, average = self._flags()
        weight = None
        if count is not None:
            if not (self._reduce_grads and average):
                raise ValueError("step(count=...) needs reduce_grads=True and average=True")
            weight = sample_count(count)
            check_writeable(self.ps.grad, "ParamSet.grad")  # multiplied by the count in place
        self._check_state()
        signature = (("count given", weight is not None), ("settings", self._settings(skip, average)))
        return (weight, skip, average), signature, 0.0 if weight is None else weight

    def _flags(self) -> tuple[bool, bool]:
        """``skip_nonfinite`` and ``average``, checked."""
        return flag("skip_nonfinite", self.skip_nonfinite), flag("average", self.average)

    def _settings(self, skip: bool, average: bool) -> int | None:
        """Digest of what every rank's step must share, recomputed only when a group's ``version`` changed."""
        try:
            key: Any = [group.version for group in self.optimizer.param_groups]
        except AttributeError:  # groups that do not count their changes: no cache
            key = None
        else:
            key += (skip, average)
        if key is None or key != self._settings_key:
            self._settings_code = digest(self._settings_pairs(skip, average))
            self._settings_key = key
        return self._settings_code

    def _settings_pairs(self, skip: bool | None = None, average: bool | None = None, *,
                        count_given: bool | None = None) -> Signature:
        """The settings behind :meth:`_settings`, as ``(field, value)`` pairs (with "count given" first if given).

        ``skip`` and ``average`` default to this object's (checked) values.
        """
        if skip is None or average is None:
            skip, average = self._flags()
        pairs: list[tuple[str, Any]] = [] if count_given is None else [("count given", count_given)]
        pairs += [("skip_nonfinite", skip), ("average", average)]
        groups = self.optimizer.param_groups
        validators = self.optimizer.validators
        pairs.append(("number of parameter groups", len(groups)))
        for g, group in enumerate(groups):
            pairs += [(f"param_groups[{g}][{key!r}]", group[key]) for key in sorted(group) if key in validators]
        return tuple(pairs)

    def _check_state(self) -> None:
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
        if not checked or any(state.get(name) is not array for name, array in checked):
            self._check_state_arrays(state)
        self._check_state_scalars(state)

    def _check_state_arrays(self, state: Mapping[str, Any]) -> None:
        """Refuse a state array that is not a writeable contiguous array of this rank's slice; remember them."""
        n, dtype = self.hi - self.lo, self.ps.dtype
        pairs = tuple((name, state.get(name)) for name in self.optimizer.state_arrays)
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

    def _check_state_scalars(self, state: Mapping[str, Any]) -> None:
        """Refuse a step count or other state scalar that the inner step would refuse."""
        for name in self.optimizer.state_scalars:
            if name not in state:
                continue
            value = state[name]
            if name == "step":  # bool is no int here: type(True) is bool
                if not ((type(value) is int or isinstance(value, np.integer)) and 0 <= value < MAX_STEP):
                    raise ValueError(f"optimizer state 'step' must be an integer in [0, 2**63 - 1), got {value!r}")
            elif not (type(value) is float or type(value) is int or isinstance(value, (np.integer, np.floating))):
                raise ValueError(f"optimizer state {name!r} must be a number, got {value!r}")

    def zero_grad(self) -> None:
        """Zero this rank's whole gradient buffer ``ps.grad`` (not a collective)."""
        self.ps.zero_grad()

    # ---------------------------------------------------------------- hyperparameters
    @property
    def param_groups(self) -> Sequence[Group]:
        """The inner optimizer's parameter groups (one), which learning-rate schedules set.

        Every rank must set the same values (a schedule stepped on every
        rank does): the next :meth:`step` compares them and refuses, on
        every rank, when any hyperparameter differs.
        """
        return self.optimizer.param_groups

    @property
    def defaults(self) -> Group:
        return self.optimizer.defaults

    @property
    def lr(self) -> float:
        """The learning rate; setting it sets the inner optimizer's."""
        return self.optimizer.lr

    @lr.setter
    def lr(self, value: Scalar) -> None:
        self.optimizer.lr = value

    @property
    def state(self) -> Sequence[dict[str, Any]]:
        """The inner optimizer's state: this rank's slice only."""
        return self.optimizer.state

    def state_bytes(self) -> int:
        """Bytes of optimizer state arrays held by this rank (0 before the first step; not a collective).

        Excludes :attr:`grad_shard` (``(hi - lo) * itemsize`` bytes more with
        ``reduce_grads``) and the ParamSet itself.
        """
        return sum(value.nbytes for slot in self.optimizer.state for value in slot.values()
                   if isinstance(value, np.ndarray))

    # ---------------------------------------------------------------- state dicts
    def _shard_info(self) -> dict[str, Any]:
        return {"rank": self.rank, "size": self.size, "lo": self.lo, "hi": self.hi,
                "paramset_size": self.ps.size, "dtype": self.ps.dtype.name}

    def state_dict(self) -> StateDict:
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

    def _state_signature(self) -> Signature:
        """What every rank's state must share for the ranks to hold parts of one optimizer's state."""
        self._check_state()
        skip, average = self._flags()
        return (("state step", self.optimizer.state[0].get("step")), ("skipped_steps", self.skipped_steps),
                ("settings", self._settings(skip, average)))

    def _state_details(self) -> Signature:
        return self._state_signature()[:2] + self._settings_pairs()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned on this rank (collective).

        Every rank loads its own shard's state, and all ranks then compare
        (one tiny exchange) the step count, ``skipped_steps`` and the
        hyperparameters of what they loaded: shards of different
        checkpoints, or an invalid state on any rank, raise the same error
        on every rank and leave every rank's state as it was.
        """
        backup: tuple[StateDict, int] | None = None

        def build() -> tuple[None, Signature]:
            nonlocal backup
            if not isinstance(state_dict, Mapping) or not {"optimizer", "shard"} <= set(state_dict):
                raise TypeError("state_dict must be a dict from ShardedOptimizer.state_dict(), with 'optimizer' "
                                "and 'shard'; for a plain optimizer's state use load_consolidated_state_dict()")
            saved = dict(state_dict["shard"])
            mine = self._shard_info()
            if saved != mine:
                raise ValueError(f"state_dict holds the shard {saved}, but this rank's is {mine}")
            skipped = step_count("skipped_steps", state_dict.get("skipped_steps", 0))
            previous = (self.optimizer.state_dict(), self.skipped_steps)
            self.optimizer.load_state_dict(state_dict["optimizer"])  # all checked before anything changes
            backup = previous
            self.skipped_steps = skipped
            return None, self._state_signature()

        self._agree_or_restore("ShardedOptimizer.load_state_dict", build, lambda: backup)

    def _agree_or_restore(self, what: str, build: Callable[[], tuple[Any, ...]],
                          backup: Callable[[], tuple[StateDict, int] | None]) -> None:
        """:func:`agree` on a ``build`` that loads state; on any rank's error every rank restores ``backup()``."""
        try:
            agree(self.comm, what, build, details=self._state_details)
        except BaseException:
            saved = backup()
            if saved is not None:
                self.optimizer.load_state_dict(saved[0])
                self.skipped_steps = saved[1]
            raise

    def consolidated_state_dict(self, root: int = 0) -> StateDict | None:
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

        def build() -> tuple[Any, Signature]:
            rank = root_rank(comm, root)
            state = self.optimizer.state[0]
            arrays = tuple(name for name in self.optimizer.state_arrays if name in state)
            return (rank, arrays), (("root", rank), ("state arrays", arrays)) + self._state_signature()

        root, arrays = agree(comm, "ShardedOptimizer.consolidated_state_dict", build,
                              details=lambda: build()[1][:-1] + self._settings_pairs())
        full = self._gather_state(arrays, root)
        if self.rank != root:
            return None
        state = self.optimizer.state[0]
        inner = self.optimizer.state_dict()
        slot = {key: value for key, value in inner["state"].get(0, {}).items() if key not in full}
        slot.update(full)
        return {"state": {0: slot} if state else {}, "param_groups": inner["param_groups"],
                "skipped_steps": self.skipped_steps}

    def _gather_state(self, names: Sequence[str], root: int) -> dict[str, NDArray[Any] | None]:
        """The state arrays ``names``, each gathered whole on ``root`` (``{name: array}``; None elsewhere)."""
        state = self.optimizer.state[0]
        full: dict[str, NDArray[Any] | None] = {}
        for name in names:
            out = np.empty(self.ps.size, self.ps.dtype) if self.rank == root else None
            target = [out, self._counts, self._displs, self._type] if self.rank == root else None
            self.comm.Gatherv([state[name], self._type], target, root=root)
            full[name] = out
        return full

    def load_consolidated_state_dict(self, state_dict: Mapping[str, Any] | None, root: int = 0) -> None:
        """Load a whole-optimizer state, given on rank ``root``, and scatter it (collective).

        ``state_dict`` is what :meth:`consolidated_state_dict` returns, or
        the ``state_dict()`` of a plain ``optimizer_class`` on a ParamSet of
        the same layout (its slot key may be ``0`` or ``"0"``); other ranks
        pass None.  It may come from a run on a different number of ranks.
        Either every rank loads its part or, on an error anywhere, every
        rank raises and none changes.
        """
        comm, what = self.comm, "ShardedOptimizer.load_consolidated_state_dict"

        def check_root() -> tuple[int, Signature]:
            rank = root_rank(comm, root)
            return rank, (("root", rank),)

        root = agree(comm, what, check_root)
        (groups, scalars, names, skipped), slot = self._broadcast_header(what, state_dict, root)
        shards = self._scatter_state(names, slot, root)
        mine = {"state": {0: {**scalars, **shards}} if (scalars or shards) else {},
                "param_groups": groups, "skipped_steps": 0}
        backup: tuple[StateDict, int] | None = None

        def build() -> tuple[None, Signature]:
            nonlocal backup
            previous = (self.optimizer.state_dict(), self.skipped_steps)
            self.optimizer.load_state_dict(mine)
            backup = previous
            self.skipped_steps = skipped
            return None, self._state_signature()

        self._agree_or_restore(what, build, lambda: backup)

    def _broadcast_header(self, what: str, state_dict: Mapping[str, Any] | None, root: int) -> tuple[Any, Any]:
        """:meth:`_consolidated_header` on ``root``, sent to every rank; its error raised on every rank.

        Returns ``(header, slot)``; ``slot`` (the state's arrays) is None
        except on ``root``.
        """
        header: Any = None
        error: Any = None  # the Exception raised here, if any
        slot: Any = None
        if self.rank == root:
            try:
                header, slot = self._consolidated_header(state_dict)
            except Exception as exc:  # noqa: BLE001 - announced to every rank, then raised
                error = exc
        header, report = self.comm.bcast((header, None if error is None else (type(error).__name__, str(error))),
                                         root=root)
        if report is not None:
            if self.size == 1:
                raise error
            cls, message = failure(what, [(root, report)])
            raise cls(message) from error
        return header, slot

    def _scatter_state(self, names: Sequence[str], slot: Any, root: int) -> dict[str, NDArray[Any]]:
        """This rank's slice of each state array ``names`` that ``root`` holds whole in ``slot``."""
        shards = {}
        for name in names:
            source = None
            if self.rank == root:
                source = [np.ascontiguousarray(slot[name], dtype=self.ps.dtype).reshape(-1),
                          self._counts, self._displs, self._type]
            shards[name] = np.empty(self.hi - self.lo, self.ps.dtype)
            self.comm.Scatterv(source, [shards[name], self._type], root=root)
        return shards

    def _consolidated_header(self, state_dict: Mapping[str, Any] | None) -> tuple[Any, dict[Any, Any]]:
        """Check a whole-optimizer state on ``root``: ((param_groups, scalars, array names, skipped), slot)."""
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise TypeError("state_dict must be a dict with 'state' and 'param_groups', as state_dict() of a "
                            "plain optimizer or consolidated_state_dict() returns")
        state = dict(state_dict["state"])
        if set(state) - {0, "0"} or len(state) > 1:
            raise ValueError(f"state_dict has state for slots {sorted(map(str, state))}; an optimizer on one "
                             "whole ParamSet has slot 0 only")
        slot = dict(state.get(0, state.get("0", {})))
        names: list[str] = []
        scalars: dict[str, Any] = {}
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
        skipped = step_count("skipped_steps", state_dict.get("skipped_steps", 0))
        return (groups, scalars, names, skipped), slot

    def __repr__(self) -> str:
        return (f"ShardedOptimizer({self.optimizer_class.__name__}, {self.ps!r}, rank={self.rank}, "
                f"size={self.size}, slice=[{self.lo}:{self.hi}])")
