"""What ``python -m fastopt bench`` times: rules, shapes, and each implementation's step."""
import functools

import numpy as np

import fastopt
from fastopt.bench import numpy_rules

# The benchmarked configurations: name -> (fastopt/torch class, hyperparameters, state arrays per parameter)
CONFIGS = {
    "sgd-momentum": ("SGD", dict(lr=1e-3, momentum=0.9), 1),
    "adagrad": ("Adagrad", dict(lr=1e-2, eps=1e-10), 1),
    "rmsprop": ("RMSprop", dict(lr=1e-2, alpha=0.99, eps=1e-8), 1),
    "adam": ("Adam", dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8), 2),
    "adamw": ("AdamW", dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2), 2),
}

# name -> list of tensor shapes
SHAPES = {
    "1x16M": [(1 << 24,)],
    "1000x10K": [(10_000,)] * 1000,
    "2000x64": [(64,)] * 2000,
    "1x10K": [(10_000,)],
}

IMPLEMENTATIONS = ["fastopt", "fastopt-list", "numpy-textbook", "numpy-inplace",
                   "torch-forloop", "torch-foreach", "torch-fused", "deepspeed"]

# The configurations DeepSpeedCPUAdam runs: name -> its adamw_mode
DEEPSPEED_MODES = {"adam": False, "adamw": True}
DEEPSPEED_INSTALL = "pip install deepspeed ninja py-cpuinfo"


def unavailable(impl):
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
    return None


@functools.lru_cache(maxsize=None)
def _missing_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch is not installed"
    return None


@functools.lru_cache(maxsize=None)
def _missing_deepspeed():
    if _missing_torch():
        return "it needs torch, which is not installed"
    try:
        from deepspeed.ops.adam import DeepSpeedCPUAdam  # noqa: F401
        from deepspeed.ops.op_builder import CPUAdamBuilder
    except Exception as exc:  # ImportError, or deepspeed failing at import on this machine
        return f"deepspeed is not importable ({type(exc).__name__}: {exc}); {DEEPSPEED_INSTALL}"
    try:
        CPUAdamBuilder().load(verbose=False)
    except Exception as exc:  # no ninja, no compiler, a failed build
        return f"deepspeed's CPU Adam op did not build ({type(exc).__name__}: {exc})"
    return None


def bytes_per_element(rule, itemsize=4):
    """Bytes a fused step moves per element: read param, grad and each state; write param and each state."""
    return itemsize * (3 + 2 * CONFIGS[rule][2])


def _data(shapes, seed):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    return params, grads


def build(impl, rule, shapes, seed=0):
    """A zero-argument callable doing one optimizer step, or None where ``impl`` does not offer ``rule``.

    Every implementation starts from the same parameters and gradients; the
    gradients stay fixed, so a step's cost does not depend on its inputs.
    """
    cls_name, hyper, _ = CONFIGS[rule]
    params, grads = _data(shapes, seed)
    if impl == "fastopt":
        ps = fastopt.ParamSet([(f"t{i}", p) for i, p in enumerate(params)], dtype=np.float32)
        for i, g in enumerate(grads):
            ps.grads[f"t{i}"] = g
        return getattr(fastopt, cls_name)(ps, **hyper).step
    if impl == "fastopt-list":
        opt = getattr(fastopt, cls_name)(params, **hyper)
        return lambda: opt.step(grads)
    if impl.startswith("numpy"):
        return numpy_step(impl, rule, params, grads, hyper)
    if impl == "deepspeed":
        return _deepspeed_step(rule, hyper, params, grads)
    return _torch_step(impl, cls_name, hyper, params, grads)


def numpy_step(impl, rule, params, grads, hyper):
    """A zero-argument callable doing one step of ``rule`` in NumPy on the given arrays, in place.

    ``impl`` is "numpy-textbook" or "numpy-inplace" (see ``numpy_rules``); the
    optimizer state starts at zero and the step count at 1.
    """
    state = [[np.zeros_like(p) for _ in range(CONFIGS[rule][2])] for p in params]
    counter = [0]
    if impl == "numpy-textbook":
        def step():
            counter[0] += 1
            numpy_rules.textbook(rule, params, grads, state, counter[0], hyper)
    else:
        scratch = [np.empty_like(p) for p in params]

        def step():
            counter[0] += 1
            numpy_rules.inplace(rule, params, grads, state, scratch, counter[0], hyper)
    return step


def _torch_step(impl, cls_name, hyper, params, grads):
    try:
        import torch
    except ImportError:
        return None
    variant = impl.split("-", 1)[1]
    tensors = [torch.from_numpy(p) for p in params]
    for t, g in zip(tensors, grads):
        t.grad = torch.from_numpy(g)
    cls = getattr(torch.optim, cls_name)
    options = {"forloop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}[variant]
    try:
        opt = cls(tensors, **hyper, **options)
        opt.step()  # fused is refused at construction or at the first step where torch lacks it
    except (RuntimeError, TypeError, ValueError):
        return None
    return opt.step


def _deepspeed_step(rule, hyper, params, grads):
    """DeepSpeedCPUAdam's step (Adam and AdamW only), or None where it has no such rule or is missing."""
    if rule not in DEEPSPEED_MODES or unavailable("deepspeed"):
        return None
    import torch
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    tensors = [torch.from_numpy(p) for p in params]
    for t, g in zip(tensors, grads):
        t.grad = torch.from_numpy(g)
    hyper = dict(hyper)
    hyper.setdefault("weight_decay", 0.0)
    # its threads: the OpenMP runtime's default team, which torch.set_num_threads sets
    opt = DeepSpeedCPUAdam(tensors, adamw_mode=DEEPSPEED_MODES[rule], **hyper)
    return opt.step
