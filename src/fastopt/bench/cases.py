"""What ``python -m fastopt bench`` times: rules, shapes, storage types, and each implementation's step."""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

import fastopt
from fastopt import _storage
from fastopt.bench import numpy_rules

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from fastopt._typing import Array

    # A zero-argument callable doing one step (of an optimizer, or of a roofline kernel); what it returns is unused.
    Step = Callable[[], object]
    # One array a step moves (see step_arrays): (key, nbytes, written)
    StepArray = tuple[str, int, bool]

# The benchmarked configurations: name -> (fastopt/torch class, hyperparameters, state arrays per parameter)
CONFIGS: dict[str, tuple[str, dict[str, Any], int]] = {
    "sgd-momentum": ("SGD", dict(lr=1e-3, momentum=0.9), 1),
    "adagrad": ("Adagrad", dict(lr=1e-2, eps=1e-10), 1),
    "rmsprop": ("RMSprop", dict(lr=1e-2, alpha=0.99, eps=1e-8), 1),
    "adam": ("Adam", dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8), 2),
    "adamw": ("AdamW", dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2), 2),
    "adamw-schedulefree": ("AdamWScheduleFree", dict(lr=2.5e-3, betas=(0.9, 0.999), eps=1e-8), 2),
    "lamb": ("LAMB", dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=1e-2), 2),
    "adafactor": ("Adafactor", dict(lr=1e-2), 1),
}
# The rules the NumPy baselines do not have: name -> their only peers (torch.optim has Adafactor; LAMB is optax's,
# jit-compiled on the CPU; AdamWScheduleFree the schedulefree package's)
ONLY_PEERS: dict[str, tuple[str, ...]] = {"adamw-schedulefree": ("schedulefree",), "lamb": ("optax",),
                                          "adafactor": ("torch-forloop", "torch-foreach")}
# The rules whose step crosses memory more than once (fastopt._rules.TENSOR_RULES): name -> per pass, the arrays it
# reads only and those it reads and writes (the shapes here are vectors: Adafactor's variance is not factored)
PASSES: dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "lamb": [(("grad", "param"), ("exp_avg", "exp_avg_sq")), (("exp_avg", "exp_avg_sq"), ("param",))],
    "adafactor": [(("param",), ()), (("grad",), ("variance",)), (("grad", "variance"), ("param",))],
}

# name -> list of tensor shapes
SHAPES: dict[str, list[tuple[int, ...]]] = {
    "1x16M": [(1 << 24,)],
    "1000x10K": [(10_000,)] * 1000,
    "2000x64": [(64,)] * 2000,
    "1x10K": [(10_000,)],
}

IMPLEMENTATIONS = ["fastopt", "fastopt-list", "numpy-textbook", "numpy-inplace",
                   "torch-forloop", "torch-foreach", "torch-fused", "deepspeed", "bnb-adam8bit", "schedulefree", "optax"]

# The other libraries (the "fastest peer" of a row is the fastest of these that ran in it)
PEERS = ["torch-forloop", "torch-foreach", "torch-fused", "deepspeed", "bnb-adam8bit", "schedulefree", "optax"]


# How a step's arrays are stored: parameters (and gradients) and state, master weights, stochastic rounding
class Storage(NamedTuple):
    params: str  # "float32" or "bfloat16"
    state_dtype: str | None  # None: the parameters' dtype
    master_weights: bool
    stochastic_rounding: bool


FLOAT32 = "f32/f32"  # the float32 rows every rule has
STORAGES = {
    FLOAT32: Storage("float32", None, False, False),
    "f32/bf16": Storage("float32", "bfloat16", False, False),
    "f32/int8": Storage("float32", "int8", False, False),
    "bf16/bf16": Storage("bfloat16", "bfloat16", False, False),
    "bf16/int8": Storage("bfloat16", "int8", False, False),
    "bf16/bf16+master": Storage("bfloat16", "bfloat16", True, False),
    "bf16/int8+master": Storage("bfloat16", "int8", True, False),
    "bf16/bf16+sr": Storage("bfloat16", "bfloat16", False, True),
    "bf16/int8+sr": Storage("bfloat16", "int8", False, True),
}
# The rules that also get a row for every other storage (each timed on the same shapes as in float32)
STORAGE_RULES = ("adam",)
# What runs in a row of another storage than float32: fastopt with that storage, and the peers' own
# steps (float32 parameters; bitsandbytes' 8-bit Adam keeps int8 state, so it joins the int8 rows only)
STORAGE_IMPLEMENTATIONS = ("fastopt", "fastopt-list", "torch-fused", "deepspeed", "bnb-adam8bit")
INT8_ONLY = ("bnb-adam8bit",)

