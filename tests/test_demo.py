"""python -m fastopt demo: the digits MLP trains to the promised accuracy, and the command line works."""
import subprocess
import sys

import numpy as np
import pytest

import fastopt
from fastopt import demo
from fastopt.__main__ import main


def test_adam_reaches_95_percent_on_the_test_digits():
    lines = []
    results = demo.run(("adam",), png=None, repeats=3, out=lines.append)
    adam = results["adam"]
    assert adam["test_accuracy"] >= 0.95
    assert adam["history"].train_loss[-1] < adam["history"].train_loss[0] / 5
    assert adam["fastopt_step"] > 0 and adam["numpy_step"] > 0
    assert any(line.startswith("| adam |") for line in lines)


@pytest.mark.parametrize("name", ["adopt", "ademamix", "sgd-schedulefree", "adamw-schedulefree", "lamb", "lars",
                                  "adafactor", "prodigy", "muon", "lookahead-adamw", "adamw-swa", "adamw-accumulate"])
def test_the_rules_without_a_numpy_version_reach_95_percent(name):
    """ADOPT, AdEMAMix, the schedule-free rules, LAMB, LARS, Adafactor, Prodigy, Muon, Lookahead, SWA and gradient
    accumulation at the demo's documented hyperparameters; their NumPy step column is "-"."""
    lines = []
    result = demo.run((name,), png=None, repeats=1, out=lines.append)[name]
    assert result["test_accuracy"] >= 0.95
    assert result["numpy_step"] is None and result["fastopt_step"] > 0
    assert any(line.startswith(f"| {name} |") and line.endswith("| - | - |") for line in lines)


def test_schedule_free_rules_train_without_the_schedule(monkeypatch):
    schedules = []
    monkeypatch.setattr(demo, "_schedule", lambda opt, epochs: schedules.append(opt) or None)
    result = demo.run(("adamw-schedulefree",), epochs=2, png=None, repeats=1, out=lambda line: None)
    assert schedules == [] and result["adamw-schedulefree"]["test_accuracy"] > 0.5


def test_the_command_line_help_lists_every_demo_optimizer():
    out = subprocess.run([sys.executable, "-m", "fastopt", "demo", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert ",".join(demo.OPTIMIZERS) in "".join(out.stdout.split())  # argparse wraps lines, even at a hyphen


def test_mlp_gradients_match_finite_differences():
    X, y = fastopt.datasets.load_digits(dtype=np.float64)
    X, y = X[:12] / 16, y[:12]
    model = demo.MLP(64, 5, 10, seed=1, dtype=np.float64)
    ps = model.params
    ps.grad[:] = 0
    model.loss_and_grad(X, y)
    analytic = ps.grad.copy()
    rng = np.random.default_rng(0)
    for i in rng.choice(ps.data.size, 25, replace=False):
        saved = ps.data[i]
        ps.data[i] = saved + 1e-6
        up = model.loss_and_grad(X, y)
        ps.data[i] = saved - 1e-6
        down = model.loss_and_grad(X, y)
        ps.data[i] = saved
        assert analytic[i] == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-8)


def test_every_optimizer_trains_and_the_plot_is_saved(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    results = demo.run(epochs=5, png=str(png), repeats=1, out=lambda line: None)
    assert set(results) == set(demo.OPTIMIZERS)
    for name, r in results.items():
        assert r["test_accuracy"] > 0.8, name
    assert png.stat().st_size > 10_000


def test_command_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "fastopt", "demo", "--optimizers", "sgd-momentum", "--epochs", "3",
                          "--no-png"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "| sgd-momentum |" in out.stdout and "speed-up" in out.stdout
    assert not list(tmp_path.iterdir())  # --no-png: nothing written


def test_bad_arguments():
    with pytest.raises(SystemExit, match="unknown optimizers"):
        main(["demo", "--optimizers", "adam,lbfgs", "--no-png"])
    with pytest.raises(SystemExit, match="epochs must be a positive integer"):
        main(["demo", "--epochs", "0", "--no-png"])


def test_swa_ends_at_the_average_of_its_last_epochs(monkeypatch):
    updates = []
    real = demo.AveragedModel.update_parameters
    monkeypatch.setattr(demo.AveragedModel, "update_parameters", lambda self: updates.append(1) or real(self))
    demo.run(("adamw-swa",), epochs=6, png=None, repeats=1, out=lambda line: None)
    assert len(updates) == 6 - int(6 * 20 / 30)  # one per epoch from epoch 4 (of 6) on
