"""Adagrad."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastopt.optim.optimizer import Optimizer

if TYPE_CHECKING:
    from fastopt._typing import Array, Params, Scalar
    from fastopt.optim._hyper import ParamGroup


class Adagrad(Optimizer):
    r"""Adagrad (Duchi, Hazan & Singer, 2011), as ``torch.optim.Adagrad``.

    At step :math:`t` (from 1), for each element:

    .. math::

        d &= \pm g + \lambda \theta \\
        s &\leftarrow s + d^2 \\
        \theta &\leftarrow \theta - \frac{\eta_t\, d}{\sqrt{s} + \epsilon},
        \qquad \eta_t = \frac{\eta}{1 + (t - 1)\,\text{lr\_decay}}

    with :math:`s` starting at ``initial_accumulator_value``; :math:`\epsilon`
    is added after the square root.

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of arrays, or list of parameter groups
    lr : float, default 1e-2
    lr_decay : float, default 0
    weight_decay : float, default 0
        L2 penalty :math:`\lambda` added to the gradient.
    initial_accumulator_value : float, default 0
    eps : float, default 1e-10
    maximize : bool, default False
    **options
        Storage and safety options, the same for every optimizer: ``skip_nonfinite``,
        ``state_dtype``, ``master_weights``, ``stochastic_rounding``, ``seed`` (see
        :class:`~fastopt.optim.Optimizer`).

    State per slot: ``step``, ``sum``.
    """

    rule = "adagrad"
    state_scalars = ("step",)

    def __init__(self, params: Params, lr: Scalar = 1e-2, lr_decay: Scalar = 0.0, weight_decay: Scalar = 0.0,
                 initial_accumulator_value: Scalar = 0.0, eps: Scalar = 1e-10, *, maximize: bool = False,
                 **options: Any) -> None:
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize), **options)

    def _initial_value(self, name: str, group: ParamGroup, param: Array) -> float:
        return group["initial_accumulator_value"]  # type: ignore[no-any-return]
