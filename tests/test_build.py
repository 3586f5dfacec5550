"""How fastopt was built: the OpenMP probe, and what the installed package contains."""
import os
import pathlib
import runpy

import pytest

import fastopt

SETUP_PY = pathlib.Path(__file__).resolve().parents[1] / "setup.py"


@pytest.fixture(scope="module")
def setup_module_namespace():
    if not SETUP_PY.exists():
        pytest.skip("needs the source tree")
    return runpy.run_path(str(SETUP_PY), run_name="fastopt_setup")  # defines helpers, does not build


@pytest.fixture(scope="module")
def compiler():
    import setuptools  # noqa: F401  (supplies distutils on Python >= 3.12)
    from distutils.ccompiler import new_compiler
    from distutils.sysconfig import customize_compiler

    cc = new_compiler()
    customize_compiler(cc)
    return cc


def test_openmp_probe_rejects_what_cannot_compile_or_link(setup_module_namespace, compiler):
    has_openmp = setup_module_namespace["has_openmp"]
    assert not has_openmp(compiler, ["-fno-such-openmp-flag"], [])
    # Without -fopenmp the probe still compiles (the pragma is ignored, omp.h is found)
    # but cannot link omp_get_max_threads: a compile-only probe would wrongly say yes.
    assert not has_openmp(compiler, [], [])


def test_openmp_probe_accepts_the_flags_this_build_used(setup_module_namespace, compiler):
    if not fastopt.build_info()["openmp"]:
        pytest.skip("serial build")
    ns = setup_module_namespace
    assert ns["has_openmp"](compiler, *ns["openmp_flags"](compiler.compiler_type))


@pytest.mark.skipif(os.environ.get("FASTOPT_EXPECT_OPENMP") not in ("0", "1"),
                    reason="set FASTOPT_EXPECT_OPENMP=1 (or 0) to say how this build must have gone")
def test_openmp_is_as_expected():
    assert fastopt.build_info()["openmp"] == (os.environ["FASTOPT_EXPECT_OPENMP"] == "1")


def test_installed_package_ships_no_generated_c():
    root = pathlib.Path(fastopt.__file__).parent
    assert not list(root.rglob("*.c")) and not list(root.rglob("*.cpp"))
    assert list(root.glob("_update_rules*.pxd")), "the .pxd files are part of the package"


def test_installed_modules_match_the_source_tree():
    """A module deleted from src/ must not linger in the installed package (stale build/ dirs)."""
    src = pathlib.Path(__file__).resolve().parents[1] / "src" / "fastopt"
    if not src.exists():
        pytest.skip("needs the source tree")
    installed = pathlib.Path(fastopt.__file__).parent
    if installed == src:
        pytest.skip("running from the source tree")

    def modules(root):
        return {p.relative_to(root).as_posix() for p in root.rglob("*.py")}

    assert modules(installed) == modules(src)
