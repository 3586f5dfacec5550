"""fastopt.save / fastopt.load: pickle-free .npz checkpoints that resume bit-exactly."""
import ml_dtypes
import numpy as np
import pytest
from test_kernels import OPTIMIZERS, assert_bitwise_equal

import fastopt
from fastopt import _storage


def model(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return fastopt.ParamSet({"W": rng.standard_normal((6, 4)), "b": rng.standard_normal(4)}, dtype=dtype)


def train(ps, opt, steps, seed):
    """A gradient that depends on the parameters, so any difference in state shows."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        noise = rng.standard_normal(ps.size).astype(ps.dtype)
        ps.grad[:] = np.tanh(ps.data) + 0.1 * noise
        opt.step()


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_resume_from_checkpoint_is_bit_exact(name, dtype, tmp_path):
    cls, _, configs, _ = OPTIMIZERS[name]
    straight = model(dtype)
    opt = cls(straight, **configs[-1])
    train(straight, opt, 6, seed=1)
    train(straight, opt, 6, seed=2)

    first = model(dtype)
    opt1 = cls(first, **configs[-1])
    train(first, opt1, 6, seed=1)
    path = tmp_path / "ckpt.npz"
    fastopt.save(path, first, opt1)

    resumed = model(dtype, seed=99)
    opt2 = cls(resumed, lr=0.5)
    fastopt.load(path, resumed, opt2)
    train(resumed, opt2, 6, seed=2)
    assert_bitwise_equal(resumed.data, straight.data)


def test_file_is_plain_npz_without_pickle(tmp_path):
    ps = model()
    opt = fastopt.NAdam(ps)
    train(ps, opt, 2, seed=0)
    path = tmp_path / "model.ckpt"
    fastopt.save(path, ps, opt)
    assert path.exists() and not (tmp_path / "model.ckpt.npz").exists()  # no suffix appended
    with np.load(path, allow_pickle=False) as archive:
        assert str(archive["format"]) == "fastopt-checkpoint-2"
        assert len(str(archive["checksum"])) == 64
        assert str(archive["optimizer/class"]) == "NAdam"
        assert {"params/W", "params/b", "optimizer/state/0/exp_avg", "optimizer/state/0/mu_product"} <= set(
            archive.files)
        for key in archive.files:
            assert archive[key].dtype != object
    assert not list(tmp_path.glob(".fastopt-*"))  # no temporary file left behind


def test_dict_and_list_params(tmp_path):
    arrays = {"w": np.arange(3.0), "b": np.ones(2)}
    fastopt.save(tmp_path / "d.npz", arrays)
    target = {"w": np.zeros(3), "b": np.zeros(2)}
    fastopt.load(tmp_path / "d.npz", target)
    np.testing.assert_array_equal(target["w"], [0, 1, 2])
    fastopt.save(tmp_path / "l.npz", [np.ones(2, np.float32)])
    out = [np.zeros(2, np.float32)]
    fastopt.load(tmp_path / "l.npz", out)
    np.testing.assert_array_equal(out[0], 1)


def snapshot(ps, opt):
    return ps.data.copy(), opt.state_dict()


def assert_same_state_dict(now, before):
    """Two state_dicts hold the same groups, skipped steps, slots, keys and bits."""
    assert now["param_groups"] == before["param_groups"] and now["skipped_steps"] == before["skipped_steps"]
    assert now["state"].keys() == before["state"].keys()
    for slot, state in before["state"].items():
        assert now["state"][slot].keys() == state.keys()
        for key, value in state.items():
            assert_bitwise_equal(np.asarray(now["state"][slot][key]), np.asarray(value), f"{slot}/{key}")


def assert_unchanged(ps, opt, before):
    data, sd = before
    assert_bitwise_equal(ps.data, data)
    assert_same_state_dict(opt.state_dict(), sd)


@pytest.mark.parametrize("other, match", [
    (lambda: fastopt.ParamSet({"W": (6, 5), "b": 4}), r"parameter 'W' is float64\[6, 4\] in the checkpoint "
                                                       r"but float64\[6, 5\] here"),
    (lambda: fastopt.ParamSet({"W": (6, 4), "b": 4}, dtype=np.float32), "float32"),
    (lambda: fastopt.ParamSet({"W": (6, 4), "c": 4}), r"missing \['c'\], unexpected \['b'\]"),
])
def test_mismatched_parameters_fail_and_change_nothing(other, match, tmp_path):
    ps = model()
    opt = fastopt.Adam(ps)
    train(ps, opt, 3, seed=0)
    fastopt.save(tmp_path / "c.npz", ps, opt)
    target = other()
    target.data[:] = 7.0
    target_opt = fastopt.Adam(target, lr=0.5)
    train(target, target_opt, 1, seed=5)
    before = snapshot(target, target_opt)
    with pytest.raises(ValueError, match=match):
        fastopt.load(tmp_path / "c.npz", target, target_opt)
    assert_unchanged(target, target_opt, before)


def test_mismatched_optimizer_fails_and_changes_nothing(tmp_path):
    ps = model()
    opt = fastopt.Adam(ps)
    train(ps, opt, 3, seed=0)
    fastopt.save(tmp_path / "adam.npz", ps, opt)
    fastopt.save(tmp_path / "params-only.npz", ps)

    target = model(seed=3)
    sgd = fastopt.SGD(target, momentum=0.9)
    train(target, sgd, 1, seed=5)
    before = snapshot(target, sgd)
    with pytest.raises(ValueError, match="holds Adam state, not SGD"):
        fastopt.load(tmp_path / "adam.npz", target, sgd)
    assert_unchanged(target, sgd, before)
    with pytest.raises(ValueError, match="holds no optimizer state"):
        fastopt.load(tmp_path / "params-only.npz", target, sgd)
    assert_unchanged(target, sgd, before)

    grouped = fastopt.Adam([{"params": target.select(["W"])}, {"params": target.select(["b"])}])
    before = snapshot(target, grouped)
    with pytest.raises(ValueError, match="1 parameter groups"):
        fastopt.load(tmp_path / "adam.npz", target, grouped)
    assert_unchanged(target, grouped, before)


def test_not_a_checkpoint(tmp_path):
    np.savez(tmp_path / "plain.npz", x=np.ones(3))
    with pytest.raises(ValueError, match="not a fastopt checkpoint"):
        fastopt.load(tmp_path / "plain.npz", {"x": np.zeros(3)})


def test_any_layout_of_arrays_round_trips(tmp_path):
    """Fortran order, empty, 0-d, integer and multi-megabyte arrays come back bit for bit."""
    rng = np.random.default_rng(4)
    arrays = {
        "fortran": np.asfortranarray(rng.standard_normal((5, 3))),
        "empty": np.zeros((0, 3), np.float32),
        "scalar": np.array(2.5),
        "ints": np.arange(7, dtype=np.int32),
        "big": rng.standard_normal(3 * 2**18),  # 6 MiB: read in several chunks
    }
    fastopt.save(tmp_path / "a.npz", arrays)
    out = {k: np.zeros_like(v) for k, v in arrays.items()}
    fastopt.load(tmp_path / "a.npz", out)
    for key, value in arrays.items():
        assert_bitwise_equal(out[key], value, key)


# --------------------------------------------------------------------------- bfloat16 and compressed state
BF16 = np.dtype(ml_dtypes.bfloat16)


def bf16_model(seed=0):
    """A bfloat16 ParamSet whose bits include NaN payloads, infinities, -0.0 and subnormals."""
    ps = fastopt.ParamSet({"W": (6, 4), "b": 4}, dtype=BF16, align=True)
    bits = np.random.default_rng(seed).integers(0, 2**16, ps.size, dtype=np.uint16)
    bits[:6] = [0x7FC1, 0xFF81, 0x7F80, 0x8000, 0x0001, 0xFFFF]
    for name in ps:  # padding stays zero
        ps.data.view(np.uint16)[ps.slices[name]] = bits[ps.slices[name]]
    return ps


def test_bfloat16_parameters_round_trip_bit_for_bit(tmp_path):
    ps = bf16_model()
    fastopt.save(tmp_path / "bf16.npz", ps)
    with np.load(tmp_path / "bf16.npz", allow_pickle=False) as archive:
        assert archive["params/W"].dtype == np.uint16  # the bit patterns: np.save would write |V2
        assert_bitwise_equal(archive["params/W"], ps["W"].view(np.uint16))
    target = bf16_model(seed=1)
    fastopt.load(tmp_path / "bf16.npz", target)
    assert_bitwise_equal(target.data, ps.data)
    arrays = {"w": np.asfortranarray(ps["W"]), "s": ps["b"][0].copy()}  # any layout, 0-d too
    fastopt.save(tmp_path / "dict.npz", arrays)
    out = {"w": np.zeros((6, 4), BF16, order="F"), "s": np.zeros((), BF16)}
    fastopt.load(tmp_path / "dict.npz", out)
    for key in arrays:
        assert_bitwise_equal(out[key], arrays[key], key)


@pytest.mark.parametrize("saved, target, match", [
    (BF16, np.float32, r"parameter 'b' is uint16\[4\] in the checkpoint but float32\[4\] here"),
    (np.float32, BF16, r"parameter 'b' is float32\[4\] in the checkpoint but bfloat16\[4\] \(stored as uint16 "
                       r"bits\) here"),
    (np.uint16, BF16, None),  # the bits of a uint16 array read as bfloat16: the file cannot tell them apart
])
def test_bfloat16_and_other_dtypes_do_not_mix(saved, target, match, tmp_path):
    fastopt.save(tmp_path / "c.npz", {"b": np.arange(4).astype(saved)})
    out = {"b": np.full(4, 7, target)}
    if match is None:
        fastopt.load(tmp_path / "c.npz", out)
        assert out["b"].view(np.uint16).tolist() == [0, 1, 2, 3]
        return
    with pytest.raises(fastopt.CheckpointError, match=match):
        fastopt.load(tmp_path / "c.npz", out)
    assert (out["b"] == 7).all()


class CompressedAdam(fastopt.Adam):
    """A stand-in for the optimizer side of issue 14: Adam with int8 ``exp_avg``, bfloat16 ``exp_avg_sq``, float32
    master weights and a seed, as ``state_layout`` and ``state_dict`` describe them.  ``state_dict`` returns
    :attr:`fake_state` ({slot: state}); ``load_state_dict`` records what it is given in :attr:`loaded`."""

    fake_state, loaded = {}, None

    def __init__(self, params):
        super().__init__(params)
        self.seed = 2**64 - 1

    def state_layout(self, index):
        n = self._layout.slots[index].param.size
        return {**_storage.state_layout("exp_avg", n, "int8"), **_storage.state_layout("exp_avg_sq", n, "bfloat16"),
                _storage.MASTER: ((n,), np.dtype(np.float32))}

    def state_dict(self):
        return {**super().state_dict(), "state": self.fake_state, "seed": self.seed}

    def load_state_dict(self, state_dict):
        self.loaded = state_dict


def compressed_state(ps, seed=0):
    """One slot's state in the layout CompressedAdam.state_layout gives: codes, absmax, bf16 bits, master."""
    rng = np.random.default_rng(seed)
    n = ps.size
    sq = rng.integers(0, 2**16, n, dtype=np.uint16)
    sq[:2] = [0x7FC3, 0x8000]  # a NaN payload and -0.0 survive
    return {0: {"step": 3, "exp_avg": rng.integers(0, 256, n, dtype=np.uint8),
                "exp_avg_absmax": rng.random(_storage.absmax_length(n), dtype=np.float32),
                "exp_avg_sq": sq.view(BF16), _storage.MASTER: rng.standard_normal(n).astype(np.float32)}}


def test_compressed_state_and_seed_round_trip_as_the_state_layout_says(tmp_path):
    ps = bf16_model()
    opt = CompressedAdam(ps)
    opt.fake_state = compressed_state(ps)
    fastopt.save(tmp_path / "c.npz", ps, opt)
    with np.load(tmp_path / "c.npz", allow_pickle=False) as archive:
        assert archive["optimizer/seed"].dtype == np.uint64 and archive["optimizer/seed"] == 2**64 - 1
        assert archive["optimizer/state/0/exp_avg_sq"].dtype == np.uint16

    target = bf16_model(seed=1)
    target_opt = CompressedAdam(target)
    fastopt.load(tmp_path / "c.npz", target, target_opt)
    assert_bitwise_equal(target.data, ps.data)
    loaded = target_opt.loaded
    assert loaded["seed"] == 2**64 - 1 and type(loaded["seed"]) is int
    assert loaded["state"].keys() == {0} and loaded["state"][0]["step"] == 3
    for key, value in opt.fake_state[0].items():
        if key != "step":
            assert_bitwise_equal(loaded["state"][0][key], value, key)  # bf16 comes back as bf16
    fastopt.load(tmp_path / "c.npz", bf16_model())  # no optimizer: the state entries are checked, not used


def test_state_that_does_not_fit_the_state_layout_is_refused_and_changes_nothing(tmp_path):
    ps = bf16_model()
    opt = CompressedAdam(ps)
    good = compressed_state(ps)[0]
    for change, match in [
        ({"exp_avg_absmax": np.ones(3, np.float32)},
         r"state 'exp_avg_absmax' of slot 0 is float32\[3\] in the checkpoint but float32\[1\] here"),
        ({"exp_avg": good["exp_avg"].astype(np.float32)},
         r"state 'exp_avg' of slot 0 is float32\[36\] in the checkpoint but uint8\[36\] here"),
        ({"exp_avg_sq": good["exp_avg_sq"].astype(np.float32)},
         r"'exp_avg_sq' of slot 0 is float32\[36\] in the checkpoint but bfloat16\[36\] \(stored as uint16 bits\)"),
        ({_storage.MASTER: good[_storage.MASTER].astype(BF16)}, r"'master_param' of slot 0 is uint16\[36\]"),
        ({"max_exp_avg_sq": good["exp_avg_sq"]}, "holds state 'max_exp_avg_sq' for slot 0, which CompressedAdam "
                                                 "does not keep"),
    ]:
        opt.fake_state = {0: {**good, **change}}
        fastopt.save(tmp_path / "bad.npz", ps, opt)
        target = bf16_model(seed=1)
        before = target.data.copy()
        target_opt = CompressedAdam(target)
        with pytest.raises(fastopt.CheckpointError, match=match):
            fastopt.load(tmp_path / "bad.npz", target, target_opt)
        assert_bitwise_equal(target.data, before)
        assert target_opt.loaded is None


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (2**64, ValueError), (1.5, TypeError)])
def test_a_seed_a_checkpoint_cannot_hold_is_refused_by_save(seed, error, tmp_path):
    ps = bf16_model()
    opt = CompressedAdam(ps)
    opt.fake_state, opt.seed = compressed_state(ps), seed
    with pytest.raises(error, match="the optimizer's seed must be"):
        fastopt.save(tmp_path / "s.npz", ps, opt)
    assert not list(tmp_path.iterdir())


