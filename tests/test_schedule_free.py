"""Schedule-free SGD and AdamW: the schedulefree package's trajectories, the train()/eval() switch, its lerp
kernel, resuming, fit, and batch-norm statistics recomputed at the evaluation point (swa_utils.update_bn)."""
import numpy as np
import pytest
from conftest import SIZES, THREADS

import fastopt
import reference
import storage_reference as sr
from fastopt._kernels import lerp
from fastopt._storage import BFLOAT16
from fastopt.nn import BatchNorm
from fastopt.optim.swa_utils import update_bn
from test_kernels import assert_bitwise_equal
from trajectory import gradient, problem

CLASSES = {"SGDScheduleFree": fastopt.SGDScheduleFree, "AdamWScheduleFree": fastopt.AdamWScheduleFree}



# At lr 0.01 and beta1 0.5 the AdamW trajectory still contracts; at 0.05 it oscillates and amplifies an ulp of
# difference (torch's fused addcmul) to 1e-8 within 300 steps, for any two implementations.
PEER_CASES = [
    ("SGDScheduleFree", dict(lr=0.1)),
    ("SGDScheduleFree", dict(lr=0.3, momentum=0.5, weight_decay=0.05, warmup_steps=30, r=1.0)),
    ("SGDScheduleFree", dict(lr=0.05, momentum=0.95, weight_lr_power=0.0, warmup_steps=100)),
    ("AdamWScheduleFree", dict()),
    ("AdamWScheduleFree", dict(lr=0.01, weight_decay=0.01, warmup_steps=50, r=0.5)),
    ("AdamWScheduleFree", dict(lr=0.01, betas=(0.5, 0.99), weight_lr_power=0.0, eps=1e-6)),
]


@pytest.mark.parametrize("name, config", PEER_CASES, ids=[f"{n}-{c}" for n, c in PEER_CASES])
def test_300_steps_match_the_schedulefree_package(name, config):
    """300 float64 steps with a switch to the evaluation point and back every 37 steps: within 1e-9 of the
    package's own optimizer (foreach=False: its per-tensor path) at every step, in both modes."""
    torch = pytest.importorskip("torch")
    schedulefree = pytest.importorskip("schedulefree")
    inits, scales, targets = problem()
    ours = [p.copy() for p in inits]
    opt = CLASSES[name](ours, **config)
    theirs = [torch.tensor(p) for p in inits]
    peer = getattr(schedulefree, name)(theirs, **config, foreach=False)
    peer.train()

    worst = 0.0

    def compare():
        nonlocal worst
        for p, tp in zip(ours, theirs):
            ref = tp.numpy()
            worst = max(worst, np.max(np.abs(p - ref)) / np.max(np.abs(ref)))

    for k in range(300):
        opt.step([gradient(p, s, t) for p, s, t in zip(ours, scales, targets)])
        for tp, s, t in zip(theirs, scales, targets):
            tp.grad = torch.from_numpy(gradient(tp.numpy(), s, t))
        peer.step()
        compare()
        if k % 37 == 36:
            opt.eval()
            peer.eval()
            compare()
            opt.train()
            peer.train()
    assert worst <= 1e-9, f"largest relative difference along the trajectory: {worst:.3g}"
    assert opt.state[0]["weight_sum"] == pytest.approx(peer.param_groups[0]["weight_sum"], rel=1e-12)
    assert opt.state[0]["lr_max"] == peer.param_groups[0]["lr_max"]
    assert max(np.max(np.abs(p - p0)) for p, p0 in zip(ours, inits)) > 0.1  # the run went somewhere


def _stepped(cls, p, steps=3, **config):
    opt = cls([p], **config)
    rng = np.random.default_rng(1)
    for _ in range(steps):
        opt.step([rng.standard_normal(p.shape).astype(p.dtype)])
    return opt


@pytest.mark.parametrize("cls", CLASSES.values())
def test_eval_moves_to_the_average_and_train_moves_back(cls, dtype):
    p = np.linspace(-1, 1, 9).astype(dtype)
    opt = _stepped(cls, p, lr=0.1)
    beta = opt.param_groups[0]["momentum"] if cls is fastopt.SGDScheduleFree else opt.param_groups[0]["betas"][0]
    y, z = p.copy(), opt.state[0]["z"].copy()
    assert opt.training
    opt.eval()
    x = reference._lerp(y, z, 1.0 - 1.0 / beta)
    assert_bitwise_equal(p, x)
    assert not opt.training
    opt.eval()  # already there: nothing moves
    assert_bitwise_equal(p, x)
    opt.train()
    assert_bitwise_equal(p, reference._lerp(x, z, 1.0 - beta))
    np.testing.assert_allclose(p, y, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-6)
    assert opt.training


