"""The optimizer playground: surfaces, runs, table, CSV, figure and command line."""
import argparse
import csv
import sys

import numpy as np
import pytest

from fastopt import playground
from fastopt.playground import SURFACES, get_surface, run, run_one
from fastopt.playground.runner import make_optimizer

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def parse(*argv):
    parser = argparse.ArgumentParser(prog="playground")
    playground.add_arguments(parser)
    return parser.parse_args(argv)


def cli(*argv):
    return playground.main(parse(*argv))


def sample_points(surface, count=25, seed=0):
    xmin, xmax, ymin, ymax = surface.window
    rng = np.random.default_rng(seed)
    points = rng.uniform((xmin, ymin), (xmax, ymax), size=(count, 2))
    return np.vstack([points, surface.start, *surface.minima])


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- surfaces -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SURFACES)
def test_gradient_matches_central_differences(name):
    surface = SURFACES[name]
    for x, y in sample_points(surface):
        hx, hy = 1e-6 * max(1.0, abs(x)), 1e-6 * max(1.0, abs(y))
        numeric = ((surface.value(x + hx, y) - surface.value(x - hx, y)) / (2 * hx),
                   (surface.value(x, y + hy) - surface.value(x, y - hy)) / (2 * hy))
        scale = max(1.0, abs(surface.value(x, y)))
        np.testing.assert_allclose(surface.gradient(x, y), numeric, rtol=1e-6, atol=1e-6 * scale,
                                   err_msg=f"{name} at ({x}, {y})")


