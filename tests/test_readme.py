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