def adam_checkpoint_entries(tmp_path):
    """{entry: array} of a checkpoint of model() and an Adam stepped once, saved as tmp_path/a.npz."""
    from test_checkpoint_faults import members  # (that module imports this one)
    ps = model()
    opt = fastopt.Adam(ps)
    train(ps, opt, 1, seed=0)
    fastopt.save(tmp_path / "a.npz", ps, opt)
    return members(tmp_path / "a.npz")


def test_seed_entry_is_checked(tmp_path):
    from test_checkpoint_faults import write  # (that module imports this one)
    entries = adam_checkpoint_entries(tmp_path)
    for extra, match in [
        ({"optimizer/seed": np.array(5)}, r"optimizer/seed is int64\[\] in the checkpoint but uint64\[\] here"),
        ({"optimizer/seed": np.array([5], np.uint64)}, r"uint64\[1\]"),
    ]:
        write(tmp_path / "bad.npz", {**entries, **extra})
        with pytest.raises(fastopt.CheckpointError, match=match):
            fastopt.load(tmp_path / "bad.npz", model(), fastopt.Adam(model()))
    params_only = {k: v for k, v in entries.items() if not k.startswith("optimizer/")}
    write(tmp_path / "bad.npz", {**params_only, "optimizer/seed": np.array(5, np.uint64)})
    with pytest.raises(fastopt.CheckpointError, match="optimizer state but no optimizer/class"):
        fastopt.load(tmp_path / "bad.npz", model())


def test_without_the_optimizer_compressed_state_entries_are_accepted_by_kind(tmp_path):
    from test_checkpoint_faults import write  # (that module imports this one)
    entries = adam_checkpoint_entries(tmp_path)
    state = {"optimizer/state/0/exp_avg": np.zeros(28, np.uint8), "optimizer/state/0/exp_avg_absmax": np.ones(1),
             "optimizer/state/0/exp_avg_sq": np.zeros(28, np.uint16)}
    write(tmp_path / "ok.npz", {**entries, **state})
    fastopt.load(tmp_path / "ok.npz", model())
    for bad in (np.zeros(28, np.int8), np.zeros((2, 14), np.uint8), np.zeros(28, np.uint32)):
        write(tmp_path / "bad.npz", {**entries, "optimizer/state/0/exp_avg": bad})
        with pytest.raises(fastopt.CheckpointError, match=r"1-D float, uint8 \(int8 codes\) or uint16 \(bfloat16\)"):
            fastopt.load(tmp_path / "bad.npz", model())
