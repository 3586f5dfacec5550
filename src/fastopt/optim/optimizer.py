"""Optimizer base class: bookkeeping in Python, math in the fused kernels."""
import math
from numbers import Real

from fastopt._threads import get_num_threads
from fastopt.optim._targets import ParamTargets


def check_hyper(name, value, low=0.0, high=math.inf, *, high_inclusive=True):
    """Return ``value`` as a float if ``low <= value <= high`` (or ``< high``), else raise.

    Raises ``TypeError`` for non-numbers and ``ValueError`` (torch.optim's
    "Invalid ..." wording) for NaN or out-of-range values.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    in_range = low <= value and (value <= high if high_inclusive else value < high)
    if not in_range or math.isnan(value):
        bound = "]" if high_inclusive else ")"
        raise ValueError(f"Invalid {name} value: {value} (expected a value in [{low}, {high}{bound})")
    return value


class Optimizer:
    """Base class of fastopt's optimizers.

    A subclass validates its hyperparameters in ``__init__`` and implements
    ``_update(param, grad, state, num_threads)``, which calls one fused kernel
    on a 1-D parameter view, its gradient and its state dict.  The base class
    resolves ``params`` (see :class:`fastopt.optim._targets.ParamTargets`),
    checks every step's gradients, and loops over the parameters: a ParamSet
    is a single parameter, so its step is a single kernel call.

    Non-finite values are not filtered: a NaN or infinite gradient propagates
    into the parameters and the optimizer state exactly as the update formula
    computes it (as in torch.optim).
    """

    def __init__(self, params):
        self._targets = ParamTargets(params)
        self.state = [{} for _ in self._targets.flats]

    @property
    def lr(self):
        """Learning rate used by the next step; may be changed between steps."""
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = check_hyper("learning rate", value)

    @property
    def paramset(self):
        """The ParamSet this optimizer updates, or None if it was built on arrays."""
        return self._targets.paramset

    def step(self, grads=None):
        """Update every parameter in place with one fused kernel call per array.

        Parameters
        ----------
        grads : optional
            Gradients in the structure of ``params``: for a ParamSet, None
            (use its gradient buffer ``ps.grad``) or a 1-D array shaped like
            ``ps.data``; for a list or tuple of arrays, a list or tuple of the
            same length; for a dict, a dict with the same keys.  Each gradient
            must match its parameter's shape and dtype, be C-contiguous and
            share no memory with any parameter.  A ``None`` entry skips that
            parameter (its state and step count are left unchanged).
        """
        flat_grads = self._targets.gradients(grads)
        num_threads = get_num_threads()
        for param, grad, state in zip(self._targets.flats, flat_grads, self.state):
            if grad is not None:
                self._update(param, grad, state, num_threads)

    def zero_grad(self):
        """Zero the ParamSet's gradient buffer (only for optimizers built on a ParamSet)."""
        if self.paramset is None:
            raise TypeError("zero_grad() needs a ParamSet; an optimizer built on arrays holds no gradients")
        self.paramset.zero_grad()

    def _update(self, param, grad, state, num_threads):
        raise NotImplementedError

    def _hyperparameters(self):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._hyperparameters().items())
        return f"{type(self).__name__}({args})"