@pytest.mark.parametrize("cls", CLASSES.values())
def test_a_step_in_eval_mode_is_refused_and_changes_nothing(cls):
    p = np.ones(4)
    opt = _stepped(cls, p, lr=0.1)
    opt.eval()
    before, state = p.copy(), {k: np.copy(v) for k, v in opt.state[0].items()}
    with pytest.raises(RuntimeError, match="call train"):
        opt.step([np.ones(4)])
    assert_bitwise_equal(p, before)
    assert opt.state[0]["step"] == state["step"]


def test_before_the_first_step_the_switch_moves_nothing():
    p = np.arange(3.0)
    opt = fastopt.AdamWScheduleFree([p])
    opt.eval()
    np.testing.assert_array_equal(p, [0.0, 1.0, 2.0])
    opt.train()
    opt.step([np.ones(3)])
    np.testing.assert_array_equal(opt.state[0]["weight_sum"], 0.0025**2)  # lr_max ** 2 at step 1


@pytest.mark.parametrize("cls, config, match", [
    (fastopt.SGDScheduleFree, dict(momentum=0.0), "momentum in"),
    (fastopt.SGDScheduleFree, dict(momentum=1.0), "momentum in"),
    (fastopt.AdamWScheduleFree, dict(betas=(0.0, 0.9)), r"betas\[0\] in"),
    (fastopt.AdamWScheduleFree, dict(warmup_steps=-1), "warmup_steps"),
    (fastopt.SGDScheduleFree, dict(weight_lr_power=-1.0), "weight_lr_power"),
])
def test_bad_hyperparameters(cls, config, match):
    with pytest.raises(ValueError, match=match):
        cls([np.zeros(2)], **config)
    p = np.ones(2)
    opt = _stepped(cls, p, lr=0.1)
    key, value = next(iter(config.items()))
    try:
        opt.param_groups[0][key] = value  # refused unless it is valid for its kind (momentum 0 is, for a step)
    except ValueError as exc:
        assert key in str(exc)
        return
    before = p.copy()
    with pytest.raises(ValueError, match=match):
        opt.eval()  # but not to move to the average: refused before anything moves
    assert_bitwise_equal(p, before)
    assert opt.training


@pytest.mark.parametrize("cls", CLASSES.values())
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_state_dict_and_checkpoint_keep_the_mode_and_resume_exactly(cls, mode, tmp_path, rng):
    grads = [rng.standard_normal(1000) for _ in range(6)]
    straight = fastopt.ParamSet({"w": np.linspace(-1, 1, 1000)})
    opt = cls(straight, lr=0.05)
    for k, g in enumerate(grads):
        straight.grad[:] = g
        opt.step()
        if k == 2 and mode == "eval":  # the same switch there and back as the saved run: it rounds
            opt.eval()
            opt.train()

    first = fastopt.ParamSet({"w": np.linspace(-1, 1, 1000)})
    opt1 = cls(first, lr=0.05)
    for g in grads[:3]:
        first.grad[:] = g
        opt1.step()
    getattr(opt1, mode)()
    assert opt1.state_dict()["train_mode"] == (mode == "train")
    fastopt.save(tmp_path / "c.npz", first, opt1)

    for restore in ("state_dict", "checkpoint"):
        resumed = fastopt.ParamSet({"w": np.zeros(1000)})
        opt2 = cls(resumed, lr=0.05)
        if restore == "checkpoint":
            fastopt.load(tmp_path / "c.npz", resumed, opt2)
        else:
            resumed.data[:] = first.data
            opt2.load_state_dict(opt1.state_dict())
        assert opt2.training == (mode == "train")
        opt2.train()
        for g in grads[3:]:
            resumed.grad[:] = g
            opt2.step()
        assert_bitwise_equal(resumed.data, straight.data, restore)


def test_a_bad_mode_in_a_state_dict_is_refused_before_anything_changes():
    opt = _stepped(fastopt.SGDScheduleFree, np.ones(3), lr=0.1)
    saved = opt.state_dict()
    opt.eval()
    with pytest.raises(TypeError, match="train_mode"):
        opt.load_state_dict({**saved, "train_mode": "yes"})
    assert not opt.training


