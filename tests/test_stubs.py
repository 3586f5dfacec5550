"""The type stubs of the compiled modules (``<module>.pyi`` next to each ``.pyx``) say what the modules hold.

For each compiled module with a stub: every name the stub defines exists at run time, every function's
parameters are the compiled function's (names and which have defaults, as far as Cython's signatures
tell), and every name fastopt's own Python code takes from the module is in the stub (so mypy checks
those uses instead of seeing Any).  Every compiled module that code imports has a stub, and the stubs
pass ``mypy --strict`` (skipped without mypy unless FASTOPT_EXPECT_MYPY=1, which makes that a failure).
"""
import ast
import importlib
import inspect
import os
import pathlib
import re
from collections import defaultdict

import pytest

import fastopt
from fastopt import _kernels, _rules

PACKAGE = pathlib.Path(fastopt.__file__).resolve().parent
EXPECT_MYPY = os.environ.get("FASTOPT_EXPECT_MYPY") == "1"

# The compiled modules: one .pyx each (the generated ones included; an installed package has none, so
# those are listed too).  The kernel builds fastopt._kernels loads by name (_avx2, _avx512) share the
# baseline's stub.
COMPILED = ("fastopt._memory", "fastopt._stream", "fastopt._openmp_helpers", "fastopt._tensorwise",
            "fastopt._update_rules", "fastopt.cython_kernels", "fastopt.optim._stepping",
            "fastopt.second_order._vectors", "fastopt.second_order._bounds", "fastopt.second_order._cholesky",
            "fastopt.nn._clip", "fastopt.nn._batchnorm")
# Modules fastopt._kernels imports with importlib (the build it chose), by the names Python code reaches them as.
DYNAMIC = {"fastopt._kernels.kernels": "fastopt._update_rules", "fastopt._kernels.tensorwise": "fastopt._tensorwise"}
# What each of those is in this process.
LOADED = {"fastopt._update_rules": _kernels.kernels, "fastopt._tensorwise": _kernels.tensorwise}


def _path(module, suffix):
    return PACKAGE.joinpath(*module.split(".")[1:]).with_suffix(suffix)


STUBS = [m for m in COMPILED if _path(m, ".pyi").exists()]


def test_the_list_of_compiled_modules_is_complete():
    sources = {".".join(("fastopt",) + p.relative_to(PACKAGE).with_suffix("").parts) for p in PACKAGE.rglob("*.pyx")}
    assert sources <= set(COMPILED), f"compiled modules missing from COMPILED: {sorted(sources - set(COMPILED))}"


# --------------------------------------------------------------------------
# What fastopt's own Python code takes from the compiled modules
# --------------------------------------------------------------------------
def _module_name(path):
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(("fastopt",) + (parts[:-1] if parts[-1] == "__init__" else parts))


