"""The structure of ``param_groups`` and ``state``: add_param_group, and clear refusals for the rest."""
import copy
import pickle

import numpy as np
import pytest

import fastopt


def _model():
    return fastopt.ParamSet({"W": (3, 2), "b": 2, "c": 3})


def test_appending_a_group_is_refused_and_points_at_add_param_group():
    opt = fastopt.SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(TypeError, match="add_param_group"):
        opt.param_groups.append({"params": [np.zeros(3)], "lr": 0.1})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("change", [
    lambda groups: groups.clear(),
    lambda groups: groups.pop(),
    lambda groups: groups.insert(0, {}),
    lambda groups: groups.extend([{}]),
    lambda groups: groups.remove(groups[0]),
    lambda groups: groups.__setitem__(0, {"params": [0], "lr": 0.1}),
    lambda groups: groups.__delitem__(0),
    lambda groups: groups.__iadd__([{}]),
])
def test_structural_changes_to_param_groups_are_refused(change):
    w = np.zeros(2)
    opt = fastopt.Adam([w], lr=0.1)
    with pytest.raises(TypeError, match="param_groups cannot be added to, removed from or replaced"):
        change(opt.param_groups)
    assert opt.step([np.ones(2)]) and w[0] < 0  # still steps, with its group intact


def test_param_groups_and_state_cannot_be_rebound():
    opt = fastopt.SGD([np.zeros(2)])
    with pytest.raises(AttributeError):
        opt.param_groups = []
    with pytest.raises(AttributeError):
        opt.state = []


def test_state_list_structure_is_fixed_but_a_slot_can_be_reset():
    w = np.zeros(2)
    opt = fastopt.Adam([w], lr=0.1)
    opt.step([np.ones(2)])
    with pytest.raises(TypeError, match="state"):
        opt.state.clear()
    with pytest.raises(TypeError, match="state"):
        opt.state[0] = {}
    opt.state[0].clear()  # restart the slot's moments
    opt.step([np.ones(2)])
    assert opt.state[0]["step"] == 1


def test_hyperparameters_still_change_in_place():
    opt = fastopt.SGD([np.zeros(2)], lr=0.1)
    opt.param_groups[0]["lr"] = 0.5
    for group in opt.param_groups:
        group["momentum"] = 0.9
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["momentum"] == 0.9


def test_copies_of_param_groups_are_plain_lists():
    opt = fastopt.SGD([np.zeros(2)], lr=0.1)
    for copied in (copy.deepcopy(opt.param_groups), copy.copy(opt.param_groups),
                   pickle.loads(pickle.dumps(opt.param_groups))):
        assert type(copied) is list and copied[0]["lr"] == 0.1
        copied.append({})  # a copy is the caller's to change


