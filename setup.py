"""Build script for fastopt's Cython extensions.

Metadata lives in ``pyproject.toml``; this file only describes the compiled
extensions and decides how to build them:

* OpenMP is used when the compiler can compile *and link* an OpenMP program
  (probed below, with the same compiler and linker commands, and so the same
  ``CFLAGS``, ``CPPFLAGS`` and ``LDFLAGS``, as the extensions).  Without it the
  build still succeeds and every kernel runs serially; a warning says so.
  ``FASTOPT_OPENMP=0`` forces a serial build; ``FASTOPT_OPENMP=1`` requires
  OpenMP, and the build fails if the probe does.
* The update-rule kernels, their declarations, ``fastopt.cython_kernels`` and
  ``csrc/fastopt.h`` are generated from the rule table ``src/fastopt/_rules.py``
  (``src/fastopt/_codegen.py``, run before Cython; it rewrites only what is out
  of date).
* ``FASTOPT_MARCH=native`` (or any ``-march`` value) targets a specific CPU;
  the default builds portable code for the compiler's baseline instruction set,
  plus, on x86-64, builds of the kernel modules (the update rules and the
  tensor-wise rules) for AVX2 + FMA and for AVX-512 that ``fastopt._kernels``
  selects at import where the CPU supports them.
* Floating-point contraction is switched off (``-ffp-contract=off``) so that
  every kernel performs exactly the IEEE operations written in its source, in
  the same order on every code path (scalar or SIMD, any thread count).
"""

import copy
import filecmp
import importlib.machinery
import itertools
import os
import platform
import shutil
import sys
import tempfile
import textwrap
import warnings

