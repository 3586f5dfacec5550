"""``fastopt.minimize``: the call of ``scipy.optimize.minimize``, with fastopt's second-order methods."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fastopt._validation import positive_option
from fastopt.second_order import _common as C
from fastopt.second_order._objective import Objective, real_array
from fastopt.second_order.bfgs import DEFAULTS as BFGS_DEFAULTS, minimize_bfgs
from fastopt.second_order.lbfgs import DEFAULTS as LBFGS_DEFAULTS, minimize_lbfgs
from fastopt.second_order.lbfgsb import minimize_lbfgsb, parse_bounds
from fastopt.second_order.newton import (DEFAULTS as NEWTON_DEFAULTS, NEWTON_CG_DEFAULTS, minimize_newton,
                                         minimize_newton_cg)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from fastopt._typing import ArrayLike, NDArray, Scalar
    from fastopt.second_order._common import BoundsLike, CallbackLike, Fun, Hess, Hessp, Jac
    from fastopt.second_order._common import MinimizeResult as OptimizeResult

# Options every method takes that shape the objective, not the method: finite differences and their map.
_SQRT_EPS = float(np.sqrt(np.finfo(np.float64).eps))
OBJECTIVE_OPTIONS: dict[str, dict[str, Any]] = {"L-BFGS": dict(eps=1e-8, finite_diff_rel_step=None, workers=None),
                     "BFGS": dict(eps=_SQRT_EPS, finite_diff_rel_step=None, workers=None),
                     "Newton": dict(eps=_SQRT_EPS, finite_diff_rel_step=None, workers=None),
                     "Newton-CG": dict(eps=_SQRT_EPS, finite_diff_rel_step=None, workers=None)}

# canonical name -> (driver, default options, options that ``tol`` sets)
METHODS: dict[str, tuple[Callable[..., OptimizeResult], dict[str, Any], tuple[str, ...]]] = {
    "L-BFGS": (minimize_lbfgs, LBFGS_DEFAULTS, ("gtol", "ftol")),
    "BFGS": (minimize_bfgs, BFGS_DEFAULTS, ("gtol",)),
    "Newton": (minimize_newton, NEWTON_DEFAULTS, ("gtol",)),
    "Newton-CG": (minimize_newton_cg, NEWTON_CG_DEFAULTS, ("gtol",)),
}
_ALIASES = {name.lower().replace("-", ""): name for name in METHODS}
_ALIASES["lbfgsb"] = "L-BFGS"  # SciPy's name: fastopt's L-BFGS takes bounds


def minimize(fun: Fun, x0: ArrayLike, args: object = (), method: str | None = "L-BFGS", jac: Jac = None,
             hess: Hess = None, hessp: Hessp | None = None, bounds: BoundsLike | None = None,
             constraints: Sequence[object] | None = (), tol: Scalar | None = None, callback: CallbackLike = None,
             options: Mapping[str, Any] | None = None) -> OptimizeResult:
    """Minimize a scalar function of one or more variables, as ``scipy.optimize.minimize`` does.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> float``, or ``-> (float, ndarray)`` with ``jac=True``.
        ``x`` is a read-only float64 array of shape ``(n,)``, new at every
        call (keeping it is safe; writing to it raises NumPy's "assignment
        destination is read-only" ValueError in ``fun``).  ``f`` must be a
        real number (a Python or NumPy int or float, or an array holding
        exactly one, as SciPy accepts); None, a bool, a string or a complex
        number is a TypeError naming what ``fun`` returned.  Complex values
        are refused even with a zero imaginary part: whether it is zero
        depends on the point, and a run should not fail half-way for it.
    x0 : array_like
        Starting point: real numbers (ints or floats; an object array of
        them is fine), all finite; flattened to ``(n,)``.  Strings, bools,
        complex numbers and None are a TypeError.
    args : tuple, optional
        Extra arguments to ``fun``, ``jac``, ``hess`` and ``hessp``.  As in
        SciPy, anything but a tuple is a single extra argument (a list is
        passed as one argument, not spread).
    method : {"L-BFGS", "L-BFGS-B", "BFGS", "Newton", "Newton-CG"} or None, default "L-BFGS"
        Case, hyphens and underscores do not matter; None is "L-BFGS".

        * ``"L-BFGS"`` (also ``"L-BFGS-B"``): limited-memory BFGS
          (``maxcor`` pairs, default 10) with a Moré–Thuente strong-Wolfe
          line search; with ``bounds``, L-BFGS-B.  The vector work runs in
          fastopt's nogil, OpenMP kernels.
        * ``"BFGS"``: dense inverse-Hessian BFGS, O(n^2) work per iteration.
        * ``"Newton"``: Newton's method with the Hessian ``hess``, solved by
          Cholesky; where the Hessian is not positive definite, a multiple
          of the identity is added until it is (modified Newton); a line
          search on every step.
        * ``"Newton-CG"``: truncated Newton, conjugate gradients for each
          step on products with the Hessian from ``hessp`` or ``hess``, or,
          with neither, forward differences of the gradient.
    jac : callable, True, False, {"2-point", "3-point", "cs"} or None, optional
        The gradient ``jac(x, *args) -> ndarray (n,)``; ``True`` if ``fun``
        returns it with the value; a finite-difference scheme (relative
        steps, ``finite_diff_rel_step``); ``None`` or ``False`` for forward
        differences with the method's absolute step ``eps``.  Each
        estimated gradient counts in ``njev``, its evaluations in ``nfev``;
        every probe is a new read-only point.
    hess : callable, {"2-point", "3-point", "cs"}, HessianUpdateStrategy, optional
        ``hess(x, *args) -> (n, n) array`` (dense, or sparse with
        ``toarray``); or, for Newton-CG and Newton, a finite-difference
        scheme on the gradient, or a ``scipy.optimize.BFGS()``/``SR1()``
        updated after every iteration (Newton-CG).
    hessp : callable, optional
        ``hessp(x, p, *args) -> ndarray (n,)``: the Hessian times ``p``.
        Gradients, Hessians and products must be real numbers (as ``f``:
        None, bools, strings and complex values are a TypeError); a wrong
        shape is a ValueError (for ``n = 1`` any size-1 result is taken).
        ``x`` and ``p`` are read-only, as for ``fun``: no user function can
        change the minimizer's state through its arguments.
    bounds : scipy.optimize.Bounds or sequence of (low, high), optional
        Box constraints for ``"L-BFGS"``/``"L-BFGS-B"`` (None or +-inf: no
        bound); a start outside the box is projected into it.  Other
        methods refuse finite bounds (ValueError).
    constraints : empty, optional
        Accepted only empty: fastopt has no constrained method (ValueError).
    tol : float, optional
        Sets ``gtol`` (and, for L-BFGS, ``ftol``) unless ``options`` sets them.
    callback : callable, optional
        Called after every iteration with a copy of ``x``, or, if its only
        parameter is named ``intermediate_result`` (positional or
        keyword-only), as ``callback(intermediate_result=res)`` with an
        OptimizeResult holding ``x`` and ``fun``.  Raising ``StopIteration``
        stops the run (status 99).
    options : dict, optional
        Every method: ``eps`` (the absolute finite-difference step for
        ``jac=None``: 1e-8 for L-BFGS, sqrt(machine eps) otherwise, as
        SciPy), ``finite_diff_rel_step``, ``workers`` (a map-like callable
        for the difference evaluations), ``disp`` (print the message; warn
        with ``OptimizeWarning`` when the run did not converge).
        L-BFGS: ``maxcor`` (10), ``gtol`` (1e-5, on the projected gradient
        with bounds), ``ftol`` (2.2e-9), ``maxiter`` (15000), ``maxfun``
        (15000), ``maxls`` (20), ``iprint`` (accepted, unused), and one
        option SciPy does not have, ``blas_threads`` ("auto"): the
        objective's BLAS threads keep spinning after each call and slow
        L-BFGS's own multi-threaded passes, so when those passes dominate
        an iteration (time outside the objective at least 4 times the time
        inside, measured over the first 10 iterations) L-BFGS limits BLAS to
        one thread for the rest of the solve, with threadpoolctl, and
        restores it at the end; False leaves BLAS alone, an integer limits
        it to that many threads for the whole solve (with bounds, "auto"
        leaves BLAS alone).  The limit is process-wide while it lasts, and
        BLAS's reductions round differently on fewer threads: for runs that
        repeat bit for bit, pass False or an integer (README, "Threads").
        BFGS: ``gtol`` (1e-5), ``norm`` (inf), ``maxiter`` (200 n),
        ``maxfun`` (None: no limit), ``maxls`` (20), ``c1`` (1e-4), ``c2``
        (0.9), ``hess_inv0`` (the identity), ``xrtol`` (0), ``return_all``.
        Newton: ``gtol`` (1e-8), ``maxiter`` (200), ``maxls`` (20).
        Newton-CG: ``gtol`` (1e-5), ``xtol`` (0: off), ``maxiter`` (200 n),
        ``cg_maxiter`` (20 n), ``maxls`` (20), ``c1``, ``c2``,
        ``return_all``.  ``maxiter`` reads as SciPy: negative means no
        iteration, a fraction is rounded down.
        Values must be real numbers (a string such as ``"1e-5"`` is a
        TypeError, so is a bool); counts must be whole numbers, and
        ``maxiter`` and ``maxfun`` also take ``np.inf`` for "no limit"
        (``cg_maxiter`` does not: CG on an ill-conditioned Hessian might
        never stop).  NaN, negative values and other infinities are a
        ValueError.  None keeps an option's default.

    Returns
    -------
    scipy.optimize.OptimizeResult
        ``x``, ``fun``, ``jac`` (the gradient at ``x``), ``nit``, ``nfev``,
        ``njev``, ``nhev``, ``status``, ``success``, ``message``; L-BFGS and
        BFGS add ``hess_inv`` (a ``LinearOperator`` for L-BFGS, an ndarray
        for BFGS).

        ``success`` is True only when the gradient test passed:
        ``||g||_inf <= gtol`` (status 0).  Other statuses say why the run
        ended, and ``message`` gives the numbers: 1, ``maxiter`` or
        ``maxfun`` reached; 2, the relative decrease of ``f`` fell to
        ``ftol`` or below before the gradient test passed (SciPy's L-BFGS-B
        calls that convergence; fastopt reports it but does not call it
        success); 3, the line search found no acceptable step; 4, ``f`` or
        the gradient is NaN or infinite at ``x0`` (elsewhere the line
        search steps back from such points), or no descent direction could
        be formed: the Hessian (or its approximation) is not finite or no
        shift makes it positive definite, or ``g . d`` is not negative even
        along steepest descent (with ``gtol=0``, how a run ends once the
        gradient underflows); 99, the callback raised StopIteration.  ``x``
        is always the best point accepted so far.

    Raises
    ------
    TypeError
        Where something is not of a kind fastopt takes: ``x0``, an option
        value or what a user function returned is not real numbers (None,
        bool, str, complex; the error names the function and what it
        returned), ``options`` is not a dict, ``method`` not a string.
    ValueError
        Where the kind is right but the value is not: ``x0`` empty, NaN or
        infinite, an unknown method or option, an option NaN, negative or
        infinite where that means nothing, a method missing what it needs
        (Newton without ``hess``), a user function returning the wrong
        shape.  Writing into an argument of a user function raises NumPy's
        ValueError (read-only) in that function.

    Examples
    --------
    >>> import numpy as np
    >>> from fastopt import minimize
    >>> def rosen(x):
    ...     f = 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2
    ...     g = np.array([-400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0]), 200 * (x[1] - x[0] ** 2)])
    ...     return f, g
    >>> res = minimize(rosen, [-1.2, 1.0], jac=True, options={"gtol": 1e-8, "ftol": 0})
    >>> res.success, res.x.round(6)
    (True, array([1., 1.]))
    """
    if method is None:
        method = "L-BFGS"
    if not isinstance(method, str):
        raise TypeError(f"method must be a string (or None), got {type(method).__name__}")
    name = _ALIASES.get(method.lower().replace("-", "").replace("_", ""))
    if name is None:
        raise ValueError(f"unknown method {method!r}; fastopt.minimize offers {list(METHODS)}")
    driver, defaults, tol_sets = METHODS[name]
    x = _start_point(x0)
    opts = C.take_options(options, {**defaults, **OBJECTIVE_OPTIONS[name]}, name)
    fd = {key: opts.pop(key) for key in OBJECTIVE_OPTIONS[name]}
    if tol is not None:
        tol = positive_option("tol", tol, allow_zero=True)
        for key in tol_sets:
            if (options or {}).get(key) is None:  # not given, or None (keep the default): tol sets it
                opts[key] = tol
    if name == "Newton" and hess is None:
        raise ValueError("method 'Newton' needs hess (a function returning the n x n Hessian)")
    if constraints not in (None, (), []):
        raise ValueError("fastopt.minimize takes no constraints (only bounds, with method 'L-BFGS-B'); "
                         "use scipy.optimize.minimize with method 'SLSQP' or 'trust-constr' for them")
    box = parse_bounds(bounds, x.size)  # None when there are no bounds or every bound is infinite
    if box is not None:
        if name != "L-BFGS":
            raise ValueError(f"method {name!r} takes no bounds; use method 'L-BFGS-B'")
        driver = minimize_lbfgsb
    objective = Objective(fun, jac, hess, hessp, args, x.size, eps=fd["eps"],
                          finite_diff_rel_step=fd["finite_diff_rel_step"], workers=fd["workers"], box=box)
    if box is not None:
        return driver(objective, x, box, callback=callback, **opts)
    return driver(objective, x, callback=callback, **opts)


def _start_point(x0: ArrayLike) -> NDArray[np.float64]:
    """x0 as a new float64 array of shape (n,): the caller's x0 is never written or kept."""
    x = np.array(real_array("x0", "the starting point", x0, verb="holds"), dtype=np.float64)  # a copy, always
    if x.ndim > 1:
        raise ValueError("'x0' must only have one dimension.")
    x = x.reshape(-1)
    if x.size == 0:
        raise ValueError("x0 is empty: there is nothing to minimize")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"x0 must be finite; x0[{bad[0]}] (flattened) is {x[bad[0]]}")
    return x