@pytest.mark.parametrize("name", SURFACES)
def test_value_and_gradient_are_vectorized(name):
    surface = SURFACES[name]
    xs, ys = sample_points(surface).T
    gx, gy = surface.gradient(xs, ys)
    values = surface.value(xs, ys)
    for i in range(len(xs)):
        assert values[i] == pytest.approx(surface.value(xs[i], ys[i]), rel=1e-12, abs=1e-12)
        assert (gx[i], gy[i]) == pytest.approx(surface.gradient(xs[i], ys[i]), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("name", SURFACES)
def test_known_minima_are_stationary_and_global(name):
    surface = SURFACES[name]
    if name == "saddle":
        assert surface.minima == () and surface.min_value is None
        assert surface.gradient(0.0, 0.0) == (0.0, -0.0)
        return
    for x, y in surface.minima:
        assert surface.value(x, y) == pytest.approx(surface.min_value, abs=1e-20)
        np.testing.assert_allclose(surface.gradient(x, y), 0.0, atol=1e-12)
    xmin, xmax, ymin, ymax = surface.window
    X, Y = np.meshgrid(np.linspace(xmin, xmax, 301), np.linspace(ymin, ymax, 301))
    assert surface.value(X, Y).min() >= surface.min_value - 1e-12


@pytest.mark.parametrize("name", SURFACES)
def test_defaults_are_consistent(name):
    surface = SURFACES[name]
    xmin, xmax, ymin, ymax = surface.window
    assert xmin < surface.start[0] < xmax and ymin < surface.start[1] < ymax
    assert all(xmin <= x <= xmax and ymin <= y <= ymax for x, y in surface.minima)
    assert set(surface.lrs) == set(playground.OPTIMIZERS) and all(lr > 0 for lr in surface.lrs.values())
    assert np.isfinite(surface.value(*surface.start)) and surface.steps > 0


def test_get_surface():
    assert get_surface("beale") is SURFACES["beale"]
    assert get_surface(SURFACES["beale"]) is SURFACES["beale"]
    with pytest.raises(ValueError, match="unknown surface 'nope'; choose from rosenbrock"):
        get_surface("nope")


def test_distance_to_minimum_picks_the_nearest():
    himmelblau = SURFACES["himmelblau"]
    assert himmelblau.distance_to_minimum((3.0, 2.5)) == pytest.approx(0.5)
    assert SURFACES["saddle"].distance_to_minimum((0.0, 0.0)) is None


# --- running --------------------------------------------------------------------------------------------


def test_trajectory_records_every_point_and_loss():
    surface = SURFACES["beale"]
    [t] = run(surface, ["adam"], steps=40)
    assert t.points.shape == (41, 2) and t.losses.shape == (41,)
    assert tuple(t.points[0]) == surface.start and not t.diverged
    np.testing.assert_array_equal(t.losses, surface.value(*t.points.T))
    assert t.losses[-1] < t.losses[0]


@pytest.mark.parametrize("surface", ["rosenbrock", "himmelblau"])
def test_adam_with_defaults_reaches_a_minimum(surface):
    [t] = run(surface, ["adam"])
    assert not t.diverged
    assert t.final_loss < 1e-4
    assert SURFACES[surface].distance_to_minimum(t.final_point) < 0.01


def test_every_optimizer_runs_with_the_defaults_on_every_surface():
    for surface in SURFACES.values():
        for t in run(surface, list(playground.OPTIMIZERS), steps=60):
            assert not t.diverged, (surface.name, t.optimizer)
            assert len(t.points) == 61


@pytest.mark.parametrize("surface", ["beale", "ravine"])
def test_default_optimizers_converge_with_their_defaults(surface):
    surface = SURFACES[surface]
    for t in run(surface, playground.DEFAULT_OPTIMIZERS):
        assert surface.distance_to_minimum(t.final_point) < 0.05, t.optimizer


def _heavy_ball(surface, lr, steps, nesterov):
    x, buf = np.array(surface.start, dtype=float), np.zeros(2)
    for k in range(steps):
        g = np.array(surface.gradient(*x))
        buf = g if k == 0 else 0.9 * buf + g
        x = x - lr * (g + 0.9 * buf if nesterov else buf)
    return x


@pytest.mark.parametrize("name, nesterov", [("momentum", False), ("nesterov", True)])
def test_momentum_names_mean_sgd_with_momentum_0_9(name, nesterov):
    surface = SURFACES["ravine"]
    [t] = run(surface, [name], lr=1e-3, steps=25)
    np.testing.assert_allclose(t.final_point, _heavy_ball(surface, 1e-3, 25, nesterov), rtol=1e-12)
    [plain] = run(surface, ["sgd"], lr=1e-3, steps=1)
    g = np.array(surface.gradient(*surface.start))
    np.testing.assert_allclose(plain.final_point, np.array(surface.start) - 1e-3 * g, rtol=1e-14)


def test_make_optimizer_builds_the_fastopt_class():
    import fastopt

    x = np.zeros(2)
    assert type(make_optimizer("adamw", [x], 0.1)) is fastopt.AdamW
    assert type(make_optimizer("nesterov", [x], 0.1)) is fastopt.SGD


def test_learning_rates_single_per_optimizer_and_defaults():
    surface = SURFACES["rosenbrock"]
    assert playground.resolve_lrs(surface, ["sgd", "adam"]) == {"sgd": surface.lrs["sgd"], "adam": surface.lrs["adam"]}
    assert playground.resolve_lrs(surface, ["sgd", "adam"], 0.5) == {"sgd": 0.5, "adam": 0.5}
    assert playground.resolve_lrs(surface, ["sgd", "adam"], {"adam": 0.3}) == {"sgd": surface.lrs["sgd"], "adam": 0.3}
    for bad in (0, -1.0, float("nan"), float("inf"), "0.1", True):
        with pytest.raises(ValueError, match="learning rate"):
            playground.resolve_lrs(surface, ["sgd"], bad)
    with pytest.raises(ValueError, match="unknown optimizer"):
        playground.resolve_lrs(surface, ["sgd"], {"adamm": 0.1})


@pytest.mark.parametrize("kwargs, message", [
    (dict(optimizers=["adam", "sgdd"]), "unknown optimizer.*'sgdd'"),
    (dict(optimizers=[]), "no optimizers"),
    (dict(steps=0), "steps must be a positive integer"),
    (dict(steps=2.5), "steps must be a positive integer"),
    (dict(start=(1.0,)), "start must be two finite numbers"),
    (dict(start=(np.nan, 1.0)), "start must be two finite numbers"),
    (dict(surface="beale", start=(1e100, 1e100)), "not finite at the start point"),
])
def test_run_rejects_bad_arguments(kwargs, message):
    kwargs = {"surface": "rosenbrock", "optimizers": ["adam"], **kwargs}
    with pytest.raises(ValueError, match=message):
        run(kwargs.pop("surface"), kwargs.pop("optimizers"), **kwargs)


def test_divergence_stops_at_the_first_non_finite_value():
    surface = SURFACES["rosenbrock"]
    t = run_one(surface, "sgd", 1.0, 500, surface.start)
    assert t.diverged and 1 < t.diverged_at <= 500
    assert len(t.points) == len(t.losses) == t.diverged_at  # steps 0 .. diverged_at - 1
    assert np.all(np.isfinite(t.points)) and np.all(np.isfinite(t.losses))
    assert t.steps == 500


# --- command line ---------------------------------------------------------------------------------------


def test_cli_prints_the_table(tmp_path, capsys):
    assert cli("--surface", "himmelblau", "--optimizers", "sgd,adam", "--no-png") == 0
    out = capsys.readouterr().out
    assert "himmelblau: f(x, y) = (x^2 + y - 11)^2 + (x + y^2 - 7)^2; start (-0.4, -0.8), 500 steps" in out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("optimizer"))
    assert header.split("  ")[0] == "optimizer"
    for column in ("lr", "final loss", "distance to minimum", "steps to loss < 0.001"):
        assert column in header
    adam = next(line for line in lines if line.startswith("adam "))
    steps_to = adam.split()[-1]
    assert steps_to.isdigit() and 0 < int(steps_to) <= 500
    assert "figure" not in out and not list(tmp_path.iterdir())


