"""ADOPT."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastopt.optim.optimizer import Optimizer

if TYPE_CHECKING:
    from fastopt._typing import Params, Scalar


class ADOPT(Optimizer):
    r"""ADOPT, Adam that converges with any :math:`\beta_2` (Taniguchi et al., 2024), as its reference code.

    The gradient is normalized by the second-moment estimate of the steps
    *before* it, and only then averaged:

    .. math::

        d &= \pm g + \lambda\theta \ \text{(unless decoupled)} \\
        t = 1:&\quad v \leftarrow v + d^2 \quad (\theta, m \text{ unchanged}) \\
        t > 1:&\quad n = \operatorname{clamp}\Big(\frac{d}{\max(\sqrt{v}, \epsilon)},
            \pm (t - 1)^{1/4}\Big), \qquad m \leftarrow \operatorname{lerp}(m, n, 1 - \beta_1) \\
        &\quad \theta \leftarrow \theta - \eta\lambda\theta \ \text{(decoupled)}, \qquad
            \theta \leftarrow \theta - \eta m, \qquad v \leftarrow \beta_2 v + (1 - \beta_2) d^2

    The first step only initializes :math:`v`.  The names, defaults and
    operations are the reference implementation's (``iShohei220/adopt``),
    except for the clipping schedule: the reference takes a function
    ``clip_lambda`` of its step count (which starts at 0 on the moment-only
    first step), by default ``step ** 0.25``, as its fifth positional
    argument; here ``clip=True`` (keyword-only) is that default schedule and
    ``clip=False`` is ``clip_lambda=None``, the unclipped ADOPT of the
    paper's first version, and ``weight_decay`` and ``decouple`` come fifth
    and sixth.

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of arrays, or list of parameter groups
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.9999)
    eps : float, default 1e-6
        The floor of :math:`\sqrt{v}` (not added to it).
    weight_decay : float, default 0
    decouple : bool, default False
        Decoupled weight decay (AdamW's), instead of adding :math:`\lambda\theta` to the gradient.
    clip : bool, default True
        Clamp the normalized gradient to :math:`\pm (t - 1)^{1/4}`.
    maximize : bool, default False
    **options
        Storage and safety options, the same for every optimizer: ``skip_nonfinite``,
        ``state_dtype``, ``master_weights``, ``stochastic_rounding``, ``seed`` (see
        :class:`~fastopt.optim.Optimizer`).

    State per slot: ``step``, ``exp_avg``, ``exp_avg_sq``.
    """

    rule = "adopt"
    state_scalars = ("step",)

    def __init__(self, params: Params, lr: Scalar = 1e-3, betas: Sequence[Scalar] = (0.9, 0.9999),
                 eps: Scalar = 1e-6, weight_decay: Scalar = 0.0, decouple: bool = False, *, clip: bool = True,
                 maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, decouple=decouple,
                                      clip=clip, maximize=maximize),
                         **options)
