"""Adadelta."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastopt.optim.optimizer import Optimizer

if TYPE_CHECKING:
    from fastopt._typing import Params, Scalar


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler, 2012), as ``torch.optim.Adadelta``.

    .. math::

        d &= \pm g + \lambda\theta \\
        v &\leftarrow \rho v + (1 - \rho) d^2 \\
        \Delta &= \frac{\sqrt{a + \epsilon}}{\sqrt{v + \epsilon}}\, d \\
        a &\leftarrow \rho a + (1 - \rho) \Delta^2 \\
        \theta &\leftarrow \theta - \eta \Delta

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of arrays, or list of parameter groups
    lr : float, default 1.0
        Scale of :math:`\Delta` (the paper has none: 1.0).
    rho : float, default 0.9
    eps : float, default 1e-6
    weight_decay : float, default 0
    maximize : bool, default False
    **options
        Storage and safety options, the same for every optimizer: ``skip_nonfinite``,
        ``state_dtype``, ``master_weights``, ``stochastic_rounding``, ``seed`` (see
        :class:`~fastopt.optim.Optimizer`).

    State per slot: ``step``, ``square_avg``, ``acc_delta``.
    """

    rule = "adadelta"
    state_scalars = ("step",)

    def __init__(self, params: Params, lr: Scalar = 1.0, rho: Scalar = 0.9, eps: Scalar = 1e-6,
                 weight_decay: Scalar = 0.0, *, maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize),
                         **options)
