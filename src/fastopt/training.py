"""A small training loop: :func:`fit` and the :class:`History` it returns.

:func:`fit` trains any model that follows a two-method protocol on a
:class:`~fastopt.ParamSet`:

``model.params``
    The ParamSet holding every parameter (``params.data``) and gradient
    (``params.grad``) of the model; the optimizer must be built on it.
``model.loss_and_grad(X_batch, y_batch) -> float``
    Computes the loss on a batch and writes its gradient into
    ``model.params.grads`` (or ``model.params.grad``).  :func:`fit` zeroes
    the gradient buffer before each call, so the method may either
    overwrite the gradients or add into them.
``model.loss(X, y) -> float``
    The loss on a whole data set, without gradients (only needed with
    ``validation_data``).

The loop is plain Python around the model and a fused optimizer step, so it
adds a few microseconds per batch.  It needs nothing beyond NumPy; it shows
a ``tqdm`` progress bar when that package is installed.

>>> import numpy as np, fastopt
>>> from fastopt.training import fit
>>> class Mean:                      # fit one number to the mean of the data
...     def __init__(self):
...         self.params = fastopt.ParamSet({"m": 1})
...     def loss_and_grad(self, X, y):
...         r = self.params["m"] - X[:, 0]
...         self.params.grads["m"][:] = r.mean()
...         return 0.5 * float(r @ r) / len(r)
>>> model = Mean()
>>> X = np.full((40, 1), 3.0)
>>> history = fit(model, fastopt.SGD(model.params, lr=0.5), X, None, epochs=20, progress=False)
>>> round(float(model.params["m"][0]), 4), len(history.train_loss)
(3.0, 20)
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol, SupportsFloat

import numpy as np

from fastopt._validation import bounded_real, check_callable, choice, flag, integer, random_generator
from fastopt.data import _as_aligned_arrays, minibatches, num_batches
from fastopt.optim._wrapper import OptimizerWrapper
from fastopt.optim.optimizer import Optimizer
from fastopt.paramset import ParamSet

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from fastopt._typing import Array
    from fastopt.data import Seed

__all__ = ["History", "NonFiniteLossError", "fit"]


class Model(Protocol):
    """What :func:`fit` trains (see :mod:`fastopt.training`): ``params`` and ``loss_and_grad(X_batch, y_batch)``.

    With ``validation_data``, :func:`fit` also calls ``loss(X, y)``; a model
    without one is refused then (a TypeError at run time).
    """

    @property
    def params(self) -> ParamSet: ...

    def loss_and_grad(self, X: Array, y: Any, /) -> SupportsFloat: ...


class SupportsStep(Protocol):
    """An optimizer :func:`fit` can drive, or a schedule it steps without a metric: anything with ``step()``."""

    def step(self) -> object: ...


class SupportsMetricStep(Protocol):
    """A schedule stepped with a metric (``ReduceLROnPlateau``): ``step(metric)``."""

    def step(self, metrics: float, /) -> object: ...


@dataclass
class History:
    """What happened in each epoch of :func:`fit`.

    Every list holds one entry per completed epoch, in order (``grad_norm``
    only with gradient clipping, ``val_loss`` only with validation data;
    otherwise they stay empty).  Epoch indices count from 0, like the lists.

    Attributes
    ----------
    train_loss : list of float
        Mean training loss over the epoch: the batch losses weighted by
        their number of rows (the plain mean when all batches are equally
        large).  The losses are those of the parameters *before* each step.
    val_loss : list of float
        ``model.loss(*validation_data)`` after the epoch.
    lr : list
        Learning rate the epoch started with: a float, or a tuple with one
        rate per parameter group when the groups differ (None when the
        optimizer has no ``param_groups``).
    seconds : list of float
        Wall-clock time of the epoch, validation included.
    grad_norm : list of float
        Mean over the epoch's batches of the gradient norm *before* clipping.
    best_epoch : int or None
        Index of the epoch with the lowest validation loss (the lowest
        training loss without validation data); ties go to the earlier one.
    stopped_early : bool
        True if early stopping (or the callback) ended training before ``epochs``.
    restored_best : bool
        True if the parameters of ``best_epoch`` were copied back into the
        model at the end (see ``restore_best`` of :func:`fit`).
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float | tuple[float, ...] | None] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    restored_best: bool = False

    @property
    def epochs(self) -> int:
        """Number of completed epochs."""
        return len(self.train_loss)

    def as_dict(self) -> dict[str, Any]:
        """The history as a plain dict (lists copied), e.g. to save as JSON."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), list) else v for f in fields(self)}


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss (or gradient norm); :func:`fit` stopped.

    Attributes
    ----------
    epoch : int
        Index (from 0) of the epoch where it happened.
    batch : int or None
        Index (from 0) of the batch in that epoch; None for the validation loss.
    value : float
        The offending value.
    history : History
        The epochs completed before the failure.
    """

    epoch: int
    batch: int | None
    value: float
    history: History

    def __init__(self, message: str, *, epoch: int, batch: int | None, value: float, history: History) -> None:
        super().__init__(message)
        self.epoch, self.batch, self.value, self.history = epoch, batch, value, history


