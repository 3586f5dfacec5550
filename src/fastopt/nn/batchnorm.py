"""Batch normalization: functional forward/backward and a small layer.

Semantics follow ``torch.nn.functional.batch_norm`` and
``torch.nn.BatchNorm1d/2d/3d``:

* the input has shape ``(N, C)`` or ``(N, C, *spatial)``; channel ``c``
  covers the ``N' = N * prod(spatial)`` elements ``x[:, c, ...]``;
* training mode normalizes with the batch mean and the *biased* batch
  variance, and moves the running statistics towards the batch ones,
  ``running = (1 - momentum) * running + momentum * batch_stat``, using the
  *unbiased* variance for ``running_var``;
* evaluation mode normalizes with the running statistics;
* ``y = (x - mean) / sqrt(var + eps) * weight + bias``, with ``weight`` and
  ``bias`` optional (a non-affine layer).

All arrays are C-contiguous float32 or float64 ndarrays of one dtype; per
channel arrays have shape ``(C,)``.  The kernels (``fastopt.nn._batchnorm``)
release the GIL, use up to ``fastopt.get_num_threads()`` threads, accumulate
statistics in double precision, and give the same bits for any thread count.

What the backward pass needs
----------------------------
:func:`batch_norm_forward` returns a :class:`BatchNormCache` holding a
reference to ``x`` (no copy), ``weight``, and the per-channel mean and
inverse standard deviation (float64, ``C`` values each).  The backward pass
recomputes ``x_hat = (x - mean) * inv_std`` on the fly instead of reading a
saved ``x_hat``: the forward pass then writes only ``y`` and the backward
pass reads ``dy`` and ``x``, the least memory traffic possible.  So ``x``
(and ``weight``) must not be modified between the two calls.

Non-finite values propagate: a NaN or infinity in a channel of ``x`` makes
that channel's batch statistics NaN in training mode, and with them its whole
output, gradients and running statistics, as in torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Optional

import numpy as np

from fastopt._threads import get_num_threads
from fastopt._validation import FLOAT_DTYPES, as_array, check_float_array, check_grad, bounded_real, flag, integer
from fastopt.nn import _batchnorm

if TYPE_CHECKING:
    from numpy.typing import DTypeLike
    from typing_extensions import Self

    from fastopt._typing import Array
    from fastopt.paramset import ParamSet

__all__ = ["BatchNorm", "BatchNormCache", "batch_norm_backward", "batch_norm_forward"]

#: How a refused boolean argument is reported (bools only here: no 0 or 1).
_BOOL = "{name} must be a bool, got {type}"


class BatchNormCache(NamedTuple):
    """What :func:`batch_norm_backward` needs from a forward pass.

    Attributes
    ----------
    x : numpy.ndarray
        The forward input itself (a reference, not a copy).
    weight : numpy.ndarray or None
        The weight used (None for a non-affine call).
    has_bias : bool
        Whether a bias was used (then the backward pass returns ``dbias``).
    mean, inv_std : numpy.ndarray
        Per-channel float64 statistics used to normalize: the batch mean and
        ``1 / sqrt(biased_var + eps)`` in training mode, the running ones in
        evaluation mode.
    training : bool
        Whether the forward pass used batch statistics.
    """

    x: Array
    weight: Optional[Array]
    has_bias: bool
    mean: Array
    inv_std: Array
    training: bool


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------
def _check_input(x: Array, name: str) -> Array:
    check_float_array(x, name)
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (N, C) or (N, C, *spatial), got shape {x.shape}")
    return x


def _check_channel_array(arr: Array, name: str, x: Array, *, writeable: bool = False, why: str = "",
                         x_name: str = "x") -> Array:
    """A (C,) array of x's dtype for the C = x.shape[1] channels of x (writeable if asked)."""
    if type(arr) is np.ndarray and arr.dtype is x.dtype and arr.shape == (x.shape[1],):  # the usual case, quickly
        flags = arr.flags
        if flags.c_contiguous and flags.aligned and (flags.writeable or not writeable):
            return arr
    check_float_array(arr, name)
    if arr.dtype != x.dtype:
        raise TypeError(f"{name} has dtype {arr.dtype} but {x_name} has dtype {x.dtype}")
    if arr.shape != (x.shape[1],):
        raise ValueError(f"{name} must have shape ({x.shape[1]},) (one value per channel of {x_name}), "
                         f"got {arr.shape}")
    if writeable and not arr.flags.writeable:
        raise ValueError(f"{name} is read-only; {why}")
    return arr


