"""NAdam."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastopt.optim.optimizer import Optimizer

if TYPE_CHECKING:
    from fastopt._typing import Params, Scalar


class NAdam(Optimizer):
    r"""Adam with Nesterov momentum (Dozat, 2016), as ``torch.optim.NAdam``.

    With the momentum schedule :math:`\mu_t = \beta_1 (1 - \tfrac12 0.96^{t\psi})`
    (:math:`\psi` = ``momentum_decay``) and :math:`P_t = \prod_{i \le t} \mu_i`:

    .. math::

        \theta &\leftarrow \theta (1 - \eta\lambda) \ \text{(decoupled)},
            \qquad d = \pm g + \lambda\theta \ \text{(otherwise)} \\
        m &\leftarrow \operatorname{lerp}(m, d, 1 - \beta_1), \qquad
        v \leftarrow \beta_2 v + (1 - \beta_2) d^2 \\
        \sigma &= \sqrt{v / (1 - \beta_2^t)} + \epsilon \\
        \theta &\leftarrow \theta - \eta \frac{1 - \mu_t}{1 - P_t} \frac{d}{\sigma}
            - \eta \frac{\mu_{t+1}}{1 - P_t \mu_{t+1}} \frac{m}{\sigma}

    (the two terms are added to :math:`\theta` one after the other, as in torch).

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of arrays, or list of parameter groups
    lr : float, default 2e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum_decay : float, default 4e-3
    decoupled_weight_decay : bool, default False
    maximize : bool, default False
    **options
        Storage and safety options, the same for every optimizer: ``skip_nonfinite``,
        ``state_dtype``, ``master_weights``, ``stochastic_rounding``, ``seed`` (see
        :class:`~fastopt.optim.Optimizer`).

    State per slot: ``step``, ``mu_product`` (a float), ``exp_avg``, ``exp_avg_sq``.
    """

    rule = "nadam"
    state_scalars = ("step", "mu_product")

    def __init__(self, params: Params, lr: Scalar = 2e-3, betas: Sequence[Scalar] = (0.9, 0.999),
                 eps: Scalar = 1e-8, weight_decay: Scalar = 0.0, momentum_decay: Scalar = 4e-3,
                 decoupled_weight_decay: bool = False, *, maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize), **options)
