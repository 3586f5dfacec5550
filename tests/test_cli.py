import json
import subprocess
import sys

import fastopt
from fastopt.__main__ import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fastopt", *args], capture_output=True, text=True, cwd="/")


def test_info_reports_build_and_runtime():
    out = run_cli("info")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"fastopt      {fastopt.__version__}" in text
    for key in ("compiler", "build flags", "openmp", "threads", "simd"):
        assert key in text
    info = fastopt.build_info()
    assert ("on (OpenMP" in text) == info["openmp"]


def test_info_json():
    out = run_cli("info", "--json")
    info = json.loads(out.stdout)
    assert info["version"] == fastopt.__version__
    assert info["simd_bytes"] in (0, 16, 32, 64)
    assert info["num_threads"] >= 1 and info["chunk_bytes"] % info["cache_line_bytes"] == 0


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "info" in capsys.readouterr().out
