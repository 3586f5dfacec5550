"""Inputs at the edges, each of which once crashed, copied, or went silently wrong."""
import copy
import os
import pickle
import stat

import numpy as np
import pytest

import fastopt


def test_group_merge_operator_validates_and_takes_effect():
    w = np.zeros(2)
    opt = fastopt.SGD([w], lr=0.1)
    group = opt.param_groups[0]
    group |= {"lr": 1.0}
    opt.step([np.ones(2)])
    np.testing.assert_array_equal(w, -1.0)
    with pytest.raises(ValueError, match="learning rate"):
        group |= {"lr": -5.0}
    with pytest.raises(TypeError, match="real number"):
        group |= {"momentum": "x"}


def test_paramset_copies_and_pickles_keep_views_and_buffers_together():
    ps = fastopt.ParamSet({"a": 3, "b": (2, 2)}, dtype=np.float32, align=True)
    ps.data[:] = np.arange(ps.size)
    ps.grad[:] = 1
    for other in (copy.deepcopy(ps), copy.copy(ps), pickle.loads(pickle.dumps(ps))):
        assert other.slices == ps.slices and other.dtype == ps.dtype and other.align
        np.testing.assert_array_equal(other.data, ps.data)
        np.testing.assert_array_equal(other.grad, ps.grad)
        other["a"] = 5
        np.testing.assert_array_equal(other.data[:3], 5)
        assert np.shares_memory(other["b"], other.data) and not np.shares_memory(other.data, ps.data)
    np.testing.assert_array_equal(ps["a"], [0, 1, 2])
    with pytest.raises(AttributeError):
        ps.data = np.zeros(ps.size, np.float32)


def test_empty_parameter_group():
    a = np.zeros(2)
    opt = fastopt.SGD([{"params": [a]}, {"params": []}], lr=1.0)
    opt.step([[np.ones(2)], []])
    np.testing.assert_array_equal(a, -1.0)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_ndarray_subclasses_are_updated_in_place():
    m = np.matrix([[1.0, 2.0, 3.0]])
    mm = np.asmatrix(np.zeros((1, 3)))
    opt = fastopt.Adam([np.zeros(3), m], lr=0.1)
    opt.step([np.ones(3), np.matrix([[1.0, 1.0, 1.0]])])
    np.testing.assert_allclose(np.asarray(m), [[0.9, 1.9, 2.9]])
    assert opt.state[1]["step"] == 1
    fastopt.SGD([mm], lr=1.0).step([np.ones((1, 3))])
    np.testing.assert_array_equal(np.asarray(mm), -1.0)


def test_thread_count_is_capped():
    with pytest.raises(ValueError, match="between 1 and"):
        fastopt.set_num_threads(2**40)


def test_misaligned_arrays_are_refused():
    raw = np.zeros(8 * 4 + 1, dtype=np.uint8)
    odd = raw[1:].view(np.float64)
    assert not odd.flags.aligned
    with pytest.raises(ValueError, match="not aligned"):
        fastopt.SGD([odd])


@pytest.mark.parametrize("kwargs", [dict(lr=float("inf")), dict(eps=float("inf")), dict(weight_decay=1e400)])
def test_infinite_hyperparameters_are_refused(kwargs):
    with pytest.raises(ValueError, match="finite"):
        fastopt.Adam([np.zeros(2)], **kwargs)


def test_numpy_bools_are_flags():
    opt = fastopt.Adam([np.zeros(2)], amsgrad=np.bool_(True), maximize=np.True_)
    assert opt.param_groups[0]["amsgrad"] is True


def test_group_name_label_is_accepted():
    opt = fastopt.SGD([{"params": [np.zeros(1)], "name": "weights"}])
    assert opt.param_groups[0]["name"] == "weights"


def test_state_dict_is_independent_of_the_optimizer():
    opt = fastopt.Adam([np.zeros(2)])
    sd = opt.state_dict()
    sd["param_groups"][0]["params"].append(7)
    assert opt.param_groups[0]["params"] == [0]


@pytest.mark.parametrize("step, match", [(-1, "non-negative integer"), (2.9, "non-negative integer"),
                                         (np.uint64(2**64 - 1), "below 2\\*\\*63"), ("3", "non-negative integer")])
def test_load_state_dict_validates_step_counts(step, match):
    opt = fastopt.Adam([np.zeros(2)])
    opt.step([np.ones(2)])
    sd = opt.state_dict()
    sd["state"][0]["step"] = step
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(sd)
    assert opt.state[0]["step"] == 1