def test_cli_unreached_tolerance_and_missing_minima_show_a_dash(capsys):
    assert cli("--surface", "saddle", "--optimizers", "sgd", "--steps", "5", "--no-png") == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("sgd "))
    assert row.split()[-2:] == ["-", "-"]
    assert cli("--surface", "rosenbrock", "--optimizers", "sgd", "--steps", "5", "--no-png") == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("sgd "))
    assert row.split()[-1] == "-" and row.split()[-2] != "-"


def test_cli_writes_png_and_csv(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png, table = tmp_path / "paths.png", tmp_path / "paths.csv"
    status = cli("--surface", "rosenbrock", "--optimizers", "sgd,momentum,adam", "--steps", "30",
                 "--png", str(png), "--csv", str(table))
    assert status == 0
    data = png.read_bytes()
    assert len(data) > 10_000 and data.startswith(PNG_SIGNATURE)
    out = capsys.readouterr().out
    assert f"figure saved to {png}" in out and f"trajectories written to {table}" in out
    rows = read_csv(table)
    assert list(rows[0]) == ["optimizer", "step", "x", "y", "loss"]
    assert len(rows) == 3 * 31
    assert [r["optimizer"] for r in rows[::31]] == ["sgd", "momentum", "adam"]
    assert [int(r["step"]) for r in rows[:31]] == list(range(31))
    surface = SURFACES["rosenbrock"]
    assert (float(rows[0]["x"]), float(rows[0]["y"])) == surface.start
    for r in rows:
        assert float(r["loss"]) == surface.value(float(r["x"]), float(r["y"]))


def test_cli_figure_with_a_diverged_run_and_the_saddle(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "saddle.png"
    assert cli("--surface", "saddle", "--optimizers", "all", "--lr", "sgd=5", "--steps", "300",
               "--png", str(png)) == 0
    assert png.read_bytes().startswith(PNG_SIGNATURE)


def test_cli_without_matplotlib_writes_csv_and_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    png = tmp_path / "out.png"
    assert cli("--surface", "beale", "--optimizers", "adam,rmsprop", "--steps", "20", "--png", str(png)) == 0
    out = capsys.readouterr().out
    assert "matplotlib is not installed" in out
    assert "pip install matplotlib" in out and 'pip install "fastopt[bench]"' in out
    assert not png.exists()
    rows = read_csv(tmp_path / "out.csv")
    assert len(rows) == 2 * 21 and {r["optimizer"] for r in rows} == {"adam", "rmsprop"}
    assert f"trajectories written to {tmp_path / 'out.csv'}" in out


def test_cli_without_matplotlib_honours_csv_path(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    target = tmp_path / "chosen.csv"
    assert cli("--optimizers", "adam", "--steps", "3", "--png", str(tmp_path / "x.png"), "--csv", str(target)) == 0
    assert len(read_csv(target)) == 4 and not (tmp_path / "x.csv").exists()


def test_cli_reports_divergence(tmp_path, capsys):
    table = tmp_path / "d.csv"
    assert cli("--optimizers", "sgd,adam", "--lr", "sgd=1", "--steps", "200", "--no-png", "--csv", str(table)) == 0
    out = capsys.readouterr().out
    sgd = next(line for line in out.splitlines() if line.startswith("sgd "))
    assert "(diverged)" in sgd
    assert "sgd diverged: step" in out and "non-finite" in out
    rows = read_csv(table)
    sgd_rows = [r for r in rows if r["optimizer"] == "sgd"]
    assert 1 < len(sgd_rows) < 201 and all(np.isfinite(float(r["loss"])) for r in sgd_rows)
    assert len([r for r in rows if r["optimizer"] == "adam"]) == 201


def test_cli_start_and_steps(capsys, tmp_path):
    table = tmp_path / "s.csv"
    assert cli("--start=-1.25,0.5", "--steps", "7", "--optimizers", "adam", "--no-png", "--csv", str(table)) == 0
    rows = read_csv(table)
    assert len(rows) == 8 and (float(rows[0]["x"]), float(rows[0]["y"])) == (-1.25, 0.5)
    assert "start (-1.25, 0.5), 7 steps" in capsys.readouterr().out


def test_cli_single_lr_applies_to_every_optimizer(capsys):
    assert cli("--optimizers", "sgd,adam,lion", "--lr", "0.001", "--steps", "3", "--no-png") == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.split()[:1] in (["sgd"], ["adam"],
                                                                                                   ["lion"])]
    assert [r[1] for r in rows] == ["0.001"] * 3


def test_cli_all_optimizers(capsys):
    assert cli("--optimizers", "all", "--steps", "2", "--no-png") == 0
    out = capsys.readouterr().out
    for name in playground.OPTIMIZERS:
        assert any(line.startswith(name + " ") for line in out.splitlines())


def test_cli_list(capsys):
    assert cli("--list") == 0
    out = capsys.readouterr().out
    for name, surface in SURFACES.items():
        assert f"{name}: f(x, y) = {surface.formula}" in out
    assert "default lr" in out and "none (unbounded below)" in out
    adam = next(line for line in out.splitlines() if line.startswith("adam "))
    assert adam.split()[1:] == [f"{s.lrs['adam']:g}" for s in SURFACES.values()]


@pytest.mark.parametrize("argv, message", [
    (["--surface", "sphere"], "invalid choice: 'sphere'"),
    (["--optimizers", "adam,foo"], "unknown optimizer(s) 'foo'; choose from sgd"),
    (["--optimizers", ""], "unknown optimizer(s) ''"),
    (["--optimizers", "adam,adam"], "named twice"),
    (["--steps", "0"], "expected a positive integer, got '0'"),
    (["--steps", "-5"], "expected a positive integer, got '-5'"),
    (["--steps", "ten"], "expected a positive integer, got 'ten'"),
    (["--start", "1"], "expected two finite numbers as x,y"),
    (["--start", "1,2,3"], "expected two finite numbers as x,y"),
    (["--start", "a,b"], "expected two finite numbers as x,y"),
    (["--start", "inf,0"], "expected two finite numbers as x,y"),
    (["--lr", "-0.1"], "expected a positive finite number"),
    (["--lr", "fast"], "expected a positive number, got 'fast'"),
    (["--lr", "adam=0"], "expected a positive finite number"),
    (["--lr", "adamm=0.1"], "unknown optimizer 'adamm' in --lr"),
    (["--tol", "0"], "expected a positive finite number"),
])
def test_cli_bad_arguments_give_clear_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_runtime_errors_return_status_2(capsys):
    assert cli("--surface", "beale", "--start=1e100,1e100", "--no-png") == 2
    assert "playground: error: the loss of beale is not finite at the start point" in capsys.readouterr().err
    args = parse("--no-png")
    args.optimizers = ["nope"]  # a Namespace built by hand skips argparse's checks
    assert playground.main(args) == 2
    assert "unknown optimizer(s) 'nope'" in capsys.readouterr().err


def test_python_m_fastopt_playground(capsys):
    from fastopt.__main__ import main

    assert main(["playground", "--surface", "ravine", "--optimizers", "adam", "--steps", "5", "--no-png"]) == 0
    assert "ravine: f(x, y)" in capsys.readouterr().out
