"""RAdam."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastopt.optim.optimizer import Optimizer

if TYPE_CHECKING:
    from fastopt._typing import Params, Scalar


class RAdam(Optimizer):
    r"""Rectified Adam (Liu et al., 2020), as ``torch.optim.RAdam``.

    With :math:`\rho_\infty = 2/(1-\beta_2) - 1` and
    :math:`\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)`:

    .. math::

        \theta &\leftarrow \theta (1 - \eta\lambda) \ \text{(decoupled)},
            \qquad d = \pm g + \lambda\theta \ \text{(otherwise)} \\
        m &\leftarrow \operatorname{lerp}(m, d, 1 - \beta_1), \qquad
        v \leftarrow \beta_2 v + (1 - \beta_2) d^2 \\
        u &= \frac{m}{1 - \beta_1^t}\,\eta \\
        u &\leftarrow u\,\frac{\sqrt{1 - \beta_2^t}}{\sqrt{v} + \epsilon}\, r_t
            \quad \text{if } \rho_t > 5, \qquad
            r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}} \\
        \theta &\leftarrow \theta - u

    Early steps (:math:`\rho_t \le 5`) are plain momentum SGD steps.

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of arrays, or list of parameter groups
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    decoupled_weight_decay : bool, default False
    maximize : bool, default False
    **options
        Storage and safety options, the same for every optimizer: ``skip_nonfinite``,
        ``state_dtype``, ``master_weights``, ``stochastic_rounding``, ``seed`` (see
        :class:`~fastopt.optim.Optimizer`).

    State per slot: ``step``, ``exp_avg``, ``exp_avg_sq``.
    """

    rule = "radam"
    state_scalars = ("step",)

    def __init__(self, params: Params, lr: Scalar = 1e-3, betas: Sequence[Scalar] = (0.9, 0.999),
                 eps: Scalar = 1e-8, weight_decay: Scalar = 0.0, decoupled_weight_decay: bool = False, *,
                 maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, maximize=maximize),
                         **options)
