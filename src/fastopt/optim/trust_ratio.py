"""LAMB and LARS: layer-wise trust ratios for large batches (optax's ``lamb`` and ``lars``)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from fastopt._kernels import tensorwise
from fastopt.optim._tensor_rules import TensorwiseOptimizer

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from fastopt._typing import Array, Params, Scalar

_TENSORS = """    The trust ratio is per tensor: each named tensor of a ParamSet (or of a
    ``ps.select(...)`` group), each array of a list or dict -- the leaves of
    optax's parameter tree.  Norms are summed in float64 in a fixed order
    (the same bits for any thread count); a NaN or infinity in a tensor's
    parameters or update makes its ratio, and so its new values, NaN.  To
    leave some tensors out of the weight decay (optax's mask), put them in
    their own parameter group with ``weight_decay=0``; every tensor has its
    trust ratio (optax.lars's ``trust_ratio_mask`` has no counterpart)."""


class _TrustRatio(TensorwiseOptimizer):
    """What LAMB and LARS share: each slot's per-tensor ratios, kept from its last step."""

    def trust_ratios(self, index: int = 0) -> dict[str, float]:
        """``{tensor name: trust ratio}`` of slot ``index`` at its last step (empty before its first)."""
        ratios = self._memos.get(("ratios", index))
        if ratios is None:
            return {}
        return {t.name: float(r) for t, r in zip(self.tensors(index), ratios)}

    def _ratio_buffer(self, index: int) -> NDArray[np.float64]:
        return self._memo("ratios", index, lambda: np.ones(len(self.tensors(index))))


class LAMB(_TrustRatio):
    r"""LAMB, layer-wise adaptive moments (You et al., 2020), as ``optax.lamb``.

    Adam's update with decoupled weight decay, rescaled per tensor by the
    ratio of the parameters' norm to the update's:

    .. math::

        m &\leftarrow (1 - \beta_1) d + \beta_1 m, \qquad
        v \leftarrow (1 - \beta_2) d^2 + \beta_2 v, \qquad d = \pm g \\
        u &= \frac{m / (1 - \beta_1^t)}{\sqrt{v / (1 - \beta_2^t)} + \epsilon} + \lambda\theta \\
        \theta &\leftarrow \theta - \eta\, r\, u, \qquad
        r = \frac{\lVert\theta\rVert}{\lVert u\rVert} \text{ per tensor}
        \ (1 \text{ where either norm is } 0)

    Each step is two passes over memory: the moments and both norms, then
    the update.

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of arrays, or list of parameter groups
        float32 or float64.
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-6
        optax's default (added to the root of the second moment).
    weight_decay : float, default 0
        Added to the update before the trust ratio, as optax does.
    maximize : bool, default False
    **options
        ``skip_nonfinite`` (see :class:`~fastopt.optim.Optimizer`); the state
        stays in the parameters' dtype (``state_dtype`` None).

    Notes
    -----
{tensors}

    State per slot: ``step``, ``exp_avg``, ``exp_avg_sq``.
    """

    rule = "lamb"

    def __init__(self, params: Params, lr: Scalar = 1e-3, betas: Sequence[Scalar] = (0.9, 0.999),
                 eps: Scalar = 1e-6, weight_decay: Scalar = 0.0, *, maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize),
                         **options)

    def _run(self, index: int, param: Array, grad: Array, arrays: list[Array], h: dict[str, Any], step: int,
             num_threads: int) -> None:
        tensorwise.lamb_step(param, grad, *cast("tuple[Array, Array]", arrays), self._pieces(index),
                             self._ratio_buffer(index), h["lr"], h["beta1"], h["beta2"], h["eps"], h["weight_decay"],
                             h["maximize"], step, num_threads)


class LARS(_TrustRatio):
    r"""LARS, layer-wise adaptive rate scaling (You et al., 2017), as ``optax.lars``.

    .. math::

        d &= \pm g + \lambda\theta, \qquad
        u = -\eta\, r\, d, \qquad
        r = \frac{c \lVert\theta\rVert}{\lVert d\rVert + \epsilon} \text{ per tensor}
        \ (1 \text{ where either norm is } 0) \\
        b &\leftarrow u + \mu b, \qquad
        \theta \leftarrow \theta + b \ \ (\text{or } \theta + u + \mu b \text{ with nesterov})

    As in optax, the learning rate scales the update before the momentum
    (``b`` holds steps, not gradients) and the buffer starts at zero.  Each
    step is two passes over memory: the norms, then the update.

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of arrays, or list of parameter groups
        float32 or float64.
    lr : float, default 1.0
    momentum : float, default 0.9
    weight_decay : float, default 0
    trust_coefficient : float, default 1e-3
        ``c`` above.
    eps : float, default 0
    nesterov : bool, default False
    maximize : bool, default False
    **options
        ``skip_nonfinite`` (see :class:`~fastopt.optim.Optimizer`).

    Notes
    -----
{tensors}

    State per slot: ``step``, ``momentum_buffer``.
    """

    rule = "lars"

    def __init__(self, params: Params, lr: Scalar = 1.0, momentum: Scalar = 0.9, weight_decay: Scalar = 0.0,
                 trust_coefficient: Scalar = 1e-3, eps: Scalar = 0.0, *, nesterov: bool = False,
                 maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient, eps=eps, nesterov=nesterov,
                                      maximize=maximize), **options)

    def _run(self, index: int, param: Array, grad: Array, arrays: list[Array], h: dict[str, Any], step: int,
             num_threads: int) -> None:
        tensorwise.lars_step(param, grad, *cast("tuple[Array]", arrays), self._pieces(index),
                             self._ratio_buffer(index), h["lr"], h["momentum"], h["weight_decay"],
                             h["trust_coefficient"], h["eps"], h["nesterov"], h["maximize"], num_threads)


LAMB.__doc__ = LAMB.__doc__.replace("{tensors}", _TENSORS)  # type: ignore[union-attr]
LARS.__doc__ = LARS.__doc__.replace("{tensors}", _TENSORS)  # type: ignore[union-attr]
