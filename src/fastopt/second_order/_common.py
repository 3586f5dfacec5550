"""What every minimizer shares: options, stopping tests, the callback, and the result."""
from __future__ import annotations

import inspect
import math
import sys
import warnings
from collections.abc import Mapping

from numbers import Real
from typing import TYPE_CHECKING, Any, Union, cast

import numpy as np
from scipy.optimize import OptimizeResult, OptimizeWarning

from fastopt._validation import as_float, positive_option

from fastopt.second_order._linesearch import LineSearchResult, strong_wolfe

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Concatenate, Literal, Protocol, TypeAlias

    from scipy.optimize import Bounds, HessianUpdateStrategy
    from scipy.optimize import OptimizeResult as PlainResult
    # scipy-stubs' flavour of OptimizeResult for ``minimize``: the same class at runtime, with x, fun, jac,
    # success, status, message, nit, nfev, njev, nhev and hess_inv typed.
    from scipy.optimize._minimize import OptimizeResult as _MinimizeResult

    from fastopt._typing import ArrayLike, NDArray, Scalar
    from fastopt.second_order._objective import Objective

    #: What ``fastopt.minimize`` returns.
    MinimizeResult: TypeAlias = _MinimizeResult
    #: The point given to the user's functions: a read-only float64 array of shape (n,).
    Point: TypeAlias = NDArray[np.float64]
    #: What ``fun`` may return as f: a real number, or an array holding exactly one.
    Value: TypeAlias = Union[Scalar, np.integer[Any], NDArray[Any]]
    #: ``fun(x, *args) -> f``, or ``-> (f, gradient)`` with ``jac=True``.  (Each function type is also spelt
    #: without ``*args``: mypy infers a lambda's type from a plain Callable, not from a Concatenate.)
    FunResult: TypeAlias = Union[Value, tuple[Value, ArrayLike]]
    Fun: TypeAlias = Union[Callable[[Point], FunResult], Callable[Concatenate[Point, ...], FunResult]]
    #: A finite-difference scheme, as SciPy names them.
    FiniteDifferences: TypeAlias = Literal["2-point", "3-point", "cs"]

    class Dense(Protocol):
        """A sparse matrix (or anything with ``toarray``) a ``hess`` may return."""

        def toarray(self) -> Any: ...

    #: ``jac(x, *args) -> gradient``, True (``fun`` returns it), a scheme, or False/None (forward differences).
    Jac: TypeAlias = Union[Callable[[Point], ArrayLike], Callable[Concatenate[Point, ...], ArrayLike], bool,
                           FiniteDifferences, None]
    #: ``hess(x, *args) -> (n, n) array`` (dense or sparse), a scheme, or a quasi-Newton update (BFGS(), SR1()).
    Hess: TypeAlias = Union[Callable[[Point], Union[ArrayLike, Dense]],
                            Callable[Concatenate[Point, ...], Union[ArrayLike, Dense]], FiniteDifferences,
                            HessianUpdateStrategy, None]
    #: ``hessp(x, p, *args) -> H p``.
    Hessp: TypeAlias = Union[Callable[[Point, Point], ArrayLike], Callable[Concatenate[Point, Point, ...], ArrayLike]]
    #: A ``scipy.optimize.Bounds`` or one ``(low, high)`` pair per variable (None: no bound).
    BoundsLike: TypeAlias = Union["Bounds[Any, Any]", Sequence[Sequence[Union[Scalar, None]]], NDArray[Any]]
    #: The bounds as the minimizers take them: (lower, upper) float64 arrays of shape (n,).
    Box: TypeAlias = tuple[NDArray[np.float64], NDArray[np.float64]]

    class ResultCallback(Protocol):
        """A callback whose only parameter is ``intermediate_result`` (called with an OptimizeResult: x, fun)."""

        def __call__(self, *, intermediate_result: PlainResult) -> object: ...

    #: ``callback(xk)`` (a copy of x) or ``callback(intermediate_result=...)``.
    CallbackLike: TypeAlias = Union[Callable[[Point], object], ResultCallback, None]

