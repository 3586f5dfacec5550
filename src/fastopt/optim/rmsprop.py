"""RMSprop."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastopt.optim.optimizer import Optimizer

if TYPE_CHECKING:
    from fastopt._typing import Params, Scalar


class RMSprop(Optimizer):
    r"""RMSprop (Hinton's lecture notes; centered form of Graves, 2013), as ``torch.optim.RMSprop``.

    For each element:

    .. math::

        d &= \pm g + \lambda \theta \\
        v &\leftarrow \alpha v + (1 - \alpha) d^2 \\
        a &\leftarrow \operatorname{lerp}(a, d, 1 - \alpha), \quad
            \sigma = \sqrt{v - a^2} + \epsilon \qquad \text{(centered)} \\
        \sigma &= \sqrt{v} + \epsilon \qquad \text{(otherwise)} \\
        b &\leftarrow \mu b + d / \sigma, \quad \theta \leftarrow \theta - \eta b
            \qquad (\mu > 0) \\
        \theta &\leftarrow \theta - \eta d / \sigma \qquad (\mu = 0)

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of arrays, or list of parameter groups
    lr : float, default 1e-2
    alpha : float, default 0.99
        Smoothing constant of the squared-gradient average.
    eps : float, default 1e-8
        Added after the square root.
    weight_decay : float, default 0
    momentum : float, default 0
    centered : bool, default False
        Normalise by an estimate of the gradient's variance instead of its second moment.
    maximize : bool, default False
    **options
        Storage and safety options, the same for every optimizer: ``skip_nonfinite``,
        ``state_dtype``, ``master_weights``, ``stochastic_rounding``, ``seed`` (see
        :class:`~fastopt.optim.Optimizer`).

    State per slot: ``step``, ``square_avg``, ``momentum_buffer`` (with
    momentum), ``grad_avg`` (centered).
    """

    rule = "rmsprop"
    state_scalars = ("step",)

    def __init__(self, params: Params, lr: Scalar = 1e-2, alpha: Scalar = 0.99, eps: Scalar = 1e-8,
                 weight_decay: Scalar = 0.0, momentum: Scalar = 0.0, centered: bool = False, maximize: bool = False,
                 **options: Any) -> None:
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize), **options)
