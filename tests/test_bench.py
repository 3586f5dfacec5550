"""The benchmark runner: its NumPy baselines compute the same rules, and a tiny run writes its report."""
import json

import numpy as np
import pytest

import fastopt
from fastopt import bench
from fastopt.bench import cases, numpy_rules, report


@pytest.mark.parametrize("rule", cases.RULES)
@pytest.mark.parametrize("style", ["textbook", "inplace"])
def test_numpy_baselines_agree_with_fastopt(rule, style):
    shapes = [(37,), (5,)]
    cls_name, hyper, nstate = cases.RULES[rule]
    params, grads = cases._data(shapes, seed=3)
    ours = [p.copy() for p in params]
    opt = getattr(fastopt, cls_name)(ours, **hyper)
    state = [[np.zeros_like(p) for _ in range(nstate)] for p in params]
    scratch = [np.empty_like(p) for p in params]
    for t in range(1, 6):
        opt.step(grads)
        if style == "textbook":
            numpy_rules.textbook(rule, params, grads, state, t, hyper)
        else:
            numpy_rules.inplace(rule, params, grads, state, scratch, t, hyper)
    for a, b in zip(ours, params):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_bytes_per_element_budget():
    assert [cases.bytes_per_element(r) for r in ("sgd-momentum", "adagrad", "rmsprop", "adam", "adamw")] == \
        [20, 20, 20, 28, 28]


def test_tiny_run_writes_json_and_table(tmp_path, monkeypatch):
    monkeypatch.setitem(cases.SHAPES, "tiny", [(300,), (17,)])
    monkeypatch.setattr(bench.roofline, "measure_bandwidth", lambda threads: 10.0)
    lines = []
    payload = bench.run(rules=["adam", "rmsprop"], shapes=["tiny"], implementations=["fastopt", "numpy-inplace",
                        "torch-fused"], num_threads=1, repeats=2, json_path=tmp_path / "b.json",
                        png_path=tmp_path / "b.png", echo=lines.append)
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["bandwidth_gbs"] == 10.0 and len(saved["results"]) == 2
    for r in payload["results"]:
        assert r["seconds"]["fastopt"] > 0 and r["seconds"]["numpy-inplace"] > 0
        assert r["elements"] == 317
    assert "in cache" in "\n".join(lines)
    rms = next(r for r in payload["results"] if r["rule"] == "rmsprop")
    assert "torch-fused" not in rms["seconds"]  # torch has no fused RMSprop (or torch is missing)


def test_table_marks_missing_implementations():
    result = {"shape": "s", "rule": "adam", "elements": 1 << 30, "bytes_per_element": 28,
              "roofline_seconds": 0.9, "seconds": {"fastopt": 1.0, "numpy-inplace": 4.0}}
    text = report.table([result], ["fastopt", "numpy-inplace", "torch-fused"])
    assert "| 90% |" in text and "4.0x" in text and "| - |" in text
