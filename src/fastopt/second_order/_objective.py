"""The user's objective, as the minimizers call it: counted, checked, and copied into owned buffers."""
import math
import numbers

import numpy as np

from fastopt._validation import as_float


def _describe(value):
    """A short name for what a user function returned, for error messages."""
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _refuse_kind(who, verb, what, value, kind):
    """The TypeError for a result whose values are not real numbers (NumPy dtype kind ``kind``)."""
    head = f"{who} {verb}"
    if kind == "c":
        hint = ": return the real part (np.real) if that is what you mean" if verb == "returned" else ""
        return TypeError(f"{head} complex values ({_describe(value)}) where {what} must be real; fastopt "
                         f"does not drop an imaginary part, even a zero one{hint}")
    if kind == "b":
        return TypeError(f"{head} booleans ({_describe(value)}) where {what} must be real numbers")
    if kind in "US":
        return TypeError(f"{head} strings ({_describe(value)}) where {what} must be real numbers; "
                         "strings are not read as numbers")
    return TypeError(f"{head} {_describe(value)} where {what} must be real numbers")


def _kind_of(value):
    """The NumPy dtype kind a single Python object stands for, as far as the error messages care."""
    if isinstance(value, (bool, np.bool_)):
        return "b"
    if isinstance(value, (complex, np.complexfloating)):
        return "c"
    if isinstance(value, (str, bytes)):
        return "U"
    return "O"


