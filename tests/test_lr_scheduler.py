"""Learning-rate schedules: torch parity over 1000 steps, closed forms, composition, checkpoints, errors.

The torch comparisons are skipped when torch is not installed.
"""
import copy
import doctest
import math
import pickle

import numpy as np
import pytest

import fastopt
from fastopt.optim import lr_scheduler as S

STEPS = 1000
RTOL = 1e-12


def _torch():
    return pytest.importorskip("torch")


def one_group(lr=0.1):
    return fastopt.SGD([np.zeros(3)], lr=lr, momentum=0.9)


def two_groups():
    return fastopt.SGD([{"params": [np.zeros(3)], "lr": 0.1}, {"params": [np.zeros(2)], "lr": 0.03}], momentum=0.9)


def torch_twin(opt):
    """A torch optimizer of the same kind with the same groups and hyperparameters."""
    torch = _torch()
    groups = []
    for group in opt.param_groups:
        hyper = {k: v for k, v in group.items() if k not in ("params", "decoupled_weight_decay")}
        groups.append({"params": [torch.zeros(2, dtype=torch.float64)], **hyper})
    return getattr(torch.optim, type(opt).__name__)(groups)


class Halving:
    """A callable object with state, as a stateful lr_lambda."""

    def __init__(self):
        self.base = 0.5

    def __call__(self, t):
        return self.base ** (t // 100)


# (id, factory(module, optimizer) -> schedule); the same code builds fastopt's and torch's schedules.
CASES = [
    ("lambda", lambda M, o: M.LambdaLR(o, lambda t: 1.0 / (1.0 + 0.01 * t))),
    ("lambda-object", lambda M, o: M.LambdaLR(o, Halving())),
    ("multiplicative", lambda M, o: M.MultiplicativeLR(o, lambda t: 0.997 if t % 3 else 1.004)),
    ("step", lambda M, o: M.StepLR(o, step_size=30, gamma=0.7)),
    ("multistep", lambda M, o: M.MultiStepLR(o, milestones=[10, 100, 550], gamma=0.3)),
    ("constant", lambda M, o: M.ConstantLR(o, factor=0.25, total_iters=40)),
    ("constant-defaults", lambda M, o: M.ConstantLR(o)),
    ("linear-warmup", lambda M, o: M.LinearLR(o, start_factor=0.01, total_iters=100)),
    ("linear-decay", lambda M, o: M.LinearLR(o, start_factor=1.0, end_factor=0.0, total_iters=900)),
    ("exponential", lambda M, o: M.ExponentialLR(o, gamma=0.995)),
    ("polynomial", lambda M, o: M.PolynomialLR(o, total_iters=700, power=2.0)),
    ("polynomial-sqrt", lambda M, o: M.PolynomialLR(o, total_iters=999, power=0.5)),
    ("cosine", lambda M, o: M.CosineAnnealingLR(o, T_max=100, eta_min=1e-3)),
    ("cosine-periods", lambda M, o: M.CosineAnnealingLR(o, T_max=7)),
    ("cosine-T1", lambda M, o: M.CosineAnnealingLR(o, T_max=1, eta_min=0.01)),
    ("sgdr", lambda M, o: M.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=2, eta_min=1e-4)),
    ("sgdr-fixed", lambda M, o: M.CosineAnnealingWarmRestarts(o, T_0=37)),
    ("cyclic", lambda M, o: M.CyclicLR(o, base_lr=0.01, max_lr=[0.1, 0.2][: len(o.param_groups)],
                                        step_size_up=50)),
    ("cyclic-triangular2", lambda M, o: M.CyclicLR(o, 0.001, 0.1, step_size_up=30, step_size_down=70,
                                                   mode="triangular2", base_momentum=0.7)),
    ("cyclic-exp-range", lambda M, o: M.CyclicLR(o, 0.001, 0.1, step_size_up=40, mode="exp_range", gamma=0.999)),
    ("cyclic-scale-fn", lambda M, o: M.CyclicLR(o, 0.001, 0.1, step_size_up=25, scale_fn=lambda x: 1 / (1 + x),
                                                scale_mode="iterations", cycle_momentum=False)),
    ("onecycle", lambda M, o: M.OneCycleLR(o, max_lr=0.5, total_steps=STEPS)),
    ("onecycle-3phase-linear", lambda M, o: M.OneCycleLR(o, max_lr=[0.5, 0.2][: len(o.param_groups)],
                                                         epochs=10, steps_per_epoch=101, pct_start=0.25,
                                                         anneal_strategy="linear", three_phase=True)),
    ("sequential-warmup-cosine", lambda M, o: M.SequentialLR(
        o, [M.LinearLR(o, start_factor=0.1, total_iters=50), M.CosineAnnealingLR(o, T_max=950)], milestones=[50])),
    ("sequential-three", lambda M, o: M.SequentialLR(
        o, [M.ConstantLR(o, factor=0.5, total_iters=20), M.ExponentialLR(o, gamma=0.99), M.StepLR(o, 100)],
        milestones=[10, 300])),
    ("chained", lambda M, o: M.ChainedScheduler(
        [M.ConstantLR(o, factor=0.5, total_iters=20), M.ExponentialLR(o, gamma=0.999)])),
    ("chained-warmup-cosine", lambda M, o: M.ChainedScheduler(
        [M.LinearLR(o, start_factor=0.2, total_iters=30), M.CosineAnnealingLR(o, T_max=300, eta_min=1e-4)], o)),
]
IDS = [c[0] for c in CASES]
FACTORIES = [c[1] for c in CASES]
CLOSED = [c for c in CASES if not c[0].startswith("chained")]


