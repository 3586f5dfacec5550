"""Steps from several Python threads: serialized per memory owner, never torn.

The kernels release the GIL, so without a lock two threads stepping the same
parameters interleave their read-modify-write passes and lose updates.
"""
import threading
import time

import numpy as np
import pytest

import fastopt
from fastopt._locks import lock_for, locks_for

N = 1 << 18      # 2 MiB of float64: each step is long enough for the threads to overlap
STEPS = 100      # per thread


def _in_threads(*jobs):
    """Run each job in its own thread, all released at once; re-raise the first error."""
    barrier = threading.Barrier(len(jobs))
    errors = []

    def run(job):
        try:
            barrier.wait()
            job()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _after_the_first_step(opt):
    """Wait until ``opt`` has stepped once (so that what is read next holds state)."""
    while not opt.state[0]:
        time.sleep(1e-3)


def _steps(opt, count, grads=None):
    def job():
        for _ in range(count):
            opt.step(grads)
    return job


@pytest.mark.parametrize("threads", [1, 2])
def test_one_optimizer_stepped_from_two_threads_counts_every_step(threads):
    fastopt.set_num_threads(threads)
    ps = fastopt.ParamSet({"w": N})
    ps.grad[:] = 0.5
    opt = fastopt.Adam(ps, lr=1e-3)
    _in_threads(_steps(opt, STEPS), _steps(opt, STEPS))
    assert opt.state[0]["step"] == 2 * STEPS

    ref_ps = fastopt.ParamSet({"w": N})
    ref_ps.grad[:] = 0.5
    ref = fastopt.Adam(ref_ps, lr=1e-3)
    for _ in range(2 * STEPS):
        ref.step()
    np.testing.assert_array_equal(ps.data, ref_ps.data)
    np.testing.assert_array_equal(opt.state[0]["exp_avg_sq"], ref.state[0]["exp_avg_sq"])


