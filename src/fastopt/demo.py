"""``python -m fastopt demo``: a plain-NumPy MLP with batch normalization, trained on the digits with each optimizer.

The model (64 -> 128 -> batch norm -> ReLU -> 10, softmax cross-entropy,
float32) keeps every parameter in one :class:`fastopt.ParamSet`; its
forward and backward passes are NumPy matrix products plus fastopt's batch
normalization kernels.  Each optimizer trains the same initial model on the
same mini-batches with linear warmup then cosine annealing
(:mod:`fastopt.optim.lr_scheduler`) and gradient clipping
(:func:`fastopt.nn.clip_grad_norm_`), through :func:`fastopt.fit`.

Per optimizer the demo prints the final training loss, the loss and accuracy
on held-out test digits, and the time of one optimizer step next to that of
the same update rule written in NumPy (``fastopt.bench.numpy_rules.inplace``:
the tuned version, in place, tensor by tensor), timed interleaved on copies
of the trained model.  With matplotlib installed it saves the loss curves.

:func:`run_storage` (``python -m fastopt demo --storage ...``) trains the
same model with each storage choice of :data:`STORAGES` (bfloat16 or int8
optimizer state, bfloat16 parameters with float32 master weights or
stochastic rounding) and prints the final losses, the test accuracy and
the bytes of optimizer state per parameter.  :func:`run_second_moment`
is a regression whose gradients span many orders of magnitude within one
quantization block, the case where the second moment's precision matters.
"""
from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

import numpy as np

import fastopt
from fastopt._storage import BFLOAT16
from fastopt.bench.cases import numpy_step
from fastopt.bench.runner import time_interleaved
from fastopt.nn import BatchNorm
from fastopt.optim import lr_scheduler
from fastopt.optim.swa_utils import AveragedModel, update_bn

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

    from numpy.typing import DTypeLike

    from fastopt._typing import Array, NDArray
    from fastopt.optim.lr_scheduler import LRScheduler
    from fastopt.paramset import ParamSet

    #: Where the tables go, a line at a time (``print`` by default).
    Out = Callable[[str], object]

# name -> (optimizer class, hyperparameters, the rule's name in fastopt.bench.numpy_rules, or None where that
# has no NumPy version to time against)
_ADAMW = dict(lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)  # also under the wrappers and SWA
OPTIMIZERS: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "sgd-momentum": ("SGD", dict(lr=0.05, momentum=0.9), "sgd-momentum"),
    "adagrad": ("Adagrad", dict(lr=0.05, eps=1e-10), "adagrad"),
    "rmsprop": ("RMSprop", dict(lr=1e-3, alpha=0.99, eps=1e-8), "rmsprop"),
    "adam": ("Adam", dict(lr=3e-3, betas=(0.9, 0.999), eps=1e-8), "adam"),
    "adamw": ("AdamW", _ADAMW, "adamw"),
    "adopt": ("ADOPT", dict(lr=3e-3), None),
    "ademamix": ("AdEMAMix", dict(lr=3e-3), None),
    "sgd-schedulefree": ("SGDScheduleFree", dict(lr=0.5, warmup_steps=50), None),
    "adamw-schedulefree": ("AdamWScheduleFree", dict(lr=3e-3, warmup_steps=50), None),
    "lamb": ("LAMB", dict(lr=0.01, weight_decay=1e-2), None),
    "lars": ("LARS", dict(lr=5.0, momentum=0.9, trust_coefficient=1e-3), None),
    "adafactor": ("Adafactor", dict(lr=0.01), None),
    "prodigy": ("Prodigy", dict(lr=1.0, weight_decay=1e-2), None),
    "muon": ("Muon", dict(lr=0.02, adamw_lr=3e-3), None),
    "lookahead-adamw": ("AdamW", _ADAMW, None),
    "adamw-swa": ("AdamW", _ADAMW, None),
    "adamw-accumulate": ("AdamW", _ADAMW, None),
}
# Those that train without the schedule (their warmup is their own) and evaluate at their averaged point, with
# the batch-norm statistics recomputed there.
SCHEDULE_FREE = ("sgd-schedulefree", "adamw-schedulefree")
# Those whose optimizer is wrapped: name -> (the wrapper, its settings); Accumulate's updates come every 2
# batches, each on the mean of their two (clipped) gradients
WRAPPERS: dict[str, tuple[str, dict[str, Any]]] = {"lookahead-adamw": ("Lookahead", dict(k=5, alpha=0.5)),
            "adamw-accumulate": ("Accumulate", dict(every=2))}
