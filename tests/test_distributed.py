"""fastopt.distributed: data-parallel gradient averaging and the sharded (ZeRO-1) optimizer over MPI.

Three kinds of tests:

* without mpi4py: importing fastopt never imports mpi4py, and importing
  fastopt.distributed without it says how to install it;
* in this process, with mpi4py: the partition logic and a one-rank
  ``MPI.COMM_WORLD`` (the sharded optimizer on one rank is the plain one);
* on several ranks: ``mpiexec -n N python -m mpi4py tests/mpi_worker.py``
  runs the worker's checks once per N (2 and 3) and every check is one
  test here.  The mpiexec is ``$FASTOPT_MPIEXEC``, else the one next to
  the Python running the tests (where ``pip install mpich`` puts it),
  else the first on PATH; without one these tests skip.

No mpiexec can hang the test run: the worker's watchdog ends a check that
runs longer than ``$FASTOPT_MPI_CHECK_TIMEOUT`` seconds (default 120), and
an mpiexec still running after ``$FASTOPT_MPI_RUN_TIMEOUT`` seconds (default
600) is killed with its process group and every rank it started.  A check
that fails or hangs fails its test; the checks after it run in a fresh
mpiexec.
"""
import ast
import doctest
import importlib.util
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import uuid

import ml_dtypes
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastopt

HERE = pathlib.Path(__file__).resolve().parent
WORKER = HERE / "mpi_worker.py"
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi4py = pytest.mark.skipif(not HAVE_MPI4PY, reason='needs mpi4py (pip install "fastopt[mpi]" mpich)')
WORLD_SIZES = [2, 3]


