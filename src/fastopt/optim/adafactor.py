"""Adafactor (Shazeer & Stern, 2018), as torch.optim.Adafactor."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from fastopt._kernels import tensorwise
from fastopt.optim._tensor_rules import TensorwiseOptimizer

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from fastopt._typing import Array, Params, Scalar
    from fastopt.optim.optimizer import StateLayout, TensorStateSlices


class Adafactor(TensorwiseOptimizer):
    r"""Adafactor: second moments factored into row and column statistics, as ``torch.optim.Adafactor``.

    For step :math:`t`, with :math:`d = \pm g`, :math:`w = t^{\text{beta2\_decay}}`,
    :math:`\rho = \min(\eta, 1/\sqrt t)` and
    :math:`\alpha = \max(\epsilon_2, \lVert\theta\rVert / \sqrt n)\,\rho` per tensor of :math:`n` elements:

    .. math::

        \text{tensors of 2 or more dimensions:}\quad
        R &\leftarrow \operatorname{lerp}(R, \operatorname{mean}_c d^2, w), \quad
        C \leftarrow \operatorname{lerp}(C, \operatorname{mean}_r d^2, w), \quad
        v = \frac{R C}{\max(\operatorname{mean}_r R, \epsilon_1)} \\
        \text{other tensors:}\quad
        v &\leftarrow \operatorname{lerp}(v, d^2, w) \\
        u &= \frac{d}{\sqrt{\max(v, \epsilon_1^2)}}, \qquad
        \theta \leftarrow \theta (1 - \eta\lambda)
            - \frac{\alpha}{\max(1, \lVert u\rVert / (\sqrt n\, d_{clip}))}\, u

    Matrices are factored over their last two dimensions (rows :math:`r`,
    columns :math:`c`; leading dimensions are a batch of matrices), so the
    state of an ``m x n`` matrix is ``m + n`` numbers instead of ``m n``.
    Each step reads a tensor's parameters and gradient three times: the
    parameter norm and the row and column sums, the update's norm, then
    the update.  Sums are in float64, in a fixed order (the same bits for
    any thread count).

    Parameters
    ----------
    params : ParamSet, ParamSelection, list/tuple/dict of arrays, or list of parameter groups
        float32 or float64.  The shape of each tensor matters: a ParamSet's
        named tensors have theirs, and so do arrays in a list or dict.
    lr : float, default 1e-2
        Caps the relative step size :math:`\rho` (torch's meaning: not a
        plain learning rate).
    beta2_decay : float, default -0.8
        :math:`w = t^{\text{beta2\_decay}}`, <= 0.
    eps : (float or None, float), default (None, 1e-3)
        :math:`(\epsilon_1, \epsilon_2)`; :math:`\epsilon_1` None is the
        parameters' machine epsilon (``numpy.finfo(dtype).eps``).
    d : float, default 1.0
        The update clipping threshold :math:`d_{clip}`, >= 1.
    weight_decay : float, default 0
        Decoupled, as in AdamW.
    maximize : bool, default False
    **options
        ``skip_nonfinite`` (see :class:`~fastopt.optim.Optimizer`).

    Notes
    -----
    State per slot: ``step``; ``row_var`` and ``col_var`` (the factored
    statistics of its tensors of 2 or more dimensions, one after another)
    and ``variance`` (those of its other tensors).
    """

    rule = "adafactor"

    def __init__(self, params: Params, lr: Scalar = 1e-2, beta2_decay: Scalar = -0.8,
                 eps: Sequence[Scalar | None] = (None, 1e-3), d: Scalar = 1.0, weight_decay: Scalar = 0.0, *,
                 maximize: bool = False, **options: Any) -> None:
        super().__init__(params, dict(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d, weight_decay=weight_decay,
                                      maximize=maximize), **options)

    def _descriptor(self, index: int) -> tuple[NDArray[np.intp], tuple[int, ...]]:
        """``(offset, batch, rows, cols, row_offset, col_offset, var_offset)`` per tensor, and the state lengths."""
        return self._memo("descriptor", index, lambda: self._describe(index))

    def _describe(self, index: int) -> tuple[NDArray[np.intp], tuple[int, ...]]:
        rows: list[tuple[int, ...]] = []
        lengths = dict.fromkeys(self.state_arrays, 0)
        for t, where in zip(self.tensors(index), self.tensor_state_slices(index)):
            for name, (piece, _) in where.items():
                lengths[name] += piece.stop - piece.start
            if "variance" in where:
                rows.append((t.start, 1, 0, t.stop - t.start, 0, 0, where["variance"][0].start))
            elif t.stop > t.start:  # an empty matrix keeps its (unused) statistics, but takes no pass
                m, n = t.shape[-2], t.shape[-1]
                rows.append((t.start, (t.stop - t.start) // (m * n), m, n, where["row_var"][0].start,
                             where["col_var"][0].start, 0))
        return np.array(rows, dtype=np.intp).reshape(-1, 7), tuple(lengths.values())

    def tensor_state_slices(self, index: int) -> TensorStateSlices:
        out: list[dict[str, tuple[slice, tuple[int, ...]]]] = []
        offsets = [0, 0, 0]
        for t in self.tensors(index):
            if len(t.shape) > 1:  # torch's shapes: row_var (..., m, 1), col_var (..., 1, n)
                batch, m, n = int(np.prod(t.shape[:-2], dtype=np.int64)), t.shape[-2], t.shape[-1]
                out.append({"row_var": (slice(offsets[0], offsets[0] + batch * m), t.shape[:-1] + (1,)),
                            "col_var": (slice(offsets[1], offsets[1] + batch * n), t.shape[:-2] + (1, n))})
                offsets[0] += batch * m
                offsets[1] += batch * n
            else:
                out.append({"variance": (slice(offsets[2], offsets[2] + t.stop - t.start), t.shape)})
                offsets[2] += t.stop - t.start
        return tuple(out)

    def state_layout(self, index: int) -> StateLayout:
        dtype = self._layout.slots[index].param.dtype
        lengths = self._descriptor(index)[1]
        return {name: ((n,), dtype) for name, n in zip(self.state_arrays, lengths)}

    def _run(self, index: int, param: Array, grad: Array, arrays: list[Array], h: dict[str, Any], step: int,
             num_threads: int) -> None:
        eps1, eps2 = h["eps"]
        if eps1 is None:
            eps1 = float(np.finfo(param.dtype).eps)
        tensorwise.adafactor_step(param, grad, *cast("tuple[Array, Array, Array]", arrays),
                                  self._descriptor(index)[0], h["lr"], h["beta2_decay"], eps1, eps2, h["d"],
                                  h["weight_decay"], h["maximize"], step, num_threads)
