"""SciPy's own ``minimize`` tests, with the call routed to fastopt: the drop-in promise, checked.

The installed SciPy's tests (``scipy/optimize/tests``: ``test_optimize``,
``test_lbfgsb_hessinv``, ``test_lbfgsb_setulb``) run in a separate pytest
process with ``tests/scipy_suite/route_to_fastopt.py`` loaded: every call of
``scipy.optimize.minimize`` that asks for BFGS, Newton-CG or L-BFGS-B (or
gets one of them as SciPy's default) goes to ``fastopt.minimize`` with the
same arguments.  Each test that reached fastopt must pass, except those in
``CANNOT_PASS``, each with the reason; a listed test that passes is an
error too, so the list stays true.

The list was made against SciPy 1.17; other SciPy versions ship other tests,
so there the run is skipped rather than judged against a list written for
another suite.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import scipy

AUDITED_SCIPY = ("1.17",)
MODULES = ["scipy.optimize.tests.test_optimize", "scipy.optimize.tests.test_lbfgsb_hessinv",
           "scipy.optimize.tests.test_lbfgsb_setulb"]
PLUGIN_DIR = Path(__file__).parent / "scipy_suite"

# Deliberate differences: fastopt calls a run successful only when the gradient test passed (SciPy's
# L-BFGS-B also on the relative decrease of f), and gives the user's functions read-only arrays.
STRICT_SUCCESS = "fastopt's success needs the gradient test (README, second order: differences from SciPy)"
INTERNALS = "inspects SciPy internals that fastopt does not have"

CANNOT_PASS = {
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    if not scipy.__version__.startswith(AUDITED_SCIPY):
        pytest.skip(f"CANNOT_PASS was audited against SciPy {AUDITED_SCIPY}; this is SciPy {scipy.__version__}")
    pytest.importorskip("scipy.optimize.tests.test_optimize", reason="this SciPy was installed without its tests")
    work = tmp_path_factory.mktemp("scipy_suite")
    report = work / "report.json"
    env = dict(os.environ, FASTOPT_SUITE_REPORT=str(report),
               PYTHONPATH=os.pathsep.join(filter(None, [str(PLUGIN_DIR), os.environ.get("PYTHONPATH")])))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "route_to_fastopt", "-p", "no:cacheprovider",
                          "-p", "no:randomly", "--pyargs", *MODULES],
                         cwd=work, env=env, capture_output=True, text=True, timeout=900)
    if not report.exists():
        pytest.fail(f"the SciPy suite did not run:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}")
    return json.loads(report.read_text()), run.stdout


def test_the_router_reaches_fastopt(outcomes):
    reached, _ = outcomes
    methods = {"bfgs": 0, "newton-cg": 0, "l-bfgs-b": 0}
    for key in reached:
        for method in methods:
            methods[method] += method in key.lower()
    assert len(reached) >= 100 and all(methods.values()), methods


def test_every_routed_scipy_test_passes(outcomes):
    reached, log = outcomes
    failed = sorted(key for key, outcome in reached.items() if outcome == "failed" and key not in CANNOT_PASS)
    assert not failed, f"{len(failed)} SciPy tests fail with fastopt:\n" + "\n".join(failed) + "\n" + log[-6000:]


def test_the_list_of_tests_that_cannot_pass_is_true(outcomes):
    reached, _ = outcomes
    stale = sorted(key for key in CANNOT_PASS if reached.get(key) != "failed")
    assert not stale, f"listed in CANNOT_PASS but not failing (or no longer reaching fastopt): {stale}"
