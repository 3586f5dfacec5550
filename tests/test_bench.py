"""The benchmark runner: its NumPy baselines compute the same rules, and a tiny run writes its report."""
import json

import numpy as np
import pytest

import fastopt
from fastopt import bench
from fastopt.bench import cases, numpy_rules, report


@pytest.mark.parametrize("rule", numpy_rules.RULES)
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


def test_every_rule_has_numpy_baselines_or_a_package_peer():
    assert set(cases.CONFIGS) == set(numpy_rules.RULES) | set(cases.ONLY_PEERS)
    assert not set(numpy_rules.RULES) & set(cases.ONLY_PEERS)


def test_a_package_rule_runs_fastopt_and_its_package_only():
    rule = "adamw-schedulefree"
    assert [impl for impl in cases.IMPLEMENTATIONS if cases.offers(impl, rule)] == ["fastopt", "fastopt-list",
                                                                                    "schedulefree"]
    if cases.unavailable("schedulefree"):
        pytest.skip(cases.unavailable("schedulefree"))
    ours = cases.build("fastopt", rule, [(300,), (17,)])
    theirs = cases.build("schedulefree", rule, [(300,), (17,)])
    ours()
    theirs()  # one step: the package divides the gradients in place, so later steps see other inputs
    paramset = ours.__self__._layout.paramsets[0]
    peer = np.concatenate([t.numpy() for t in theirs.__self__.param_groups[0]["params"]])
    np.testing.assert_allclose(paramset.data, peer, rtol=1e-6, atol=1e-7)
    assert not np.array_equal(paramset.data, np.concatenate(cases._data([(300,), (17,)], 0)[0]))


def test_bytes_per_element_budget():
    assert [cases.bytes_per_element(r) for r in ("sgd-momentum", "adagrad", "rmsprop", "adam", "adamw")] == \
        [20, 20, 20, 28, 28]


def test_tiny_run_writes_json_and_table(tmp_path, monkeypatch):
    monkeypatch.setitem(cases.SHAPES, "tiny", [(300,), (17,)])
    monkeypatch.setattr(bench.roofline, "measure_bandwidth", lambda threads: 10.0)
    lines = []
    payload = bench.run(rules=["adam", "rmsprop"], shapes=["tiny"], implementations=["fastopt", "numpy-inplace",
                        "torch-fused"], num_threads=1, repeats=2, json_path=tmp_path / "b.json",
                        png_path=tmp_path / "b.png", echo=lines.append, storages=[cases.FLOAT32])
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
    assert "| f32/f32 | 28 |" in text and text.rstrip().endswith("| - |")  # no peer ran: no fastest peer


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
    assert states == sum(isinstance(v, np.ndarray) and v.size > 0 for v in opt.state[0].values())  # what it keeps
    if rule in cases.PASSES:  # several passes: every pass's arrays, the parameters' and the state's among them
        read, written = zip(*cases.PASSES[rule])
        assert {"grad", "param"} <= {key for keys in read + written for key in keys}
        assert cases.bytes_per_element(rule) == 4 * sum(len(r) + 2 * len(w) for r, w in cases.PASSES[rule])
        assert cases.moved_bytes(cases.step_arrays(rule, cases.FLOAT32, 10)) == 10 * cases.bytes_per_element(rule)
        return
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


def _real_step_bytes(rule, storage, n):
    """Bytes one real fastopt step moves, from the arrays it keeps: param and grad nbytes, and each
    array of opt.state[0] (the master copy and int8 absmax included) read and written."""
    step = cases.build("fastopt", rule, [(n,)], storage=storage)
    step()
    opt = step.__self__
    arrays = [v for v in opt.state[0].values() if isinstance(v, np.ndarray)]
    param = opt._layout.slots[0].param
    assert param.dtype == (fastopt._storage.BFLOAT16 if cases.STORAGES[storage].params == "bfloat16"
                           else np.float32)
    return param.nbytes * 3 + sum(2 * a.nbytes for a in arrays), opt


@pytest.mark.parametrize("storage", cases.STORAGES)
def test_same_stream_roofline_moves_the_storage_rows_bytes(storage):
    n = 4096 + 512  # whole int8 blocks and float32 stream elements
    real, opt = _real_step_bytes("adam", storage, n)
    arrays = cases.step_arrays("adam", storage, n)
    assert cases.moved_bytes(arrays) == real
    assert bench.roofline.layout_stream_bytes(arrays) == real  # the roofline stream moves the step's bytes
    assert cases.storage_bytes_per_element("adam", storage, n) == real / n
    # ... through as many arrays of the same sizes as the step keeps
    kept = sorted([a.nbytes for a in opt.state[0].values() if isinstance(a, np.ndarray)]
                  + [opt._layout.slots[0].param.nbytes] * 2)
    calls = bench.roofline.layout_stream_calls(arrays)
    streamed = sorted([nbytes for nbytes, read, written in calls if read] +
                      [nbytes for nbytes, read, written in calls for _ in written])
    assert streamed == kept
    bench.roofline.layout_stream_step(arrays, 2)()


def test_storage_bytes_per_element_budget():
    n = 1 << 24
    got = {s: cases.storage_bytes_per_element("adam", s, n) for s in cases.STORAGES}
    assert got["f32/f32"] == 28 and got["f32/bf16"] == 20 and got["bf16/bf16"] == 14
    assert got["f32/int8"] == 16 + 4 * 4 / 256 and got["bf16/int8"] == 10 + 4 * 4 / 256
    assert got["bf16/bf16+master"] == 14 + 8 and got["bf16/int8+master"] == got["bf16/int8"] + 8
    assert got["bf16/bf16+sr"] == got["bf16/bf16"] and got["bf16/int8+sr"] == got["bf16/int8"]
    assert all(cases.storage_bytes_per_element(r, cases.FLOAT32, n) == cases.bytes_per_element(r)
               for r in cases.CONFIGS)


