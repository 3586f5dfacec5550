"""Adam, AMSGrad and AdamW."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastopt.optim.optimizer import Optimizer

if TYPE_CHECKING:
    from fastopt._typing import Params, Scalar


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015) and AMSGrad (Reddi et al., 2018), as ``torch.optim.Adam``.

    At step :math:`t` (from 1), for each element:

    .. math::

        \theta &\leftarrow \theta (1 - \eta\lambda) \quad \text{(decoupled weight decay)},
            \qquad d = \pm g + \lambda\theta \quad \text{(otherwise)} \\
        m &\leftarrow \operatorname{lerp}(m, d, 1 - \beta_1) \\
        v &\leftarrow \beta_2 v + (1 - \beta_2)\, d^2 \\
        \hat v &= \max(\hat v, v) \quad \text{(amsgrad; used in place of } v \text{ below)} \\
        \theta &\leftarrow \theta - \frac{\eta}{1 - \beta_1^t}\,
            \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon}

    ``lerp`` is torch.lerp's two-branch formula (``m + w (d - m)`` for
    ``w < 0.5``, else ``d - (d - m)(1 - w)``), which equals
    :math:`\beta_1 m + (1 - \beta_1) d`.  As in torch, :math:`\epsilon` is added
    after scaling :math:`\sqrt{v}` by :math:`1/\sqrt{1-\beta_2^t}`, and the bias
    corrections are computed in double precision, everything else in the
    parameter's precision.  torch divides by :math:`\sqrt{1-\beta_2^t}`;
    fastopt multiplies by its reciprocal, which can differ in the last bit
    and spares a division per element (an in-cache step is bound by them).

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of arrays, or list of parameter groups
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float, default 1e-8
    weight_decay : float, default 0
        L2 penalty added to the gradient, or with ``decoupled_weight_decay``
        a decay of the parameters themselves (AdamW).
    amsgrad : bool, default False
    maximize : bool, default False
    decoupled_weight_decay : bool, default False
    **options
        Storage and safety options, the same for every optimizer: ``skip_nonfinite``,
        ``state_dtype``, ``master_weights``, ``stochastic_rounding``, ``seed`` (see
        :class:`~fastopt.optim.Optimizer`).

    State per slot: ``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad).
    """

    rule = "adam"
    state_scalars = ("step",)

    def __init__(self, params: Params, lr: Scalar = 1e-3, betas: Sequence[Scalar] = (0.9, 0.999),
                 eps: Scalar = 1e-8, weight_decay: Scalar = 0.0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, decoupled_weight_decay=decoupled_weight_decay),
                         **options)


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``.

    Each step first shrinks the parameters, :math:`\theta \leftarrow
    \theta(1 - \eta\lambda)`, then applies the Adam update to the raw
    gradient; see :class:`Adam` for the rest of the formula.  The default
    ``weight_decay`` is 1e-2.

    Parameters
    ----------
    params, lr, betas, eps, amsgrad, maximize, **options
        As for :class:`Adam`.
    weight_decay : float, default 1e-2
        The decoupled decay rate :math:`\lambda`: each step multiplies the
        parameters by ``1 - lr * weight_decay`` before the Adam update.
    """

    def __init__(self, params: Params, lr: Scalar = 1e-3, betas: Sequence[Scalar] = (0.9, 0.999),
                 eps: Scalar = 1e-8, weight_decay: Scalar = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 **options: Any) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True, **options)