def run(sched, steps=STEPS):
    """The learning rates after 0, 1, ..., steps steps."""
    lrs = [sched.get_last_lr()]
    for _ in range(steps):
        sched.step()
        lrs.append(sched.get_last_lr())
    return np.array(lrs)


def momenta(opt):
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]


# ------------------------------------------------------------------ torch parity
@pytest.mark.parametrize("make_opt", [one_group, two_groups], ids=["1group", "2groups"])
@pytest.mark.parametrize("factory", FACTORIES, ids=IDS)
def test_1000_steps_match_torch(factory, make_opt):
    torch = _torch()
    opt = make_opt()
    topt = torch_twin(opt)
    ours, theirs = factory(S, opt), factory(torch.optim.lr_scheduler, topt)
    topt.step()  # torch warns if its scheduler steps before its optimizer ever did
    got, want = [], []
    for t in range(STEPS + 1):
        if t:
            ours.step()
            theirs.step()
        got.append(ours.get_last_lr() + momenta(opt))
        want.append(theirs.get_last_lr() + momenta(topt))
        assert [g["lr"] for g in opt.param_groups] == got[-1][: len(opt.param_groups)]
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)
    if hasattr(theirs, "last_epoch"):
        assert ours.last_epoch == theirs.last_epoch
    assert [g["initial_lr"] for g in opt.param_groups] == [g["initial_lr"] for g in topt.param_groups]


@pytest.mark.parametrize("name", ["CyclicLR", "OneCycleLR"])
def test_cycled_beta1_matches_torch(name):
    torch = _torch()
    opt = fastopt.Adam([np.zeros(2)], lr=0.01, betas=(0.9, 0.99))
    topt = torch_twin(opt)
    if name == "CyclicLR":
        args = dict(base_lr=0.001, max_lr=0.01, step_size_up=20)
    else:
        args = dict(max_lr=0.01, total_steps=200)
    ours, theirs = getattr(S, name)(opt, **args), getattr(torch.optim.lr_scheduler, name)(topt, **args)
    topt.step()
    for _ in range(200):
        ours.step()
        theirs.step()
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=RTOL)
        assert opt.param_groups[0]["betas"] == pytest.approx(topt.param_groups[0]["betas"], rel=RTOL)


