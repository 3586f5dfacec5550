"""The types: ``mypy --strict`` passes on the README's examples (typical user code) and on the typed modules.

Needs mypy (and, for the README's SciPy and setuptools imports, scipy-stubs and types-setuptools); skipped
without it, unless FASTOPT_EXPECT_MYPY=1 (CI), which makes a missing mypy a failure.  The README's blocks
are checked as one file, in order, as a reader runs them (``--allow-redefinition``: they reuse names such
as ``opt`` for another optimizer); the torch example only where torch is installed.
"""
import importlib.metadata
import importlib.util
import os
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
EXPECTED = os.environ.get("FASTOPT_EXPECT_MYPY") == "1"


def _installed(distribution):
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


MISSING = [name for name in ("mypy", "scipy-stubs", "types-setuptools") if not _installed(name)]
if MISSING and EXPECTED:
    raise RuntimeError(f"FASTOPT_EXPECT_MYPY=1 but {', '.join(MISSING)} is not installed")
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {' and '.join(MISSING)} (pip install mypy scipy-stubs "
                                                      "types-setuptools)")


def mypy(*args):
    from mypy import api

    out, err, status = api.run(["--strict", "--no-error-summary", "--show-error-codes", *args])
    return status, out + err


def readme_examples():
    if not README.exists():
        pytest.skip("needs the source tree")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    if importlib.util.find_spec("torch") is None:
        blocks = [b for b in blocks if "import torch" not in b]
    return "\n\n".join(blocks)


def test_the_readme_examples_pass_mypy_strict(tmp_path):
    source = tmp_path / "readme_examples.py"
    source.write_text(readme_examples())
    # torch 2.13 leaves Tensor.backward unannotated: the one untyped call, of torch's, that strict allows here
    status, report = mypy("--allow-redefinition", "--untyped-calls-exclude=torch", "--cache-dir",
                          str(tmp_path / "cache"), str(source))
    assert status == 0, report


def test_an_untyped_call_would_be_caught(tmp_path):
    """The check above is not vacuous: the same mypy run flags an untyped function and a wrong argument."""
    source = tmp_path / "user.py"
    source.write_text("import fastopt\n\ndef untyped(x):\n    return x\n\nuntyped(1)\n"
                      "fastopt.set_num_threads('two')\n")
    status, report = mypy("--cache-dir", str(tmp_path / "cache"), str(source))
    assert status != 0
    assert "[no-untyped-def]" in report and "[arg-type]" in report


# The package's optional dependencies whose types its modules use; without one, mypy cannot check them.
TYPED_PEERS = ("torch", "matplotlib", "mpi4py")


def test_the_package_passes_mypy_strict(tmp_path, monkeypatch):
    """Every module of the installed package, stubs of its compiled modules included, is checked in strict mode."""
    absent = [name for name in TYPED_PEERS if importlib.util.find_spec(name) is None]
    if absent:
        pytest.skip(f"the modules that use {', '.join(absent)} need it installed to be checked")
    monkeypatch.chdir(tmp_path)  # the installed fastopt, not a source tree that may sit in the working directory
    status, report = mypy("--cache-dir", str(tmp_path / "cache"), "-p", "fastopt")
    assert status == 0, report
