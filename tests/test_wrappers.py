"""Lookahead, weight averaging (AveragedModel, SWALR) and the lerp kernel's copy mode they use."""
import numpy as np
import pytest
from conftest import SIZES, THREADS

import fastopt
import reference
import storage_reference as sr
from fastopt._kernels import lerp
from fastopt._storage import BFLOAT16
from fastopt.optim.swa_utils import SWALR, AveragedModel
from test_kernels import assert_bitwise_equal


# ------------------------------------------------------------------ Lookahead
def lookahead_reference(inner_step, p, grads, k, alpha):
    """Zhang et al. (2019), Algorithm 1, on one array: ``inner_step(p, g) -> p`` is the wrapped rule."""
    slow = p.copy()
    for t, g in enumerate(grads, 1):
        p = inner_step(p, g)
        if t % k == 0:
            slow = reference._lerp(slow, p, alpha)
            p = slow.copy()
    return p, slow


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("k, alpha", [(1, 0.5), (3, 0.3), (2, 0.8)])
def test_lookahead_matches_the_paper_over_sgd(k, alpha, n, threads, dtype, rng):
    p0 = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(7)]
    p = p0.copy()
    opt = fastopt.Lookahead(fastopt.SGD([p], lr=0.1), k=k, alpha=alpha)
    with fastopt.threads(threads):
        for g in grads:
            assert opt.step([g]) is True
    expected, slow = lookahead_reference(lambda q, g: reference.sgd(q, g, None, lr=0.1)[0], p0, grads, k, alpha)
    assert_bitwise_equal(p, expected)
    extra = opt.state_dict()["state"][0]
    assert_bitwise_equal(extra["lookahead_slow"], slow)
    assert extra["lookahead_count"] == 7 % k


def test_lookahead_over_adam_keeps_adams_state_going():
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(50)
    grads = [rng.standard_normal(50) for _ in range(6)]
    p = p0.copy()
    inner = fastopt.Adam([p], lr=0.01)
    opt = fastopt.Lookahead(inner, k=3)
    for g in grads:
        opt.step([g])
    m, v = np.zeros(50), np.zeros(50)
    q, slow = p0.copy(), p0.copy()
    for t, g in enumerate(grads, 1):
        q, m, v, _ = reference.adam(q, g, m, v, np.zeros(50), t, lr=0.01)
        if t % 3 == 0:
            slow = reference._lerp(slow, q, 0.5)
            q = slow.copy()
    assert_bitwise_equal(p, q)
    assert_bitwise_equal(inner.state[0]["exp_avg"], m)  # the inner state is not reset at a synchronization


def test_lookahead_with_bfloat16_master_weights_moves_the_master_copy():
    p = np.linspace(-1, 1, 300).astype(BFLOAT16)
    inner = fastopt.SGD([p], lr=0.05, master_weights=True)
    opt = fastopt.Lookahead(inner, k=2, alpha=0.5)
    g = np.ones(300, BFLOAT16)
    p0 = sr.bf16_widen(p)
    opt.step([g])
    slow = opt.state_dict()["state"][0]["lookahead_slow"]
    assert_bitwise_equal(slow, p0)  # the slow weights start as the parameters, in float32
    master = inner.state[0]["master_param"].copy()
    opt.step([g])
    expected = reference._lerp(slow, reference.sgd(master.copy(), sr.bf16_widen(g), None, lr=0.05)[0], 0.5)
    assert_bitwise_equal(inner.state[0]["master_param"], expected)
    assert_bitwise_equal(p, sr.bf16_nearest(expected))


def test_a_skipped_step_is_not_counted():
    p = np.zeros(3)
    opt = fastopt.Lookahead(fastopt.SGD([p], lr=1.0, skip_nonfinite=True), k=2)
    assert opt.step([np.array([np.nan, 0.0, 0.0])]) is False
    opt.step([np.ones(3)])
    assert opt.state_dict()["state"][0]["lookahead_count"] == 1
    np.testing.assert_array_equal(p, -1.0)  # no synchronization yet


