"""fastopt.save / fastopt.load: pickle-free .npz checkpoints that resume bit-exactly."""
import numpy as np
import pytest
from test_kernels import OPTIMIZERS, assert_bitwise_equal

import fastopt


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
