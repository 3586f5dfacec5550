"""Checks of fastopt.distributed that need several MPI ranks.

Run by tests/test_distributed.py as::

    mpiexec -n 2 python -m mpi4py tests/mpi_worker.py [check ...]

Every ``check_*`` function runs on all ranks (any number of them, at least
two); without arguments all run, in file order.  Rank 0 prints
``START <name>`` before a check; after it the ranks meet at a barrier and
rank 0 prints ``PASS <name>``.  A failing rank prints ``FAIL <name> on rank
<r>`` and the traceback, then aborts every rank, so a failure never leaves
the others waiting.  A check still running after
``$FASTOPT_MPI_CHECK_TIMEOUT`` seconds (default 120: a deadlock) makes every
rank print ``TIMEOUT <name> on rank <r>`` and its Python stacks, and exit
with status 124.  Lines starting with ``INFO`` report measurements.
"""
import faulthandler
import os
import pathlib
import sys
import threading
import traceback

import numpy as np
from mpi4py import MPI
from numpy.testing import assert_allclose, assert_array_equal

import fastopt
from fastopt.distributed import (
    DataParallel, ShardedOptimizer, allreduce_grads, broadcast_params, shard, shard_bounds,
)
from fastopt.optim.lr_scheduler import StepLR

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()
CHECK_TIMEOUT = float(os.environ.get("FASTOPT_MPI_CHECK_TIMEOUT", 120))
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-5}
ATOL = {np.dtype(np.float64): 1e-14, np.dtype(np.float32): 1e-6}


# --------------------------------------------------------------------------- helpers
def model(dtype=np.float64, align=False, seed=0, shape=(6, 3)):
    """A linear model's ParamSet with the same random values on every rank."""
    rng = np.random.default_rng(seed)
    return fastopt.ParamSet({"W": rng.normal(size=shape), "b": rng.normal(size=shape[1])},
                            dtype=dtype, align=align)


def copy_of(ps):
    other = fastopt.ParamSet({n: ps.shapes[n] for n in ps.names}, dtype=ps.dtype, align=ps.align)
    other.data[:] = ps.data
    return other


def batch(step, n, ps, seed=100):
    """The global batch of a step: the same on every rank."""
    rng = np.random.default_rng([seed, step])
    d_in, d_out = ps.shapes["W"]
    X = rng.normal(size=(n, d_in)).astype(ps.dtype)
    Y = rng.normal(size=(n, d_out)).astype(ps.dtype)
    return X, Y


def mean_grad(ps, X, Y):
    """Gradient of mean 0.5 * ||X W + b - Y||^2 over the rows of X, written into ps.grad."""
    ps.zero_grad()
    if len(X) == 0:
        return
    residual = X @ ps["W"] + ps["b"] - Y
    ps.grads["W"][:] = X.T @ residual / len(X)
    ps.grads["b"][:] = residual.sum(axis=0) / len(X)


def assert_same_on_all_ranks(array):
    """Every rank holds the same bits."""
    everyone = COMM.allgather(np.array(array))
    for other in everyone[1:]:
        assert_array_equal(other, everyone[0])


def expect_error(kind, pattern, call):
    """``call()`` raises ``kind`` with ``pattern`` in its message; the communicator still works after."""
    try:
        call()
    except kind as exc:
        assert pattern in str(exc), f"{pattern!r} not in {exc!r}"
        message = str(exc)
    else:
        raise AssertionError(f"no {kind.__name__} raised (expected one mentioning {pattern!r})")
    assert COMM.allreduce(RANK) == SIZE * (SIZE - 1) // 2  # no stray message in flight
    return message


def expect_same_error(kind, pattern, call):
    """As :func:`expect_error`, and every rank raised the very same message."""
    message = expect_error(kind, pattern, call)
    everyone = COMM.allgather(message)
    assert all(m == everyone[0] for m in everyone), f"the ranks raised different messages: {everyone}"
    return message