@pytest.mark.parametrize("options", [dict(master_weights=True), dict(), dict(state_dtype="int8"),
                                     dict(state_dtype="bfloat16", master_weights=True)],
                         ids=["master", "bf16", "int8-state", "bf16-state-master"])
def test_bfloat16_parameters_switch_through_their_storage(options):
    p = np.linspace(-1, 1, 300).astype(BFLOAT16)
    opt = _stepped(fastopt.AdamWScheduleFree, p, lr=0.05, **options)
    state = opt.state[0]
    assert state["z"].dtype == np.float32  # the iterate stays in float32 whatever the state dtype
    assert state["exp_avg_sq"].dtype == {"int8": np.uint8, "bfloat16": BFLOAT16}.get(options.get("state_dtype"),
                                                                                      BFLOAT16)
    start = state["master_param"].copy() if options.get("master_weights") else sr.bf16_widen(p)
    z = state["z"]
    opt.eval()
    x = reference._lerp(start, z, 1.0 - 1.0 / 0.9)
    if options.get("master_weights"):
        assert_bitwise_equal(state["master_param"], x)
    assert_bitwise_equal(p, sr.bf16_nearest(x))


# ------------------------------------------------------------------ the lerp kernel
def _stored(array, storage):
    """``array`` (float32) in ``storage``, and its float32 value as stored."""
    if storage == "bfloat16":
        bits = sr.bf16_nearest(array)
        return bits, sr.bf16_widen(bits)
    if storage == "int8":
        codes, absmax = sr.quantize_blockwise(array, True)
        return (codes, absmax), sr.dequantize_blockwise(codes, absmax, True)
    return array, array


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("weight", [0.3, -0.11, -2.0, 0.75])
@pytest.mark.parametrize("start_kind, end_kind", [
    ("float64", "float64"), ("float32", "float32"), ("float32", "bfloat16"), ("float32", "int8"),
    ("bfloat16", "bfloat16"), ("bfloat16", "float32"), ("bfloat16", "int8"),
])
def test_lerp_matches_torch_lerp_in_any_storage(start_kind, end_kind, weight, n, threads, rng):
    a = rng.standard_normal(n)
    b = rng.standard_normal(n)
    if start_kind == "float64":
        start, end = a.copy(), b
        expected = reference._lerp(a, b, weight)
    else:
        start, a32 = _stored(a.astype(np.float32), start_kind)
        end, b32 = _stored(b.astype(np.float32), end_kind)
        expected = reference._lerp(a32, b32, weight)
        if start_kind == "bfloat16":
            expected = sr.bf16_nearest(expected)
    lerp(start, end, weight, True, threads)
    assert_bitwise_equal(start, expected)


def test_lerp_refuses_what_it_cannot_read():
    a = np.zeros(4)
    with pytest.raises(ValueError, match="float64 goes only with float64"):
        lerp(a, np.zeros(4, np.float32), 0.5)
    with pytest.raises(ValueError, match="4 elements, 3 expected"):
        lerp(np.zeros(3), a, 0.5)
    read_only = a.copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        lerp(read_only, a, 0.5)
    with pytest.raises(ValueError, match="not int8 codes"):
        lerp((np.zeros(256, np.uint8), np.ones(1, np.float32)), np.zeros(256, np.float32), 0.5)


# ------------------------------------------------------------------ fit and update_bn
class _Quadratic:
    """``0.5 |w - target|^2`` on each batch, gradients into the ParamSet; records the mode of each call."""

    def __init__(self, opt_cls, **config):
        self.params = fastopt.ParamSet({"w": np.zeros(3)})
        self.opt = opt_cls(self.params, **config)
        self.modes = []

    def loss_and_grad(self, X, y):
        self.modes.append(("batch", self.opt.training))
        diff = self.params.data - X.mean(axis=0)
        self.params.grad[:] = diff
        return 0.5 * float(diff @ diff)

    def loss(self, X, y):
        self.modes.append(("validation", self.opt.training))
        diff = self.params.data - X.mean(axis=0)
        return 0.5 * float(diff @ diff)


def test_fit_steps_in_training_mode_and_validates_and_ends_at_the_average():
    X = np.tile([1.0, 2.0, 3.0], (8, 1))
    model = _Quadratic(fastopt.SGDScheduleFree, lr=0.2)
    fastopt.fit(model, model.opt, X, None, epochs=3, batch_size=4, validation_data=(X, None), progress=False)
    assert {mode for what, mode in model.modes if what == "batch"} == {True}
    assert {mode for what, mode in model.modes if what == "validation"} == {False}
    assert not model.opt.training
    y = model.params.data.copy()
    model.opt.train()
    assert not np.array_equal(model.params.data, y)  # the parameters fit left were the average, not y


