"""The Moré–Thuente line search of fastopt.second_order._linesearch."""
import importlib.util
import math
import pathlib
import sys

import numpy as np
import pytest

# Load the module from its file so these tests do not depend on how the
# fastopt.second_order package is assembled or installed.
_PATH = pathlib.Path(__file__).resolve().parents[1] / "src" / "fastopt" / "second_order" / "_linesearch.py"
_spec = importlib.util.spec_from_file_location("_fastopt_linesearch_under_test", _PATH)
ls = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = ls
_spec.loader.exec_module(ls)


def strong_wolfe_holds(stp, f, g, f0, g0, ftol, gtol):
    return f <= f0 + ftol * stp * g0 and abs(g) <= gtol * abs(g0)


# --- The test functions of Moré & Thuente (1994), section 5 -------------------------------------

def phi_1(a, beta=2.0):
    return -a / (a * a + beta), (a * a - beta) / (a * a + beta) ** 2


def phi_2(a, beta=0.004):
    b = a + beta
    return b ** 5 - 2.0 * b ** 4, 5.0 * b ** 4 - 8.0 * b ** 3


def phi_3(a, beta=0.01, ell=39):
    if a <= 1.0 - beta:
        f, g = 1.0 - a, -1.0
    elif a >= 1.0 + beta:
        f, g = a - 1.0, 1.0
    else:
        f, g = (a - 1.0) ** 2 / (2.0 * beta) + beta / 2.0, (a - 1.0) / beta
    wiggle = ell * math.pi / 2.0
    return (f + 2.0 * (1.0 - beta) / (ell * math.pi) * math.sin(wiggle * a),
            g + (1.0 - beta) * math.cos(wiggle * a))


def yanai_ozawa_kaneko(beta1, beta2):
    def gamma(beta):
        return math.sqrt(1.0 + beta * beta) - beta

    def phi(a):
        r1, r2 = math.sqrt((1.0 - a) ** 2 + beta2 ** 2), math.sqrt(a * a + beta1 ** 2)
        return (gamma(beta1) * r1 + gamma(beta2) * r2,
                gamma(beta1) * (a - 1.0) / r1 + gamma(beta2) * a / r2)
    return phi


# name, phi, ftol (mu), gtol (eta), and per starting step 1e-3, 1e-1, 1e1, 1e3:
# (evaluations, step) as printed in the paper's tables 1-6 (SciPy's port of
# MINPACK-2's dcsrch needs the same numbers of evaluations).  The runs use
# xtol = 1e-10, small enough never to stop a search early here.
PAPER = [
    ("phi_1", phi_1, 1e-3, 1e-1, [(6, 1.4), (3, 1.4), (1, 10.0), (4, 37.0)]),
    ("phi_2", phi_2, 1e-1, 1e-1, [(12, 1.6), (8, 1.6), (8, 1.6), (11, 1.6)]),
    ("phi_3", phi_3, 1e-1, 1e-1, [(12, 1.0), (12, 1.0), (10, 1.0), (13, 1.0)]),
    ("phi_4", yanai_ozawa_kaneko(1e-3, 1e-3), 1e-3, 1e-3, [(4, 0.08), (1, 0.10), (3, 0.35), (4, 0.83)]),
    ("phi_5", yanai_ozawa_kaneko(1e-2, 1e-3), 1e-3, 1e-3, [(6, 0.075), (3, 0.078), (7, 0.073), (8, 0.076)]),
    ("phi_6", yanai_ozawa_kaneko(1e-3, 1e-2), 1e-3, 1e-3, [(13, 0.93), (11, 0.93), (8, 0.92), (11, 0.92)]),
]
STARTS = [1e-3, 1e-1, 1e1, 1e3]
PAPER_CASES = [pytest.param(phi, ftol, gtol, start, nfev, stp, id=f"{name}-start{start:g}")
               for name, phi, ftol, gtol, table in PAPER for start, (nfev, stp) in zip(STARTS, table)]


class Counted:
    """phi, counting and recording its evaluations."""

    def __init__(self, phi):
        self.phi = phi
        self.steps = []
        self.values = []

    def __call__(self, stp):
        self.steps.append(stp)
        self.values.append(self.phi(stp))
        return self.values[-1]