@pytest.mark.parametrize("optimizer, options, schedule", [
    # momentum starts at 0: the schedule switches it on, and the optimizer creates its buffer
    ("SGD", {}, lambda M, o: M.CyclicLR(o, 0.01, 0.1, step_size_up=7)),
    ("Adam", {}, lambda M, o: M.OneCycleLR(o, max_lr=0.05, total_steps=60, three_phase=True)),
    ("SGD", {"momentum": 0.9, "nesterov": True},
     lambda M, o: M.SequentialLR(o, [M.LinearLR(o, 0.2, total_iters=10), M.CosineAnnealingLR(o, 50)], [10])),
])
def test_optimizer_trajectory_under_schedule_matches_torch(optimizer, options, schedule):
    """The kernels pick up every new lr and momentum: 60 steps of parameters agree with torch's."""
    torch = _torch()
    w = np.linspace(-1.0, 1.0, 5)
    opt = getattr(fastopt, optimizer)([w], lr=0.05, **options)
    tw = torch.tensor(w.copy())
    topt = getattr(torch.optim, optimizer)([tw], lr=0.05, **options)
    ours, theirs = schedule(S, opt), schedule(torch.optim.lr_scheduler, topt)
    for _ in range(60):
        opt.step([np.sin(3 * w) + w])
        tw.grad = torch.sin(3 * tw) + tw
        topt.step()
        ours.step()
        theirs.step()
    np.testing.assert_allclose(w, tw.numpy(), rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------ the optimizer uses the new lr
def test_next_step_uses_the_scheduled_lr():
    w = np.zeros(3)
    g = np.array([1.0, -2.0, 4.0])
    opt = fastopt.SGD([w], lr=0.1)
    sched = S.StepLR(opt, step_size=1, gamma=0.5)
    expected = np.zeros(3)
    for lr in (0.1, 0.05, 0.025, 0.0125):
        assert opt.lr == lr
        opt.step([g])
        expected -= lr * g
        np.testing.assert_array_equal(w, expected)
        sched.step()


def test_unchanged_lr_is_not_rewritten():
    opt = one_group()
    sched = S.StepLR(opt, step_size=10)
    version = opt.param_groups[0].version
    for _ in range(9):
        sched.step()
    assert opt.param_groups[0].version == version  # the bound kernels are left alone
    sched.step()
    assert opt.param_groups[0].version != version and opt.lr == pytest.approx(0.01)


# ------------------------------------------------------------------ closed form
@pytest.mark.parametrize("factory", [c[1] for c in CLOSED], ids=[c[0] for c in CLOSED])
def test_closed_form_matches_steps(factory):
    opt = two_groups()
    sched = factory(S, opt)
    stepped = run(sched)
    before = [dict(g) for g in opt.param_groups], sched.last_epoch
    closed = np.array([sched.lr_at(t) for t in range(STEPS + 1)])
    np.testing.assert_allclose(closed, stepped, rtol=RTOL, atol=0)
    assert [sched(t) for t in (0, 17, STEPS)] == [closed[0, 0], closed[17, 0], closed[STEPS, 0]]
    assert ([dict(g) for g in opt.param_groups], sched.last_epoch) == before  # sched(t) changes nothing


def test_closed_forms():
    cosine = S.CosineAnnealingLR(0.1, T_max=100, eta_min=0.01)
    assert cosine(25) == 0.01 + (0.1 - 0.01) * (1 + math.cos(math.pi / 4)) / 2
    assert S.StepLR(1.0, 10, gamma=0.5)(35) == 0.125
    assert S.MultiStepLR(1.0, [3, 5], gamma=0.5).lr_at(4) == [0.5]
    assert S.ExponentialLR([1.0, 2.0], gamma=0.5).lr_at(3) == [0.125, 0.25]
    assert S.LinearLR(1.0, start_factor=0.5, total_iters=4)(2) == 0.75
    assert S.PolynomialLR(1.0, total_iters=4, power=2.0)(2) == 0.25
    sgdr = S.CosineAnnealingWarmRestarts(1.0, T_0=2, T_mult=3)
    # cycles of 2, 6 and 18 steps: restarts at 2 and 8
    assert [sgdr(t) for t in (0, 1, 2, 8, 9.5)] == [1.0, 0.5, 1.0, 1.0, (1 + math.cos(math.pi * 1.5 / 18)) / 2]
    assert S.CyclicLR(0.0, base_lr=1.0, max_lr=3.0, step_size_up=4, cycle_momentum=False)(2) == 2.0
    one = S.OneCycleLR(0.0, max_lr=1.0, total_steps=100, cycle_momentum=False, anneal_strategy="linear")
    assert one(0) == 1 / 25 and one(29) == 1.0 and one(99) == pytest.approx(1 / 25 / 1e4)


def test_pure_function_on_floats():
    sched = S.CosineAnnealingLR(0.1, T_max=100)
    assert sched(0) == 0.1 and sched(100) == 0.0 and sched(50) == pytest.approx(0.05, rel=1e-15)
    assert sched.get_last_lr() == [0.1] and sched.last_epoch == 0
    sched.step()
    assert sched.get_last_lr() == [pytest.approx(sched(1), rel=1e-15)]
    assert sched.optimizer.param_groups == [{"lr": sched(1), "initial_lr": 0.1}]
    several = S.ExponentialLR([0.1, 0.2], gamma=0.5)
    assert several.lr_at(1) == [0.05, 0.1] and several(1) == 0.05
    assert isinstance(S.LambdaLR(1, lambda t: np.float64(0.5))(3), float)


def test_warmup_then_cosine():
    warmup = S.LinearLR(0.1, start_factor=0.1, total_iters=5)
    cosine = S.CosineAnnealingLR(warmup.optimizer, T_max=95, eta_min=0.001)
    sched = S.SequentialLR(warmup.optimizer, [warmup, cosine], milestones=[5])
    expected = [0.1 * (0.1 + 0.9 * t / 5) if t < 5 else 0.001 + 0.099 * (1 + math.cos(math.pi * (t - 5) / 95)) / 2
                for t in range(101)]
    np.testing.assert_allclose([sched(t) for t in range(101)], expected, rtol=1e-14)
    np.testing.assert_allclose(run(sched, 100)[:, 0], expected, rtol=1e-13)
    assert sched.last_epoch == 100 and cosine.last_epoch == 95


def test_fractional_steps():
    sgdr = S.CosineAnnealingWarmRestarts(1.0, T_0=10)
    assert sgdr(12.5) == pytest.approx((1 + math.cos(math.pi * 0.25)) / 2, rel=1e-15)
    with pytest.raises(TypeError, match="integer"):
        S.MultiplicativeLR(1.0, lambda t: 0.5)(2.5)


def test_no_closed_form():
    opt = one_group()
    chained = S.ChainedScheduler([S.ConstantLR(opt), S.ExponentialLR(opt, 0.9)])
    with pytest.raises(NotImplementedError, match="ChainedScheduler has no closed form"):
        chained(3)
    with pytest.raises(NotImplementedError, match="metrics"):
        S.ReduceLROnPlateau(opt).lr_at(3)


# ------------------------------------------------------------------ ReduceLROnPlateau
@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("threshold_mode, threshold", [("rel", 1e-2), ("abs", 0.05)])
@pytest.mark.parametrize("patience, cooldown, min_lr", [(0, 0, 0.0), (3, 2, [1e-4, 1e-3]), (10, 5, 2e-3)])
def test_plateau_matches_torch(mode, threshold_mode, threshold, patience, cooldown, min_lr):
    torch = _torch()
    opt = two_groups()
    topt = torch_twin(opt)
    args = dict(mode=mode, factor=0.5, patience=patience, threshold=threshold, threshold_mode=threshold_mode,
                cooldown=cooldown, min_lr=min_lr)
    ours, theirs = S.ReduceLROnPlateau(opt, **args), torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **args)
    rng = np.random.default_rng(7)
    # a loss that falls, stalls and wobbles, with plateaus where rel and abs thresholds disagree
    loss = 1.0 + np.exp(-np.arange(300) / 40.0) + 0.002 * rng.standard_normal(300).cumsum()
    metrics = loss if mode == "min" else 3.0 - loss
    for i, m in enumerate(metrics):
        ours.step(np.float64(m) if i % 2 else m)
        theirs.step(m)
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=RTOL)
        assert (ours.best, ours.num_bad_epochs, ours.cooldown_counter, ours.last_epoch) == \
            (theirs.best, theirs.num_bad_epochs, theirs.cooldown_counter, theirs.last_epoch)
    assert ours.get_last_lr() != [0.1, 0.03]  # it did reduce