# Those that average the weights of the last epochs (SWA: one update per epoch from this epoch of 30 on, scaled
# to the run's length) and end at the average, with the batch-norm statistics recomputed there
AVERAGED_FROM: dict[str, float] = {"adamw-swa": 20 / 30}

# name -> (parameter dtype, the optimizer's storage options)
STORAGES: dict[str, tuple[DTypeLike, dict[str, Any]]] = {
    "float32": (np.float32, {}),
    "state-bf16": (np.float32, dict(state_dtype="bfloat16")),
    "state-int8": (np.float32, dict(state_dtype="int8")),
    "bf16-master": (BFLOAT16, dict(master_weights=True)),
    "bf16-master-int8": (BFLOAT16, dict(master_weights=True, state_dtype="int8")),
    "bf16-stochastic": (BFLOAT16, dict(stochastic_rounding=True, seed=0)),
    "bf16": (BFLOAT16, {}),
}
STORAGE_OPTIMIZERS = ("adam", "adamw", "sgd-momentum")  # run_storage()'s default


class MLP:
    """``x -> x W1 -> batch norm -> ReLU -> (.) W2 + b2``, with softmax cross-entropy.

    The first layer has no bias (batch norm's shift takes its place).
    Initialization follows torch's ``nn.Linear`` (uniform within
    ``1/sqrt(fan_in)``).  Implements :func:`fastopt.fit`'s protocol:
    ``params``, ``loss_and_grad(X, y)``, ``loss(X, y)``.
    """

    def __init__(self, n_in: int, n_hidden: int, n_out: int, *, seed: int | None = 0,
                 dtype: DTypeLike = np.float32) -> None:
        rng = np.random.default_rng(seed)

        def uniform(fan_in: int, shape: int | tuple[int, ...]) -> NDArray[np.float64]:
            bound = 1.0 / np.sqrt(fan_in)
            return rng.uniform(-bound, bound, shape)

        self.params: ParamSet = fastopt.ParamSet({
            "fc1.weight": uniform(n_in, (n_in, n_hidden)),
            "bn.weight": np.ones(n_hidden),
            "bn.bias": np.zeros(n_hidden),
            "fc2.weight": uniform(n_hidden, (n_hidden, n_out)),
            "fc2.bias": uniform(n_hidden, n_out),
        }, dtype=dtype, align=True)
        self.bn = BatchNorm.from_paramset(self.params, "bn.weight", "bn.bias")

    def logits(self, X: Array, *, training: bool = False) -> Array:
        p = self.params
        self._X = X
        self._z = self.bn.forward(X @ p["fc1.weight"], training=training)
        self._a = np.maximum(self._z, 0)
        return self._a @ p["fc2.weight"] + p["fc2.bias"]

    def loss_and_grad(self, X: Array, y: Array) -> float:
        """Mean cross-entropy on a batch; the gradients go into ``params.grads``."""
        probs, loss = _softmax_cross_entropy(self.logits(X, training=True), y)
        dlogits = probs
        dlogits[np.arange(len(y)), y] -= 1
        dlogits /= len(y)
        grads = self.params.grads
        np.matmul(self._a.T, dlogits, out=grads["fc2.weight"])
        np.sum(dlogits, axis=0, out=grads["fc2.bias"])
        dz = dlogits @ self.params["fc2.weight"].T
        dz *= self._z > 0
        dh = self.bn.backward(dz)  # writes the batch norm's weight and bias gradients
        np.matmul(self._X.T, dh, out=grads["fc1.weight"])
        return loss

    def loss(self, X: Array, y: Array) -> float:
        """Mean cross-entropy with the running statistics (evaluation mode)."""
        return _softmax_cross_entropy(self.logits(X), y)[1]

    def accuracy(self, X: Array, y: Array) -> float:
        return float(np.mean(np.argmax(self.logits(X), axis=1) == y))


def _softmax_cross_entropy(logits: Array, y: Array) -> tuple[Array, float]:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(total[:, 0]) - shifted[np.arange(len(y)), y]))
    return exp / total, loss