class Snapshot:
    """Copies of a ParamSet's buffers and an optimizer's state, to check that a refused call changed nothing."""

    def __init__(self, ps, opt=None):
        self.ps, self.opt = ps, opt
        self.data, self.grad = ps.data.copy(), ps.grad.copy()
        self.state = None if opt is None else self._state(opt)
        self.extra = None if opt is None else (opt.skipped_steps, [dict(g) for g in opt.param_groups])

    @staticmethod
    def _state(opt):
        return [{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in slot.items()} for slot in opt.state]

    def assert_unchanged(self):
        assert_array_equal(self.ps.data, self.data, err_msg="ps.data changed")
        assert_array_equal(self.ps.grad, self.grad, err_msg="ps.grad changed")
        if self.opt is not None:
            now = self._state(self.opt)
            assert [sorted(s) for s in now] == [sorted(s) for s in self.state], "the optimizer state changed"
            for before, after in zip(self.state, now):
                for key, value in before.items():
                    if isinstance(value, np.ndarray):
                        assert_array_equal(after[key], value, err_msg=f"state {key!r} changed")
                    else:
                        assert after[key] == value, f"state {key!r} changed: {value!r} -> {after[key]!r}"
            assert (self.opt.skipped_steps, [dict(g) for g in self.opt.param_groups]) == self.extra


