"""AdEMAMix."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastopt.optim.optimizer import Optimizer

if TYPE_CHECKING:
    from fastopt._typing import Params, Scalar


class AdEMAMix(Optimizer):
    r"""AdEMAMix, Adam with a second, slow momentum (Pagliardini et al., 2024), as its reference code.

    .. math::

        d &= \pm g \\
        m_1 &\leftarrow \beta_1 m_1 + (1 - \beta_1) d, \qquad
        m_2 \leftarrow \beta_3(t)\, m_2 + (1 - \beta_3(t))\, d, \qquad
        v \leftarrow \beta_2 v + (1 - \beta_2) d^2 \\
        \theta &\leftarrow \theta - \eta \Big( \frac{m_1 / (1 - \beta_1^t) + \alpha(t)\, m_2}
            {\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon} + \lambda\theta \Big)

    The slow average :math:`m_2` (half-life of thousands of steps) is not
    bias-corrected.  With warm-ups, :math:`\alpha(t) = \alpha\, t / T_\alpha`
    for :math:`t < T_\alpha`, and :math:`\beta_3(t)` moves from
    :math:`\beta_1` to :math:`\beta_3` linearly in half-life,
    :math:`h(\beta) = \ln 0.5 / \ln(\beta + 10^{-8}) - 1`, for
    :math:`t < T_{\beta_3}`, as the reference schedulers do; after them the
    constants.  Names and defaults are the reference implementation's
    (``apple/ml-ademamix``, PyTorch version); ``maximize`` is fastopt's.  As
    in the reference, the half-life formula needs :math:`\beta + 10^{-8} < 1`
    for :math:`\beta_1` and :math:`\beta_3` when ``beta3_warmup`` is set (at
    equality the reference divides by zero; fastopt's warm-up then holds
    :math:`\beta_3(t) = 1`, which freezes :math:`m_2`).

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of arrays, or list of parameter groups
    lr : float, default 1e-3
    betas : (float, float, float), default (0.9, 0.999, 0.9999)
        :math:`\beta_1` (fast momentum), :math:`\beta_2` (second moment), :math:`\beta_3` (slow momentum).
    alpha : float, default 2.0
        The slow momentum's weight.
    beta3_warmup, alpha_warmup : int or None, default None
        Warm-up lengths :math:`T_{\beta_3}`, :math:`T_\alpha` in steps (None or 0: none; stored as 0; a
        whole float such as ``100.0`` is taken as its integer).
    eps : float, default 1e-8
    weight_decay : float, default 0
        Added to the update, so scaled by the learning rate (decoupled, as in AdamW).
    maximize : bool, default False
    **options
        Storage and safety options, the same for every optimizer: ``skip_nonfinite``,
        ``state_dtype``, ``master_weights``, ``stochastic_rounding``, ``seed`` (see
        :class:`~fastopt.optim.Optimizer`).

    State per slot: ``step``, ``exp_avg_fast``, ``exp_avg_slow``, ``exp_avg_sq``.
    """

    rule = "ademamix"
    state_scalars = ("step",)

    def __init__(self, params: Params, lr: Scalar = 1e-3, betas: Sequence[Scalar] = (0.9, 0.999, 0.9999),
                 alpha: Scalar = 2.0, beta3_warmup: int | None = None, alpha_warmup: int | None = None,
                 eps: Scalar = 1e-8, weight_decay: Scalar = 0.0, *, maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, alpha=alpha, beta3_warmup=beta3_warmup,
                                      alpha_warmup=alpha_warmup, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize),
                         **options)