def test_load_state_dict_rejects_non_dicts():
    opt = fastopt.NAdam([np.zeros(2)])
    opt.step([np.ones(2)])
    sd = opt.state_dict()
    with pytest.raises(TypeError, match="'state' and 'param_groups'"):
        opt.load_state_dict([1, 2])
    with pytest.raises(TypeError, match=r"param_groups\[0\] in the state_dict must be a dict"):
        opt.load_state_dict({**sd, "param_groups": [[1]]})
    with pytest.raises(TypeError, match="state for slot 0"):
        opt.load_state_dict({**sd, "state": {0: [1]}})
    with pytest.raises(ValueError, match="finite number"):
        opt.load_state_dict({**sd, "state": {0: {**sd["state"][0], "mu_product": float("nan")}}})


def test_skipped_steps_survive_a_checkpoint(tmp_path):
    ps = fastopt.ParamSet({"w": 3})
    opt = fastopt.Adam(ps, skip_nonfinite=True)
    ps.grad[:] = np.nan
    opt.step()
    fastopt.save(tmp_path / "c.npz", ps, opt)
    other = fastopt.Adam(ps, skip_nonfinite=True)
    fastopt.load(tmp_path / "c.npz", ps, other)
    assert other.skipped_steps == 1


def test_checkpoint_names_must_not_collide(tmp_path):
    with pytest.raises(ValueError, match="collide"):
        fastopt.save(tmp_path / "c.npz", {1: np.zeros(1), "1": np.ones(1)})


def test_checkpoint_gets_an_ordinary_file_mode(tmp_path):
    fastopt.save(tmp_path / "c.npz", [np.zeros(2)])
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(tmp_path / "c.npz").st_mode) == 0o666 & ~mask


def test_loading_something_else_is_a_clear_error(tmp_path):
    np.save(tmp_path / "one.npy", np.ones(2))
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    for name in ("one.npy", "junk.npz"):
        with pytest.raises(ValueError, match="not a fastopt checkpoint"):
            fastopt.load(tmp_path / name, [np.zeros(2)])
    with pytest.raises(FileNotFoundError):
        fastopt.load(tmp_path / "missing.npz", [np.zeros(2)])


def test_replacing_a_state_array_rebinds_the_kernel():
    w = np.zeros(4)
    opt = fastopt.Adam([w], lr=0.1)
    opt.step([np.ones(4)])
    fresh = np.zeros(4)
    opt.state[0]["exp_avg"] = fresh  # e.g. resetting the first moment by hand
    opt.step([np.ones(4)])
    assert opt.state[0]["exp_avg"] is fresh and fresh.any()
    opt.state[0]["exp_avg_sq"] = np.zeros(5)
    with pytest.raises(ValueError, match="exp_avg_sq has 5 elements"):
        opt.step([np.ones(4)])


def test_flags_switched_on_mid_training_allocate_their_state_like_torch():
    w = np.zeros(3)
    opt = fastopt.SGD([w], lr=0.1)
    opt.step([np.ones(3)])
    assert opt.state[0] == {}
    opt.param_groups[0]["momentum"] = 0.9
    opt.step([np.full(3, 2.0)])  # torch clones the gradient into a new buffer
    np.testing.assert_array_equal(opt.state[0]["momentum_buffer"], 2.0)
    adam = fastopt.Adam([np.zeros(3)])
    adam.step([np.ones(3)])
    adam.param_groups[0]["amsgrad"] = True
    adam.step([np.ones(3)])
    np.testing.assert_array_equal(adam.state[0]["max_exp_avg_sq"], adam.state[0]["exp_avg_sq"])


def test_a_step_refused_by_a_later_slot_changes_no_earlier_slot():
    a, b = np.zeros(3), np.zeros(3)
    opt = fastopt.Adam([a, b], lr=0.1)
    opt.step([np.ones(3), np.ones(3)])
    opt.state[1]["exp_avg"] = np.zeros(7)  # wrong shape: refused when slot 1 is bound
    before = a.copy()
    with pytest.raises(ValueError, match="exp_avg has 7 elements"):
        opt.step([np.ones(3), np.ones(3)])
    np.testing.assert_array_equal(a, before)
    assert opt.state[0]["step"] == 1


def test_reordered_groups_do_not_reuse_stale_hyperparameters():
    a, b = np.zeros(2), np.zeros(2)
    opt = fastopt.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.01}])
    opt.step([[np.ones(2)], [np.ones(2)]])
    assert opt.param_groups[0].version != opt.param_groups[1].version
    opt.param_groups[1]["lr"] = 0.5
    opt.step([[np.ones(2)], [np.ones(2)]])
    np.testing.assert_allclose(b, -0.51)