def test_fit_that_fails_mid_epoch_leaves_the_average_and_restores_the_best():
    X = np.tile([1.0, 2.0, 3.0], (8, 1))
    model = _Quadratic(fastopt.AdamWScheduleFree, lr=0.1)
    calls = []
    real = model.loss_and_grad

    def failing(X_batch, y_batch):
        calls.append(1)
        return float("nan") if len(calls) == 5 else real(X_batch, y_batch)

    model.loss_and_grad = failing
    best = []
    with pytest.raises(fastopt.NonFiniteLossError):
        fastopt.fit(model, model.opt, X, None, epochs=3, batch_size=4, validation_data=(X, None),
                    restore_best=True, progress=False,
                    callback=lambda epoch, history: best.append(model.params.data.copy()) and None)
    assert not model.opt.training
    np.testing.assert_array_equal(model.params.data, best[-1])  # epoch 2's averaged parameters, as saved


def _batch_stats(batches):
    means = [b.mean(axis=0) for b in batches]
    variances = [b.var(axis=0, ddof=1) for b in batches]
    return np.mean(means, axis=0), np.mean(variances, axis=0)


def test_update_bn_recomputes_the_statistics_as_a_cumulative_average(rng):
    X = rng.standard_normal((40, 3)) * [1.0, 2.0, 3.0] + [0.5, -1.0, 2.0]
    bn = BatchNorm(3, dtype=np.float64, momentum=0.3)
    bn.running_mean[:] = 7.0
    bn.eval()
    untracked = BatchNorm(3, dtype=np.float64, track_running_stats=False)
    seen = []

    def forward(x):
        seen.append(x)
        return untracked(bn(x))

    batches = [(X[i:i + 8], None) for i in range(0, 40, 8)]
    update_bn(batches, forward, [bn, untracked])
    mean, var = _batch_stats([b for b, _ in batches])
    np.testing.assert_allclose(bn.running_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, var, rtol=1e-12)
    assert bn.num_batches_tracked == 5 and len(seen) == 5 and seen[0] is batches[0][0]
    assert bn.momentum == 0.3 and not bn.training  # restored
    update_bn([], forward, bn)  # no data: the statistics start again (mean 0, variance 1)
    np.testing.assert_array_equal(bn.running_mean, 0.0)


def test_update_bn_refuses_what_is_not_a_layer():
    with pytest.raises(TypeError, match=r"layers\[1\]"):
        update_bn([np.zeros((2, 1))], lambda x: None, [BatchNorm(1), object()])
    with pytest.raises(TypeError, match="forward"):
        update_bn([], None, BatchNorm(1))
    with pytest.raises(TypeError, match="iterable"):
        update_bn([], lambda x: None, 3)


def test_update_bn_restores_the_layers_when_forward_fails():
    bn = BatchNorm(2, momentum=0.2)
    bn.running_mean[:] = 3.0
    calls = []

    def forward(x):
        calls.append(bn(x))
        if len(calls) == 2:
            raise KeyError("boom")

    with pytest.raises(KeyError):
        update_bn([np.ones((2, 2), np.float32)] * 3, forward, bn)
    assert bn.momentum == 0.2 and bn.training and bn.num_batches_tracked == 0
    np.testing.assert_array_equal(bn.running_mean, 3.0)  # as before the call
    with pytest.raises(TypeError, match="minibatches"):
        update_bn(np.zeros((4, 2)), forward, bn)


def test_fit_reports_the_error_that_stopped_it_not_the_switch_after(monkeypatch):
    X = np.tile([1.0, 2.0, 3.0], (8, 1))
    model = _Quadratic(fastopt.SGDScheduleFree, lr=0.2)
    model.params.grad[:] = 1.0
    model.opt.step()
    model.opt.state[0]["z"] = np.zeros(5)  # the switch at the end would refuse this too
    monkeypatch.setattr(model, "loss_and_grad", lambda X, y: (_ for _ in ()).throw(KeyError("from the model")))
    with pytest.raises(KeyError, match="from the model"):
        fastopt.fit(model, model.opt, X, None, epochs=1, batch_size=4, progress=False)


def test_sharded_optimizer_refuses_the_schedule_free_rules():
    from fastopt.distributed.sharded import _check_arguments

    with pytest.raises(ValueError, match="train\\(\\)/eval\\(\\)"):
        _check_arguments(fastopt.AdamWScheduleFree, fastopt.ParamSet({"w": 2}))