def _check_output(arr: Array, name: str, like: Array, like_name: str) -> Array:
    check_grad(arr, like, name, like_name, FLOAT_DTYPES)  # a float array with like's dtype and shape
    if not arr.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return arr


def _check_separate(written: list[tuple[Any, str]], others: list[tuple[Any, str]]) -> None:
    """Each written (array, name) must share no memory with any other given (array, name) pair."""
    pairs = written + others
    hit = _batchnorm.first_overlap([a for a, _ in pairs], len(written))
    if hit is not None:
        name, other = pairs[hit[0]][1], pairs[hit[1]][1]
        raise ValueError(f"{name} and {other} share memory; {name} must be a separate array")


def _ncs(shape: tuple[int, ...]) -> tuple[int, int, int]:
    n, c = shape[0], shape[1]
    s = 1
    for d in shape[2:]:
        s *= d
    return n, c, s


# --------------------------------------------------------------------------
# Functional API
# --------------------------------------------------------------------------
def batch_norm_forward(x: Array, weight: Array | None = None, bias: Array | None = None,
                       running_mean: Array | None = None, running_var: Array | None = None, *, training: bool = True,
                       momentum: float = 0.1, eps: float = 1e-5, out: Array | None = None) -> tuple[Array, BatchNormCache]:
    """Batch-normalize ``x`` per channel; return ``(y, cache)``.

    Parameters
    ----------
    x : numpy.ndarray
        Input of shape ``(N, C)`` or ``(N, C, *spatial)``, C-contiguous
        float32 or float64.
    weight, bias : numpy.ndarray, optional
        Per-channel scale and shift, shape ``(C,)``, dtype of ``x``.  Either
        may be omitted (scale 1, shift 0).
    running_mean, running_var : numpy.ndarray, optional
        Running statistics, shape ``(C,)``, dtype of ``x``, given together.
        Required in evaluation mode.  In training mode they are updated in
        place (so must be writeable) when given.
    training : bool, default True
        Normalize with batch statistics (True) or the running ones (False).
    momentum : float, default 0.1
        Weight of the batch statistic in the running-statistics update, in
        [0, 1].  For a cumulative average pass ``1 / batches_seen`` (as
        :class:`BatchNorm` does for ``momentum=None``).
    eps : float, default 1e-5
        Added to the variance before the square root; >= 0.
    out : numpy.ndarray, optional
        Where to write ``y``: shape and dtype of ``x``, not sharing memory
        with ``x`` (the backward pass reads ``x``) or any other argument.

    Returns
    -------
    y : numpy.ndarray
        The normalized output (``out`` if given).
    cache : BatchNormCache
        What :func:`batch_norm_backward` needs; it refers to ``x`` and
        ``weight`` without copying them.

    Raises
    ------
    TypeError
        For an argument that is not an ndarray of the right dtype, or a
        non-real ``momentum``/``eps``.
    ValueError
        For wrong shapes, non-contiguous arrays, read-only outputs or running
        statistics (training), overlapping outputs, missing running statistics
        in evaluation mode, and in training mode fewer than two values per
        channel (``N * prod(spatial) < 2``), where the variance is undefined.

    Notes
    -----
    Statistics are computed in float64 for both dtypes from two-pass pieces
    merged pairwise (robust to a large common offset); the elementwise output
    is computed in the dtype of ``x``.  See ``fastopt.nn._batchnorm``.
    """
    x, weight, bias, running_mean, running_var, out = (  # DLPack producers: views of the same memory
        as_array(a, name) for a, name in ((x, "x"), (weight, "weight"), (bias, "bias"), (running_mean, "running_mean"),
                                          (running_var, "running_var"), (out, "out")))
    _check_input(x, "x")
    training = flag("training", training, ints=None, message=_BOOL)
    momentum = bounded_real("momentum", momentum, 0.0, 1.0, must="between 0.0 and 1.0")
    eps = bounded_real("eps", eps, 0.0, allow_inf=True)
    if eps == float("inf"):
        raise ValueError("eps must be finite")
    if weight is not None:
        _check_channel_array(weight, "weight", x)
    if bias is not None:
        _check_channel_array(bias, "bias", x)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must be given together (or neither)")
    has_running = running_mean is not None
    if has_running:
        why = "training mode updates the running statistics in place"
        _check_channel_array(running_mean, "running_mean", x, writeable=training, why=why)
        _check_channel_array(running_var, "running_var", x, writeable=training, why=why)
    elif not training:
        raise ValueError("evaluation mode (training=False) needs running_mean and running_var")
    n, c, s = _ncs(x.shape)
    if training and n * s < 2:
        raise ValueError(f"Expected more than 1 value per channel when training, got input of shape {x.shape}")
    others = [(x, "x"), (weight, "weight"), (bias, "bias")]
    written = []
    if out is None:
        out = np.empty_like(x)
    else:
        _check_output(out, "out", x, "x")
        written.append((out, "out"))
    if has_running:
        if training:
            written += [(running_mean, "running_mean"), (running_var, "running_var")]
        else:
            others += [(running_mean, "running_mean"), (running_var, "running_var")]
    if written:
        _check_separate(written, others)

    mean = np.empty(c, dtype=np.float64)
    inv_std = np.empty(c, dtype=np.float64)
    if training:
        _batchnorm.forward(x.reshape(-1), out.reshape(-1), weight, bias, running_mean, running_var, mean, inv_std,
                           n, c, s, True, momentum, eps, get_num_threads())
    else:
        _batchnorm.eval_statistics(running_mean, running_var, eps, mean, inv_std)
        _batchnorm.forward(x.reshape(-1), out.reshape(-1), weight, bias, None, None, mean, inv_std,
                           n, c, s, False, momentum, eps, get_num_threads())
    return out, BatchNormCache(x, weight, bias is not None, mean, inv_std, training)