def test_lookahead_refuses_bad_arguments():
    with pytest.raises(TypeError, match="wraps a fastopt.optim.Optimizer"):
        fastopt.Lookahead(object())
    opt = fastopt.SGD([np.zeros(2)])
    with pytest.raises(ValueError, match="k"):
        fastopt.Lookahead(opt, k=0)
    with pytest.raises(ValueError, match="alpha"):
        fastopt.Lookahead(opt, alpha=1.5)


def _train(opt, ps, grads):
    for g in grads:
        ps.grad[:] = g
        opt.step()


def test_lookahead_resumes_exactly_from_a_state_dict_and_a_checkpoint(tmp_path, rng):
    grads = [rng.standard_normal(10) for _ in range(9)]

    def make(values):
        ps = fastopt.ParamSet({"a": values[:4].copy(), "b": values[4:].copy()})
        return ps, fastopt.Lookahead(fastopt.AdamW(ps, lr=0.05), k=4, alpha=0.6)

    start = rng.standard_normal(10)
    ps, opt = make(start)
    _train(opt, ps, grads)
    ps1, opt1 = make(start)
    _train(opt1, ps1, grads[:5])
    fastopt.save(tmp_path / "c.npz", ps1, opt1)
    for how in ("state_dict", "checkpoint"):
        ps2, opt2 = make(np.zeros(10))
        if how == "checkpoint":
            fastopt.load(tmp_path / "c.npz", ps2, opt2)
        else:
            ps2.data[:] = ps1.data
            opt2.load_state_dict(opt1.state_dict())
        _train(opt2, ps2, grads[5:])
        assert_bitwise_equal(ps2.data, ps.data, how)


def test_a_bad_lookahead_state_is_refused_before_anything_changes():
    ps = fastopt.ParamSet({"w": np.zeros(4)})
    opt = fastopt.Lookahead(fastopt.Adam(ps, lr=0.1), k=3)
    _train(opt, ps, [np.ones(4)] * 2)
    saved = opt.state_dict()
    before = opt.state_dict()
    bad = {**saved, "state": {0: {**saved["state"][0], "lookahead_slow": np.zeros(3)}}}
    with pytest.raises(ValueError, match="lookahead_slow"):
        opt.load_state_dict(bad)
    partial = {**saved, "state": {0: {k: v for k, v in saved["state"][0].items() if k != "lookahead_count"}}}
    with pytest.raises(ValueError, match="all of"):
        opt.load_state_dict(partial)
    after = opt.state_dict()
    assert after["state"][0]["lookahead_count"] == before["state"][0]["lookahead_count"] == 2
    assert_bitwise_equal(after["state"][0]["exp_avg"], before["state"][0]["exp_avg"])


def test_lookahead_trains_with_fit_and_a_schedule():
    X = np.tile([1.0, -2.0], (16, 1))

    class Model:
        params = fastopt.ParamSet({"w": np.zeros(2)})

        def loss_and_grad(self, X, y):
            diff = self.params.data - X.mean(axis=0)
            self.params.grad[:] = diff
            return 0.5 * float(diff @ diff)

    model = Model()
    opt = fastopt.Lookahead(fastopt.SGD(model.params, lr=0.5, momentum=0.5), k=3)
    sched = fastopt.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    history = fastopt.fit(model, opt, X, None, epochs=10, batch_size=8, scheduler=sched, progress=False)
    assert history.train_loss[-1] < 1e-3 * history.train_loss[0]
    assert history.lr == [0.5] * 5 + [0.25] * 5 and opt.lr == 0.125  # the schedule set the wrapped optimizer


# ------------------------------------------------------------------ the lerp kernel's copy mode
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("start_kind, end_kind", [("float64", "float64"), ("float32", "float32"),
                                                  ("float32", "bfloat16"), ("bfloat16", "bfloat16")])
