import copy
import pickle

import ml_dtypes
import numpy as np
import pytest

from fastopt import ParamSet


def test_shapes_give_zeros_with_float64_default():
    ps = ParamSet({"W1": (3, 4), "b1": 4, "scale": ()})
    assert ps.dtype == np.float64
    assert ps.names == ("W1", "b1", "scale") and list(ps) == list(ps.names) and len(ps) == 3
    assert ps["W1"].shape == (3, 4) and ps["b1"].shape == (4,) and ps["scale"].shape == ()
    assert ps.size == 17 and ps.data.shape == (17,) and ps.grad.shape == (17,)
    assert ps.nbytes == 17 * 8
    assert not ps.data.any() and not ps.grad.any()


def test_arrays_are_copied_in_and_views_share_the_buffers():
    W = np.arange(6, dtype=np.float32).reshape(2, 3)
    ps = ParamSet({"W": W, "b": np.ones(3, dtype=np.float32)})
    assert ps.dtype == np.float32
    np.testing.assert_array_equal(ps["W"], W)
    assert not np.shares_memory(ps["W"], W)
    ps["W"][0, 0] = 42
    assert ps.data[0] == 42 and W[0, 0] == 0
    ps.grads["b"][:] = 5
    np.testing.assert_array_equal(ps.grad[6:9], 5)
    for view in (ps["W"], ps.grads["W"]):
        assert view.flags.writeable and view.flags.c_contiguous
    assert np.shares_memory(ps["b"], ps.data) and np.shares_memory(ps.grads["b"], ps.grad)


def test_item_assignment_copies_into_the_view():
    ps = ParamSet({"W": (2, 2)})
    view = ps["W"]
    ps["W"] = [[1, 2], [3, 4]]
    assert ps["W"] is view
    np.testing.assert_array_equal(view, [[1, 2], [3, 4]])
    ps.grads["W"] = 1.5
    np.testing.assert_array_equal(ps.grad, 1.5)
    with pytest.raises(ValueError):
        ps["W"] = np.ones(3)


def test_alignment_pads_every_tensor_to_a_cache_line():
    ps = ParamSet({"a": 3, "b": (2, 5), "c": 1}, dtype=np.float32, align=True)
    for name in ps:
        assert ps[name].__array_interface__["data"][0] % 64 == 0
        assert ps.grads[name].__array_interface__["data"][0] % 64 == 0
    assert ps.slices == {"a": slice(0, 3), "b": slice(16, 26), "c": slice(32, 33)}
    assert ps.size == 33 and not ps.data.any()


def test_buffers_start_on_a_cache_line_even_unaligned():
    for _ in range(5):
        ps = ParamSet({"a": 3, "b": 7}, dtype=np.float32)
        assert ps.data.__array_interface__["data"][0] % 64 == 0
        assert ps.grad.__array_interface__["data"][0] % 64 == 0
        assert ps.slices == {"a": slice(0, 3), "b": slice(3, 10)}


def test_explicit_dtype_converts_numeric_arrays():
    ps = ParamSet({"a": np.arange(3), "b": np.ones(2)}, dtype=np.float32)
    assert ps.dtype == np.float32
    np.testing.assert_array_equal(ps["a"], [0, 1, 2])


def test_pairs_and_zero_sized_tensors():
    ps = ParamSet([("a", 0), ("b", (0, 3)), ("c", [1.0, 2.0])])
    assert ps.size == 2 and ps["b"].shape == (0, 3)


def test_mapping_protocol_and_repr():
    ps = ParamSet({"w": 2, "b": 1})
    assert dict(ps.items()).keys() == {"w", "b"}
    assert "w" in ps and "z" not in ps
    assert repr(ps) == "ParamSet({'w': (2,), 'b': (1,)}, dtype=float64, size=3)"
    with pytest.raises(KeyError, match="no tensor 'z'"):
        ps["z"]
    with pytest.raises(KeyError, match="no tensor 'z'"):
        ps.grads["z"]


def test_zero_grad():
    ps = ParamSet({"w": 5})
    ps.grad[:] = 3
    ps.zero_grad()
    assert not ps.grad.any()


@pytest.mark.parametrize("spec, kwargs, error, match", [
    ([("a", 2), ("a", 3)], {}, ValueError, "duplicate tensor name 'a'"),
    ({"a": np.ones(2, np.float32), "b": np.ones(2)}, {}, TypeError, "mixed dtypes"),
    ({"a": np.arange(3)}, {}, TypeError, "pass dtype="),
    ({"a": ["x", "y"]}, {}, TypeError, "real numbers"),
    ({"a": np.ones(2, dtype=complex)}, {"dtype": np.float64}, TypeError, "real numbers"),
    ({"a": np.array([True])}, {"dtype": np.float64}, TypeError, "real numbers"),
    ({"a": object()}, {}, TypeError, "real numbers"),
    ({"a": (2, -1)}, {}, ValueError, "non-negative"),
    ({"a": 2}, {"dtype": np.int32}, TypeError, "float32, float64 or bfloat16"),
    ({"a": 2}, {"dtype": np.float16}, TypeError, "float32, float64 or bfloat16"),
    ({1: 2}, {}, TypeError, "non-empty strings"),
    ({"": 2}, {}, TypeError, "non-empty strings"),
    (42, {}, TypeError, "dict of shapes or arrays"),
    ([("a",)], {}, TypeError, r"\(name, value\) pairs"),
])
def test_bad_input(spec, kwargs, error, match):
    with pytest.raises(error, match=match):
        ParamSet(spec, **kwargs)


# --------------------------------------------------------------------------- bfloat16
BF16 = np.dtype(ml_dtypes.bfloat16)