def batch_norm_backward(dy: Array, cache: BatchNormCache, *, dx_out: Array | None = None,
                        dweight_out: Array | None = None, dbias_out: Array | None = None,
                        accumulate: bool = False) -> tuple[Array, Array | None, Array | None]:
    """Gradients of a batch-norm forward pass; return ``(dx, dweight, dbias)``.

    Parameters
    ----------
    dy : numpy.ndarray
        Gradient of the loss with respect to ``y``: shape and dtype of the
        forward input, C-contiguous.
    cache : BatchNormCache
        Returned by :func:`batch_norm_forward`.
    dx_out : numpy.ndarray, optional
        Where to write ``dx``.  May be ``dy`` itself (overwritten in place);
        otherwise it must not share memory with ``dy`` or ``x``.
    dweight_out, dbias_out : numpy.ndarray, optional
        Where to write ``dweight`` / ``dbias``, shape ``(C,)``: for instance
        ``ps.grads["bn.weight"]`` of a :class:`fastopt.ParamSet`.  Only
        allowed when the forward pass had a weight / bias.
    accumulate : bool, default False
        Add ``dweight`` and ``dbias`` to the contents of ``dweight_out`` /
        ``dbias_out`` instead of overwriting them (as torch accumulates into
        ``.grad``).  ``dx`` is always overwritten.

    Returns
    -------
    dx : numpy.ndarray
    dweight, dbias : numpy.ndarray or None
        ``sum(dy * x_hat)`` and ``sum(dy)`` per channel, or None when the
        forward pass had no weight / bias.

    Notes
    -----
    Training mode::

        dx = (1/N') * inv_std * (N' * dy_hat - sum(dy_hat) - x_hat * sum(dy_hat * x_hat))

    with ``dy_hat = dy * weight``; evaluation mode, where the statistics are
    constants: ``dx = dy * weight * inv_std``.  Per-channel sums are float64.
    """
    if not isinstance(cache, BatchNormCache):
        raise TypeError(f"cache must be the BatchNormCache returned by batch_norm_forward, got {type(cache).__name__}")
    x = cache.x
    dy, dx_out, dweight_out, dbias_out = (as_array(a, name) for a, name in (
        (dy, "dy"), (dx_out, "dx_out"), (dweight_out, "dweight_out"), (dbias_out, "dbias_out")))
    accumulate = flag("accumulate", accumulate, ints=None, message=_BOOL)
    check_float_array(dy, "dy")
    if dy.dtype != x.dtype:
        raise TypeError(f"dy has dtype {dy.dtype} but x has dtype {x.dtype}")
    if dy.shape != x.shape:
        raise ValueError(f"dy has shape {dy.shape} but x has shape {x.shape}")
    written = []
    if dx_out is None:
        dx_out = np.empty_like(x)
    else:
        _check_output(dx_out, "dx_out", x, "x")
        if not (dx_out.ctypes.data == dy.ctypes.data and dx_out.size):  # dx_out is dy itself: fine, elementwise
            written.append((dx_out, "dx_out"))
        else:
            _check_separate([(dx_out, "dx_out")], [(x, "x")])
    for arr, name, present, what in ((dweight_out, "dweight_out", cache.weight is not None, "weight"),
                                     (dbias_out, "dbias_out", cache.has_bias, "bias")):
        if arr is not None:
            if not present:
                raise ValueError(f"{name} was given but the forward pass had no {what}")
            _check_channel_array(arr, name, x, writeable=True, why="the backward pass writes into it")
            written.append((arr, name))
    if written:
        _check_separate(written, [(dy, "dy"), (x, "x"), (cache.weight, "weight")])
    n, c, s = _ncs(x.shape)
    if cache.weight is not None and dweight_out is None:
        dweight_out = np.empty(c, dtype=x.dtype)
        accumulate_w = False
    else:
        accumulate_w = accumulate
    if cache.has_bias and dbias_out is None:
        dbias_out = np.empty(c, dtype=x.dtype)
        accumulate_b = False
    else:
        accumulate_b = accumulate
    if accumulate_w != accumulate_b:  # one new array, one given: zero the new one and accumulate into both
        (dweight_out if not accumulate_w else dbias_out).fill(0)
        accumulate = True
    else:
        accumulate = accumulate_w
    _batchnorm.backward(dy.reshape(-1), x.reshape(-1), dx_out.reshape(-1), cache.weight, cache.mean, cache.inv_std,
                        dweight_out, dbias_out, n, c, s, cache.training, accumulate, get_num_threads())
    return dx_out, dweight_out, dbias_out