def fit(model: Model, optimizer: SupportsStep, X: ArrayLike, y: ArrayLike | None, *, epochs: int,
        batch_size: int | None = 32, shuffle: bool = True, seed: Seed = 0, drop_last: bool = False,
        scheduler: SupportsStep | SupportsMetricStep | None = None,
        scheduler_interval: Literal["epoch", "batch"] = "epoch", clip_grad_norm: float | None = None,
        validation_data: tuple[Any, Any] | None = None, early_stopping_patience: int | None = None,
        min_delta: float = 0.0, restore_best: bool | None = None,
        callback: Callable[[int, History], object] | None = None,
        progress: bool | Literal["tqdm", "print"] = True) -> History:
    """Train ``model`` with ``optimizer`` on ``(X, y)`` for up to ``epochs`` passes.

    Each epoch walks once over the data in mini-batches
    (:func:`fastopt.data.minibatches`).  For every batch: zero the
    gradients, ``model.loss_and_grad(X_batch, y_batch)``, optionally clip
    the gradients, ``optimizer.step()``, and optionally step the scheduler.
    After the batches: the validation loss, the scheduler step, the
    history entry, early stopping, the progress line and the callback.

    Parameters
    ----------
    model : object
        Has ``params`` (a ParamSet), ``loss_and_grad(X_batch, y_batch)``
        and, with ``validation_data``, ``loss(X, y)``; see
        :mod:`fastopt.training`.
    optimizer : fastopt.optim.Optimizer or similar
        Built on ``model.params``; only its ``step()`` (and, to record the
        learning rate, ``param_groups``) are used -- and, where it has
        both, its ``train()`` and ``eval()`` (a schedule-free optimizer's
        switch between the point where gradients are taken and the
        averaged point): ``train()`` before each epoch's batches,
        ``eval()`` after them (and when training stops on an error), so
        validation, ``restore_best`` and the parameters ``fit`` leaves
        behind are at the evaluation point.  (Restored best parameters are
        an earlier epoch's average, while the optimizer's ``z`` is the last
        epoch's: a later ``train()`` moves from the one towards the other.)
    X, y : array_like
        Training inputs and targets, aligned along the first axis.  ``y``
        may be None for a model that needs no targets; it is then passed as
        None to ``loss_and_grad``.
    epochs : int
        Most passes over the data (at least 1).
    batch_size : int or None, default 32
        Rows per batch; None for full-batch training, 1 for stochastic.
    shuffle : bool, default True
        Visit the rows in a new random order every epoch.
    seed : None, int, SeedSequence or numpy.random.Generator, default 0
        Source of the shuffles: one Generator is made from it at the start
        and draws every epoch's order, so the same seed repeats the whole
        run.  None draws fresh entropy (not reproducible).
    drop_last : bool, default False
        Skip each epoch's final batch when it is smaller than ``batch_size``.
    scheduler : object, optional
        A learning-rate scheduler with a ``step()`` method, stepped after
        the optimizer as in torch (the torch.optim.lr_scheduler protocol).
        A scheduler that needs a metric gets ``step(metric)``, the
        validation loss (the epoch's training loss without validation
        data).  It is recognised by a true ``needs_metric`` attribute, or,
        when it has no such attribute, by a class named
        ``ReduceLROnPlateau`` anywhere in its class hierarchy, so no
        scheduler module needs to be importable.
    scheduler_interval : {"epoch", "batch"}, default "epoch"
        Step the scheduler once after every epoch or after every batch
        (for warm-up and one-cycle schedules).  A metric-driven scheduler
        must be stepped per epoch.
    clip_grad_norm : float, optional
        Rescale each batch's gradients so that their global 2-norm is at
        most this, with :func:`fastopt.nn.clip.clip_grad_norm_`; the norms
        before clipping are averaged into ``History.grad_norm``.
    validation_data : tuple (X_val, y_val), optional
        Data for ``model.loss`` after every epoch (in one call, on all of it).
    early_stopping_patience : int, optional
        Stop once the validation loss has not improved for this many
        consecutive epochs (needs ``validation_data``).  With patience
        ``p``, training ends ``p`` epochs after the best one.
    min_delta : float, default 0
        Least decrease of the validation loss that counts as an improvement.
    restore_best : bool, optional
        At the end, copy the parameters of the best epoch (lowest
        validation loss) back into ``model.params.data``.  Costs one copy of
        the parameters per improvement.  Defaults to True with early
        stopping and to False otherwise; needs ``validation_data``.  Only
        the parameters are restored: the optimizer's state (momentum,
        moment estimates, step counts) and the scheduler stay as they are
        after the last epoch; an optimizer with ``master_weights`` keeps its
        float32 copy of the last epoch, which its next step would write back
        (clear its state to continue from the restored parameters).
    callback : callable, optional
        Called as ``callback(epoch, history)`` after each epoch (``epoch``
        counts from 0), e.g. to save a checkpoint.  Returning True stops
        training (``History.stopped_early`` is then True).
    progress : bool or {"tqdm", "print"}, default True
        Show progress on stderr: a ``tqdm`` bar over the epochs when tqdm
        is installed, otherwise one line per epoch.  "tqdm" or "print"
        choose explicitly; False shows nothing.

    Returns
    -------
    History
        Per-epoch losses, learning rates, times and gradient norms, the
        best epoch, and whether training stopped early.

    Raises
    ------
    NonFiniteLossError
        (a :class:`FloatingPointError`) as soon as a batch loss, a gradient
        norm (with clipping) or a validation loss is NaN or infinite.  The
        message names the epoch and batch; the parameters are left as they
        were *before* the failing batch's step (which is not taken; a
        schedule-free optimizer is switched to its averaged point of that
        moment) -- unless ``restore_best`` is in effect and a best epoch
        exists, in which case the best parameters are restored first.  The error's
        ``history`` holds the completed epochs.  Gradients that are
        non-finite while the loss is finite are not checked here (build the
        optimizer with ``skip_nonfinite=True`` for that).
    TypeError, ValueError
        For a model without the protocol's methods and for invalid arguments.

    Examples
    --------
    See :mod:`fastopt.training`.
    """
    params = _check_model(model, validation_data is not None)
    _check_optimizer(optimizer, params)
    epochs = integer("epochs", epochs, 1, expected="a positive integer")
    patience = None if early_stopping_patience is None else integer("early_stopping_patience", early_stopping_patience,
                                                                         1, expected="a positive integer")
    restore_best = _restore_best(restore_best, patience, validation_data)
    min_delta = bounded_real("min_delta", min_delta, 0.0)
    max_norm = None if clip_grad_norm is None else bounded_real("clip_grad_norm", clip_grad_norm, 0.0, low_open=True)
    wants_metric, per_batch = _check_scheduler(scheduler, scheduler_interval)
    if callback is not None:
        check_callable("callback", callback)
    data = _as_aligned_arrays((X,) if y is None else (X, y), "fit()")
    X_val, y_val = _check_validation(validation_data)
    rng = random_generator(seed)
    n_batches = num_batches(len(data[0]), batch_size, drop_last=drop_last)
    if n_batches == 0:
        raise ValueError(f"drop_last=True with batch_size={batch_size} larger than the {len(data[0])} "
                         "rows leaves no batch to train on")
    clip = _clipper() if max_norm is not None else None

    history = History()
    best_metric, since_best = math.inf, 0
    best_data: Any = params.data.copy() if restore_best else None
    display = _Progress(progress, epochs)

    def fail(what: str, value: float, epoch: int, batch: int | None, detail: str = "") -> NoReturn:
        if modes is not None:
            modes.eval()  # before any restore: the best parameters were saved in evaluation mode
        if batch is None:
            message = f"{what} after epoch {epoch + 1}/{epochs}{detail}"
        else:
            message = f"{what} at epoch {epoch + 1}/{epochs}, batch {batch + 1}/{n_batches}{detail}"
        if restore_best and history.best_epoch is not None:
            params.data[...] = best_data
            history.restored_best = True
            message += f"; the parameters of epoch {history.best_epoch + 1} (the best) were restored"
        display.close()
        raise NonFiniteLossError(message, epoch=epoch, batch=batch, value=value, history=history)

    switches = all(callable(getattr(optimizer, name, None)) for name in ("train", "eval"))
    modes: Any = optimizer if switches else None  # a schedule-free optimizer's train()/eval()
    batch: Any  # one array, or a tuple (X_batch, y_batch)
    try:
        for epoch in range(epochs):
            start = time.perf_counter()
            lr = _current_lr(optimizer)
            if modes is not None:
                modes.train()
            loss_sum, rows, norm_sum = 0.0, 0, 0.0
            batches = minibatches(*data, batch_size=batch_size, shuffle=shuffle, seed=rng, drop_last=drop_last)
            for b, batch in enumerate(batches):
                X_batch, y_batch = batch if y is not None else (batch, None)
                params.zero_grad()
                loss = float(model.loss_and_grad(X_batch, y_batch))
                if not math.isfinite(loss):
                    fail(f"training loss is {loss}", loss, epoch, b)
                if clip is not None:
                    norm = float(clip(params, max_norm))
                    if not math.isfinite(norm):
                        fail(f"gradient norm is {norm}", norm, epoch, b, f" (loss {loss:.6g})")
                    norm_sum += norm
                optimizer.step()
                if per_batch:
                    scheduler.step()  # type: ignore[union-attr, call-arg]
                loss_sum += loss * len(X_batch)
                rows += len(X_batch)
            if modes is not None:
                modes.eval()

            metric = train_loss = loss_sum / rows
            if X_val is not None:
                metric = float(model.loss(X_val, y_val))  # type: ignore[attr-defined]
                if not math.isfinite(metric):
                    fail(f"validation loss is {metric}", metric, epoch, None)
            if scheduler is not None and not per_batch:
                if wants_metric:
                    scheduler.step(metric)  # type: ignore[call-arg]
                else:
                    scheduler.step()  # type: ignore[call-arg]
            history.train_loss.append(train_loss)
            history.lr.append(lr)
            if X_val is not None:
                history.val_loss.append(metric)
            if clip is not None:
                history.grad_norm.append(norm_sum / n_batches)
            history.seconds.append(time.perf_counter() - start)

            if metric < best_metric - min_delta or history.best_epoch is None:
                best_metric, since_best, history.best_epoch = metric, 0, epoch
                if restore_best:
                    np.copyto(best_data, params.data)
            else:
                since_best += 1
            display.epoch_done(history, epochs)
            stop = patience is not None and since_best >= patience
            if callback is not None and callback(epoch, history) is True:
                stop = True
            if stop and epoch + 1 < epochs:
                history.stopped_early = True
                break
    except BaseException:
        if modes is not None:
            try:
                modes.eval()  # leave the averaged point, as a finished fit does
            except Exception:  # noqa: BLE001 -- the error that stopped training is the one to see
                pass
        raise
    else:
        if modes is not None:
            modes.eval()
    finally:
        display.close()

    if restore_best and history.best_epoch != history.epochs - 1:
        params.data[...] = best_data
        history.restored_best = True
    display.summary(history)
    return history


