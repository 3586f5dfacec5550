"""The user's objective, as the minimizers call it: counted, checked, and copied into owned buffers."""
from __future__ import annotations

import math
import numbers
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.optimize import HessianUpdateStrategy

from fastopt._validation import as_float
from fastopt.second_order import _differences

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastopt._typing import NDArray
    from fastopt.second_order._common import Box, Fun, Hess, Hessp, Jac, Point


def _describe(value: object) -> str:
    """A short name for what a user function returned, for error messages."""
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _refuse_kind(who: str, verb: str, what: str, value: object, kind: str) -> TypeError:
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


def _kind_of(value: object) -> str:
    """The NumPy dtype kind a single Python object stands for, as far as the error messages care."""
    if isinstance(value, (bool, np.bool_)):
        return "b"
    if isinstance(value, (complex, np.complexfloating)):
        return "c"
    if isinstance(value, (str, bytes)):
        return "U"
    return "O"


def _is_real_scalar(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def real_array(who: str, what: str, value: object, verb: str = "returned") -> NDArray[np.float64]:
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


def real_number(who: str, value: object) -> float:
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
        raise ValueError(f"The user-provided objective function must return a scalar value: {who} returned an "
                         f"array of shape {a.shape}")
    return as_float(a.reshape(())[()])


class _ValueAt:
    """``fun(point, *args)`` checked as f (complex for the complex step); a class so that a process pool
    given as ``workers`` can pickle it."""

    def __init__(self, fun: Fun, args: tuple[Any, ...], complex_step: bool) -> None:
        self.fun, self.args, self.complex_step = fun, args, complex_step

    def __call__(self, point: NDArray[Any]) -> float | complex:
        result: Any = self.fun(point, *self.args)
        return complex(np.asarray(result).reshape(())) if self.complex_step else real_number("fun", result)


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

    # The user's functions as given: each is one of several kinds (see minimize), told apart at every call.
    fun: Any
    jac: Any
    hess_fun: Any
    hessp_fun: Any
    evaluate: Callable[..., Any]

    def __init__(self, fun: Fun, jac: Jac, hess: Hess, hessp: Hessp | None, args: object, n: int, *,
                 eps: float | None = None, finite_diff_rel_step: Any = None,
                 workers: Callable[..., Any] | int | None = None, box: Box | None = None) -> None:
        if not callable(fun):
            raise TypeError(f"fun must be callable, got {type(fun).__name__}")
        if hessp is not None and not callable(hessp):
            raise TypeError(f"hessp must be callable or None, got {type(hessp).__name__}")
        if not (hess is None or callable(hess) or hess in _differences.METHODS
                or isinstance(hess, HessianUpdateStrategy)):  # type: ignore[misc]  # (a Protocol in scipy-stubs)
            raise TypeError("hess must be callable, one of '2-point', '3-point', 'cs', a "
                            f"scipy.optimize.HessianUpdateStrategy (BFGS(), SR1()) or None; got {hess!r}")
        if jac is False:  # SciPy reads a false jac as "not given"
            jac = None
        if not (jac is None or jac is True or callable(jac) or jac in _differences.METHODS):
            raise TypeError("jac must be callable, True (fun returns (f, g)), '2-point', '3-point', 'cs' or None "
                            f"(finite differences); got {jac!r}")
        if workers is None or (isinstance(workers, int) and not isinstance(workers, bool) and workers == 1):
            self.evaluate = map
        elif callable(workers):
            self.evaluate = workers
        else:
            raise ValueError(f"workers must be a map-like callable (e.g. multiprocessing.Pool(k).map) or None; "
                             f"got {workers!r}")
        self.fun, self.jac, self.hess_fun, self.hessp_fun = fun, jac, hess, hessp
        self.args = args if isinstance(args, tuple) else (args,)
        self.n = n
        self.eps, self.rel_step, self.box = eps, finite_diff_rel_step, box
        self.nfev = self.njev = self.nhev = 0
        self.seconds = 0.0  # in value_and_grad
        if isinstance(hess, HessianUpdateStrategy):  # type: ignore[misc]  # (a Protocol in scipy-stubs)
            hess.initialize(n, "hess")

    def value_and_grad(self, x: Point, grad_out: Point) -> float:
        """f(x), with the gradient at ``x`` written into ``grad_out``.  ``x`` must be read-only.

        The time spent here is added to ``seconds``.
        """
        start = time.perf_counter()
        try:
            return self._value_and_grad(x, grad_out)
        finally:
            self.seconds += time.perf_counter() - start

    def _value_and_grad(self, x: Point, grad_out: Point) -> float:
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
        if self.jac is None or isinstance(self.jac, str):
            self._finite_differences(x, f, grad_out)
            return f
        self.njev += 1
        self._store_gradient("jac", self.jac(x, *self.args), grad_out)
        return f

    def value(self, x: Point) -> float:
        self.nfev += 1
        return real_number("fun", self.fun(x, *self.args))

    def hess(self, x: Point) -> NDArray[np.float64]:
        """The Hessian at ``x`` as a C-contiguous float64 ``(n, n)`` array the caller may overwrite."""
        self.nhev += 1
        if not callable(self.hess_fun):
            if isinstance(self.hess_fun, str):
                return _differences.jacobian(self._gradient_at, x, self.hess_fun, rel_step=self.rel_step)
            return np.array(self.hess_fun.get_matrix(), dtype=np.float64, order="C")
        h = self.hess_fun(x, *self.args)
        if hasattr(h, "toarray"):  # a sparse matrix
            h = h.toarray()
        h = real_array("hess", "the Hessian", h)
        if h.shape != (self.n, self.n) and h.size == self.n == 1:
            h = h.reshape(1, 1)
        if h.shape != (self.n, self.n):
            raise ValueError(f"hess returned shape {h.shape}, expected {(self.n, self.n)}")
        return np.array(h, dtype=np.float64, order="C")  # a copy: the caller factors it in place

    def hessp(self, x: Point, p: Point) -> NDArray[np.float64]:
        """The Hessian at ``x`` times ``p``; ``p`` is made read-only before the user's function sees it."""
        self.nhev += 1
        p.flags.writeable = False
        hp = real_array("hessp", "the product H p", self.hessp_fun(x, p, *self.args))
        if hp.shape != (self.n,) and hp.size == self.n == 1:
            hp = hp.reshape(1)
        if hp.shape != (self.n,):
            raise ValueError(f"hessp returned shape {hp.shape}, expected {(self.n,)}")
        return hp

    def _store_gradient(self, who: str, g: object, grad_out: Point) -> None:
        g = real_array(who, "the gradient", g)
        if g.shape != (self.n,) and g.size == self.n == 1:
            g = g.reshape(1)
        if g.shape != (self.n,):
            raise ValueError(f"{who} returned a gradient of shape {g.shape}, expected {(self.n,)} "
                             "(one entry per variable)")
        np.copyto(grad_out, g)

    def _finite_differences(self, x: Point, f: float, grad_out: Point) -> None:
        """The gradient by ``jac``'s scheme (``None``: 2-point with the method's absolute step ``eps``).

        Each probe is a new read-only copy of ``x``, as every point ``fun`` is
        given; evaluations go through ``workers`` when one is given.  Counts
        as one gradient (``njev``) and one evaluation per probe (``nfev``).
        """
        method = "2-point" if self.jac is None else self.jac
        abs_step = self.eps if self.jac is None else None
        value_of = _ValueAt(self.fun, self.args, method == "cs")
        before = self.nfev
        g = _differences.gradient(value_of, x, f, method, rel_step=self.rel_step, abs_step=abs_step, box=self.box,
                                  evaluate=self.evaluate)
        free = self.n if self.box is None else int(np.count_nonzero(self.box[0] != self.box[1]))
        self.nfev = before + free * (2 if method == "3-point" else 1)
        self.njev += 1
        np.copyto(grad_out, g)

    def _call_jac(self, x: Point, g: Point) -> None:
        self.njev += 1
        self._store_gradient("jac", self.jac(x, *self.args), g)

    def hessian_product(self, x: Point, g: Point) -> Callable[[Point], NDArray[Any]]:
        """A function ``p -> H(x) p`` for Newton-CG, from whatever ``hess``/``hessp`` the user gave.

        ``hessp``: the user's product; ``hess`` callable: the matrix, formed once
        per point; ``'2-point'``/``'3-point'``/``'cs'``: the matrix by finite
        differences of the gradient, once per point; a HessianUpdateStrategy:
        its current approximation; neither: SciPy's default, a forward
        difference of the gradient along ``p``, (g(x + e p) - g(x)) / e with
        e = sqrt(machine epsilon).
        """
        if self.hessp_fun is not None:
            return lambda p: self.hessp(x, p)
        if callable(self.hess_fun):
            h = self.hess(x)
            return lambda p: h @ p
        if isinstance(self.hess_fun, HessianUpdateStrategy):  # type: ignore[misc]  # (a Protocol in scipy-stubs)
            return lambda p: self.hess_fun.dot(p)
        if isinstance(self.hess_fun, str):
            self.nhev += 1
            h = _differences.jacobian(self._gradient_at, x, self.hess_fun, rel_step=self.rel_step)
            return lambda p: h @ p
        e = math.sqrt(np.finfo(np.float64).eps)

        def product(p: Point) -> NDArray[Any]:
            point = np.array(x + e * p)
            point.flags.writeable = False
            return (self._gradient_at(point) - g) / e
        return product

    def _gradient_at(self, point: NDArray[Any]) -> NDArray[Any]:
        """The gradient at a probe point of a Hessian estimate (complex for the complex step)."""
        if np.iscomplexobj(point):
            if not callable(self.jac) or self.jac is True:
                raise ValueError("hess='cs' needs jac as a function that takes complex points")
            self.njev += 1
            return np.asarray(self.jac(point, *self.args), dtype=np.complex128).reshape(self.n)
        g = np.empty(self.n)
        if callable(self.jac) and self.jac is not True:
            self._call_jac(point, g)
        else:
            self.value_and_grad(point, g)
        return g

    def observe_step(self, s: Point, y: Point) -> None:
        """Feed an accepted step and the change of gradient to a HessianUpdateStrategy (else nothing)."""
        if isinstance(self.hess_fun, HessianUpdateStrategy):  # type: ignore[misc]  # (a Protocol in scipy-stubs)
            self.hess_fun.update(s, y)
