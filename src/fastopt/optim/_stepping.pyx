"""The per-step loop of ``Optimizer.step``, compiled.

Pure bookkeeping, the same as the Python it replaces: find each slot's bound
kernel (re-binding through ``Optimizer._prepare`` when anything changed),
then run the kernels and count the steps.  Compiled because, for an
in-cache array, this loop costs as much as the update itself.
"""


cpdef bint same_arrays(dict state, tuple bound_arrays):
    """True while ``state`` still holds the very arrays a kernel was bound to."""
    cdef tuple pair
    for pair in bound_arrays:
        if state.get(pair[0]) is not pair[1]:
            return False
    return True


def step_slots(optimizer, list grads, int num_threads):
    """Bind every slot that has a gradient, then run each slot's kernel once.

    Binding all slots first means a refused binding (a replaced state array
    of the wrong shape, say) raises before any kernel has run.
    """
    cdef list bound = optimizer._bound
    cdef list states = optimizer.state
    cdef list groups = optimizer.param_groups
    cdef list slot_group = optimizer._slot_group
    cdef bint counts_steps = optimizer.counts_steps
    cdef bint tracks_mu = optimizer._tracks_mu_product
    cdef Py_ssize_t index, n = len(grads)
    cdef list ready = []
    cdef tuple entry
    cdef dict state, new_arrays
    cdef long long step
    for index in range(n):
        grad = grads[index]
        if grad is None:
            continue
        entry = bound[index]
        if (entry is not None and entry[2] is grad
                and entry[1] == groups[slot_group[index]].version
                and same_arrays(states[index], entry[3])):
            ready.append((index, entry[0], None))  # the common case: nothing changed
        else:
            kernel, new_arrays = optimizer._prepare(index, grad)
            ready.append((index, kernel, new_arrays or None))
    for index, kernel, new_arrays in ready:
        state = states[index]
        step = state.get("step", 0) + 1
        mu_product = kernel.run(step, state.get("mu_product", 1.0), new_arrays is not None, num_threads)
        if new_arrays is not None:
            state.update(new_arrays)
        if counts_steps:
            state["step"] = step
        if tracks_mu:
            state["mu_product"] = mu_product