def test_lerp_copy_writes_the_result_into_both(start_kind, end_kind, n, threads, rng):
    def stored(values, kind):
        if kind == "bfloat16":
            bits = sr.bf16_nearest(values.astype(np.float32))
            return bits, sr.bf16_widen(bits)
        array = values.astype(kind)
        return array, array.astype(np.float64 if kind == "float64" else np.float32)

    start, a = stored(rng.standard_normal(n), start_kind)
    end, b = stored(rng.standard_normal(n), end_kind)
    result = reference._lerp(a, b, 0.3)
    lerp(start, end, 0.3, True, threads, True)
    for array, kind in ((start, start_kind), (end, end_kind)):
        assert_bitwise_equal(array, sr.bf16_nearest(result) if kind == "bfloat16" else result.astype(kind))


def test_lerp_copy_refuses_int8_and_read_only_ends():
    codes, absmax = np.zeros(256, np.uint8), np.ones(1, np.float32)
    with pytest.raises(ValueError, match="int8"):
        lerp(np.zeros(256, np.float32), (codes, absmax), 0.5, True, 1, True)
    end = np.zeros(4)
    end.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        lerp(np.zeros(4), end, 0.5, True, 1, True)


# ------------------------------------------------------------------ AveragedModel and SWALR against torch
@pytest.mark.parametrize("decay", [None, 0.9])
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_averaged_model_follows_torch(decay, dtype_name):
    torch = pytest.importorskip("torch")
    from torch.optim import swa_utils

    rng = np.random.default_rng(3)
    values = [rng.standard_normal(7).astype(dtype_name) for _ in range(20)]
    ps = fastopt.ParamSet({"w": values[0].copy()})
    ours = AveragedModel(ps, decay=decay)
    module = torch.nn.Linear(7, 1, bias=False).to(getattr(torch, dtype_name))
    kwargs = {} if decay is None else {"multi_avg_fn": swa_utils.get_ema_multi_avg_fn(decay)}
    theirs = swa_utils.AveragedModel(module, **kwargs)
    for v in values:
        ps.data[:] = v
        ours.update_parameters()
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(v)[None])
        theirs.update_parameters(module)
        np.testing.assert_allclose(ours.averaged["w"], theirs.module.weight.detach().numpy()[0],
                                   rtol=2e-6 if dtype_name == "float32" else 1e-14,
                                   atol=1e-6 if dtype_name == "float32" else 1e-15)  # ulps of averages near 0
    assert ours.n_averaged == int(theirs.n_averaged) == 20


def test_averaged_model_swaps_saves_and_refuses():
    ps = fastopt.ParamSet({"w": np.arange(4.0)})
    avg = AveragedModel(ps, decay=0.5)
    avg.update_parameters()
    ps.data[:] = 10.0
    avg.update_parameters()
    np.testing.assert_array_equal(avg.average, 0.5 * (np.arange(4.0) + 10.0))
    assert np.shares_memory(avg.averaged["w"], avg.average)
    with avg.swapped() as swapped:
        assert swapped is ps
        np.testing.assert_array_equal(ps.data, avg.average)
        with pytest.raises(RuntimeError, match="inside swapped"):
            avg.update_parameters()
        with pytest.raises(RuntimeError, match="already"):
            with avg.swapped():
                pass
    np.testing.assert_array_equal(ps.data, 10.0)
    saved = avg.state_dict()
    other = AveragedModel(ps, decay=0.5)
    other.load_state_dict(saved)
    assert other.n_averaged == 2 and np.array_equal(other.average, avg.average)
    with pytest.raises(ValueError, match="expected float64"):
        other.load_state_dict({"n_averaged": 1, "decay": 0.5, "average": np.zeros(3)})
    with pytest.raises(ValueError, match="decay=0.9"):
        other.load_state_dict({**saved, "decay": 0.9})
    assert other.n_averaged == 2
    with pytest.raises(RuntimeError, match="no average yet"):
        with AveragedModel(ps).swapped():
            pass
    with pytest.raises(TypeError, match="ParamSet"):
        AveragedModel(np.zeros(3))
    with pytest.raises(ValueError, match="decay"):
        AveragedModel(ps, decay=1.5)