# ------------------------------------------------------------------ checks
def _check_model(model: object, needs_loss: bool) -> Any:
    if not callable(getattr(model, "loss_and_grad", None)):
        raise TypeError(f"model must have a loss_and_grad(X_batch, y_batch) method, got {type(model).__name__}")
    if needs_loss and not callable(getattr(model, "loss", None)):
        raise TypeError(f"validation_data needs a model with a loss(X, y) method; {type(model).__name__} has none")
    params = getattr(model, "params", None)
    if params is None or not hasattr(params, "data") or not callable(getattr(params, "zero_grad", None)):
        raise TypeError("model.params must be the fastopt.ParamSet holding the model's parameters, "
                        f"got {type(params).__name__}")
    return params


def _check_optimizer(optimizer: Any, params: ParamSet) -> None:
    """The optimizer must update ``model.params``: fit() writes the gradients into its ``grad`` buffer.

    Checked for fastopt's own optimizers (and anything exposing the ParamSet
    it steps as ``ps``, like ``ShardedOptimizer``); others are taken on trust.
    """
    if not callable(getattr(optimizer, "step", None)):
        raise TypeError(f"optimizer must have a step() method, got {type(optimizer).__name__}")
    if isinstance(optimizer, (Optimizer, OptimizerWrapper)):
        elsewhere = [slot.name for slot in optimizer._layout.slots if slot.paramset is not params]
    elif isinstance(getattr(optimizer, "ps", None), ParamSet):
        elsewhere = [] if optimizer.ps is params else ["its ParamSet"]
    else:
        return
    if elsewhere:
        shown = ", ".join(elsewhere[:3]) + (f" and {len(elsewhere) - 3} more" if len(elsewhere) > 3 else "")
        raise ValueError(f"{type(optimizer).__name__} is not built on model.params (it steps {shown}): fit() "
                         "writes the gradients into model.params.grad and calls step() without gradients, so it "
                         "would train nothing; build the optimizer on model.params (or model.params.select(...))")