# Status codes of the result (``success`` is True only for CONVERGED).
CONVERGED = 0         # ||g||_inf <= gtol
LIMIT = 1             # maxiter or maxfun reached
STALLED = 2           # relative decrease of f <= ftol while ||g||_inf > gtol
LINE_SEARCH_FAILED = 3
NOT_FINITE = 4        # f or the gradient not finite at x0, or no descent direction (non-finite H, g.d >= 0)
NOT_POSITIVE = 5      # (Newton-CG) the Hessian showed negative curvature along the gradient at the start
CALLBACK_STOP = 99    # the callback raised StopIteration (SciPy's code)

CALLBACK_MESSAGE = "`callback` raised `StopIteration`."  # SciPy's wording
UNBOUNDED_MESSAGE = "stopped: f is -inf at x: the objective is unbounded below"


def take_options(options: Mapping[str, Any] | None, defaults: Mapping[str, Any], method: str) -> dict[str, Any]:
    """``defaults`` updated from the user's ``options`` mapping, refusing names the method does not have.

    An option given as None keeps its default (as BFGS's ``maxiter=None`` means 200 n).
    """
    if options is None:
        options = {}
    elif not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict (or None), got {type(options).__name__}")
    options = dict(options)
    unknown = sorted((key for key in options if key not in defaults), key=repr)
    if unknown:
        raise ValueError(f"method {method!r} has no option(s) {unknown}; it takes {sorted(defaults)}")
    return {**defaults, **{key: value for key, value in options.items() if value is not None}}


def iteration_limit(maxiter: Any, default: int | None = None) -> Any:
    """``maxiter`` as SciPy reads it: None keeps ``default``, ``inf`` is no limit, a negative number (or -inf)
    means no iteration at all, a fractional one is rounded down (SciPy takes ``100.1``); not a real number
    (a string, a bool, complex) is a TypeError and NaN a ValueError, as for every option."""
    if maxiter is None:
        return default
    if isinstance(maxiter, Real) and not isinstance(maxiter, (bool, np.bool_)):
        if maxiter < 0:
            return 0
        if math.isfinite(as_float(maxiter)) and maxiter != int(maxiter):  # type: ignore[call-overload]
            maxiter = int(maxiter)  # type: ignore[call-overload]  # (typeshed's numbers.Real has no __int__)
    return positive_option("maxiter", maxiter, integer=True, allow_zero=True, unlimited=True)


def relative_decrease(f_old: float, f_new: float) -> float:
    """(f_old - f_new) / max(|f_old|, |f_new|, 1): the ftol test of SciPy's L-BFGS-B."""
    return (f_old - f_new) / max(abs(f_old), abs(f_new), 1.0)


class Callback:
    """The user's callback, called once per iteration; True when it asks to stop.

    As in SciPy, a callback whose only parameter is named
    ``intermediate_result`` (positional or keyword-only) is called as
    ``callback(intermediate_result=OptimizeResult(x=..., fun=...))``; any
    other callback receives a copy of ``x``.  Raising ``StopIteration`` ends
    the run with status 99.
    """

    def __init__(self, callback: CallbackLike) -> None:
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
        self.callback: Any = callback  # called as one or the other of CallbackLike's signatures
        self.wants_result = False
        if callback is not None:
            try:
                self.wants_result = set(inspect.signature(callback).parameters) == {"intermediate_result"}
            except (TypeError, ValueError):  # builtins without a signature
                pass

    def __call__(self, x: Point, f: float) -> bool:
        if self.callback is None:
            return False
        try:
            if self.wants_result:
                self.callback(intermediate_result=OptimizeResult(x=np.array(x), fun=f))  # type: ignore[call-arg]
            else:
                self.callback(np.array(x))
        except StopIteration:
            return True
        return False


class Unbounded(Exception):
    """f reached -inf along a line search: the search ends there (the objective has no minimum along the line)."""