def run(optimizers: Collection[str] = tuple(OPTIMIZERS), *, epochs: int = 30, batch_size: int = 64, hidden: int = 128,
        seed: int = 0, png: str | None = "fastopt-demo.png", repeats: int = 7,
        out: Out = print) -> dict[str, dict[str, Any]]:
    """Train one model per optimizer; print a table; return {name: result dict}."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    unknown = sorted(set(optimizers) - set(OPTIMIZERS))
    if unknown:
        raise ValueError(f"unknown optimizers {unknown}; choose from {list(OPTIMIZERS)}")
    X_train, X_test, y_train, y_test = _digits(seed)
    X = X_train
    out(f"UCI digits: {len(X_train)} training and {len(X_test)} test images; MLP 64-{hidden}-BN-ReLU-10 (float32); "
        f"{epochs} epochs of batches of {batch_size}; warmup + cosine schedule (schedule-free rules: their own "
        "warmup, then a constant rate, evaluated at their average with batch-norm statistics recomputed there); "
        "gradient norm clipped at 5")
    out("| optimizer | train loss | test loss | test accuracy | step (fastopt) | step (NumPy) | speed-up |")
    out("|---|---|---|---|---|---|---|")
    results: dict[str, dict[str, Any]] = {}
    for name in optimizers:
        cls_name, hyper, rule = OPTIMIZERS[name]
        model = MLP(X.shape[1], hidden, 10, seed=seed)
        opt = getattr(fastopt, cls_name)(model.params, **hyper)
        if name in WRAPPERS:
            wrapper, settings = WRAPPERS[name]
            opt = getattr(fastopt, wrapper)(opt, **settings)
        sched = None if name in SCHEDULE_FREE else _schedule(opt, epochs)
        average = AveragedModel(model.params) if name in AVERAGED_FROM else None
        first = int(AVERAGED_FROM.get(name, 0) * epochs)

        def callback(epoch: int, history: fastopt.History) -> None:
            if average is not None and epoch >= first:
                average.update_parameters()
        start = time.perf_counter()
        history = fastopt.fit(model, opt, X_train, y_train, epochs=epochs, batch_size=batch_size, scheduler=sched,
                              clip_grad_norm=5.0, validation_data=(X_test, y_test), seed=seed, progress=False,
                              callback=callback)
        if average is not None:  # the model is the average from here on
            np.copyto(model.params.data, average.average)
        if name in SCHEDULE_FREE or average is not None:  # at an averaged point: statistics gathered there
            update_bn(fastopt.minibatches(X_train, batch_size=batch_size, shuffle=False),
                      lambda X: model.logits(X, training=True), model.bn)
        seconds = time.perf_counter() - start
        step_seconds = _step_times(model, opt, rule, hyper, repeats)
        results[name] = dict(train_loss=history.train_loss[-1], test_loss=model.loss(X_test, y_test),
                             test_accuracy=model.accuracy(X_test, y_test), history=history, seconds=seconds,
                             **step_seconds)
        r = results[name]
        numpy_cells = ("-", "-") if r["numpy_step"] is None else (
            f"{r['numpy_step'] * 1e6:.1f} us", f"{r['numpy_step'] / r['fastopt_step']:.1f}x")
        out(f"| {name} | {r['train_loss']:.4f} | {r['test_loss']:.4f} | {100 * r['test_accuracy']:.1f}% | "
            f"{r['fastopt_step'] * 1e6:.1f} us | {numpy_cells[0]} | {numpy_cells[1]} |")
    if png:
        _plot(results, png, out)
    return results


def _digits(seed: int) -> tuple[Array, ...]:
    X, y = fastopt.datasets.load_digits()
    X /= 16.0
    return fastopt.train_test_split(X, y, test_size=0.25, seed=seed, stratify=y)


class StoredIn:
    """A float32 model whose parameters are *stored* in another dtype (bfloat16): what the optimizer steps.

    ``fastopt.nn.clip_grad_norm_`` and :class:`~fastopt.nn.BatchNorm` take no
    bfloat16 arrays, and NumPy has no bfloat16 matrix product worth using, so
    the model itself stays float32: it computes on a float32 copy of the
    parameters and this wrapper is the bridge.  ``params`` is a bfloat16
    ParamSet with the same tensors (the parameters of record, those the
    optimizer updates and the evaluation uses); each call widens them into
    the float32 model (exactly: every bfloat16 is a float32), runs the
    float32 forward and backward, clips the float32 gradients, and rounds
    them into ``params.grad`` (to nearest even), which is what a bf16
    training framework hands the optimizer.  The optimizer then keeps its
    own float32 master copy or not (``master_weights=``).  Gradient clipping
    happens here, so :func:`fastopt.fit` gets ``clip_grad_norm=None``.
    """

    def __init__(self, model: MLP, dtype: DTypeLike = BFLOAT16, clip_grad_norm: float | None = None) -> None:
        self.model = model
        self.clip_grad_norm = clip_grad_norm
        self.params: ParamSet = fastopt.ParamSet(dict(model.params.items()), dtype=dtype, align=True)  # rounded to nearest
        self._widen()  # the float32 model starts from the rounded values too

    def _widen(self) -> None:
        for name in self.params.names:  # tensor by tensor: the two arenas pad differently
            self.model.params[name][...] = self.params[name]

    def loss_and_grad(self, X: Array, y: Array) -> float:
        self._widen()
        self.model.params.zero_grad()
        loss = self.model.loss_and_grad(X, y)
        if self.clip_grad_norm is not None:
            fastopt.nn.clip_grad_norm_(self.model.params, self.clip_grad_norm)
        for name in self.params.names:
            self.params.grads[name][...] = self.model.params.grads[name]
        return loss

    def loss(self, X: Array, y: Array) -> float:
        self._widen()
        return self.model.loss(X, y)

    def accuracy(self, X: Array, y: Array) -> float:
        self._widen()
        return self.model.accuracy(X, y)


def state_bytes(opt: Any, params: ParamSet) -> tuple[float, float]:
    """(bytes of optimizer state per parameter, bytes of parameters + gradients + state per parameter).

    Counted from the arrays ``opt`` really holds (``opt.state``: moments,
    int8 codes and their absmax, master copies; scalars such as the step
    count are left out) and ``params``' two buffers (padding included), over
    the number of parameters (the tensors' elements, padding excluded).
    """
    state = sum(v.nbytes for slot in opt.state for v in slot.values() if isinstance(v, np.ndarray) and v.ndim)
    n = sum(v.size for v in params.values())
    return state / n, (state + params.data.nbytes + params.grad.nbytes) / n


def run_storage(optimizers: Collection[str] = STORAGE_OPTIMIZERS, storages: Collection[str] = tuple(STORAGES), *,
                epochs: int = 30, batch_size: int = 64, hidden: int = 128, seed: int = 0,
                out: Out = print) -> dict[tuple[str, str], dict[str, Any]]:
    """Train the digits MLP with each optimizer in each storage choice; print a table; return {(opt, storage): dict}.

    Every run starts from the same initial model (rounded to bfloat16 for
    bfloat16 parameters) and sees the same batches and schedule as
    :func:`run`; the result dicts hold ``train_loss``, ``test_loss``,
    ``test_accuracy``, ``history``, ``state_bytes`` and ``total_bytes`` (per
    parameter, see :func:`state_bytes`).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    for given, known, what in ((optimizers, OPTIMIZERS, "optimizers"), (storages, STORAGES, "storages")):
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(f"unknown {what} {unknown}; choose from {list(known)}")
    X_train, X_test, y_train, y_test = _digits(seed)
    out(f"UCI digits: {len(X_train)} training and {len(X_test)} test images; MLP 64-{hidden}-BN-ReLU-10 computed in "
        f"float32; {epochs} epochs of batches of {batch_size}; warmup + cosine schedule; gradient norm clipped at 5")
    out("| optimizer | storage | state B/param | params+grads+state B/param | train loss | test loss | "
        "test accuracy |")
    out("|---|---|---|---|---|---|---|")
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for name in optimizers:
        cls_name, hyper, _ = OPTIMIZERS[name]
        for storage in storages:
            dtype, options = STORAGES[storage]
            model: Any = MLP(X_train.shape[1], hidden, 10, seed=seed)  # an MLP, or a StoredIn around it
            clip: float | None = 5.0
            if dtype != np.float32:
                model, clip = StoredIn(model, dtype, clip_grad_norm=clip), None
            opt = getattr(fastopt, cls_name)(model.params, **hyper, **options)
            history = fastopt.fit(model, opt, X_train, y_train, epochs=epochs, batch_size=batch_size,
                                  scheduler=_schedule(opt, epochs), clip_grad_norm=clip,
                                  validation_data=(X_test, y_test), seed=seed, progress=False)
            per_state, per_total = state_bytes(opt, model.params)
            r = results[name, storage] = dict(train_loss=history.train_loss[-1], test_loss=model.loss(X_test, y_test),
                                              test_accuracy=model.accuracy(X_test, y_test), history=history,
                                              state_bytes=per_state, total_bytes=per_total)
            out(f"| {name} | {storage} | {per_state:.2f} | {per_total:.2f} | {r['train_loss']:.4f} | "
                f"{r['test_loss']:.4f} | {100 * r['test_accuracy']:.1f}% |")
    return results


def _schedule(opt: Any, epochs: int) -> LRScheduler:
    """Two epochs of linear warmup (from a tenth of the rate), then cosine annealing to 0."""
    if epochs <= 4:
        return lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    warmup = lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=2)
    cosine = lr_scheduler.CosineAnnealingLR(opt, T_max=epochs - 2)
    return lr_scheduler.SequentialLR(opt, [warmup, cosine], milestones=[2])