from setuptools import Extension, setup
from setuptools.errors import CompileError
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d %d\\n", n, omp_get_max_threads());
        return 0;
    }
    """
)


def openmp_flags(compiler_type):
    """Return (compile_args, link_args) that enable OpenMP for a compiler type."""
    if compiler_type == "msvc":
        return ["/openmp"], []
    return ["-fopenmp"], ["-fopenmp"]


def has_openmp(compiler, compile_args, link_args):
    """True when ``compiler`` can compile and link a small OpenMP program.

    Parameters
    ----------
    compiler : distutils-style CCompiler
        A customized compiler object (``build_ext.compiler``).
    compile_args, link_args : list of str
        The flags under test.
    """
    return openmp_probe(compiler, compile_args, link_args) is None


# Switches of a shared-object link that an executable link must not get (GCC/Clang on
# Linux, the BSDs and macOS); "-undefined" takes the next word as its value.
SHARED_LINK_ONLY = ("-shared", "-bundle", "-dynamiclib", "-Wl,-undefined,dynamic_lookup")


def probe_linker(compiler):
    """The command that links the probe: the extensions' linker, less the shared-object switches.

    distutils links executables with ``linker_exe``, which is the bare ``CC``:
    without ``LDFLAGS``, and without the ``CFLAGS`` that Python's build
    configuration (and setuptools) add to the extensions' link line.  A probe
    linked that way can fail where the extensions link fine (``-fsanitize=address``
    in CFLAGS and LDFLAGS needs the sanitizer runtime at link time), or succeed
    where they fail.  The extensions are linked with ``linker_so``; the probe is
    linked with the same words, minus the switches that make a shared object
    (an executable, unlike a shared object, must resolve every symbol, such as
    the OpenMP runtime's).  None where the compiler has no such linker (MSVC).
    """
    linker_so = getattr(compiler, "linker_so", None)
    if not linker_so:
        return None
    words, skip = [], False
    for word in linker_so:
        if skip:
            skip = False
        elif word == "-undefined":
            skip = True
        elif word not in SHARED_LINK_ONLY:
            words.append(word)
    return words


def openmp_probe(compiler, compile_args, link_args):
    """Build the OpenMP probe with ``compiler``; None on success, else why it failed.

    Compiled like an extension's source (``compiler_so``: CC, CFLAGS, CPPFLAGS
    and the position-independent-code flag), linked like an extension (see
    :func:`probe_linker`), with ``compile_args`` and ``link_args`` after them,
    where the extensions have their extra arguments.
    """
    tmp = tempfile.mkdtemp(prefix="fastopt-omp-")
    try:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as fh:
            fh.write(OPENMP_PROBE)
        linker = probe_linker(compiler)
        if linker is not None:
            compiler = copy.copy(compiler)  # the build's own compiler object keeps its linker_exe
            compiler.set_executable("linker_exe", linker)
        objects = compiler.compile([source], output_dir=tmp, extra_postargs=compile_args)
        compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=link_args)
        return None
    except Exception as exc:  # CompileError, LinkError, or a missing compiler
        return f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


OPENMP_SETTINGS = {"": "auto", "auto": "auto", "1": "on", "true": "on", "yes": "on", "on": "on",
                   "0": "off", "false": "off", "no": "off", "off": "off"}


def openmp_setting(environ=os.environ):
    """``FASTOPT_OPENMP`` read as "auto" (unset or empty), "on" (1, true, yes, on) or "off" (0, false, no, off)."""
    raw = environ.get("FASTOPT_OPENMP", "")
    try:
        return OPENMP_SETTINGS[raw.strip().lower()]
    except KeyError:
        raise ValueError(f"FASTOPT_OPENMP must be 1 (require OpenMP), 0 (build without it) or unset "
                         f"(use it where the compiler supports it); got {raw!r}") from None


def decide_openmp(compiler, compile_args, omp_compile, omp_link, setting):
    """Whether to build with OpenMP; warns when falling back to a serial build.

    ``compile_args`` are the extensions' other compile flags (the probe is
    built with them too); ``setting`` comes from :func:`openmp_setting`.
    With ``"on"`` a failed probe is an error, so that a build that was asked
    for OpenMP cannot quietly come out serial.
    """
    if setting == "off":
        reason = "disabled by FASTOPT_OPENMP"
    else:
        failure = openmp_probe(compiler, list(compile_args) + list(omp_compile), list(omp_link))
        if failure is None:
            return True
        if setting == "on":
            raise CompileError(
                "fastopt: FASTOPT_OPENMP=1 asks for OpenMP, but the compiler cannot build an OpenMP program "
                f"with this build's flags ({' '.join(omp_compile)} added to CFLAGS/CPPFLAGS, "
                f"{' '.join(omp_link)} to LDFLAGS): {failure}")
        reason = "the compiler cannot build OpenMP programs"
    warnings.warn(f"fastopt: building WITHOUT OpenMP ({reason}); kernels will run on one thread.")
    print(f"WARNING: fastopt: building without OpenMP ({reason})", file=sys.stderr)
    return False


def flags_changed(build_temp, flags):
    """Record ``flags`` in ``build_temp``; True if an earlier build there used others.

    setuptools skips extensions whose sources are older than their outputs, so
    without this a rebuild with other flags (``FASTOPT_OPENMP=0`` after an
    OpenMP build in the same tree, or other ``CFLAGS``) would silently keep
    the old binaries.
    """
    stamp = os.path.join(build_temp, "fastopt-build-flags.txt")
    wanted = "\n".join(flags)
    try:
        with open(stamp) as fh:
            changed = fh.read() != wanted
    except OSError:
        changed = True
    os.makedirs(build_temp, exist_ok=True)
    with open(stamp, "w") as fh:
        fh.write(wanted)
    return changed


def build_signature(compiler, compile_args, link_args):
    """What a build's objects depend on besides the sources, as lines for :func:`flags_changed`.

    The whole compile and link commands (where the environment's ``CC``,
    ``CFLAGS``, ``LDFLAGS`` ... end up), so that a sanitizer build, say, never
    reuses the objects of a plain one in the same tree, and fastopt's flags.
    """
    commands = [" ".join(getattr(compiler, attr, None) or []) for attr in ("compiler_so", "linker_so")]
    return commands + list(compile_args) + list(link_args)


# A file that needs each variant's instructions, so that a compiler (or assembler) that takes the flags
# but cannot emit the code drops the variant instead of failing the build.
VARIANT_PROBES = {
    "avx2": "#include <immintrin.h>\n__m256 fastopt_probe(__m256 a, __m256 b) { return _mm256_fmadd_ps(a, b, b); }\n",
    "avx512": "#include <immintrin.h>\n__m512 fastopt_probe(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }\n",
}


def compiles(compiler, compile_args, source="int fastopt_probe(int x) { return x + 1; }\n"):
    """True when ``compiler`` compiles the C ``source`` with ``compile_args``."""
    tmp = tempfile.mkdtemp(prefix="fastopt-flags-")
    try:
        path = os.path.join(tmp, "flags.c")
        with open(path, "w") as fh:
            fh.write(source)
        compiler.compile([path], output_dir=tmp, extra_postargs=compile_args)
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def is_gcc_like(compiler):
    return getattr(compiler, "compiler_type", "") in ("unix", "mingw32", "cygwin")


class BuildExt(build_ext):
    """build_ext that probes OpenMP and sets the optimisation flags once."""

    def build_extensions(self):
        compile_args, link_args = [], []
        if is_gcc_like(self.compiler):
            compile_args += ["-O3", "-ffp-contract=off", "-fno-math-errno"]
            march = os.environ.get("FASTOPT_MARCH", "").strip()
            if march:
                compile_args.append(f"-march={march}")

        omp_compile, omp_link = openmp_flags(self.compiler.compiler_type)
        if decide_openmp(self.compiler, compile_args, omp_compile, omp_link, openmp_setting()):
            compile_args += omp_compile
            link_args += omp_link

        for ext in list(self.extensions):
            isa = getattr(ext, "fastopt_isa", None)
            if isa and not compiles(self.compiler, compile_args + ext.extra_compile_args, VARIANT_PROBES[isa]):
                warnings.warn(f"fastopt: the compiler cannot target {isa}; building only the baseline kernels")
                self.extensions.remove(ext)
        self.remove_stale_modules()
        self.force = self.force or flags_changed(self.build_temp, build_signature(self.compiler, compile_args,
                                                                                  link_args))
        for ext in self.extensions:
            ext.extra_compile_args = compile_args + list(ext.extra_compile_args or [])
            ext.extra_link_args = link_args + list(ext.extra_link_args or [])
            flags_macro = '"' + " ".join(ext.extra_compile_args).replace('"', "") + '"'
            ext.define_macros = list(ext.define_macros or []) + [("FASTOPT_BUILD_FLAGS", flags_macro)]
        super().build_extensions()


    def remove_stale_modules(self):
        """Remove every fastopt extension module in the build's output trees that no extension of this build
        writes: a variant the compiler cannot target now, or a module that moved or was dropped, would
        otherwise be loaded (or packaged into a wheel) instead of this build's code."""
        wanted = {os.path.abspath(self.get_ext_fullpath(ext.name)) for ext in self.extensions}
        roots = [os.path.join(self.build_lib, "fastopt")] + ([os.path.join("src", "fastopt")] if self.inplace else [])
        for root in roots:
            for folder, _, files in os.walk(root):
                for name in files:
                    path = os.path.abspath(os.path.join(folder, name))
                    if name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)) and path not in wanted:
                        os.remove(path)


