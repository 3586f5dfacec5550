"""Gradient accumulation around any fastopt optimizer (optax's ``MultiSteps``)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fastopt._kernels import assign, bf16_round, lerp
from fastopt._threads import get_num_threads
from fastopt._validation import integer
from fastopt.optim._wrapper import OptimizerWrapper

if TYPE_CHECKING:
    from fastopt._typing import Array, Grads
    from fastopt.optim.optimizer import Optimizer


class Accumulate(OptimizerWrapper):
    r"""Take one step of the wrapped optimizer every ``every`` calls, on the mean of their gradients.

    A batch too large for memory, split in ``every`` micro-batches, trains
    as the whole batch would: each :meth:`step` folds its gradient into a
    running mean per slot,

    .. math::

        \bar g \leftarrow \operatorname{lerp}\big(\bar g, g, \tfrac{1}{n + 1}\big)

    after :math:`n` earlier micro-batches (the first one copies), so the
    ``1/every`` of the average is already in :math:`\bar g` when the
    ``every``-th call hands it to the wrapped rule as its gradient: the
    update stays the rule's one fused pass, with no pass to scale the
    gradients and nothing for the model to change (it may keep overwriting
    its gradients; ``fit`` works as it is).  Each micro-batch costs one pass
    over its gradient.

    Parameters
    ----------
    optimizer : fastopt.optim.Optimizer
        Any fastopt optimizer; schedules set its learning rates through this
        wrapper (stepped per epoch, or once every ``every`` batches, they
        change the rate between updates only).
    every : int
        Micro-batches per update, >= 1.

    Returns of :meth:`step`: True when the wrapped optimizer updated, False
    while accumulating (or when it skipped a non-finite mean under
    ``skip_nonfinite``; the mean is dropped then).  When the wrapped step
    raises instead (a refused state), the mean is kept, and the next call
    folds its gradient in and tries again.

    Notes
    -----
    Per slot this keeps ``accumulate_grad`` (the running mean, in the
    gradients' dtype, float32 for bfloat16 ones, rounded to bfloat16 once
    per update) and ``accumulate_count`` (micro-batches in it), in
    :meth:`state_dict` and checkpoints.  Each slot counts its own
    micro-batches: one given no gradient (``None``) waits for its
    ``every``-th.  The mean of float32 gradients rounds differently from
    their sum divided by ``every`` (about an ulp).  Gradient clipping
    before :meth:`step` (``fit(clip_grad_norm=...)``) clips each
    micro-batch's gradient, not their mean.

    Examples
    --------
    >>> import numpy as np, fastopt
    >>> ps = fastopt.ParamSet({"w": np.zeros(2)})
    >>> opt = fastopt.Accumulate(fastopt.SGD(ps, lr=1.0), every=2)
    >>> ps.grad[:] = 1.0
    >>> opt.step()  # accumulated
    False
    >>> ps.grad[:] = 3.0
    >>> opt.step()  # one SGD step on the mean, 2.0
    True
    >>> ps.data
    array([-2., -2.])
    """

    wrapper_arrays = ("accumulate_grad",)
    wrapper_scalars = ("accumulate_count",)

    def __init__(self, optimizer: Optimizer, every: int) -> None:
        super().__init__(optimizer)
        self.every: int = integer("every", every, 1, expected="a positive integer")
        self._rounded: dict[int, Array] = {}  # slot -> bfloat16 buffer the float32 mean of bfloat16 gradients is rounded into

    def step(self, grads: Grads = None) -> bool:
        """Fold ``grads`` (as :meth:`fastopt.optim.Optimizer.step` takes them) into the means; update on the
        ``every``-th.  Returns True when the wrapped optimizer updated."""
        inner = self.optimizer
        with inner._exclusive():
            self._follow_groups()
            slot_grads = inner._layout.gradients(grads)
            threads = get_num_threads()
            ready: list[Array | None] = [None] * len(slot_grads)
            for i, g in enumerate(slot_grads):
                if g is None:
                    continue
                extra = self._extra[i]
                if not extra:
                    extra = self._extra[i] = {"accumulate_grad": np.empty(g.size, self._array_dtype(i)),
                                              "accumulate_count": 0}
                mean, n = extra["accumulate_grad"], extra["accumulate_count"]
                if n == 0:
                    assign(mean, g, threads)  # (bfloat16 widens exactly)
                else:
                    lerp(mean, g, 1.0 / (n + 1), True, threads)
                extra["accumulate_count"] = n + 1
                if n + 1 >= self.every:
                    ready[i] = self._as_gradient(i, mean, g, threads)
            if all(g is None for g in ready):
                return False
            stepped = inner._step_slots(ready)  # (if it raises, the means stay, to be used by the next call)
            for i, g in enumerate(ready):
                if g is not None:
                    self._extra[i]["accumulate_count"] = 0  # used, or dropped with a skipped step
            return stepped

    def _as_gradient(self, index: int, mean: Array, grad: Array, threads: int) -> Array:
        """The mean as the wrapped rule's gradient: itself, or for bfloat16 gradients its rounding to nearest."""
        if mean.dtype == grad.dtype:
            return mean
        rounded = self._rounded.get(index)
        if rounded is None or rounded.shape != grad.shape:
            rounded = self._rounded[index] = np.empty_like(grad)
        bf16_round(mean, rounded, None, threads)
        return rounded

    def _settings(self) -> str:
        return f"every={self.every}"
