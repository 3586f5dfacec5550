"""pytest plugin: SciPy's own minimize tests with the call routed to fastopt.

Loaded by ``tests/test_scipy_suite.py`` into a separate pytest run over the
installed SciPy's ``scipy.optimize`` tests.  ``scipy.optimize.minimize`` (and
every test module's own ``minimize`` name) is replaced by a router that sends
the methods fastopt implements -- BFGS, Newton-CG and L-BFGS-B, also when
SciPy would pick them itself (no method: BFGS, or L-BFGS-B with bounds) --
to ``fastopt.minimize`` with the same arguments, and everything else to
SciPy.  The run records, for every test that reached fastopt, how it ended,
and writes that as JSON to the file named by ``FASTOPT_SUITE_REPORT``.
"""
import json
import os

import pytest
import scipy.optimize
import scipy.optimize._minimize as scipy_minimize_module

import fastopt

ROUTED = {"bfgs": "BFGS", "newton-cg": "Newton-CG", "l-bfgs-b": "L-BFGS-B"}
_scipy_minimize = scipy_minimize_module.minimize
_running = [None]     # node id of the test being run
_reached = set()      # node ids of the tests that called fastopt
_outcomes = {}        # node id -> "passed" | "failed" | "skipped"


def _fastopt_method(args, kwargs):
    """The fastopt method a SciPy call asks for, or None when SciPy keeps it."""
    method = args[3] if len(args) > 3 else kwargs.get("method")
    if method is None:
        constraints = args[8] if len(args) > 8 else kwargs.get("constraints", ())
        if constraints:
            return None  # SciPy picks SLSQP
        bounds = args[7] if len(args) > 7 else kwargs.get("bounds")
        return "L-BFGS-B" if bounds is not None else "BFGS"
    return ROUTED.get(method.lower()) if isinstance(method, str) else None


def minimize(*args, **kwargs):
    method = _fastopt_method(args, kwargs)
    if method is None:
        return _scipy_minimize(*args, **kwargs)
    _reached.add(_running[0])
    if len(args) > 3:
        args = args[:3] + (method,) + args[4:]
    else:
        kwargs["method"] = method
    return fastopt.minimize(*args, **kwargs)


def _key(item):
    """``module::Class::test[params]``: the node id without the file's path."""
    return "::".join([item.module.__name__.rsplit(".", 1)[-1], *item.nodeid.split("::")[1:]])


def pytest_collection_modifyitems(session, config, items):
    scipy.optimize.minimize = minimize
    scipy_minimize_module.minimize = minimize
    for item in items:
        if getattr(item.module, "minimize", None) is _scipy_minimize:
            item.module.minimize = minimize


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _running[0] = _key(item)
    yield
    _running[0] = None


def pytest_runtest_logreport(report):
    key = _running[0]
    if key is None:
        return
    if report.failed:
        _outcomes[key] = "failed"
    elif report.skipped and hasattr(report, "wasxfail"):
        _outcomes.setdefault(key, "xfailed")
    elif report.skipped:
        _outcomes.setdefault(key, "skipped")
    elif report.when == "call":
        _outcomes.setdefault(key, "passed")


def pytest_sessionfinish(session):
    path = os.environ.get("FASTOPT_SUITE_REPORT")
    if path:
        with open(path, "w") as out:
            json.dump({key: _outcomes.get(key, "failed") for key in sorted(_reached)}, out, indent=1)
