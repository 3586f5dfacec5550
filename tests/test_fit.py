"""fastopt.training.fit: the training loop, its History, schedulers, early stopping, errors."""
import math
import sys
import types

import numpy as np
import pytest

import fastopt
from fastopt.data import num_batches, train_test_split
from fastopt.datasets import load_digits
from fastopt.training import History, NonFiniteLossError, fit


class LinearRegression:
    """Least squares, 0.5 * mean((X w + b - y)^2), on a ParamSet."""

    def __init__(self, n_features):
        self.params = fastopt.ParamSet({"w": n_features, "b": 1})

    def _residual(self, X, y):
        return X @ self.params["w"] + self.params["b"][0] - y

    def loss_and_grad(self, X, y):
        r = self._residual(X, y)
        self.params.grads["w"][:] = X.T @ r / len(r)
        self.params.grads["b"][:] = r.mean()
        return 0.5 * float(r @ r) / len(r)

    def loss(self, X, y):
        r = self._residual(X, y)
        return 0.5 * float(r @ r) / len(r)


class Scripted:
    """Each step moves w by +lr per batch (gradient -1); the validation losses follow a script."""

    def __init__(self, val_losses, train_losses=None):
        self.params = fastopt.ParamSet({"w": 1})
        self.val_losses, self.train_losses = list(val_losses), train_losses
        self.snapshots, self.calls, self.grad_at_entry = [], 0, []

    def loss_and_grad(self, X, y):
        self.grad_at_entry.append(self.params.grad.copy())
        self.params.grads["w"][:] -= 1.0   # accumulates: relies on fit zeroing the gradients
        loss = 1.0 if self.train_losses is None else self.train_losses[self.calls]
        self.calls += 1
        return loss

    def loss(self, X, y):
        self.snapshots.append(self.params.data.copy())
        return self.val_losses[len(self.snapshots) - 1]


@pytest.fixture
def regression():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 5))
    y = X @ np.array([1.0, -2.0, 0.5, 3.0, 0.0]) + 0.3 + 0.01 * rng.normal(size=240)
    return train_test_split(X, y, test_size=40, seed=1)


def data(n=12):
    return np.arange(n, dtype=float).reshape(n, 1), np.zeros(n)


# --------------------------------------------------------------- training
def test_loss_decreases_and_history(regression):
    X, X_val, y, y_val = regression
    model = LinearRegression(5)
    h = fit(model, fastopt.SGD(model.params, lr=0.1), X, y, epochs=8, batch_size=16,
            validation_data=(X_val, y_val), progress=False)
    assert isinstance(h, History) and h.epochs == 8
    assert h.train_loss[-1] < 1e-3 * h.train_loss[0]
    assert h.val_loss[-1] < 1e-3 * h.val_loss[0]
    assert h.val_loss[-1] == pytest.approx(model.loss(X_val, y_val))
    assert h.lr == [0.1] * 8 and len(h.seconds) == 8 and all(s > 0 for s in h.seconds)
    assert h.grad_norm == [] and not h.stopped_early and not h.restored_best
    assert h.best_epoch == int(np.argmin(h.val_loss))
    d = h.as_dict()
    assert d["train_loss"] == h.train_loss and d["train_loss"] is not h.train_loss and d["best_epoch"] == h.best_epoch


def test_train_loss_is_row_weighted_mean():
    model = Scripted([0.0], train_losses=[1.0, 1.0, 4.0])     # batches of 5, 5 and 2 rows
    h = fit(model, fastopt.SGD(model.params, lr=0.0), *data(12), epochs=1, batch_size=5,
            shuffle=False, progress=False)
    assert h.train_loss == [pytest.approx((5 + 5 + 8) / 12)]
    assert h.val_loss == [] and h.best_epoch == 0