def test_a_schedule_changing_lr_every_step_matches_fresh_bindings(rng):
    w, ref = np.zeros(5), np.zeros(5)
    opt, fresh = fastopt.Adam([w]), None
    grads = [rng.standard_normal(5) for _ in range(6)]
    for t, g in enumerate(grads):
        opt.lr = 0.1 / (t + 1)
        opt.step([g])
    fresh = fastopt.Adam([ref])
    for t, g in enumerate(grads):
        fresh.lr = 0.1 / (t + 1)
        fresh._bound = [None]  # force a full re-bind every step
        fresh.step([g])
    np.testing.assert_array_equal(w, ref)


def test_bound_step_is_bound_once():
    from fastopt._kernels import BoundStep

    a = np.zeros(4)
    bound = BoundStep("lion", a, a.copy(), (a.copy(),), fastopt.Lion([a]).param_groups[0].kernel_hyper())
    with pytest.raises(TypeError, match="bound once"):
        bound.__init__("lion", np.zeros(8), np.zeros(3), (np.zeros(8),), {})
    bound.run()


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_optimizer_copies_update_their_own_copied_parameters(how, rng):
    ps = fastopt.ParamSet({"w": rng.standard_normal(5), "b": rng.standard_normal(3)})
    opt = fastopt.Adam([{"params": ps.select(["w"]), "lr": 0.1}, {"params": ps.select(["b"])}], amsgrad=True)
    ps.grad[:] = rng.standard_normal(ps.size)
    opt.step()
    opt.step()
    if how == "deepcopy":
        ps2, opt2 = copy.deepcopy((ps, opt))
    else:
        ps2, opt2 = pickle.loads(pickle.dumps((ps, opt)))
    assert isinstance(opt2.param_groups[0], type(opt.param_groups[0]))
    with pytest.raises(ValueError):
        opt2.param_groups[0]["lr"] = -1.0  # still validated
    for _ in range(3):
        opt.step()
        opt2.step()
    np.testing.assert_array_equal(ps2.data, ps.data)  # the copy moved its own ParamSet, in step
    assert opt2.state[0]["step"] == opt.state[0]["step"] == 5
    np.testing.assert_array_equal(opt2.state[1]["max_exp_avg_sq"], opt.state[1]["max_exp_avg_sq"])
    assert not np.shares_memory(ps2.data, ps.data)


def test_optimizer_on_arrays_pickles_with_them():
    w = np.ones(4)
    opt = fastopt.SGD([w], lr=0.5, momentum=0.9)
    opt.step([np.ones(4)])
    w2, opt2 = pickle.loads(pickle.dumps((w, opt)))
    opt.step([np.ones(4)])
    opt2.step([np.ones(4)])
    np.testing.assert_array_equal(w2, w)
    assert opt2.skip_nonfinite is False and opt2.param_groups[0]["momentum"] == 0.9


# ---------------------------------------------------------------- state validated on load, steps atomic
def _two_group_adam():
    a, b = np.zeros(3), np.zeros(2)
    opt = fastopt.Adam([{"params": [a]}, {"params": [b], "amsgrad": True}], lr=0.1)
    opt.step([[np.ones(3)], [np.ones(2)]])
    return opt, (a, b)


def test_a_step_count_with_no_room_for_another_step_loads_and_the_next_step_is_refused_whole():
    opt, (a, b) = _two_group_adam()
    sd = opt.state_dict()
    sd["state"][1]["step"] = 2**63 - 2  # the largest count that can still step
    opt.load_state_dict(sd)
    assert opt.step([[np.ones(3)], [np.ones(2)]]) and opt.state[1]["step"] == 2**63 - 1
    opt.load_state_dict(opt.state_dict())  # a count the optimizer reached loads back
    before = [a.copy(), b.copy()]
    with pytest.raises(ValueError, match="must stay in"):
        opt.step([[np.ones(3)], [np.ones(2)]])
    np.testing.assert_array_equal(a, before[0])  # the first group, stepped first, is untouched
    assert opt.state[0]["step"] == 2
    sd["state"][1]["step"] = 2**63
    with pytest.raises(ValueError, match="below 2\\*\\*63, got 9223372036854775808"):
        opt.load_state_dict(sd)


@pytest.mark.parametrize("step, error", [(2**63 - 1, ValueError), ("7", TypeError), (1.5, TypeError),
                                         (True, TypeError), (-1, ValueError)])
def test_a_bad_step_count_in_a_later_slot_refuses_the_whole_step(step, error):
    opt, (a, b) = _two_group_adam()
    opt.state[1]["step"] = step  # set by hand, past load_state_dict's checks
    before = [a.copy(), b.copy(), opt.state[0]["exp_avg"].copy()]
    with pytest.raises(error, match="state 'step' of param_groups\\[1\\]"):
        opt.step([[np.ones(3)], [np.ones(2)]])
    for x, y in zip(before, [a, b, opt.state[0]["exp_avg"]]):
        np.testing.assert_array_equal(x, y)
    assert opt.state[0]["step"] == 1