def test_plateau_basics():
    sched = S.ReduceLROnPlateau(1.0, factor=0.5, patience=1, min_lr=0.3)
    lrs = []
    for m in [5, 4, 4, 4, 4, 4, 4, 3]:
        sched.step(m)
        lrs.append(sched.get_last_lr()[0])
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.3, 0.3, 0.3]
    with pytest.raises(TypeError, match="metrics must be a number"):
        sched.step("1.0")
    with pytest.raises(TypeError, match="metrics must be a number"):
        sched.step(None)


# ------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("factory", FACTORIES, ids=IDS)
def test_state_dict_resumes_mid_schedule(factory):
    reference = run(factory(S, two_groups()))
    opt = two_groups()
    sched = factory(S, opt)
    run(sched, 437)
    saved = pickle.loads(pickle.dumps((opt.state_dict(), sched.state_dict())))
    opt2 = two_groups()
    sched2 = factory(S, opt2)  # fresh: its construction writes step 0's rates ...
    opt2.load_state_dict(saved[0])  # ... which the checkpoint then replaces
    sched2.load_state_dict(saved[1])
    assert sched2.last_epoch == sched.last_epoch and sched2.get_last_lr() == sched.get_last_lr()
    np.testing.assert_array_equal(run(sched2, STEPS - 437), reference[437:])


