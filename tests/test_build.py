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


def _customized_compiler():
    import setuptools  # noqa: F401  (supplies distutils on Python >= 3.12)
    from distutils.ccompiler import new_compiler
    from distutils.sysconfig import customize_compiler

    cc = new_compiler()
    customize_compiler(cc)  # reads CC, CFLAGS, CPPFLAGS, LDFLAGS, LDSHARED from the environment now
    return cc


@pytest.fixture(scope="module")
def compiler():
    return _customized_compiler()


@pytest.fixture
def compiler_with(monkeypatch):
    """A compiler customized as setuptools would under the given environment variables."""
    def make(**env):
        for name in ("CFLAGS", "CPPFLAGS", "LDFLAGS"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        cc = _customized_compiler()
        if getattr(cc, "compiler_type", "") != "unix":
            pytest.skip("needs a Unix-style compiler (CFLAGS/LDFLAGS)")
        return cc
    return make


def _links_with(compiler, flags):
    """Whether the compiler driver links a trivial executable with ``flags`` (say, a sanitizer's runtime)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp, "t.c")
        src.write_text("int main(void) { return 0; }\n")
        try:
            done = subprocess.run([compiler.compiler[0], *flags, str(src), "-o", str(pathlib.Path(tmp, "t"))],
                                  capture_output=True)
        except OSError:
            return False
        return done.returncode == 0


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


def test_openmp_probe_links_with_the_users_ldflags(setup_module_namespace, compiler_with):
    """Flags that the sanitizer runtimes need at link time must reach the probe's link.

    With ``-fsanitize=address`` in CFLAGS the probe's object file calls into
    the ASan runtime; it links only with ``-fsanitize=address`` on the link
    line too, as LDFLAGS puts it on the extensions' link line.  A probe linked
    without LDFLAGS failed here, and the build went serial without a word.
    """
    ns = setup_module_namespace
    omp = ns["openmp_flags"]("unix")
    plain = compiler_with()
    if not ns["has_openmp"](plain, *omp):
        pytest.skip("no OpenMP here")
    flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    if not _links_with(plain, flags):
        pytest.skip("the compiler cannot link with AddressSanitizer here")
    cc = compiler_with(CFLAGS=" ".join(flags), LDFLAGS=" ".join(flags))
    assert ns["has_openmp"](cc, *omp), ns.get("openmp_probe", lambda *a: "")(cc, *omp)


def test_openmp_probe_fails_where_ldflags_break_the_link(setup_module_namespace, compiler_with):
    """An LDFLAGS library that does not exist breaks the extensions' link, so it must break the probe's."""
    ns = setup_module_namespace
    omp = ns["openmp_flags"]("unix")
    if not ns["has_openmp"](compiler_with(), *omp):
        pytest.skip("no OpenMP here")
    cc = compiler_with(LDFLAGS="-lfastopt_no_such_library")
    assert not ns["has_openmp"](cc, *omp)
    assert "fastopt_no_such_library" in ns["openmp_probe"](cc, *omp)
    cc = compiler_with(CPPFLAGS="-DFASTOPT_PROBE_MUST_FAIL=1 -include fastopt_no_such_header.h")
    assert not ns["has_openmp"](cc, *omp)  # CPPFLAGS reach the compile step


def test_openmp_requested_but_unavailable_fails_the_build(setup_module_namespace, compiler_with, recwarn):
    ns = setup_module_namespace
    omp = ns["openmp_flags"]("unix")
    if not ns["has_openmp"](compiler_with(), *omp):
        pytest.skip("no OpenMP here")
    cc = compiler_with(LDFLAGS="-lfastopt_no_such_library")
    with pytest.raises(Exception, match="FASTOPT_OPENMP=1 asks for OpenMP.*fastopt_no_such_library"):
        ns["decide_openmp"](cc, ["-O1"], *omp, "on")
    assert ns["decide_openmp"](cc, ["-O1"], *omp, "auto") is False  # nothing asked: serial, with a warning
    assert any("WITHOUT OpenMP" in str(w.message) for w in recwarn.list)
    assert ns["decide_openmp"](cc, ["-O1"], *omp, "off") is False
    good = compiler_with()
    assert ns["decide_openmp"](good, ["-O1"], *omp, "on") is True
    assert ns["decide_openmp"](good, ["-O1"], *omp, "auto") is True


def test_fastopt_openmp_setting():
    ns = runpy.run_path(str(SETUP_PY), run_name="fastopt_setup") if SETUP_PY.exists() else pytest.skip("no setup.py")
    read = ns["openmp_setting"]
    assert read({}) == "auto" and read({"FASTOPT_OPENMP": " "}) == "auto"
    assert [read({"FASTOPT_OPENMP": v}) for v in ("1", "ON", "true", "0", "off", "No")] == ["on"] * 3 + ["off"] * 3
    with pytest.raises(ValueError, match="FASTOPT_OPENMP must be"):
        read({"FASTOPT_OPENMP": "maybe"})


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


def test_installed_extension_modules_are_built_from_the_sources():
    """Every compiled module of the installed package has its .pyx in src/ (a module that moved or was dropped
    does not linger: setup.py removes extension files no extension of the build writes)."""
    import importlib.machinery

    src = pathlib.Path(__file__).resolve().parents[1] / "src" / "fastopt"
    if not src.exists():
        pytest.skip("needs the source tree")
    installed = pathlib.Path(fastopt.__file__).parent
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for path in installed.rglob("*"):
        if path.name.endswith(suffixes):
            stem = path.name[:path.name.index(".")]
            for variant in ("_avx2", "_avx512"):
                stem = stem[:-len(variant)] if stem.endswith(variant) else stem
            assert (src / path.parent.relative_to(installed) / f"{stem}.pyx").exists(), path


def test_a_rebuild_with_other_cflags_or_ldflags_recompiles(setup_module_namespace, compiler_with, tmp_path):
    ns = setup_module_namespace
    plain = ns["build_signature"](compiler_with(), ["-O3"], [])
    assert ns["flags_changed"](str(tmp_path), plain) is True               # no stamp yet: a first build
    assert ns["flags_changed"](str(tmp_path), plain) is False              # same commands: objects reused
    sanitized = ns["build_signature"](compiler_with(CFLAGS="-fsanitize=address", LDFLAGS="-fsanitize=address"),
                                      ["-O3"], [])
    assert ns["flags_changed"](str(tmp_path), sanitized) is True           # other CFLAGS/LDFLAGS: rebuilt
    assert ns["flags_changed"](str(tmp_path), plain) is True
