"""Mini-batch iteration and a train/test split for arrays held in memory.

:func:`minibatches` walks once over one or more aligned arrays (rows of
``X``, the matching entries of ``y``, perhaps sample weights) in batches:
the whole set at once (batch gradient descent), one row at a time
(stochastic gradient descent), or anything between.  One call is one epoch;
call it again for the next.

Nothing is copied that need not be: without shuffling every batch is a
slice of the input (a view); with shuffling only the rows of the current
batch are gathered into a new array.  Randomness comes from a
:class:`numpy.random.Generator`, so a seed makes every order reproducible.

>>> import numpy as np
>>> from fastopt.data import minibatches
>>> X, y = np.arange(10.0).reshape(5, 2), np.arange(5)
>>> [yb.tolist() for _, yb in minibatches(X, y, batch_size=2, shuffle=False)]
[[0, 1], [2, 3], [4]]
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Union, overload

import numpy as np

from fastopt._validation import flag, integer, random_generator

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from fastopt._typing import Array

    # A source of randomness, as numpy.random.default_rng takes it.
    Seed = Union[None, int, np.integer[Any], np.random.SeedSequence, np.random.BitGenerator, np.random.Generator]

__all__ = ["minibatches", "num_batches", "train_test_split"]


@overload
def minibatches(array: ArrayLike, /, *, batch_size: int | None = ..., shuffle: bool = ..., seed: Seed = ...,
                drop_last: bool = ..., reuse_buffers: bool = ...) -> Iterator[Array]: ...
@overload
def minibatches(first: ArrayLike, second: ArrayLike, /, *arrays: ArrayLike, batch_size: int | None = ...,
                shuffle: bool = ..., seed: Seed = ..., drop_last: bool = ...,
                reuse_buffers: bool = ...) -> Iterator[tuple[Array, ...]]: ...
def minibatches(*arrays: ArrayLike, batch_size: int | None = 32, shuffle: bool = True, seed: Seed = None,
                drop_last: bool = False, reuse_buffers: bool = False) -> Iterator[Array] | Iterator[tuple[Array, ...]]:
    """Iterate once over aligned arrays in batches of rows.

    Parameters
    ----------
    *arrays : array_like
        One or more arrays with the same length along their first axis
        (``X``, or ``X, y``, or ``X, y, sample_weight`` ...), of any dtype
        and any number of dimensions (at least one).  NumPy arrays are used
        as they are; anything else goes through :func:`numpy.asarray`.
    batch_size : int or None, default 32
        Rows per batch (keyword-only, so that ``minibatches(X, y, 64)`` is an
        error rather than a third array).  ``None`` means the whole set in
        one batch (batch gradient descent); ``1`` gives single rows
        (stochastic gradient descent).  A batch size larger than the data
        gives one batch holding everything (none with ``drop_last``).
    shuffle : bool, default True
        Visit the rows in a fresh random order.  Otherwise in their order.
    seed : None, int, numpy.random.SeedSequence or numpy.random.Generator, optional
        Source of the shuffle, passed to :func:`numpy.random.default_rng`.
        An int or SeedSequence gives the same order on every call; a
        Generator is advanced, so passing one Generator to successive calls
        gives a different but reproducible order each epoch.  ``None``
        draws fresh entropy from the operating system (not reproducible).
        Ignored (and a Generator left untouched) when ``shuffle`` is False.
    drop_last : bool, default False
        Leave out the final batch when it is smaller than ``batch_size``.
    reuse_buffers : bool, default False
        Only matters with ``shuffle``: gather every batch into the same
        preallocated array per input instead of a new one.  This saves an
        allocation per batch, but a yielded batch is then **overwritten by
        the next one**: use it (or copy it) before asking for the next.

    Yields
    ------
    numpy.ndarray or tuple of numpy.ndarray
        The batch of the single array, or a tuple with the batch of each
        array, in the order given.  Without shuffling each batch is a view
        of its array (writing to it writes to the data); with shuffling it
        is a C-contiguous array of just the batch's rows.

    Raises
    ------
    TypeError
        No array given, an argument of the wrong type, or a ``None`` among
        the arrays.
    ValueError
        Arrays of different lengths, an empty or 0-d array, or a batch size
        below 1.  All checks happen at the call, before the first batch.

    See Also
    --------
    num_batches : how many batches one call yields.

    Examples
    --------
    >>> import numpy as np
    >>> X, y = np.arange(12.0).reshape(6, 2), np.arange(6)
    >>> for Xb, yb in minibatches(X, y, batch_size=4, seed=0):
    ...     print(Xb.shape, yb.shape)
    (4, 2) (4,)
    (2, 2) (2,)
    >>> np.shares_memory(next(minibatches(X, shuffle=False)), X)
    True
    """
    checked = _as_aligned_arrays(arrays, "minibatches()")
    n = len(checked[0])
    size = _batch_size(batch_size, n)
    shuffle = flag("shuffle", shuffle, ints=None)
    drop_last = flag("drop_last", drop_last, ints=None)
    reuse_buffers = flag("reuse_buffers", reuse_buffers, ints=None)
    if not shuffle:
        return _sliced(checked, size, drop_last)
    order = random_generator(seed).permutation(n)
    return _gathered(checked, order, size, drop_last, reuse_buffers)


def num_batches(n_samples: int | np.integer[Any], batch_size: int | None = 32, *, drop_last: bool = False) -> int:
    """How many batches :func:`minibatches` yields for ``n_samples`` rows.

    Parameters
    ----------
    n_samples : int
        Rows in the data (at least 1).
    batch_size : int or None, default 32
        As for :func:`minibatches`; ``None`` means one batch of everything.
    drop_last : bool, default False

    Returns
    -------
    int

    Examples
    --------
    >>> num_batches(10, 4), num_batches(10, 4, drop_last=True), num_batches(10, None)
    (3, 2, 1)
    """
    n = integer("n_samples", n_samples, low=1, too_small="at least 1")
    size = _batch_size(batch_size, n)
    full, rest = divmod(n, size)
    return full + (1 if rest and not flag("drop_last", drop_last, ints=None) else 0)


@overload
def train_test_split(array: ArrayLike, /, *, test_size: float | np.floating[Any] | np.integer[Any] = ...,
                     shuffle: bool = ..., seed: Seed = ..., stratify: ArrayLike | None = ...) -> tuple[Array, Array]: ...
@overload
def train_test_split(first: ArrayLike, second: ArrayLike, /, *arrays: ArrayLike,
                     test_size: float | np.floating[Any] | np.integer[Any] = ..., shuffle: bool = ...,
                     seed: Seed = ..., stratify: ArrayLike | None = ...) -> tuple[Array, ...]: ...
def train_test_split(*arrays: ArrayLike, test_size: float | np.floating[Any] | np.integer[Any] = 0.25,
                     shuffle: bool = True, seed: Seed = None, stratify: ArrayLike | None = None) -> tuple[Array, ...]:
    """Split aligned arrays into a training part and a test part.

    Parameters
    ----------
    *arrays : array_like
        One or more arrays with the same length along their first axis.
    test_size : float or int, default 0.25
        A fraction in (0, 1) of the rows (rounded up to whole rows), or a
        number of rows.  Both parts must get at least one row.
    shuffle : bool, default True
        Assign rows at random.  Otherwise the last ``test_size`` rows form
        the test part and both parts are views (slices) of the input.
    seed : None, int, numpy.random.SeedSequence or numpy.random.Generator, optional
        Source of the shuffle, as for :func:`minibatches` (``None`` draws
        fresh entropy).
    stratify : array_like, optional
        Class labels, one per row (usually ``y``).  Each class then goes to
        the test part in the proportion ``test_size`` asks for, as nearly as
        whole rows allow (leftover rows go to the classes whose share was
        rounded down the most), so rare classes are not left out by chance.
        Needs ``shuffle``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(a_train, a_test, b_train, b_test, ...)``: the two parts of each
        array in turn.  With shuffling, the parts are new arrays whose rows
        come in random order.

    Examples
    --------
    >>> import numpy as np
    >>> X, y = np.arange(20.0).reshape(10, 2), np.array([0] * 6 + [1] * 4)
    >>> X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, seed=0, stratify=y)
    >>> X_train.shape, X_test.shape, np.bincount(y_test).tolist()
    ((5, 2), (5, 2), [3, 2])
    """
    checked = _as_aligned_arrays(arrays, "train_test_split()")
    n = len(checked[0])
    n_test = _test_count(test_size, n)
    if not flag("shuffle", shuffle, ints=None):
        if stratify is not None:
            raise ValueError("stratify needs shuffle=True")
        cut = n - n_test
        return tuple(part for a in checked for part in (a[:cut], a[cut:]))
    rng = random_generator(seed)
    order = rng.permutation(n)
    if stratify is None:
        test, train = order[:n_test], order[n_test:]
    else:
        in_test = _stratified_test_mask(stratify, order, n_test)
        test, train = order[in_test], order[~in_test]
    return tuple(part for a in checked for part in (np.take(a, train, axis=0), np.take(a, test, axis=0)))


# ---------------------------------------------------------------- iteration
def _sliced(arrays: Sequence[Array], size: int, drop_last: bool) -> Iterator[Any]:
    n = len(arrays[0])
    stop = n - n % size if drop_last else n
    single = len(arrays) == 1
    for start in range(0, stop, size):
        batch = tuple(a[start:start + size] for a in arrays)
        yield batch[0] if single else batch


def _gathered(arrays: Sequence[Array], order: Array, size: int, drop_last: bool,
              reuse_buffers: bool) -> Iterator[Any]:
    n = len(order)
    stop = n - n % size if drop_last else n
    single = len(arrays) == 1
    buffers = [np.empty((min(size, n),) + a.shape[1:], dtype=a.dtype) for a in arrays] if reuse_buffers else None
    for start in range(0, stop, size):
        rows = order[start:start + size]
        if buffers is None:
            batch = tuple(np.take(a, rows, axis=0) for a in arrays)
        else:
            # The indices come from a permutation, so they are in range: "clip" skips
            # the bounds check and the extra copy that mode="raise" makes with out=.
            batch = tuple(np.take(a, rows, axis=0, out=buf[:len(rows)], mode="clip")
                          for a, buf in zip(arrays, buffers))
        yield batch[0] if single else batch


# --------------------------------------------------------------- validation
def _as_aligned_arrays(arrays: Sequence[Any], where: str) -> list[Array]:
    if not arrays:
        raise TypeError(f"{where} needs at least one array")
    converted = []
    for i, a in enumerate(arrays):
        if a is None:
            raise TypeError(f"{where}: array {i} is None; pass only the arrays to iterate over "
                            "(minibatches(X) yields batches of X alone)")
        a = a if isinstance(a, np.ndarray) else np.asarray(a)
        if a.ndim == 0:
            hint = ""
            if i and isinstance(arrays[i], (int, np.integer)):
                hint = f" (batch_size is keyword-only: batch_size={arrays[i]})"
            raise ValueError(f"{where}: array {i} is 0-d; arrays need a first axis of samples{hint}")
        converted.append(a)
    lengths = [len(a) for a in converted]
    if len(set(lengths)) != 1:
        raise ValueError(f"{where}: the arrays must have the same length (first dimension), got {lengths}")
    if lengths[0] == 0:
        raise ValueError(f"{where}: the arrays are empty (0 samples)")
    return converted


def _batch_size(batch_size: int | None, n: int) -> int:
    if batch_size is None:
        return n
    return integer("batch_size", batch_size, low=1, too_small="a positive integer or None")


def _test_count(test_size: object, n: int) -> int:
    if isinstance(test_size, (float, np.floating)):
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size as a fraction must lie in (0, 1), got {test_size}")
        n_test = int(np.ceil(test_size * n))
    else:
        try:
            n_test = integer("test_size", test_size)
        except TypeError:
            raise TypeError(f"test_size must be a fraction (float) or a number of rows (int), "
                            f"got {test_size!r}") from None
    if not 1 <= n_test <= n - 1:
        raise ValueError(f"test_size={test_size!r} puts {n_test} of {n} rows in the test part; "
                         "both parts need at least one row")
    return n_test


def _stratified_test_mask(stratify: ArrayLike, order: Array, n_test: int) -> Array:
    """Which positions of ``order`` go to the test part, class by class."""
    labels = np.asarray(stratify)
    n = len(order)
    if labels.shape != (n,):
        raise ValueError(f"stratify must hold one label per row, shape ({n},), got shape {labels.shape}")
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    codes = codes.reshape(-1)[order]              # class of each shuffled row
    share = counts * (n_test / n)                 # ideal test rows per class
    quota = np.floor(share).astype(np.intp)
    short = n_test - int(quota.sum())             # rows still to hand out
    quota[np.argsort(quota - share, kind="stable")[:short]] += 1
    grouped = np.argsort(codes, kind="stable")    # shuffled rows, class by class
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(n) - first[codes[grouped]]   # position of each row within its class
    in_test = np.zeros(n, dtype=bool)
    in_test[grouped[rank < quota[codes[grouped]]]] = True
    return in_test
