"""Every example in the docstrings of the installed package runs and prints what it shows (``doctest``)."""
import doctest
import importlib
import pkgutil

import pytest

import fastopt

MODULES = sorted(name for _, name, _ in pkgutil.walk_packages(fastopt.__path__, "fastopt.")) + ["fastopt"]
# Modules that need an optional dependency; without it they are skipped, not failed.
OPTIONAL = {"torch": "torch", "matplotlib": "matplotlib", "mpi4py": "mpi4py"}
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def examples(name):
    """The module's doctests (its own names only), or a skip when an optional dependency is missing."""
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs {exc.name}")
        raise
    return [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, name) if t.examples]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example may write a file
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = []
    for test in examples(name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_the_doctests_are_collected():
    """The run above really sees the package's examples (a broken finder would pass vacuously)."""
    count = 0
    for name in MODULES:
        try:
            count += sum(len(t.examples) for t in examples(name))
        except pytest.skip.Exception:
            continue
    assert count >= 100