@pytest.mark.parametrize("phi, ftol, gtol, start, paper_nfev, paper_stp", PAPER_CASES)
def test_paper_functions(phi, ftol, gtol, start, paper_nfev, paper_stp):
    f0, g0 = phi(0.0)
    counted = Counted(phi)
    result = ls.strong_wolfe(counted, f0, g0, start, ftol=ftol, gtol=gtol, xtol=1e-10, maxfev=50)
    print(f"start {start:g}: nfev {result.nfev}, stp {result.stp:.6g}, phi' {result.g:.2g}")
    assert result.success and result.status == ls.CONVERGED
    assert strong_wolfe_holds(result.stp, result.f, result.g, f0, g0, ftol, gtol)
    assert (result.f, result.g) == phi(result.stp)
    assert result.stp == counted.steps[-1] and result.nfev == len(counted.steps)
    assert result.nfev == paper_nfev
    assert result.stp == pytest.approx(paper_stp, rel=0.07)  # the tables print two digits


def test_paper_function_counts_summary(capsys):
    """Evaluation counts on all 24 runs of the paper, printed as a table (run pytest -s to see it)."""
    rows = []
    for name, phi, ftol, gtol, table in PAPER:
        f0, g0 = phi(0.0)
        counts = [ls.strong_wolfe(phi, f0, g0, start, ftol=ftol, gtol=gtol, xtol=1e-10, maxfev=50).nfev
                  for start in STARTS]
        rows.append(f"{name}: " + " ".join(f"{c:3d}" for c in counts))
        assert counts == [nfev for nfev, _ in table]
    with capsys.disabled():
        print("\nMoré-Thuente evaluations for starting steps 1e-3 1e-1 1e1 1e3")
        print("\n".join(rows))


# --- Agreement with SciPy ---------------------------------------------------------------------

@pytest.mark.parametrize("phi, ftol, gtol, start, paper_nfev, paper_stp", PAPER_CASES)
def test_matches_scipy_dcsrch(phi, ftol, gtol, start, paper_nfev, paper_stp):
    """SciPy's private DCSRCH implements the same algorithm: the same steps and evaluation counts."""
    dcsrch = pytest.importorskip("scipy.optimize._dcsrch")
    f0, g0 = phi(0.0)
    calls = []

    def value(a):
        calls.append(a)
        return phi(a)[0]

    search = dcsrch.DCSRCH(value, lambda a: phi(a)[1], ftol, gtol, 1e-10, 0.0, 1e10)
    scipy_stp, _, _, task = search(start, f0, g0, maxiter=50)
    ours = ls.strong_wolfe(phi, f0, g0, start, ftol=ftol, gtol=gtol, xtol=1e-10, maxfev=50)
    assert task.startswith(b"CONV")
    assert ours.stp == pytest.approx(scipy_stp, rel=1e-12)
    assert ours.nfev == len(calls)


def rosenbrock(x):
    f = np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return f, g


@pytest.mark.parametrize("seed", range(8))
def test_strong_wolfe_like_scipy_line_search(seed):
    """SciPy's line_search (a different algorithm) and ours both end at strong-Wolfe points."""
    from scipy.optimize import line_search

    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, size=5)
    f0, grad = rosenbrock(x)
    d = -grad * rng.uniform(0.1, 1.0, size=5) / np.linalg.norm(grad)   # a descent direction
    g0 = float(grad @ d)

    def phi(stp):
        f, g = rosenbrock(x + stp * d)
        return f, float(g @ d)

    ftol, gtol = 1e-4, 0.9
    ours = ls.strong_wolfe(phi, f0, g0, 1.0, ftol=ftol, gtol=gtol, maxfev=30)
    assert ours.success
    assert strong_wolfe_holds(ours.stp, ours.f, ours.g, f0, g0, ftol, gtol)
    alpha, *_ = line_search(lambda z: rosenbrock(z)[0], lambda z: rosenbrock(z)[1], x, d,
                            gfk=grad, old_fval=f0, c1=ftol, c2=gtol)
    assert alpha is not None
    assert strong_wolfe_holds(alpha, *phi(alpha), f0, g0, ftol, gtol)


# --- Quadratics: the exact minimizing step ----------------------------------------------------

@pytest.mark.parametrize("curvature, minimizer", [(1.0, 1.0), (3.0, 0.7), (1e4, 1e-5), (1e-4, 250.0)])
@pytest.mark.parametrize("start", [1e-3, 1.0, 1e3])
def test_quadratic_exact_step(curvature, minimizer, start):
    def phi(stp):
        return 0.5 * curvature * (stp - minimizer) ** 2, curvature * (stp - minimizer)

    f0, g0 = phi(0.0)
    result = ls.strong_wolfe(phi, f0, g0, start, gtol=1e-6, xtol=1e-12, maxfev=30)
    assert result.success
    assert result.stp == pytest.approx(minimizer, rel=1e-6)
    assert result.nfev <= 12