# Implementations whose step takes about a second on 16M elements: sampled in at most this many of the
# interleaved repeats (spread over them), one step per sample
MOST_REPEATS = {"bnb-adam8bit": 3}

# The configurations DeepSpeedCPUAdam runs: name -> its adamw_mode
DEEPSPEED_MODES = {"adam": False, "adamw": True}
DEEPSPEED_INSTALL = "pip install deepspeed ninja py-cpuinfo"
BNB_INSTALL = "pip install bitsandbytes"
SCHEDULEFREE_INSTALL = "pip install schedulefree"
OPTAX_INSTALL = "pip install optax"

# The optional peers, for the notes and the --help text: name -> (what it is, the rules it offers, install)
OPTIONAL_PEERS = {
    "deepspeed": ("DeepSpeed's DeepSpeedCPUAdam (float32; it compiles its op on first use)", tuple(DEEPSPEED_MODES),
                  DEEPSPEED_INSTALL),
    "bnb-adam8bit": ("bitsandbytes' 8-bit Adam on the CPU (bnb.optim.Adam8bit, float32 parameters, blockwise "
                     "int8 state; int8 rows only; about a second per 16M step, so sampled "
                     f"{MOST_REPEATS['bnb-adam8bit']} times)", ("adam",), BNB_INSTALL),
    "schedulefree": ("the schedulefree package's AdamWScheduleFree (torch, foreach=True: its fastest path; it "
                     "divides the gradients in place, which stay near 1)", ("adamw-schedulefree",),
                     SCHEDULEFREE_INSTALL),
    "optax": ("optax's lamb (jax, jit-compiled on the CPU, parameters and state donated to each step)", ("lamb",),
              OPTAX_INSTALL),
}


def offers(impl: str, rule: str, storage: str = FLOAT32) -> bool:
    """Whether ``impl`` has a column in the row of ``rule`` in ``storage`` (it may still be missing here)."""
    if impl in OPTIONAL_PEERS and rule not in OPTIONAL_PEERS[impl][1]:
        return False
    if rule in ONLY_PEERS and not (impl.startswith("fastopt") or impl in ONLY_PEERS[rule]):
        return False
    if impl in INT8_ONLY:
        return STORAGES[storage].state_dtype == "int8"
    return storage == FLOAT32 or impl in STORAGE_IMPLEMENTATIONS