OPTIMIZERS = [
    (fastopt.Adam, dict(lr=0.05)),
    (fastopt.AdamW, dict(lr=0.05, weight_decay=0.1, amsgrad=True)),
    (fastopt.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (fastopt.NAdam, dict(lr=0.02)),
]


# --------------------------------------------------------------------------- set-up
def check_workers_import_the_tested_fastopt():
    """Every rank imports the fastopt that the test run imports ($FASTOPT_EXPECTED_SOURCE), not another copy."""
    expected = os.environ.get("FASTOPT_EXPECTED_SOURCE")
    mine = str(pathlib.Path(fastopt.__file__).resolve().parent)
    if RANK == 0:
        print(f"INFO fastopt imported from {mine}", flush=True)
    if expected is not None:
        assert mine == str(pathlib.Path(expected).resolve()), f"rank {RANK} imports {mine}, expected {expected}"


# --------------------------------------------------------------------------- data parallel
def check_data_parallel_matches_one_process():
    """Averaging each rank's gradient, then stepping, is the one-process step on the whole batch."""
    for dtype in (np.float64, np.float32):
        for cls, hyper in OPTIMIZERS:
            for n in (12 * SIZE, 12 * SIZE + 1):   # equal parts (average), unequal parts (count)
                ps, ref = model(dtype), model(dtype)
                if RANK:
                    ps.data[:] = 7.0                  # broadcast_params fixes it
                broadcast_params(ps, COMM)
                opt, ref_opt = cls(ps, **hyper), cls(ref, **hyper)
                for step in range(6):
                    X, Y = batch(step, n, ps)
                    part = shard(n, COMM)
                    mean_grad(ps, X[part], Y[part])
                    if n % SIZE == 0:
                        allreduce_grads(ps, COMM)
                    else:
                        allreduce_grads(ps, COMM, count=len(X[part]))
                    opt.step()
                    mean_grad(ref, X, Y)
                    ref_opt.step()
                    assert_allclose(ps.data, ref.data, rtol=RTOL[ps.dtype], atol=ATOL[ps.dtype],
                                    err_msg=f"{cls.__name__} {np.dtype(dtype).name} n={n} step {step}")
                    assert_same_on_all_ranks(ps.data)


def check_data_parallel_class():
    """DataParallel: broadcast at construction, unchecked allreduce, shard()."""
    ps, ref = model(align=True), model(align=True)
    if RANK:
        ps.data[:] = -1.0
    dp = DataParallel(ps, COMM)
    assert_array_equal(ps.data, ref.data)
    opt, ref_opt = fastopt.Adam(ps, lr=0.1), fastopt.Adam(ref, lr=0.1)
    n = 5 * SIZE + 2
    for step in range(4):
        X, Y = batch(step, n, ps)
        part = dp.shard(n)
        mean_grad(ps, X[part], Y[part])
        dp.allreduce_grads(count=len(X[part]))
        opt.step()
        mean_grad(ref, X, Y)
        ref_opt.step()
    assert_allclose(ps.data, ref.data, rtol=1e-12, atol=1e-14)
    assert_same_on_all_ranks(ps.data)
    # a rank with no rows contributes nothing
    n = SIZE - 1
    X, Y = batch(99, n, ps)
    part = dp.shard(n)
    mean_grad(ps, X[part], Y[part])
    dp.allreduce_grads(count=len(X[part]))
    mean_grad(ref, X, Y)
    assert_allclose(ps.grad, ref.grad, rtol=1e-12, atol=1e-14)
    # every part covered once
    parts = COMM.allgather(shard(11, COMM))
    assert [i for p in parts for i in range(11)[p]] == list(range(11))


def check_list_and_dict_of_arrays():
    """allreduce_grads / broadcast_params on arrays: big ones alone, small ones packed per dtype."""
    from fastopt.distributed import PACK_BYTES
    big = PACK_BYTES // 8 + 3
    shapes = [(big,), (3, 4), (5,), (0,), (2, 2)]
    dtypes = [np.float64, np.float64, np.float32, np.float64, np.float32]
    grads = [np.full(s, RANK + 1.0, dtype=d) for s, d in zip(shapes, dtypes)]
    grads[1] = grads[1][:, ::-1].copy()
    allreduce_grads(grads, COMM)
    mean = (SIZE + 1) / 2
    for g, d in zip(grads, dtypes):
        assert g.dtype == d
        assert_array_equal(g, np.full(g.shape, mean, dtype=d))
    named = {"a": np.full(4, float(RANK)), "b": np.full((2, 3), 2.0 * RANK, dtype=np.float32)}
    allreduce_grads(named, COMM, average=False)
    total = SIZE * (SIZE - 1) / 2
    assert_array_equal(named["a"], np.full(4, total))
    assert_array_equal(named["b"], np.full((2, 3), 2 * total, dtype=np.float32))
    single = np.full((3, 3), float(RANK))
    allreduce_grads(single, COMM)
    assert_array_equal(single, np.full((3, 3), total / SIZE))
    params = [np.full(s, float(RANK), dtype=d) for s, d in zip(shapes, dtypes)]
    broadcast_params(params, COMM, root=SIZE - 1)
    for p in params:
        assert_array_equal(p, np.full(p.shape, SIZE - 1.0, dtype=p.dtype))
    broadcast_params({"x": np.full(3, float(RANK))}, COMM, root=0)


# --------------------------------------------------------------------------- sharded optimizer
def check_sharded_matches_plain_optimizer():
    """ZeRO-1 steps equal one optimizer's steps on the whole arena, state split over the ranks."""
    for dtype in (np.float64, np.float32):
        for cls, hyper in OPTIMIZERS:
            ps, ref, dp = (model(dtype, align=True, shape=(40, 7)) for _ in range(3))
            opt = ShardedOptimizer(cls, ps, COMM, **hyper)
            ref_opt, dp_opt = cls(ref, **hyper), cls(dp, **hyper)
            n = 8 * SIZE
            for step in range(6):
                X, Y = batch(step, n, ps)
                part = shard(n, COMM)
                mean_grad(ps, X[part], Y[part])
                assert opt.step() is True
                mean_grad(ref, X, Y)
                ref_opt.step()
                mean_grad(dp, X[part], Y[part])   # the data-parallel path on the same local gradients
                allreduce_grads(dp, COMM, check=False)
                dp_opt.step()
                what = f"{cls.__name__} {np.dtype(dtype).name} step {step}"
                assert_allclose(ps.data, ref.data, rtol=RTOL[ps.dtype], atol=ATOL[ps.dtype], err_msg=what)
                if SIZE == 2:  # a sum of two numbers does not depend on the order: the same bits
                    assert_array_equal(ps.data, dp.data, err_msg=what)
                else:
                    assert_allclose(ps.data, dp.data, rtol=RTOL[ps.dtype], atol=ATOL[ps.dtype], err_msg=what)
                assert_same_on_all_ranks(ps.data)
            full = sum(v.nbytes for v in ref_opt.state[0].values() if isinstance(v, np.ndarray))
            mine = opt.state_bytes()
            everyone = COMM.allgather(mine)
            assert sum(everyone) == full, (everyone, full)
            arrays = sum(isinstance(v, np.ndarray) for v in ref_opt.state[0].values())
            line = fastopt.paramset.CACHE_LINE
            assert max(everyone) <= -(-full // SIZE) + arrays * line, (everyone, full)
            if RANK == 0 and cls is fastopt.Adam:
                print(f"INFO state_bytes {cls.__name__} {np.dtype(dtype).name} size={ps.size}: one process "
                      f"{full}, per rank with {SIZE} ranks {everyone}", flush=True)


def check_sharded_odd_and_tiny_sizes():
    """Sizes not divisible by the ranks, smaller than a cache line, smaller than the ranks, zero."""
    for dtype in (np.float64, np.float32):
        for tensors in ({"w": 1}, {"w": SIZE - 1, "v": 1}, {"w": 13}, {"w": (3, 5), "b": 2},
                        {"w": 8 * SIZE + 5}, {"w": 16 * SIZE * 3 + 1}, {"w": 0}):
            for align in (False, True):
                rng = np.random.default_rng(len(tensors))
                ps = fastopt.ParamSet(tensors, dtype=dtype, align=align)
                ps.data[:] = rng.normal(size=ps.size)
                ref = copy_of(ps)
                for cls, hyper in OPTIMIZERS[:3]:
                    opt = ShardedOptimizer(cls, ps, COMM, **hyper)
                    ref_opt = cls(ref, **hyper)
                    lo, hi = shard_bounds(ps.size, SIZE, dtype)[RANK]
                    assert (opt.lo, opt.hi) == (lo, hi)
                    for step in range(3):
                        g = np.random.default_rng([step, 5]).normal(size=(SIZE, ps.size)).astype(dtype)
                        ps.grad[:] = g[RANK]
                        ref.grad[:] = g.sum(axis=0) / SIZE
                        opt.step()
                        ref_opt.step()
                    assert_allclose(ps.data, ref.data, rtol=RTOL[ps.dtype], atol=ATOL[ps.dtype],
                                    err_msg=f"{tensors} {np.dtype(dtype).name} align={align} {cls.__name__}")
                    assert_same_on_all_ranks(ps.data)


def check_sharded_count_weighting_and_reduce_grads_false():
    """step(count=...) for unequal parts; reduce_grads=False steps on already averaged gradients."""
    ps, ref, pre = model(), model(), model()
    opt = ShardedOptimizer(fastopt.Adam, ps, COMM, lr=0.05)
    pre_opt = ShardedOptimizer(fastopt.Adam, pre, COMM, reduce_grads=False, lr=0.05)
    ref_opt = fastopt.Adam(ref, lr=0.05)
    n = 4 * SIZE + 1
    for step in range(4):
        X, Y = batch(step, n, ps)
        part = shard(n, COMM)
        mean_grad(ps, X[part], Y[part])
        opt.step(count=len(X[part]))
        mean_grad(pre, X[part], Y[part])
        allreduce_grads(pre, COMM, count=len(X[part]))
        pre_opt.step()
        mean_grad(ref, X, Y)
        ref_opt.step()
    assert_allclose(ps.data, ref.data, rtol=1e-12, atol=1e-14)
    assert_allclose(pre.data, ref.data, rtol=1e-12, atol=1e-14)
    assert_same_on_all_ranks(ps.data)
    assert pre_opt.state_bytes() == opt.state_bytes()


def check_sharded_scheduler_lr_and_skip_nonfinite():
    """A schedule drives param_groups; lr passes through; a NaN on one rank skips the step everywhere."""
    ps, ref = model(), model()
    opt = ShardedOptimizer(fastopt.SGD, ps, COMM, lr=0.1, momentum=0.5, skip_nonfinite=True)
    ref_opt = fastopt.SGD(ref, lr=0.1, momentum=0.5)
    sched, ref_sched = StepLR(opt, step_size=2, gamma=0.5), StepLR(ref_opt, step_size=2, gamma=0.5)
    for step in range(5):
        g = np.random.default_rng([step, 9]).normal(size=(SIZE, ps.size))
        ps.grad[:] = g[RANK]
        ref.grad[:] = g.sum(axis=0) / SIZE
        opt.step()
        ref_opt.step()
        sched.step()
        ref_sched.step()
        assert opt.lr == ref_opt.lr
    assert_allclose(ps.data, ref.data, rtol=1e-12, atol=1e-14)
    opt.lr = 0.25
    assert opt.param_groups[0]["lr"] == 0.25
    before = ps.data.copy()
    ps.grad[:] = 1.0
    if RANK == SIZE - 1:
        ps.grad[0] = np.nan  # in rank 0's slice, coming from the last rank
    assert opt.step() is False
    assert opt.skipped_steps == 1
    assert_array_equal(ps.data, before)
    ps.grad[:] = 1.0
    assert opt.step() is True
    assert_same_on_all_ranks(ps.data)


def check_sharded_state_dicts():
    """Per-rank state dicts round-trip; the consolidated one equals one optimizer's and resumes on any layout."""
    hyper = dict(lr=0.05, amsgrad=True)
    ps, ref = model(shape=(20, 3)), model(shape=(20, 3))
    opt = ShardedOptimizer(fastopt.Adam, ps, COMM, **hyper)
    ref_opt = fastopt.Adam(ref, **hyper)

    def train(steps, first, pairs):
        for step in range(first, first + steps):
            g = np.random.default_rng([step, 3]).normal(size=(SIZE, ps.size))
            for p, o in pairs:
                if isinstance(o, ShardedOptimizer):
                    p.grad[:] = g[RANK]
                else:
                    p.grad[:] = g.sum(axis=0) / SIZE
                o.step()

    assert opt.consolidated_state_dict() == (None if RANK else {"state": {}, "param_groups": [
        {**opt.param_groups[0], "params": [0]}], "skipped_steps": 0})
    train(3, 0, [(ps, opt), (ref, ref_opt)])
    full = opt.consolidated_state_dict(root=SIZE - 1)
    if RANK == SIZE - 1:
        expected = ref_opt.state_dict()
        assert full["param_groups"] == expected["param_groups"]
        assert set(full["state"][0]) == set(expected["state"][0])
        for key, value in expected["state"][0].items():
            assert_allclose(full["state"][0][key], value, rtol=1e-12, atol=1e-14, err_msg=key)
        plain = fastopt.Adam(copy_of(ps), **hyper)
        plain.load_state_dict(full)  # a plain optimizer takes it as it is
    else:
        assert full is None
    # per-rank round trip
    saved, saved_params = opt.state_dict(), ps.data.copy()
    train(2, 3, [(ps, opt)])
    opt.load_state_dict(saved)
    ps.data[:] = saved_params
    # a fresh sharded optimizer resumes from the consolidated state
    other = ShardedOptimizer(fastopt.Adam, ps2 := copy_of(ps), COMM, **hyper)
    other.load_consolidated_state_dict(full, root=SIZE - 1)
    train(3, 3, [(ps, opt), (ps2, other), (ref, ref_opt)])
    assert_array_equal(ps2.data, ps.data)
    assert_allclose(ps.data, ref.data, rtol=1e-12, atol=1e-14)
    # a bad state on the root raises on every rank and changes nothing
    bad = None
    if RANK == 0:
        bad = ref_opt.state_dict()
        bad["state"][0]["exp_avg"] = bad["state"][0]["exp_avg"][:-1]
    keep = {k: v.copy() for k, v in other.state[0].items() if isinstance(v, np.ndarray)}
    expect_error(ValueError, "exp_avg", lambda: other.load_consolidated_state_dict(bad, root=0))
    for key, value in keep.items():
        assert_array_equal(other.state[0][key], value)
    shard_state = opt.state_dict()
    shard_state["shard"] = dict(shard_state["shard"], size=SIZE + 1)
    try:
        opt.load_state_dict(shard_state)
    except ValueError as exc:
        assert "shard" in str(exc)
    else:
        raise AssertionError("a state dict from another layout was accepted")


# --------------------------------------------------------------------------- errors
def check_mismatches_raise_on_every_rank():
    """Arguments that differ between ranks raise the same error everywhere instead of deadlocking."""
    last = RANK == SIZE - 1
    mismatched = fastopt.ParamSet({"w": 12 if last else 10})
    for call in (lambda: ShardedOptimizer(fastopt.Adam, mismatched, COMM),
                 lambda: allreduce_grads(mismatched, COMM),
                 lambda: broadcast_params(mismatched, COMM),
                 lambda: DataParallel(mismatched, COMM)):
        message = expect_error(ValueError, "ParamSet size differs across ranks", call)
        assert f"12 on rank {SIZE - 1}" in message, message
    other_dtype = fastopt.ParamSet({"w": 10}, dtype=np.float32 if last else np.float64)
    expect_error(ValueError, "ParamSet dtype differs", lambda: ShardedOptimizer(fastopt.SGD, other_dtype, COMM))
    renamed = fastopt.ParamSet({"v" if last else "w": 10})
    expect_error(ValueError, "tensors", lambda: allreduce_grads(renamed, COMM))
    ps = model()
    expect_error(ValueError, "hyperparameters differ",
                 lambda: ShardedOptimizer(fastopt.Adam, ps, COMM, lr=0.2 if last else 0.1))
    expect_error(ValueError, "optimizer class differs",
                 lambda: ShardedOptimizer(fastopt.Adam if last else fastopt.AdamW, ps, COMM))
    # an invalid argument on one rank only
    message = expect_error(ValueError, "learning rate",
                           lambda: ShardedOptimizer(fastopt.Adam, ps, COMM, lr=-1.0 if last else 0.1))
    assert last or f"failed on rank {SIZE - 1}" in message
    expect_error(TypeError, "float32 or float64",
                 lambda: allreduce_grads([np.zeros(3, dtype=np.int64 if last else np.float64)], COMM))
    expect_error(ValueError, "length differs",
                 lambda: allreduce_grads([np.zeros(3)] if last else [np.zeros(3), np.ones(3)], COMM))
    expect_error(ValueError, "C-contiguous",
                 lambda: allreduce_grads(np.zeros((4, 4))[:, ::2] if last else np.zeros((4, 2)), COMM))
    expect_error(ValueError, "root differs", lambda: broadcast_params(ps, COMM, root=RANK))
    expect_error(ValueError, "count given differs",
                 lambda: allreduce_grads(ps, COMM, count=3 if last else None))
    expect_error(ValueError, "count is 0 on every rank", lambda: allreduce_grads(ps, COMM, count=0))
    expect_error(TypeError, "ParamSet", lambda: ShardedOptimizer(fastopt.Adam, [ps.data], COMM))
    # after all that, the ranks still work together
    opt = ShardedOptimizer(fastopt.Adam, ps, COMM)
    ps.grad[:] = 1.0
    assert opt.step() is True
    assert_same_on_all_ranks(ps.data)


# --------------------------------------------------------------------------- disagreement at a step
LAST = RANK == SIZE - 1


def stepped_adam(**hyper):
    """A ShardedOptimizer (Adam) that has taken one step, so that it holds state."""
    ps = model(align=True, shape=(20, 3))
    opt = ShardedOptimizer(fastopt.Adam, ps, COMM, **{"lr": 0.05, **hyper})
    ps.grad[:] = np.random.default_rng([RANK, 1]).normal(size=ps.size)
    assert opt.step() is True
    return ps, opt


def refused(pattern, call, ps, opt=None, kind=ValueError):
    """``call()`` raises the same ``kind`` on every rank and changes nothing anywhere; returns the message."""
    before = Snapshot(ps, opt)
    message = expect_same_error(kind, pattern, call)
    before.assert_unchanged()
    return message


def good_step(ps, opt, **kwargs):
    """A step all ranks agree on still works, and leaves every rank the same parameters."""
    ps.grad[:] = np.random.default_rng([RANK, 2]).normal(size=ps.size)
    assert opt.step(**kwargs) is True
    assert_same_on_all_ranks(ps.data)


def check_sharded_step_count_on_some_ranks_only_is_refused():
    """step(count=...) on one rank and step() on another: the same error everywhere, no hang, no update."""
    ps, opt = stepped_adam()
    message = refused("count given differs across ranks", lambda: opt.step(count=10 if LAST else None), ps, opt)
    assert f"True on rank {SIZE - 1}" in message and "False on rank" in message, message
    message = refused("count must be finite and >= 0", lambda: opt.step(count=-1 if LAST else 3), ps, opt)
    assert f"failed on rank {SIZE - 1}" in message, message
    refused("count is 0 on every rank", lambda: opt.step(count=0), ps, opt)
    good_step(ps, opt, count=RANK + 1)
    good_step(ps, opt)


def check_sharded_settings_changed_on_one_rank_are_refused():
    """lr, any param_groups entry, skip_nonfinite or average set on one rank only: refused at the next step."""
    ps, opt = stepped_adam()
    sched = StepLR(opt, step_size=1, gamma=0.5)
    if LAST:
        opt.lr = 0.2
    message = refused("param_groups[0]['lr'] differs across ranks", opt.step, ps, opt)
    assert f"0.2 on rank {SIZE - 1}" in message and "0.05 on rank" in message, message
    opt.lr = 0.05
    good_step(ps, opt)
    if LAST:
        opt.param_groups[0]["betas"] = (0.8, 0.99)
        opt.param_groups[0]["weight_decay"] = 0.1
    message = refused("param_groups[0]['betas'] differs across ranks", opt.step, ps, opt)
    assert "param_groups[0]['weight_decay'] differs across ranks" in message, message
    if LAST:
        opt.param_groups[0]["betas"] = (0.9, 0.999)
        opt.param_groups[0]["weight_decay"] = 0.0
    good_step(ps, opt)
    if RANK == 0:
        sched.step()  # a schedule stepped on one rank only
    refused("param_groups[0]['lr'] differs across ranks", opt.step, ps, opt)
    if RANK != 0:
        sched.step()
    good_step(ps, opt)
    assert opt.lr == 0.025
    if LAST:
        opt.skip_nonfinite = True
    refused("skip_nonfinite differs across ranks", opt.step, ps, opt)
    if LAST:
        opt.skip_nonfinite = False
    if RANK == 0:
        opt.average = False
    refused("average differs across ranks", opt.step, ps, opt)
    opt.average = True
    if LAST:
        opt.skip_nonfinite = "yes"
    refused("skip_nonfinite must be True or False", opt.step, ps, opt, kind=TypeError)
    opt.skip_nonfinite = False
    good_step(ps, opt)


def check_sharded_read_only_or_broken_buffers_are_refused():
    """A read-only ps.data (or ps.grad, with count) or a broken state array on one rank: no rank updates."""
    ps, opt = stepped_adam()
    if LAST:
        ps.data.flags.writeable = False
    message = refused("ParamSet.data is read-only", opt.step, ps, opt)
    assert f"failed on rank {SIZE - 1}" in message, message
    ps.data.flags.writeable = False  # on every rank: the same error everywhere (their votes are all alike)
    message = refused("ParamSet.data is read-only", opt.step, ps, opt)
    assert f"failed on ranks {', '.join(map(str, range(SIZE)))}: ValueError" in message, message
    ps.data.flags.writeable = True
    good_step(ps, opt)
    if RANK == 0:
        ps.grad.flags.writeable = False
    refused("ParamSet.grad is read-only", lambda: opt.step(count=2), ps, opt)
    ps.grad.flags.writeable = True
    good_step(ps, opt, count=2)
    kept = opt.state[0]["exp_avg"]
    if LAST:
        opt.state[0]["exp_avg"] = np.zeros(3)
    refused("'exp_avg'", opt.step, ps, opt)
    opt.state[0]["exp_avg"] = kept
    step = opt.state[0]["step"]
    if RANK == 0:
        opt.state[0]["step"] = float(step)
    refused("'step'", opt.step, ps, opt)
    opt.state[0]["step"] = step
    if LAST:
        opt.optimizer.skip_nonfinite = True
    refused("skip_nonfinite", opt.step, ps, opt)
    opt.optimizer.skip_nonfinite = False
    good_step(ps, opt)


def check_data_parallel_calls_that_disagree_are_refused():
    """allreduce_grads (checked or not), DataParallel and broadcast_params: disagreeing calls are refused."""
    ps = model(align=True)
    dp = DataParallel(ps, COMM)
    ps.grad[:] = RANK + 1.0
    for call in (lambda: allreduce_grads(ps, COMM, count=3 if LAST else None),
                 lambda: allreduce_grads(ps, COMM, count=3 if LAST else None, check=False),
                 lambda: dp.allreduce_grads(count=3 if LAST else None)):
        message = refused("count given differs across ranks", call, ps)
        assert f"True on rank {SIZE - 1}" in message, message
    refused("average differs across ranks", lambda: dp.allreduce_grads(average=RANK == 0), ps)
    refused("count must be finite", lambda: dp.allreduce_grads(count=np.nan if LAST else 1.0), ps)
    refused("count is 0 on every rank", lambda: dp.allreduce_grads(count=0), ps)
    if LAST:
        ps.grad.flags.writeable = False
    refused("ParamSet.grad is read-only", dp.allreduce_grads, ps)
    ps.grad.flags.writeable = True
    other = fastopt.ParamSet({"w": 12 if LAST else 10})
    refused("differs across ranks", lambda: allreduce_grads(other, COMM, check=False), other)
    refused("root differs across ranks", lambda: dp.broadcast_params(root=RANK), ps)
    refused("root differs across ranks", lambda: broadcast_params(ps, COMM, root=RANK, check=False), ps)
    refused("root must be a rank of comm", lambda: dp.broadcast_params(root=SIZE if LAST else 0), ps)
    if RANK == 0:
        ps.data.flags.writeable = False
    refused("ParamSet.data is read-only", dp.broadcast_params, ps)
    ps.data.flags.writeable = True
    if LAST:  # DataParallel itself, with a read-only gradient on one rank (that rank used to raise alone)
        ps.grad.flags.writeable = False
    refused("ParamSet.grad is read-only", lambda: DataParallel(ps, COMM, broadcast=False), ps)
    ps.grad.flags.writeable = True
    # the calls still work when the ranks agree
    dp.allreduce_grads(count=RANK)
    allreduce_grads(ps, COMM, check=False)
    dp.broadcast_params(root=SIZE - 1)
    assert_same_on_all_ranks(ps.grad)
    assert_same_on_all_ranks(ps.data)


def check_ranks_in_different_calls_are_refused():
    """One rank steps while another averages gradients: the same error on all, nothing changed."""
    ps, opt = stepped_adam()
    dp_ps = model()
    dp = DataParallel(dp_ps, COMM)
    before = Snapshot(ps, opt)
    message = expect_same_error(RuntimeError, "the ranks are in different calls",
                                lambda: dp.allreduce_grads() if LAST else opt.step())
    assert "ShardedOptimizer.step on rank" in message and f"allreduce_grads on rank {SIZE - 1}" in message, message
    before.assert_unchanged()
    good_step(ps, opt)


def check_sharded_state_dict_calls_that_disagree_are_refused():
    """load_state_dict, consolidated_state_dict, load_consolidated_state_dict: all ranks or none."""
    ps, opt = stepped_adam()
    older = opt.state_dict()
    good_step(ps, opt)
    newer = opt.state_dict()
    # ranks loading their shards of different checkpoints
    message = refused("state step differs across ranks", lambda: opt.load_state_dict(older if LAST else newer),
                      ps, opt)
    assert f"1 on rank {SIZE - 1}" in message, message
    broken = dict(newer, optimizer=dict(newer["optimizer"], param_groups=[]))
    refused("parameter groups", lambda: opt.load_state_dict(broken if RANK == 0 else newer), ps, opt)
    opt.load_state_dict(older)
    assert opt.state[0]["step"] == 1
    good_step(ps, opt)
    # a state array one rank cannot send
    kept = opt.state[0]["exp_avg"]
    if LAST:
        opt.state[0]["exp_avg"] = kept[:-1].copy() if kept.size else np.zeros(1)
    refused("'exp_avg'", opt.consolidated_state_dict, ps, opt)
    opt.state[0]["exp_avg"] = kept
    if LAST:
        opt.lr = 0.5
    refused("param_groups[0]['lr'] differs across ranks", opt.consolidated_state_dict, ps, opt)
    opt.lr = 0.05
    full = opt.consolidated_state_dict()
    # a consolidated state whose slot key is the string "0" (as after a JSON round trip) loads too
    other_ps = copy_of(ps)
    other = ShardedOptimizer(fastopt.Adam, other_ps, COMM, lr=0.05)
    text_keys = None if RANK else dict(full, state={"0": full["state"][0]})
    other.load_consolidated_state_dict(text_keys)
    for key, value in opt.state[0].items():
        if isinstance(value, np.ndarray):
            assert_array_equal(other.state[0][key], value)
        else:
            assert other.state[0][key] == value


# --------------------------------------------------------------------------- self-tests of the runner
def selftest_deadlock():
    """Deadlock on purpose (run by name only): every rank waits for a message that no rank sends."""
    COMM.recv(source=(RANK + 1) % SIZE, tag=4242)


# --------------------------------------------------------------------------- runner
def watchdog(name):
    """A started timer that ends this rank (status 124, with its stacks) if ``name`` outlasts CHECK_TIMEOUT.

    mpi4py releases the GIL in blocking MPI calls, so the timer fires even while the main thread
    waits in a collective that another rank never entered.
    """
    def expire():
        print(f"TIMEOUT {name} on rank {RANK} after {CHECK_TIMEOUT:g} s (a deadlock?)", flush=True)
        faulthandler.dump_traceback(file=sys.stdout, all_threads=True)
        sys.stdout.flush()
        os._exit(124)

    if CHECK_TIMEOUT <= 0:
        return None
    timer = threading.Timer(CHECK_TIMEOUT, expire)
    timer.daemon = True
    timer.start()
    return timer


def main(names):
    checks = {name: func for name, func in globals().items() if name.startswith(("check_", "selftest_"))}
    unknown = [n for n in names if n not in checks]
    if unknown:
        sys.exit(f"unknown checks {unknown}; known: {sorted(checks)}")
    if SIZE < 2:
        sys.exit(f"mpi_worker.py needs at least 2 ranks, got {SIZE}: was it launched with an mpiexec that "
                 "belongs to another MPI library than mpi4py's?")
    fastopt.set_num_threads(1)
    for name in names or [name for name in checks if name.startswith("check_")]:
        if RANK == 0:
            print(f"START {name}", flush=True)
        timer = watchdog(name)
        try:
            checks[name]()
        except BaseException:
            print(f"FAIL {name} on rank {RANK}\n{traceback.format_exc()}", file=sys.stdout, flush=True)
            COMM.Abort(1)
        COMM.Barrier()
        if timer is not None:
            timer.cancel()
        if RANK == 0:
            print(f"PASS {name}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
