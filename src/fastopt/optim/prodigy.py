"""Prodigy (Mishchenko & Defazio, 2024), as the prodigyopt package has it."""
from __future__ import annotations

from collections.abc import Sequence
import math
from typing import TYPE_CHECKING, Any

from fastopt._kernels import tensorwise
from fastopt.optim._tensor_rules import TensorwiseOptimizer

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from fastopt._typing import Array, Params, Scalar
    from fastopt.optim._hyper import ParamGroup

# The hyperparameters prodigyopt reads from the first group only: here every group must agree on them.
_SHARED = ("betas", "beta3", "decouple", "use_bias_correction", "d0", "d_coef", "growth_rate", "maximize")
# The D estimate, the same in every slot's state (so that state_dict() and checkpoints carry it).
_ESTIMATE = ("d", "d_max", "d_numerator", "k")


class Prodigy(TensorwiseOptimizer):
    r"""Prodigy: Adam whose learning rate estimates its own scale :math:`D` (Mishchenko & Defazio, 2024).

    As the prodigyopt package (its ``Prodigy``, ``slice_p=1``).  One :math:`D`
    serves the whole optimizer: each step sums, over every slot of every
    group whose ``lr`` is not 0,

    .. math::

        e &= \pm g + \lambda\theta \ (\text{unless decoupled}), \qquad
        \hat\eta = D\,\eta\,b_k, \qquad
        N \leftarrow \beta_3 N + \tfrac{D}{D_0}\hat\eta \textstyle\sum e (\theta_0 - \theta) \\
        m &\leftarrow \beta_1 m + D (1 - \beta_1) e, \qquad
        v \leftarrow \beta_2 v + D^2 (1 - \beta_2) e^2, \qquad
        s \leftarrow \beta_3 s + \tfrac{D}{D_0}\hat\eta\, e \\
        \hat D &= c\, N / \textstyle\sum |s|, \qquad
        D_{max} \leftarrow \max(D_{max}, \hat D), \qquad
        D \leftarrow \min(D_{max}, \gamma D) \ (\text{first } D \leftarrow \max(D, \hat D) \text{ while } D = D_0)

    then updates every slot with the new :math:`D` in the denominator and
    the old one in :math:`\hat\eta`: :math:`\theta \leftarrow \theta (1 -
    \lambda\hat\eta)` (decoupled) and :math:`\theta \leftarrow \theta -
    \hat\eta\, m / (\sqrt v + D\epsilon)` (with :math:`\beta_1 = 0`:
    :math:`\theta - \hat\eta D e / (\sqrt v + D\epsilon)`).  :math:`b_k`
    is 1, or with ``use_bias_correction``
    :math:`\sqrt{1 - \beta_2^{k+1}} / (1 - \beta_1^{k+1})`; :math:`\beta_3`
    is :math:`\sqrt{\beta_2}` unless given.  Two passes over memory: the
    statistics with both sums (in float64, in a fixed order: the same bits
    for any thread count), then the update.

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of arrays, or list of parameter groups
        float32 or float64.
    lr : float, default 1.0
        Multiplies :math:`D`: leave it at 1 (with a schedule, its shape).
        Groups may set ``lr`` only to the largest group's value or to 0, as
        prodigyopt requires; a group at 0 stays out of the estimate but is
        still updated with the estimate's rate, as in prodigyopt.
    betas : (float, float), default (0.9, 0.999)
    beta3 : float or None, default None
    eps : float, default 1e-8
    weight_decay : float, default 0
    decouple : bool, default True
        AdamW-style decay; False adds it to the gradient.
    use_bias_correction : bool, default False
    safeguard_warmup : bool, default False
        Use :math:`D` instead of :math:`\hat\eta` in :math:`s`'s update.
    d0 : float, default 1e-6
    d_coef : float, default 1.0
    growth_rate : float, default inf
    maximize : bool, default False
    **options
        ``skip_nonfinite`` (see :class:`~fastopt.optim.Optimizer`).

    Notes
    -----
    ``betas``, ``beta3``, ``decouple``, ``use_bias_correction``, ``d0``,
    ``d_coef``, ``growth_rate`` and ``maximize`` belong to the whole
    optimizer (prodigyopt reads them from the first group): a step with
    groups that disagree on them is refused.  ``eps``, ``weight_decay`` and
    ``safeguard_warmup`` may differ between groups.  The gradient is read,
    never changed (prodigyopt adds a coupled decay into ``p.grad``).  A step
    whose sum of :math:`|s|` is 0 (zero gradients) updates the moments and
    nothing else, as in prodigyopt.

    State per slot: ``step``, ``exp_avg``, ``exp_avg_sq``, ``s`` and
    ``p0`` (the parameters at the slot's first step; ``exp_avg`` is kept,
    unused, with ``betas[0] = 0``), and the estimate shared by all slots:
    ``d``, ``d_max``, ``d_numerator`` and ``k`` (the count of steps taken),
    the same in every slot.  :attr:`d` reads it.
    """

    rule = "prodigy"
    state_scalars = ("step",) + _ESTIMATE

    def __init__(self, params: Params, lr: Scalar = 1.0, betas: Sequence[Scalar] = (0.9, 0.999),
                 beta3: Scalar | None = None, eps: Scalar = 1e-8, weight_decay: Scalar = 0.0, decouple: bool = True,
                 use_bias_correction: bool = False, safeguard_warmup: bool = False, d0: Scalar = 1e-6,
                 d_coef: Scalar = 1.0, growth_rate: Scalar = math.inf, *, maximize: bool = False,
                 **options: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, beta3=beta3, eps=eps, weight_decay=weight_decay,
                                      decouple=decouple, use_bias_correction=use_bias_correction,
                                      safeguard_warmup=safeguard_warmup, d0=d0, d_coef=d_coef,
                                      growth_rate=growth_rate, maximize=maximize), **options)

    @property
    def d(self) -> float:
        """The current estimate :math:`D` (``d0`` before the first step)."""
        return self._estimate()[0]

    def _estimate(self) -> tuple[float, ...]:
        """(d, d_max, d_numerator, k): from the first slot that has stepped, else the start."""
        for state in self._states:
            if "d" in state:
                return tuple(float(state.get(name, 0.0)) for name in _ESTIMATE)
        d0 = self._groups[0]["d0"]
        return d0, d0, 0.0, 0.0

    def _initial_value(self, name: str, group: ParamGroup, param: Array) -> float | Array:
        return param if name == "p0" else 0.0

    def _whole_slot(self, index: int) -> NDArray[np.intp]:
        """Slot ``index`` cut into pieces as one tensor (the sums are over the whole slot)."""
        param = self._layout.slots[index].param
        return self._memo("whole", index, lambda: tensorwise.pieces([(0, param.size)], param.itemsize))

    def _run_all(self, work: list[tuple[int, Array, int, list[Array], dict[str, Array]]],
                 num_threads: int) -> bool:
        first = self._groups[0]
        for g, group in enumerate(self._groups):
            differ = [name for name in _SHARED if group[name] != first[name]]
            if differ:
                raise ValueError(f"Prodigy's {differ} belong to the whole optimizer, but param_groups[{g}] sets "
                                 "them differently from param_groups[0]")
        lr = max(group["lr"] for group in self._groups)
        if any(group["lr"] not in (lr, 0.0) for group in self._groups):
            raise ValueError(f"Prodigy's groups may set lr only to the largest ({lr}) or to 0, got "
                             f"{[group['lr'] for group in self._groups]}")
        h = first.kernel_hyper()
        beta1, beta2 = h["beta1"], h["beta2"]
        beta3 = math.sqrt(beta2) if h["beta3"] is None else h["beta3"]
        d, d_max, numerator, k = self._estimate()
        bias = math.sqrt(1 - beta2 ** (k + 1)) / (1 - beta1 ** (k + 1)) if h["use_bias_correction"] else 1.0
        dlr, d0, sign = d * lr * bias, h["d0"], -1.0 if h["maximize"] else 1.0
        numerator *= beta3
        delta = denominator = 0.0
        runs = []
        for index, grad, _, arrays, _ in work:
            group = self._groups[self._slot_group[index]]
            l2 = 0.0 if h["decouple"] else group["weight_decay"]
            runs.append((index, grad, arrays, group, l2))
            if group["lr"] > 0:
                scale = (d / d0) * (d if group["safeguard_warmup"] else dlr)
                scalars = (sign, l2, beta1, d * (1 - beta1), beta2, d * d * (1 - beta2), beta3, scale) + (0.0,) * 4
                part = tensorwise.prodigy_pass(self._layout.slots[index].param, grad, tuple(arrays),
                                               self._whole_slot(index), scalars, beta1 > 0, False, num_threads)
                delta += (d / d0) * dlr * part[0]
                denominator += part[1]
        if denominator == 0:  # prodigyopt returns here: the moments moved, nothing else
            self._share(work, zip(_ESTIMATE, self._estimate()))
            return False
        numerator += delta
        if lr > 0:
            d_hat = h["d_coef"] * numerator / denominator
            if d == d0:
                d = max(d, d_hat)
            d_max = max(d_max, d_hat)
            d = min(d_max, d * h["growth_rate"])
        for index, grad, arrays, group, l2 in runs:
            neg_wd_dlr = -group["weight_decay"] * dlr if h["decouple"] else 0.0
            scalars = (sign, l2) + (0.0,) * 6 + (d * group["eps"], neg_wd_dlr, -dlr, -dlr * d)
            tensorwise.prodigy_pass(self._layout.slots[index].param, grad, tuple(arrays), self._whole_slot(index),
                                    scalars, beta1 > 0, True, num_threads)
        self._share(work, zip(_ESTIMATE, (d, d_max, numerator, k + 1)))
        return True

    def _share(self, work: list[tuple[int, Array, int, list[Array], dict[str, Array]]],
               estimate: Any) -> None:  # (name, value) pairs
        """Write the estimate into every slot's state that has one or is stepping now."""
        estimate, stepping = dict(estimate), {w[0] for w in work}
        for index, state in enumerate(self._states):
            if state or index in stepping:
                state.update(estimate)
