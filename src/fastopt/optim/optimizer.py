"""Optimizer base class: bookkeeping in Python, math in the fused kernels."""
from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from fastopt import _storage
from fastopt._kernels import BoundStep, bf16_round, needed, nonfinite_count, quantize_blockwise
from fastopt._locks import holding
from fastopt._rules import RULES, TENSOR_RULES
from fastopt._threads import get_num_threads
from fastopt._validation import (adjust_lr, any_real, at_least_one, beta_triple, betas, eps_pair, flag, growth,
                                 integer, nonnegative, nonpositive, ns_steps, optional_beta, positive, real_triple,
                                 step_count, unit_interval, warmup_steps)
from fastopt.optim._hyper import FixedList, ParamGroup
from fastopt.optim._params import ParamLayout, slot_tensors
from fastopt.optim._stepping import SlotBinding, step_slots

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from numpy.typing import DTypeLike

    from fastopt._rules import Rule, TensorRule
    from fastopt._typing import Array, Grads, Params, Scalar, StateDict
    from fastopt._typing import ParamGroup as GroupSpec
    from fastopt.optim._params import Slot

    # A hyperparameter's validator: ``check(name, value)`` returns the value as stored, or raises.
    Validator = Callable[[str, Any], Any]
    # ``state_layout(index)``: ``{key: (shape, dtype)}`` of each state array a slot may hold.
    StateLayout = dict[str, tuple[tuple[int, ...], np.dtype[Any]]]
    # ``tensor_state_slices(index)``: per tensor, ``{state array: (slice of the slot's array, shape)}``.
    TensorStateSlices = tuple[dict[str, tuple[slice, tuple[int, ...]]], ...]

# Group keys that are not hyperparameters but are accepted, as torch does, to label a group.
GROUP_LABELS = ("name",)
_GROUPS_HINT = ("add a group with add_param_group(), or change a group's hyperparameters in place "
                "(param_groups[0]['lr'] = 0.1)")
# Per-slot numbers other than the step count, and the values they can take.
SCALAR_RANGES = {"mu_product": (0.0, 1.0),  # NAdam's product of momentum factors, each in [0, 1)
                 "weight_sum": (0.0, math.inf), "lr_max": (0.0, math.inf),  # schedule-free averaging
                 "d": (0.0, math.inf), "d_max": (0.0, math.inf), "k": (0.0, math.inf)}  # Prodigy's D estimate
_STATE_HINT = "it holds one dict per slot; clear a slot's dict (state[i].clear()) to restart its state"

# The validator of each ``check`` of fastopt._rules.Hyper; "beta" validates beta1, beta2 (and beta3) together, as
# ``betas``.
CHECKS: dict[str, Validator] = {
    "nonnegative": nonnegative, "real": any_real, "unit": unit_interval, "beta": betas, "flag": flag,
    "steps": warmup_steps, "nonpositive": nonpositive, "eps_pair": eps_pair, "positive": positive,
    "growth": growth, "optional_beta": optional_beta, "beta_pair": betas, "real_triple": real_triple,
    "ns_steps": ns_steps, "adjust_lr": adjust_lr, "at_least_one": at_least_one}
# The keyword options every optimizer takes (Optimizer.__init__), which copies and pickles carry.
_OPTIONS = ("skip_nonfinite", "state_dtype", "master_weights", "stochastic_rounding", "seed")
# What a subclass takes from its rule's entry in fastopt._rules.RULES, never states itself.
_DERIVED = ("validators", "rules", "state_arrays", "switchable_state", "running_state")


def _seed(value: object) -> int:
    seed = integer("seed", value, 0)
    if seed >= 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return seed


def validators_of(rule: Rule | TensorRule) -> dict[str, Validator]:
    """``{hyperparameter: validator}`` of the optimizer of ``rule`` (a fastopt._rules.Rule), in the table's order.

    The names are the Python optimizer's: ``beta1``, ``beta2`` (and
    ``beta3``) are one hyperparameter, ``betas``; those the kernel never sees
    are included.
    """
    validators: dict[str, Validator] = {}
    beta_names = tuple(h.name for h in rule.hyper if h.check == "beta")
    if beta_names not in ((), ("beta1", "beta2"), ("beta1", "beta2", "beta3")):
        raise TypeError(f"rule {rule.name!r}: the 'beta' check is for beta1, beta2 (and beta3) together, got "
                        f"{beta_names}")
    for hyper in rule.hyper:
        if hyper.check not in CHECKS:
            raise TypeError(f"rule {rule.name!r}: {hyper.name} has check {hyper.check!r}; known: {sorted(CHECKS)}")
        if hyper.check == "beta":
            validators["betas"] = betas if len(beta_names) == 2 else beta_triple
        else:
            validators[hyper.name] = CHECKS[hyper.check]
    return validators


