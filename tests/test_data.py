"""fastopt.data (mini-batches, train/test split) and fastopt.datasets (bundled digits)."""
import numpy as np
import pytest

from fastopt.data import minibatches, num_batches, train_test_split
from fastopt.datasets import load_digits


def rows_of(n, width=3, dtype=np.float64):
    """n rows whose first column is the row number, so batches show where rows came from."""
    X = np.zeros((n, width), dtype=dtype)
    X[:, 0] = np.arange(n)
    return X


# ------------------------------------------------------------ minibatches
@pytest.mark.parametrize("n, batch_size, drop_last, sizes", [
    (10, 3, False, [3, 3, 3, 1]),
    (10, 3, True, [3, 3, 3]),
    (9, 3, True, [3, 3, 3]),
    (10, None, False, [10]),     # batch gradient descent
    (10, 10, True, [10]),
    (10, 25, False, [10]),       # larger than the data: one batch of everything
    (10, 25, True, []),          # ... which drop_last drops
    (4, 1, False, [1, 1, 1, 1]),  # stochastic gradient descent
])
@pytest.mark.parametrize("shuffle", [False, True])
def test_batch_sizes_and_coverage(n, batch_size, drop_last, sizes, shuffle):
    X, y = rows_of(n), np.arange(n) * 10
    batches = list(minibatches(X, y, batch_size=batch_size, shuffle=shuffle, seed=1, drop_last=drop_last))
    assert [len(xb) for xb, _ in batches] == sizes
    assert len(batches) == num_batches(n, batch_size, drop_last=drop_last)
    seen = np.concatenate([xb[:, 0] for xb, _ in batches] or [np.array([])]).astype(int)
    for xb, yb in batches:                       # rows stay aligned across arrays
        np.testing.assert_array_equal(yb, xb[:, 0] * 10)
    assert len(set(seen.tolist())) == len(seen)  # no row twice
    if not drop_last:
        assert sorted(seen.tolist()) == list(range(n))  # every row exactly once
    if not shuffle:
        assert seen.tolist() == list(range(len(seen)))


def test_unshuffled_batches_are_views():
    X, y = rows_of(7), np.arange(7)
    for xb, yb in minibatches(X, y, batch_size=3, shuffle=False):
        assert np.shares_memory(xb, X) and np.shares_memory(yb, y)
    next(minibatches(X, batch_size=3, shuffle=False))[0, 1] = 5.0
    assert X[0, 1] == 5.0


def test_shuffled_batches_are_new_contiguous_arrays():
    X = np.asfortranarray(rows_of(8))
    batches = list(minibatches(X, batch_size=3, seed=0))
    for xb in batches:
        assert not np.shares_memory(xb, X) and xb.flags.c_contiguous
    assert not any(np.shares_memory(a, b) for a, b in zip(batches, batches[1:]))


def test_reuse_buffers_overwrites_previous_batch():
    X = rows_of(10)
    it = minibatches(X, batch_size=4, seed=3, reuse_buffers=True)
    first = next(it)
    first_rows = first[:, 0].copy()
    second = next(it)
    assert np.shares_memory(first, second)
    np.testing.assert_array_equal(first, second)  # the same memory, now the second batch
    last = next(it)
    assert len(last) == 2 and np.shares_memory(last, first)
    covered = np.concatenate([first_rows, second[:, 0]])
    assert len(set(covered.tolist())) == 8
    reused = [b[:, 0].copy() for b in minibatches(X, batch_size=4, seed=3, reuse_buffers=True)]
    fresh = [b[:, 0] for b in minibatches(X, batch_size=4, seed=3)]
    for a, b in zip(reused, fresh):               # same order as without reuse
        np.testing.assert_array_equal(a, b)