def test_same_seed_same_run(regression):
    X, _, y, _ = regression

    def run(seed):
        model = LinearRegression(5)
        h = fit(model, fastopt.Adam(model.params, lr=0.05), X, y, epochs=3, batch_size=8, seed=seed, progress=False)
        return model.params.data.copy(), h.train_loss

    (p1, l1), (p2, l2), (p3, _) = run(3), run(3), run(4)
    np.testing.assert_array_equal(p1, p2)
    assert l1 == l2
    assert not np.array_equal(p1, p3)


@pytest.mark.parametrize("batch_size, drop_last", [(None, False), (1, False), (5, False), (5, True)])
def test_one_step_per_batch_and_gradients_zeroed(batch_size, drop_last):
    model = Scripted([0.0] * 3)
    X, y = data(12)
    fit(model, fastopt.SGD(model.params, lr=1.0), X, y, epochs=3, batch_size=batch_size,
        drop_last=drop_last, progress=False)
    steps = 3 * num_batches(12, batch_size, drop_last=drop_last)
    assert model.calls == steps
    assert model.params["w"][0] == steps          # each step added lr * 1
    assert all(not g.any() for g in model.grad_at_entry)


def test_targets_may_be_none():
    class Mean:
        def __init__(self):
            self.params = fastopt.ParamSet({"m": 1})
            self.seen_y = set()

        def loss_and_grad(self, X, y):
            self.seen_y.add(y)
            r = self.params["m"] - X
            self.params.grads["m"][:] = r.mean()
            return 0.5 * float(r @ r) / len(r)

    model = Mean()
    fit(model, fastopt.SGD(model.params, lr=0.5), np.full(30, 2.0), None, epochs=15, batch_size=10, progress=False)
    assert model.seen_y == {None} and model.params["m"][0] == pytest.approx(2.0)


def test_learning_rates_of_groups():
    ps = fastopt.ParamSet({"w": 1, "b": 1})
    model = Scripted([0.0] * 2)
    model.params = ps
    opt = fastopt.SGD([{"params": ps.select("w"), "lr": 0.1}, {"params": ps.select("b"), "lr": 0.2}])
    assert fit(model, opt, *data(), epochs=2, progress=False).lr == [(0.1, 0.2)] * 2


def test_softmax_regression_on_digits():
    X, y = load_digits(np.float64)
    X_tr, X_te, y_tr, y_te = train_test_split(X / 16.0, y, test_size=0.25, seed=0, stratify=y)

    class Softmax:
        def __init__(self):
            self.params = fastopt.ParamSet({"W": (64, 10), "b": 10})

        def _probs(self, X):
            z = X @ self.params["W"] + self.params["b"]
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            return p / p.sum(axis=1, keepdims=True)

        def loss(self, X, y):
            return float(-np.log(self._probs(X)[np.arange(len(y)), y]).mean())

        def loss_and_grad(self, X, y):
            p = self._probs(X)
            loss = float(-np.log(p[np.arange(len(y)), y]).mean())
            p[np.arange(len(y)), y] -= 1.0
            p /= len(y)
            self.params.grads["W"][:] = X.T @ p
            self.params.grads["b"][:] = p.sum(axis=0)
            return loss

    model = Softmax()
    h = fit(model, fastopt.Adam(model.params, lr=0.01), X_tr, y_tr, epochs=12, batch_size=32,
            validation_data=(X_te, y_te), early_stopping_patience=3, progress=False)
    accuracy = (model._probs(X_te).argmax(axis=1) == y_te).mean()
    assert accuracy > 0.93
    assert h.val_loss[-1] < 0.3 * h.val_loss[0] and h.train_loss[-1] < h.train_loss[0]


# ---------------------------------------------------------- early stopping
def test_early_stopping_restores_best_params():
    model = Scripted([5.0, 4.0, 3.0, 3.5, 4.0, 2.0, 1.0])
    h = fit(model, fastopt.SGD(model.params, lr=1.0), *data(), epochs=7, batch_size=4,
            validation_data=data(), early_stopping_patience=2, progress=False)
    assert h.epochs == 5 and h.stopped_early and h.best_epoch == 2 and h.restored_best
    assert h.val_loss == [5.0, 4.0, 3.0, 3.5, 4.0]
    np.testing.assert_array_equal(model.params.data, model.snapshots[2])
    assert model.params["w"][0] == 9.0            # 3 epochs x 3 batches


