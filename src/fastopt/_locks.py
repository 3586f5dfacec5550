"""Locks that serialize in-place updates of the same memory from several Python threads.

The kernels release the GIL, so two threads stepping one optimizer -- or two
optimizers over one ParamSet -- would otherwise interleave their reads and
writes of the same parameters and state (torn updates, lost step counts).
Every array is mapped to the object that owns its memory (a ParamSet's
buffer, an array's base, ...), and each owner gets one re-entrant lock,
shared by every optimizer that updates that memory.  An operation takes the
locks of all the owners it touches in one global order (by ``id``), so two
operations over overlapping sets of owners cannot deadlock.

The registry holds the locks weakly: a lock lives as long as some optimizer
holds it, and such an optimizer holds views of the owner, which keeps the
owner (and so its ``id``) alive.
"""
from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from fastopt._typing import Array

# id(memory owner) -> RLock
_registry: weakref.WeakValueDictionary[int, threading.RLock] = weakref.WeakValueDictionary()
_registry_guard = threading.Lock()


def memory_owner(array: object) -> object:
    """The object at the root of ``array``'s chain of bases: what owns its memory.

    The chain runs through ndarray bases, memoryviews (``np.frombuffer(a.data)``)
    and objects whose ``base`` is an array (what ``as_strided`` wraps).  Two
    mappings of one file (two ``np.memmap`` of the same path) are two owners.
    """
    obj = array
    base: object
    while True:
        if isinstance(obj, np.ndarray):
            base = obj.base
        elif isinstance(obj, memoryview):
            base = obj.obj
        else:
            base = getattr(obj, "base", None)
            if not isinstance(base, (np.ndarray, memoryview)):
                base = None
        if base is None:
            return obj
        obj = base


def lock_for(array: Array) -> threading.RLock:
    """The lock shared by every array whose memory has the same owner as ``array``'s."""
    owner = memory_owner(array)
    with _registry_guard:
        lock = _registry.get(id(owner))
        if lock is None:
            lock = _registry[id(owner)] = threading.RLock()
        return lock


def locks_for(arrays: Iterable[Array]) -> tuple[threading.RLock, ...]:
    """The distinct locks of ``arrays``, in the global acquisition order."""
    distinct = {id(lock): lock for lock in map(lock_for, arrays)}
    return tuple(distinct[key] for key in sorted(distinct))


def holding(arrays: Iterable[Array]) -> threading.RLock | Locked:
    """A context manager that holds the locks of ``arrays`` (one lock is its own, faster, manager)."""
    locks = locks_for(arrays)
    return locks[0] if len(locks) == 1 else Locked(locks)


class Locked:
    """Hold a tuple of locks (from :func:`locks_for`) for the duration of a ``with`` block."""

    __slots__ = ("locks",)

    def __init__(self, locks: tuple[threading.RLock, ...]) -> None:
        self.locks = locks

    def __enter__(self) -> Locked:
        taken = 0
        try:
            for lock in self.locks:
                lock.acquire()
                taken += 1
        except BaseException:  # a KeyboardInterrupt while waiting: let go of what was taken
            for lock in reversed(self.locks[:taken]):
                lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        for lock in reversed(self.locks):
            lock.release()
        return False
