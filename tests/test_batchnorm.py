"""Batch normalization: kernels against a NumPy reference, finite differences and torch."""
import numpy as np
import pytest

import fastopt
from fastopt.nn import BatchNorm, BatchNormCache, batch_norm_backward, batch_norm_forward
from fastopt.nn import _batchnorm

DTYPES = [np.float32, np.float64]
# Odd sizes; (67, 5) packs 12 (float32) or 6 (float64) rows per segment with a ragged rest, (67, 70) needs
# column tiles, and (2, 2, 2500) float64 splits planes into pieces.
SMALL_SHAPES = [(2, 1), (3, 3), (7, 7), (67, 5), (67, 70), (5, 3, 5), (2, 7, 1, 1), (4, 3, 1, 5), (3, 7, 2, 3),
                (6, 1, 5, 1), (7, 3, 4, 4), (2, 2, 2500)]
# Shapes whose work is split over several threads, in both layouts (rows: S == 1; planes: S > 1),
# with ragged last tiles / planes.
THREADED_SHAPES = [((4000, 70), np.float32), ((1500, 100), np.float64), ((100000, 3), np.float32),
                   ((64, 16, 32, 32), np.float32), ((9, 5, 65, 67), np.float64), ((3, 6, 30000), np.float32)]


# --------------------------------------------------------------------------
# Reference (plain NumPy, float64)
# --------------------------------------------------------------------------
def _axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v, x):
    return np.asarray(v, dtype=np.float64).reshape((1, -1) + (1,) * (x.ndim - 2))


def ref_forward(x, weight=None, bias=None, running_mean=None, running_var=None, training=True, momentum=0.1,
                eps=1e-5):
    """Return y, mean, inv_std, new running mean, new running var (all float64)."""
    x = x.astype(np.float64)
    c = x.shape[1]
    n = x.size // c if c else 0
    if training:
        mean = x.mean(axis=_axes(x))
        var = ((x - _per_channel(mean, x)) ** 2).mean(axis=_axes(x))
        new_rm = new_rv = None
        if running_mean is not None:
            new_rm = (1 - momentum) * running_mean.astype(np.float64) + momentum * mean
            new_rv = (1 - momentum) * running_var.astype(np.float64) + momentum * var * n / (n - 1)
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
        new_rm, new_rv = mean, var
    inv_std = 1.0 / np.sqrt(var + eps)
    w = np.ones(c) if weight is None else weight
    b = np.zeros(c) if bias is None else bias
    y = (x - _per_channel(mean, x)) * _per_channel(inv_std * w, x) + _per_channel(b, x)
    return y, mean, inv_std, new_rm, new_rv


def ref_backward(dy, x, weight, mean, inv_std, training):
    """Return dx, dweight, dbias (float64)."""
    dy, x = dy.astype(np.float64), x.astype(np.float64)
    c = x.shape[1]
    n = x.size // c if c else 0
    w = np.ones(c) if weight is None else weight.astype(np.float64)
    x_hat = (x - _per_channel(mean, x)) * _per_channel(inv_std, x)
    dbias = dy.sum(axis=_axes(x))
    dweight = (dy * x_hat).sum(axis=_axes(x))
    if training:
        dx = _per_channel(w * inv_std / n, x) * (n * dy - _per_channel(dbias, x) - x_hat * _per_channel(dweight, x))
    else:
        dx = dy * _per_channel(w * inv_std, x)
    return dx, dweight, dbias


def make(shape, dtype, rng, offset=0.5, scale=2.0):
    c = shape[1]
    x = (offset + scale * rng.standard_normal(shape)).astype(dtype)
    w = rng.uniform(0.5, 1.5, c).astype(dtype)
    b = rng.standard_normal(c).astype(dtype)
    rm = rng.standard_normal(c).astype(dtype)
    rv = rng.uniform(0.5, 2.0, c).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, w, b, rm, rv, dy