def rows(rules: Iterable[str], storages: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """The (rule, storage) rows of a run, in table order: each rule in float32, then its other storages."""
    storages = list(STORAGES) if storages is None else storages
    out = []
    for rule in rules:
        for storage in storages:
            if storage == FLOAT32 or rule in STORAGE_RULES:
                out.append((rule, storage))
    return out


def unavailable(impl: str) -> str | None:
    """Why ``impl`` cannot run on this machine (a sentence), or None when it can.

    torch and DeepSpeed are optional: the benchmark skips what is missing and
    says so.  DeepSpeed's CPU Adam is a C++ op it compiles on first use (with
    ninja and a C++ compiler, a minute, cached afterwards); that happens here,
    before any timing, and a failed build is reported like a missing package.
    """
    if impl.startswith("torch"):
        return _missing_torch()
    if impl == "deepspeed":
        return _missing_deepspeed()
    if impl == "bnb-adam8bit":
        return _missing_bitsandbytes()
    if impl == "schedulefree":
        return _missing_schedulefree()
    if impl == "optax":
        return _missing_optax()
    return None


@functools.lru_cache(maxsize=None)
def _missing_torch() -> str | None:
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch is not installed"
    return None


@functools.lru_cache(maxsize=None)
def _missing_deepspeed() -> str | None:
    if _missing_torch():
        return "it needs torch, which is not installed"
    try:
        from deepspeed.ops.adam import DeepSpeedCPUAdam  # type: ignore[import-not-found, import-untyped, unused-ignore]  # noqa: F401
        from deepspeed.ops.op_builder import CPUAdamBuilder  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except Exception as exc:  # ImportError, or deepspeed failing at import on this machine
        return f"deepspeed is not importable ({type(exc).__name__}: {exc}); {DEEPSPEED_INSTALL}"
    try:
        CPUAdamBuilder().load(verbose=False)
    except Exception as exc:  # no ninja, no compiler, a failed build
        return f"deepspeed's CPU Adam op did not build ({type(exc).__name__}: {exc})"
    return None


@functools.lru_cache(maxsize=None)
def _missing_bitsandbytes() -> str | None:
    if _missing_torch():
        return "it needs torch, which is not installed"
    try:
        import torch
        import bitsandbytes as bnb  # type: ignore[import-not-found, import-untyped, unused-ignore]

        p = torch.zeros(512)
        p.grad = torch.ones(512)
        bnb.optim.Adam8bit([p], lr=1e-3, min_8bit_size=0).step()  # its CPU backend, once
    except Exception as exc:  # ImportError, no CPU backend in this version, ...
        return f"bitsandbytes' 8-bit Adam does not run here ({type(exc).__name__}: {exc}); {BNB_INSTALL}"
    return None


@functools.lru_cache(maxsize=None)
def _missing_schedulefree() -> str | None:
    if _missing_torch():
        return "it needs torch, which is not installed"
    try:
        import schedulefree  # type: ignore[import-untyped, import-not-found, unused-ignore]  # noqa: F401
    except Exception as exc:
        return f"schedulefree is not importable ({type(exc).__name__}: {exc}); {SCHEDULEFREE_INSTALL}"
    return None


@functools.lru_cache(maxsize=None)
def _missing_optax() -> str | None:
    try:
        import jax  # type: ignore[import-not-found, import-untyped, unused-ignore]  # noqa: F401
        import optax  # type: ignore[import-not-found, import-untyped, unused-ignore]  # noqa: F401
    except Exception as exc:
        return f"optax is not importable ({type(exc).__name__}: {exc}); {OPTAX_INSTALL}"
    return None


def bytes_per_element(rule: str, itemsize: int = 4) -> int:
    """Bytes a fused step moves per element: read param, grad and each state; write param and each state (for
    the rules of :data:`PASSES`, every pass's arrays)."""
    if rule in PASSES:
        return moved_bytes(step_arrays(rule, FLOAT32, 1)) * itemsize // 4
    return itemsize * (3 + 2 * CONFIGS[rule][2])


def step_arrays(rule: str, storage: str, n: int) -> list[StepArray]:
    """``[(key, nbytes, written)]``: the arrays one fastopt step of ``rule`` over ``n`` elements (one slot,
    as a ParamSet holds them) moves in ``storage``, counted from the storage layout.

    The gradient is read; the parameter and every state array (an int8 one: its codes and its absmax)
    are read and written.  With master weights the float32 master copy is read and written too; the
    kernel then only stores the bfloat16 parameter, but a store reads its cache line for ownership
    first, so the parameter still costs a read and a write of memory traffic.
    """
    if rule in PASSES:  # float32 only (STORAGE_RULES): every pass's arrays, each key once per pass
        return [(f"pass{k}:{key}", 4 * n, written) for k, (read, rw) in enumerate(PASSES[rule])
                for key, written in [(key, False) for key in read] + [(key, True) for key in rw]]
    st = STORAGES[storage]
    pdtype = _storage.BFLOAT16 if st.params == "bfloat16" else _storage.FLOAT32
    state_dtype = _storage.resolve_state_dtype(st.state_dtype, pdtype, "bench")
    arrays = [("grad", n * pdtype.itemsize, False), ("param", n * pdtype.itemsize, True)]
    if st.master_weights:
        arrays.append((_storage.MASTER, 4 * n, True))
    for k in range(CONFIGS[rule][2]):
        for key, (shape, dtype) in _storage.state_layout(f"state{k}", n, state_dtype).items():
            arrays.append((key, int(np.prod(shape)) * dtype.itemsize, True))
    return arrays


def moved_bytes(arrays: Iterable[StepArray]) -> int:
    """Bytes moved by a step over ``arrays`` (see :func:`step_arrays`): written ones twice."""
    return sum(nbytes * (2 if written else 1) for _, nbytes, written in arrays)


def storage_bytes_per_element(rule: str, storage: str, n: int) -> float:
    """Bytes a fastopt step of ``rule`` in ``storage`` moves per element, over one slot of ``n`` elements
    (float32 Adam: 28; float32 parameters and int8 state: 16 + 16/256)."""
    return moved_bytes(step_arrays(rule, storage, n)) / n


def _data(shapes: Iterable[tuple[int, ...]], seed: int,
          dtype: DTypeLike = np.float32) -> tuple[list[Array], list[Array]]:
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(np.float32).astype(dtype) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32).astype(dtype) for s in shapes]
    return params, grads