def test_early_stopping_without_restore_keeps_last_params():
    model = Scripted([5.0, 4.0, 3.0, 3.5, 4.0])
    h = fit(model, fastopt.SGD(model.params, lr=1.0), *data(), epochs=7, batch_size=4,
            validation_data=data(), early_stopping_patience=2, restore_best=False, progress=False)
    assert h.stopped_early and not h.restored_best and model.params["w"][0] == 15.0


def test_restore_best_without_early_stopping():
    model = Scripted([5.0, 1.0, 3.0, 4.0])
    h = fit(model, fastopt.SGD(model.params, lr=1.0), *data(), epochs=4, batch_size=12,
            validation_data=data(), restore_best=True, progress=False)
    assert not h.stopped_early and h.restored_best and h.best_epoch == 1
    assert model.params["w"][0] == 2.0


def test_no_restore_when_last_epoch_is_best():
    model = Scripted([3.0, 2.0, 1.0])
    h = fit(model, fastopt.SGD(model.params, lr=1.0), *data(), epochs=3, batch_size=12,
            validation_data=data(), early_stopping_patience=1, progress=False)
    assert not h.stopped_early and not h.restored_best and model.params["w"][0] == 3.0


def test_patience_reached_at_last_epoch_is_not_early():
    model = Scripted([1.0, 2.0, 3.0])
    h = fit(model, fastopt.SGD(model.params, lr=1.0), *data(), epochs=3, batch_size=12,
            validation_data=data(), early_stopping_patience=2, progress=False)
    assert h.epochs == 3 and not h.stopped_early and h.restored_best and model.params["w"][0] == 1.0


def test_min_delta():
    model = Scripted([5.0, 4.95, 4.92, 4.85, 4.8])
    h = fit(model, fastopt.SGD(model.params, lr=1.0), *data(), epochs=5, batch_size=12,
            validation_data=data(), early_stopping_patience=2, min_delta=0.1, progress=False)
    assert h.epochs == 3 and h.stopped_early and h.best_epoch == 0


def test_callback_sees_history_and_can_stop():
    seen = []

    def callback(epoch, history):
        seen.append((epoch, history.epochs))
        return epoch == 1 or None

    model = Scripted([0.0] * 5)
    h = fit(model, fastopt.SGD(model.params, lr=1.0), *data(), epochs=5, callback=callback, progress=False)
    assert seen == [(0, 1), (1, 2)] and h.stopped_early and h.epochs == 2


# ---------------------------------------------------------------- schedulers
class HalvingScheduler:
    """Halves the learning rate at each step; notes how many batches the model had seen by then."""

    def __init__(self, optimizer, model):
        self.optimizer, self.model, self.calls, self.batches_seen = optimizer, model, 0, []

    def step(self):
        self.calls += 1
        self.batches_seen.append(self.model.calls)
        self.optimizer.lr = self.optimizer.lr / 2


class ReduceLROnPlateau:
    """Stands in for fastopt's scheduler of that name: fit spots it by class name."""

    def __init__(self):
        self.metrics = []

    def step(self, metric):
        self.metrics.append(metric)


def test_scheduler_steps_once_per_epoch_after_the_optimizer():
    model = Scripted([0.0] * 3)
    opt = fastopt.SGD(model.params, lr=0.8)
    sched = HalvingScheduler(opt, model)
    h = fit(model, opt, *data(), epochs=3, batch_size=4, scheduler=sched, progress=False)
    assert sched.calls == 3 and sched.batches_seen == [3, 6, 9]
    assert h.lr == [0.8, 0.4, 0.2] and opt.lr == 0.1
    assert model.params["w"][0] == pytest.approx(3 * (0.8 + 0.4 + 0.2))