def _check_validation(validation_data: object) -> tuple[Any, Any]:
    if validation_data is None:
        return None, None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise TypeError("validation_data must be a pair (X_val, y_val)")
    X_val, y_val = validation_data
    if y_val is not None and len(X_val) != len(y_val):
        raise ValueError(f"validation_data: X_val has {len(X_val)} rows but y_val has {len(y_val)}")
    return X_val, y_val


def _check_scheduler(scheduler: object, interval: str) -> tuple[bool, bool]:
    """Whether the scheduler wants a metric, and whether to step it per batch."""
    choice("scheduler_interval", interval, ("epoch", "batch"), expected="'epoch' or 'batch'")
    if scheduler is None:
        return False, False
    if not callable(getattr(scheduler, "step", None)):
        raise TypeError(f"scheduler must have a step() method, got {type(scheduler).__name__}")
    wants_metric = _needs_metric(scheduler)
    if wants_metric and interval == "batch":
        raise ValueError(f"{type(scheduler).__name__} steps on a per-epoch metric; use scheduler_interval='epoch'")
    return wants_metric, interval == "batch"


def _needs_metric(scheduler: object) -> bool:
    flag = getattr(scheduler, "needs_metric", None)
    if flag is not None:
        return bool(flag)
    return any(cls.__name__ == "ReduceLROnPlateau" for cls in type(scheduler).__mro__)