@pytest.mark.parametrize("strategy, epochs, swa_lr", [("cos", 10, 0.05), ("linear", 3, [0.01, 0.2]), ("cos", 0, 0.3)])
def test_swalr_follows_torch(strategy, epochs, swa_lr):
    torch = pytest.importorskip("torch")
    import warnings

    ps = fastopt.ParamSet({"a": np.zeros(2), "b": np.zeros(2)})
    opt = fastopt.SGD([{"params": ps.select(["a"])}, {"params": ps.select(["b"]), "lr": 0.5}], lr=0.1)
    ours = SWALR(opt, swa_lr, anneal_epochs=epochs, anneal_strategy=strategy)
    tensors = [torch.zeros(2, requires_grad=True) for _ in range(2)]
    topt = torch.optim.SGD([{"params": [tensors[0]]}, {"params": [tensors[1]], "lr": 0.5}], lr=0.1)
    theirs = torch.optim.swa_utils.SWALR(topt, swa_lr, anneal_epochs=epochs, anneal_strategy=strategy)
    for _ in range(15):
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([g["lr"] for g in topt.param_groups],
                                                                      rel=1e-15)
        ours.step()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns that no optimizer step came first
            theirs.step()
    assert opt.param_groups[0]["swa_lr"] == (swa_lr[0] if isinstance(swa_lr, list) else swa_lr)


def test_swalr_refuses_bad_arguments():
    opt = fastopt.SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="anneal_strategy"):
        SWALR(opt, 0.01, anneal_strategy="exp")
    with pytest.raises(ValueError, match="swa_lr"):
        SWALR(opt, -1.0)
    with pytest.raises(ValueError, match="entries"):
        SWALR(opt, [0.1, 0.2])
    with pytest.raises(NotImplementedError, match="anneals"):
        SWALR(opt, 0.01).lr_at(3)


# ------------------------------------------------------------------ masked selections
def test_a_masked_selection_updates_its_tensors_only_in_place(rng):
    ps = fastopt.ParamSet({"W1": (4, 3), "b1": 3, "W2": (3, 2), "b2": 2}, dtype=np.float64)
    ps.data[:] = rng.standard_normal(ps.data.size)
    ps.grad[:] = rng.standard_normal(ps.data.size)
    before, buffer = ps.data.copy(), ps.data
    opt = fastopt.AdamW([{"params": ps.masked(lambda name, a: a.ndim > 1)},
                         {"params": ps.masked({"W1": False, "b1": True, "W2": False, "b2": True}),
                          "weight_decay": 0.0}], lr=0.1)
    bias_only = fastopt.SGD(ps.masked(lambda name, a: name.startswith("b")), lr=0.5)
    opt.step()
    assert ps.data is buffer and len(opt.state) == 4  # four runs: W1 | b1 | W2 | b2 alternate
    assert opt.param_groups[1]["weight_decay"] == 0.0 and not np.array_equal(ps.data, before)
    moved = ps.data.copy()
    bias_only.step()
    for name in ps:
        changed = not np.array_equal(ps[name], moved[ps.slices[name]].reshape(ps.shapes[name]))
        assert changed == name.startswith("b"), name


@pytest.mark.parametrize("mask, error, match", [
    ({"W": True}, ValueError, "missing"),
    ({"W": True, "b": True, "c": False}, ValueError, "unknown"),
    (lambda name, a: 1, TypeError, "must be a bool"),
    (lambda name, a: False, ValueError, "selects no tensor"),
    ("W", TypeError, "callable"),
])
def test_a_bad_mask_is_refused(mask, error, match):
    ps = fastopt.ParamSet({"W": (2, 2), "b": 2})
    with pytest.raises(error, match=match):
        ps.masked(mask)


