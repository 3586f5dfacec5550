"""The per-step loop of ``Optimizer.step``, compiled.

Pure bookkeeping, the same as the Python it replaces: find each slot's bound
kernel (re-binding through ``Optimizer._prepare`` when anything changed),
then run the kernels and count the steps.  Compiled because, for an
in-cache array, this loop costs as much as the update itself.
"""
cimport cython

import numpy as np


@cython.final
cdef class SlotBinding:
    """What one slot's kernel is bound to: ``Optimizer._bound`` holds one per slot (None before its first step).

    ``kernel`` is the slot's ``BoundStep``; ``version`` the ``ParamGroup.version``
    of its group when the kernel took the group's hyperparameters; ``grad``
    the gradient array the kernel reads; ``arrays`` the state arrays it
    updates, as ``((state name, array), ...)`` (those the settings use).
    Read-only: ``Optimizer._prepare`` makes a new one when anything changes.
    Typed fields, so that the step loop below reads them as C struct fields.
    """
    cdef readonly object kernel
    cdef readonly object version
    cdef readonly object grad
    cdef readonly tuple arrays

    def __init__(self, kernel, version, grad, tuple arrays not None):
        self.kernel = kernel
        self.version = version
        self.grad = grad
        self.arrays = arrays

    cpdef bint holds(self, dict state):
        """True while ``state`` still holds the very arrays the kernel was bound to."""
        cdef tuple pair
        for pair in self.arrays:
            if state.get(pair[0]) is not pair[1]:
                return False
        return True

    def __repr__(self):
        return (f"SlotBinding({self.kernel.rule_name}, version {self.version}, "
                f"arrays {[name for name, _ in self.arrays]})")


# The largest step count a slot can hold: the kernels take the step as a C long long.
MAX_STEP = 2**63 - 1


def step_slots(optimizer, list grads, int num_threads):
    """Bind every slot that has a gradient, then run each slot's kernel once.

    Everything that can fail -- binding (a replaced state array of the wrong
    shape, say), reading a step count or a running number (NAdam's
    ``mu_product``) that a user replaced -- happens for all slots before any
    kernel runs, so a refused step changes nothing.
    """
    cdef list bound = optimizer._bound
    cdef list states = optimizer._states
    cdef list groups = optimizer._groups
    cdef list slot_group = optimizer._slot_group
    cdef bint counts_steps = optimizer.counts_steps
    cdef tuple running = optimizer.running_state  # ((name, value before the first step), ...)
    cdef Py_ssize_t index, k, n = len(grads)
    cdef list ready = []
    cdef list values
    cdef SlotBinding entry
    cdef dict state, new_arrays
    cdef object step
    if not len(states) == len(bound) == len(slot_group) == n:  # the loops below do not check bounds
        raise RuntimeError(f"optimizer layout out of step: {n} gradients, {len(states)} states, "
                           f"{len(bound)} bindings, {len(slot_group)} slots")
    for index in range(n):
        grad = grads[index]
        if grad is None:
            continue
        state = states[index]
        step = state.get("step", 0)
        if type(step) is not int or not 0 <= step < MAX_STEP:
            step = _next_step(optimizer, index, step)
        step += 1
        values = None
        if running:
            values = [_running_value(optimizer, index, state, pair) for pair in running]
        entry = bound[index]
        if (entry is not None and entry.grad is grad
                and entry.version == groups[slot_group[index]].version
                and entry.holds(state)):
            ready.append((index, entry.kernel, None, step, values))  # the common case: nothing changed
        else:
            kernel, new_arrays = optimizer._prepare(index, grad)
            ready.append((index, kernel, new_arrays or None, step, values))
    for index, kernel, new_arrays, step, values in ready:
        state = states[index]
        kernel.run(step, values, new_arrays is not None, num_threads)
        if new_arrays is not None:
            state.update(new_arrays)
        if counts_steps:
            state["step"] = step
        for k in range(len(running)):
            state[running[k][0]] = values[k]


cdef double _running_value(optimizer, Py_ssize_t index, dict state, tuple pair) except? -1:
    """A running number of slot ``index`` as a float (its value before the first step if absent), or a clear error."""
    value = state.get(pair[0], pair[1])
    if type(value) is float:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"state {pair[0]!r} of {optimizer._layout.slots[index].name} must be a number, "
                        f"got {value!r}")
    return float(value)


def _next_step(optimizer, Py_ssize_t index, step):
    """Slot ``index``'s step count when it is not a plain int in range: checked, or a clear error."""
    name = optimizer._layout.slots[index].name
    if isinstance(step, bool) or not hasattr(step, "__index__"):
        raise TypeError(f"state 'step' of {name} must be an integer, got {step!r}")
    step = int(step)
    if not 0 <= step < MAX_STEP:
        raise ValueError(f"state 'step' of {name} is {step}: the step count must stay in [0, 2**63 - 1) "
                         "for another step to be taken")
    return step