def _restore_best(restore_best: bool | None, patience: int | None, validation_data: object) -> bool:
    if patience is not None and validation_data is None:
        raise ValueError("early_stopping_patience watches the validation loss: pass validation_data too")
    if restore_best is None:
        return patience is not None
    restore_best = flag("restore_best", restore_best, ints=None, message="restore_best must be True, False or None, got {value!r}")
    if restore_best and validation_data is None:
        raise ValueError("restore_best picks the epoch with the lowest validation loss: pass validation_data too")
    return restore_best


def _clipper() -> Callable[..., float]:
    try:
        from fastopt.nn.clip import clip_grad_norm_
    except ImportError as err:
        raise ImportError("clip_grad_norm needs fastopt.nn.clip.clip_grad_norm_, "
                          f"which failed to import: {err}") from err
    return clip_grad_norm_


def _current_lr(optimizer: object) -> Any:
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        return None
    rates = [group.get("lr") for group in groups]
    return rates[0] if all(r == rates[0] for r in rates) else tuple(rates)


# ---------------------------------------------------------------- progress
class _Progress:
    """Shows epochs on stderr: a tqdm bar, plain lines, or nothing."""

    def __init__(self, progress: object, epochs: int) -> None:
        choice("progress", progress, (True, False, "tqdm", "print"), expected="True, False, 'tqdm' or 'print'")
        self.mode = "print" if progress else None
        self.bar: Any = None
        if progress in (True, "tqdm"):
            try:
                from tqdm.auto import tqdm  # type: ignore[import-untyped, import-not-found, unused-ignore]  # (an optional extra; tqdm ships no types)
            except ImportError:
                if progress == "tqdm":
                    raise ImportError("progress='tqdm' needs the tqdm package (pip install tqdm)") from None
            else:
                self.mode, self.bar = "tqdm", tqdm(total=epochs, unit="epoch", desc="fit")

    def epoch_done(self, history: History, epochs: int) -> None:
        if self.mode is None:
            return
        stats = {"loss": f"{history.train_loss[-1]:.4g}"}
        if history.val_loss:
            stats["val_loss"] = f"{history.val_loss[-1]:.4g}"
        if isinstance(history.lr[-1], float):
            stats["lr"] = f"{history.lr[-1]:.3g}"
        if self.bar is not None:
            self.bar.set_postfix(stats, refresh=False)
            self.bar.update(1)
        else:
            line = ", ".join(f"{k} {v}" for k, v in stats.items())
            print(f"epoch {history.epochs}/{epochs}: {line}, {history.seconds[-1]:.3g} s", file=sys.stderr, flush=True)

    def summary(self, history: History) -> None:
        if self.mode is None or not (history.stopped_early or history.restored_best):
            return
        parts = [f"stopped early after epoch {history.epochs}"] if history.stopped_early else []
        if history.restored_best:  # so best_epoch is an int
            best: Any = history.best_epoch
            parts.append(f"restored the parameters of epoch {best + 1} "
                         f"(val_loss {history.val_loss[best]:.4g})")
        print("fit: " + "; ".join(parts), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
