"""The base of fastopt.torch's optimizers: torch.optim's interface over fastopt's fused kernels.

How a step runs
    The parameters live in ParamSet arenas (see :mod:`fastopt.torch._arena`).
    Within each arena, neighbouring parameters of one group whose optimizer
    state is alike (same step count, say) form a *run*, and the fastopt
    optimizer underneath (the *engine*) holds one slot per run: a step is
    one kernel call per run, normally one per group.  A step first *folds*
    gradients in: a ``.grad`` that is the arena's view needs nothing; a
    tensor autograd made anew (after ``zero_grad(set_to_none=True)``) or one
    assigned by hand is copied into the arena, one parallel pass for all of
    them (``fastopt._memory.gather``).
    The copy is one read and one write per element, about a third of what an
    Adam step itself moves.  ``.grad`` keeps the tensor autograd made, freed
    at the next ``zero_grad`` as torch frees it (dropping it within the step
    cost more than the copy itself, measured: the allocator hands its pages
    back and the next backward faults them in again).
    ``zero_grad(set_to_none=False)`` points each ``.grad`` at its zeroed
    view of the arena instead, and the backward accumulates there: no copy
    at all, the fastest loop.  A parameter
    whose ``.grad`` is None is skipped, as torch skips it: when that splits
    a run, the runs are laid out anew once, at a cost of a copy of the
    state, and the step after that is one call per run again.

What is torch's
    Parameter groups are torch's dicts (schedulers change ``lr`` there;
    every step reads the hyperparameters back), ``state_dict()`` and
    ``load_state_dict()`` speak torch's format, and the arguments and
    defaults are those of the torch.optim class of the same name (which
    checks them, once, on a dummy parameter).
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TypeVar, overload

import numpy as np
import torch

from fastopt._memory import gather
from fastopt._threads import get_num_threads
from fastopt.nn.clip import clip_grad_norm_ as _clip_grad_norm
from fastopt.torch._arena import adopt, check_grad, check_params, foldable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from torch.optim.optimizer import ParamsT

    from fastopt import optim as _optim
    from fastopt._typing import ParamGroup, StateDict
    from fastopt.paramset import ParamSet
    from fastopt.torch._arena import Entry

    #: One parameter's state as this module holds it: 1-D arrays and numbers.
    _State = dict[str, Any]

_Loss = TypeVar("_Loss")  # what a step's closure returns (a loss tensor, usually), returned by step

# torch.optim's arguments that choose among torch's implementations; fastopt has one, a fused kernel per run.
IMPLEMENTATION_ARGS = ("foreach", "fused", "capturable", "differentiable")


class Optimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` that steps torch CPU parameters with fastopt's kernels.

    Subclasses name the fastopt optimizer doing the math (``engine``) and the
    torch.optim class whose arguments they take (``peer``; None for rules
    torch lacks, which take the engine's arguments).

    Parameters
    ----------
    params : iterable of torch.Tensor or of dicts
        ``model.parameters()`` or torch-style parameter groups.  Each
        parameter must be a dense, contiguous float32 or float64 CPU tensor
        with storage of its own; its values are moved into an arena, and
        ``param.data`` becomes the arena's view (the model computes exactly
        as before).
    *args, **kwargs
        The arguments of ``torch.optim.<peer>``, with its defaults.
        ``foreach`` and ``fused`` are accepted and change nothing;
        ``capturable=True`` and ``differentiable=True`` are refused.

    Notes
    -----
    * Replacing a parameter's ``.data`` afterwards (``model.double()``,
      ``p.data = ...``) detaches it from the arena; the next step raises
      RuntimeError rather than train a copy nobody reads.
    * ``state`` is a read-only mapping, parameter -> its state, whose
      tensors view the state arrays (see :attr:`state`); use
      ``load_state_dict`` to replace state.
    * Non-finite gradients are stepped as torch steps them (NaN spreads).
    * The optimizer cannot be copied or pickled (it owns the parameters'
      memory); save ``state_dict()`` instead.
    """

    engine: ClassVar[Any] = None  # a fastopt.optim.Optimizer subclass (every subclass of this class sets it)
    peer: ClassVar[str | None] = None
    # the step count of a state the peer keeps without one (None: a state needs one)
    step_if_missing: ClassVar[int | None] = None
    # settings the class fixes, whatever a group or a loaded state_dict says (AdamW's decoupling)
    fixed: ClassVar[dict[str, Any]] = {}

    def __init__(self, params: ParamsT, *args: Any, **kwargs: Any) -> None:
        self._entries: list[Entry] = []
        self._engine: Any = None  # the fastopt optimizer over the runs (None until the first layout)
        defaults = self._defaults(args, kwargs)
        super().__init__(params, defaults)  # its add_param_group calls check every group
        self._entries = adopt([(g, group["params"]) for g, group in enumerate(self.param_groups)], 0)
        self._rebuild([{}] * len(self._entries), self.param_groups)

    # ----------------------------------------------------------- arguments
    def _defaults(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The group defaults, exactly as the peer's ``defaults`` (or the engine's signature) gives them."""
        name = type(self).__name__
        if self.peer is not None:
            peer = getattr(torch.optim, self.peer, None)
            if peer is None:
                raise ImportError(f"{name} takes the arguments of torch.optim.{self.peer}, which torch "
                                  f"{torch.__version__} lacks; upgrade torch")
            defaults = {**peer([torch.zeros(1, 1)], *args, **kwargs).defaults, **self.fixed}  # Muon: 2-D
        else:
            signature = inspect.signature(self.engine)
            extra = [p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD]
            bound = signature.bind(None, *args, **kwargs)
            unexpected = sorted(bound.arguments.get(extra[0], {})) if extra else []
            if unexpected:
                raise TypeError(f"{name}() got unexpected keyword arguments {unexpected}")
            bound.apply_defaults()
            defaults = {k: v for k, v in bound.arguments.items() if k != "params" and k not in extra}
        self._hyper_keys = tuple(k for k in defaults if k not in IMPLEMENTATION_ARGS)
        unknown = sorted(set(self._hyper_keys) - set(self.engine.validators))
        if unknown:
            raise TypeError(f"{name}: {self.engine.__name__} takes no {unknown}")
        self._check_group(defaults, "")
        return defaults

    def _check_group(self, group: ParamGroup, where: str) -> None:
        """Check a group's settings as the engine would, on a throwaway array: a refusal changes nothing."""
        for key in ("capturable", "differentiable"):
            if group.get(key):
                raise ValueError(f"{type(self).__name__}{where}: {key}=True is not supported; fastopt.torch steps "
                                 "CPU tensors outside autograd")
        self.engine([np.zeros(1)], **{k: _plain(group[k]) for k in self._hyper_keys})

    def add_param_group(self, param_group: ParamGroup) -> None:
        """Add a parameter group, as ``torch.optim.Optimizer.add_param_group``; its parameters are adopted.

        Everything is checked before anything changes.
        """
        if not isinstance(param_group, Mapping):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if isinstance(params, torch.Tensor):
            params = [params]
        elif isinstance(params, set) or params is None:
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering of "
                            "tensors in sets will change between runs. Please use a list instead.")
        group["params"] = params = list(params)
        g = len(self.param_groups)
        check_params(params, f"param_groups[{g}]['params']", [p for old in self.param_groups for p in old["params"]])
        self._check_group({**self.defaults, **group}, f" param_groups[{g}]")
        super().add_param_group(group)
        if self._engine is None:  # within __init__, which adopts every group at once
            return
        states = self._per_param_state()
        new = adopt([(g, self.param_groups[g]["params"])], len(self._entries))
        self._entries += new
        self._rebuild(states + [{}] * len(new), self.param_groups)

    # --------------------------------------------------------------- layout
    def _rebuild(self, states: Sequence[_State], groups: Sequence[ParamGroup],
                 present: Sequence[bool] | None = None) -> None:
        """Lay the parameters out in runs and build the engine over them, holding ``states`` (one per parameter).

        A run is cut where the group, the kind of state (its scalars: step
        counts are equal within a run) or ``present`` changes.  The new
        engine is complete before it replaces the old one.
        """
        runs: list[list[int]] = []
        last = None
        for k, entry in sorted(enumerate(self._entries), key=lambda ke: (id(ke[1].paramset), ke[1].index)):
            key = (id(entry.paramset), entry.group, _state_key(states[k]), present[k] if present else True)
            if key != last:
                runs.append([])
            runs[-1].append(k)
            last = key
        hyper = [self._hyper_of(group) for group in groups]
        engine_groups = [{"params": self._entries[run[0]].paramset.select([self._entries[k].name for k in run]),
                          **dict(zip(self._hyper_keys, map(_plain, hyper[self._entries[run[0]].group])))}
                         for run in runs]
        engine = self.engine(engine_groups)
        where = [engine.tensor_state_slices(r) for r in range(len(runs))]  # a run's tensors: its parameters
        saved = engine.state_dict()
        saved["state"] = {r: self._merged(engine, r, run, where[r], states) for r, run in enumerate(runs)
                          if states[run[0]]}
        engine.load_state_dict(saved)
        self._engine, self._runs, self._synced = engine, runs, hyper
        self._group_sizes = [len(group["params"]) for group in groups]
        self._where: list[Any] = [None] * len(self._entries)  # per parameter: its run, and {state array: (slice, shape)}
        for r, run in enumerate(runs):
            for k, slices in zip(run, where[r]):
                self._where[k] = (r, slices)
        self._paramsets = list({id(e.paramset): e.paramset for e in self._entries}.values())

    def _merged(self, engine: _optim.Optimizer, r: int, run: Sequence[int], slices: Sequence[dict[str, Any]],
                states: Sequence[_State]) -> _State:
        """The state of run ``r`` from its parameters' (alike numbers, see _state_key): arrays pieced together."""
        layout = engine.state_layout(r)
        merged = {k: v for k, v in states[run[0]].items() if not isinstance(v, np.ndarray)}
        held = {name for k in run for name, v in states[k].items() if isinstance(v, np.ndarray)}
        unclaimed = {name for name in layout if not any(name in where for where in slices)}  # empty by layout
        for name in sorted(held | unclaimed):
            shape, dtype = layout[name]
            array = merged[name] = np.zeros(shape, dtype)
            for k, where in zip(run, slices):
                if name not in where:
                    continue
                piece, _ = where[name]
                value = states[k].get(name)
                if value is None:
                    raise ValueError(f"the state of parameter {self._entries[k].index} lacks {name!r}, which that "
                                     "of a parameter of the same group and step holds")
                if value.size != piece.stop - piece.start:
                    raise ValueError(f"the state of parameter {self._entries[k].index}: {name} has {value.size} "
                                     f"elements, expected {piece.stop - piece.start}")
                array[piece] = value
        return merged

    def _per_param_state(self) -> list[_State]:
        """Each parameter's state: a dict of 1-D array copies and numbers (empty before its first step)."""
        return [{name: value.copy() if isinstance(value, np.ndarray) else value
                 for name, value in self._state_of(k).items()} for k in range(len(self._entries))]

    def _state_of(self, k: int) -> _State:
        """Parameter ``k``'s state: views of its pieces of the run's arrays (1-D), and the run's numbers."""
        r, slices = self._where[k]
        state = self._engine.state[r]
        return {**{name: v for name, v in state.items() if not isinstance(v, np.ndarray)},
                **{name: state[name][piece] for name, (piece, _) in slices.items() if name in state}}

    # ---------------------------------------------------------------- steps
    @overload
    def step(self, closure: None = None) -> None: ...
    @overload
    def step(self, closure: Callable[[], _Loss]) -> _Loss: ...

    def step(self, closure: Callable[[], _Loss] | None = None) -> _Loss | None:
        """One update of every parameter that has a gradient: one fused kernel call per run.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss (run with gradients
            enabled), as in torch.optim.

        Returns
        -------
        The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        missing = self._fold_grads()
        self._sync_groups()
        if not missing:
            self._engine.step()
            return loss
        present = [e.param.grad is not None for e in self._entries]
        if any(len({present[k] for k in run}) > 1 for run in self._runs):
            self._rebuild(self._per_param_state(), self.param_groups, present)
        grads = self._engine._layout.gradients(None)
        with self._engine._exclusive():
            self._engine._step_slots([g if present[run[0]] else None for g, run in zip(grads, self._runs)])
        return loss

    def _fold_grads(self) -> bool:
        """Bring every gradient into the arena (see the module docstring); True if some parameter has none."""
        missing = False
        # id(paramset) -> (the ParamSet, [offsets], [addresses], [lengths], [the tensors, alive until copied])
        pieces: dict[int, tuple[ParamSet, list[int], list[int], list[int], list[torch.Tensor]]] = {}
        for entry in self._entries:
            p = entry.param
            if entry.address is not None and p.data_ptr() != entry.address:
                raise RuntimeError(f"parameter {entry.index} ({list(p.shape)}) no longer lives in the optimizer's "
                                   "arena: its .data was replaced (model.to(), model.double(), p.data = ...); "
                                   "build the optimizer after changing the model")
            grad = p.grad
            if grad is entry.grad:
                continue
            if grad is None:
                missing = True
                continue
            if not foldable(grad, p):
                check_grad(grad, p, f"parameter {entry.index}'s .grad")
            if not entry.nbytes:
                continue
            if not grad.is_contiguous():
                with torch.no_grad():
                    entry.grad.copy_(grad)
                continue
            piece = pieces.get(id(entry.paramset))
            if piece is None:
                piece = pieces[id(entry.paramset)] = (entry.paramset, [], [], [], [])
            piece[1].append(entry.offset)
            piece[2].append(grad.data_ptr())
            piece[3].append(entry.nbytes)
            piece[4].append(grad)
        threads = get_num_threads()
        for ps, offsets, sources, lengths, _ in pieces.values():  # one parallel copy per arena
            gather(ps.grad.view(np.uint8), np.array(offsets, np.intp), np.array(sources, np.uintp),
                   np.array(lengths, np.intp), threads)
        return missing

    def _sync_groups(self) -> None:
        """Hand the groups' hyperparameters, as schedulers and users left them, to the engine."""
        groups = self.param_groups
        if len(groups) != len(self._synced) or any(len(group["params"]) != n
                                                   for group, n in zip(groups, self._group_sizes)):
            raise RuntimeError("param_groups changed shape; add parameters with add_param_group()")
        for g, group in enumerate(groups):
            values = self._hyper_of(group)
            if values != self._synced[g]:
                changed = [(key, _plain(value)) for key, value, old in zip(self._hyper_keys, values, self._synced[g])
                           if value is not old and value != old]
                for r, run in enumerate(self._runs):
                    if self._entries[run[0]].group == g:
                        for key, value in changed:
                            self._engine.param_groups[r][key] = value  # checked there
                self._synced[g] = values

    def _hyper_of(self, group: ParamGroup) -> tuple[Any, ...]:
        """A group's hyperparameters, copied where a list could change in place (``betas`` as a list, say)."""
        return tuple(list(v) if isinstance(v, list) else v for v in (group[key] for key in self._hyper_keys))

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients, as ``torch.optim.Optimizer.zero_grad``.

        With ``set_to_none`` (torch's default) every ``.grad`` becomes None;
        the next step copies autograd's new gradients into the arena.
        Otherwise the arenas' gradient buffers are zeroed, one pass each,
        every ``.grad`` that is not None becomes (or stays) its zeroed view
        of the arena, and the next backward accumulates into it in place.
        """
        if set_to_none:
            for entry in self._entries:
                entry.param.grad = None
            return
        for ps in self._paramsets:
            ps.grad.fill(0)
        for entry in self._entries:
            grad = entry.param.grad
            if grad is not None and grad is not entry.grad:  # zeroed as torch zeroes it, then the arena's view
                if grad.grad_fn is not None:
                    grad.detach_()
                else:
                    grad.requires_grad_(False)
                grad.zero_()
                entry.param.grad = entry.grad

    def clip_grad_norm_(self, max_norm: float, norm_type: float = 2.0,
                        error_if_nonfinite: bool = False) -> torch.Tensor:
        """Clip all gradients together as ``torch.nn.utils.clip_grad_norm_`` does, one pass over each arena.

        Gradients are folded into the arenas first, and each ``.grad`` then
        is its (clipped) view of the arena; parameters without a gradient
        take no part.  Returns the total norm before clipping, a 0-d tensor.
        See :func:`fastopt.nn.clip_grad_norm_`.
        """
        missing = self._fold_grads()
        for entry in self._entries:
            if entry.param.grad is not None:
                entry.param.grad = entry.grad
        grads = ([ps.grad for ps in self._paramsets] if not missing else
                 [e.paramset.grads[e.name].reshape(-1) for e in self._entries if e.param.grad is not None])
        total = _clip_grad_norm(grads, max_norm, norm_type, error_if_nonfinite) if grads else 0.0
        return torch.tensor(total, dtype=self._entries[0].param.dtype)

    # ---------------------------------------------------------- state dicts
    # torch's ``state`` is a defaultdict attribute; this one is a read-only mapping (see the docstring).
    @property  # type: ignore[override]
    def state(self) -> Mapping[torch.Tensor, dict[str, torch.Tensor]]:
        """Per parameter its state, torch-style: tensors viewing the state arrays, and numbers as 0-d tensors.

        The views are of the arrays as the runs are laid out now: a new
        layout (after a step that skips some parameters of a run,
        ``add_param_group`` or ``load_state_dict``) makes new arrays, so
        index ``state`` again after one rather than keep its tensors.
        """
        return _StateView(self)

    @state.setter
    def state(self, value: object) -> None:  # torch.optim.Optimizer.__init__ sets it; the state lives in the engine
        if self._engine is not None:
            raise AttributeError("the state of a fastopt.torch optimizer is replaced with load_state_dict()")

    def state_dict(self) -> StateDict:
        """The optimizer's state in torch.optim's format; a torch.optim optimizer of the peer class loads it.

        ``state`` maps parameter indices (in ``param_groups`` order) to
        dicts of tensors (copies), the step count and other numbers as 0-d
        tensors as torch keeps them; ``param_groups`` are the groups'
        settings with ``params`` as indices.
        """
        hook: Any  # a pre-hook, then a post-hook (their types differ)
        for hook in self._optimizer_state_dict_pre_hooks.values():
            hook(self)
        packed: dict[int, dict[str, torch.Tensor]] = {}
        for k, (entry, state) in enumerate(zip(self._entries, self._per_param_state())):
            if state:
                packed[entry.index] = _to_torch(state, self._where[k][1])
        groups: list[dict[str, Any]] = []
        start = 0
        for group in self.param_groups:
            n = len(group["params"])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": list(range(start, start + n))})
            start += n
        state_dict = {"state": packed, "param_groups": groups}
        for hook in self._optimizer_state_dict_post_hooks.values():
            result = hook(self, state_dict)
            state_dict = state_dict if result is None else result
        return state_dict

    def load_state_dict(self, state_dict: StateDict) -> None:
        """Load a state_dict in torch.optim's format (from this class or from ``torch.optim.<peer>``).

        Everything is checked before anything changes.  Groups missing a
        setting (from an older torch) take this optimizer's default for it.
        """
        hook: Any  # a pre-hook, then a post-hook (their types differ)
        for hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = hook(self, state_dict)
            state_dict = state_dict if result is None else result
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise TypeError("state_dict must be a dict with 'state' and 'param_groups', as state_dict() returns")
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"the state_dict has {len(saved_groups)} parameter groups, this optimizer has "
                             f"{len(self.param_groups)}")
        position = {id(e.param): k for k, e in enumerate(self._entries)}
        where: dict[Any, int] = {}
        new_groups: list[dict[str, Any]] = []
        for g, (saved, mine) in enumerate(zip(saved_groups, self.param_groups)):
            if not isinstance(saved, Mapping) or len(saved.get("params", ())) != len(mine["params"]):
                raise ValueError(f"param_groups[{g}] of the state_dict does not match this optimizer's group {g} "
                                 f"({len(mine['params'])} parameters)")
            where.update((key, position[id(p)]) for key, p in zip(saved["params"], mine["params"]))
            group = {**self.defaults, **{k: v for k, v in saved.items() if k != "params"}, **self.fixed,
                     "params": mine["params"]}
            self._check_group(group, f" param_groups[{g}] of the state_dict")
            new_groups.append(group)
        states: list[_State] = [{} for _ in self._entries]
        for key, saved in dict(state_dict["state"]).items():
            if key not in where:
                raise ValueError(f"the state_dict has state for parameter {key!r}, which its param_groups do not list")
            states[where[key]] = self._imported(key, saved, self._entries[where[key]].param)
        self._rebuild(states, new_groups)
        for group, new in zip(self.param_groups, new_groups):
            group.clear()
            group.update(new)
        for hook in self._optimizer_load_state_dict_post_hooks.values():
            hook(self)

    def _imported(self, key: object, saved: object, param: torch.Tensor) -> _State:
        """One parameter's state from a state_dict: 1-D arrays of the parameter's dtype and Python numbers."""
        if not isinstance(saved, Mapping):
            raise TypeError(f"state {key!r} of the state_dict must be a dict, got {type(saved).__name__}")
        arrays = set(self.engine.state_arrays)
        scalars = set(self.engine.state_scalars) | ({"step"} if self.engine.counts_steps else set())
        unknown = sorted(set(saved) - arrays - scalars)
        if unknown:
            raise ValueError(f"state {key!r} of the state_dict holds {unknown}, which {type(self).__name__} does "
                             "not keep")
        state: _State = {}
        for name, value in saved.items():
            if value is None:  # torch.optim.SGD's momentum_buffer before its first step
                continue
            tensor = torch.as_tensor(value).detach()
            if name in arrays:  # its size is checked where it is placed (see _merged)
                state[name] = tensor.to("cpu", param.dtype).reshape(-1).numpy().copy()
            elif tensor.numel() != 1:
                raise ValueError(f"state {key!r} of the state_dict: {name} must be a number, got {list(tensor.shape)}")
            elif name == "step":
                step = float(tensor)
                if not step.is_integer():
                    raise ValueError(f"state {key!r} of the state_dict: step must be a whole number, got {step}")
                state[name] = int(step)
            else:
                state[name] = float(tensor)
        if state and "step" in scalars and "step" not in state and self.step_if_missing is not None:
            state["step"] = self.step_if_missing
        return state

    # ------------------------------------------------------------------ misc
    def __getstate__(self) -> NoReturn:
        raise TypeError(f"a {type(self).__name__} cannot be copied or pickled: it owns the memory of the model's "
                        "parameters; save its state_dict() instead")


class _StateView(Mapping[torch.Tensor, dict[str, torch.Tensor]]):
    """``optimizer.state``: parameter -> dict of tensors viewing the state arrays (numbers as 0-d tensors)."""

    def __init__(self, optimizer: Optimizer) -> None:
        self._optimizer = optimizer
        self._position = {id(e.param): k for k, e in enumerate(optimizer._entries)}

    def __getitem__(self, param: torch.Tensor) -> dict[str, torch.Tensor]:
        opt = self._optimizer
        k = self._position.get(id(param))
        if k is None:
            raise KeyError("not a parameter of this optimizer")
        return _to_torch(opt._state_of(k), opt._where[k][1])

    def __iter__(self) -> Iterator[torch.Tensor]:
        opt = self._optimizer
        return (e.param for e, (r, _) in zip(opt._entries, opt._where) if opt._engine.state[r])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, param: object) -> bool:
        k = self._position.get(id(param))
        return k is not None and bool(self._optimizer._engine.state[self._optimizer._where[k][0]])


def _plain(value: Any) -> Any:
    """A hyperparameter as the engine takes it: a one-element tensor (torch takes a tensor ``lr``) as a float."""
    return float(value) if isinstance(value, torch.Tensor) and value.numel() == 1 else value


def _to_torch(state: _State, slices: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A parameter's state, numpy -> torch: arrays as tensors of torch's shapes (``slices``, sharing memory),
    numbers as 0-d tensors of torch's scalar dtype."""
    scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32  # as torch keeps them
    return {k: (torch.from_numpy(v).view(slices[k][1]) if isinstance(v, np.ndarray)
                else torch.tensor(float(v), dtype=scalar)) for k, v in state.items()}


def _state_key(state: _State) -> tuple[tuple[str, Any], ...] | None:
    """What the parameters of one run must share: their numbers (step counts, ...); None before any step."""
    if not state:
        return None
    return tuple(sorted((k, v) for k, v in state.items() if not isinstance(v, np.ndarray)))