def test_quadratic_along_steepest_descent():
    """f(x) = x'Ax/2 - b'x along d = -grad f: the exact step is d'd / d'Ad."""
    rng = np.random.default_rng(0)
    m = rng.standard_normal((6, 6))
    a, b, x = m @ m.T + 6.0 * np.eye(6), rng.standard_normal(6), rng.standard_normal(6)
    d = b - a @ x

    def phi(stp):
        z = x + stp * d
        return 0.5 * z @ a @ z - b @ z, (a @ z - b) @ d

    f0, g0 = phi(0.0)
    result = ls.strong_wolfe(phi, f0, g0, 1.0, gtol=1e-8, xtol=1e-14, maxfev=30)
    assert result.success
    assert result.stp == pytest.approx((d @ d) / (d @ a @ d), rel=1e-8)


def test_infinite_stpmax():
    f0, g0 = phi_1(0.0)
    bounded = ls.strong_wolfe(phi_1, f0, g0, 1e-3, ftol=1e-3, gtol=0.1)
    unbounded = ls.strong_wolfe(phi_1, f0, g0, 1e-3, ftol=1e-3, gtol=0.1, stpmax=math.inf)
    assert unbounded == bounded and unbounded.success


def test_loose_gtol_accepts_the_first_step():
    result = ls.strong_wolfe(lambda s: ((s - 0.7) ** 2, 2.0 * (s - 0.7)), 0.49, -1.4, 1.0, gtol=0.9)
    assert result.success and result.stp == 1.0 and result.nfev == 1


# --- Random smooth functions ------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(50))
def test_random_smooth_functions_converge(seed):
    rng = np.random.default_rng(seed)
    quad, amp, freq = rng.uniform(0.01, 10.0), rng.uniform(0.0, 2.0), rng.uniform(0.1, 20.0)
    slope0 = -rng.uniform(0.1, 5.0)
    lin = slope0 - amp * freq   # so that phi'(0) = slope0 < 0

    def phi(s):
        return (quad * s * s + amp * math.sin(freq * s) + lin * s,
                2.0 * quad * s + amp * freq * math.cos(freq * s) + lin)

    f0, g0 = phi(0.0)
    ftol, gtol = rng.choice([1e-4, 1e-3, 0.1]), rng.choice([1e-2, 0.1, 0.9])
    start = 10.0 ** rng.uniform(-3, 3)
    result = ls.strong_wolfe(phi, f0, g0, start, ftol=ftol, gtol=gtol, xtol=1e-12, maxfev=40)
    assert result.success, result
    assert strong_wolfe_holds(result.stp, result.f, result.g, f0, g0, ftol, gtol)


# --- Invalid input ----------------------------------------------------------------------------

@pytest.mark.parametrize("g0", [0.0, 1.0, math.nan, -math.inf])
def test_g0_must_be_negative_and_finite(g0):
    with pytest.raises(ValueError, match="g0"):
        ls.MoreThuente(0.0, g0)
    with pytest.raises(ValueError, match="g0"):
        ls.strong_wolfe(lambda s: (0.0, 0.0), 0.0, g0)


@pytest.mark.parametrize("options, name", [
    ({"ftol": 0.0}, "ftol"), ({"ftol": 1.0}, "ftol"), ({"ftol": -1e-3}, "ftol"), ({"ftol": math.nan}, "ftol"),
    ({"gtol": 0.0}, "gtol"), ({"gtol": 1.5}, "gtol"), ({"gtol": math.nan}, "gtol"),
    ({"xtol": -0.1}, "xtol"), ({"xtol": math.inf}, "xtol"),
    ({"stpmin": -1.0}, "stpmin"), ({"stpmin": math.nan}, "stpmin"),
    ({"stpmin": 2.0, "stpmax": 1.0}, "stpmax"), ({"stpmax": 0.0}, "stpmax"), ({"stpmax": math.nan}, "stpmax"),
])
def test_invalid_options(options, name):
    with pytest.raises(ValueError, match=name):
        ls.MoreThuente(1.0, -1.0, **options)


def test_nonfinite_f0_rejected():
    with pytest.raises(ValueError, match="f0"):
        ls.MoreThuente(math.nan, -1.0)