def test_scheduler_steps_per_batch():
    model = Scripted([0.0] * 2)
    opt = fastopt.SGD(model.params, lr=1.0)
    sched = HalvingScheduler(opt, model)
    h = fit(model, opt, *data(), epochs=2, batch_size=4, scheduler=sched, scheduler_interval="batch",
            progress=False)
    assert sched.calls == 6 and sched.batches_seen == [1, 2, 3, 4, 5, 6]
    assert h.lr == [1.0, 0.125]


def test_plateau_scheduler_gets_validation_loss():
    model = Scripted([3.0, 2.0, 2.5])
    sched = ReduceLROnPlateau()
    h = fit(model, fastopt.SGD(model.params, lr=1.0), *data(), epochs=3, scheduler=sched,
            validation_data=data(), progress=False)
    assert sched.metrics == h.val_loss == [3.0, 2.0, 2.5]


def test_plateau_scheduler_subclass_without_validation_gets_train_loss():
    class MyPlateau(ReduceLROnPlateau):
        pass

    model = Scripted([], train_losses=[1.0, 3.0, 2.0, 2.0])
    sched = MyPlateau()
    h = fit(model, fastopt.SGD(model.params, lr=1.0), *data(), epochs=2, batch_size=6, scheduler=sched,
            progress=False)
    assert sched.metrics == h.train_loss == [2.0, 2.0]


def test_needs_metric_attribute_wins_over_class_name():
    class Metric:
        needs_metric = True

        def __init__(self):
            self.metrics = []

        def step(self, metric):
            self.metrics.append(metric)

    class NoMetric(ReduceLROnPlateau):
        needs_metric = False

        def step(self):
            self.metrics.append(None)

    for sched, expected in [(Metric(), [7.0]), (NoMetric(), [None])]:
        model = Scripted([7.0])
        fit(model, fastopt.SGD(model.params, lr=1.0), *data(), epochs=1, scheduler=sched,
            validation_data=data(), progress=False)
        assert sched.metrics == expected


def test_plateau_scheduler_cannot_step_per_batch():
    model = Scripted([0.0])
    with pytest.raises(ValueError, match="per-epoch"):
        fit(model, fastopt.SGD(model.params), *data(), epochs=1, scheduler=ReduceLROnPlateau(),
            scheduler_interval="batch", progress=False)


# ---------------------------------------------------------------- progress
def test_progress_false_is_silent(capsys):
    model = Scripted([3.0, 4.0, 5.0])
    fit(model, fastopt.SGD(model.params), *data(), epochs=3, validation_data=data(),
        early_stopping_patience=1, progress=False)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("progress", [True, "print"])
def test_plain_progress_without_tqdm(progress, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)       # import tqdm now fails
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    model = Scripted([3.0, 4.0, 5.0])
    fit(model, fastopt.SGD(model.params, lr=0.5), *data(), epochs=3, validation_data=data(),
        early_stopping_patience=1, progress=progress)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 3
    assert lines[0].startswith("epoch 1/3: loss 1, val_loss 3, lr 0.5")
    assert "stopped early after epoch 2" in lines[2] and "epoch 1" in lines[2]
    with pytest.raises(ImportError, match="tqdm"):
        fit(model, fastopt.SGD(model.params), *data(), epochs=1, progress="tqdm")


def test_tqdm_bar_when_installed(monkeypatch, capsys):
    bars = []

    class FakeBar:
        def __init__(self, total, **kwargs):
            self.total, self.updates, self.postfix, self.closed = total, 0, None, 0
            bars.append(self)

        def set_postfix(self, stats, refresh=True):
            self.postfix = dict(stats)

        def update(self, n):
            self.updates += n

        def close(self):
            self.closed += 1

    tqdm = types.ModuleType("tqdm")
    auto = types.ModuleType("tqdm.auto")
    auto.tqdm = FakeBar
    tqdm.auto = auto
    monkeypatch.setitem(sys.modules, "tqdm", tqdm)
    monkeypatch.setitem(sys.modules, "tqdm.auto", auto)
    model = Scripted([0.0] * 4)
    fit(model, fastopt.SGD(model.params), *data(), epochs=4, validation_data=data(), progress=True)
    [bar] = bars
    assert (bar.total, bar.updates, bar.closed) == (4, 4, 1)
    assert set(bar.postfix) == {"loss", "val_loss", "lr"}
    assert capsys.readouterr() == ("", "")