# ------------------------------------------------------------------ Accumulate
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("every", [1, 3, 4])
def test_accumulate_steps_the_rule_on_the_running_mean(every, n, threads, dtype, rng):
    p0 = rng.standard_normal(n).astype(dtype)
    grads = [rng.standard_normal(n).astype(dtype) for _ in range(2 * every + 1)]
    p = p0.copy()
    opt = fastopt.Accumulate(fastopt.Adam([p], lr=0.01), every=every)
    with fastopt.threads(threads):
        updates = [opt.step([g]) for g in grads]
    assert updates == ([False] * (every - 1) + [True]) * 2 + [every == 1]
    expected, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for t in (1, 2):
        window = grads[(t - 1) * every:t * every]
        mean = window[0].copy()
        for k, g in enumerate(window[1:], 1):
            mean = reference._lerp(mean, g, 1.0 / (k + 1))
        expected, m, v, _ = reference.adam(expected, mean, m, v, np.zeros_like(p0), t, lr=0.01)
    if every == 1:
        expected, m, v, _ = reference.adam(expected, grads[-1], m, v, np.zeros_like(p0), 3, lr=0.01)
    assert_bitwise_equal(p, expected)
    assert opt.state[0]["step"] == (3 if every == 1 else 2)
    saved = opt.state_dict()["state"][0]
    assert saved["accumulate_count"] == (0 if every == 1 else 1)


def test_accumulated_sgd_equals_one_step_on_the_full_batch():
    """The mean of the micro-batch gradients of a least-squares loss is the full batch's gradient."""
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((32, 4)), rng.standard_normal(32)
    w_full, w_micro = np.zeros(4), np.zeros(4)
    full = fastopt.SGD([w_full], lr=0.1, momentum=0.9)
    micro = fastopt.Accumulate(fastopt.SGD([w_micro], lr=0.1, momentum=0.9), every=4)
    for _ in range(5):
        full.step([X.T @ (X @ w_full - y) / 32])
        for part in range(4):
            Xb, yb = X[8 * part:8 * part + 8], y[8 * part:8 * part + 8]
            micro.step([Xb.T @ (Xb @ w_micro - yb) / 8])
    np.testing.assert_allclose(w_micro, w_full, rtol=1e-12)


def test_accumulate_resumes_exactly_mid_window_from_a_checkpoint(tmp_path, rng):
    grads = [rng.standard_normal(6) for _ in range(10)]

    def make():
        ps = fastopt.ParamSet({"w": np.linspace(0, 1, 6)})
        return ps, fastopt.Accumulate(fastopt.AdamW(ps, lr=0.05), every=3)

    ps, opt = make()
    _train(opt, ps, grads)
    ps1, opt1 = make()
    _train(opt1, ps1, grads[:5])  # one update and two micro-batches in the mean
    fastopt.save(tmp_path / "c.npz", ps1, opt1)
    ps2, opt2 = make()
    fastopt.load(tmp_path / "c.npz", ps2, opt2)
    _train(opt2, ps2, grads[5:])
    assert_bitwise_equal(ps2.data, ps.data)


def test_accumulate_skips_a_nonfinite_mean_and_starts_a_new_window():
    p = np.zeros(2)
    inner = fastopt.SGD([p], lr=1.0, skip_nonfinite=True)
    opt = fastopt.Accumulate(inner, every=2)
    assert opt.step([np.array([np.nan, 1.0])]) is False
    assert opt.step([np.ones(2)]) is False and inner.skipped_steps == 1
    assert opt.step([np.ones(2)]) is False  # a fresh window: one micro-batch so far
    assert opt.step([3 * np.ones(2)]) is True
    np.testing.assert_array_equal(p, -2.0)


def test_accumulate_trains_with_fit_and_refuses_bad_arguments():
    X = np.tile([1.0, -2.0], (16, 1))

    class Model:
        params = fastopt.ParamSet({"w": np.zeros(2)})

        def loss_and_grad(self, X, y):
            diff = self.params.data - X.mean(axis=0)
            self.params.grad[:] = diff  # overwritten every batch, as fastopt models do
            return 0.5 * float(diff @ diff)

    model = Model()
    opt = fastopt.Accumulate(fastopt.Adam(model.params, lr=0.1), every=2)
    history = fastopt.fit(model, opt, X, None, epochs=40, batch_size=4, progress=False)
    assert history.train_loss[-1] < 1e-3 * history.train_loss[0]
    assert opt.optimizer.state[0]["step"] == 40 * 4 // 2
    with pytest.raises(ValueError, match="every"):
        fastopt.Accumulate(opt.optimizer, every=0)
    assert "every=2" in repr(opt)