def _is_real_scalar(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def real_array(who, what, value, verb="returned"):
    """``value`` as a float64 ndarray when it holds real numbers only, else a TypeError naming ``who``.

    Real means a NumPy float, signed or unsigned integer dtype, or an object
    array whose every element is a real number (Python or NumPy ints and
    floats, fractions).  Refused: None, booleans, strings, complex values
    (whatever their imaginary part) and anything else.  The result may be
    ``value`` itself (no copy when it is already float64).
    """
    if value is None:
        raise TypeError(f"{who} {verb} None where {what} must be real numbers")
    if isinstance(value, (str, bytes)):
        raise _refuse_kind(who, verb, what, value, "U")
    try:
        a = np.asarray(value)
    except (TypeError, ValueError) as error:  # ragged nested sequences, objects NumPy cannot take
        raise TypeError(f"{who} {verb} {_describe(value)} where {what} must be real numbers ({error})") from None
    kind = a.dtype.kind
    if kind == "O":  # e.g. a list mixing Python numbers with other objects, or dtype=object
        for v in a.flat:
            if not _is_real_scalar(v):
                raise _refuse_kind(who, verb, what, v, _kind_of(v))
        return np.array([as_float(v) for v in a.flat], dtype=np.float64).reshape(a.shape)
    if kind not in "fiu":
        raise _refuse_kind(who, verb, what, value, kind)
    return a if a.dtype == np.float64 else a.astype(np.float64)


def real_number(who, value):
    """``value`` as a Python float when it is one real number, else a TypeError (or a ValueError for a size != 1).

    A real number, or an array (or sequence) holding exactly one, as SciPy
    takes it: ``np.array([f])`` of shape ``(1,)`` is fine.
    """
    if type(value) is float:  # the common case first
        return value
    if _is_real_scalar(value):
        return as_float(value)  # an int beyond float's range is as non-finite as an infinity
    a = real_array(who, "the value of f", value)
    if a.size != 1:
        raise ValueError(f"{who} must return a scalar, got an array of shape {a.shape}")
    return as_float(a.reshape(())[()])


class Objective:
    """``fun``, ``jac``, ``hess`` and ``hessp`` as given to :func:`fastopt.minimize`.

    Every value the user's code returns is checked: ``f`` must be one real
    number, a gradient an array of shape ``(n,)``, a Hessian ``(n, n)`` (a
    size-1 result is taken for ``n = 1``).  None, booleans, strings and
    complex values are a ``TypeError`` naming the function and what it
    returned; a wrong shape is a ``ValueError``.  Non-finite values are
    returned as they are, and the minimizers decide (a line search backs off,
    a start point with them is a failed run).  Gradients are copied into the
    caller's buffer, so a user function that returns the same array each
    time (or keeps it) cannot change the minimizer's history.

    Every array given to the user's functions is read-only, so a function
    writing into its argument raises NumPy's "assignment destination is
    read-only" ValueError instead of corrupting the run; the points given to
    ``fun`` (and ``jac``) are new at every call, including the points of the
    finite-difference gradient, so a function may keep them.

    Parameters
    ----------
    fun, jac, hess, hessp, args
        As in :func:`scipy.optimize.minimize`: ``jac=True`` means ``fun``
        returns ``(f, g)``; ``jac=None`` estimates the gradient by forward
        differences (``n`` extra calls of ``fun`` per gradient, as SciPy).
        ``args`` is a tuple of extra arguments; anything else is one extra
        argument (SciPy's rule: a list is passed as one argument).
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
        self.args = args if isinstance(args, tuple) else (args,)
        self.n = n
        self.nfev = self.njev = self.nhev = 0

    def value_and_grad(self, x, grad_out):
        """f(x), with the gradient at ``x`` written into ``grad_out``.  ``x`` must be read-only."""
        if self.jac is True:
            self.nfev += 1
            self.njev += 1
            result = self.fun(x, *self.args)
            if not isinstance(result, (tuple, list)):
                raise TypeError(f"with jac=True, fun must return a pair (f, gradient); it returned "
                                f"{_describe(result)}")
            if len(result) != 2:
                raise ValueError(f"with jac=True, fun must return a pair (f, gradient); it returned a "
                                 f"{type(result).__name__} of length {len(result)}")
            f, g = result
            f = real_number("fun (its f, with jac=True)", f)
            self._store_gradient("fun (its gradient, with jac=True)", g, grad_out)
            return f
        f = self.value(x)
        if self.jac is None:
            self._forward_differences(x, f, grad_out)
            return f
        self.njev += 1
        self._store_gradient("jac", self.jac(x, *self.args), grad_out)
        return f

    def value(self, x):
        self.nfev += 1
        return real_number("fun", self.fun(x, *self.args))

    def hess(self, x):
        """The Hessian at ``x`` as a C-contiguous float64 ``(n, n)`` array the caller may overwrite."""
        self.nhev += 1
        h = self.hess_fun(x, *self.args)
        if hasattr(h, "toarray"):  # a sparse matrix
            h = h.toarray()
        h = real_array("hess", "the Hessian", h)
        if h.shape != (self.n, self.n) and h.size == self.n == 1:
            h = h.reshape(1, 1)
        if h.shape != (self.n, self.n):
            raise ValueError(f"hess returned shape {h.shape}, expected {(self.n, self.n)}")
        return np.array(h, dtype=np.float64, order="C")  # a copy: the caller factors it in place

    def hessp(self, x, p):
        """The Hessian at ``x`` times ``p``; ``p`` is made read-only before the user's function sees it."""
        self.nhev += 1
        p.flags.writeable = False
        hp = real_array("hessp", "the product H p", self.hessp_fun(x, p, *self.args))
        if hp.shape != (self.n,) and hp.size == self.n == 1:
            hp = hp.reshape(1)
        if hp.shape != (self.n,):
            raise ValueError(f"hessp returned shape {hp.shape}, expected {(self.n,)}")
        return hp

    def _store_gradient(self, who, g, grad_out):
        g = real_array(who, "the gradient", g)
        if g.shape != (self.n,) and g.size == self.n == 1:
            g = g.reshape(1)
        if g.shape != (self.n,):
            raise ValueError(f"{who} returned a gradient of shape {g.shape}, expected {(self.n,)} "
                             "(one entry per variable)")
        np.copyto(grad_out, g)

    def _forward_differences(self, x, f, grad_out):
        """Forward differences with step sqrt(eps) * max(1, |x_i|), each step exactly representable.

        Each probe is a new read-only copy of ``x``, as every point ``fun`` is given.
        """
        root_eps = math.sqrt(np.finfo(np.float64).eps)
        for i in range(self.n):
            probe = np.array(x, dtype=np.float64)
            xi = probe[i]
            probe[i] = xi + root_eps * max(1.0, abs(xi))
            step = probe[i] - xi
            probe.flags.writeable = False
            grad_out[i] = (self.value(probe) - f) / step