class Optimizer:
    """Base class of fastopt's optimizers.

    A subclass names its update rule (``rule``, a key of
    ``fastopt._rules.RULES``) and passes its defaults to ``__init__`` (they
    stay in its signature, as torch's do).  Everything else the kernel
    contract needs comes from that rule's entry in the table, once per class
    (``__init_subclass__``): ``validators`` (hyperparameter -> validator,
    from each ``Hyper.check`` through :data:`CHECKS`), ``state_arrays`` (in
    the kernel's order), ``switchable_state`` (those only some settings use)
    and :meth:`_needed` (which of them a group's settings use).  A subclass
    adds only what the table does not say: ``_new_state`` (how a state
    array starts), ``_check_group`` (checks across hyperparameters),
    ``counts_steps`` and ``state_scalars``.  Each slot's kernel is bound
    once to its arrays (a ``BoundStep``, recorded in a ``SlotBinding``) and
    re-bound only when its group's hyperparameters or its gradient array
    change, so a step on a ParamSet costs a few microseconds of Python.
    The base class resolves ``params`` into slots (one contiguous array per
    kernel call; a whole ParamSet is one slot), keeps torch.optim-style
    ``param_groups`` and per-slot ``state``, checks each step's gradients,
    and saves and restores its state.

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of numpy.ndarray, or list of dict
        What to optimize; a list of dicts gives parameter groups, each with
        a ``"params"`` entry and hyperparameters that override the defaults.
    defaults : dict
        Default hyperparameters.
    skip_nonfinite : bool, default False
        If True, a step whose gradients hold any NaN or infinity leaves every
        parameter and all optimizer state untouched, returns False, and is
        counted in ``skipped_steps``.  If False (torch.optim's behaviour),
        non-finite values propagate through the update formula into the
        parameters and state (with int8 state, into the state of the whole
        block of 256 elements: see below).
    state_dtype : {None, "float32", "float64", "bfloat16", "int8"}, default None
        How the state arrays are stored; None keeps them in the parameters'
        dtype (as torch.optim does).  float32 and bfloat16 parameters take
        "float32", "bfloat16" or "int8", float64 parameters only "float64".
        ``"int8"`` is blockwise 8-bit quantization (Dettmers et al., 2022):
        one byte per element and one float32 ``absmax`` per block of 256, so
        Adam's state takes about 2 bytes per parameter instead of 8; a state
        array ``exp_avg`` is then held as ``exp_avg`` (uint8 codes) and
        ``exp_avg_absmax`` (float32).  Every step computes in float32 and
        converts on load and store within its one pass over memory.
    master_weights : bool, default False
        bfloat16 parameters only: keep a float32 copy of them
        (``state[i]["master_param"]``, made at a slot's first step), update
        it, and write the parameters as its rounding to nearest, so they
        follow float32 training to bfloat16 rounding (the moments stay in
        ``state_dtype``: pass ``"float32"`` for DeepSpeed's layout).  The copy
        is the truth: parameters written from outside afterwards (a
        ``fastopt.load`` of parameters alone, ``fit(restore_best=True)``) are
        overwritten by the next step; clear the slot's state
        (``opt.state[i].clear()``) to start the copy again from them.
    stochastic_rounding : bool, default False
        bfloat16 parameters without a master copy: round each updated value
        up or down at random, with probability by its distance, so updates
        smaller than bfloat16's resolution are not lost on average.  The
        random bits are a hash of (``seed``, the slot, the step, the
        element's index): the same for any thread count, and the same again
        after resuming from a checkpoint.
    seed : int, default 0
        The stochastic rounding seed, in [0, 2**64); kept in ``state_dict()``.
        Without ``stochastic_rounding`` nothing uses it.

    Attributes
    ----------
    param_groups : list of dict
        Hyperparameters per group (validated when changed) and
        ``"params"``: the indices of the group's slots.  Its entries are
        changed in place; groups are added with :meth:`add_param_group`,
        never appended, removed or replaced (TypeError).
    state : list of dict
        Per slot: step counts and state arrays (1-D), created at its first
        step.  One entry per slot, fixed; ``state[i].clear()`` restarts a
        slot.
    skipped_steps : int
        Steps skipped for non-finite gradients.
    state_dtype, master_weights, stochastic_rounding, seed
        The storage options, as given (``state_dtype`` as a name or None).

    Notes
    -----
    Threads: the kernels release the GIL, and :meth:`step`,
    :meth:`zero_grad`, :meth:`state_dict`, :meth:`load_state_dict` and
    :meth:`add_param_group` hold a lock for every buffer they update (the
    object that owns its memory: a ParamSet's buffer, the root of an
    array's chain of bases), shared by all optimizers over that memory.
    So steps from several threads -- of one optimizer, or of
    several over one ParamSet -- run one after the other, never
    interleaved, and optimizers over separate memory step in parallel.
    Writing parameters or gradients yourself while another thread steps
    them is a data race, as with any NumPy array.

    A weight decay that rounds to zero in the parameters' precision (below
    about 1e-45 in float32) is no decay: torch would still add ``0 * p``,
    which differs only where ``p`` is infinite or NaN.
    """

    rule: str | None = None  # the update rule's name: a key of fastopt._rules.RULES (set by each subclass)
    state_scalars: tuple[str, ...] = ()  # per-slot numbers kept in ``state``
    counts_steps: bool = True  # keep state["step"]
    # Derived from RULES[rule] by __init_subclass__ (empty here):
    # hyperparameter -> validator (``betas`` for beta1, beta2, ...)
    validators: Mapping[str, Validator] = MappingProxyType({})
    state_arrays: tuple[str, ...] = ()  # the kernel's state arrays, in its order
    # state arrays that settings switch on (amsgrad's, say): created when first used
    switchable_state: tuple[str, ...] = ()
    # state arrays that ``state_dtype`` leaves in float32 (iterates, not statistics)
    full_precision_state: tuple[str, ...] = ()
    # ((name, value before the first step), ...): per-slot numbers the kernel updates
    running_state: tuple[tuple[str, float], ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        stated = [name for name in _DERIVED if name in cls.__dict__]
        if stated:
            raise TypeError(f"{cls.__name__} sets {stated}: they come from fastopt._rules.RULES[{cls.rule!r}]")
        if cls.rule is None:
            return
        entry = RULES.get(cls.rule) or TENSOR_RULES.get(cls.rule)
        if entry is None:
            raise ValueError(f"{cls.__name__}.rule is {cls.rule!r}, not a rule of fastopt._rules.RULES "
                             f"({sorted(RULES)}) or TENSOR_RULES ({sorted(TENSOR_RULES)})")
        cls.validators = MappingProxyType(validators_of(entry))
        cls.state_arrays = entry.state_names
        cls.switchable_state = entry.switchable
        cls.running_state = entry.running
        missing = [name for name, _ in entry.running if name not in cls.state_scalars]
        if missing:
            raise TypeError(f"{cls.__name__}.state_scalars must include {missing}, which its rule's kernel updates")

    def __init__(self, params: Params, defaults: Mapping[str, Any], *, skip_nonfinite: bool = False,
                 state_dtype: DTypeLike | None = None, master_weights: bool = False, stochastic_rounding: bool = False,
                 seed: int = 0) -> None:
        self.defaults: ParamGroup = ParamGroup(self.validators, defaults)
        self.state_dtype: str | None = _storage.state_dtype_option(state_dtype)
        self.master_weights: bool = flag("master_weights", master_weights)
        self.stochastic_rounding: bool = flag("stochastic_rounding", stochastic_rounding)
        if self.master_weights and self.stochastic_rounding:
            raise ValueError("master_weights and stochastic_rounding exclude each other: with a master copy the "
                             "bfloat16 parameters are its rounding to nearest")
        self.seed: int = _seed(seed)
        if self.stochastic_rounding:
            self.counts_steps = True  # the rounding key takes the step (SGD counts none otherwise)
        self._layout: ParamLayout = ParamLayout(params)
        self._check_storage(self._layout.slots)
        groups = [self._new_group(g, options) for g, options in enumerate(self._layout.group_options)]
        for i, slot in enumerate(self._layout.slots):
            groups[slot.group]["params"].append(i)
        self._set_groups(groups, [{} for _ in self._layout.slots])
        self._lock = holding([s.param for s in self._layout.slots])
        self.skip_nonfinite: bool = flag("skip_nonfinite", skip_nonfinite)
        self.skipped_steps: int = 0

    def _new_group(self, g: int, options: Mapping[str, Any]) -> ParamGroup:
        """A validated ParamGroup for group ``g``: the defaults overridden by ``options``; no slots yet."""
        unknown = sorted(set(options) - set(self.validators) - set(GROUP_LABELS))
        if unknown:
            raise ValueError(f"param_groups[{g}] sets {unknown}, which {type(self).__name__} does not take")
        group = ParamGroup(self.validators, {**self.defaults, **options})
        dict.__setitem__(group, "params", [])
        self._check_group(group)
        return group

    def _set_groups(self, groups: list[ParamGroup], state: list[dict[str, Any]]) -> None:
        """Take ``groups`` and per-slot ``state`` (lists); bindings start afresh."""
        self._groups, self._states = groups, state  # plain lists for the compiled step loop
        self._param_groups = FixedList(groups, "param_groups", _GROUPS_HINT)  # the same entries, guarded
        self._state = FixedList(state, "the optimizer's state list", _STATE_HINT)
        # per slot: a SlotBinding (what its kernel is bound to), or None
        self._bound: list[SlotBinding | None] = [None] * len(state)
        self._slot_group = [s.group for s in self._layout.slots]
        self._slot_storage = [self._storage_of(s) for s in self._layout.slots]

    def _storage_of(self, slot: Slot) -> str:
        """How ``slot``'s state arrays are stored: a key of fastopt._storage.STATE_DTYPES."""
        return _storage.resolve_state_dtype(self.state_dtype, slot.param.dtype, slot.name)

    def _array_storage(self, index: int, name: str) -> str:
        """How state array ``name`` of slot ``index`` is stored: the slot's storage, except that the
        ``full_precision_state`` arrays stay float32 (float64 with float64 parameters)."""
        storage = self._slot_storage[index]
        if name in self.full_precision_state and storage != "float64":
            return "float32"
        return storage

    def _full_precision_params(self, index: int) -> Array:
        """Slot ``index``'s parameters at full precision: its float32 master copy once it exists, else themselves."""
        master = self._states[index].get(_storage.MASTER) if self.master_weights else None
        return self._layout.slots[index].param if master is None else master

    def _round_master(self, index: int, num_threads: int) -> None:
        """After writing :meth:`_full_precision_params` of slot ``index``: round a master copy to nearest into the
        bfloat16 parameters (nothing to do without one)."""
        source, param = self._full_precision_params(index), self._layout.slots[index].param
        if source is not param:
            bf16_round(source, param, None, num_threads)

    def _check_storage(self, slots: Sequence[Slot]) -> None:
        """Refuse storage options that ``slots`` cannot take, before anything is built on them."""
        for slot in slots:
            self._storage_of(slot)
            if (self.master_weights or self.stochastic_rounding) and slot.param.dtype != _storage.BFLOAT16:
                option = "master_weights" if self.master_weights else "stochastic_rounding"
                raise ValueError(f"{option}=True is for bfloat16 parameters; {slot.name} is {slot.param.dtype}")

    def state_layout(self, index: int) -> StateLayout:
        """``{key: (shape, dtype)}`` of every state array slot ``index`` may hold, as its storage keeps it.

        The rule's state arrays (an int8 one as its codes and its
        ``<name>_absmax``), and ``master_param`` with ``master_weights``.
        """
        n = self._layout.slots[index].param.size
        layout: StateLayout = {}
        for name in self.state_arrays:
            layout.update(_storage.state_layout(name, n, self._array_storage(index, name)))
        if self.master_weights:
            layout[_storage.MASTER] = ((n,), _storage.FLOAT32)
        return layout

    @property
    def param_groups(self) -> Sequence[ParamGroup]:
        """The parameter groups (see the class docstring); change hyperparameters in place."""
        return self._param_groups

    @property
    def state(self) -> Sequence[dict[str, Any]]:
        """Per-slot state dicts (see the class docstring)."""
        return self._state

    def add_param_group(self, param_group: GroupSpec) -> None:
        """Add a parameter group, as ``torch.optim.Optimizer.add_param_group``.

        Parameters
        ----------
        param_group : dict
            ``"params"`` (a ParamSet, ``ps.select(...)``, or a list, tuple or
            dict of arrays, sharing no memory with the parameters already
            optimized) and hyperparameters for the group; those not given
            take the optimizer's defaults.

        Notes
        -----
        Everything is checked before anything changes.  From then on the
        optimizer has parameter groups: ``step(grads)`` takes a list with one
        entry per group, unless every group lives in a ParamSet.
        """
        if not isinstance(param_group, Mapping):
            raise TypeError(f"param_group must be a dict with a 'params' entry, got {type(param_group).__name__}")
        with self._exclusive():
            group = self._new_group(len(self._param_groups), {k: v for k, v in param_group.items() if k != "params"})
            first = len(self._layout.slots)
            new: Sequence[Slot]
            try:  # the storage options, before the layout changes (add_group reports bad params itself)
                new = ParamLayout(param_group["params"]).slots
            except (KeyError, TypeError, ValueError):
                new = ()
            self._check_storage(new)
            new_slots = self._layout.add_group(param_group)  # checks, then changes the layout
            dict.__setitem__(group, "params", list(range(first, first + len(new_slots))))
            bound = self._bound
            self._set_groups(self._groups + [group], self._states + [{} for _ in new_slots])
            self._bound[:first] = bound
            self._lock = holding([s.param for s in self._layout.slots])  # waiting steps see the change

    # ------------------------------------------------------------------ steps
    def step(self, grads: Grads = None) -> bool:
        """Update every parameter in place: one fused kernel call per slot.

        Parameters
        ----------
        grads : optional
            Gradients in the structure of ``params``.  For a ParamSet (or a
            selection of one): None to use its gradient buffer ``ps.grad``,
            or a 1-D array shaped like ``ps.data``.  For a list or tuple of
            arrays: a list or tuple of the same length; for a dict: a dict
            with the same keys.  For parameter groups: a list with one such
            entry per group, or None when every group lives in a ParamSet.
            Each gradient must match its parameter's shape and dtype, be
            C-contiguous and share no memory with any parameter.  A ``None``
            entry skips that parameter (its state and step count stay as
            they are).

        Returns
        -------
        bool
            True if the step was applied; False if ``skip_nonfinite`` is on
            and a gradient held a NaN or infinity.
        """
        lock = self._lock
        with lock:
            if lock is self._lock:  # (the body is inline: a step on a small model costs a few microseconds)
                return self._step_slots(self._layout.gradients(grads))
        return self.step(grads)  # add_param_group replaced the locks while this thread waited: again

    def _step_slots(self, grads: list[Array | None]) -> bool:
        """:meth:`step` on one gradient array (or None) per slot, checked; the caller holds the locks."""
        num_threads = get_num_threads()
        if self.skip_nonfinite and any(g is not None and nonfinite_count(g, num_threads) for g in grads):
            self.skipped_steps += 1
            return False
        self._update(grads, num_threads)
        return True

    def _update(self, grads: list[Array | None], num_threads: int) -> None:
        """Run every slot's kernel on its gradient (None: the slot is skipped), after the non-finite check."""
        step_slots(self, grads, num_threads)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold this optimizer's locks for a ``with`` block, as :meth:`step` does (again if replaced meanwhile)."""
        while True:
            lock = self._lock
            with lock:
                if lock is self._lock:
                    yield
                    return

    def _prepare(self, index: int, grad: Array) -> tuple[BoundStep, dict[str, Array] | None]:
        """Slot ``index``'s bound kernel, up to date, and the state arrays it created (stored after it runs)."""
        state = self.state[index]
        group = self.param_groups[self._slot_group[index]]
        bound = self._bound[index]
        if bound is None or not bound.holds(state):
            return self._bind(index, grad, state, group)
        kernel = bound.kernel
        if bound.version == group.version and bound.grad is grad:  # the common case: nothing changed
            return kernel, None
        if bound.version != group.version:  # new hyperparameters (a schedule's lr, say): same arrays if they suffice
            try:
                kernel.set_hyper(group.kernel_hyper())
            except ValueError:  # a state array the new settings need is not bound (amsgrad switched on, say)
                return self._bind(index, grad, state, group)
        if bound.grad is not grad:
            kernel.set_grad(grad)
        self._bound[index] = SlotBinding(kernel, group.version, grad, bound.arrays)
        return kernel, None

    def _bind(self, index: int, grad: Array, state: dict[str, Any],
              group: ParamGroup) -> tuple[BoundStep, dict[str, Array]]:
        """Bind slot ``index``'s kernel afresh; state arrays it needs but lacks are created, not yet stored."""
        param = self._layout.slots[index].param
        new_arrays: dict[str, Array] = {}
        arrays: list[Any] = []
        used: list[tuple[str, Array]] = []
        for name, needed in zip(self.state_arrays, self._needed(group)):
            storage = self._array_storage(index, name)
            keys = (name, name + _storage.ABSMAX_SUFFIX) if storage == "int8" else (name,)
            held: tuple[Any, ...] | None = tuple(state.get(key) for key in keys) if needed else None
            if held is not None and held[0] is None:
                held = self._new_state(name, param.size, storage, self._initial_value(name, group, param))
                new_arrays.update(zip(keys, held))
            if held is not None:
                used += zip(keys, held)
            arrays.append(held if held is None or storage == "int8" else held[0])
        master = None
        if self.master_weights:
            master = state.get(_storage.MASTER)
            if master is None:
                master = new_arrays[_storage.MASTER] = param.astype(np.float32)
            used.append((_storage.MASTER, master))
        kernel = BoundStep(cast(str, self.rule), param, grad, tuple(arrays), group.kernel_hyper(), master=master,
                           stochastic_rounding=self.stochastic_rounding, seed=self.seed, stream=index)
        self._bound[index] = SlotBinding(kernel, group.version, grad, tuple(used))
        return kernel, new_arrays

    def _needed(self, group: ParamGroup) -> Sequence[bool]:
        """Which of ``state_arrays`` the group's hyperparameters use (decided as the kernel decides it)."""
        return needed(cast(str, self.rule), group.kernel_hyper())

    def _initial_value(self, name: str, group: ParamGroup, param: Array) -> float | Array:
        """What state array ``name`` of the slot with parameters ``param`` starts from: a number for every
        element (0 unless a subclass says otherwise), or, for a state array kept in float storage (see
        ``full_precision_state``), an array of ``param``'s length to copy."""
        return 0.0

    def _new_state(self, name: str, n: int, storage: str, value: float | Array) -> tuple[Array, ...]:
        """State array ``name`` of ``n`` elements at its first use, in ``storage``, holding ``value`` (a number
        for every element, or, in float storage, an array to convert): a tuple with the array, or for int8 the
        codes and their absmax (each block encodes the number as the block's largest element, which it holds
        exactly, without a float32 array of the full size)."""
        if storage != "int8":
            dtype = _storage.state_layout(name, n, storage)[name][1]
            return (np.array(value, dtype=dtype) if np.ndim(value) else np.full(n, value, dtype=dtype),)
        if np.ndim(value):
            raise TypeError(f"{type(self).__name__}._initial_value({name!r}) gave an array, which int8 storage does "
                            "not start from: list the state array in full_precision_state")
        signed = next(s.signed for s in RULES[self.rule].state if s.name == name)  # type: ignore[index]
        code, top = np.zeros(1, np.uint8), np.zeros(1, np.float32)
        quantize_blockwise(np.array([value], np.float32), code, top, signed)  # a block of one: its largest value
        return np.full(n, code[0], np.uint8), np.full(_storage.absmax_length(n), top[0], np.float32)

    def _check_group(self, group: ParamGroup) -> None:
        """Checks that involve several hyperparameters of a group (none by default)."""

    def tensor_state_slices(self, index: int) -> TensorStateSlices:
        """Where each tensor of slot ``index`` keeps its state: per tensor, in order, ``{state array: (slice of
        the slot's array, shape)}``, the shape being the one ``torch.optim`` gives that state for the tensor.

        Every state array holds one element per parameter element (in float
        storage: int8 codes share their absmax across tensors) unless a
        subclass says otherwise; fastopt.torch reads and writes each
        parameter's state through it.
        """
        return tuple({name: (slice(t.start, t.stop), t.shape) for name in self.state_arrays}
                     for t in slot_tensors(self._layout.slots[index]))

    def zero_grad(self) -> None:
        """Zero the gradients of every parameter that lives in a ParamSet."""
        if not self._layout.paramsets:
            raise TypeError("zero_grad() needs a ParamSet; an optimizer built on arrays holds no gradients")
        with self._exclusive():
            for slot in self._layout.slots:
                if slot.paramset is not None:
                    slot.paramset.grad[slot.run] = 0

    # ---------------------------------------------------------- learning rate
    @property
    def lr(self) -> float:
        """The learning rate of every group; setting it sets all groups (as a schedule does)."""
        rates: set[float] = {group["lr"] for group in self.param_groups}
        if len(rates) != 1:
            raise ValueError(f"parameter groups have different learning rates {sorted(rates)}; "
                             "read param_groups[i]['lr'] instead")
        return rates.pop()

    @lr.setter
    def lr(self, value: Scalar) -> None:
        value = self.validators["lr"]("lr", value)
        for group in self.param_groups:
            group["lr"] = value

    # ------------------------------------------------------------ state dicts
    def state_dict(self) -> StateDict:
        """A snapshot of the optimizer: ``{"state": {...}, "param_groups": [...]}``, as in torch.optim.

        ``state`` maps slot index to that slot's state (arrays are copies);
        each entry of ``param_groups`` holds the group's hyperparameters and
        ``"params"``, the indices of its slots; ``skipped_steps`` counts the
        steps refused for non-finite gradients.
        """
        with self._exclusive():
            return {
                "state": {i: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                          for i, s in enumerate(self.state) if s},
                "param_groups": [{**group, "params": list(group["params"])} for group in self.param_groups],
                "skipped_steps": self.skipped_steps,
                **({"seed": self.seed} if self.stochastic_rounding else {}),
            }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a snapshot taken by :meth:`state_dict` on an optimizer built the same way.

        Everything is checked before anything changes: on any error the
        optimizer is left as it was.
        """
        with self._exclusive():  # checked and taken against one layout: add_param_group cannot come between
            self._load_state_dict(state_dict)

    def _load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise TypeError("state_dict must be a dict with 'state' and 'param_groups', as state_dict() returns")
        groups = list(state_dict["param_groups"])
        if len(groups) != len(self.param_groups):
            raise ValueError(f"state_dict has {len(groups)} parameter groups, this optimizer has "
                             f"{len(self.param_groups)}")
        new_groups = []
        for g, (saved, mine) in enumerate(zip(groups, self.param_groups)):
            if not isinstance(saved, Mapping):
                raise TypeError(f"param_groups[{g}] in the state_dict must be a dict, got {type(saved).__name__}")
            if list(saved.get("params", ())) != mine["params"]:
                raise ValueError(f"param_groups[{g}] holds slots {saved.get('params')} in the state_dict but "
                                 f"{mine['params']} here; was the optimizer built on the same parameters?")
            missing = sorted(set(self.validators) - set(saved))
            if missing:
                raise ValueError(f"param_groups[{g}] in the state_dict lacks {missing}")
            group = ParamGroup(self.validators, {k: v for k, v in saved.items() if k != "params"})
            dict.__setitem__(group, "params", list(mine["params"]))
            new_groups.append(group)
        for group in new_groups:
            self._check_group(group)
        new_state: list[dict[str, Any]] = [{} for _ in self.state]
        seen = set()
        for key, saved in dict(state_dict["state"]).items():
            index = self._slot_index(key)
            if index in seen:
                raise ValueError(f"state_dict has two entries for slot {index}")
            seen.add(index)
            if not isinstance(saved, Mapping):
                raise TypeError(f"state for slot {index} in the state_dict must be a dict, got {type(saved).__name__}")
            new_state[index] = self._checked_state(index, saved, new_groups[self._slot_group[index]])
        skipped = step_count("skipped_steps", state_dict.get("skipped_steps", 0))
        seed = _seed(state_dict.get("seed", self.seed))
        self._set_groups(new_groups, new_state)
        self.skipped_steps, self.seed = skipped, seed

    # --------------------------------------------------------- copy, pickle
    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles carry ``params``, the defaults and a :meth:`state_dict`.

        The slots are views into ``params`` and the bound kernels hold raw
        pointers, so neither is copied: :meth:`__setstate__` rebuilds both
        from the copied ``params``, which ``copy.deepcopy`` and ``pickle``
        copy together with any ParamSet the caller copies alongside.
        """
        return {"params": self._layout.params, "defaults": dict(self.defaults),
                "options": {name: getattr(self, name) for name in _OPTIONS}, "state_dict": self.state_dict()}

    def __setstate__(self, saved: Mapping[str, Any]) -> None:
        options = saved.get("options", {"skip_nonfinite": saved.get("skip_nonfinite", False)})  # older pickles
        Optimizer.__init__(self, saved["params"], saved["defaults"], **options)
        self.load_state_dict(saved["state_dict"])

    def _slot_index(self, key: Any) -> int:
        if isinstance(key, str) and key.isdecimal():
            index = int(key)
        else:
            try:
                index = operator.index(key)  # ints and NumPy integers; not floats, not bools
            except TypeError:
                index = None
            if isinstance(key, (bool, np.bool_)):
                index = None
        if index is None:
            raise ValueError(f"state_dict state key {key!r} is not a slot index")
        if not 0 <= index < len(self.state):
            raise ValueError(f"state_dict has state for slot {index}, but this optimizer has {len(self.state)} slots")
        return index

    def _checked_state(self, index: int, saved: Mapping[str, Any], group: ParamGroup) -> dict[str, Any]:
        """Slot ``index``'s state from a state_dict, checked to be complete for ``group``'s settings.

        A slot's state is empty (never stepped) or holds every scalar this
        optimizer keeps and every state array the group's hyperparameters
        use -- except the ``switchable_state`` ones, which a state taken
        after switching their setting on (``amsgrad``, say) and before the
        next step lacks; that step creates them, as it would have without
        the round trip.  Arrays that other settings use (``max_exp_avg_sq``
        after ``amsgrad`` was switched off) may be present too.  A step
        count is an integer in [0, 2**63): one at 2**63 - 1 loads, and the
        next step is refused (before any kernel runs).
        """
        slot = self._layout.slots[index]
        layout = self.state_layout(index)
        scalars = (("step",) if self.counts_steps else ()) + tuple(k for k in self.state_scalars if k != "step")
        if saved:
            needed = [key for name, use in zip(self.state_arrays, self._needed(group))
                      if use and name not in self.switchable_state
                      for key in _storage.state_layout(name, 0, self._array_storage(index, name))]
            needed += [_storage.MASTER] if self.master_weights else []  # made with the slot's first state
            missing = [key for key in scalars + tuple(needed) if key not in saved]
            missing += [f"{name}{_storage.ABSMAX_SUFFIX}" for name in self.state_arrays  # int8: codes and absmax
                        if self._array_storage(index, name) == "int8" and name in saved
                        and f"{name}{_storage.ABSMAX_SUFFIX}" not in saved]
            missing += [name for name in self.state_arrays
                        if f"{name}{_storage.ABSMAX_SUFFIX}" in saved and name not in saved]
            if missing:
                raise ValueError(f"state of {slot.name} in the state_dict lacks {missing}: a slot's state must "
                                 f"be empty or complete ({', '.join(scalars + tuple(needed))})")
        state: dict[str, Any] = {}
        for key, value in saved.items():
            if key in layout:
                array = np.asarray(value)
                shape, dtype = layout[key]
                if array.dtype != dtype or array.shape != shape:
                    raise ValueError(f"state {key!r} of {slot.name} is {array.dtype}{list(array.shape)} in the "
                                     f"state_dict, expected {dtype}{list(shape)} (state_dtype="
                                     f"{self._slot_storage[index]!r})")
                state[key] = array.copy()
            elif key == "step" and key in scalars:
                state[key] = step_count(f"state 'step' of {slot.name}", value)  # up to MAX_STEP, a count one can reach
            elif key in scalars:
                scalar = np.asarray(value)
                low, high = SCALAR_RANGES.get(key, (-math.inf, math.inf))
                if (scalar.shape != () or scalar.dtype.kind not in "iuf" or not math.isfinite(scalar)
                        or not low <= scalar <= high):
                    raise ValueError(f"state {key!r} of {slot.name} must be a finite number in [{low}, {high}], "
                                     f"got {value!r}")
                state[key] = float(scalar)
            else:
                raise ValueError(f"state_dict has unknown state {key!r} for {slot.name} of {type(self).__name__}")
        return state

    # ------------------------------------------------------------------- misc
    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for g, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {g}")
            lines += [f"    {k}: {group[k]}" for k in sorted(group) if k != "params"]
        lines.append(")")
        return "\n".join(lines)