def _step_times(model: MLP | StoredIn, opt: Any, rule: str | None, hyper: dict[str, Any],
                repeats: int) -> dict[str, float | None]:
    """Median seconds per step of fastopt's optimizer and of the NumPy rule (None: no NumPy version),
    interleaved, on copies."""
    _, fast = copy.deepcopy((model.params, opt))  # copied together (fast steps the copy); they carry the last batch's gradients
    fast.lr = hyper["lr"]  # the schedule ended at 0; time both at the base rate
    if hasattr(fast, "train"):
        fast.train()  # a schedule-free optimizer steps in training mode only
    steps = {"fastopt": fast.step}
    if rule is not None:
        twin = copy.deepcopy(model.params)
        steps["numpy"] = numpy_step("numpy-inplace", rule, list(twin.values()), list(twin.grads.values()), hyper)
    times = time_interleaved(steps, repeats)
    return {"fastopt_step": times["fastopt"], "numpy_step": times.get("numpy")}


def _plot(results: dict[str, dict[str, Any]], path: str, out: Out) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        out("matplotlib is not installed: no loss curves (pip install matplotlib)")
        return
    fig, (ax_train, ax_test) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for name, r in results.items():
        epochs = np.arange(1, len(r["history"].train_loss) + 1)
        ax_train.plot(epochs, r["history"].train_loss, label=name)
        ax_test.plot(epochs, r["history"].val_loss, label=name)
    for ax, title in ((ax_train, "training loss"), (ax_test, "test loss")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    ax_train.set_ylabel("cross-entropy")
    ax_test.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    out(f"loss curves saved to {path}")


class UnitsRegression:
    """Linear regression onto targets measured in units many orders of magnitude apart: ``Y ~ (X W + b) * units``.

    Trained on the plain squared error in those units (summed over targets,
    averaged over rows), so the gradient of target k's column of ``W`` scales
    like ``units[k] ** 2``: with units from 1e-4 to 1e4 the gradients, and so
    Adam's moments, span 16 orders of magnitude inside every 256-element
    block of ``W`` (row-major, all targets side by side).  In float32 Adam's
    per-element normalization makes the units irrelevant; a blockwise-int8
    state shares one scale per block.  :meth:`relative_error` is the
    scale-free yardstick: each target's mean squared error over its units
    squared, averaged over targets (the noise floor is ``noise ** 2``).
    """

    def __init__(self, n_in: int, units: Sequence[float] | Array) -> None:
        self.units = np.asarray(units, dtype=np.float32)
        self.params: ParamSet = fastopt.ParamSet({"W": np.zeros((n_in, len(units))), "b": np.zeros(len(units))},
                                       dtype=np.float32, align=True)

    def predict(self, X: Array) -> Array:
        return (X @ self.params["W"] + self.params["b"]) * self.units

    def loss_and_grad(self, X: Array, y: Array) -> float:
        r = self.predict(X) - y
        dr = r * (2 * self.units / len(y))
        np.matmul(X.T, dr, out=self.params.grads["W"])
        np.sum(dr, axis=0, out=self.params.grads["b"])
        return float(np.mean(np.sum(r * r, axis=1)))

    def loss(self, X: Array, y: Array) -> float:
        r = self.predict(X) - y
        return float(np.mean(np.sum(r * r, axis=1)))

    def relative_error(self, X: Array, y: Array) -> float:
        r = (self.predict(X) - y) / self.units
        return float(np.mean(r * r))


def units_data(decades: float, *, n_in: int = 32, n_out: int = 8, n: int = 3000, noise: float = 0.1,
               seed: int | None = 0) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float64]]:
    """Inputs, targets and units for :class:`UnitsRegression`: units log-spaced over ``decades`` around 1."""
    rng = np.random.default_rng(seed)
    units = 10.0 ** np.linspace(-decades / 2, decades / 2, n_out)
    X = rng.standard_normal((n, n_in))
    A = rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)
    Y = (X @ A + noise * rng.standard_normal((n, n_out))) * units
    return X.astype(np.float32), Y.astype(np.float32), units


