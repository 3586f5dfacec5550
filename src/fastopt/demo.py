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
"""
import copy
import time

import numpy as np

import fastopt
from fastopt.bench.cases import numpy_step
from fastopt.bench.runner import time_interleaved
from fastopt.nn import BatchNorm
from fastopt.optim import lr_scheduler

# name -> (optimizer class, hyperparameters, the rule's name in fastopt.bench.numpy_rules)
OPTIMIZERS = {
    "sgd-momentum": ("SGD", dict(lr=0.05, momentum=0.9), "sgd-momentum"),
    "adagrad": ("Adagrad", dict(lr=0.05, eps=1e-10), "adagrad"),
    "rmsprop": ("RMSprop", dict(lr=1e-3, alpha=0.99, eps=1e-8), "rmsprop"),
    "adam": ("Adam", dict(lr=3e-3, betas=(0.9, 0.999), eps=1e-8), "adam"),
    "adamw": ("AdamW", dict(lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2), "adamw"),
}


class MLP:
    """``x -> x W1 -> batch norm -> ReLU -> (.) W2 + b2``, with softmax cross-entropy.

    The first layer has no bias (batch norm's shift takes its place).
    Initialization follows torch's ``nn.Linear`` (uniform within
    ``1/sqrt(fan_in)``).  Implements :func:`fastopt.fit`'s protocol:
    ``params``, ``loss_and_grad(X, y)``, ``loss(X, y)``.
    """

    def __init__(self, n_in, n_hidden, n_out, *, seed=0, dtype=np.float32):
        rng = np.random.default_rng(seed)

        def uniform(fan_in, shape):
            bound = 1.0 / np.sqrt(fan_in)
            return rng.uniform(-bound, bound, shape)

        self.params = fastopt.ParamSet({
            "fc1.weight": uniform(n_in, (n_in, n_hidden)),
            "bn.weight": np.ones(n_hidden),
            "bn.bias": np.zeros(n_hidden),
            "fc2.weight": uniform(n_hidden, (n_hidden, n_out)),
            "fc2.bias": uniform(n_hidden, n_out),
        }, dtype=dtype, align=True)
        self.bn = BatchNorm.from_paramset(self.params, "bn.weight", "bn.bias")

    def logits(self, X, *, training=False):
        p = self.params
        self._X = X
        self._z = self.bn.forward(X @ p["fc1.weight"], training=training)
        self._a = np.maximum(self._z, 0)
        return self._a @ p["fc2.weight"] + p["fc2.bias"]

    def loss_and_grad(self, X, y):
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

    def loss(self, X, y):
        """Mean cross-entropy with the running statistics (evaluation mode)."""
        return _softmax_cross_entropy(self.logits(X), y)[1]

    def accuracy(self, X, y):
        return float(np.mean(np.argmax(self.logits(X), axis=1) == y))


def _softmax_cross_entropy(logits, y):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(total[:, 0]) - shifted[np.arange(len(y)), y]))
    return exp / total, loss


def run(optimizers=tuple(OPTIMIZERS), *, epochs=30, batch_size=64, hidden=128, seed=0, png="fastopt-demo.png",
        repeats=7, out=print):
    """Train one model per optimizer; print a table; return {name: result dict}."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    unknown = sorted(set(optimizers) - set(OPTIMIZERS))
    if unknown:
        raise ValueError(f"unknown optimizers {unknown}; choose from {list(OPTIMIZERS)}")
    X, y = fastopt.datasets.load_digits()
    X /= 16.0
    X_train, X_test, y_train, y_test = fastopt.train_test_split(X, y, test_size=0.25, seed=seed, stratify=y)
    out(f"UCI digits: {len(X_train)} training and {len(X_test)} test images; MLP 64-{hidden}-BN-ReLU-10 (float32); "
        f"{epochs} epochs of batches of {batch_size}; warmup + cosine schedule; gradient norm clipped at 5")
    out("| optimizer | train loss | test loss | test accuracy | step (fastopt) | step (NumPy) | speed-up |")
    out("|---|---|---|---|---|---|---|")
    results = {}
    for name in optimizers:
        cls_name, hyper, rule = OPTIMIZERS[name]
        model = MLP(X.shape[1], hidden, 10, seed=seed)
        opt = getattr(fastopt, cls_name)(model.params, **hyper)
        sched = _schedule(opt, epochs)
        start = time.perf_counter()
        history = fastopt.fit(model, opt, X_train, y_train, epochs=epochs, batch_size=batch_size, scheduler=sched,
                              clip_grad_norm=5.0, validation_data=(X_test, y_test), seed=seed, progress=False)
        seconds = time.perf_counter() - start
        step_seconds = _step_times(model, opt, rule, hyper, repeats)
        results[name] = dict(train_loss=history.train_loss[-1], test_loss=model.loss(X_test, y_test),
                             test_accuracy=model.accuracy(X_test, y_test), history=history, seconds=seconds,
                             **step_seconds)
        r = results[name]
        out(f"| {name} | {r['train_loss']:.4f} | {r['test_loss']:.4f} | {100 * r['test_accuracy']:.1f}% | "
            f"{r['fastopt_step'] * 1e6:.1f} us | {r['numpy_step'] * 1e6:.1f} us | "
            f"{r['numpy_step'] / r['fastopt_step']:.1f}x |")
    if png:
        _plot(results, png, out)
    return results


def _schedule(opt, epochs):
    """Two epochs of linear warmup (from a tenth of the rate), then cosine annealing to 0."""
    if epochs <= 4:
        return lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    warmup = lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=2)
    cosine = lr_scheduler.CosineAnnealingLR(opt, T_max=epochs - 2)
    return lr_scheduler.SequentialLR(opt, [warmup, cosine], milestones=[2])


def _step_times(model, opt, rule, hyper, repeats):
    """Median seconds per step of fastopt's optimizer and of the NumPy rule, interleaved, on copies."""
    _, fast = copy.deepcopy((model.params, opt))  # copied together (fast steps the copy); they carry the last batch's gradients
    fast.lr = hyper["lr"]  # the schedule ended at 0; time both at the base rate
    twin = copy.deepcopy(model.params)
    numpy = numpy_step("numpy-inplace", rule, list(twin.values()), list(twin.grads.values()), hyper)
    times = time_interleaved({"fastopt": fast.step, "numpy": numpy}, repeats)
    return {"fastopt_step": times["fastopt"], "numpy_step": times["numpy"]}


def _plot(results, path, out):
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
