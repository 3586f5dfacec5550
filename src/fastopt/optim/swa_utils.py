"""Utilities for weight averaging, after ``torch.optim.swa_utils``."""
from collections.abc import Iterable

from fastopt.nn.batchnorm import BatchNorm
from fastopt._validation import check_callable

__all__ = ["update_bn"]


def update_bn(batches, forward, layers):
    """Recompute the running statistics of batch-norm layers from data, as ``torch.optim.swa_utils.update_bn``.

    Averaged weights (schedule-free's evaluation point, an EMA or SWA
    average) were never trained with the statistics their layers hold,
    which were gathered along the way at other weights.  This resets the
    running mean and variance of every layer that keeps them, switches it
    to a cumulative average (``momentum=None``: each batch weighs the same)
    in training mode, calls ``forward`` on every batch, and restores each
    layer's momentum and mode.

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
    layers = [layers] if isinstance(layers, BatchNorm) else list(_layers(layers))
    tracked = [layer for layer in layers if layer.track_running_stats]
    if not tracked:
        return
    saved = [(layer.momentum, layer.training) for layer in tracked]
    for layer in tracked:
        layer.reset_running_stats()
        layer.momentum = None
        layer.training = True
    try:
        for batch in batches:
            forward(batch[0] if isinstance(batch, (tuple, list)) else batch)
    finally:
        for layer, (momentum, training) in zip(tracked, saved):
            layer.momentum, layer.training = momentum, training


def _layers(layers):
    if not isinstance(layers, Iterable):
        raise TypeError(f"layers must be a BatchNorm or an iterable of them, got {type(layers).__name__}")
    for k, layer in enumerate(layers):
        if not isinstance(layer, BatchNorm):
            raise TypeError(f"layers[{k}] is a {type(layer).__name__}, not a fastopt.nn.BatchNorm")
        yield layer