def test_add_param_group_on_arrays_steps_the_new_group_with_defaults_and_overrides():
    w, b = np.ones(3), np.ones(2)
    opt = fastopt.SGD([w], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": [b], "lr": 0.5})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["params"] == [1]
    assert len(opt.state) == 2
    assert opt.step([[np.ones(3)], [np.ones(2)]])  # one entry per group from now on
    np.testing.assert_allclose(w, 0.9)
    np.testing.assert_allclose(b, 0.5)

    ref_w, ref_b = np.ones(3), np.ones(2)
    ref = fastopt.SGD([{"params": [ref_w]}, {"params": [ref_b], "lr": 0.5}], lr=0.1, momentum=0.9)
    ref.step([[np.ones(3)], [np.ones(2)]])
    for _ in range(3):
        opt.step([[np.full(3, 0.3)], [np.full(2, -0.2)]])
        ref.step([[np.full(3, 0.3)], [np.full(2, -0.2)]])
    np.testing.assert_array_equal(w, ref_w)
    np.testing.assert_array_equal(b, ref_b)


def test_add_param_group_with_ungrouped_grads_is_refused_clearly():
    opt = fastopt.SGD([np.ones(3)], lr=0.1)
    opt.add_param_group({"params": [np.ones(2)]})
    with pytest.raises(TypeError, match="one entry per parameter group"):
        opt.step([np.ones(3)])


def test_add_param_group_on_a_paramset_selection():
    ps = _model()
    opt = fastopt.AdamW(ps.select(["W"]), lr=1e-2)
    opt.add_param_group({"params": ps.select(["c"]), "weight_decay": 0.0})
    ps.grad[:] = 1.0
    assert opt.step()  # every group lives in the ParamSet: no grads needed
    assert ps["W"].max() < 0 and ps["c"].max() < 0 and not ps["b"].any()
    assert [opt.state[i]["step"] for i in range(2)] == [1, 1]


@pytest.mark.parametrize("group, error, match", [
    ({"params": "W"}, TypeError, "params must be"),
    ({"lr": 0.1}, ValueError, "no 'params' entry"),
    ({"params": []}, ValueError, "no parameters"),
    ({"params": [np.zeros(2)], "momentun": 0.9}, ValueError, r"sets \['momentun'\]"),
    ({"params": [np.zeros(2)], "lr": -1.0}, ValueError, "Invalid learning rate"),
    ({"params": [np.zeros(2)], "nesterov": True}, ValueError, "Nesterov"),
    ([np.zeros(2)], TypeError, "must be a dict"),
])
def test_bad_groups_are_refused_and_change_nothing(group, error, match):
    w = np.zeros(3)
    opt = fastopt.SGD([w], lr=0.1)
    with pytest.raises(error, match=match):
        opt.add_param_group(group)
    assert len(opt.param_groups) == len(opt.state) == 1
    assert opt.step([np.ones(3)])  # still ungrouped
    np.testing.assert_allclose(w, -0.1)


def test_a_group_sharing_memory_with_existing_parameters_is_refused():
    ps = _model()
    opt = fastopt.SGD(ps.select(["W", "b"]), lr=0.1)
    with pytest.raises(ValueError, match="share memory"):
        opt.add_param_group({"params": ps.select(["b"])})
    w = np.zeros(4)
    opt = fastopt.SGD([w[:2]], lr=0.1)
    with pytest.raises(ValueError, match="share memory"):
        opt.add_param_group({"params": [w[1:]]})
    assert len(opt.param_groups) == 1
    assert opt.step([np.ones(2)])


def test_state_dict_round_trip_and_copies_after_add_param_group():
    w, b = np.ones(3), np.ones(2)
    opt = fastopt.Adam([w], lr=0.1)
    opt.add_param_group({"params": {"b": b}, "amsgrad": True})
    opt.step([[np.ones(3)], {"b": np.ones(2)}])
    sd = opt.state_dict()
    assert set(sd["state"][1]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}

    twin = fastopt.Adam([{"params": [w.copy()]}, {"params": {"b": b.copy()}, "amsgrad": True}], lr=0.1)
    twin.load_state_dict(sd)
    (copied_w, copied_b), clone = copy.deepcopy(((w, b), opt))  # the copy has the added group too
    assert len(clone.param_groups) == 2 and clone.param_groups[1]["amsgrad"]
    assert twin.step([[np.ones(3)], {"b": np.ones(2)}]) and opt.step([[np.ones(3)], {"b": np.ones(2)}])
    clone.step([[np.ones(3)], {"b": np.ones(2)}])
    np.testing.assert_array_equal(twin.state[1]["exp_avg"], opt.state[1]["exp_avg"])
    np.testing.assert_array_equal(clone.state[1]["exp_avg"], opt.state[1]["exp_avg"])


def test_schedulers_see_an_added_group():
    from fastopt.optim.lr_scheduler import StepLR

    opt = fastopt.SGD([np.zeros(2)], lr=1.0)
    opt.add_param_group({"params": [np.zeros(2)], "lr": 2.0})
    sched = StepLR(opt, step_size=1, gamma=0.5)
    opt.step([[np.ones(2)], [np.ones(2)]])
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [0.5, 1.0]


@pytest.mark.parametrize("build", [
    lambda opt: __import__("fastopt.optim.lr_scheduler", fromlist=["x"]).StepLR(opt, step_size=1),
    lambda opt: __import__("fastopt.optim.lr_scheduler", fromlist=["x"]).LambdaLR(opt, lambda t: 0.5 ** t),
    lambda opt: __import__("fastopt.optim.lr_scheduler", fromlist=["x"]).OneCycleLR(opt, max_lr=1.0,
                                                                                     total_steps=10),
    lambda opt: __import__("fastopt.optim.lr_scheduler", fromlist=["x"]).ReduceLROnPlateau(opt, patience=0),
])
def test_a_schedule_built_before_add_param_group_says_so(build):
    opt = fastopt.SGD([np.zeros(2)], lr=1.0, momentum=0.9)
    sched = build(opt)
    opt.add_param_group({"params": [np.zeros(2)], "lr": 2.0})
    with pytest.raises(ValueError, match="built for 1: build the schedule after add_param_group"):
        sched.step(1.0) if hasattr(sched, "best") else sched.step()
    if not hasattr(sched, "best"):
        with pytest.raises(ValueError, match="built for 1"):
            sched.lr_at(3)


def test_the_callers_params_list_changed_later_changes_nothing():
    w, other = np.zeros(3), np.zeros(3)
    params = [w]
    opt = fastopt.SGD(params, lr=1.0)
    params.append(np.zeros(2))  # the optimizer holds its own list: neither change reaches it
    params[0] = other
    opt.add_param_group({"params": [np.zeros(4)]})
    assert len(opt.state) == 2
    assert opt.step([[np.ones(3)], [np.ones(4)]])
    np.testing.assert_array_equal(w, -1.0)
    assert not other.any()
    (copied_w, clone) = copy.deepcopy((w, opt))
    clone.step([[np.ones(3)], [np.ones(4)]])
    np.testing.assert_array_equal(copied_w, -2.0)