@pytest.mark.parametrize("start, options", [(0.0, {}), (-1.0, {}), (math.nan, {}), (20.0, {"stpmax": 10.0}),
                                            (0.5, {"stpmin": 1.0})])
def test_first_step_out_of_range(start, options):
    search = ls.MoreThuente(0.0, -1.0, **options)
    with pytest.raises(ValueError, match="first step"):
        search.next_step(start, -0.1, -1.0)


@pytest.mark.parametrize("maxfev", [0, -3, 2.5, True])
def test_invalid_maxfev(maxfev):
    with pytest.raises(ValueError, match="maxfev"):
        ls.strong_wolfe(lambda s: (-s, -1.0), 0.0, -1.0, maxfev=maxfev)


# --- The reverse-communication interface ------------------------------------------------------

def test_reverse_communication_protocol():
    f0, g0 = phi_1(0.0)
    search = ls.MoreThuente(f0, g0, ftol=1e-3, gtol=0.1)
    stp, status, steps = 1e-3, ls.CONTINUE, []
    while status == ls.CONTINUE:
        steps.append(stp)
        stp, status = search.next_step(stp, *phi_1(stp))
    assert status == ls.CONVERGED == search.status
    assert stp == steps[-1] and search.nfev == len(steps) == 6
    assert len(set(steps)) == len(steps)          # no step is asked for twice
    with pytest.raises(RuntimeError, match="ended"):
        search.next_step(stp, *phi_1(stp))


def test_must_report_the_requested_step():
    search = ls.MoreThuente(0.0, -1.0)
    stp, status = search.next_step(1.0, -1.0, -1.0)
    assert status == ls.CONTINUE and stp > 1.0 and not search.bracketed
    with pytest.raises(ValueError, match="expected the step"):
        search.next_step(stp * 1.5, -1.0, -1.0)


def test_extrapolation_bounds():
    """Before bracketing, the step grows by a factor in [1.1, 4] of the last increment (5x at the start)."""
    search = ls.MoreThuente(0.0, -1.0)
    previous, stp = 0.0, 1.0
    for _ in range(5):
        new, status = search.next_step(stp, -stp, -1.0)   # phi(s) = -s: never brackets
        assert status == ls.CONTINUE
        if previous == 0.0:
            assert new == pytest.approx(5.0 * stp)
        else:
            assert stp + 1.1 * (stp - previous) <= new <= stp + 4.0 * (stp - previous)
        previous, stp = stp, new


# --- Warnings ---------------------------------------------------------------------------------

def test_stpmax_warning():
    result = ls.strong_wolfe(lambda s: (-s, -1.0), 0.0, -1.0, 1.0, stpmax=10.0)
    assert result.status == ls.STPMAX and not result.success
    assert result.stp == 10.0 and result.nfev == 3       # 1, 5 (extrapolated), 10 (clamped)
    assert result.message == ls.MESSAGES[ls.STPMAX]


def test_stpmax_warning_when_first_step_is_stpmax():
    result = ls.strong_wolfe(lambda s: (-s, -1.0), 0.0, -1.0, 2.0, stpmax=2.0)
    assert result.status == ls.STPMAX and result.nfev == 1


def test_stpmin_warning():
    def phi(s):
        return -s + s * s, -1.0 + 2.0 * s

    result = ls.strong_wolfe(phi, 0.0, -1.0, 5.0, stpmin=2.0)
    assert result.status == ls.STPMIN and not result.success
    assert result.stp == 2.0 and (result.f, result.g) == phi(2.0)


def test_xtol_warning_returns_the_best_step():
    """phi_2 needs |phi'| < 5e-8; with xtol = 0.1 the interval gets too small first."""
    f0, g0 = phi_2(0.0)
    counted = Counted(phi_2)
    result = ls.strong_wolfe(counted, f0, g0, 1e-3, ftol=0.1, gtol=0.1, xtol=0.1)
    assert result.status == ls.XTOL and not result.success
    assert result.f <= f0 + 0.1 * result.stp * g0
    assert result.stp == pytest.approx(1.596, rel=0.02)
    assert (result.f, result.g) == phi_2(result.stp) and result.stp == counted.steps[-1]


def test_rounding_warning_on_a_kink():
    """|phi'| never gets small (phi has a kink at its minimizer): the interval shrinks until rounding stops it."""
    def phi(s):
        return abs(s - 1.0) - 1.0, (1.0 if s > 1.0 else -1.0)

    result = ls.strong_wolfe(phi, 0.0, -1.0, 0.3, ftol=1e-4, gtol=0.5, xtol=0.0, maxfev=200)
    assert result.status == ls.ROUNDING and not result.success
    assert result.stp == pytest.approx(1.0, abs=1e-12)
    assert result.nfev < 200