def search_line(objective: Objective, point_at: Callable[[float], Point], slope_of: Callable[[Point], float],
                f: float, slope: float, step0: float, g_trial: Point, *, ftol: float, xtol: float, maxfev: int,
                gtol: float = 0.9, stpmax: float = 1e10) -> tuple[LineSearchResult, Point]:
    """Moré–Thuente strong-Wolfe search from f (slope ``slope``) along the points ``point_at(stp)``.

    ``point_at(stp)`` returns a new array, x + stp d, which is made read-only
    and given to the user's function; the gradient there goes into
    ``g_trial`` and ``slope_of(g_trial)`` is its directional derivative.
    Returns the search result and the last point tried, which is the one
    accepted when the search succeeds (its gradient is then in ``g_trial``).

    ``ftol`` and ``gtol`` are the Wolfe constants (SciPy's ``c1``, ``c2``).
    A search that ends on a warning (the step at ``stpmax``, the interval
    too short, rounding, ``maxfev``) but whose last point lowered f by the
    sufficient-decrease rule counts as a success, as L-BFGS-B and SciPy's
    fallback searches accept it.  Where f is -inf the search stops at once
    and succeeds: the objective is unbounded below along the line.
    """
    last: list[Any] = [None]
    calls = [0]

    def phi(stp: float) -> tuple[float, float]:
        calls[0] += 1
        xt = point_at(stp)
        xt.flags.writeable = False
        last[0] = xt
        value = objective.value_and_grad(xt, g_trial)
        if value == -np.inf:
            raise Unbounded(stp)
        return value, slope_of(g_trial)

    try:
        search = strong_wolfe(phi, f, slope, step0, ftol=ftol, gtol=gtol, xtol=xtol, stpmax=stpmax,
                              maxfev=maxfev)
    except Unbounded as end:
        return LineSearchResult(stp=end.args[0], f=-np.inf, g=-np.inf, nfev=calls[0], success=True,
                                status="unbounded", message="f is -inf"), last[0]
    if not search.success and np.isfinite(search.g) and search.f <= f + ftol * search.stp * slope \
            and search.f < f:
        search = LineSearchResult(stp=search.stp, f=search.f, g=search.g, nfev=search.nfev, success=True,
                                  status=search.status, message=search.message)
    return search, last[0]


def finish(x: Point, f: float, g: Point, nit: int, objective: Objective, status: int, message: str,
           disp: bool = False, **extra: Any) -> MinimizeResult:
    """The OptimizeResult every method returns (``x`` and ``jac`` are the caller's to keep).

    With ``disp``, a run that did not converge warns with SciPy's OptimizeWarning, as SciPy does;
    a converged one prints its message.
    """
    if disp:
        if status == CONVERGED:
            print(message)
        else:
            warnings.warn(message, OptimizeWarning, stacklevel=_outside_fastopt())
    # (scipy-stubs give OptimizeResult no keyword constructor, though SciPy's is a dict: hence the ignores.)
    return cast("MinimizeResult", OptimizeResult(
        x=x, fun=f, jac=g, nit=nit, nfev=objective.nfev, njev=objective.njev,  # type: ignore[call-arg]
        nhev=objective.nhev, status=status, success=status == CONVERGED, message=message, **extra))


def _outside_fastopt() -> int:
    """The ``stacklevel`` that points a warning raised by our caller at the first frame outside fastopt
    (the user's call of ``fastopt.minimize``), however deep the method's own calls go."""
    frame: Any = sys._getframe(2)
    level = 2
    while frame is not None and frame.f_globals.get("__name__", "").startswith("fastopt."):
        frame, level = frame.f_back, level + 1
    return level


def stop_reason(gnorm: float, gtol: float, nit: int, maxiter: float, nfev: int = 0,
                maxfun: float | None = None) -> tuple[int, str] | None:
    """(status, message) when an iteration should not start -- gradient test passed or a limit reached -- else None."""
    if gnorm <= gtol:
        return CONVERGED, f"converged: ||g||_inf = {gnorm:.3g} <= gtol = {gtol:.3g}"
    if nit >= maxiter:
        return LIMIT, (f"Maximum number of iterations has been exceeded: maxiter = {maxiter} reached; "
                       f"||g||_inf = {gnorm:.3g}")
    if maxfun is not None and nfev >= maxfun:
        return LIMIT, (f"Maximum number of function evaluations has been exceeded: maxfun = {maxfun} "
                       f"reached; ||g||_inf = {gnorm:.3g}")
    return None


def stalled_message(gnorm: float, gtol: float, ftol: float) -> str:
    return (f"stopped: the relative decrease of f fell to ftol = {ftol:.3g} or below, but ||g||_inf = "
            f"{gnorm:.3g} > gtol = {gtol:.3g} (lower ftol, or accept this point)")