def test_single_array_yields_arrays_and_many_arrays_yield_tuples():
    X, y, w = rows_of(5), np.arange(5), np.ones(5)
    assert all(isinstance(b, np.ndarray) for b in minibatches(X, batch_size=2))
    triples = list(minibatches(X, y, w, batch_size=2, seed=0))
    assert all(isinstance(t, tuple) and len(t) == 3 for t in triples)
    np.testing.assert_array_equal(np.concatenate([t[1] for t in triples]),
                                  np.concatenate([t[0][:, 0] for t in triples]))


def test_seed_determinism():
    X = rows_of(50)
    order = lambda **kw: np.concatenate(list(minibatches(X, batch_size=8, **kw)))[:, 0]
    np.testing.assert_array_equal(order(seed=7), order(seed=7))
    assert not np.array_equal(order(seed=7), order(seed=8))
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    epoch1, epoch2 = order(seed=rng_a), order(seed=rng_a)   # a Generator advances between epochs
    assert not np.array_equal(epoch1, epoch2)
    np.testing.assert_array_equal(epoch1, order(seed=rng_b))
    np.testing.assert_array_equal(epoch2, order(seed=rng_b))
    np.testing.assert_array_equal(order(seed=np.random.SeedSequence(7)), order(seed=np.random.SeedSequence(7)))
    assert sorted(order(seed=None).tolist()) == list(range(50))


def test_no_shuffle_leaves_generator_untouched():
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    list(minibatches(rows_of(5), batch_size=2, shuffle=False, seed=rng))
    assert rng.bit_generator.state == before


@pytest.mark.parametrize("array", [
    np.array(["a", "bb", "ccc", "d", "e"]),
    np.array([{"k": 1}, None, 3, "x", 5.0], dtype=object),
    np.arange(5, dtype=np.int8),
    np.zeros(5, dtype=[("a", "i4"), ("b", "f8")]),
    np.arange(5 * 2 * 3, dtype=np.complex64).reshape(5, 2, 3),
    np.array([True, False, True, True, False]),
])
@pytest.mark.parametrize("reuse", [False, True])
def test_any_dtype_and_ndim(array, reuse):
    batches = list(minibatches(array, batch_size=2, seed=0, reuse_buffers=reuse))
    gathered = [b.copy() for b in minibatches(array, batch_size=2, seed=0, reuse_buffers=reuse)]
    assert [b.dtype for b in batches] == [array.dtype] * 3
    assert [b.shape[1:] for b in batches] == [array.shape[1:]] * 3
    order = np.random.default_rng(0).permutation(5)
    np.testing.assert_array_equal(np.concatenate(gathered), array[order])


def test_array_likes_are_converted():
    batches = list(minibatches([[1, 2], [3, 4], [5, 6]], [0, 1, 0], batch_size=2, shuffle=False))
    np.testing.assert_array_equal(batches[0][0], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(batches[1][1], [0])


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((), {}, TypeError, "at least one array"),
    ((np.zeros((4, 2)), np.zeros(3)), {}, ValueError, "same length"),
    ((np.zeros((0, 2)),), {}, ValueError, "empty"),
    ((np.float64(3.0),), {}, ValueError, "0-d"),
    ((np.zeros(4), None), {}, TypeError, "None"),
    ((np.zeros(4), np.zeros(4), 2), {}, ValueError, "keyword-only"),   # a positional batch size
    ((np.zeros(4),), {"batch_size": 0}, ValueError, "positive"),
    ((np.zeros(4),), {"batch_size": -2}, ValueError, "positive"),
    ((np.zeros(4),), {"batch_size": 2.0}, TypeError, "integer"),
    ((np.zeros(4),), {"batch_size": True}, TypeError, "integer"),
    ((np.zeros(4),), {"shuffle": 1}, TypeError, "shuffle"),
    ((np.zeros(4),), {"drop_last": "yes"}, TypeError, "drop_last"),
    ((np.zeros(4),), {"seed": 1.5}, TypeError, "seed"),
    ((np.zeros(4),), {"seed": -1}, TypeError, "seed"),
    ((np.zeros(4),), {"seed": True}, TypeError, "seed"),
])
def test_bad_input_fails_at_the_call(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        minibatches(*args, **kwargs)  # no next(): checks run before the first batch


def test_numpy_integer_batch_size():
    assert [len(b) for b in minibatches(np.zeros(5), batch_size=np.int64(2), shuffle=False)] == [2, 2, 1]


def test_num_batches_checks():
    assert num_batches(1, 1) == 1
    with pytest.raises(ValueError):
        num_batches(0, 4)
    with pytest.raises(TypeError):
        num_batches(4.0, 2)


# ------------------------------------------------------- train_test_split
def test_split_partitions_rows():
    X, y = rows_of(20), np.arange(20)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, seed=0)
    assert (len(X_tr), len(X_te)) == (15, 5)
    np.testing.assert_array_equal(X_tr[:, 0], y_tr)
    np.testing.assert_array_equal(X_te[:, 0], y_te)
    assert sorted(np.concatenate([y_tr, y_te]).tolist()) == list(range(20))
    again = train_test_split(X, y, test_size=0.25, seed=0)
    np.testing.assert_array_equal(again[3], y_te)
    assert [len(p) for p in train_test_split(X, test_size=3, seed=1)] == [17, 3]
    assert [len(p) for p in train_test_split(X, test_size=0.01, seed=1)] == [19, 1]  # rounded up


