"""Weight averaging, after ``torch.optim.swa_utils``: :class:`AveragedModel`, :class:`SWALR`, :func:`update_bn`."""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from fastopt._kernels import assign, lerp
from fastopt._locks import holding
from fastopt._threads import get_num_threads
from fastopt._storage import BFLOAT16
from fastopt._validation import bounded_real, check_callable, choice, integer
from fastopt.nn.batchnorm import BatchNorm
from fastopt.optim.lr_scheduler import LRScheduler, _target
from fastopt.paramset import ParamSet

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, MutableMapping, Sequence
    from typing import Literal, Protocol

    from fastopt._typing import Array, Scalar, StateDict

    class _HasParamGroups(Protocol):
        """What a schedule sets: an optimizer (or wrapper) with ``param_groups``, a list of dicts with an "lr"."""

        @property
        def param_groups(self) -> Sequence[MutableMapping[str, Any]]: ...

__all__ = ["AveragedModel", "SWALR", "update_bn"]


class AveragedModel:
    r"""A running average of a ParamSet's parameters: SWA's equal weights, or an exponential moving average.

    As ``torch.optim.swa_utils.AveragedModel`` with its default averaging
    (``decay=None``: after :math:`n` updates, the mean of the :math:`n`
    parameter vectors) or with ``get_ema_multi_avg_fn(decay)`` (the EMA
    :math:`\bar\theta \leftarrow \operatorname{lerp}(\bar\theta, \theta, 1 - \text{decay})`).
    The first :meth:`update_parameters` copies the parameters; each later
    one is ``lerp(average, params, 1 / (n + 1))`` (or ``1 - decay``) in one
    fused pass over the whole ParamSet, with ``torch.lerp``'s formula
    (torch's CPU path computes ``avg + (p - avg) / (n + 1)`` for SWA, which
    rounds differently in the last bit).  The average of bfloat16
    parameters is kept in float32, so an EMA's small steps are not lost;
    :meth:`swapped` rounds it to nearest into them.

    Parameters
    ----------
    params : ParamSet
        The parameters to average (the model's).
    decay : float, optional
        None for SWA's equal weights; else the EMA decay, in [0, 1].

    Attributes
    ----------
    average : numpy.ndarray
        The average, flat, laid out as ``params.data`` (in its dtype;
        float32 for bfloat16 parameters).
    averaged : dict
        ``{name: view of average}``, shaped as the tensors: read a tensor's
        average, or save them all with ``fastopt.save(path, avg.averaged)``
        (evaluate the model at the average with :meth:`swapped`; for
        bfloat16 parameters the views are float32, so save the ParamSet
        inside :meth:`swapped` to get a checkpoint the model loads).
    n_averaged : int
        Updates so far.

    Examples
    --------
    >>> import numpy as np, fastopt
    >>> from fastopt.optim.swa_utils import AveragedModel
    >>> ps = fastopt.ParamSet({"w": np.zeros(2)})
    >>> swa = AveragedModel(ps)
    >>> for value in (1.0, 2.0, 6.0):
    ...     ps.data[:] = value
    ...     swa.update_parameters()
    >>> swa.averaged["w"]
    array([3., 3.])
    >>> with swa.swapped():  # the average in the model's own arrays, for evaluation
    ...     print(ps["w"])
    [3. 3.]
    >>> ps["w"]
    array([6., 6.])
    """

    def __init__(self, params: ParamSet, *, decay: Scalar | None = None) -> None:
        if not isinstance(params, ParamSet):
            raise TypeError(f"params must be a fastopt.ParamSet, got {type(params).__name__}")
        self.params: ParamSet = params
        self.decay: float | None = None if decay is None else bounded_real("decay", decay, 0.0, 1.0)
        self.average: Array = np.zeros(params.data.size, np.float32 if params.dtype == BFLOAT16 else params.dtype)
        self.averaged: dict[str, Array] = {name: self.average[params.slices[name]].reshape(params.shapes[name])
                                           for name in params}
        self.n_averaged: int = 0
        self._backup: Array | None = None  # the parameters while swapped() holds the average in their place

    def _lock(self) -> Any:
        return holding([self.params.data, self.average])

    def update_parameters(self) -> None:
        """Fold the current parameters into the average (the first call copies them)."""
        with self._lock():
            if self._backup is not None:
                raise RuntimeError("update_parameters() inside swapped(): the parameters hold the average")
            average, current = self.average, self.params.data
            if self.n_averaged == 0:
                assign(average, current, get_num_threads())  # (bfloat16 widens exactly)
            else:
                weight = 1.0 / (self.n_averaged + 1) if self.decay is None else 1.0 - self.decay
                lerp(average, current, weight, True, get_num_threads())
            self.n_averaged += 1

    @contextlib.contextmanager
    def swapped(self) -> Iterator[ParamSet]:
        """Hold the average in the parameters' own arrays for the ``with`` block, then put them back.

        What the block writes into the parameters (``update_bn``'s running
        statistics live elsewhere, in the layers) is lost on exit.
        """
        with self._lock():
            if self._backup is not None:
                raise RuntimeError("swapped() is already in effect")
            if self.n_averaged == 0:
                raise RuntimeError("there is no average yet: call update_parameters() first")
            self._backup = self.params.data.copy()
            assign(self.params.data, self.average, get_num_threads())  # bfloat16: to nearest
        try:
            yield self.params
        finally:
            with self._lock():
                np.copyto(self.params.data, self._backup)
                self._backup = None

    def state_dict(self) -> StateDict:
        """``{"n_averaged": int, "decay": float or None, "average": a copy of :attr:`average`}``."""
        with self._lock():
            return {"n_averaged": self.n_averaged, "decay": self.decay, "average": self.average.copy()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a snapshot of :meth:`state_dict` of an average of the same kind (checked before anything
        changes; not inside :meth:`swapped`)."""
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"n_averaged", "decay", "average"}:
            raise ValueError("state_dict must hold 'n_averaged', 'decay' and 'average', as "
                             "AveragedModel.state_dict() returns")
        if state_dict["decay"] != self.decay:
            raise ValueError(f"state_dict is of an average with decay={state_dict['decay']!r}, this one has "
                             f"decay={self.decay!r}")
        if self._backup is not None:
            raise RuntimeError("load_state_dict() inside swapped(): the parameters hold the average")
        count = integer("n_averaged", state_dict["n_averaged"], 0)
        array = np.asarray(state_dict["average"])
        target = self.average
        if array.shape != target.shape or array.dtype != target.dtype:
            raise ValueError(f"state_dict['average'] is {array.dtype}{list(array.shape)}, expected "
                             f"{target.dtype}{list(target.shape)}")
        with self._lock():
            np.copyto(target, array)
            self.n_averaged = count

    def __repr__(self) -> str:
        kind = "SWA" if self.decay is None else f"EMA, decay={self.decay}"
        return f"AveragedModel({kind}, n_averaged={self.n_averaged}, {self.params.data.size} parameters)"


class SWALR(LRScheduler):
    """Anneal each group's learning rate to ``swa_lr`` over ``anneal_epochs`` steps, then hold it, as torch's.

    Each step moves the learning rate from where the previous one left it
    toward ``swa_lr`` by torch's recursion, with ``alpha`` = ``(1 - cos(pi
    t)) / 2`` ("cos") or ``t`` ("linear") at ``t = step / anneal_epochs``.
    The group's ``"swa_lr"`` is written into it, as torch does.

    Parameters
    ----------
    optimizer : Optimizer (or float learning rates, see :class:`~fastopt.optim.lr_scheduler.LRScheduler`)
    swa_lr : float or list of float
        The learning rate to anneal to, >= 0: one for all groups or one per group.
    anneal_epochs : int, default 10
        Steps of annealing, >= 0 (0: ``swa_lr`` from the first step).
    anneal_strategy : {"cos", "linear"}, default "cos"
    last_epoch : -1
        Only -1: the annealing starts from whatever rate the optimizer
        holds, so it cannot be entered mid-way (resume with
        :meth:`load_state_dict`, as torch's state it restores).
    """

    _no_closed_form = "it anneals from the learning rate the optimizer holds when it starts, as torch's"

    def __init__(self, optimizer: _HasParamGroups | Scalar | Sequence[Scalar], swa_lr: Scalar | Sequence[Scalar],
                 anneal_epochs: int = 10, anneal_strategy: Literal["cos", "linear"] = "cos",
                 last_epoch: int = -1) -> None:
        target = _target(optimizer)
        groups = target.param_groups
        if isinstance(swa_lr, (list, tuple)):
            if len(swa_lr) != len(groups):
                raise ValueError(f"swa_lr has {len(swa_lr)} entries for {len(groups)} parameter groups")
            rates = [bounded_real(f"swa_lr[{i}]", lr, 0.0) for i, lr in enumerate(swa_lr)]
        else:
            rates = [bounded_real("swa_lr", swa_lr, 0.0)] * len(groups)
        self.anneal_epochs = integer("anneal_epochs", anneal_epochs, 0)
        self.anneal_strategy = choice("anneal_strategy", anneal_strategy, ("cos", "linear"))
        if integer("last_epoch", last_epoch, -1) != -1:
            raise ValueError("SWALR anneals from the rate the optimizer holds when it starts: last_epoch must "
                             "be -1 (restore a schedule with load_state_dict)")
        for group, lr in zip(groups, rates):  # read by the first step, which the base class takes
            group["swa_lr"] = lr
        super().__init__(target, last_epoch)

    def _alpha(self, t: float) -> float:
        return (1.0 - math.cos(math.pi * t)) / 2.0 if self.anneal_strategy == "cos" else t

    def _next_lr(self, i: int, lr: float, t: int) -> float:
        swa_lr: float = self._groups()[i]["swa_lr"]
        step = max(1, t) if self.anneal_epochs == 0 else t
        prev_alpha = self._alpha(max(0.0, min(1.0, (step - 1) / max(1, self.anneal_epochs))))
        start = swa_lr if prev_alpha == 1 else (lr - prev_alpha * swa_lr) / (1.0 - prev_alpha)
        alpha = self._alpha(max(0.0, min(1.0, step / max(1, self.anneal_epochs))))
        return swa_lr * alpha + start * (1.0 - alpha)


def update_bn(batches: Iterable[Any], forward: Callable[[Any], object],
              layers: BatchNorm | Iterable[BatchNorm]) -> None:
    """Recompute the running statistics of batch-norm layers from data, as ``torch.optim.swa_utils.update_bn``.

    Averaged weights (schedule-free's evaluation point, an EMA or SWA
    average) were never trained with the statistics their layers hold,
    which were gathered along the way at other weights.  This resets the
    running mean and variance of every layer that keeps them, switches it
    to a cumulative average (``momentum=None``: each batch weighs the same)
    in training mode, calls ``forward`` on every batch, and restores each
    layer's momentum and mode (and, if ``forward`` raises, its statistics).

    Parameters
    ----------
    batches : iterable
        The data: inputs, or tuples or lists whose first item is the input
        (as torch takes it from a DataLoader's ``(input, target)`` pairs);
        e.g. ``fastopt.minibatches(X, batch_size=256)``.
    forward : callable
        ``forward(x)`` runs the model on one input, through the layers,
        letting them use their own mode (``training=None``), or asking for
        training mode; its result is ignored.
    layers : BatchNorm or iterable of BatchNorm
        The layers to update; those without running statistics
        (``track_running_stats=False``) are left alone.

    Examples
    --------
    >>> import numpy as np, fastopt
    >>> from fastopt.nn import BatchNorm
    >>> from fastopt.optim.swa_utils import update_bn
    >>> bn = BatchNorm(2, dtype=np.float64)
    >>> X = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])
    >>> update_bn(fastopt.minibatches(X, batch_size=2, shuffle=False), bn, bn)
    >>> bn.running_mean  # the mean of the two batch means
    array([3., 4.])
    """
    check_callable("forward", forward)
    if isinstance(batches, np.ndarray):
        raise TypeError("batches must be an iterable of batches, not one array (which would be walked row by "
                        "row): pass fastopt.minibatches(X, batch_size=...) or [X]")
    layers = [layers] if isinstance(layers, BatchNorm) else list(_layers(layers))
    tracked = [layer for layer in layers if layer.track_running_stats]
    if not tracked:
        return
    saved = []
    for layer in tracked:
        assert layer.running_mean is not None and layer.running_var is not None  # (it tracks running statistics)
        saved.append((layer.momentum, layer.training, layer.running_mean.copy(), layer.running_var.copy(),
                      layer.num_batches_tracked))
    for layer in tracked:
        layer.reset_running_stats()
        layer.momentum = None
        layer.training = True
    try:
        for batch in batches:
            forward(batch[0] if isinstance(batch, (tuple, list)) else batch)
    except BaseException:  # the statistics as they were: a half-gathered average is no statistic
        for layer, (_, _, mean, var, count) in zip(tracked, saved):
            assert layer.running_mean is not None and layer.running_var is not None
            layer.running_mean[...], layer.running_var[...], layer.num_batches_tracked = mean, var, count
        raise
    finally:
        for layer, (momentum, training, *_) in zip(tracked, saved):
            layer.momentum, layer.training = momentum, training


def _layers(layers: object) -> Iterator[BatchNorm]:
    if not isinstance(layers, Iterable):
        raise TypeError(f"layers must be a BatchNorm or an iterable of them, got {type(layers).__name__}")
    for k, layer in enumerate(layers):
        if not isinstance(layer, BatchNorm):
            raise TypeError(f"layers[{k}] is a {type(layer).__name__}, not a fastopt.nn.BatchNorm")
        yield layer
