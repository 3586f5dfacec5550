"""The README's Python examples run and print what they claim."""
import contextlib
import importlib.util
import io
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    if not README.exists():
        pytest.skip("needs the source tree")
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_examples_run_and_print_their_claimed_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write files
    namespace = {}
    blocks = python_blocks()
    assert len(blocks) >= 3
    for block in blocks:
        if "import torch" in block and importlib.util.find_spec("torch") is None:
            continue  # the "Using fastopt with PyTorch" example, where torch (optional) is absent
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, str(README), "exec"), namespace)
        for line in block.splitlines():
            if line.startswith("print(") and "# " in line:
                claimed = line.split("# ", 1)[1].strip()
                assert out.getvalue().strip() == claimed


def test_every_test_the_guarantees_table_names_exists():
    """Each row of the README's Guarantees table names tests that are really there."""
    if not README.exists():
        pytest.skip("needs the source tree")
    text = README.read_text()
    section = text[text.index("## Guarantees"):]
    section = section[:section.index("\n## ", 1)]
    named = re.findall(r"`((?:tests/)[\w/]+\.py)::(\w+)`", section)
    assert len(named) >= 30
    root = README.parent
    for path, name in named:
        source = (root / path).read_text()
        assert re.search(rf"^\s*(?:async )?def {name}\(", source, flags=re.M), f"{path}::{name} is not defined"
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| **")]
    assert all("`tests/" in row for row in rows[1:]), "every promise names the test that checks it"


def test_the_layout_names_every_file_that_makes_the_package():
    """Every top-level module, template, compiled source and subpackage of src/fastopt, every compiled source
    anywhere in it, every header in csrc/ and every script in benchmarks/ is named in the README's Layout."""
    if not README.exists():
        pytest.skip("needs the source tree")
    text = README.read_text()
    section = text[text.index("## Layout"):]
    section = section[:section.index("\n## ", 1)]
    named = set(re.findall(r"`([^`]+)`", section))
    root = README.parent
    package = root / "src" / "fastopt"
    generated = {"_update_rules.pyx", "_update_rules.pxd", "cython_kernels.pyx", "cython_kernels.pxd"}
    wanted = {p.name + ("/" if p.is_dir() else "") for p in package.iterdir()
              if p.name not in ("__init__.py", "__pycache__", "include") and p.suffix not in (".so", ".c")
              and p.name not in generated - {"cython_kernels.pxd"}}
    wanted |= {str(p.relative_to(package)) if p.parent != package else p.name for p in package.rglob("*.pyx")
               if p.name not in generated}
    wanted |= {p.name for p in (root / "csrc").iterdir()} | {p.name for p in (root / "benchmarks").glob("*.py")}
    # a compiled module's stub is named with it, as ".pyi stub"
    wanted = {w for w in wanted if not (w.endswith(".pyi") and "`.pyi` stub" in section
                                        and any(p.with_suffix(".pyx").exists() or p.with_suffix(".pyx.tp").exists()
                                                for p in package.rglob(w)))}
    missing = sorted(w for w in wanted if w not in named and f"python benchmarks/{w}" not in named)
    assert not missing, f"the README's Layout does not name {missing}"


def test_the_quick_start_says_which_optimizers_the_demo_trains():
    import inspect

    import fastopt
    from fastopt import demo
    from fastopt.optim.optimizer import Optimizer

    if not README.exists():
        pytest.skip("needs the source tree")
    quick_start = " ".join(README.read_text().split("## Quick start", 1)[1].split("```", 1)[0].split())
    rules = {name for name in dir(fastopt) if inspect.isclass(getattr(fastopt, name))
             and issubclass(getattr(fastopt, name), Optimizer) and name != "Optimizer"}
    left_out = sorted(rules - {cls for cls, _, _ in demo.OPTIMIZERS.values()})
    assert f"with {len(demo.OPTIMIZERS)} optimizer setups: every update rule but " \
           f"{', '.join(left_out[:-1])} and {left_out[-1]}," in quick_start
    wrapped = [name for name in demo.OPTIMIZERS if name in demo.WRAPPERS or name in demo.AVERAGED_FROM]
    assert sorted(wrapped) == ["adamw-accumulate", "adamw-swa", "lookahead-adamw"]
    assert "AdamW under the Lookahead, SWA and gradient-accumulation wrappers" in quick_start