def test_maxfev_honoured():
    f0, g0 = phi_3(0.0)
    for maxfev in (1, 2, 5):
        counted = Counted(phi_3)
        result = ls.strong_wolfe(counted, f0, g0, 1e-3, ftol=0.1, gtol=0.1, maxfev=maxfev)
        assert result.status == ls.MAXFEV and not result.success
        assert result.nfev == len(counted.steps) == maxfev
        assert result.stp == counted.steps[-1] and (result.f, result.g) == phi_3(result.stp)
        assert result.message == ls.MESSAGES[ls.MAXFEV]


def test_maxfev_one_can_still_converge():
    f0, g0 = phi_1(0.0)
    result = ls.strong_wolfe(phi_1, f0, g0, 10.0, ftol=1e-3, gtol=0.1, maxfev=1)
    assert result.success and result.nfev == 1


# --- Non-finite values ------------------------------------------------------------------------

def assert_never_reaches_a_nonfinite_step(counted):
    """No step evaluated by ``counted`` is as long as an earlier one where phi was non-finite."""
    barrier = math.inf
    for stp, (f, g) in zip(counted.steps, counted.values):
        assert stp < barrier
        if not (math.isfinite(f) and math.isfinite(g)):
            barrier = stp


def nan_beyond_two(s):
    """-s + s^2 (minimizer 0.5) on [0, 2], NaN beyond."""
    if s > 2.0:
        return math.nan, math.nan
    return -s + s * s, -1.0 + 2.0 * s


@pytest.mark.parametrize("start", [3.0, 10.0, 1e3, 1e8])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nonfinite_values_make_the_search_back_off(start, bad):
    def phi(s):
        if s > 2.0:
            return bad, -1.0   # the slope alone may look fine
        return nan_beyond_two(s)

    counted = Counted(phi)
    result = ls.strong_wolfe(counted, 0.0, -1.0, start, gtol=0.1, maxfev=30)
    assert result.success, result
    assert strong_wolfe_holds(result.stp, result.f, result.g, 0.0, -1.0, 1e-3, 0.1)
    assert result.stp == pytest.approx(0.5, abs=0.05)
    assert result.nfev <= 20
    assert_never_reaches_a_nonfinite_step(counted)


def test_nonfinite_slope_only():
    def phi(s):
        f, g = nan_beyond_two(s)
        return (-s + s * s, g)

    result = ls.strong_wolfe(phi, 0.0, -1.0, 100.0, gtol=0.1)
    assert result.success and result.stp == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("xtol, status, most_nfev", [(0.1, ls.XTOL, 8), (0.0, ls.ROUNDING, 60)])
def test_steps_stay_below_a_nonfinite_step(xtol, status, most_nfev):
    """A step where phi was non-finite bounds the search like a bracket end (xtol test included)."""
    def phi(s):   # decreasing up to 2, NaN beyond: no strong-Wolfe step exists
        return (-s, -1.0) if s < 2.0 else (math.nan, math.nan)

    counted = Counted(phi)
    result = ls.strong_wolfe(phi=counted, f0=0.0, g0=-1.0, stp=1.0, xtol=xtol, maxfev=100)
    assert not result.success and result.status == status
    assert result.nfev <= most_nfev
    assert result.stp < 2.0 and result.stp == counted.steps[-1] and result.f == -result.stp
    assert xtol == 0.0 or 2.0 - result.stp <= xtol * 2.0
    assert_never_reaches_a_nonfinite_step(counted)


def test_always_nonfinite_fails_honestly():
    counted = Counted(lambda s: (math.nan, math.nan))
    result = ls.strong_wolfe(counted, 0.0, -1.0, 1.0, maxfev=100)
    assert result.status == ls.NONFINITE and not result.success
    assert result.nfev == len(counted.steps) <= 25
    assert math.isnan(result.f) and result.stp == counted.steps[-1]
    assert counted.steps == sorted(counted.steps, reverse=True)


def test_nonfinite_at_stpmin_cannot_shorten():
    result = ls.strong_wolfe(lambda s: (math.nan, math.nan), 0.0, -1.0, 1.0, stpmin=1.0)
    assert result.status == ls.NONFINITE and result.nfev == 1