def test_numpy_integer_step_counts_set_by_hand_still_step():
    opt, _ = _two_group_adam()
    opt.state[0]["step"] = np.int64(5)
    opt.step([[np.ones(3)], [np.ones(2)]])
    assert opt.state[0]["step"] == 6 and type(opt.state[0]["step"]) is int


@pytest.mark.parametrize("optimizer, drop", [
    (lambda p: fastopt.Adam(p), "exp_avg_sq"),
    (lambda p: fastopt.Adam(p), "step"),
    (lambda p: fastopt.NAdam(p), "mu_product"),
    (lambda p: fastopt.Adamax(p), "exp_inf"),
    (lambda p: fastopt.RMSprop(p, momentum=0.9, centered=True), "square_avg"),
    (lambda p: fastopt.Adadelta(p), "acc_delta"),
])
def test_an_incomplete_slot_state_is_refused(optimizer, drop):
    opt = optimizer([np.zeros(4)])
    opt.step([np.ones(4)])
    sd = opt.state_dict()
    assert drop in sd["state"][0]
    del sd["state"][0][drop]
    before = opt.state_dict()
    with pytest.raises(ValueError, match=f"lacks \\['{drop}'\\].*empty or complete"):
        opt.load_state_dict(sd)
    after = opt.state_dict()
    assert after["state"][0].keys() == before["state"][0].keys()


def test_state_of_settings_switched_off_may_stay_and_empty_state_is_fresh():
    opt = fastopt.Adam([np.zeros(4)], amsgrad=True)
    opt.step([np.ones(4)])
    sd = opt.state_dict()
    sd["param_groups"][0]["amsgrad"] = False  # max_exp_avg_sq is no longer needed, but may be kept
    opt.load_state_dict(sd)
    assert "max_exp_avg_sq" in opt.state[0]
    opt.load_state_dict({**sd, "state": {}})  # a never-stepped optimizer's state
    assert opt.state[0] == {}


@pytest.mark.parametrize("optimizer, key, value", [
    (fastopt.SGD, "step", 3),                # SGD keeps no step count
    (fastopt.Adam, "mu_product", 0.5),       # only NAdam keeps one
    (fastopt.NAdam, "mu_product", 1.5),      # a product of factors in [0, 1)
    (fastopt.NAdam, "mu_product", -0.1),
])
def test_unknown_or_out_of_range_scalars_are_refused(optimizer, key, value):
    opt = optimizer([np.zeros(2)], lr=0.1)
    opt.step([np.ones(2)])
    sd = opt.state_dict()
    sd["state"].setdefault(0, {})[key] = value
    with pytest.raises(ValueError, match=f"'{key}'"):
        opt.load_state_dict(sd)


@pytest.mark.parametrize("key", [0.7, True, "0x1", "-0", None])
def test_state_keys_must_be_slot_indices(key):
    opt = fastopt.Adam([np.zeros(2), np.zeros(2)])
    opt.step([np.ones(2), np.ones(2)])
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="not a slot index"):
        opt.load_state_dict({**sd, "state": {key: sd["state"][0]}})


def test_two_state_entries_for_one_slot_are_refused():
    opt = fastopt.Adam([np.zeros(2), np.zeros(2)])
    opt.step([np.ones(2), np.ones(2)])
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="two entries for slot 1"):
        opt.load_state_dict({**sd, "state": {0: sd["state"][0], 1: sd["state"][1], "1": sd["state"][1]}})


@pytest.mark.parametrize("optimizer, switch", [
    (lambda p: fastopt.Adam(p), ("amsgrad", True)),
    (lambda p: fastopt.RMSprop(p), ("momentum", 0.9)),
    (lambda p: fastopt.RMSprop(p), ("centered", True)),
    (lambda p: fastopt.SGD(p, lr=0.1), ("momentum", 0.9)),
])
def test_a_state_dict_taken_right_after_switching_a_setting_on_round_trips(optimizer, switch):
    w, twin_w = np.linspace(0, 1, 4), np.linspace(0, 1, 4)
    opt, twin = optimizer([w]), optimizer([twin_w])
    for o, p in ((opt, w), (twin, twin_w)):
        o.step([np.full(4, 0.5)])
        o.param_groups[0][switch[0]] = switch[1]  # its state array is created at the next step
    twin.load_state_dict(opt.state_dict())
    opt.step([np.full(4, -0.25)])
    twin.step([np.full(4, -0.25)])
    np.testing.assert_array_equal(w, twin_w)
    assert opt.state[0].keys() == twin.state[0].keys()
