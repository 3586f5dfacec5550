"""Lion."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastopt.optim.optimizer import Optimizer

if TYPE_CHECKING:
    from fastopt._typing import Params, Scalar


class Lion(Optimizer):
    r"""Lion, EvoLved Sign Momentum (Chen et al., 2023, Algorithm 2).

    torch.optim has no Lion; names and defaults follow the paper:

    .. math::

        \theta &\leftarrow \theta (1 - \eta\lambda) \\
        \theta &\leftarrow \theta - \eta\, \operatorname{sign}(\beta_1 m + (1 - \beta_1) d),
            \qquad d = \pm g \\
        m &\leftarrow \beta_2 m + (1 - \beta_2) d

    ``sign`` is 0 at 0 and NaN for NaN.  Lion's updates all have size
    :math:`\eta`, so it wants a learning rate 3-10x smaller than AdamW's and
    a weight decay 3-10x larger.

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of arrays, or list of parameter groups
    lr : float, default 1e-4
    betas : (float, float), default (0.9, 0.99)
    weight_decay : float, default 0
        Decoupled, as in AdamW.
    maximize : bool, default False
    **options
        Storage and safety options, the same for every optimizer: ``skip_nonfinite``,
        ``state_dtype``, ``master_weights``, ``stochastic_rounding``, ``seed`` (see
        :class:`~fastopt.optim.Optimizer`).

    State per slot: ``step``, ``exp_avg``.
    """

    rule = "lion"
    state_scalars = ("step",)

    def __init__(self, params: Params, lr: Scalar = 1e-4, betas: Sequence[Scalar] = (0.9, 0.99),
                 weight_decay: Scalar = 0.0, *, maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize),
                         **options)