def test_lookahead_keeps_bfloat16_slow_weights_in_float32_with_stochastic_rounding():
    p = np.ones(20000, BFLOAT16)
    opt = fastopt.Lookahead(fastopt.SGD([p], lr=1e-4, stochastic_rounding=True), k=5, alpha=0.5)
    for _ in range(1000):
        opt.step([np.ones(20000, BFLOAT16)])
    slow = opt.state_dict()["state"][0]["lookahead_slow"]
    assert slow.dtype == np.float32
    assert float(np.mean(slow)) == pytest.approx(0.95, abs=0.003)  # half the SGD path of 0.1: none of it lost


def test_a_bfloat16_ema_keeps_its_small_steps():
    ps = fastopt.ParamSet({"w": np.ones(4)}, dtype=BFLOAT16)
    ema = AveragedModel(ps, decay=0.999)
    ema.update_parameters()
    ps.data[:] = 2.0
    for _ in range(2000):
        ema.update_parameters()
    assert ema.average.dtype == np.float32
    np.testing.assert_allclose(ema.average, 2.0 - 0.999**2000, rtol=1e-4)
    with ema.swapped():
        assert ps.data.dtype == BFLOAT16 and float(ps.data[0]) == pytest.approx(1.8648, abs=0.01)


def test_wrappers_refuse_schedule_free_optimizers_and_forward_the_rest():
    with pytest.raises(ValueError, match="train\\(\\)/eval\\(\\)"):
        fastopt.Lookahead(fastopt.AdamWScheduleFree([np.zeros(2)]))
    ps = fastopt.ParamSet({"a": 2, "b": 3})
    inner = fastopt.Adam([{"params": ps.select(["a"])}], lr=0.1, skip_nonfinite=True)
    opt = fastopt.Lookahead(inner, k=2)
    opt.add_param_group({"params": ps.select(["b"]), "lr": 0.2})
    assert len(opt.param_groups) == 2 and opt.skip_nonfinite and opt.skipped_steps == 0
    assert (opt.master_weights, opt.stochastic_rounding, opt.state_dtype, opt.seed) == (False, False, None, 0)
    ps.grad[:] = 1.0
    assert opt.step() and opt.step()
    assert [opt.state_dict()["state"][i]["lookahead_count"] for i in (0, 1)] == [0, 0]
    opt.reset()
    assert opt.state_dict()["state"][0].keys() == inner.state_dict()["state"][0].keys()


def test_a_wrapper_checkpoint_names_the_wrapped_class(tmp_path):
    ps = fastopt.ParamSet({"w": np.zeros(3)})
    fastopt.save(tmp_path / "c.npz", ps, fastopt.Lookahead(fastopt.AdamW(ps)))
    with pytest.raises(fastopt.CheckpointError, match=r"Lookahead\(AdamW\) state, not Lookahead\(Adam\)"):
        fastopt.load(tmp_path / "c.npz", ps, fastopt.Lookahead(fastopt.Adam(ps)))


def test_swalr_refuses_to_start_mid_way_and_leaves_the_groups_alone():
    opt = fastopt.SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="last_epoch must be -1"):
        SWALR(opt, 0.01, last_epoch=3)
    assert "swa_lr" not in opt.param_groups[0]


