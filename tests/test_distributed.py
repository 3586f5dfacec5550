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
"""
import ast
import doctest
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastopt

HERE = pathlib.Path(__file__).resolve().parent
WORKER = HERE / "mpi_worker.py"
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi4py = pytest.mark.skipif(not HAVE_MPI4PY, reason='needs mpi4py (pip install "fastopt[mpi]" mpich)')
WORLD_SIZES = [2, 3]
TIMEOUT = 300


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
    for n in (0, 1, 5, 10, 11):
        for parts in (1, 2, 3, 4, 12):
            blocks = [dist._block(n, parts, r) for r in range(parts)]
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
    with pytest.raises(TypeError, match="float32 or float64"):
        dist.allreduce_grads([np.zeros(3, dtype=np.int64)])
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


# --------------------------------------------------------------------------- several ranks
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


@pytest.fixture(scope="module", params=WORLD_SIZES, ids=lambda n: f"{n}ranks")
def mpi_run(request):
    """One mpiexec run of every worker check on ``n`` ranks: (n, output, return code)."""
    if not HAVE_MPI4PY:
        pytest.skip('needs mpi4py (pip install "fastopt[mpi]" mpich)')
    mpiexec = _find_mpiexec()
    if mpiexec is None:
        pytest.skip("needs mpiexec (pip install mpich, or an MPI installation on PATH, or $FASTOPT_MPIEXEC)")
    n = request.param
    command = [mpiexec, *_launch_flags(mpiexec), "-n", str(n), sys.executable, "-m", "mpi4py", str(WORKER)]
    try:
        out = subprocess.run(command, env=_python_env(), capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        text = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return n, f"timed out after {TIMEOUT} s (a deadlock?)\n{text}", None
    return n, out.stdout + out.stderr, out.returncode


@pytest.mark.parametrize("check", CHECKS)
def test_on_several_ranks(mpi_run, check):
    n, output, returncode = mpi_run
    if f"PASS {check}\n" in output:
        return
    pytest.fail(f"{check} did not pass on {n} ranks (mpiexec exit status {returncode}):\n{output[-6000:]}")


def test_worker_found_its_checks():
    assert len(CHECKS) >= 8
