"""The parameter-group dict that applies the hyperparameter validators, and the fixed-length list of groups.

The validators themselves (``real``, ``flag``, ``betas``, ``nonnegative``, ...)
live in :mod:`fastopt._validation` with fastopt's other argument checks.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

_VERSIONS = itertools.count()


class ParamGroup(dict[str, Any]):
    """A parameter group: a dict of hyperparameters that validates what is stored in it.

    Like an entry of torch.optim's ``param_groups``: schedules and users may
    change ``group["lr"]`` (or any other hyperparameter) between steps; the
    new value is checked on assignment.  ``"params"`` is fixed when the
    optimizer is built.  Keys that are not hyperparameters of the optimizer
    (such as a scheduler's ``"initial_lr"``) are stored as given.
    """

    def __init__(self, validators: Mapping[str, Callable[[str, Any], Any]], values: Mapping[str, Any]) -> None:
        super().__init__()
        self._validators = validators
        self._kernel_hyper: dict[str, Any] | None = None
        self.version: int = next(_VERSIONS)  # new on every change, unique across groups: cached bindings refresh
        for key, value in values.items():
            self._store(key, value)

    def _store(self, key: str, value: Any) -> None:
        check = self._validators.get(key)
        dict.__setitem__(self, key, value if check is None else check(key, value))
        self._kernel_hyper = None
        self.version = next(_VERSIONS)

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "params":
            raise TypeError("a parameter group's params are fixed once the optimizer is built")
        self._store(key, value)

    def __delitem__(self, key: str) -> None:
        if key in self._validators:
            raise TypeError(f"hyperparameter {key!r} cannot be removed from a parameter group")
        dict.__delitem__(self, key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other: Any) -> ParamGroup:  # type: ignore[override,misc]  # (dict.__or__ is generic)
        self.update(other)
        return self

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, *args: Any) -> NoReturn:
        raise TypeError("parameter groups do not support pop()")

    popitem = clear = pop

    def kernel_hyper(self) -> dict[str, Any]:
        """The hyperparameters as the kernels take them (``betas`` split: beta1, beta2, ...), cached until a change."""
        if self._kernel_hyper is None:
            hyper = {k: v for k, v in self.items() if k in self._validators}
            if "betas" in hyper:
                hyper.update((f"beta{i}", beta) for i, beta in enumerate(hyper.pop("betas"), 1))
            self._kernel_hyper = hyper
        return self._kernel_hyper

    def __reduce__(self) -> tuple[Any, ...]:  # copies and pickles of a group are plain dicts
        return dict, (dict(self),)


class FixedList(list[Any]):
    """A list whose entries can be read and changed in place but not added, removed or replaced.

    An optimizer's ``param_groups`` and ``state`` have one entry per group
    and per slot, fixed by its parameters; a group appended to the list
    would never be stepped, and a replaced one would lose its validation.
    ``Optimizer.add_param_group`` is the way to add a group.
    """

    def __init__(self, items: Iterable[Any], what: str, hint: str) -> None:
        super().__init__(items)
        self._what = what
        self._hint = hint

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(f"{self._what} cannot be added to, removed from or replaced; {self._hint}")

    append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse

    def __reduce__(self) -> tuple[Any, ...]:  # copies and pickles are plain lists, as for ParamGroup
        return list, (list(self),)