def storage_options(storage: str) -> dict[str, Any]:
    """The optimizer options of ``storage`` (state_dtype, master_weights, stochastic_rounding)."""
    st = STORAGES[storage]
    return dict(state_dtype=st.state_dtype, master_weights=st.master_weights,
                stochastic_rounding=st.stochastic_rounding)


def build(impl: str, rule: str, shapes: Iterable[tuple[int, ...]], seed: int = 0,
          storage: str = FLOAT32) -> Step | None:
    """A zero-argument callable doing one optimizer step, or None where ``impl`` does not offer ``rule``
    (in ``storage``: fastopt steps in it; the peers run their own float32 or 8-bit step).

    Every implementation starts from the same parameters and gradients; the
    gradients stay fixed, so a step's cost does not depend on its inputs.
    """
    if not offers(impl, rule, storage):
        return None
    cls_name, hyper, _ = CONFIGS[rule]
    if impl.startswith("fastopt"):
        dtype = _storage.BFLOAT16 if STORAGES[storage].params == "bfloat16" else np.float32
        params, grads = _data(shapes, seed, dtype)
        options = storage_options(storage) if storage != FLOAT32 else {}
        if impl == "fastopt":
            ps = fastopt.ParamSet([(f"t{i}", p) for i, p in enumerate(params)], dtype=dtype)
            for i, g in enumerate(grads):
                ps.grads[f"t{i}"] = g
            optimizer: fastopt.Optimizer = getattr(fastopt, cls_name)(ps, **hyper, **options)
            return optimizer.step
        opt: fastopt.Optimizer = getattr(fastopt, cls_name)(params, **hyper, **options)
        return lambda: opt.step(grads)
    params, grads = _data(shapes, seed)
    if impl.startswith("numpy"):
        return numpy_step(impl, rule, params, grads, hyper)
    if impl == "deepspeed":
        return _deepspeed_step(rule, hyper, params, grads)
    if impl == "bnb-adam8bit":
        return _bnb_step(rule, hyper, params, grads)
    if impl == "schedulefree":
        return _schedulefree_step(cls_name, hyper, params, grads)
    if impl == "optax":
        return _optax_step(rule, hyper, params, grads)
    return _torch_step(impl, cls_name, hyper, params, grads)


def numpy_step(impl: str, rule: str, params: Sequence[Array], grads: Sequence[Array], hyper: Mapping[str, Any]) -> Step:
    """A zero-argument callable doing one step of ``rule`` in NumPy on the given arrays, in place.

    ``impl`` is "numpy-textbook" or "numpy-inplace" (see ``numpy_rules``); the
    optimizer state starts at zero and the step count at 1.
    """
    state = [[np.zeros_like(p) for _ in range(CONFIGS[rule][2])] for p in params]
    counter = [0]
    if impl == "numpy-textbook":
        def step() -> None:
            counter[0] += 1
            numpy_rules.textbook(rule, params, grads, state, counter[0], hyper)
    else:
        scratch = [np.empty_like(p) for p in params]

        def step() -> None:
            counter[0] += 1
            numpy_rules.inplace(rule, params, grads, state, scratch, counter[0], hyper)
    return step