# ------------------------------------------------------------- non-finite
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nonfinite_loss_stops_with_clear_error(bad):
    losses = [1.0] * 5 + [bad] + [1.0] * 10      # epoch 2 (index 1), batch 3 (index 2) with 3 batches/epoch
    model = Scripted([0.0] * 5, train_losses=losses)
    with pytest.raises(NonFiniteLossError, match=r"training loss is (nan|inf) at epoch 2/5, batch 3/3") as info:
        fit(model, fastopt.SGD(model.params, lr=1.0), *data(), epochs=5, batch_size=4, progress=False)
    err = info.value
    assert isinstance(err, FloatingPointError)
    assert (err.epoch, err.batch) == (1, 2) and err.history.epochs == 1
    assert model.params["w"][0] == 5.0            # the failing batch took no step


def test_nonfinite_validation_loss():
    model = Scripted([2.0, math.nan])
    with pytest.raises(NonFiniteLossError, match="validation loss is nan after epoch 2/3") as info:
        fit(model, fastopt.SGD(model.params, lr=1.0), *data(), epochs=3, batch_size=12,
            validation_data=data(), progress=False)
    assert info.value.batch is None and info.value.history.val_loss == [2.0]
    assert model.params["w"][0] == 2.0


def test_nonfinite_loss_restores_best_when_asked():
    model = Scripted([2.0, 1.0, 3.0], train_losses=[1.0, 1.0, 1.0, math.nan])
    with pytest.raises(NonFiniteLossError, match="epoch 2 .the best. were restored"):
        fit(model, fastopt.SGD(model.params, lr=1.0), *data(), epochs=5, batch_size=12,
            validation_data=data(), early_stopping_patience=3, progress=False)
    assert model.params["w"][0] == 2.0


# ---------------------------------------------------------------- clipping
def fake_clip_module(norms):
    def clip_grad_norm_(params, max_norm):
        norm = float(np.linalg.norm(params.grad)) if not norms else norms.pop(0)
        if norm > max_norm:
            params.grad[:] *= max_norm / norm
        return norm

    module = types.ModuleType("fastopt.nn.clip")
    module.clip_grad_norm_ = clip_grad_norm_
    return module