def test_two_optimizers_on_one_paramset_do_not_tear():
    # lr = 1 and g = 1 keep every value an exact integer: serialized steps end at exactly -2 * STEPS.
    ps = fastopt.ParamSet({"a": N // 2, "b": N // 2})
    ps.grad[:] = 1.0
    first, second = fastopt.SGD(ps, lr=1.0), fastopt.SGD(ps, lr=1.0)
    _in_threads(_steps(first, STEPS), _steps(second, STEPS))
    np.testing.assert_array_equal(ps.data, -2.0 * STEPS)


def test_optimizers_on_views_of_one_array_do_not_tear():
    w = np.zeros(N)
    grad = np.ones(N)
    first = fastopt.SGD([w], lr=1.0)
    second = fastopt.SGD({"view": w[:]}, lr=1.0)  # another view object over the same memory
    _in_threads(_steps(first, STEPS, [grad]), _steps(second, STEPS, {"view": grad}))
    np.testing.assert_array_equal(w, -2.0 * STEPS)


def test_state_dict_during_steps_is_a_consistent_snapshot():
    ps = fastopt.ParamSet({"w": N})
    ps.grad[:] = 1.0
    opt = fastopt.SGD(ps, lr=1.0, momentum=0.5)
    snapshots = []

    def snapshot():
        _after_the_first_step(opt)
        for _ in range(STEPS // 4):
            snapshots.append(opt.state_dict())

    _in_threads(_steps(opt, STEPS), snapshot)
    for sd in snapshots:  # a buffer copied mid-step would hold two different values
        buffer = sd["state"][0]["momentum_buffer"]
        assert np.all(buffer == buffer[0])


def test_locks_follow_the_memory_owner():
    ps, other = fastopt.ParamSet({"w": 4}), fastopt.ParamSet({"w": 4})
    assert lock_for(ps.data) is lock_for(ps.data[1:3]) is lock_for(ps["w"])
    assert lock_for(ps.data) is not lock_for(other.data)
    assert lock_for(ps.data) is not lock_for(ps.grad)
    a = np.zeros(8)
    assert lock_for(a[:4]) is lock_for(a[4:].reshape(2, 2))
    assert len(locks_for([a[:4], a[4:], ps.data, other.data])) == 3


def test_a_lock_held_elsewhere_makes_a_step_wait_for_it():
    ps = fastopt.ParamSet({"w": 4})
    ps.grad[:] = 1.0
    opt = fastopt.SGD(ps, lr=1.0)
    stepped = threading.Event()
    started = threading.Event()
    stepper = threading.Thread(target=lambda: (started.set(), opt.step(), stepped.set()))
    with lock_for(ps.data):  # as another optimizer over this memory would hold it mid-step
        stepper.start()
        started.wait(10)
        finished_while_held = stepped.wait(0.2)
        untouched_while_held = bool(np.all(ps.data == 0.0))
    stepper.join(10)
    assert not finished_while_held and untouched_while_held
    assert stepped.is_set()
    np.testing.assert_array_equal(ps.data, -1.0)


def test_checkpoints_saved_and_loaded_during_steps_are_whole(tmp_path):
    ps = fastopt.ParamSet({"w": N})
    ps.grad[:] = 1.0
    opt = fastopt.SGD(ps, lr=1.0, momentum=0.5)
    paths = [tmp_path / f"c{k}.npz" for k in range(6)]

    def save_all():
        _after_the_first_step(opt)
        for path in paths:
            fastopt.save(path, ps, opt)

    _in_threads(_steps(opt, STEPS), save_all)
    for path in paths:  # each file holds the model between two steps, never during one
        saved_ps = fastopt.ParamSet({"w": N})
        saved_opt = fastopt.SGD(saved_ps, lr=1.0, momentum=0.5)
        fastopt.load(path, saved_ps, saved_opt)
        assert np.all(saved_ps.data == saved_ps.data[0])
        buffer = saved_opt.state[0]["momentum_buffer"]
        assert np.all(buffer == buffer[0])

    def load_all():
        for path in paths:
            fastopt.load(path, ps, opt)

    _in_threads(_steps(opt, STEPS), load_all)
    assert np.all(ps.data == ps.data[0])
    assert np.all(opt.state[0]["momentum_buffer"] == opt.state[0]["momentum_buffer"][0])


def test_a_step_waiting_while_a_group_is_added_takes_the_new_groups_lock_too():
    first, second = fastopt.ParamSet({"w": 4}), fastopt.ParamSet({"w": 4})
    first.grad[:] = second.grad[:] = 1.0
    opt = fastopt.SGD(first, lr=1.0)
    done = threading.Event()
    with lock_for(first.data):                 # the step below waits for this
        stepper = threading.Thread(target=lambda: (opt.step(), done.set()))
        stepper.start()
        opt.add_param_group({"params": second})  # re-entrant here; replaces the optimizer's locks
        held = lock_for(second.data)
        held.acquire()                          # as another optimizer over `second` would, mid-step
    try:
        finished_while_held = done.wait(0.2)
        second_untouched = bool(np.all(second.data == 0.0))
    finally:
        held.release()
    stepper.join(10)
    assert not finished_while_held and second_untouched
    np.testing.assert_array_equal(first.data, -1.0)
    np.testing.assert_array_equal(second.data, -1.0)


def test_load_state_dict_racing_add_param_group_is_checked_against_one_layout():
    w = np.zeros(3)
    opt = fastopt.Adam([w], lr=0.1)
    opt.step([np.ones(3)])
    one_group = opt.state_dict()
    errors = []

    def load():
        try:
            opt.load_state_dict(one_group)
        except ValueError as exc:
            errors.append(exc)

    with lock_for(w):
        loader = threading.Thread(target=load)
        loader.start()
        opt.add_param_group({"params": [np.zeros(2)]})
    loader.join(10)
    # Whichever came first, the optimizer's groups, slots and state agree, and it steps.
    assert len(opt.param_groups) == 2 and len(opt.state) == len(opt._layout.slots) == 2
    assert all("parameter groups" in str(e) for e in errors)
    assert opt.step([[np.ones(3)], [np.ones(2)]])
