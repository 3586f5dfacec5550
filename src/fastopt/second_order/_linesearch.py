"""The Moré–Thuente line search for the strong Wolfe conditions.

Reference: J. J. Moré and D. J. Thuente, "Line search algorithms with
guaranteed sufficient decrease", ACM Transactions on Mathematical Software
20(3), 286-307, 1994 (the search of MINPACK-2's ``dcsrch``/``dcstep``).

Along a descent direction ``d`` the search works on the scalar function
``phi(stp) = f(x + stp d)`` and looks for a step satisfying

* sufficient decrease: ``phi(stp) <= phi(0) + ftol * stp * phi'(0)``, and
* the strong curvature condition: ``|phi'(stp)| <= gtol * |phi'(0)|``.

It keeps an interval whose end points are the best step found so far
(``best``, least value of the function being minimized) and another step
(``other``) towards which the slope at ``best`` points.  Until the function
has been seen to rise again or its slope to change sign, no minimizer is
known to lie in the interval and the trial steps extrapolate; afterwards the
minimizer is *bracketed* and the interval shrinks around it.  Each trial step
is chosen by safeguarded cubic, quadratic or secant interpolation (the four
cases of the paper, section 4) and the interval is updated from the value and
slope found there.

While no step with ``psi(stp) <= 0`` and ``phi'(stp) >= 0`` has been seen,
the interpolation uses the auxiliary function
``psi(stp) = phi(stp) - phi(0) - ftol * stp * phi'(0)`` whenever the newest
step lowered ``phi`` without decreasing it sufficiently (the paper's first
stage); otherwise it uses ``phi`` itself.

:class:`MoreThuente` holds the search state and communicates in reverse: the
caller evaluates ``phi`` wherever it is asked to.  :func:`strong_wolfe` runs
that loop for a callable ``phi``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

__all__ = ["MoreThuente", "LineSearchResult", "strong_wolfe", "MESSAGES",
           "CONVERGED", "CONTINUE", "ROUNDING", "XTOL", "STPMAX", "STPMIN", "NONFINITE", "MAXFEV"]

CONVERGED = "converged"
CONTINUE = "continue"
ROUNDING = "rounding errors prevent progress"
XTOL = "xtol test satisfied"
STPMAX = "stp == stpmax"
STPMIN = "stp == stpmin"
NONFINITE = "non-finite function values"
MAXFEV = "maxfev reached"

MESSAGES = {
    CONVERGED: "the strong Wolfe conditions hold",
    ROUNDING: "rounding errors prevent further progress; the step is the best one found",
    XTOL: "the search interval is shorter than xtol allows; the step is the best one found",
    STPMAX: "the step is at stpmax and the function still decreases sufficiently there",
    STPMIN: "the step is at stpmin and the conditions do not hold there",
    NONFINITE: "the function or its slope stayed non-finite after repeatedly shortening the step",
    MAXFEV: "the maximum number of function evaluations was reached",
}

# Extrapolation (no minimizer bracketed yet): the next step lies in
# [stp + _EXTRAPOLATE_MIN (stp - best), stp + _EXTRAPOLATE_MAX (stp - best)].
_EXTRAPOLATE_MIN = 1.1
_EXTRAPOLATE_MAX = 4.0
# Once bracketed, the interval must shrink by this factor every two trials,
# otherwise the next step bisects it.  The same factor bounds how far case 3
# may move towards the far end of the interval.
_REQUIRED_SHRINK = 0.66
# After a non-finite value the next step is best + _NONFINITE_SHRINK (stp - best),
# at most _MAX_NONFINITE times in a row.
_NONFINITE_SHRINK = 0.25
_MAX_NONFINITE = 20


class _Point(NamedTuple):
    """A step with the function value and slope there."""

    stp: float
    f: float
    g: float


def _opposite_signs(a: float, b: float) -> bool:
    return (a < 0.0 < b) or (b < 0.0 < a)


def _cubic_minimizer(u: float, fu: float, du: float, v: float, fv: float, dv: float) -> float:
    """Local minimizer of the cubic with values ``fu, fv`` and slopes ``du, dv`` at ``u != v``.

    Returns NaN when the cubic has no local minimizer (it is monotone or has
    only an inflection point).  The square root is scaled to avoid overflow.
    """
    theta = 3.0 * (fu - fv) / (v - u) + du + dv
    scale = max(abs(theta), abs(du), abs(dv))
    if scale == 0.0:
        return math.nan
    discriminant = (theta / scale) ** 2 - (du / scale) * (dv / scale)
    if discriminant <= 0.0:
        return math.nan
    gamma = math.copysign(scale * math.sqrt(discriminant), v - u)
    numerator = (gamma - du) + theta
    denominator = ((gamma - du) + gamma) + dv
    if denominator == 0.0:
        return math.nan
    return u + numerator / denominator * (v - u)


def _quadratic_minimizer(u: float, fu: float, du: float, v: float, fv: float) -> float:
    """Minimizer of the quadratic with value ``fu`` and slope ``du`` at ``u`` and value ``fv`` at ``v``."""
    curvature = (fu - fv) / (v - u) + du
    if curvature == 0.0:
        return math.nan
    return u + du / curvature / 2.0 * (v - u)


def _secant_step(u: float, du: float, v: float, dv: float) -> float:
    """Zero of the linear interpolant of the slopes ``du`` at ``u`` and ``dv`` at ``v``."""
    return u + du / (du - dv) * (v - u)


def _trial_step(best: _Point, other: _Point, trial: _Point, bracketed: bool, lower: float,
                upper: float) -> tuple[float, bool]:
    """The next trial step from the paper's four cases (section 4).

    Parameters
    ----------
    best, other : _Point
        End points of the current interval; ``best`` has the least function value.
    trial : _Point
        The step just evaluated.
    bracketed : bool
        Whether the interval is known to contain a minimizer.
    lower, upper : float
        Bounds for an extrapolated step (the interval itself once bracketed).

    Returns
    -------
    step : float
        The next step to try, before the caller's safeguards.
    bracketed : bool
        Whether a minimizer is bracketed after this trial.
    """
    x, t = best.stp, trial.stp
    if trial.f > best.f:
        # Case 1: a higher value; the minimizer lies between best and trial.  Take
        # the cubic step when it is closer to best than the quadratic one,
        # otherwise the midpoint of the two.
        cubic = _cubic_minimizer(x, best.f, best.g, t, trial.f, trial.g)
        quadratic = _quadratic_minimizer(x, best.f, best.g, t, trial.f)
        if abs(cubic - x) < abs(quadratic - x):
            step = cubic
        else:
            step = cubic + (quadratic - cubic) / 2.0
        return (step if not math.isnan(step) else x + (t - x) / 2.0), True

    if _opposite_signs(trial.g, best.g):
        # Case 2: a lower value and slopes of opposite signs; bracketed.  Take the
        # cubic or the secant step, whichever is farther from the trial step.
        cubic = _cubic_minimizer(t, trial.f, trial.g, x, best.f, best.g)
        secant = _secant_step(t, trial.g, x, best.g)
        return (cubic if abs(cubic - t) >= abs(secant - t) else secant), True   # secant if cubic is NaN

    toward_upper = t > x
    if abs(trial.g) < abs(best.g):
        # Case 3: a lower value, same slope signs, and the slope shrinks in
        # magnitude.  The cubic step counts only when its minimizer lies beyond
        # the trial step; otherwise the cubic decreases without bound that way
        # and the bound in that direction stands in for it.
        cubic = _cubic_minimizer(t, trial.f, trial.g, x, best.f, best.g)
        if not (cubic - t) * (t - x) > 0.0:  # also rejects NaN
            cubic = upper if toward_upper else lower
        secant = _secant_step(t, trial.g, x, best.g)
        if bracketed:
            # The closer of the two, but no farther than 0.66 of the way to the far end.
            step = cubic if abs(cubic - t) < abs(secant - t) else secant
            limit = t + _REQUIRED_SHRINK * (other.stp - t)
            return (min(limit, step) if toward_upper else max(limit, step)), True
        step = cubic if abs(cubic - t) > abs(secant - t) else secant
        return min(max(step, lower), upper), False

    # Case 4: a lower value, same slope signs, and the slope does not shrink.
    # Bracketed: the minimizer of the cubic through trial and other.
    # Otherwise: extrapolate to the bound in the direction of descent.
    if bracketed:
        step = _cubic_minimizer(t, trial.f, trial.g, other.stp, other.f, other.g)
        return (step if not math.isnan(step) else t + (other.stp - t) / 2.0), True
    return (upper if toward_upper else lower), False


def _finite_real(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


class MoreThuente:
    """Reverse-communication strong-Wolfe line search on ``phi(stp) = f(x + stp d)``.

    Parameters
    ----------
    f0 : float
        ``phi(0)``.
    g0 : float
        ``phi'(0)``; must be negative (``d`` must be a descent direction).
    ftol : float, optional
        Sufficient-decrease constant, in (0, 1).
    gtol : float, optional
        Curvature constant, in (0, 1).
    xtol : float, optional
        Non-negative relative tolerance: the search stops with a warning once the
        bracketing interval is shorter than ``xtol`` times its upper end.
    stpmin, stpmax : float, optional
        Bounds on the step, ``0 <= stpmin <= stpmax``; ``stpmax`` may be infinite.

    Notes
    -----
    Evaluate ``phi`` and ``phi'`` at a first trial step in ``[stpmin, stpmax]``
    (and positive) and pass them to :meth:`next_step`; then evaluate at the step
    it returns and pass those, for as long as the status is ``"continue"``.  Any
    other status ends the search, and the step returned with it is the one just
    evaluated:

    ``"converged"``
        The strong Wolfe conditions hold there.
    ``"rounding errors prevent progress"``, ``"xtol test satisfied"``
        The interval cannot usefully shrink further; the step is the best one found.
    ``"stp == stpmax"``, ``"stp == stpmin"``
        The search is stuck at a bound.
    ``"non-finite function values"``
        ``phi`` or ``phi'`` stayed NaN or infinite after the step was shortened
        towards the best step 20 times in a row (or could not be shortened).

    A NaN or infinite value is never used for interpolation: the search shortens
    the step towards the best step found and from then on keeps its trial steps
    on the near side of the offending step, which bounds the search like an end
    of a bracketing interval (the xtol test included).
    """

    def __init__(self, f0: float, g0: float, *, ftol: float = 1e-3, gtol: float = 0.9, xtol: float = 0.1,
                 stpmin: float = 0.0, stpmax: float = 1e10) -> None:
        f0 = _finite_real("f0", f0)
        g0 = _finite_real("g0", g0)
        if not g0 < 0.0:
            raise ValueError(f"g0 = phi'(0) must be negative (a descent direction), got {g0!r}")
        ftol, gtol, xtol = float(ftol), float(gtol), float(xtol)
        stpmin, stpmax = float(stpmin), float(stpmax)
        if not 0.0 < ftol < 1.0:
            raise ValueError(f"ftol must lie in (0, 1), got {ftol!r}")
        if not 0.0 < gtol < 1.0:
            raise ValueError(f"gtol must lie in (0, 1), got {gtol!r}")
        if not (xtol >= 0.0 and math.isfinite(xtol)):
            raise ValueError(f"xtol must be non-negative and finite, got {xtol!r}")
        if not (stpmin >= 0.0 and math.isfinite(stpmin)):
            raise ValueError(f"stpmin must be non-negative and finite, got {stpmin!r}")
        if not (stpmax >= stpmin and stpmax > 0.0):
            raise ValueError(f"stpmax must be positive and at least stpmin = {stpmin!r}, got {stpmax!r}")
        self.f0, self.g0 = f0, g0
        self.ftol, self.gtol, self.xtol = ftol, gtol, xtol
        self.stpmin, self.stpmax = stpmin, stpmax
        self.nfev = 0
        self._slope_test = ftol * g0   # psi'(stp) = phi'(stp) - _slope_test
        self._use_psi = True           # first stage: psi may stand in for phi
        self._bracketed = False
        self._best = self._other = _Point(0.0, f0, g0)
        self._lower = self._upper = 0.0   # bounds for the next trial step
        self._width = stpmax - stpmin
        self._previous_width = 2.0 * self._width
        self._requested: float | None = None   # the step the caller must evaluate next
        self._status = CONTINUE
        self._seen_finite = False
        self._nonfinite_in_a_row = 0
        self._nonfinite_below = -math.inf   # trial steps stay inside (_nonfinite_below,
        self._nonfinite_above = math.inf    # _nonfinite_above), where phi was non-finite

    @property
    def status(self) -> str:
        """``"continue"`` while the search runs, then the status that ended it."""
        return self._status

    @property
    def bracketed(self) -> bool:
        """Whether the search interval is known to contain a minimizer."""
        return self._bracketed

    def next_step(self, stp: float, f: float, g: float) -> tuple[float, str]:
        """Report ``phi(stp) = f`` and ``phi'(stp) = g``; get the next step to try.

        Parameters
        ----------
        stp : float
            The step just evaluated: the first trial step, then always the step
            this method returned last.
        f, g : float
            ``phi(stp)`` and ``phi'(stp)``; NaN or infinite values are allowed.

        Returns
        -------
        stp : float
            The next step to evaluate when the status is ``"continue"``,
            otherwise the step just evaluated.
        status : str
            ``"continue"``, ``"converged"`` or one of the warnings listed in the
            class documentation.

        Raises
        ------
        ValueError
            If the first step is not in ``(0, stpmax]`` and ``>= stpmin``, or a later
            step is not the one this method asked for.
        RuntimeError
            If the search has already ended.
        """
        if self._status != CONTINUE:
            raise RuntimeError(f"the line search has already ended ({self._status!r})")
        stp, f, g = float(stp), float(f), float(g)
        if self._requested is None:
            if not (0.0 < stp <= self.stpmax and stp >= self.stpmin):
                raise ValueError(f"the first step must lie in (0, stpmax] and be >= stpmin, got {stp!r}")
            self._lower, self._upper = self._extrapolation_bounds(stp)
        elif stp != self._requested:
            raise ValueError(f"expected the step {self._requested!r} returned last, got {stp!r}")
        self.nfev += 1
        if not (math.isfinite(f) and math.isfinite(g)):
            return self._shorten(stp)
        self._nonfinite_in_a_row = 0
        self._seen_finite = True

        f_test = self.f0 + stp * self._slope_test
        if self._use_psi and f <= f_test and g >= 0.0:
            self._use_psi = False
        status = self._stop_status(stp, f, g, f_test)
        if status is not None:
            return self._end(stp, status)

        step = self._advance(_Point(stp, f, g), f_test)
        if step == stp:  # a repeat would bring no new information
            return self._end(stp, self._stop_status(stp, f, g, f_test) or self._stuck_status(stp))
        self._requested = step
        return step, CONTINUE

    def _stop_status(self, stp: float, f: float, g: float, f_test: float) -> str | None:
        """The status that ends the search at ``stp``, or None to go on."""
        if f <= f_test and abs(g) <= self.gtol * -self.g0:
            return CONVERGED
        if stp == self.stpmin and (f > f_test or g >= self._slope_test):
            return STPMIN
        if stp == self.stpmax and f <= f_test and g <= self._slope_test:
            return STPMAX
        if self._bracketed:
            if self._upper - self._lower <= self.xtol * self._upper:
                return XTOL
            if stp <= self._lower or stp >= self._upper:
                return ROUNDING
        return None

    def _stuck_status(self, stp: float) -> str:
        """Why the search cannot move away from ``stp``, the best step."""
        if stp == self.stpmax:
            return STPMAX
        if stp == self.stpmin:
            return STPMIN
        barriers = [b for b in (self._nonfinite_below, self._nonfinite_above) if math.isfinite(b)]
        if any(self._within_xtol(stp, b) for b in barriers):
            return XTOL
        return ROUNDING

    def _within_xtol(self, a: float, b: float) -> bool:
        """Whether the interval between steps ``a`` and ``b`` is too short to search on."""
        return abs(b - a) <= self.xtol * max(a, b)

    def _advance(self, trial: _Point, f_test: float) -> float:
        """Update the interval with ``trial`` and return the next step to try."""
        best, other = self._best, self._other
        if self._use_psi and trial.f <= best.f and trial.f > f_test:
            # Interpolate psi: its values and slopes differ from phi's by a linear term.
            def psi(point: _Point) -> _Point:
                return _Point(point.stp, point.f - point.stp * self._slope_test, point.g - self._slope_test)
            model_best, model_other, model_trial = psi(best), psi(other), psi(trial)
        else:
            model_best, model_other, model_trial = best, other, trial
        step, self._bracketed = _trial_step(model_best, model_other, model_trial,
                                            self._bracketed, self._lower, self._upper)
        if model_trial.f > model_best.f:
            self._other = trial
        else:
            if _opposite_signs(model_trial.g, model_best.g):
                self._other = best
            self._best = trial
        best, other = self._best, self._other

        if self._bracketed:
            width = abs(other.stp - best.stp)
            if width >= _REQUIRED_SHRINK * self._previous_width:
                step = best.stp + 0.5 * (other.stp - best.stp)
            self._previous_width, self._width = self._width, width
        step = self._keep_finite_side(step)
        self._lower, self._upper = self._extrapolation_bounds(step)
        step = min(max(step, self.stpmin), self.stpmax)
        if self._bracketed and (step <= self._lower or step >= self._upper
                                or self._upper - self._lower <= self.xtol * self._upper):
            # No further progress is possible: ask for the best step again.
            step = best.stp
        return step

    def _extrapolation_bounds(self, step: float) -> tuple[float, float]:
        """Bounds for the trial step that will follow ``step``."""
        if self._bracketed:
            return min(self._best.stp, self._other.stp), max(self._best.stp, self._other.stp)
        base = self._best.stp
        # Until phi has been finite somewhere, extrapolation has no lower limit (as at MINPACK-2's start).
        lower = step + _EXTRAPOLATE_MIN * (step - base) if self._seen_finite else base
        return lower, step + _EXTRAPOLATE_MAX * (step - base)

    def _keep_finite_side(self, step: float) -> float:
        """``step``, or the midpoint from the best step to a non-finite step that ``step`` reaches."""
        if step >= self._nonfinite_above:
            barrier = self._nonfinite_above
        elif step <= self._nonfinite_below:
            barrier = self._nonfinite_below
        else:
            return step
        base = self._best.stp
        middle = base + 0.5 * (barrier - base)
        if middle == barrier or self._within_xtol(base, barrier):
            return base   # no room is left
        return middle

    def _shorten(self, stp: float) -> tuple[float, str]:
        """Answer a NaN or infinite value at ``stp`` with a shorter step towards the best one."""
        base = self._best.stp
        if stp > base:
            self._nonfinite_above = min(self._nonfinite_above, stp)
        else:
            self._nonfinite_below = max(self._nonfinite_below, stp)
        self._nonfinite_in_a_row += 1
        step = min(max(base + _NONFINITE_SHRINK * (stp - base), self.stpmin), self.stpmax)
        if self._nonfinite_in_a_row > _MAX_NONFINITE or step in (stp, base):
            return self._end(stp, NONFINITE)
        if not self._bracketed:
            self._lower, self._upper = self._extrapolation_bounds(step)
        self._requested = step
        return step, CONTINUE

    def _end(self, stp: float, status: str) -> tuple[float, str]:
        self._status = status
        self._requested = None
        return stp, status


@dataclass(frozen=True)
class LineSearchResult:
    """Outcome of :func:`strong_wolfe`.

    Attributes
    ----------
    stp : float
        The last step evaluated (so a gradient the caller cached there matches).
    f, g : float
        ``phi(stp)`` and ``phi'(stp)``.
    nfev : int
        Number of evaluations of ``phi``.
    success : bool
        True only when the strong Wolfe conditions hold at ``stp``.
    status : str
        ``"converged"``, ``"maxfev reached"`` or a warning of :class:`MoreThuente`.
    message : str
        A sentence describing ``status``.
    """

    stp: float
    f: float
    g: float
    nfev: int
    success: bool
    status: str
    message: str


def strong_wolfe(phi: Callable[[float], tuple[float, float]], f0: float, g0: float, stp: float = 1.0, *,
                 ftol: float = 1e-3, gtol: float = 0.9, xtol: float = 0.1, stpmin: float = 0.0, stpmax: float = 1e10,
                 maxfev: int = 20) -> LineSearchResult:
    """Find a step satisfying the strong Wolfe conditions with the Moré–Thuente search.

    Parameters
    ----------
    phi : callable
        ``phi(stp) -> (f, g)``: the value and slope of the function along the
        search direction.  Exceptions it raises propagate.
    f0, g0 : float
        ``phi(0)`` and ``phi'(0) < 0``.
    stp : float, optional
        First trial step, in ``(0, stpmax]`` and ``>= stpmin``.
    ftol, gtol, xtol, stpmin, stpmax : float, optional
        As for :class:`MoreThuente`.
    maxfev : int, optional
        Maximum number of evaluations of ``phi`` (at least 1).

    Returns
    -------
    LineSearchResult
        The last step evaluated, its value and slope, the number of
        evaluations, and the status.

    Raises
    ------
    ValueError
        For invalid arguments (see :class:`MoreThuente`), or ``maxfev < 1``.
    """
    if isinstance(maxfev, bool) or int(maxfev) != maxfev or maxfev < 1:
        raise ValueError(f"maxfev must be a positive integer, got {maxfev!r}")
    search = MoreThuente(f0, g0, ftol=ftol, gtol=gtol, xtol=xtol, stpmin=stpmin, stpmax=stpmax)
    nfev = 0
    while True:
        f, g = phi(stp)
        nfev += 1
        next_stp, status = search.next_step(stp, f, g)
        if status != CONTINUE:
            break
        if nfev == maxfev:
            status = MAXFEV
            break
        stp = next_stp
    return LineSearchResult(stp=float(stp), f=float(f), g=float(g), nfev=nfev, success=status == CONVERGED,
                            status=status, message=MESSAGES[status])
