"""Stochastic gradient descent with momentum and Nesterov momentum."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fastopt.optim.optimizer import Optimizer

if TYPE_CHECKING:
    from fastopt._typing import Params, Scalar
    from fastopt.optim._hyper import ParamGroup


class SGD(Optimizer):
    r"""Stochastic gradient descent, as ``torch.optim.SGD``.

    For each element, with gradient :math:`g`, parameter :math:`\theta` and
    momentum buffer :math:`b`:

    .. math::

        d &= \pm g + \lambda \theta \qquad (-g \text{ if maximize}) \\
        b &\leftarrow \mu b + (1 - \tau) d \qquad (b \leftarrow d \text{ at the first step}) \\
        d &\leftarrow d + \mu b \text{ (nesterov)} \quad\text{or}\quad d \leftarrow b \\
        \theta &\leftarrow \theta - \eta d

    computed in the parameter's precision in that order (the momentum lines
    only when :math:`\mu \ne 0`).  The textbook form
    :math:`v \leftarrow \mu v + \eta g,\ \theta \leftarrow \theta - v` is the
    same method with :math:`v = \eta b` for a constant learning rate; the
    torch form keeps the buffer independent of :math:`\eta`, so changing the
    learning rate does not rescale accumulated momentum.

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of arrays, or list of parameter groups
    lr : float, default 1e-3
        Learning rate :math:`\eta`.
    momentum : float, default 0
        Momentum factor :math:`\mu`.
    dampening : float, default 0
        Dampening :math:`\tau` of the gradient's contribution to the buffer.
    weight_decay : float, default 0
        L2 penalty :math:`\lambda` added to the gradient.
    nesterov : bool, default False
        Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
    maximize : bool, default False
        Ascend the objective instead of descending it.
    **options
        Storage and safety options, the same for every optimizer: ``skip_nonfinite``,
        ``state_dtype``, ``master_weights``, ``stochastic_rounding``, ``seed`` (see
        :class:`~fastopt.optim.Optimizer`).

    State per slot: ``momentum_buffer`` (only with momentum).

    Examples
    --------
    >>> import numpy as np, fastopt
    >>> w = np.ones(3)
    >>> opt = fastopt.SGD([w], lr=0.1)
    >>> opt.step([np.full(3, 2.0)])
    True
    >>> w
    array([0.8, 0.8, 0.8])
    """

    rule = "sgd"
    counts_steps = False  # torch's SGD keeps no step count (but stochastic_rounding does: its key takes the step)

    def __init__(self, params: Params, lr: Scalar = 1e-3, momentum: Scalar = 0.0, dampening: Scalar = 0.0,
                 weight_decay: Scalar = 0.0, nesterov: bool = False, *, maximize: bool = False,
                 **options: Any) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize), **options)

    def _check_group(self, group: ParamGroup) -> None:
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