def run_second_moment(storages: Collection[str] = ("float32", "state-bf16", "state-int8"),
                      decades: Collection[float] = (2, 4, 8), *, epochs: int = 30, lr: float = 1e-2,
                      batch_size: int = 50, seed: int = 0, out: Out = print) -> dict[tuple[float, str], dict[str, Any]]:
    """Adam on :class:`UnitsRegression` for each span of units and storage; print a table; return {(decades, storage): dict}.

    Each dict holds ``train_error`` and ``test_error`` (relative errors, see
    :meth:`UnitsRegression.relative_error`), the per-target ``test_errors``,
    and ``history`` (the raw training losses).  2000 rows train, 1000 test.
    """
    unknown = sorted(set(storages) - {k for k, (dtype, _) in STORAGES.items() if dtype == np.float32})
    if unknown:
        raise ValueError(f"unknown storages {unknown} for float32 parameters; choose from "
                         f"{[k for k, (dtype, _) in STORAGES.items() if dtype == np.float32]}")
    out(f"Regression onto 8 targets in units spread over D decades (W: 32x8, one 256-element block); squared error "
        f"in those units; Adam lr={lr}, {epochs} epochs of batches of {batch_size}, cosine schedule; "
        "relative error = mean over targets of MSE / unit**2 (noise floor 0.0100)")
    out("| units span | storage | train relative error | test relative error | test error per target (smallest unit first) |")
    out("|---|---|---|---|---|")
    results: dict[tuple[float, str], dict[str, Any]] = {}
    r: Any  # the test residuals, then the result dict
    for span in decades:
        X, Y, units = units_data(span, seed=seed)
        X_train, X_test, Y_train, Y_test = X[:2000], X[2000:], Y[:2000], Y[2000:]
        for storage in storages:
            model = UnitsRegression(X.shape[1], units)
            opt = fastopt.Adam(model.params, lr=lr, **STORAGES[storage][1])
            history = fastopt.fit(model, opt, X_train, Y_train, epochs=epochs, batch_size=batch_size,
                                  scheduler=lr_scheduler.CosineAnnealingLR(opt, T_max=epochs), seed=seed,
                                  progress=False)
            r = (model.predict(X_test) - Y_test) / units
            r = results[span, storage] = dict(train_error=model.relative_error(X_train, Y_train),
                                              test_error=model.relative_error(X_test, Y_test),
                                              test_errors=np.mean(r * r, axis=0), history=history)
            per_target = " ".join(f"{e:.3f}" for e in r["test_errors"])
            out(f"| 1e{-span / 2:+g}..1e{span / 2:+g} | {storage} | {r['train_error']:.4f} | {r['test_error']:.4f} | "
                f"{per_target} |")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fastopt.demo --storage LIST``: :func:`run_storage`, then :func:`run_second_moment`."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m fastopt.demo",
        description="Train the digits MLP with each storage choice (state and parameter dtypes), then Adam on a "
                    "regression whose gradients span many orders of magnitude (float32, bf16 and int8 state).")
    parser.add_argument("--storage", default="all",
                        help="comma-separated subset of: " + ",".join(STORAGES) + " (default: all)")
    parser.add_argument("--optimizers", default=",".join(STORAGE_OPTIMIZERS),
                        help="comma-separated subset of: " + ",".join(OPTIMIZERS))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-second-moment", action="store_true", help="skip the wide-gradient regression")
    args = parser.parse_args(argv)
    try:
        storage_tables(args.optimizers, args.storage, epochs=args.epochs, seed=args.seed,
                       second_moment=not args.no_second_moment)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    return 0


def storage_tables(optimizers: str = ",".join(STORAGE_OPTIMIZERS), storages: str = "all", *, epochs: int = 30,
                   batch_size: int = 64, seed: int = 0, second_moment: bool = True) -> None:
    """The storage tables (``python -m fastopt demo --storage`` and ``python -m fastopt.demo``):
    :func:`run_storage` for the comma-separated ``optimizers`` and ``storages`` ("all": every one), then
    :func:`run_second_moment` for those of them with float32 parameters."""
    storages = tuple(STORAGES) if storages == "all" else tuple(storages.split(","))  # type: ignore[assignment]
    run_storage(tuple(optimizers.split(",")), storages, epochs=epochs, batch_size=batch_size, seed=seed)
    float32 = tuple(s for s in storages if STORAGES[s][0] == np.float32)
    if second_moment and float32:
        print()
        run_second_moment(float32, seed=seed)


if __name__ == "__main__":
    raise SystemExit(main())