# --------------------------------------------------------------------------
# Layer
# --------------------------------------------------------------------------
class BatchNorm:
    """Batch normalization over the channel axis (axis 1), like ``torch.nn.BatchNorm1d/2d/3d``.

    A thin holder of parameters, gradients and running statistics around
    :func:`batch_norm_forward` / :func:`batch_norm_backward`.

    Parameters
    ----------
    num_features : int
        Number of channels ``C``.
    momentum : float or None, default 0.1
        Running-statistics momentum; None for a cumulative moving average
        (weight ``1 / num_batches_tracked``).
    eps : float, default 1e-5
    affine : bool, default True
        Learn a per-channel ``weight`` and ``bias``.
    track_running_stats : bool, default True
        Keep running statistics and use them in evaluation mode.  When False
        the batch statistics are used in both modes (as in torch).
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
    weight, bias : numpy.ndarray, optional
        Parameter arrays to use instead of new ones (say ``ps["bn.weight"]``
        of a :class:`fastopt.ParamSet`); shape ``(num_features,)``, writeable.
        Their values are kept as they are.  New ones start at 1 and 0.
    dweight, dbias : numpy.ndarray, optional
        Gradient arrays that :meth:`backward` writes (say
        ``ps.grads["bn.weight"]``); new zero arrays if not given.

    Attributes
    ----------
    weight, bias, dweight, dbias : numpy.ndarray or None
        None when ``affine`` is False.
    running_mean, running_var : numpy.ndarray or None
        Start at 0 and 1; None when ``track_running_stats`` is False.
    num_batches_tracked : int
        Training-mode forward passes seen (with ``track_running_stats``).
    training : bool
        The mode :meth:`forward` uses by default; see :meth:`train`, :meth:`eval`.

    Examples
    --------
    >>> import numpy as np, fastopt
    >>> from fastopt.nn import BatchNorm
    >>> ps = fastopt.ParamSet({"bn.weight": np.ones(3), "bn.bias": np.zeros(3)})
    >>> bn = BatchNorm.from_paramset(ps, "bn.weight", "bn.bias")
    >>> y = bn.forward(np.arange(12.0).reshape(4, 3))
    >>> dx = bn.backward(np.ones((4, 3)))
    >>> ps.grads["bn.bias"]
    array([4., 4., 4.])
    """

    num_features: int
    dtype: np.dtype[Any]
    momentum: float | None
    eps: float
    affine: bool
    track_running_stats: bool
    training: bool
    weight: Array | None
    bias: Array | None
    dweight: Array | None
    dbias: Array | None
    running_mean: Array | None
    running_var: Array | None
    num_batches_tracked: int

    def __init__(self, num_features: int, *, momentum: float | None = 0.1, eps: float = 1e-5, affine: bool = True,
                 track_running_stats: bool = True, dtype: DTypeLike = np.float32, weight: Array | None = None,
                 bias: Array | None = None, dweight: Array | None = None, dbias: Array | None = None) -> None:
        num_features = integer("num_features", num_features, 0, expected="a non-negative int")
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        self.num_features = num_features
        self.dtype = dtype
        if momentum is not None:
            momentum = bounded_real("momentum", momentum, 0.0, 1.0, must="between 0.0 and 1.0")
        self.momentum = momentum
        self.eps = bounded_real("eps", eps, 0.0, allow_inf=True)
        self.affine = flag("affine", affine, ints=None, message=_BOOL)
        self.track_running_stats = flag("track_running_stats", track_running_stats, ints=None, message=_BOOL)
        self.training = True
        self._cache: BatchNormCache | None = None
        shape_ref = np.empty((0, self.num_features), dtype=dtype)
        given = {"weight": weight, "bias": bias, "dweight": dweight, "dbias": dbias}
        if not self.affine:
            extra = [k for k, v in given.items() if v is not None]
            if extra:
                raise ValueError(f"affine=False takes no {', '.join(extra)}")
            self.weight = self.bias = self.dweight = self.dbias = None
        else:
            for name, default in (("weight", np.ones), ("bias", np.zeros), ("dweight", np.zeros), ("dbias", np.zeros)):
                arr = given[name]
                if arr is None:
                    arr = default(self.num_features, dtype=dtype)
                else:
                    _check_channel_array(arr, name, shape_ref, writeable=True, x_name="the layer",
                                         why="the layer updates it in place" if name[0] == "d"
                                         else "an optimizer updates it in place")
                setattr(self, name, arr)
            _check_separate([(self.dweight, "dweight"), (self.dbias, "dbias")], [(self.weight, "weight"),
                                                                                 (self.bias, "bias")])
        if self.track_running_stats:
            self.running_mean = np.zeros(self.num_features, dtype=dtype)
            self.running_var = np.ones(self.num_features, dtype=dtype)
        else:
            self.running_mean = self.running_var = None
        self.num_batches_tracked = 0

    @classmethod
    def from_paramset(cls, ps: ParamSet, weight: str, bias: str, **kwargs: Any) -> Self:
        """A layer whose weight and bias are tensors ``weight`` and ``bias`` (names) of ParamSet ``ps``.

        Gradients go to ``ps.grads[weight]`` and ``ps.grads[bias]``; the
        number of features and the dtype come from the ParamSet.  Other
        keyword arguments are passed to the constructor.
        """
        w = ps[weight]
        return cls(w.size, dtype=ps.dtype, weight=w, bias=ps[bias],
                   dweight=ps.grads[weight], dbias=ps.grads[bias], **kwargs)

    def train(self, mode: bool = True) -> Self:
        """Set training mode (``mode=True``) or evaluation mode; return self."""
        self.training = flag("mode", mode, ints=None, message=_BOOL)
        return self

    def eval(self) -> Self:
        """Set evaluation mode; return self."""
        return self.train(False)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches tracked."""
        if self.track_running_stats:
            self.running_mean.fill(0)  # type: ignore[union-attr]
            self.running_var.fill(1)  # type: ignore[union-attr]
        self.num_batches_tracked = 0

    def reset_parameters(self) -> None:
        """Reset the running statistics, and set weight to 1 and bias to 0."""
        self.reset_running_stats()
        if self.affine:
            self.weight.fill(1)  # type: ignore[union-attr]
            self.bias.fill(0)  # type: ignore[union-attr]

    def forward(self, x: Array, *, training: bool | None = None, out: Array | None = None) -> Array:
        """Normalize ``x`` (shape ``(N, num_features, ...)``); return ``y``.

        ``training`` overrides :attr:`training` for this call.  The state for
        :meth:`backward` is kept until the next forward pass.
        """
        training = self.training if training is None else flag("training", training, ints=None, message=_BOOL)
        use_batch = training or not self.track_running_stats
        update = training and self.track_running_stats
        momentum = self.momentum
        if update:
            if momentum is None:
                momentum = 1.0 / (self.num_batches_tracked + 1)
        if isinstance(x, np.ndarray) and x.ndim >= 2 and x.shape[1] != self.num_features:
            raise ValueError(f"x has {x.shape[1]} channels (axis 1) but the layer has {self.num_features} features")
        y, cache = batch_norm_forward(
            x, self.weight, self.bias,
            self.running_mean if update or not use_batch else None,
            self.running_var if update or not use_batch else None,
            training=use_batch, momentum=0.0 if momentum is None else momentum, eps=self.eps, out=out)
        if update:
            self.num_batches_tracked += 1
        self._cache = cache
        return y

    __call__ = forward

    def backward(self, dy: Array, *, dx_out: Array | None = None, accumulate: bool = False) -> Array:
        """Gradient with respect to the last forward input; return ``dx``.

        Writes ``dweight`` and ``dbias`` (adds to them with ``accumulate=True``).
        """
        if self._cache is None:
            raise RuntimeError("backward called before forward")
        dx, _, _ = batch_norm_backward(dy, self._cache, dx_out=dx_out, dweight_out=self.dweight,
                                       dbias_out=self.dbias, accumulate=accumulate)
        return dx

    def __repr__(self) -> str:
        return (f"BatchNorm({self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}, dtype={self.dtype.name})")
