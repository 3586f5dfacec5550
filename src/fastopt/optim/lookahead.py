"""Lookahead (Zhang et al., 2019) around any fastopt optimizer."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fastopt._kernels import lerp
from fastopt._threads import get_num_threads
from fastopt._validation import integer, unit_interval
from fastopt.optim._wrapper import OptimizerWrapper

if TYPE_CHECKING:
    from fastopt._typing import Grads, Scalar
    from fastopt.optim.optimizer import Optimizer


class Lookahead(OptimizerWrapper):
    r"""Lookahead (Zhang et al., 2019): ``k`` steps forward with the wrapped optimizer, then one step back.

    The wrapped optimizer moves the parameters (the "fast weights"); every
    ``k`` of its steps on a slot, the "slow weights" :math:`\phi`, a copy
    kept per slot, move towards them, and the parameters restart from there:

    .. math::

        \phi \leftarrow \operatorname{lerp}(\phi, \theta, \alpha), \qquad \theta \leftarrow \phi

    in one fused pass (``torch.lerp``'s formula; with ``master_weights`` the
    float32 master copy is the fast weights, and the bfloat16 parameters are
    its rounding).  The slow weights start as the parameters before the
    slot's first step.

    Parameters
    ----------
    optimizer : fastopt.optim.Optimizer
        Any fastopt optimizer; its state, parameter groups and learning
        rates stay its own (schedules set them through this wrapper too).
    k : int, default 5
        Steps of the wrapped optimizer between synchronizations, >= 1.
    alpha : float, default 0.5
        How far the slow weights move towards the fast ones, in [0, 1].

    Notes
    -----
    Per slot this keeps ``lookahead_slow`` (the slow weights, in the
    parameters' dtype, float32 for bfloat16 ones) and ``lookahead_count``
    (steps since the last synchronization), which :meth:`state_dict` and
    checkpoints carry with the wrapped optimizer's state (``k`` and
    ``alpha`` are settings, as the optimizer's class is: build the wrapper
    with the same ones to resume).  A step the wrapped optimizer skips
    (``skip_nonfinite``) is not counted.  Parameters written from outside
    (a parameters-only ``fastopt.load``, ``fit(restore_best=True)``) are
    pulled back towards the old slow weights at the next synchronization:
    call :meth:`reset` to restart the slow weights from them.  A
    schedule-free optimizer is refused (its ``train()``/``eval()`` moves
    would not reach the slow weights).

    Examples
    --------
    >>> import numpy as np, fastopt
    >>> ps = fastopt.ParamSet({"w": np.zeros(2)})
    >>> opt = fastopt.Lookahead(fastopt.SGD(ps, lr=0.1), k=2, alpha=0.5)
    >>> for _ in range(2):
    ...     ps.grad[:] = -1.0
    ...     _ = opt.step()
    >>> ps.data  # two SGD steps reach 0.2; the sync goes half-way back from 0
    array([0.1, 0.1])
    """

    wrapper_arrays = ("lookahead_slow",)
    wrapper_scalars = ("lookahead_count",)

    def __init__(self, optimizer: Optimizer, k: int = 5, alpha: Scalar = 0.5) -> None:
        super().__init__(optimizer)
        self.k: int = integer("k", k, 1, expected="a positive integer")
        self.alpha: float = unit_interval("alpha", alpha)

    def step(self, grads: Grads = None) -> bool:
        """One step of the wrapped optimizer, and a synchronization for each slot at its ``k``-th step.

        Takes ``grads`` as :meth:`fastopt.optim.Optimizer.step` does and
        returns what it returns.
        """
        inner = self.optimizer
        with inner._exclusive():
            self._follow_groups()
            slot_grads = inner._layout.gradients(grads)
            stepping = [i for i, g in enumerate(slot_grads) if g is not None]
            for i in stepping:
                if not self._extra[i]:
                    slow = np.array(inner._full_precision_params(i), dtype=self._array_dtype(i))
                    self._extra[i] = {"lookahead_slow": slow,
                                      "lookahead_count": 0}
            if not inner._step_slots(slot_grads):
                return False
            threads = get_num_threads()
            for i in stepping:
                extra = self._extra[i]
                extra["lookahead_count"] += 1
                if extra["lookahead_count"] >= self.k:
                    lerp(extra["lookahead_slow"], inner._full_precision_params(i), self.alpha, True, threads, True)
                    inner._round_master(i, threads)
                    extra["lookahead_count"] = 0
            return True

    def reset(self) -> None:
        """Forget the slow weights and counts: each slot restarts them from its parameters at its next step."""
        with self.optimizer._exclusive():
            self._extra = [{} for _ in self.optimizer.state]

    def _settings(self) -> str:
        return f"k={self.k}, alpha={self.alpha}"