def bits(array):
    return np.asarray(array).view(np.uint16)


def test_bfloat16_arrays_give_a_bfloat16_paramset():
    W = np.arange(6, dtype=BF16).reshape(2, 3)
    ps = ParamSet({"W": W, "b": np.ones(3, BF16)})
    assert ps.dtype == BF16 and ps.data.dtype == BF16 and ps.grad.dtype == BF16
    assert ps.nbytes == 9 * 2
    np.testing.assert_array_equal(bits(ps["W"]), bits(W))
    assert not np.shares_memory(ps["W"], W)
    assert np.shares_memory(ps["b"], ps.data) and np.shares_memory(ps.grads["b"], ps.grad)
    assert repr(ps) == "ParamSet({'W': (2, 3), 'b': (3,)}, dtype=bfloat16, size=9)"


@pytest.mark.parametrize("dtype", [ml_dtypes.bfloat16, BF16, "bfloat16"])
def test_bfloat16_dtype_spellings(dtype):
    assert ParamSet({"a": 2}, dtype=dtype).dtype == BF16


@pytest.mark.parametrize("source", [np.float32, np.float64])
def test_bfloat16_conversion_rounds_as_ml_dtypes_astype(source):
    # Ties to even both ways, the largest finite values, overflow to inf, subnormals, signed zero, NaN.
    f32 = np.array([0x3F808000, 0x3F818000, 0x3F80C000, 0x7F7FFFFF, 0x7F7F7FFF, 0x00008000, 0x00018000,
                    0x80000000, 0x7FC00001, 0xFF800000], np.uint32).view(np.float32)
    values = np.concatenate([f32, np.random.default_rng(0).standard_normal(100).astype(np.float32)])
    values = values.astype(source)
    with np.errstate(invalid="ignore"):
        expected = bits(values.astype(BF16))
        ps = ParamSet({"a": values}, dtype=BF16)  # copied in at construction
        np.testing.assert_array_equal(bits(ps["a"]), expected)
        ps.data[:] = 0
        ps["a"] = values                          # and by assignment
        np.testing.assert_array_equal(bits(ps["a"]), expected)
        ps.grads["a"] = values
        np.testing.assert_array_equal(bits(ps.grads["a"]), expected)
    assert bits(ps["a"])[0] == 0x3F80 and bits(ps["a"])[1] == 0x3F82  # ties go to the even neighbour


def test_bfloat16_alignment():
    ps = ParamSet({"a": 3, "b": (2, 5), "c": 1}, dtype=BF16, align=True)
    for name in ps:
        assert ps[name].__array_interface__["data"][0] % 64 == 0
        assert ps.grads[name].__array_interface__["data"][0] % 64 == 0
    assert ps.slices == {"a": slice(0, 3), "b": slice(32, 42), "c": slice(64, 65)}
    assert not bits(ps.data).any() and not bits(ps.grad).any()


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_bfloat16_copies_keep_dtype_bits_and_shared_views(how):
    ps = ParamSet({"W": (2, 3), "b": 3}, dtype=BF16, align=True)
    ps.data.view(np.uint16)[:] = np.arange(ps.size, dtype=np.uint16) * 257  # some NaN patterns among them
    ps.grad.view(np.uint16)[:] = np.arange(ps.size, dtype=np.uint16)
    copy_ = pickle.loads(pickle.dumps(ps)) if how == "pickle" else copy.deepcopy(ps)
    assert copy_.dtype == BF16 and copy_.slices == ps.slices and copy_.align
    np.testing.assert_array_equal(bits(copy_.data), bits(ps.data))
    np.testing.assert_array_equal(bits(copy_.grad), bits(ps.grad))
    assert np.shares_memory(copy_["b"], copy_.data) and not np.shares_memory(copy_.data, ps.data)


def test_pickles_of_older_versions_name_the_dtype_by_its_str():
    from fastopt.paramset import _rebuild
    ps = _rebuild([("a", (2,))], "<f4", False, np.ones(2, np.float32), np.zeros(2, np.float32))
    assert ps.dtype == np.float32 and ps["a"].tolist() == [1, 1]


def test_bfloat16_select():
    ps = ParamSet({"W1": (2, 2), "b1": 2, "W2": 3}, dtype=BF16)
    selection = ps.select(["W2", "W1"])
    assert selection.names == ("W1", "W2")
    assert selection.runs == [(slice(0, 4), ("W1",)), (slice(6, 9), ("W2",))]
    assert ps.data[selection.runs[1][0]].dtype == BF16


def test_bfloat16_arrays_convert_into_other_dtypes():
    ps = ParamSet({"a": np.array([1.5, -2.0], BF16)}, dtype=np.float32)
    assert ps.dtype == np.float32 and ps["a"].tolist() == [1.5, -2.0]


@pytest.mark.parametrize("spec, kwargs, match", [
    ({"a": np.ones(2, BF16), "b": np.ones(2, np.float32)}, {}, r"mixed dtypes \(a: bfloat16, b: float32\)"),
    ({"a": np.ones(2, np.float16)}, {}, "pass dtype=numpy.float32, numpy.float64 or ml_dtypes.bfloat16"),
    ({"a": 2}, {"dtype": np.float16}, "ParamSet dtype must be float32, float64 or bfloat16, got float16"),
    ({"a": np.ones(2, "V2")}, {"dtype": BF16}, r"'a' must be real numbers \(int, float or bfloat16\)"),
    ({"a": np.ones(2, complex)}, {"dtype": BF16}, "real numbers"),
])
def test_bfloat16_bad_input(spec, kwargs, match):
    with pytest.raises(TypeError, match=match):
        ParamSet(spec, **kwargs)