def _torch_tensors(params: Iterable[Array], grads: Iterable[Array]) -> list[Any]:
    """torch tensors sharing the parameters' memory, each with its gradient (which shares the gradient's)."""
    import torch

    tensors = [torch.from_numpy(p) for p in params]
    for t, g in zip(tensors, grads):
        t.grad = torch.from_numpy(g)
    return tensors


def _torch_step(impl: str, cls_name: str, hyper: Mapping[str, Any], params: Iterable[Array],
                grads: Iterable[Array]) -> Step | None:
    try:
        import torch
    except ImportError:
        return None
    variant = impl.split("-", 1)[1]
    tensors = _torch_tensors(params, grads)
    cls = getattr(torch.optim, cls_name)
    options = {"forloop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}[variant]
    try:
        opt = cls(tensors, **hyper, **options)
        opt.step()  # fused is refused at construction or at the first step where torch lacks it
    except (RuntimeError, TypeError, ValueError):
        return None
    step: Step = opt.step
    return step


def _deepspeed_step(rule: str, hyper: Mapping[str, Any], params: Iterable[Array],
                    grads: Iterable[Array]) -> Step | None:
    """DeepSpeedCPUAdam's step (Adam and AdamW only), or None where it has no such rule or is missing."""
    if rule not in DEEPSPEED_MODES or unavailable("deepspeed"):
        return None
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    tensors = _torch_tensors(params, grads)
    hyper = dict(hyper)
    hyper.setdefault("weight_decay", 0.0)
    # its threads: the OpenMP runtime's default team, which torch.set_num_threads sets
    opt = DeepSpeedCPUAdam(tensors, adamw_mode=DEEPSPEED_MODES[rule], **hyper)
    step: Step = opt.step
    return step


def _bnb_step(rule: str, hyper: Mapping[str, Any], params: Iterable[Array], grads: Iterable[Array]) -> Step | None:
    """bitsandbytes' 8-bit Adam on the CPU (float32 tensors, every tensor in 8 bits), or None where missing."""
    if rule not in OPTIONAL_PEERS["bnb-adam8bit"][1] or unavailable("bnb-adam8bit"):
        return None
    import bitsandbytes as bnb

    tensors = _torch_tensors(params, grads)
    opt = bnb.optim.Adam8bit(tensors, min_8bit_size=0, **hyper)
    step: Step = opt.step
    return step


def _schedulefree_step(cls_name: str, hyper: Mapping[str, Any], params: Iterable[Array],
                       grads: Iterable[Array]) -> Step | None:
    """The schedulefree package's optimizer of that name, in training mode, or None where it is missing."""
    if unavailable("schedulefree"):
        return None
    import schedulefree

    tensors = _torch_tensors(params, grads)
    opt = getattr(schedulefree, cls_name)(tensors, **hyper, foreach=True)
    opt.train()
    step: Step = opt.step
    return step


def _optax_step(rule: str, hyper: Mapping[str, Any], params: Iterable[Array], grads: Iterable[Array]) -> Step | None:
    """optax's transformation of ``rule``, jit-compiled with the parameters and its state donated (so XLA may
    update them in place), one step per call until its results are ready; None where optax is missing."""
    if rule not in OPTIONAL_PEERS["optax"][1] or unavailable("optax"):
        return None
    import jax
    import optax

    beta1, beta2 = hyper["betas"]
    transform = optax.lamb(hyper["lr"], b1=beta1, b2=beta2, eps=hyper["eps"], weight_decay=hyper["weight_decay"])

    def update(ps: Any, gs: Any, state: Any) -> tuple[Any, Any]:
        updates, state = transform.update(gs, state, ps)
        return optax.apply_updates(ps, updates), state

    jitted = jax.jit(update, donate_argnums=(0, 2))
    ps = [jax.numpy.asarray(p) for p in params]
    gs = [jax.numpy.asarray(g) for g in grads]
    box = [ps, transform.init(ps)]

    def step() -> None:
        box[0], box[1] = jitted(box[0], gs, box[1])
        jax.block_until_ready(box[0])
    step()  # compile outside the timing
    return step