def _dotted(node):
    """"a.b.c" for the expression a.b.c (names and attributes only), else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _compiled_uses():
    """{compiled module: {names fastopt's Python code takes from it}}, for every compiled module it imports.

    ``from M import name``; ``import M`` or ``from P import M`` (or a module bound to a name, as
    fastopt._kernels binds the kernel builds) followed by ``M.name``.
    """
    uses = defaultdict(set)
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        bound = {}  # local name -> the dotted name it stands for
        if module == "fastopt._kernels":
            bound.update(kernels="fastopt._kernels.kernels", tensorwise="fastopt._kernels.tensorwise")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                base = DYNAMIC.get(base, base)
                for alias in node.names:
                    full = DYNAMIC.get(f"{base}.{alias.name}", f"{base}.{alias.name}")
                    bound[alias.asname or alias.name] = full
                    if base in COMPILED:
                        uses[base].add(alias.name)
                    elif full in COMPILED:
                        uses.setdefault(full, set())  # imported; its names are found below
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        bound[alias.asname] = alias.name
                    else:
                        bound[alias.name.split(".")[0]] = alias.name.split(".")[0]
                    if alias.name in COMPILED:
                        uses.setdefault(alias.name, set())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                name = _dotted(node.value)
                if name is None or name.split(".")[0] not in bound:
                    continue
                head, _, rest = name.partition(".")
                target = bound[head] + (f".{rest}" if rest else "")
                target = DYNAMIC.get(target, target)
                if target in COMPILED:
                    uses[target].add(node.attr)
    return uses


USES = _compiled_uses()


def test_the_scan_finds_the_imports_it_should():
    """The scan is not vacuous: imports of each kind that fastopt's code is known to make are found."""
    assert "byte_span" in USES["fastopt._memory"]  # from M import name
    assert "power_sum" in USES["fastopt.nn._clip"]  # from P import M; M.name
    assert {"BoundStep", "needed", "BUILD"} <= USES["fastopt._update_rules"]  # through fastopt._kernels
    assert "pieces" in USES["fastopt._tensorwise"]  # from fastopt._kernels import tensorwise; tensorwise.name


def test_every_compiled_module_python_code_imports_has_a_stub():
    missing = sorted(set(USES) - set(STUBS))
    assert not missing, f"compiled modules imported by fastopt's Python code without a .pyi stub: {missing}"


# --------------------------------------------------------------------------
# The stubs against the modules
# --------------------------------------------------------------------------
def _stub(module):
    path = _path(module, ".pyi")
    if not path.exists():
        pytest.skip(f"no stub at {path}")
    return ast.parse(path.read_text(), filename=str(path))


def _decorators(node):
    return {(_dotted(d.func) if isinstance(d, ast.Call) else _dotted(d) or "").rpartition(".")[2]
            for d in node.decorator_list}


def _typing_only(node):
    """True for what a stub defines for the checker alone: type aliases, type variables, @type_check_only classes."""
    if isinstance(node, ast.ClassDef):
        return "type_check_only" in _decorators(node)
    if isinstance(node, ast.AnnAssign):
        return (_dotted(node.annotation) or "").rpartition(".")[2] == "TypeAlias"
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
        return (_dotted(node.value.func) or "").rpartition(".")[2] in ("TypeVar", "ParamSpec", "TypeVarTuple",
                                                                       "NewType")
    return isinstance(node, ast.TypeAlias) if hasattr(ast, "TypeAlias") else False


def _definitions(body):
    """[(name, node)] of the names a stub's module or class body defines (the typing-only ones left out)."""
    out = []
    for node in body:
        if _typing_only(node):
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.append((node.name, node))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out.append((node.target.id, node))
        elif isinstance(node, ast.Assign):
            out += [(t.id, node) for t in node.targets if isinstance(t, ast.Name)]
    return out


def _runtimes(module):
    """The module, and the kernel build fastopt uses where that is another module of the same source."""
    out = [importlib.import_module(module)]
    if module in LOADED and LOADED[module] is not out[0]:
        out.append(LOADED[module])
    return out


@pytest.mark.parametrize("module", STUBS)
def test_every_name_a_stub_defines_exists(module):
    tree = _stub(module)
    for runtime in _runtimes(module):
        for name, node in _definitions(tree.body):
            assert hasattr(runtime, name), f"{module}.pyi defines {name}, which {runtime.__name__} lacks"
            if isinstance(node, ast.ClassDef):
                cls = getattr(runtime, name)
                assert inspect.isclass(cls), f"{runtime.__name__}.{name} is no class"
                for member, _ in _definitions(node.body):
                    assert hasattr(cls, member), f"{module}.pyi: {name}.{member} is not in {runtime.__name__}"


def _stub_parameters(node, method):
    """[(name, has a default, default if a literal else ...)] of a stub's def, ``self`` left out of a method."""
    a = node.args
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + a.defaults
    params = list(zip(positional, defaults)) + list(zip(a.kwonlyargs, a.kw_defaults))
    if a.vararg:
        params.insert(len(positional), (a.vararg, None))
    if a.kwarg:
        params.append((a.kwarg, None))
    if method and "staticmethod" not in _decorators(node):
        params = params[1:]
    out = []
    for arg, default in params:
        try:
            value = ... if default is None else ast.literal_eval(default)
        except ValueError:
            value = ...
        out.append((arg.arg, default is not None, value))
    return out


def _embedded_parameters(cls):
    """[(name, has a default, default)] from the signature Cython embeds at the top of a class's docstring
    (``embedsignature``: ``Name(type arg, arg=default, ...)``), or None."""
    first = (cls.__doc__ or "").split("\n", 1)[0]
    match = re.fullmatch(rf"{re.escape(cls.__name__)}\((.*)\)", first.strip())
    if match is None:
        return None
    out = []
    for piece in filter(None, (p.strip() for p in match.group(1).split(","))):
        declared, has_default, default = piece.partition("=")
        try:
            value = ast.literal_eval(default.strip()) if has_default else ...
        except ValueError:
            value = ...
        out.append((declared.split()[-1].lstrip("*"), bool(has_default), value))
    return out


def _runtime_parameters(function, method):
    """[(name, has a default, default)] of a compiled function, ``self`` left out of a method; None where
    Python gives no signature (or only a slot wrapper's ``*args, **kwargs``)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    params = list(signature.parameters.values())
    if method:
        params = params[1:]
    if params and all(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        return None
    return [(p.name, p.default is not p.empty, ... if p.default is p.empty else p.default) for p in params]


def _functions(tree):
    """(qualified name, stub node, is a method) of every def in a stub, overload variants included."""
    for name, node in _definitions(tree.body):
        if isinstance(node, ast.FunctionDef):
            yield name, node, False
        elif isinstance(node, ast.ClassDef):
            for member, child in _definitions(node.body):
                if isinstance(child, ast.FunctionDef) and "property" not in _decorators(child):
                    yield f"{name}.{member}", child, True


def _same(stub, runtime):
    """The parameters agree: names, which have defaults, and the defaults the stub spells out."""
    if [(n, d) for n, d, _ in stub] != [(n, d) for n, d, _ in runtime]:
        return False
    return all(s is ... or s == r for (_, _, s), (_, _, r) in zip(stub, runtime))


@pytest.mark.parametrize("module", STUBS)
def test_every_stub_function_takes_the_compiled_functions_parameters(module):
    tree = _stub(module)
    for runtime in _runtimes(module):
        checked = 0
        for qualname, node, method in _functions(tree):
            owner, _, attr = qualname.rpartition(".")
            target = getattr(getattr(runtime, owner), attr) if owner else getattr(runtime, attr)
            expected = _runtime_parameters(target, method)
            if expected is None and attr == "__init__":
                expected = _embedded_parameters(getattr(runtime, owner))
            if expected is None:
                continue
            stub = _stub_parameters(node, method)
            assert _same(stub, expected), (f"{module}.pyi: {qualname} takes {stub} but {runtime.__name__}'s "
                                           f"takes {expected} (name, has a default, default)")
            checked += 1
        assert checked or not any(True for _ in _functions(tree)), f"no signature of {module} could be checked"


@pytest.mark.parametrize("module", sorted(USES))
def test_every_name_fastopts_code_takes_from_a_compiled_module_is_in_its_stub(module):
    defined = {name for name, _ in _definitions(_stub(module).body)}
    missing = sorted(USES[module] - defined)
    assert not missing, f"fastopt's Python code uses {missing} of {module}, which {module}.pyi does not define"


def test_the_generated_stub_types_needed_per_rule():
    """_update_rules.pyi (generated from the rule table) has a ``needed`` overload for each rule, giving one
    flag per state array, then the one for any rule name."""
    tree = _stub("fastopt._update_rules")
    overloads = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "needed"]
    returns = {}
    for node in overloads[:-1]:
        rule = ast.literal_eval(node.args.args[0].annotation.slice)
        returns[rule] = ast.unparse(node.returns)
    assert returns == {name: "tuple[" + (", ".join(["bool"] * len(rule.state)) or "()") + "]"
                       for name, rule in _rules.RULES.items()}
    assert ast.unparse(overloads[-1].returns) == "tuple[bool, ...]"
    assert all("overload" in _decorators(node) for node in overloads)


# --------------------------------------------------------------------------
# mypy --strict on the stubs
# --------------------------------------------------------------------------
def test_the_stubs_pass_mypy_strict(tmp_path, monkeypatch):
    try:
        from mypy import api
    except ImportError:
        if EXPECT_MYPY:
            raise
        pytest.skip("needs mypy (pip install mypy)")
    files = [str(_path(m, ".pyi")) for m in STUBS]
    assert files
    # The stubs import numpy and fastopt's own modules; errors in those (fastopt's .py files are checked by
    # tests/test_types.py) are not the stubs' and are not reported.
    # By module name, not path: a path inside site-packages would make mypy take site-packages for a source
    # root (and every module in it for the user's); from an empty directory, the installed package is found.
    monkeypatch.chdir(tmp_path)
    modules = [arg for module in STUBS for arg in ("-m", module)]
    out, err, status = api.run(["--strict", "--follow-imports=silent", "--no-error-summary", "--show-error-codes",
                                "--cache-dir", str(tmp_path / "cache"), *modules])
    assert status == 0, out + err