def close(actual, expected, dtype, rtol64=1e-12, rtol32=2e-6, scale=None):
    """Compare with a tolerance relative to ``scale``, by default the largest reference value."""
    expected = np.asarray(expected, dtype=np.float64)
    rtol = rtol32 if np.dtype(dtype) == np.float32 else rtol64
    if scale is None:
        scale = np.max(np.abs(expected)) if expected.size else 1.0
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=rtol, atol=rtol * scale)


def dx_scale(dy, x, weight, inv_std):
    """Size of the terms dx is the difference of: dx itself can be tiny (N' = 2 makes it ~0)."""
    w = np.ones(x.shape[1]) if weight is None else weight
    return np.max(np.abs(dy * _per_channel(w * inv_std, x)), initial=0.0)


def run_both(x, w, b, rm, rv, dy, training=True, momentum=0.1, eps=1e-5):
    y, cache = batch_norm_forward(x, w, b, rm, rv, training=training, momentum=momentum, eps=eps)
    dx, dw, db = batch_norm_backward(dy, cache)
    return y, cache, dx, dw, db


# --------------------------------------------------------------------------
# Against the reference
# --------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SMALL_SHAPES, ids=str)
def test_training_matches_reference(shape, dtype, rng):
    x, w, b, rm, rv, dy = make(shape, dtype, rng)
    rm0, rv0 = rm.copy(), rv.copy()
    y, cache, dx, dw, db = run_both(x, w, b, rm, rv, dy)
    ry, mean, inv_std, new_rm, new_rv = ref_forward(x, w, b, rm0, rv0)
    rdx, rdw, rdb = ref_backward(dy, x, w, mean, inv_std, True)
    assert y.dtype == dx.dtype == dw.dtype == db.dtype == dtype and y.shape == dx.shape == shape
    assert cache.mean.dtype == cache.inv_std.dtype == np.float64 and cache.x is x and cache.training
    close(y, ry, dtype)
    close(cache.mean, mean, dtype, rtol32=1e-12)  # float32 data, float64 statistics
    close(cache.inv_std, inv_std, dtype, rtol32=1e-12)
    close(rm, new_rm, dtype)
    close(rv, new_rv, dtype)
    close(dx, rdx, dtype, rtol64=1e-11, rtol32=1e-5, scale=dx_scale(dy, x, w, inv_std))
    close(dw, rdw, dtype, rtol32=1e-6)
    close(db, rdb, dtype, rtol32=1e-6)


@pytest.mark.parametrize("shape", [(2, 1), (7, 3), (3, 7, 2, 3), (4, 3, 5)], ids=str)
def test_eval_matches_reference(shape, dtype, rng):
    x, w, b, rm, rv, dy = make(shape, dtype, rng)
    rm0, rv0 = rm.copy(), rv.copy()
    y, cache, dx, dw, db = run_both(x, w, b, rm, rv, dy, training=False)
    ry, mean, inv_std, _, _ = ref_forward(x, w, b, rm0, rv0, training=False)
    rdx, rdw, rdb = ref_backward(dy, x, w, mean, inv_std, False)
    np.testing.assert_array_equal(rm, rm0)  # untouched
    np.testing.assert_array_equal(rv, rv0)
    assert not cache.training
    close(y, ry, dtype)
    close(dx, rdx, dtype)
    close(dw, rdw, dtype, rtol32=1e-6)
    close(db, rdb, dtype, rtol32=1e-6)


def test_eval_with_one_value_per_channel_and_read_only_inputs(rng):
    x, w, b, rm, rv, dy = make((1, 4), np.float64, rng)
    for a in (x, w, b, rm, rv, dy):
        a.flags.writeable = False
    y, cache = batch_norm_forward(x, w, b, rm, rv, training=False)
    close(y, ref_forward(x, w, b, rm, rv, training=False)[0], np.float64)
    dx, dw, db = batch_norm_backward(dy, cache)
    close(dx, ref_backward(dy, x, w, rm, 1 / np.sqrt(rv + 1e-5), False)[0], np.float64)