def test_state_dict_on_floats_and_callable_objects():
    sched = S.LambdaLR([1.0, 2.0], [Halving(), lambda t: 1.0])
    run(sched, 150)
    sched.lr_lambdas[0].base = 0.25
    state = sched.state_dict()
    assert state["lr_lambdas"] == [{"base": 0.25}, None] and state["param_groups"][1]["lr"] == 2.0
    other = S.LambdaLR([1.0, 2.0], [Halving(), lambda t: 1.0])
    other.load_state_dict(state)
    assert other.lr_lambdas[0].base == 0.25 and other.last_epoch == 150 and other.get_last_lr() == [0.5, 2.0]
    assert other.optimizer.param_groups[0]["lr"] == 0.5
    other.step()
    assert other.get_last_lr() == [0.25 ** 1 * 1.0, 2.0]
    state["last_epoch"] = -5
    assert sched.last_epoch == 150  # the saved dict is a copy


def test_state_dict_checks_before_loading():
    opt = one_group()
    sched = S.StepLR(opt, 10)
    with pytest.raises(ValueError, match="not the state of this StepLR"):
        sched.load_state_dict(S.ExponentialLR(one_group(), 0.9).state_dict())
    with pytest.raises(TypeError, match="dict"):
        sched.load_state_dict([1, 2])
    seq = S.SequentialLR(opt, [sched, S.ExponentialLR(opt, 0.9)], [5])
    bad = seq.state_dict()
    bad["_schedulers"][1] = S.StepLR(one_group(), 3).state_dict()
    bad["last_epoch"] = 99
    with pytest.raises(ValueError, match="ExponentialLR"):
        seq.load_state_dict(bad)
    assert seq.last_epoch == 0  # nothing changed


@pytest.mark.parametrize("name, args", [("CosineAnnealingLR", dict(T_max=100, eta_min=1e-3)),
                                        ("ExponentialLR", dict(gamma=0.99)),
                                        ("MultiplicativeLR", dict(lr_lambda=lambda t: 0.99)),
                                        ("OneCycleLR", dict(max_lr=0.5, total_steps=STEPS))])
def test_resume_with_last_epoch(name, args):
    opt = two_groups()
    reference = run(getattr(S, name)(opt, **args))
    checkpoint = two_groups()
    run(getattr(S, name)(checkpoint, **args), 300)
    opt2 = two_groups()
    opt2.load_state_dict(checkpoint.state_dict())  # holds initial_lr
    sched = getattr(S, name)(opt2, last_epoch=299, **args)
    assert sched.last_epoch == 300
    np.testing.assert_allclose(run(sched, STEPS - 300), reference[300:], rtol=RTOL)


def test_resume_needs_initial_lr():
    with pytest.raises(ValueError, match="hold no 'initial_lr'"):
        S.StepLR(one_group(), 3, last_epoch=2)


def test_resume_from_a_checkpoint_file(tmp_path):
    w = np.zeros(3)
    opt = fastopt.SGD([w], lr=0.1, momentum=0.9)
    sched = S.CosineAnnealingLR(opt, T_max=50)
    run(sched, 20)
    fastopt.save(tmp_path / "ckpt.npz", [w], opt)
    w2 = np.zeros(3)
    opt2 = fastopt.SGD([w2], lr=0.5, momentum=0.9)
    fastopt.load(tmp_path / "ckpt.npz", [w2], opt2)  # restores lr and initial_lr
    resumed = S.CosineAnnealingLR(opt2, T_max=50, last_epoch=sched.last_epoch - 1)
    assert resumed.base_lrs == [0.1] and resumed.get_last_lr() == pytest.approx(sched.get_last_lr(), rel=RTOL)
    np.testing.assert_allclose(run(resumed, 30), run(sched, 30), rtol=RTOL)


