"""Muon (Jordan et al., 2024): orthogonalized momentum for matrices, AdamW for the other tensors."""
from __future__ import annotations

from collections.abc import Sequence
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from fastopt._kernels import BoundStep, lerp
from fastopt.optim._tensor_rules import TensorwiseOptimizer

if TYPE_CHECKING:
    from typing import Literal

    from fastopt._typing import Array, Params, Scalar
    from fastopt._typing import ParamGroup as GroupSpec
    from fastopt.optim._hyper import ParamGroup
    from fastopt.optim._params import Tensor
    from fastopt.optim.optimizer import StateLayout, TensorStateSlices

    # A slot's plan: ([(tensor, is_muon, offset in its state arrays), ...], (momentum length, AdamW length), use_muon)
    _Plan = tuple[list[tuple[Tensor, bool, int]], tuple[int, ...], bool]


def orthogonalize(update: Array, coefficients: tuple[float, float, float], steps: int, eps: float) -> Array:
    """The Newton-Schulz iteration of torch.optim.Muon on a 2-D array, in its dtype (a new array).

    ``X = update / max(|update|, eps)`` (transposed if it has more rows
    than columns), then ``steps`` times ``A = X X^T``, ``X = a X + (b A +
    c A A) X``: the matrix products are NumPy's (BLAS).
    """
    a, b, c = coefficients
    tall = update.shape[0] > update.shape[1]
    x = update.T if tall else update
    x = x / max(float(np.linalg.norm(x)), eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.T if tall else x


def lr_ratio(adjust_lr_fn: str | None, rows: int, cols: int) -> float:
    """torch.optim.Muon's learning-rate factor for a matrix of ``rows x cols``."""
    if adjust_lr_fn in (None, "original"):
        return math.sqrt(max(1.0, rows / cols))
    return 0.2 * math.sqrt(max(rows, cols))


class Muon(TensorwiseOptimizer):
    r"""Muon: momentum orthogonalized by a Newton–Schulz iteration, for the matrices; AdamW for the rest.

    For each matrix, as ``torch.optim.Muon``:

    .. math::

        B &\leftarrow \operatorname{lerp}(B, g, 1 - \mu), \qquad
        U = \operatorname{lerp}(g, B, \mu) \ (\text{nesterov}) \text{ or } B \\
        O &= \operatorname{NS}^{(a,b,c)}_k(U / \max(\lVert U\rVert_F, \epsilon)), \qquad
        \theta \leftarrow \theta (1 - \eta\lambda) - \eta\, r\, O

    with :math:`r = \sqrt{\max(1, A/B)}` for an :math:`A \times B` matrix
    (``adjust_lr_fn`` None or "original") or :math:`0.2\sqrt{\max(A, B)}`
    ("match_rms_adamw").  A tensor of more than two dimensions is viewed as
    a matrix of ``shape[0]`` rows by the rest (fastopt's choice:
    torch.optim.Muon refuses such tensors; the reference flattens 4-D
    convolution filters this way but orthogonalizes 3-D tensors as batches
    of matrices).  The iteration's products are NumPy's (BLAS) in
    the parameters' precision; torch computes them in bfloat16, so the two
    agree to bfloat16 rounding (and exactly where torch's precision is
    raised, as the tests do).  Every other tensor -- and every tensor of a
    group with ``use_muon=False``: embeddings and output layers, which the
    reference keeps off Muon -- takes an AdamW step (``torch.optim.AdamW``'s
    update, fastopt's fused kernel) with ``adamw_lr``, ``adamw_betas``,
    ``adamw_eps`` and ``adamw_weight_decay``, as the reference
    implementation's ``MuonWithAuxAdam`` does with its two kinds of group.

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of arrays, or list of parameter groups
        float32 or float64.  The shape of each tensor decides its update.
    lr : float, default 1e-3
    weight_decay : float, default 0.1
    momentum : float, default 0.95
    nesterov : bool, default True
    ns_coefficients : (float, float, float), default (3.4445, -4.775, 2.0315)
    eps : float, default 1e-7
    ns_steps : int, default 5
    adjust_lr_fn : {None, "original", "match_rms_adamw"}, default None
    use_muon : bool, default True
        False: every tensor of the group takes the AdamW step.  Fixed once
        the group is made (it decides the layout of the state).
    adamw_lr : float, default 3e-4
    adamw_betas : (float, float), default (0.9, 0.95)
    adamw_eps : float, default 1e-10
    adamw_weight_decay : float, default 0
        The AdamW step's settings (the reference's for its auxiliary Adam).
        A learning-rate schedule scales ``adamw_lr`` by the factor it
        applies to ``lr`` (``lr / initial_lr``), so one schedule drives both
        (a schedule that starts from an ``initial_lr`` of 0 leaves
        ``adamw_lr`` as it is).
    **options
        ``skip_nonfinite`` (see :class:`~fastopt.optim.Optimizer`).

    Notes
    -----
    State per slot: ``step``; ``momentum_buffer`` (its Muon tensors, one
    after another) and ``exp_avg``, ``exp_avg_sq`` (its AdamW tensors).
    The Newton–Schulz iteration makes a few temporaries the size of each
    matrix; the AdamW step is one fused pass per tensor.
    """

    rule = "muon"

    def __init__(self, params: Params, lr: Scalar = 1e-3, weight_decay: Scalar = 0.1, momentum: Scalar = 0.95,
                 nesterov: bool = True, ns_coefficients: Sequence[Scalar] = (3.4445, -4.775, 2.0315),
                 eps: Scalar = 1e-7, ns_steps: int = 5,
                 adjust_lr_fn: Literal["original", "match_rms_adamw"] | None = None, *, use_muon: bool = True,
                 adamw_lr: Scalar = 3e-4, adamw_betas: Sequence[Scalar] = (0.9, 0.95), adamw_eps: Scalar = 1e-10,
                 adamw_weight_decay: Scalar = 0.0, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                                      ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps,
                                      adjust_lr_fn=adjust_lr_fn, use_muon=use_muon, adamw_lr=adamw_lr,
                                      adamw_betas=adamw_betas, adamw_eps=adamw_eps,
                                      adamw_weight_decay=adamw_weight_decay), **options)
        self._plan_slots()

    def add_param_group(self, param_group: GroupSpec) -> None:
        super().add_param_group(param_group)
        self._plan_slots()

    def _plan_slots(self) -> None:
        for index in range(len(self._layout.slots)):
            self._plan(index)

    def _plan(self, index: int) -> _Plan:
        """``([(tensor, is_muon, offset in its state arrays), ...], (momentum length, AdamW length), use_muon)`` of
        slot ``index``, made when its group is: ``use_muon`` decides the layout of its state, so cannot change."""
        use_muon = self._groups[self._slot_group[index]]["use_muon"]
        plan = self._memo("plan", index, lambda: self._layout_for(index, use_muon))
        self._refuse_another_use_muon(index, plan, use_muon)
        return plan

    def _check_group(self, group: ParamGroup) -> None:
        """A loaded group's ``use_muon`` must be the one its slots' state was laid out for."""
        for index in group.get("params", ()):
            plan = self._memos.get(("plan", index))
            if plan is not None:
                self._refuse_another_use_muon(index, plan, group["use_muon"])

    def _refuse_another_use_muon(self, index: int, plan: _Plan, use_muon: bool) -> None:
        if plan[2] != use_muon:
            raise ValueError(f"use_muon of {self._layout.slots[index].name}'s group is fixed at {plan[2]} when the "
                             f"group is made (it decides the layout of the state); got {use_muon}")

    def _layout_for(self, index: int, use_muon: bool) -> _Plan:
        rows: list[tuple[Tensor, bool, int]] = []
        lengths = [0, 0]
        for t in self.tensors(index):
            muon = use_muon and len(t.shape) >= 2
            rows.append((t, muon, lengths[0 if muon else 1]))
            lengths[0 if muon else 1] += t.stop - t.start
        return rows, tuple(lengths), use_muon

    def tensor_state_slices(self, index: int) -> TensorStateSlices:
        rows, _, _ = self._plan(index)
        return tuple({name: (slice(offset, offset + t.stop - t.start), t.shape)
                      for name in (("momentum_buffer",) if muon else ("exp_avg", "exp_avg_sq"))}
                     for t, muon, offset in rows)

    def state_layout(self, index: int) -> StateLayout:
        dtype = self._layout.slots[index].param.dtype
        _, (muon, adamw), _ = self._plan(index)
        return {"momentum_buffer": ((muon,), dtype), "exp_avg": ((adamw,), dtype), "exp_avg_sq": ((adamw,), dtype)}

    def _run(self, index: int, param: Array, grad: Array, arrays: list[Array], h: dict[str, Any], step: int,
             num_threads: int) -> None:
        buffer, exp_avg, exp_avg_sq = arrays
        rows = self._plan(index)[0]
        initial = self._groups[self._slot_group[index]].get("initial_lr")  # set by a learning-rate schedule
        scale = h["lr"] / initial if initial else 1.0
        adamw = {"lr": h["adamw_lr"] * scale, "beta1": h["adamw_betas"][0], "beta2": h["adamw_betas"][1],
                 "eps": h["adamw_eps"], "weight_decay": h["adamw_weight_decay"], "amsgrad": False,
                 "maximize": False, "decoupled_weight_decay": True}
        for t, muon, offset in rows:
            n = t.stop - t.start
            if n == 0:
                continue
            p, g = param[t.start:t.stop], grad[t.start:t.stop]
            if not muon:
                BoundStep("adam", p, g, (exp_avg[offset:offset + n], exp_avg_sq[offset:offset + n], None),
                          adamw).run(step, None, False, num_threads)
                continue
            b = buffer[offset:offset + n]
            lerp(b, g, 1.0 - h["momentum"], num_threads=num_threads)
            update = b
            if h["nesterov"]:
                update = g.copy()
                lerp(update, b, h["momentum"], num_threads=num_threads)
            shape = (t.shape[0], n // t.shape[0])
            ortho = orthogonalize(update.reshape(shape), h["ns_coefficients"], h["ns_steps"], h["eps"])
            matrix = p.reshape(shape)
            decay = 1.0 - h["lr"] * h["weight_decay"]
            if decay != 1:
                matrix *= matrix.dtype.type(decay)
            matrix += matrix.dtype.type(-h["lr"] * lr_ratio(h["adjust_lr_fn"], *shape)) * ortho