def _python_env():
    """The environment for a child Python that imports this very fastopt build."""
    env = dict(os.environ)
    source = str(pathlib.Path(fastopt.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([source] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["OMP_NUM_THREADS"] = "1"  # the ranks share the machine's cores
    return env


# --------------------------------------------------------------------------- without mpi4py
def test_importing_fastopt_does_not_import_mpi4py():
    code = "import sys, fastopt, fastopt.optim; print('mpi4py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=_python_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_missing_mpi4py_says_how_to_install_it():
    code = ("import sys; sys.modules['mpi4py'] = None\n"  # makes `from mpi4py import MPI` fail
            "try:\n    import fastopt.distributed\nexcept ImportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], env=_python_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'pip install "fastopt[mpi]"' in out.stdout


# --------------------------------------------------------------------------- partition logic
@pytest.fixture(scope="module")
def dist():
    if not HAVE_MPI4PY:
        pytest.skip('needs mpi4py (pip install "fastopt[mpi]" mpich)')
    import fastopt.distributed as module
    return module


@needs_mpi4py
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_shard_bounds_cover_the_buffer_in_cache_line_blocks(dist, dtype):
    unit = fastopt.paramset.CACHE_LINE // np.dtype(dtype).itemsize
    for nranks in (1, 2, 3, 4, 7, 16):
        for size in (0, 1, unit - 1, unit, unit + 1, 3 * unit, 5 * unit + 3, 1000, 4099):
            bounds = dist.shard_bounds(size, nranks, dtype)
            assert len(bounds) == nranks
            assert bounds[0][0] == 0 and bounds[-1][1] == size
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))       # contiguous, in rank order
            assert all(lo <= hi for lo, hi in bounds)
            assert all(lo % unit == 0 for lo, hi in bounds if lo < size)      # each starts on a cache line
            lines = [-(-(hi - lo) // unit) for lo, hi in bounds]
            assert max(lines) - min(lines) <= 1                              # balanced to a line
            assert sum(lo < hi for lo, hi in bounds) == min(nranks, -(-size // unit))


@needs_mpi4py
def test_shard_bounds_examples_and_errors(dist):
    assert dist.shard_bounds(100, 3) == [(0, 40), (40, 72), (72, 100)]
    assert dist.shard_bounds(100, 3, np.float32) == [(0, 48), (48, 80), (80, 100)]
    assert dist.shard_bounds(5, 2) == [(0, 5), (5, 5)]
    with pytest.raises(ValueError, match="nranks"):
        dist.shard_bounds(10, 0)
    with pytest.raises(TypeError, match="size"):
        dist.shard_bounds(10.0, 2)
    with pytest.raises(TypeError, match="float32 or float64"):
        dist.shard_bounds(10, 2, np.int32)


@needs_mpi4py
def test_block_partition_of_samples(dist):
    from fastopt.distributed._partition import _block
    for n in (0, 1, 5, 10, 11):
        for parts in (1, 2, 3, 4, 12):
            blocks = [_block(n, parts, r) for r in range(parts)]
            assert blocks[0][0] == 0 and blocks[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
            sizes = [b - a for a, b in blocks]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert dist.shard(7) == slice(0, 7)  # one rank in this process
    with pytest.raises(TypeError, match="comm"):
        dist.shard(7, comm="world")


@needs_mpi4py
def test_module_doctests(dist):
    assert doctest.testmod(dist).failed == 0


# --------------------------------------------------------------------------- one rank, in this process
@needs_mpi4py
@pytest.mark.parametrize("cls, hyper", [(fastopt.Adam, dict(lr=0.1)), (fastopt.SGD, dict(lr=0.1, momentum=0.9)),
                                        (fastopt.RMSprop, dict(lr=0.01))])
def test_sharded_on_one_rank_is_the_plain_optimizer(dist, dtype, cls, hyper):
    rng = np.random.default_rng(0)
    ps = fastopt.ParamSet({"W": rng.normal(size=(7, 3)), "b": rng.normal(size=3)}, dtype=dtype, align=True)
    ref = fastopt.ParamSet({"W": ps["W"], "b": ps["b"]}, dtype=dtype, align=True)
    opt, ref_opt = dist.ShardedOptimizer(cls, ps, **hyper), cls(ref, **hyper)
    assert opt.comm.Get_size() == 1 and (opt.lo, opt.hi) == (0, ps.size)
    for _ in range(4):
        ps.grad[:] = ref.grad[:] = rng.normal(size=ps.size)
        assert opt.step() is True
        ref_opt.step()
    assert_array_equal(ps.data, ref.data)
    full = sum(v.nbytes for v in ref_opt.state[0].values() if isinstance(v, np.ndarray))
    assert opt.state_bytes() == full
    consolidated = opt.consolidated_state_dict()
    expected = ref_opt.state_dict()
    assert consolidated["param_groups"] == expected["param_groups"]
    for key, value in expected["state"][0].items():
        assert_array_equal(consolidated["state"][0][key], value)
    assert "Sharded" in repr(opt)


@needs_mpi4py
def test_sharded_lr_param_groups_and_state_dict_on_one_rank(dist):
    ps = fastopt.ParamSet({"w": np.arange(10.0)})
    opt = dist.ShardedOptimizer(fastopt.AdamW, ps, lr=0.1)
    assert opt.lr == 0.1 and opt.param_groups is opt.optimizer.param_groups
    assert opt.defaults["weight_decay"] == 0.01
    opt.lr = 0.5
    assert opt.param_groups[0]["lr"] == 0.5
    with pytest.raises(ValueError, match="learning rate"):
        opt.lr = -1.0
    assert opt.state_bytes() == 0  # state starts with the first step
    ps.grad[:] = 1.0
    opt.step()
    saved, before = opt.state_dict(), ps.data.copy()
    assert saved["shard"] == {"rank": 0, "size": 1, "lo": 0, "hi": 10, "paramset_size": 10, "dtype": "float64"}
    opt.step()
    opt.load_state_dict(saved)
    ps.data[:] = before
    opt.step()
    again = ps.data.copy()
    ps.data[:] = before
    opt.load_state_dict(saved)
    opt.step()
    assert_array_equal(ps.data, again)
    opt.zero_grad()
    assert not ps.grad.any()
    with pytest.raises(TypeError, match="ShardedOptimizer.state_dict"):
        opt.load_state_dict({"state": {}, "param_groups": []})
    fresh = dist.ShardedOptimizer(fastopt.AdamW, ps, lr=0.5)
    fresh.load_consolidated_state_dict(opt.consolidated_state_dict())
    for key, value in opt.state[0].items():
        assert_array_equal(fresh.state[0][key], value)


@needs_mpi4py
def test_allreduce_and_broadcast_on_one_rank(dist):
    ps = fastopt.ParamSet({"w": np.arange(6.0)})
    ps.grad[:] = np.arange(6.0)
    dist.allreduce_grads(ps)
    assert_array_equal(ps.grad, np.arange(6.0))
    dist.allreduce_grads(ps, count=3)
    assert_allclose(ps.grad, np.arange(6.0), rtol=1e-15)
    arrays = [np.ones(3), np.full((2, 2), 2.0, dtype=np.float32)]
    dist.allreduce_grads(arrays, average=False, check=False)
    assert_array_equal(arrays[0], np.ones(3))
    dist.broadcast_params(ps)
    dist.broadcast_params({"a": np.ones(2)})
    dp = dist.DataParallel(ps)
    dp.allreduce_grads()
    assert dp.shard(4) == slice(0, 4) and (dp.rank, dp.size) == (0, 1)


@needs_mpi4py
def test_argument_errors_on_one_rank(dist):
    ps = fastopt.ParamSet({"w": 4})
    with pytest.raises(TypeError, match="fastopt optimizer class"):
        dist.ShardedOptimizer(object, ps)
    with pytest.raises(TypeError, match="needs a ParamSet"):
        dist.ShardedOptimizer(fastopt.Adam, {"w": np.zeros(3)})
    with pytest.raises(TypeError, match="does not take|unexpected keyword"):
        dist.ShardedOptimizer(fastopt.SGD, ps, betas=(0.9, 0.99))
    for option in (dict(state_dtype="int8"), dict(master_weights=True), dict(stochastic_rounding=True, seed=1)):
        with pytest.raises(ValueError, match="keeps the state in the parameters' dtype"):
            dist.ShardedOptimizer(fastopt.Adam, ps, **option)
    with pytest.raises(TypeError, match="float32 or float64"):
        dist.allreduce_grads([np.zeros(3, dtype=np.int64)])
    with pytest.raises(TypeError, match="ParamSet.grad must have dtype float32 or float64, got bfloat16"):
        dist.allreduce_grads(fastopt.ParamSet({"w": 4}, dtype=ml_dtypes.bfloat16))
    with pytest.raises(ValueError, match="C-contiguous"):
        dist.allreduce_grads(np.zeros((3, 4))[:, ::2])
    with pytest.raises(ValueError, match="share memory"):
        a = np.zeros(4)
        dist.allreduce_grads([a, a[1:]])
    with pytest.raises(ValueError, match="read-only"):
        b = np.zeros(3)
        b.flags.writeable = False
        dist.allreduce_grads(b)
    with pytest.raises(ValueError, match="count"):
        dist.allreduce_grads(ps, count=-1)
    with pytest.raises(ValueError, match="average=True"):
        dist.allreduce_grads(ps, count=2, average=False)
    with pytest.raises(ValueError, match="root"):
        dist.broadcast_params(ps, root=1)
    with pytest.raises(TypeError, match="comm"):
        dist.allreduce_grads(ps, comm=0)
    with pytest.raises(ValueError, match="count is 0"):
        dist.allreduce_grads(ps, count=0)
    opt = dist.ShardedOptimizer(fastopt.Adam, ps, reduce_grads=False)
    with pytest.raises(ValueError, match="reduce_grads=True"):
        opt.step(count=3)
    with pytest.raises(TypeError, match="must be a dict"):
        opt.load_consolidated_state_dict([1, 2])
    with pytest.raises(ValueError, match="expected float64\\[4\\]"):
        opt.load_consolidated_state_dict({"state": {0: {"step": 1, "exp_avg": np.zeros(3), "exp_avg_sq": np.zeros(4)}},
                                          "param_groups": opt.optimizer.state_dict()["param_groups"]})


@needs_mpi4py
def test_refused_steps_change_nothing_on_one_rank(dist):
    """The local checks of a step run before anything moves: a refused step leaves data, grad and state."""
    ps = fastopt.ParamSet({"w": np.arange(10.0)})
    opt = dist.ShardedOptimizer(fastopt.Adam, ps, lr=0.1)
    ps.grad[:] = 1.0
    opt.step()

    def unchanged(call, kind, match):
        data, grad = ps.data.copy(), ps.grad.copy()
        state = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in opt.state[0].items()}
        with pytest.raises(kind, match=match):
            call()
        assert_array_equal(ps.data, data)
        assert_array_equal(ps.grad, grad)
        assert opt.state[0].keys() == state.keys()
        for key, value in state.items():
            assert_array_equal(opt.state[0][key], value)

    ps.data.flags.writeable = False
    unchanged(opt.step, ValueError, "ParamSet.data is read-only")
    ps.data.flags.writeable = True
    ps.grad.flags.writeable = False
    unchanged(lambda: opt.step(count=2), ValueError, "ParamSet.grad is read-only")
    ps.grad.flags.writeable = True
    unchanged(lambda: opt.step(count=0), ValueError, "count is 0 on every rank")
    kept = opt.state[0]["exp_avg"]
    opt.state[0]["exp_avg"] = kept.astype(np.float32)
    unchanged(opt.step, ValueError, "optimizer state 'exp_avg' must be a writeable contiguous float64\\[10\\]")
    opt.state[0]["exp_avg"] = kept
    opt.skip_nonfinite = "no"
    unchanged(opt.step, TypeError, "skip_nonfinite must be True or False")
    opt.skip_nonfinite = False
    for bad_step in (None, 2**63 - 1, "1"):  # what the inner step would refuse after the reduce-scatter
        opt.state[0]["step"] = bad_step
        unchanged(opt.step, ValueError, "optimizer state 'step' must be an integer")
    opt.state[0]["step"] = 1
    with pytest.raises(AttributeError):
        opt.reduce_grads = False
    assert opt.step() is True and opt.state[0]["step"] == 2
    # a state_dict that fails to load leaves the state as it was
    saved = opt.state_dict()
    bad = dict(saved, optimizer=dict(saved["optimizer"], state={0: {"step": 1, "exp_avg": np.zeros(3)}}))
    unchanged(lambda: opt.load_state_dict(bad), ValueError, "exp_avg")
    # a consolidated state with the slot key "0" (a JSON round trip) loads
    full = opt.consolidated_state_dict()
    other = dist.ShardedOptimizer(fastopt.Adam, fastopt.ParamSet({"w": 10}), lr=0.1)
    other.load_consolidated_state_dict(dict(full, state={"0": full["state"][0]}))
    assert_array_equal(other.state[0]["exp_avg_sq"], opt.state[0]["exp_avg_sq"])


@needs_mpi4py
def test_step_settings_digest_follows_group_versions_and_guarded_param_groups(dist):
    """The step signature is rebuilt only when a group changes, and only reads param_groups."""
    from fastopt.optim.lr_scheduler import StepLR

    ps = fastopt.ParamSet({"w": np.arange(6.0)})
    opt = dist.ShardedOptimizer(fastopt.SGD, ps, lr=0.1, momentum=0.9)
    built = []
    pairs = opt._settings_pairs
    opt._settings_pairs = lambda *args: built.append(1) or pairs(*args)
    ps.grad[:] = 1.0
    first = opt._settings(False, True)
    assert opt.step() is True and opt._settings(False, True) == first and len(built) == 1
    opt.lr = 0.05                                 # a new group version: the digest is rebuilt, and differs
    opt._step_checks(None)
    changed = opt._settings(False, True)
    assert changed != first and len(built) == 2
    opt.param_groups[0]["momentum"] = 0.5
    assert opt._settings(False, True) not in (first, changed)
    sched = StepLR(opt, step_size=1, gamma=0.5)
    sched.step()
    assert opt.lr == 0.025 and opt.param_groups[0]["lr"] == 0.025
    assert opt._settings(True, True) != opt._settings(False, True)  # skip_nonfinite counts too
    with pytest.raises(TypeError, match="add_param_group"):  # the inner optimizer's guarded list
        opt.param_groups.append({})
    assert opt.step() is True


# --------------------------------------------------------------------------- several ranks
#: Seconds one worker check may take before the worker's watchdog ends the run (a deadlock).
CHECK_TIMEOUT = float(os.environ.get("FASTOPT_MPI_CHECK_TIMEOUT", 120))
#: Seconds one mpiexec may run in all before its processes are killed (should the watchdog not fire).
RUN_TIMEOUT = float(os.environ.get("FASTOPT_MPI_RUN_TIMEOUT", 600))


def _find_mpiexec():
    override = os.environ.get("FASTOPT_MPIEXEC")
    if override:
        return override
    beside = pathlib.Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    return shutil.which("mpiexec")


def _launch_flags(mpiexec):
    """Flags for a local run: MPICH's Hydra forks the ranks itself (no ssh, no host name lookup);
    Open MPI needs leave to run more ranks than cores (and, in containers, to run as root)."""
    try:
        version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return []
    text = version.stdout + version.stderr
    if "HYDRA" in text:
        return ["-launcher", "fork"]
    if "Open MPI" in text or "OpenRTE" in text:
        root = hasattr(os, "geteuid") and os.geteuid() == 0
        return ["--oversubscribe"] + (["--allow-run-as-root"] if root else [])
    return []


def _check_names():
    tree = ast.parse(WORKER.read_text())
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("check_")]


CHECKS = _check_names()


def _marked_pids(marker):
    """Processes whose environment holds ``marker`` (Linux ``/proc``): the ranks of one run, wherever
    the launcher put them (Hydra starts each rank in a session of its own, so a process group misses them)."""
    pids = []
    needle = marker.encode() + b"\0"
    for entry in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            if needle in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return pids


def _alive(pid):
    """The process exists and is not a zombie (Linux ``/proc``; elsewhere: it exists)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return not pathlib.Path("/proc").is_dir()
    return stat.rpartition(")")[2].split()[0] != "Z"


def _kill_run(process, marker, wait=30):
    """SIGKILL an mpiexec, its process group and every rank it started; wait up to ``wait`` s for them to go."""
    targets = _marked_pids(marker)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in targets:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + wait
    while any(_alive(pid) for pid in targets) and time.monotonic() < deadline:
        time.sleep(0.05)  # a killed process takes a moment to release its memory


def _mpiexec(n, checks, check_timeout=CHECK_TIMEOUT, run_timeout=RUN_TIMEOUT, run_id=None):
    """Run the worker's ``checks`` on ``n`` ranks under a timeout: (output, return code or None on a timeout).

    ``check_timeout`` arms the worker's watchdog per check (0: none); after ``run_timeout`` s the
    mpiexec, its process group and all its ranks are killed.  Every rank's environment holds
    ``FASTOPT_MPI_RUN=<run_id>`` (a fresh one unless given), by which the ranks are found.
    """
    mpiexec = _find_mpiexec()
    marker = f"FASTOPT_MPI_RUN={run_id or uuid.uuid4().hex}"
    env = _python_env()
    env["FASTOPT_MPI_RUN"] = marker.partition("=")[2]
    env["FASTOPT_MPI_CHECK_TIMEOUT"] = str(check_timeout)
    env["FASTOPT_EXPECTED_SOURCE"] = str(pathlib.Path(fastopt.__file__).resolve().parent)
    command = [mpiexec, *_launch_flags(mpiexec), "-n", str(n), sys.executable, "-m", "mpi4py", str(WORKER), *checks]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # its own process group, killed whole on a timeout
    try:
        output, _ = process.communicate(timeout=run_timeout)
        return output, process.returncode
    except subprocess.TimeoutExpired:
        _kill_run(process, marker)
        output, _ = process.communicate()
        return f"{output}\nmpiexec killed after {run_timeout:g} s (a deadlock?)", None
    finally:
        if process.poll() is None:  # interrupted (Ctrl-C): leave no rank behind
            _kill_run(process, marker)
            process.wait()


@pytest.fixture(scope="module", params=WORLD_SIZES, ids=lambda n: f"{n}ranks")
def mpi_run(request):
    """Every worker check on ``n`` ranks: ``{check: None if it passed, else the output that says why}``.

    The checks run in one mpiexec, in file order.  A check that fails or hangs ends that run (the
    worker aborts, or its watchdog kills it after ``CHECK_TIMEOUT`` s); the checks after it then run
    in a fresh mpiexec, so each reports on its own.
    """
    if not HAVE_MPI4PY:
        pytest.skip('needs mpi4py (pip install "fastopt[mpi]" mpich)')
    if _find_mpiexec() is None:
        pytest.skip("needs mpiexec (pip install mpich, or an MPI installation on PATH, or $FASTOPT_MPIEXEC)")
    n = request.param
    results, remaining = {}, list(CHECKS)
    while remaining:
        output, returncode = _mpiexec(n, remaining)
        passed = 0
        while passed < len(remaining) and f"PASS {remaining[passed]}\n" in output:
            results[remaining[passed]] = None
            passed += 1
        if passed == len(remaining):
            break
        culprit = remaining[passed]
        results[culprit] = f"mpiexec exit status {returncode}:\n{output[-6000:]}"
        started = f"START {culprit}\n" in output
        remaining = remaining[passed + 1:]
        if not started:  # the worker never got to it (mpiexec or the import failed): no use going on
            for check in remaining:
                results[check] = f"not run: the worker did not start {culprit}:\n{output[-6000:]}"
            break
    return n, results


@pytest.mark.parametrize("check", CHECKS)
def test_on_several_ranks(mpi_run, check):
    n, results = mpi_run
    if results[check] is not None:
        pytest.fail(f"{check} did not pass on {n} ranks ({results[check]}")


@pytest.fixture(scope="module")
def launcher():
    if not HAVE_MPI4PY:
        pytest.skip('needs mpi4py (pip install "fastopt[mpi]" mpich)')
    if _find_mpiexec() is None:
        pytest.skip("needs mpiexec (pip install mpich, or an MPI installation on PATH, or $FASTOPT_MPIEXEC)")
    return _mpiexec


def test_a_deadlocked_check_fails_instead_of_hanging(launcher):
    output, returncode = launcher(2, ["selftest_deadlock"], check_timeout=3)
    assert "TIMEOUT selftest_deadlock on rank" in output, output
    assert returncode not in (0, None), output


def test_a_hung_mpiexec_is_killed_with_all_its_ranks(launcher):
    run_id = uuid.uuid4().hex
    output, returncode = launcher(2, ["selftest_deadlock"], check_timeout=0, run_timeout=8, run_id=run_id)
    assert returncode is None and "mpiexec killed after 8 s" in output, output
    assert not [pid for pid in _marked_pids(f"FASTOPT_MPI_RUN={run_id}") if _alive(pid)]


def test_worker_found_its_checks():
    assert len(CHECKS) >= 8
    assert CHECKS[0] == "check_workers_import_the_tested_fastopt"


@needs_mpi4py
def test_a_group_added_to_the_inner_optimizer_is_refused_before_anything_moves(dist):
    ps = fastopt.ParamSet({"w": np.arange(4.0)})
    opt = dist.ShardedOptimizer(fastopt.SGD, ps, lr=0.1)
    ps.grad[:] = 1.0
    opt.optimizer.add_param_group({"params": [np.zeros(2)]})
    data = ps.data.copy()
    with pytest.raises(ValueError, match="one parameter group"):
        opt.step()
    assert_array_equal(ps.data, data)