def test_a_refused_wrapped_step_keeps_the_mean_and_the_next_call_retries():
    p = np.zeros(3)
    inner = fastopt.Adam([p], lr=0.1)
    opt = fastopt.Accumulate(inner, every=2)
    opt.step([np.ones(3)])
    opt.step([np.ones(3)])  # one update: Adam's state exists now
    opt.step([np.full(3, 5.0)])
    inner.state[0]["exp_avg"] = np.zeros(4)  # a state the next update refuses
    before = p.copy()
    with pytest.raises(ValueError, match="exp_avg"):
        opt.step([np.full(3, 7.0)])
    assert_bitwise_equal(p, before)
    saved = opt.state_dict()["state"][0]
    assert saved["accumulate_count"] == 2
    np.testing.assert_array_equal(saved["accumulate_grad"], 6.0)  # the mean of 5 and 7, kept
    inner.state[0]["exp_avg"] = np.zeros(3)
    assert opt.step([np.full(3, 9.0)]) is True  # the mean of 5, 7 and 9
    assert opt.state_dict()["state"][0]["accumulate_count"] == 0


def test_bfloat16_gradients_accumulate_in_float32_and_round_once():
    p = np.zeros(300, BFLOAT16)
    inner = fastopt.SGD([p], lr=1.0, master_weights=True)
    opt = fastopt.Accumulate(inner, every=64)
    rng = np.random.default_rng(2)
    grads = [rng.standard_normal(300).astype(BFLOAT16) for _ in range(64)]
    for g in grads[:-1]:
        assert opt.step([g]) is False
    mean = opt.state_dict()["state"][0]["accumulate_grad"]
    assert mean.dtype == np.float32
    exact = np.mean([sr.bf16_widen(g) for g in grads[:-1]], axis=0)
    np.testing.assert_allclose(mean, exact, atol=1e-6)
    assert opt.step([grads[-1]]) is True
    expected = sr.bf16_widen(sr.bf16_nearest(reference._lerp(mean, sr.bf16_widen(grads[-1]), 1 / 64)))
    assert_bitwise_equal(inner.state[0]["master_param"], -expected)


def test_accumulate_counts_each_slot_and_follows_added_groups():
    a, b = np.zeros(2), np.zeros(2)
    opt = fastopt.Accumulate(fastopt.SGD([a], lr=1.0), every=2)
    opt.add_param_group({"params": [b], "lr": 0.5})
    assert opt.step([[np.ones(2)], [np.ones(2)]]) is False
    assert opt.step([[np.ones(2)], [None]]) is True  # slot 0's second micro-batch; slot 1 waits
    np.testing.assert_array_equal(a, -1.0)
    np.testing.assert_array_equal(b, 0.0)
    assert opt.step([[None], [3 * np.ones(2)]]) is True
    np.testing.assert_array_equal(b, -0.5 * 2.0)
    assert [opt.state_dict()["state"][i]["accumulate_count"] for i in (0, 1)] == [0, 0]


def test_a_bad_accumulate_state_is_refused_before_anything_changes():
    p = np.zeros(3)
    opt = fastopt.Accumulate(fastopt.SGD([p], lr=1.0), every=3)
    opt.step([np.ones(3)])
    saved = opt.state_dict()
    for bad in ({"accumulate_grad": np.zeros(2), "accumulate_count": 1}, {"accumulate_count": 1},
                {"accumulate_grad": np.zeros(3), "accumulate_count": -1}):
        with pytest.raises(ValueError, match="accumulate"):
            opt.load_state_dict({**saved, "state": {0: bad}})
    assert opt.state_dict()["state"][0]["accumulate_count"] == 1


@pytest.mark.parametrize("n", SIZES + [3 * 2**16 + 5])
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("start_kind, end_kind", [("float64", "float64"), ("float32", "float32"),
                                                  ("float32", "bfloat16"), ("bfloat16", "float32")])
def test_assign_copies_with_conversion_even_over_non_finite_values(start_kind, end_kind, threads, n, rng):
    from fastopt._kernels import assign

    values = rng.standard_normal(n)
    end = sr.bf16_nearest(values.astype(np.float32)) if end_kind == "bfloat16" else values.astype(end_kind)
    start = np.full(n, np.nan, BFLOAT16 if start_kind == "bfloat16" else start_kind)
    assign(start, end, threads)
    wide = sr.bf16_widen(end) if end_kind == "bfloat16" else end
    assert_bitwise_equal(start, sr.bf16_nearest(wide.astype(np.float32)) if start_kind == "bfloat16"
                         else wide.astype(start_kind))
