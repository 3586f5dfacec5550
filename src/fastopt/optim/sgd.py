"""Stochastic gradient descent."""
from fastopt._update_rules import sgd_step
from fastopt.optim.optimizer import Optimizer, check_hyper


class SGD(Optimizer):
    r"""Plain stochastic gradient descent, as ``torch.optim.SGD`` with ``momentum=0``.

    For each element, with gradient :math:`g` and parameter :math:`\theta`:

    .. math::

        d &= \begin{cases} -g & \text{maximize} \\ g & \text{otherwise} \end{cases}
             + \lambda \theta \\
        \theta &\leftarrow \theta - \eta\, d

    computed in the parameter's precision as ``theta + (-lr) * d``.

    Parameters
    ----------
    params : ParamSet, or list, tuple or dict of numpy.ndarray
        Writeable C-contiguous float32/float64 arrays, updated in place.
    lr : float, default 1e-3
        Learning rate :math:`\eta` (torch.optim's default).
    weight_decay : float, default 0
        L2 penalty :math:`\lambda` added to the gradient.
    maximize : bool, default False
        Ascend the objective instead of descending it.

    Examples
    --------
    >>> import numpy as np, fastopt
    >>> w = np.ones(3)
    >>> opt = fastopt.SGD([w], lr=0.1)
    >>> opt.step([np.full(3, 2.0)])
    >>> w
    array([0.8, 0.8, 0.8])
    """

    def __init__(self, params, lr=1e-3, weight_decay=0.0, *, maximize=False):
        super().__init__(params)
        self.lr = lr
        self.weight_decay = check_hyper("weight_decay", weight_decay)
        self.maximize = bool(maximize)

    def _hyperparameters(self):
        return {"lr": self.lr, "weight_decay": self.weight_decay, "maximize": self.maximize}

    def _update(self, param, grad, state, num_threads):
        sgd_step(param, grad, self.lr, self.weight_decay, self.maximize, num_threads)