def test_training_with_read_only_inputs(rng):
    x, w, b, rm, rv, dy = make((3, 4, 5), np.float32, rng)
    for a in (x, w, b, dy):
        a.flags.writeable = False
    y, cache, dx, dw, db = run_both(x, w, b, rm, rv, dy)
    close(y, ref_forward(x, w, b)[0], np.float32)


def test_large_batch_matches_reference(rng):
    x, w, b, rm, rv, dy = make((64, 16, 32, 32), np.float32, rng)
    rm0, rv0 = rm.copy(), rv.copy()
    y, cache, dx, dw, db = run_both(x, w, b, rm, rv, dy)
    ry, mean, inv_std, new_rm, new_rv = ref_forward(x, w, b, rm0, rv0)
    rdx, rdw, rdb = ref_backward(dy, x, w, mean, inv_std, True)
    close(cache.mean, mean, np.float32, rtol32=1e-12)
    close(cache.inv_std, inv_std, np.float32, rtol32=1e-12)
    close(y, ry, np.float32)
    close(rm, new_rm, np.float32)
    close(rv, new_rv, np.float32)
    close(dx, rdx, np.float32, rtol32=1e-5)
    close(dw, rdw, np.float32, rtol32=1e-6)
    close(db, rdb, np.float32, rtol32=1e-6)