def test_float32_stream_plan_is_the_rules_single_pass():
    calls = bench.roofline.layout_stream_calls(cases.step_arrays("adam", cases.FLOAT32, 1000))
    assert calls == [(4000, "grad", ["param", "state0", "state1"])]  # reads 4 arrays, writes 3, one call


def test_storage_rows_run_tiny(tmp_path, monkeypatch):
    monkeypatch.setitem(cases.SHAPES, "tiny", [(600,), (40,)])
    monkeypatch.setattr(bench.roofline, "measure_bandwidth", lambda threads: 10.0)
    lines = []
    payload = bench.run(rules=["adam", "rmsprop"], shapes=["tiny"], implementations=["fastopt", "fastopt-list",
                        "numpy-inplace", "torch-fused"], num_threads=1, repeats=2, json_path=tmp_path / "b.json",
                        echo=lines.append)
    rows = [(r["rule"], r["storage"]) for r in payload["results"]]
    assert rows == cases.rows(["adam", "rmsprop"]) and len(rows) == len(cases.STORAGES) + 1
    for r in payload["results"]:
        assert r["seconds"]["fastopt"] > 0 and r["seconds"]["fastopt-list"] > 0 and r["same_stream"]["seconds"] > 0
        assert r["bytes_per_element"] == cases.storage_bytes_per_element(r["rule"], r["storage"], 640)
        assert ("numpy-inplace" in r["seconds"]) == (r["storage"] == cases.FLOAT32)
    text = "\n".join(lines)
    assert f"| tiny | adam | bf16/int8+master | {18 + 2 * 2 * 4 * 3 / 640:.4g} |" in text  # 3 absmax blocks
    saved = json.loads((tmp_path / "b.json").read_text())
    assert {r["storage"] for r in saved["results"]} == set(cases.STORAGES)


def test_storage_subset_and_builds():
    assert cases.rows(["rmsprop", "adam"], ["f32/int8"]) == [("adam", "f32/int8")]
    assert cases.build("numpy-inplace", "adam", [(10,)], storage="bf16/int8") is None
    assert cases.build("bnb-adam8bit", "adam", [(10,)], storage="f32/f32") is None  # int8 rows only
    for storage in cases.STORAGES:
        cases.build("fastopt-list", "adam", [(300,), (7,)], storage=storage)()


@pytest.fixture
def no_bitsandbytes(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    cases._missing_bitsandbytes.cache_clear()
    yield
    cases._missing_bitsandbytes.cache_clear()


def test_bitsandbytes_is_skipped_cleanly_when_missing(no_bitsandbytes, monkeypatch):
    assert "pip install bitsandbytes" in cases.unavailable("bnb-adam8bit")
    assert cases.build("bnb-adam8bit", "adam", [(10,)], storage="f32/int8") is None
    monkeypatch.setitem(cases.SHAPES, "tiny", [(300,)])
    monkeypatch.setattr(bench.roofline, "measure_bandwidth", lambda threads: 10.0)
    lines = []
    payload = bench.run(rules=["adam"], shapes=["tiny"], storages=["f32/int8"],
                        implementations=["fastopt", "bnb-adam8bit"], num_threads=1, repeats=1, echo=lines.append)
    assert any(line.startswith("note: bnb-adam8bit skipped") for line in lines)
    assert not any("bnb" in line for line in lines if line.startswith("|"))
    assert list(payload["results"][0]["seconds"]) == ["fastopt"]


def test_bitsandbytes_peer_runs_when_installed(monkeypatch):
    if cases.unavailable("bnb-adam8bit"):
        pytest.skip(cases.unavailable("bnb-adam8bit"))
    step = cases.build("bnb-adam8bit", "adam", [(512,), (300,)], storage="f32/int8")
    step()
    opt = step.__self__
    import torch

    assert all(s["state1"].dtype == torch.uint8 for s in opt.state.values())  # 8-bit, min_8bit_size=0
    monkeypatch.setitem(cases.SHAPES, "tiny", [(512,)])
    monkeypatch.setattr(bench.roofline, "measure_bandwidth", lambda threads: 10.0)
    lines = []
    payload = bench.run(rules=["adam"], shapes=["tiny"], storages=["f32/int8"],
                        implementations=["fastopt", "bnb-adam8bit"], num_threads=1, repeats=5, echo=lines.append)
    assert payload["results"][0]["seconds"]["bnb-adam8bit"] > 0
    assert "(bnb-adam8bit) |" in lines[-1]  # the only peer is the fastest one
    assert any("sampled in 3 of the 5 repeats" in line for line in lines)


def test_slow_implementations_are_sampled_in_few_rounds():
    from fastopt.bench import runner

    assert runner.sampled_rounds(7, 3) == {0, 3, 6} and runner.sampled_rounds(2, 3) == {0, 1}
    calls = {"fast": 0, "slow": 0}
    runner.time_interleaved({"fast": lambda: calls.__setitem__("fast", calls["fast"] + 1),
                             "slow": lambda: calls.__setitem__("slow", calls["slow"] + 1)}, 7, {"slow": 3})
    assert calls["slow"] == 1 + 3  # warm-up, then one step in each of 3 rounds (no calibration)


def test_help_lists_come_from_the_tables(capsys):
    from fastopt.__main__ import main

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in list(cases.STORAGES) + list(cases.OPTIONAL_PEERS) + cases.PEERS:
        assert name.replace("/", "/ ") in text.replace("/", "/ ").replace("- ", "-") or name in text
    for _, _, install in cases.OPTIONAL_PEERS.values():
        assert install in text or install in text.replace("- ", "-")  # argparse may wrap at a hyphen