def test_small_steps_accumulate_in_z_with_bfloat16_parameters():
    """1000 steps each far below bfloat16's resolution at 1.0 (1/128) still move the parameters, with a master
    copy of y: z keeps them in float32, even with bfloat16 state."""
    p = np.ones(8, BFLOAT16)
    opt = fastopt.SGDScheduleFree([p], lr=1e-4, momentum=0.5, master_weights=True, state_dtype="bfloat16")
    for _ in range(1000):
        opt.step([np.ones(8, BFLOAT16)])
    np.testing.assert_allclose(opt.state[0]["z"], 0.9, rtol=1e-4)  # 1000 steps of 1e-4, in float32
    opt.eval()
    assert float(p[0]) == pytest.approx(0.95, abs=0.01)  # the average of z's path from 1 to 0.9


def test_a_replaced_z_of_the_wrong_shape_is_refused_before_any_slot_moves():
    a, b = np.ones(3), np.ones(4)
    opt = fastopt.SGDScheduleFree([a, b], lr=0.1)
    opt.step([np.ones(3), np.ones(4)])
    before = a.copy(), b.copy()
    opt.state[1]["z"] = np.zeros(5)
    with pytest.raises(ValueError, match="state 'z' of"):
        opt.eval()
    assert opt.training
    np.testing.assert_array_equal(a, before[0])
    np.testing.assert_array_equal(b, before[1])


def test_the_mode_check_and_the_step_hold_one_lock():
    import threading

    p = np.ones(4)
    opt = fastopt.SGDScheduleFree([p], lr=0.1)
    opt.step([np.ones(4)])
    entered, release = threading.Event(), threading.Event()
    results = []

    def blocking_step():
        with opt._exclusive():  # a step in progress holds the optimizer's lock
            entered.set()
            release.wait(5)
            results.append(opt.step([np.ones(4)]))

    thread = threading.Thread(target=blocking_step)
    thread.start()
    entered.wait(5)
    switcher = threading.Thread(target=opt.eval)
    switcher.start()  # waits for the lock: eval() cannot come between the step's check and its update
    release.set()
    thread.join(5)
    switcher.join(5)
    assert results == [True] and not opt.training and opt.state[0]["step"] == 2


def test_a_schedule_sets_the_rate_the_averaging_weights_follow():
    """A fastopt schedule changing lr between steps, and the same rates set on the package's group: the same
    trajectory (lr_max and the weights follow the scheduled rate, as the package's do)."""
    torch = pytest.importorskip("torch")
    schedulefree = pytest.importorskip("schedulefree")
    from fastopt.optim.lr_scheduler import CosineAnnealingLR

    inits, scales, targets = problem()
    ours = [p.copy() for p in inits]
    opt = fastopt.AdamWScheduleFree(ours, lr=0.01, warmup_steps=10)
    schedule = CosineAnnealingLR(opt, T_max=100)
    theirs = [torch.tensor(p) for p in inits]
    peer = schedulefree.AdamWScheduleFree(theirs, lr=0.01, warmup_steps=10, foreach=False)
    peer.train()
    for _ in range(100):
        peer.param_groups[0]["lr"] = opt.lr
        opt.step([gradient(p, s, t) for p, s, t in zip(ours, scales, targets)])
        for tp, s, t in zip(theirs, scales, targets):
            tp.grad = torch.from_numpy(gradient(tp.numpy(), s, t))
        peer.step()
        schedule.step()
    for p, tp in zip(ours, theirs):
        np.testing.assert_allclose(p, tp.numpy(), rtol=1e-9, atol=1e-12)
    assert opt.state[0]["lr_max"] == peer.param_groups[0]["lr_max"]


@pytest.mark.parametrize("options", [dict(), dict(master_weights=True)], ids=["bf16", "bf16-master"])
def test_averaged_point_is_evals_point_without_moving_anything(options):
    p = np.linspace(-1, 1, 300).astype(BFLOAT16)
    opt = _stepped(fastopt.AdamWScheduleFree, p, lr=0.05, **options)
    before = p.copy()
    point = opt.averaged_point(0)
    assert point.dtype == np.float32 and opt.training
    assert_bitwise_equal(p, before)
    opt.eval()
    assert_bitwise_equal(p, sr.bf16_nearest(point))
    assert_bitwise_equal(opt.averaged_point(0), sr.bf16_widen(p) if not options else opt.state[0]["master_param"])
