"""Adamax."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastopt.optim.optimizer import Optimizer

if TYPE_CHECKING:
    from fastopt._typing import Params, Scalar


class Adamax(Optimizer):
    r"""Adamax, Adam's infinity-norm variant (Kingma & Ba, 2015, sec. 7.1), as ``torch.optim.Adamax``.

    .. math::

        d &= \pm g + \lambda\theta \\
        m &\leftarrow \operatorname{lerp}(m, d, 1 - \beta_1) \\
        u &\leftarrow \max(\beta_2 u, |d| + \epsilon) \\
        \theta &\leftarrow \theta - \frac{\eta}{1 - \beta_1^t} \frac{m}{u}

    (torch adds :math:`\epsilon` inside the maximum, not to the denominator.)

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of arrays, or list of parameter groups
    lr : float, default 2e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    maximize : bool, default False
    **options
        Storage and safety options, the same for every optimizer: ``skip_nonfinite``,
        ``state_dtype``, ``master_weights``, ``stochastic_rounding``, ``seed`` (see
        :class:`~fastopt.optim.Optimizer`).

    State per slot: ``step``, ``exp_avg``, ``exp_inf``.
    """

    rule = "adamax"
    state_scalars = ("step",)

    def __init__(self, params: Params, lr: Scalar = 2e-3, betas: Sequence[Scalar] = (0.9, 0.999),
                 eps: Scalar = 1e-8, weight_decay: Scalar = 0.0, *, maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize),
                         **options)