def test_clipping_wiring(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastopt.nn.clip", fake_clip_module([]))
    model = Scripted([0.0] * 2)
    h = fit(model, fastopt.SGD(model.params, lr=1.0), *data(), epochs=2, batch_size=4,
            clip_grad_norm=0.25, progress=False)
    assert h.grad_norm == [1.0, 1.0]
    assert model.params["w"][0] == pytest.approx(6 * 0.25)


def test_nonfinite_gradient_norm(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastopt.nn.clip", fake_clip_module([1.0, math.nan]))
    model = Scripted([0.0] * 2)
    with pytest.raises(NonFiniteLossError, match="gradient norm is nan at epoch 1/2, batch 2/3"):
        fit(model, fastopt.SGD(model.params, lr=1.0), *data(), epochs=2, batch_size=4,
            clip_grad_norm=0.5, progress=False)
    assert model.params["w"][0] == 0.5


def test_clipping_with_the_real_module(regression):
    pytest.importorskip("fastopt.nn.clip")
    X, _, y, _ = regression
    model = LinearRegression(5)
    h = fit(model, fastopt.SGD(model.params, lr=1.0), X, y, epochs=1, batch_size=None,
            clip_grad_norm=1e-3, progress=False)
    assert h.grad_norm[0] > 1e-3
    assert np.linalg.norm(model.params.data) == pytest.approx(1e-3, rel=1e-4)   # one clipped step from zero


# ------------------------------------------------------------- bad input
def _bad_model():
    class NoParams:
        def loss_and_grad(self, X, y):
            return 0.0
    return NoParams()


@pytest.mark.parametrize("change, error, match", [
    (dict(epochs=0), ValueError, "epochs"),
    (dict(epochs=2.0), TypeError, "epochs"),
    (dict(epochs=True), TypeError, "epochs"),
    (dict(early_stopping_patience=2), ValueError, "validation_data"),
    (dict(restore_best=True), ValueError, "validation_data"),
    (dict(restore_best="yes", validation_data=data()), TypeError, "restore_best"),
    (dict(early_stopping_patience=0, validation_data=data()), ValueError, "early_stopping_patience"),
    (dict(scheduler_interval="step"), ValueError, "scheduler_interval"),
    (dict(scheduler=object()), TypeError, "scheduler"),
    (dict(clip_grad_norm=0.0), ValueError, "clip_grad_norm"),
    (dict(clip_grad_norm="1"), TypeError, "clip_grad_norm"),
    (dict(min_delta=-1.0), ValueError, "min_delta"),
    (dict(callback=3), TypeError, "callback"),
    (dict(progress="bar"), ValueError, "progress"),
    (dict(validation_data=(np.zeros(3),)), TypeError, "validation_data"),
    (dict(validation_data=(np.zeros(3), np.zeros(4))), ValueError, "validation_data"),
    (dict(batch_size=20, drop_last=True), ValueError, "no batch"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(seed="x"), TypeError, "seed"),
    (dict(X=np.zeros((5, 1))), ValueError, "same length"),
    (dict(optimizer=object()), TypeError, "optimizer"),
    (dict(model=_bad_model()), TypeError, "model.params"),
    (dict(model=object()), TypeError, "loss_and_grad"),
])
def test_bad_arguments(change, error, match):
    model = Scripted([0.0])
    kwargs = dict(model=model, optimizer=fastopt.SGD(model.params), X=data()[0], y=data()[1],
                  epochs=1, progress=False)
    kwargs.update(change)
    with pytest.raises(error, match=match):
        fit(**kwargs)
    assert model.calls == 0


def test_validation_needs_model_loss():
    class NoLoss:
        def __init__(self):
            self.params = fastopt.ParamSet({"w": 1})

        def loss_and_grad(self, X, y):
            return 0.0

    model = NoLoss()
    with pytest.raises(TypeError, match=r"loss\(X, y\)"):
        fit(model, fastopt.SGD(model.params), *data(), epochs=1, validation_data=data(), progress=False)


def test_optimizer_on_another_paramset_is_refused(regression):
    X_train, _, y_train, _ = regression
    model, stranger = LinearRegression(5), LinearRegression(5)
    opt = fastopt.SGD(stranger.params, lr=0.1)
    with pytest.raises(ValueError, match=r"not built on model\.params.*train nothing"):
        fit(model, opt, X_train, y_train, epochs=1, progress=False)
    assert not model.params.data.any() and not stranger.params.data.any()


def test_optimizer_on_arrays_is_refused(regression):
    X_train, _, y_train, _ = regression
    model = LinearRegression(5)
    with pytest.raises(ValueError, match=r"not built on model\.params \(it steps params\[0\]\)"):
        fit(model, fastopt.SGD([np.zeros(5)], lr=0.1), X_train, y_train, epochs=1, progress=False)


def test_optimizer_on_a_selection_of_model_params_trains_only_it(regression):
    X_train, _, y_train, _ = regression
    model = LinearRegression(5)
    opt = fastopt.SGD(model.params.select(["w"]), lr=0.1)  # b stays frozen
    fit(model, opt, X_train, y_train, epochs=3, progress=False)
    assert model.params["w"].any() and not model.params["b"].any()


def test_an_object_with_another_ps_is_refused(regression):
    X_train, _, y_train, _ = regression
    model = LinearRegression(5)
    wrapper = types.SimpleNamespace(ps=fastopt.ParamSet({"w": 5, "b": 1}), step=lambda: True)
    with pytest.raises(ValueError, match="not built on model.params"):
        fit(model, wrapper, X_train, y_train, epochs=1, progress=False)
