"""The README's Python examples run and print what they claim."""
import contextlib
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
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, str(README), "exec"), namespace)
        for line in block.splitlines():
            if line.startswith("print(") and "# " in line:
                claimed = line.split("# ", 1)[1].strip()
                assert out.getvalue().strip() == claimed
