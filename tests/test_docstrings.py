"""Every public name of the package has a NumPy-style docstring (its examples run in tests/test_doctests.py)."""
import dataclasses
import importlib
import inspect
import pkgutil

import pytest

import fastopt

MODULES = ["fastopt"] + sorted(name for _, name, _ in pkgutil.walk_packages(fastopt.__path__, "fastopt."))


def public_names():
    """(module, name, object) for each class and function a module's ``__all__`` exports, each object once."""
    seen, found = set(), []
    for module_name in MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # a module that needs an optional dependency (torch, mpi4py)
            if exc.name and exc.name.split(".")[0] in ("torch", "mpi4py", "matplotlib"):
                continue
            raise
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and id(obj) not in seen:
                seen.add(id(obj))
                found.append((module_name, name, obj))
    return found


def documented_parameters(obj):
    """The docstrings that may document ``obj``'s parameters: its own, and for a class its constructor's."""
    docs = [inspect.getdoc(obj) or ""]
    if inspect.isclass(obj):
        owner = next(c for c in obj.__mro__ if "__init__" in vars(c))  # whose constructor this class uses
        docs += [inspect.getdoc(owner) or "", inspect.getdoc(owner.__init__) or ""]
    return "\n".join(docs)


def parameters(obj):
    """The parameters ``obj`` takes that fastopt defines (a class's constructor from Python's own: none)."""
    target = obj
    if inspect.isclass(obj):
        owner = next(c for c in obj.__mro__ if "__init__" in vars(c) or "__new__" in vars(c))
        if not owner.__module__.startswith("fastopt"):
            return []
        target = obj.__init__
    try:
        return [p for p in inspect.signature(target).parameters if p not in ("self", "cls")]
    except (TypeError, ValueError):
        return []


@pytest.mark.parametrize("module_name", MODULES)
def test_every_module_says_what_it_is(module_name):
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        pytest.skip(f"needs {exc.name}")
    assert (module.__doc__ or "").strip(), module_name


def test_every_public_name_has_a_numpy_style_docstring():
    missing, undocumented = [], []
    names = public_names()
    assert len(names) > 100
    for module_name, name, obj in names:
        doc = inspect.getdoc(obj)
        if not doc:
            missing.append(f"{module_name}.{name}")
            continue
        if not parameters(obj):
            continue
        text = documented_parameters(obj)
        record = dataclasses.is_dataclass(obj) or (inspect.isclass(obj) and (
            issubclass(obj, BaseException) or (issubclass(obj, tuple) and hasattr(obj, "_fields"))))
        if "Parameters\n----------" not in text and not (record and "Attributes\n----------" in text):
            undocumented.append(f"{module_name}.{name}")
    assert not missing, f"no docstring: {missing}"
    assert not undocumented, f"no Parameters section: {undocumented}"