class BuildPy(build_py):
    """build_py that also ships the C headers csrc/fastopt.h and the fastopt_storage.h it includes
    as fastopt/include/.

    csrc/ stays the headers' only copy in the source tree; fastopt.get_include()
    finds them in either place.
    """

    HEADERS = [os.path.join("csrc", "fastopt.h"), os.path.join("csrc", "fastopt_storage.h")]

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "fastopt", "include")
        self.mkpath(target)
        for header in self.HEADERS:
            self.copy_file(header, target)

    def get_outputs(self, *args, **kwargs):
        target = os.path.join(self.build_lib, "fastopt", "include")
        return super().get_outputs(*args, **kwargs) + [
            os.path.join(target, os.path.basename(h)) for h in self.HEADERS]


# Instruction-set variants of the kernel modules: the same source, compiled again with these
# flags under another module name; fastopt._kernels picks one at import.
KERNEL_VARIANTS = {
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mprefer-vector-width=512"],
}


# The modules built once per variant, and the files each one's copy needs (Cython names a module after its file).
VARIANT_MODULES = {"_update_rules": ("pyx", "pxd"), "_tensorwise": ("pyx",)}
VARIANTS_DIR = "build/variants"


def kernel_variant_sources(build_dir=VARIANTS_DIR):
    """Copy each of VARIANT_MODULES' files to <module>_<isa>.* under ``build_dir``:
    ``{(module, isa): the copy's .pyx}``."""
    if os.environ.get("FASTOPT_MARCH") or platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    out = {}
    for (module, suffixes), isa in itertools.product(VARIANT_MODULES.items(), KERNEL_VARIANTS):
        path = module.replace(".", "/")
        folder = os.path.join(build_dir, "fastopt", os.path.dirname(path))
        os.makedirs(folder, exist_ok=True)
        for ext in suffixes:
            target = os.path.join(folder, f"{os.path.basename(path)}_{isa}.{ext}")
            source = f"src/fastopt/{path}.{ext}"
            if not (os.path.exists(target) and filecmp.cmp(source, target, shallow=False)):
                shutil.copyfile(source, target)  # only when changed: a copy is newer than the build's outputs
        out[module, isa] = os.path.join(folder, f"{os.path.basename(path)}_{isa}.pyx")
    return out


def generate_kernel_sources(here):
    """Run src/fastopt/_codegen.py: the kernel layer, written from the rule table (only what changed)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fastopt_codegen", os.path.join(here, "src", "fastopt", "_codegen.py"))
    codegen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(codegen)
    for target in codegen.write(here):
        print(f"fastopt: generated {target}")


def extensions():
    from Cython.Build import cythonize

    here = os.path.dirname(os.path.abspath(__file__))
    generate_kernel_sources(here)
    common = dict(include_dirs=[os.path.join(here, "csrc")])
    modules = ["_openmp_helpers", "_update_rules", "_stream", "_memory", "optim._stepping", "_tensorwise",
               "second_order._vectors", "second_order._bounds", "second_order._cholesky", "nn._clip",
               "nn._batchnorm", "cython_kernels"]
    exts = [Extension(f"fastopt.{name}", [f"src/fastopt/{name.replace('.', '/')}.pyx"], **common) for name in modules]
    for (module, isa), source in kernel_variant_sources().items():
        ext = Extension(f"fastopt.{module}_{isa}", [source], extra_compile_args=KERNEL_VARIANTS[isa], **common)
        ext.fastopt_isa = isa
        exts.append(ext)
    return cythonize(
        exts,
        build_dir="build/cython",  # keep generated C out of the source tree and the wheel
        include_path=["src", VARIANTS_DIR],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    )


if __name__ == "__main__":
    setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt, "build_py": BuildPy})