def test_split_without_shuffle_gives_views():
    X = rows_of(10)
    X_tr, X_te = train_test_split(X, test_size=0.3, shuffle=False)
    assert np.shares_memory(X_tr, X) and np.shares_memory(X_te, X)
    assert X_te[:, 0].tolist() == [7, 8, 9]


def test_stratified_split_keeps_class_proportions():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    for seed in range(5):
        _, y_te = train_test_split(y, test_size=0.2, seed=seed, stratify=y)
        assert np.bincount(y_te).tolist() == [10, 6, 4]
    y = np.repeat(["a", "b", "c"], [5, 3, 2])       # fractional shares: 1.5, 0.9, 0.6 of 3 test rows
    _, y_te = train_test_split(y, test_size=3, seed=0, stratify=y)
    assert sorted(y_te.tolist()) == ["a", "b", "c"]  # floors 1, 0, 0; b and c lost the most to rounding


@pytest.mark.parametrize("kwargs, error", [
    ({"test_size": 0.0}, ValueError),
    ({"test_size": 1.0}, ValueError),
    ({"test_size": 10}, ValueError),
    ({"test_size": 0}, ValueError),
    ({"test_size": "half"}, TypeError),
    ({"stratify": np.zeros(3)}, ValueError),
    ({"shuffle": False, "stratify": np.zeros(10)}, ValueError),
])
def test_split_bad_input(kwargs, error):
    with pytest.raises(error):
        train_test_split(rows_of(10), **kwargs)


# ---------------------------------------------------------------- digits
def test_load_digits_facts():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 16 and np.array_equal(X, np.round(X))
    assert np.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert int(X.sum(dtype=np.int64)) == 561718
    assert y[:10].tolist() == list(range(10))
    assert int(X[0].sum()) == 294
    assert (X[:, 0] == 0).all()                  # the top-left pixel is never set


def test_load_digits_dtype_and_fresh_arrays():
    X64, _ = load_digits(np.float64)
    Xu8, _ = load_digits("uint8")
    assert X64.dtype == np.float64 and Xu8.dtype == np.uint8
    np.testing.assert_array_equal(X64, Xu8)
    X, y = load_digits()
    X[:] = -1
    y[:] = -1
    X2, y2 = load_digits()
    assert X2.min() == 0 and y2.min() == 0
    with pytest.raises(TypeError, match="dtype"):
        load_digits(np.complex128)
    with pytest.raises(TypeError, match="dtype"):
        load_digits(bool)
