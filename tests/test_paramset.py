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
    ({"a": 2}, {"dtype": np.int32}, TypeError, "float32 or float64"),
    ({"a": 2}, {"dtype": np.float16}, TypeError, "float32 or float64"),
    ({1: 2}, {}, TypeError, "non-empty strings"),
    ({"": 2}, {}, TypeError, "non-empty strings"),
    (42, {}, TypeError, "dict of shapes or arrays"),
    ([("a",)], {}, TypeError, r"\(name, value\) pairs"),
])
def test_bad_input(spec, kwargs, error, match):
    with pytest.raises(error, match=match):
        ParamSet(spec, **kwargs)
