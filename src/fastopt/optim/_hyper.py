"""Hyperparameters: validation rules and the parameter-group dict that applies them."""
import itertools
import math
from numbers import Real

import numpy as np

from fastopt._validation import as_float

_VERSIONS = itertools.count()

# How torch.optim names a hyperparameter in its "Invalid ..." messages.
_LABELS = {"lr": "learning rate", "eps": "epsilon value"}


def _label(name):
    return _LABELS.get(name, f"{name} value")


def real(low=0.0, high=math.inf, *, high_open=False):
    """Validator for a finite real number in [low, high] (or [low, high) with ``high_open``)."""

    def check(name, value):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
        value = as_float(value)
        ok = math.isfinite(value) and low <= value and (value < high if high_open else value <= high)
        if not ok:
            right = ")" if high_open else "]"
            raise ValueError(f"Invalid {_label(name)}: {value} (expected a finite value in [{low}, {high}{right})")
        return value

    return check


def flag(name, value):
    """Validator for a boolean option (bools and 0/1 only, so typos like "False" fail)."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def betas(name, value):
    """Validator for a pair of decay rates, each in [0, 1)."""
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2:
        raise TypeError(f"{name} must be a pair of floats, got {value!r}")
    unit = real(0.0, 1.0, high_open=True)
    return tuple(unit(f"beta parameter at index {i}", b) for i, b in enumerate(pair))


class ParamGroup(dict):
    """A parameter group: a dict of hyperparameters that validates what is stored in it.

    Like an entry of torch.optim's ``param_groups``: schedules and users may
    change ``group["lr"]`` (or any other hyperparameter) between steps; the
    new value is checked on assignment.  ``"params"`` is fixed when the
    optimizer is built.  Keys that are not hyperparameters of the optimizer
    (such as a scheduler's ``"initial_lr"``) are stored as given.
    """

    def __init__(self, rules, values):
        super().__init__()
        self._rules = rules
        self._kernel_hyper = None
        self.version = next(_VERSIONS)  # new on every change, unique across groups: cached bindings refresh
        for key, value in values.items():
            self._store(key, value)

    def _store(self, key, value):
        rule = self._rules.get(key)
        dict.__setitem__(self, key, value if rule is None else rule(key, value))
        self._kernel_hyper = None
        self.version = next(_VERSIONS)

    def __setitem__(self, key, value):
        if key == "params":
            raise TypeError("a parameter group's params are fixed once the optimizer is built")
        self._store(key, value)

    def __delitem__(self, key):
        if key in self._rules:
            raise TypeError(f"hyperparameter {key!r} cannot be removed from a parameter group")
        dict.__delitem__(self, key)

    def update(self, *args, **kwargs):
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other):
        self.update(other)
        return self

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, *args):
        raise TypeError("parameter groups do not support pop()")

    popitem = clear = pop

    def kernel_hyper(self):
        """The hyperparameters as the kernels take them (``betas`` split), cached until a change."""
        if self._kernel_hyper is None:
            hyper = {k: v for k, v in self.items() if k in self._rules}
            if "betas" in hyper:
                hyper["beta1"], hyper["beta2"] = hyper.pop("betas")
            self._kernel_hyper = hyper
        return self._kernel_hyper

    def __reduce__(self):  # copies and pickles of a group are plain dicts
        return dict, (dict(self),)


# Validators shared by the optimizers.
nonnegative = real()
any_real = real(-math.inf, math.inf)
unit_interval = real(0.0, 1.0)


class FixedList(list):
    """A list whose entries can be read and changed in place but not added, removed or replaced.

    An optimizer's ``param_groups`` and ``state`` have one entry per group
    and per slot, fixed by its parameters; a group appended to the list
    would never be stepped, and a replaced one would lose its validation.
    ``Optimizer.add_param_group`` is the way to add a group.
    """

    def __init__(self, items, what, hint):
        super().__init__(items)
        self._what = what
        self._hint = hint

    def _refuse(self, *args, **kwargs):
        raise TypeError(f"{self._what} cannot be added to, removed from or replaced; {self._hint}")

    append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse

    def __reduce__(self):  # copies and pickles are plain lists, as for ParamGroup
        return list, (list(self),)
