"""The user's objective, as the minimizers call it: counted, checked, and copied into owned buffers."""
import math

import numpy as np


class Objective:
    """``fun``, ``jac``, ``hess`` and ``hessp`` as given to :func:`fastopt.minimize`.

    Every value the user's code returns is checked (a scalar ``f``, a
    gradient of shape ``(n,)``, an ``(n, n)`` Hessian) and a wrong shape is
    a ``ValueError`` naming the function; non-finite values are returned
    as they are, and the minimizers decide (a line search backs off, a
    start point with them is a failed run).  Gradients are copied into the
    caller's buffer, so a user function that returns the same array each
    time (or keeps it) cannot change the minimizer's history.

    Parameters
    ----------
    fun, jac, hess, hessp, args
        As in :func:`scipy.optimize.minimize`: ``jac=True`` means ``fun``
        returns ``(f, g)``; ``jac=None`` estimates the gradient by forward
        differences (``n`` extra calls of ``fun`` per gradient, as SciPy).
    n : int
        Number of variables.
    """

    def __init__(self, fun, jac, hess, hessp, args, n):
        if not callable(fun):
            raise TypeError(f"fun must be callable, got {type(fun).__name__}")
        for name, value in (("hess", hess), ("hessp", hessp)):
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be callable or None, got {type(value).__name__}")
        if not (jac is None or jac is True or callable(jac)):
            raise TypeError("jac must be callable, True (fun returns (f, g)) or None (finite differences); "
                            f"got {jac!r}")
        self.fun, self.jac, self.hess_fun, self.hessp_fun = fun, jac, hess, hessp
        self.args = tuple(args) if isinstance(args, (tuple, list)) else (args,)
        self.n = n
        self.nfev = self.njev = self.nhev = 0

    def value_and_grad(self, x, grad_out):
        """f(x), with the gradient at ``x`` written into ``grad_out``."""
        if self.jac is True:
            self.nfev += 1
            self.njev += 1
            result = self.fun(x, *self.args)
            if not isinstance(result, tuple) or len(result) != 2:
                raise ValueError("with jac=True, fun must return a pair (f, gradient)")
            f, g = result
            f = self._scalar(f)
        else:
            f = self.value(x)
            if self.jac is None:
                self._forward_differences(x, f, grad_out)
                return f
            self.njev += 1
            g = self.jac(x, *self.args)
        self._store_gradient(g, grad_out)
        return f

    def value(self, x):
        self.nfev += 1
        return self._scalar(self.fun(x, *self.args))

    def hess(self, x):
        """The Hessian at ``x`` as a C-contiguous float64 ``(n, n)`` array the caller may overwrite."""
        self.nhev += 1
        h = self.hess_fun(x, *self.args)
        if hasattr(h, "toarray"):  # a sparse matrix
            h = h.toarray()
        h = np.array(h, dtype=np.float64, order="C")  # a copy: the caller factors it in place
        if h.shape != (self.n, self.n):
            raise ValueError(f"hess returned shape {h.shape}, expected {(self.n, self.n)}")
        return h

    def hessp(self, x, p):
        self.nhev += 1
        hp = np.asarray(self.hessp_fun(x, p, *self.args), dtype=np.float64)
        if hp.shape != (self.n,):
            raise ValueError(f"hessp returned shape {hp.shape}, expected {(self.n,)}")
        return hp

    def _scalar(self, f):
        try:
            value = np.asarray(f, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"fun must return a real number, got {type(f).__name__}") from None
        if value.size != 1:
            raise ValueError(f"fun must return a scalar, got an array of shape {value.shape}")
        return float(value.reshape(()))

    def _store_gradient(self, g, grad_out):
        g = np.asarray(g)
        if g.shape != (self.n,) and g.size == self.n == 1:
            g = g.reshape(1)
        if g.shape != (self.n,):
            raise ValueError(f"the gradient has shape {g.shape}, expected {(self.n,)} (one entry per variable)")
        if g.dtype.kind not in "fiu":
            raise ValueError(f"the gradient must be real numbers, got dtype {g.dtype}")
        np.copyto(grad_out, g)

    def _forward_differences(self, x, f, grad_out):
        """Forward differences with step sqrt(eps) * max(1, |x_i|), each step exactly representable."""
        root_eps = math.sqrt(np.finfo(np.float64).eps)
        probe = np.array(x, dtype=np.float64)
        for i in range(self.n):
            xi = probe[i]
            step = root_eps * max(1.0, abs(xi))
            probe[i] = xi + step
            step = probe[i] - xi
            grad_out[i] = (self.value(probe) - f) / step
            probe[i] = xi