def test_initial_lr_is_recorded_and_kept():
    opt = one_group(0.5)
    S.ExponentialLR(opt, 0.9).step()
    assert opt.param_groups[0]["initial_lr"] == 0.5
    later = S.StepLR(opt, 3)  # a second schedule starts from the recorded initial lr
    assert later.base_lrs == [0.5]


def test_deepcopy_and_repr():
    sched = S.StepLR(0.1, 2)
    twin = copy.deepcopy(sched)
    run(twin, 4)
    assert sched.last_epoch == 0 and twin.last_epoch == 4
    assert repr(twin).startswith("StepLR(last_epoch=4")


# ------------------------------------------------------------------ bad arguments
OPT = one_group()
BAD = [
    (lambda: S.CosineAnnealingLR(OPT, T_max=-1), ValueError, "T_max must be an integer >= 1"),
    (lambda: S.CosineAnnealingLR(OPT, T_max=0), ValueError, "T_max"),
    (lambda: S.CosineAnnealingLR(OPT, T_max=10.0), TypeError, "T_max must be an integer"),
    (lambda: S.CosineAnnealingLR(OPT, T_max=10, eta_min=-1.0), ValueError, "eta_min"),
    (lambda: S.MultiStepLR(OPT, [30, 10]), ValueError, "strictly increasing"),
    (lambda: S.MultiStepLR(OPT, [10, 10]), ValueError, "strictly increasing"),
    (lambda: S.MultiStepLR(OPT, 10), TypeError, "milestones must be a list"),
    (lambda: S.MultiStepLR(OPT, [-1, 3]), ValueError, r"milestones\[0\]"),
    (lambda: S.StepLR(OPT, 10, gamma=0.0), ValueError, "gamma must be a finite number > 0"),
    (lambda: S.StepLR(OPT, 10, gamma=-0.5), ValueError, "gamma"),
    (lambda: S.StepLR(OPT, 10, gamma="0.1"), TypeError, "gamma must be a real number"),
    (lambda: S.StepLR(OPT, 0), ValueError, "step_size"),
    (lambda: S.ExponentialLR(OPT, gamma=math.nan), ValueError, "gamma"),
    (lambda: S.ExponentialLR(OPT, gamma=True), TypeError, "gamma"),
    (lambda: S.StepLR(object(), 10), TypeError, "param_groups"),
    (lambda: S.StepLR([np.zeros(3)], 10), TypeError, "param_groups"),
    (lambda: S.StepLR("0.1", 10), TypeError, "param_groups"),
    (lambda: S.StepLR(-0.1, 10), ValueError, "lr must be"),
    (lambda: S.StepLR(0.1, 10, last_epoch=-2), ValueError, "last_epoch"),
    (lambda: S.LambdaLR(OPT, 3), TypeError, "lr_lambda must be callable"),
    (lambda: S.LambdaLR(two_groups(), [lambda t: 1.0]), ValueError, "1 values, but there are 2 parameter groups"),
    (lambda: S.MultiplicativeLR(OPT, [None]), TypeError, "callable"),
    (lambda: S.LinearLR(OPT, start_factor=0), ValueError, "start_factor"),
    (lambda: S.LinearLR(OPT, end_factor=1.5), ValueError, "end_factor"),
    (lambda: S.LinearLR(OPT, total_iters=0), ValueError, "total_iters"),
    (lambda: S.ConstantLR(OPT, factor=0), ValueError, "factor"),
    (lambda: S.PolynomialLR(OPT, power=-1), ValueError, "power"),
    (lambda: S.CosineAnnealingWarmRestarts(OPT, T_0=0), ValueError, "T_0"),
    (lambda: S.CosineAnnealingWarmRestarts(OPT, T_0=5, T_mult=0), ValueError, "T_mult"),
    (lambda: S.CosineAnnealingWarmRestarts(OPT, T_0=5, T_mult=1.5), TypeError, "T_mult"),
    (lambda: S.CyclicLR(OPT, 0.01, 0.1, mode="bogus"), ValueError, "mode must be one of"),
    (lambda: S.CyclicLR(OPT, 0.01, 0.1, step_size_up=0), ValueError, "step_size_up"),
    (lambda: S.CyclicLR(OPT, 0.01, 0.1, scale_fn=3), TypeError, "scale_fn"),
    (lambda: S.CyclicLR(OPT, 0.01, [0.1, 0.2]), ValueError, "max_lr has 2 values"),
    (lambda: S.CyclicLR(fastopt.Adagrad([np.zeros(2)]), 0.01, 0.1), ValueError, "cycle_momentum=False"),
    (lambda: S.CyclicLR(0.1, 0.01, 0.1), ValueError, "cycle_momentum"),
    (lambda: S.OneCycleLR(OPT, 0.1), ValueError, "total_steps"),
    (lambda: S.OneCycleLR(OPT, 0.1, epochs=3), ValueError, "steps_per_epoch"),
    (lambda: S.OneCycleLR(OPT, 0.1, 100, pct_start=1.5), ValueError, "pct_start"),
    (lambda: S.OneCycleLR(OPT, 0.1, 100, anneal_strategy="cosine"), ValueError, "anneal_strategy"),
    (lambda: S.OneCycleLR(OPT, 0.1, 100, three_phase="yes"), TypeError, "three_phase"),
    (lambda: S.ReduceLROnPlateau(OPT, mode="avg"), ValueError, "mode"),
    (lambda: S.ReduceLROnPlateau(OPT, factor=1.0), ValueError, "factor"),
    (lambda: S.ReduceLROnPlateau(OPT, threshold_mode="relative"), ValueError, "threshold_mode"),
    (lambda: S.ReduceLROnPlateau(OPT, patience=-1), ValueError, "patience"),
    (lambda: S.ReduceLROnPlateau(two_groups(), min_lr=[0.1]), ValueError, "min_lr"),
    (lambda: S.ChainedScheduler([]), ValueError, "at least one"),
    (lambda: S.ChainedScheduler(S.StepLR(OPT, 3)), TypeError, "list of schedules"),
    (lambda: S.ChainedScheduler([object()]), TypeError, "not a fastopt schedule"),
    (lambda: S.ChainedScheduler([S.ReduceLROnPlateau(OPT)]), ValueError, "ReduceLROnPlateau"),
    (lambda: S.ChainedScheduler([S.StepLR(OPT, 3), S.StepLR(one_group(), 3)]), ValueError, "share one"),
    (lambda: S.ChainedScheduler([S.StepLR(0.1, 3), S.StepLR(0.1, 3)]), ValueError, "first.optimizer"),
    (lambda: S.SequentialLR(OPT, [S.StepLR(OPT, 3), S.StepLR(OPT, 3)], []), ValueError, "one milestone fewer"),
    (lambda: S.SequentialLR(OPT, [S.StepLR(OPT, 3)] * 3, [5, 5]), ValueError, "strictly increasing"),
    (lambda: S.SequentialLR(OPT, [S.StepLR(OPT, 3)] * 2, [0]), ValueError, "milestones"),
    (lambda: S.SequentialLR(one_group(), [S.StepLR(OPT, 3)], []), ValueError, "share one"),
    (lambda: S.SequentialLR(OPT, [S.ChainedScheduler([S.StepLR(OPT, 3)])], []), ValueError, "composed"),
    (lambda: S.StepLR(0.1, 3)(-1), ValueError, "step count"),
    (lambda: S.StepLR(0.1, 3)(math.inf), ValueError, "step count"),
    (lambda: S.StepLR(0.1, 3)("5"), TypeError, "step count"),
    (lambda: S.OneCycleLR(0.1, 0.1, 10, cycle_momentum=False)(11), ValueError, "past its total_steps=10"),
]


@pytest.mark.parametrize("call, error, match", BAD, ids=range(len(BAD)))
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_stepping_past_onecycle_leaves_it_unchanged():
    sched = S.OneCycleLR(one_group(), 0.1, total_steps=3)
    run(sched, 3)
    before = sched.get_last_lr()
    with pytest.raises(ValueError, match="total_steps"):
        sched.step()
    assert sched.last_epoch == 3 and sched.get_last_lr() == before


def test_docstring_examples():
    assert doctest.testmod(S).failed == 0
