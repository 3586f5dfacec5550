"""Adam."""
import numpy as np

from fastopt._update_rules import adam_step
from fastopt.optim.optimizer import Optimizer, check_hyper


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015) with torch.optim.Adam's formula, names and defaults.

    For each element at step :math:`t` (counted from 1):

    .. math::

        d &= \pm g + \lambda \theta \qquad (-g \text{ if maximize}) \\
        m &\leftarrow \operatorname{lerp}(m, d, 1 - \beta_1) \\
        v &\leftarrow \beta_2 v + (1 - \beta_2)\, d^2 \\
        \theta &\leftarrow \theta - \frac{\eta}{1 - \beta_1^t}\,
            \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon}

    ``lerp`` is torch.lerp's two-branch formula (``m + w (d - m)`` for
    ``w < 0.5``, else ``d - (d - m)(1 - w)``), which equals
    :math:`\beta_1 m + (1 - \beta_1) d`.  As in torch, :math:`\epsilon` is added
    after dividing :math:`\sqrt{v}` by :math:`\sqrt{1-\beta_2^t}`, and the bias
    corrections are computed in double precision, then everything else in the
    parameter's precision.  ``weight_decay`` is L2 regularisation added to the
    gradient (AdamW decouples it instead).

    Parameters
    ----------
    params : ParamSet, or list, tuple or dict of numpy.ndarray
        Writeable C-contiguous float32/float64 arrays, updated in place.
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float, default 1e-8
    weight_decay : float, default 0
    maximize : bool, default False

    Attributes
    ----------
    state : list of dict
        Per parameter (one entry for a ParamSet): ``step`` (int),
        ``exp_avg`` and ``exp_avg_sq`` (1-D arrays), created at the first step.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *, maximize=False):
        super().__init__(params)
        self.lr = lr
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise TypeError(f"betas must be a pair of floats, got {betas!r}") from None
        self.betas = (check_hyper("beta parameter at index 0", beta1, 0.0, 1.0, high_inclusive=False),
                      check_hyper("beta parameter at index 1", beta2, 0.0, 1.0, high_inclusive=False))
        self.eps = check_hyper("epsilon", eps)
        self.weight_decay = check_hyper("weight_decay", weight_decay)
        self.maximize = bool(maximize)

    def _hyperparameters(self):
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps,
                "weight_decay": self.weight_decay, "maximize": self.maximize}

    def _update(self, param, grad, state, num_threads):
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(param), exp_avg_sq=np.zeros_like(param))
        state["step"] += 1
        beta1, beta2 = self.betas
        adam_step(param, grad, state["exp_avg"], state["exp_avg_sq"], self.lr, beta1, beta2, self.eps,
                  self.weight_decay, self.maximize, state["step"], num_threads)