@pytest.mark.parametrize("shape", [(4096, 2), (16, 3, 70, 70)], ids=str)
def test_large_offset_keeps_precision(shape, rng):
    """x = 1e4 + noise in float32: statistics and output keep the noise's precision."""
    x = (1e4 + rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    y, cache = batch_norm_forward(x)
    dx, _, _ = batch_norm_backward(dy, cache)
    ry, mean, inv_std, _, _ = ref_forward(x)
    rdx, _, _ = ref_backward(dy, x, None, mean, inv_std, True)
    np.testing.assert_allclose(cache.mean, mean, rtol=1e-14)
    np.testing.assert_allclose(cache.inv_std, inv_std, rtol=1e-9)
    np.testing.assert_allclose(y, ry, rtol=0, atol=2e-6)  # y is O(1): a few float32 ulps
    np.testing.assert_allclose(dx, rdx, rtol=0, atol=2e-5)


def test_float32_statistics_accumulate_in_double(rng):
    # 2**20 values of one channel: a float32 running sum would be off by ~1e-4 relative.
    x = (3.0 + 0.01 * rng.standard_normal((1, 1, 2**20))).astype(np.float32)
    _, cache = batch_norm_forward(x)
    np.testing.assert_allclose(cache.mean, x.astype(np.float64).mean(), rtol=1e-13)
    np.testing.assert_allclose(cache.inv_std, 1 / np.sqrt(x.astype(np.float64).var() + 1e-5), rtol=1e-10)


# --------------------------------------------------------------------------
# Running statistics, affine variants, outputs
# --------------------------------------------------------------------------
@pytest.mark.parametrize("momentum", [0.0, 0.1, 0.5, 1.0])
def test_running_statistics_update(momentum, dtype, rng):
    x, w, b, rm, rv, _ = make((5, 3, 2, 2), dtype, rng)
    rm0, rv0 = rm.copy(), rv.copy()
    batch_norm_forward(x, w, b, rm, rv, momentum=momentum)
    _, _, _, new_rm, new_rv = ref_forward(x, w, b, rm0, rv0, momentum=momentum)
    close(rm, new_rm, dtype)
    close(rv, new_rv, dtype)
    if momentum == 0.0:
        np.testing.assert_array_equal(rm, rm0)
    if momentum == 1.0:  # the batch mean and the unbiased batch variance
        xs = x.astype(np.float64).transpose(1, 0, 2, 3).reshape(3, -1)
        close(rm, xs.mean(axis=1), dtype)
        close(rv, xs.var(axis=1, ddof=1), dtype)


@pytest.mark.parametrize("has_weight,has_bias", [(False, False), (True, False), (False, True)])
def test_optional_weight_and_bias(has_weight, has_bias, dtype, rng):
    x, w, b, rm, rv, dy = make((6, 3, 5), dtype, rng)
    w, b = (w if has_weight else None), (b if has_bias else None)
    y, cache, dx, dw, db = run_both(x, w, b, None, None, dy)
    ry, mean, inv_std, _, _ = ref_forward(x, w, b)
    rdx, rdw, rdb = ref_backward(dy, x, w, mean, inv_std, True)
    close(y, ry, dtype)
    close(dx, rdx, dtype, rtol64=1e-11, rtol32=1e-5, scale=dx_scale(dy, x, w, inv_std))
    assert (dw is None) == (not has_weight) and (db is None) == (not has_bias)
    if has_weight:
        close(dw, rdw, dtype, rtol32=1e-6)
    if has_bias:
        close(db, rdb, dtype, rtol32=1e-6)


def test_outputs_written_in_place_and_accumulated(rng):
    x, w, b, rm, rv, dy = make((4, 3, 5), np.float64, rng)
    out = np.full_like(x, np.nan)
    y, cache = batch_norm_forward(x, w, b, rm, rv, out=out)
    assert y is out
    ps = fastopt.ParamSet({"w": w, "b": b})
    dx_new, dw_new, db_new = batch_norm_backward(dy, cache)
    dx, dw, db = batch_norm_backward(dy, cache, dweight_out=ps.grads["w"], dbias_out=ps.grads["b"])
    assert dw is ps.grads["w"] and db is ps.grads["b"]
    np.testing.assert_array_equal(ps.grad, np.concatenate([dw_new, db_new]))
    np.testing.assert_array_equal(dx, dx_new)
    batch_norm_backward(dy, cache, dweight_out=ps.grads["w"], dbias_out=ps.grads["b"], accumulate=True)
    np.testing.assert_array_equal(ps.grads["w"], dw_new + dw_new)
    np.testing.assert_array_equal(ps.grads["b"], db_new + db_new)
    # Only one of the two given: the other is new, and still just this call's gradient.
    _, dw2, db2 = batch_norm_backward(dy, cache, dbias_out=ps.grads["b"], accumulate=True)
    np.testing.assert_array_equal(dw2, dw_new)
    np.testing.assert_array_equal(ps.grads["b"], 3 * db_new)
    # dx may overwrite dy itself.
    g = dy.copy()
    dx_inplace, _, _ = batch_norm_backward(g, cache, dx_out=g)
    assert dx_inplace is g
    np.testing.assert_array_equal(g, dx_new)


def test_empty_and_degenerate_shapes(dtype, rng):
    # No channels.
    x = np.zeros((4, 0, 3), dtype=dtype)
    rm, rv = np.zeros(0, dtype), np.ones(0, dtype)
    y, cache = batch_norm_forward(x, np.ones(0, dtype), np.zeros(0, dtype), rm, rv)
    dx, dw, db = batch_norm_backward(np.zeros_like(x), cache)
    assert y.shape == dx.shape == (4, 0, 3) and dw.shape == db.shape == (0,)
    # No values per channel, evaluation mode: empty output, zero parameter gradients.
    for shape in [(0, 3), (2, 3, 0)]:
        x = np.zeros(shape, dtype=dtype)
        w, b, rm, rv = (np.ones(3, dtype) for _ in range(4))
        y, cache = batch_norm_forward(x, w, b, rm, rv, training=False)
        dw_out = np.full(3, 7, dtype)
        dx, dw, db = batch_norm_backward(np.zeros_like(x), cache, dweight_out=dw_out)
        assert y.shape == dx.shape == shape
        np.testing.assert_array_equal(dw, 0)
        np.testing.assert_array_equal(db, 0)
    # A constant channel: zero variance, output = bias, finite gradients.
    x = np.full((5, 2), 3.0, dtype=dtype)
    y, cache = batch_norm_forward(x, np.ones(2, dtype), np.full(2, 0.25, dtype))
    np.testing.assert_array_equal(y, 0.25)
    dx, dw, db = batch_norm_backward(np.ones_like(x), cache)
    assert np.isfinite(dx).all() and np.isfinite(dw).all()


def test_non_finite_values_propagate_per_channel(dtype, rng):
    x, w, b, rm, rv, dy = make((6, 3, 4), dtype, rng)
    x[2, 1, 3] = np.nan
    y, cache = batch_norm_forward(x, w, b, rm, rv)
    dx, dw, db = batch_norm_backward(dy, cache)
    assert np.isnan(y[:, 1]).all() and np.isfinite(y[:, [0, 2]]).all()
    assert np.isnan(rm[1]) and np.isnan(rv[1]) and np.isfinite(rm[[0, 2]]).all()
    assert np.isnan(dx[:, 1]).all() and np.isfinite(dx[:, [0, 2]]).all()
    assert np.isnan(dw[1]) and np.isfinite(db).all()


# --------------------------------------------------------------------------
# Threads: the same bits for any count
# --------------------------------------------------------------------------
@pytest.mark.parametrize("shape,dtype", THREADED_SHAPES, ids=str)
def test_same_bits_for_any_thread_count(shape, dtype, rng):
    x, w, b, rm, rv, dy = make(shape, dtype, rng)
    n, c = shape[0], shape[1]
    s = int(np.prod(shape[2:], dtype=np.int64))
    assert _batchnorm.layout(n, c, s, np.dtype(dtype).itemsize, 3)["threads"] > 1  # really split
    results = []
    for threads in (1, 2, 3):
        with fastopt.threads(threads):
            r = []
            for training in (True, False):
                rm_t, rv_t = rm.copy(), rv.copy()
                y, cache, dx, dw, db = run_both(x, w, b, rm_t, rv_t, dy, training=training)
                r += [y, cache.mean, cache.inv_std, rm_t, rv_t, dx, dw, db]
            results.append(r)
    for other in results[1:]:
        for a, b_ in zip(results[0], other):
            np.testing.assert_array_equal(a, b_)


def test_layout_choice():
    # (N, C): packed rows for C up to 256 bytes of elements, else column tiles of equal width.
    packed = _batchnorm.layout(128, 3, 1, 4, 2)
    assert packed["rows"] and packed["packed_rows"] == 21 and packed["tile_width"] == 63
    assert packed["tile_rows"] % 21 == 0 and packed["threads"] == 1  # small: no OpenMP region
    tiles = _batchnorm.layout(20000, 70, 1, 4, 3)
    assert tiles["packed_rows"] == 0 and tiles["tile_width"] == 35 and tiles["threads"] == 3
    assert _batchnorm.layout(64, 64, 1, 8, 2)["tile_width"] == 32
    # (N, C, S > 1): one task per channel, at most one thread per channel.
    planes = _batchnorm.layout(64, 16, 1024, 4, 8)
    assert not planes["rows"] and planes["tasks"] == 16 and planes["threads"] == 8
    assert _batchnorm.layout(1000, 2, 50, 8, 8)["threads"] == 2


# --------------------------------------------------------------------------
# Finite differences (float64)
# --------------------------------------------------------------------------
def _numeric_grad(f, arr, h=1e-6):
    g = np.empty(arr.shape)
    flat, gf = arr.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + h
        up = f()
        flat[i] = keep - h
        down = f()
        flat[i] = keep
        gf[i] = (up - down) / (2 * h)
    return g


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 2, 3)], ids=str)
@pytest.mark.parametrize("training", [True, False])
def test_gradients_match_finite_differences(shape, training, rng):
    x, w, b, rm, rv, _ = make(shape, np.float64, rng)
    r = rng.standard_normal(shape)

    def loss():
        y, _ = batch_norm_forward(x, w, b, rm.copy(), rv.copy(), training=training)
        return float(np.sum(y * r))

    _, cache = batch_norm_forward(x, w, b, rm.copy(), rv.copy(), training=training)
    dx, dw, db = batch_norm_backward(r, cache)
    for analytic, arr in ((dx, x), (dw, w), (db, b)):
        np.testing.assert_allclose(analytic, _numeric_grad(loss, arr), rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------
# torch
# --------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(7, 3), (2, 1), (5, 4, 6), (3, 5, 4, 7), (64, 16, 8, 8), (700, 70)], ids=str)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_matches_torch_float64(shape, training, affine, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w, b, rm, rv, dy = make(shape, np.float64, rng)
    if not affine:
        w = b = None
    t_x = torch.tensor(x, requires_grad=True)
    t_w = torch.tensor(w, requires_grad=True) if affine else None
    t_b = torch.tensor(b, requires_grad=True) if affine else None
    t_rm, t_rv = torch.tensor(rm), torch.tensor(rv)
    t_y = F.batch_norm(t_x, t_rm, t_rv, t_w, t_b, training=training, momentum=0.1, eps=1e-5)
    t_y.backward(torch.tensor(dy))
    y, cache, dx, dw, db = run_both(x, w, b, rm, rv, dy, training=training)
    np.testing.assert_allclose(y, t_y.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rm, t_rm.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(rv, t_rv.numpy(), rtol=1e-10, atol=1e-13)
    scale = np.abs(t_x.grad.numpy()).max()
    np.testing.assert_allclose(dx, t_x.grad.numpy(), rtol=1e-10, atol=1e-10 * scale)
    if affine:
        np.testing.assert_allclose(dw, t_w.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(db, t_b.grad.numpy(), rtol=1e-10, atol=1e-12)
    else:
        assert dw is None and db is None


def test_matches_torch_float32(rng):
    torch = pytest.importorskip("torch")
    x, w, b, rm, rv, dy = make((8, 6, 5, 5), np.float32, rng)
    t_x, t_w, t_b = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    t_rm, t_rv = torch.tensor(rm), torch.tensor(rv)
    torch.nn.functional.batch_norm(t_x, t_rm, t_rv, t_w, t_b, training=True).backward(torch.tensor(dy))
    y, cache, dx, dw, db = run_both(x, w, b, rm, rv, dy)
    close(rm, t_rm.numpy(), np.float32)
    close(rv, t_rv.numpy(), np.float32)
    close(dx, t_x.grad.numpy(), np.float32, rtol32=2e-5)
    close(dw, t_w.grad.numpy(), np.float32, rtol32=1e-5)


def test_layer_matches_torch_module_over_several_steps(rng):
    torch = pytest.importorskip("torch")
    for momentum in (0.1, None):
        ours = BatchNorm(4, momentum=momentum, dtype=np.float64)
        theirs = torch.nn.BatchNorm2d(4, momentum=momentum, dtype=torch.float64)
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(rng.uniform(0.5, 1.5, 4)))
            theirs.bias.copy_(torch.tensor(rng.standard_normal(4)))
        ours.weight[:] = theirs.weight.detach().numpy()
        ours.bias[:] = theirs.bias.detach().numpy()
        for step in range(3):
            x = rng.standard_normal((3, 4, 5, 2)) * (step + 1)
            dy = rng.standard_normal(x.shape)
            t_x = torch.tensor(x, requires_grad=True)
            theirs.weight.grad = theirs.bias.grad = None
            t_y = theirs(t_x)
            t_y.backward(torch.tensor(dy))
            y = ours.forward(x)
            dx = ours.backward(dy)
            np.testing.assert_allclose(y, t_y.detach().numpy(), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(dx, t_x.grad.numpy(), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(ours.dweight, theirs.weight.grad.numpy(), rtol=1e-10)
            np.testing.assert_allclose(ours.dbias, theirs.bias.grad.numpy(), rtol=1e-10)
            np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-10)
            np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-10)
        assert ours.num_batches_tracked == int(theirs.num_batches_tracked) == 3
        theirs.eval()
        x = rng.standard_normal((2, 4, 3, 3))
        np.testing.assert_allclose(ours.eval().forward(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10)


# --------------------------------------------------------------------------
# Layer
# --------------------------------------------------------------------------
def test_layer_with_paramset_writes_gradients_into_it(rng):
    ps = fastopt.ParamSet({"conv": (5,), "bn.weight": np.ones(3), "bn.bias": np.zeros(3)}, dtype=np.float32)
    bn = BatchNorm.from_paramset(ps, "bn.weight", "bn.bias")
    assert bn.weight.base is not None and np.shares_memory(bn.weight, ps.data)
    assert bn.dtype == np.float32 and bn.num_features == 3 and bn.training
    x, _, _, _, _, dy = make((4, 3, 2, 2), np.float32, rng)
    y = bn(x)
    dx = bn.backward(dy)
    y_ref, cache = batch_norm_forward(x, ps["bn.weight"], ps["bn.bias"], np.zeros(3, np.float32),
                                      np.ones(3, np.float32))
    dx_ref, dw_ref, db_ref = batch_norm_backward(dy, cache)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(dx, dx_ref)
    np.testing.assert_array_equal(ps.grads["bn.weight"], dw_ref)
    np.testing.assert_array_equal(ps.grads["bn.bias"], db_ref)
    np.testing.assert_array_equal(ps.grads["conv"], 0)
    # An optimizer step moves the layer's parameters.
    fastopt.SGD(ps, lr=0.1).step()
    np.testing.assert_allclose(bn.bias, -0.1 * db_ref, rtol=1e-6)


def test_layer_modes_and_options(rng):
    x, _, _, _, _, dy = make((6, 2, 3), np.float64, rng)
    bn = BatchNorm(2, dtype=np.float64)
    assert repr(bn).startswith("BatchNorm(2,")
    with pytest.raises(RuntimeError, match="before forward"):
        bn.backward(dy)
    bn.forward(x)
    rm = bn.running_mean.copy()
    y_eval = bn.forward(x, training=False)  # per-call override; running statistics untouched
    np.testing.assert_array_equal(bn.running_mean, rm)
    assert bn.num_batches_tracked == 1 and bn.training
    close(y_eval, ref_forward(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, training=False)[0],
          np.float64)
    bn.backward(dy)  # evaluation-mode backward of the last forward
    np.testing.assert_allclose(bn.dbias, dy.sum(axis=(0, 2)))
    bn.reset_parameters()
    np.testing.assert_array_equal(bn.running_var, 1)
    assert bn.num_batches_tracked == 0
    # Without running statistics the batch statistics are used in both modes.
    plain = BatchNorm(2, affine=False, track_running_stats=False, dtype=np.float64).eval()
    assert plain.weight is None and plain.running_mean is None
    close(plain.forward(x), ref_forward(x)[0], np.float64)
    dx = plain.backward(dy)
    close(dx, ref_backward(dy, x, None, *ref_forward(x)[1:3], True)[0], np.float64, rtol64=1e-11)


def test_layer_validation():
    with pytest.raises(ValueError, match="num_features"):
        BatchNorm(-1)
    with pytest.raises(TypeError, match="dtype"):
        BatchNorm(3, dtype=np.int32)
    with pytest.raises(ValueError, match="affine=False takes no weight"):
        BatchNorm(3, affine=False, weight=np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        BatchNorm(3, weight=np.ones(4, np.float32))
    with pytest.raises(TypeError, match="dbias has dtype float64"):
        BatchNorm(3, dbias=np.zeros(3))
    shared = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="share memory"):
        BatchNorm(3, dweight=shared, dbias=shared)
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm(3, momentum=1.5)
    with pytest.raises(ValueError, match="2 channels"):
        BatchNorm(3).forward(np.zeros((4, 2), np.float32))


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------
def test_forward_rejects_bad_input(rng):
    x, w, b, rm, rv, _ = make((4, 3, 2), np.float32, rng)
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        batch_norm_forward(x.tolist())
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
        batch_norm_forward(x.astype(np.int64))
    for bad in (np.zeros(3, np.float32), np.zeros((), np.float32)):
        with pytest.raises(ValueError, match=r"x must have shape \(N, C\)"):
            batch_norm_forward(bad)
    with pytest.raises(ValueError, match="C-contiguous"):
        batch_norm_forward(np.zeros((4, 6), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="C-contiguous"):
        batch_norm_forward(np.asfortranarray(np.zeros((4, 3), np.float32)))
    with pytest.raises(TypeError, match="weight has dtype float64 but x has dtype float32"):
        batch_norm_forward(x, w.astype(np.float64))
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        batch_norm_forward(x, w, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"running_var must have shape \(3,\)"):
        batch_norm_forward(x, w, b, rm, np.ones((3, 1), np.float32))
    with pytest.raises(ValueError, match="given together"):
        batch_norm_forward(x, w, b, rm, None)
    with pytest.raises(ValueError, match="evaluation mode .* needs running_mean"):
        batch_norm_forward(x, training=False)
    ro = rm.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="running_mean is read-only"):
        batch_norm_forward(x, w, b, ro, rv)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        batch_norm_forward(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        batch_norm_forward(np.zeros((1, 3, 1, 1), np.float64))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        batch_norm_forward(np.zeros((0, 3), np.float64))
    with pytest.raises(ValueError, match="out has shape"):
        batch_norm_forward(x, out=np.empty((4, 3), np.float32))
    with pytest.raises(TypeError, match="out has dtype float64"):
        batch_norm_forward(x, out=np.empty(x.shape))
    with pytest.raises(ValueError, match="out and x share memory"):
        batch_norm_forward(x, out=x)
    with pytest.raises(ValueError, match="running_mean and running_var share memory"):
        batch_norm_forward(x, w, b, rm, rm)
    with pytest.raises(ValueError, match="momentum must be between 0.0 and 1.0"):
        batch_norm_forward(x, momentum=-0.1)
    with pytest.raises(TypeError, match="momentum must be a real number"):
        batch_norm_forward(x, momentum=None)
    with pytest.raises(ValueError, match="eps"):
        batch_norm_forward(x, eps=-1e-5)
    with pytest.raises(TypeError, match="training must be a bool"):
        batch_norm_forward(x, training="yes")


def test_backward_rejects_bad_input(rng):
    x, w, b, rm, rv, dy = make((4, 3, 2), np.float32, rng)
    _, cache = batch_norm_forward(x, w, None, rm, rv)
    with pytest.raises(TypeError, match="cache must be the BatchNormCache"):
        batch_norm_backward(dy, (x, w))
    with pytest.raises(TypeError, match="dy has dtype float64"):
        batch_norm_backward(dy.astype(np.float64), cache)
    with pytest.raises(ValueError, match="dy has shape"):
        batch_norm_backward(dy[:2], cache)
    with pytest.raises(ValueError, match="dbias_out was given but the forward pass had no bias"):
        batch_norm_backward(dy, cache, dbias_out=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"dweight_out must have shape \(3,\)"):
        batch_norm_backward(dy, cache, dweight_out=np.zeros(2, np.float32))
    ro = np.zeros(3, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="dweight_out is read-only"):
        batch_norm_backward(dy, cache, dweight_out=ro)
    with pytest.raises(ValueError, match="dx_out and x share memory"):
        batch_norm_backward(dy, cache, dx_out=x)
    dy_view, shifted = _shifted_view(dy)
    with pytest.raises(ValueError, match="dx_out and dy share memory"):
        batch_norm_backward(dy_view, cache, dx_out=shifted)
    with pytest.raises(ValueError, match="dweight_out and weight share memory"):
        batch_norm_backward(dy, cache, dweight_out=w)
    with pytest.raises(TypeError, match="accumulate must be a bool"):
        batch_norm_backward(dy, cache, accumulate=1)
    assert isinstance(cache, BatchNormCache)


def _shifted_view(a):
    """Two writeable arrays holding a's values and shape whose memory overlaps by all but one element."""
    buf = np.empty(a.size + 1, dtype=a.dtype)
    a_view = buf[:-1].reshape(a.shape)
    a_view[...] = a
    return a_view, buf[1:].reshape(a.shape)
