"""The benchmark runner: its NumPy baselines compute the same rules, and a tiny run writes its report."""
import json

import numpy as np
import pytest

import fastopt
from fastopt import bench
from fastopt.bench import cases, numpy_rules, report


@pytest.mark.parametrize("rule", cases.CONFIGS)
@pytest.mark.parametrize("style", ["textbook", "inplace"])
def test_numpy_baselines_agree_with_fastopt(rule, style):
    shapes = [(37,), (5,)]
    cls_name, hyper, nstate = cases.CONFIGS[rule]
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
    assert "| 90% |" in text and "4.00x" in text and "| - |" in text  # speed-ups to 1%


@pytest.fixture
def no_deepspeed(monkeypatch):
    """deepspeed made unimportable (a None in sys.modules makes ``import`` raise ImportError)."""
    import sys

    for name in ("deepspeed", "deepspeed.ops", "deepspeed.ops.adam", "deepspeed.ops.op_builder"):
        monkeypatch.setitem(sys.modules, name, None)
    cases._missing_deepspeed.cache_clear()
    yield
    cases._missing_deepspeed.cache_clear()


def test_deepspeed_is_skipped_cleanly_when_missing(no_deepspeed, tmp_path, monkeypatch):
    assert "deepspeed" in cases.IMPLEMENTATIONS
    assert "not importable" in cases.unavailable("deepspeed") and "pip install deepspeed" in cases.unavailable(
        "deepspeed")
    assert cases.build("deepspeed", "adam", [(10,)]) is None
    monkeypatch.setitem(cases.SHAPES, "tiny", [(300,)])
    monkeypatch.setattr(bench.roofline, "measure_bandwidth", lambda threads: 10.0)
    lines = []
    payload = bench.run(rules=["adam"], shapes=["tiny"], implementations=["fastopt", "deepspeed"], num_threads=1,
                        repeats=1, json_path=None, echo=lines.append)
    text = "\n".join(lines)
    assert "note: deepspeed skipped: deepspeed is not importable" in text
    assert not any("deepspeed" in line for line in lines if line.startswith("|"))  # no column for it
    assert list(payload["results"][0]["seconds"]) == ["fastopt"]
    assert "deepspeed" in payload["skipped"]


def test_deepspeed_offers_adam_and_adamw_only():
    assert set(cases.DEEPSPEED_MODES) == {"adam", "adamw"}
    assert cases.build("deepspeed", "rmsprop", [(10,)]) is None  # whether or not deepspeed is installed


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("written", [1, 2, 3, 4])
def test_same_stream_kernel_updates_every_written_array(dtype, written):
    from fastopt._stream import stream

    n = 70_000 + 3  # several chunks, a ragged tail; two threads take part
    read = np.arange(n, dtype=dtype)
    targets = [np.full(n, k, dtype) for k in range(written)]
    stream(read, targets, 0.5, 2)
    for k, w in enumerate(targets):
        np.testing.assert_array_equal(w, np.full(n, k, dtype) + dtype(0.5) * read)


def test_same_stream_kernel_refuses_bad_arrays():
    from fastopt._stream import stream

    a32 = np.ones(8, np.float32)
    with pytest.raises(ValueError):
        stream(a32, [])
    with pytest.raises(ValueError):
        stream(a32, [a32.copy() for _ in range(5)])
    with pytest.raises(ValueError):
        stream(a32, [np.ones(9, np.float32)])
    with pytest.raises(ValueError):
        stream(a32, [np.ones(8)])  # float64 target for a float32 read
    with pytest.raises(TypeError):
        stream(np.ones(8, np.int32), [np.ones(8, np.int32)])


@pytest.mark.parametrize("rule", cases.CONFIGS)
def test_same_stream_roofline_moves_the_rules_bytes(rule):
    cls_name, hyper, states = cases.CONFIGS[rule]
    opt = getattr(fastopt, cls_name)([np.zeros(3, np.float32)], **hyper)
    opt.step([np.ones(3, np.float32)])
    assert states == sum(isinstance(v, np.ndarray) for v in opt.state[0].values())  # the arrays a step keeps
    assert bench.roofline.same_stream_bytes(states) == cases.bytes_per_element(rule)
    assert bench.roofline.same_stream_arrays(2) == (4, 3)  # Adam: reads p, g, m, v; writes p, m, v
    step = bench.roofline.same_stream_step(1000, states, 1)
    step()


def test_table_shows_the_same_stream_share():
    result = {"shape": "s", "rule": "adam", "elements": 1 << 30, "bytes_per_element": 28, "roofline_seconds": 0.9,
              "same_stream": {"read": 4, "written": 3, "seconds": 0.95, "bandwidth_gbs": 1.0},
              "seconds": {"fastopt": 1.0, "deepspeed": 1.1}}
    text = report.table([result], ["fastopt", "deepspeed"])
    assert "| 95% |" in text and "| 90% |" in text and "1.10x" in text
