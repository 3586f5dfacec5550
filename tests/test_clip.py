"""Gradient clipping (fastopt.nn.clip and its kernels).

The kernels' sums are checked bit for bit against a NumPy reference that
adds in the kernels' documented order (per 4 KiB chunk, eight lanes taking
every eighth element, chunk results in chunk order), and every result must
have the same bits for 1, 2 and 3 threads.  Clipping is compared with the
reference multiply in the gradient's dtype, and with torch.nn.utils where
torch is installed.  Norms at any p (up to 1e6, and below 1) and any
magnitude (subnormal to near overflow) are checked against a 50-digit
decimal computation, and hypothesis checks the norm's properties.
"""
import decimal
import doctest
import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from conftest import SIZES, THREADS
import fastopt
from fastopt import ParamSet
from fastopt.nn import _clip
from fastopt.nn import clip as clip_module
from fastopt.nn.clip import NonFiniteNormError, clip_grad_norm_, clip_grad_norm_per_array_, clip_grad_value_

CHUNK_BYTES = 4096  # fastopt_config.h
LANES = 8           # fastopt/nn/_clip.pyx
NORMS = [1.0, 2.0, 3.0, math.inf]
INF = math.inf


# --------------------------------------------------------------------------
# NumPy reference
# --------------------------------------------------------------------------
def ref_power_sum(x, p):
    """sum |x|^p (max |x| for p = inf) in float64, added in the kernel's order."""
    x = np.ascontiguousarray(x).reshape(-1)
    if x.size == 0:
        return 0.0
    if p == INF:
        return float(np.abs(x).max())  # exact in any order; NaN if any element is NaN
    w = np.abs(x.astype(np.float64))
    terms = w * w if p == 2 else (w if p == 1 else w ** p)
    chunk = CHUNK_BYTES // x.itemsize
    partials = []
    for start in range(0, x.size, chunk):
        t = terms[start:start + chunk]
        if p not in (1, 2):  # one running sum per chunk
            partials.append(np.cumsum(t)[-1])
            continue
        m = len(t) // LANES * LANES
        lanes = np.cumsum(t[:m].reshape(-1, LANES), axis=0)[-1] if m else np.zeros(LANES)
        s0 = lanes[0]
        for v in t[m:]:  # the tail goes to the first lane
            s0 = s0 + v
        lanes[0] = s0
        partials.append(((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
                        + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7])))
    return float(np.cumsum(partials)[-1])


def ref_root(total, p):
    if p == 2:
        return math.sqrt(total)
    if p in (1, INF):
        return total
    return math.pow(total, 1.0 / p)


def ref_norm(arrays, p):
    """The global norm: per-array sums combined in order, then the 1/p-th power."""
    sums = [ref_power_sum(a, p) for a in arrays]
    if p == INF:
        return max(sums, default=0.0) if not any(math.isnan(s) for s in sums) else math.nan
    total = 0.0
    for s in sums:
        total += s
    return ref_root(total, p)


def ref_clipped(g, max_norm, norm):
    """g after clipping by a total norm, multiplied in g's dtype as the kernel does."""
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0 or coef != coef:
        return g * g.dtype.type(coef)
    return g.copy()


def _same_for_all_threads(compute):
    """compute() under every thread count; every result must have the same bits."""
    results = []
    for t in THREADS:
        with fastopt.threads(t):
            results.append(compute())
    for other in results[1:]:
        assert _bits(other) == _bits(results[0])
    return results[0]


def _bits(result):
    if isinstance(result, tuple):
        return tuple(_bits(r) for r in result)
    if isinstance(result, list):
        return [_bits(r) for r in result]
    if isinstance(result, np.ndarray):
        return (result.dtype.str, result.shape, result.tobytes())
    return np.float64(result).tobytes()


def _grad(rng, n, dtype, scale=1.0):
    return (rng.standard_normal(n) * scale).astype(dtype)


# --------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------
@pytest.mark.parametrize("p", NORMS, ids=str)
@pytest.mark.parametrize("n", SIZES)
def test_power_sum_matches_reference_for_any_thread_count(n, p, dtype, rng):
    g = _grad(rng, n, dtype)
    got = _same_for_all_threads(lambda: _clip.power_sum(g, p, 1.0, fastopt.get_num_threads()))
    want = ref_power_sum(g, p)
    if p == 3:  # libm pow against NumPy's power: compared to rounding
        assert got == pytest.approx(want, rel=1e-14, abs=0)
    else:
        assert got == want  # bit for bit: the documented summation order


def test_power_sum_accumulates_float32_in_float64():
    g = np.full(3 * 2**20, 1.0 + 2.0**-12, dtype=np.float32)  # a float32 sum would lose the small part
    assert _clip.power_sum(g, 1.0, 1.0, 2) == 3 * 2**20 * (1.0 + 2.0**-12)
    assert _clip.power_sum(g, 2.0, 1.0, 2) == ref_power_sum(g, 2)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 3000.0])
def test_power_sum_divisor(p, dtype, rng):
    g = _grad(rng, 5000, dtype, scale=1e30 if dtype == np.float32 else 1e300)
    peak = float(np.abs(g).max())
    got = _same_for_all_threads(lambda: _clip.power_sum(g, p, peak, fastopt.get_num_threads()))
    want = ref_power_sum(g.astype(np.float64) / peak, p)  # the same divisions, in the same order
    if p in (1.0, 2.0):
        assert got == want
    else:
        assert got == pytest.approx(want, rel=1e-13)
    assert got >= 1.0  # the largest element's term is exactly 1
    assert _clip.power_sum(g, INF, peak, 2) == 1.0
    assert _clip.power_sum(g, INF, 4.0, 2) == peak / 4.0
    for bad in (0.0, -1.0, INF, math.nan):
        with pytest.raises(ValueError, match="divisor must be"):
            _clip.power_sum(g, p, bad)


@pytest.mark.parametrize("where", [0, 1029, 4999])
def test_max_abs_kernel_sees_nan_and_inf(where, dtype):
    g = np.zeros(5000, dtype=dtype)
    g[where] = -np.inf
    assert _clip.power_sum(g, INF, 1.0, 2) == INF
    g[(where + 7) % 5000] = np.nan
    assert math.isnan(_clip.power_sum(g, INF, 1.0, 2))
    for p in (1.0, 2.0, 3.0):
        assert math.isnan(_clip.power_sum(g, p, 1.0, 2))


@pytest.mark.parametrize("n", SIZES)
def test_scale_and_clamp_kernels(n, dtype, rng):
    g = _grad(rng, n, dtype, scale=3.0)

    def scaled():
        out = g.copy()
        _clip.scale_(out, 0.3, fastopt.get_num_threads())
        return out

    def clamped():
        out = g.copy()
        _clip.clamp_(out, -0.7, 1.1, fastopt.get_num_threads())
        return out

    np.testing.assert_array_equal(_same_for_all_threads(scaled), g * dtype.type(0.3))
    np.testing.assert_array_equal(_same_for_all_threads(clamped), np.clip(g, dtype.type(-0.7), dtype.type(1.1)))


def test_kernel_argument_checks():
    g = np.ones(3)
    for p in (0.0, -1.0, math.nan, -INF):
        with pytest.raises(ValueError, match="p must be > 0"):
            _clip.power_sum(g, p)
    with pytest.raises(ValueError, match="lo <= hi"):
        _clip.clamp_(g, 1.0, -1.0)
    ro = np.ones(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):  # refused by the writeable typed memoryview
        _clip.scale_(ro, 0.5)
    with pytest.raises(ValueError, match="read-only"):
        _clip.clamp_(ro, -1.0, 1.0)
    assert _clip.power_sum(ro, 2.0) == 3.0  # reading is fine


# --------------------------------------------------------------------------
# clip_grad_norm_
# --------------------------------------------------------------------------
@pytest.mark.parametrize("p", NORMS, ids=str)
@pytest.mark.parametrize("n", SIZES)
def test_clip_grad_norm_single_array(n, p, dtype, rng):
    g = _grad(rng, n, dtype)
    norm = ref_norm([g], p)
    max_norm = 0.5 * norm if n else 1.0

    def run():
        out = g.copy()
        return clip_grad_norm_(out, max_norm, norm_type=p), out

    got_norm, got = _same_for_all_threads(run)
    assert isinstance(got_norm, float)
    if p == 3:
        assert got_norm == pytest.approx(norm, rel=1e-14)
        np.testing.assert_allclose(got, ref_clipped(g, max_norm, got_norm), rtol=1e-15 if dtype == np.float64 else 0)
    else:
        assert got_norm == norm
        np.testing.assert_array_equal(got, ref_clipped(g, max_norm, norm))
    if n:
        assert ref_norm([got], p) == pytest.approx(max_norm, rel=1e-5)


@pytest.mark.parametrize("p", NORMS, ids=str)
def test_no_clipping_leaves_bits_alone(p, dtype, rng):
    g = _grad(rng, 20000, dtype)
    g[:4] = [-0.0, np.finfo(dtype).smallest_subnormal, -np.finfo(dtype).tiny, 0.0]
    before = g.tobytes()
    norm = clip_grad_norm_(g, 10 * ref_norm([g], p), norm_type=p)
    assert g.tobytes() == before
    assert clip_grad_norm_(g, INF, norm_type=p) == norm  # max_norm=inf: only measures
    assert clip_grad_norm_(g, norm, norm_type=p) == norm  # coef = norm / (norm + 1e-6) is below 1...
    assert g.tobytes() != before or dtype == np.float32  # ...so float64 moves (float32 rounds coef to 1)


@pytest.mark.parametrize("p", NORMS, ids=str)
def test_list_tuple_dict_of_mixed_dtypes(p, rng):
    arrays = [_grad(rng, 7, np.float32), _grad(rng, (3, 5), np.float64), np.zeros(0, np.float32),
              _grad(rng, 70000, np.float32), _grad(rng, (2, 3, 4), np.float64)]
    norm = ref_norm(arrays, p)
    max_norm = norm / 3

    for wrap in (list, tuple, lambda xs: {f"t{i}": x for i, x in enumerate(xs)}):
        def run():
            copies = [a.copy() for a in arrays]
            got_norm = clip_grad_norm_(wrap(copies), max_norm, norm_type=p)
            return got_norm, copies

        got_norm, copies = _same_for_all_threads(run)
        assert got_norm == pytest.approx(norm, rel=1e-14) if p == 3 else got_norm == norm
        for a, c in zip(arrays, copies):
            assert c.shape == a.shape and c.dtype == a.dtype
            np.testing.assert_array_equal(c, ref_clipped(a, max_norm, got_norm))


def test_none_entries_are_skipped(rng):
    a, b = _grad(rng, 10, np.float64), _grad(rng, 10, np.float64)
    want = ref_norm([a, b], 2)
    assert clip_grad_norm_([a, None, b], INF) == want
    assert clip_grad_norm_({"a": a, "x": None, "b": b}, INF) == want
    assert clip_grad_norm_per_array_([a, None], INF) == [ref_norm([a], 2), 0.0]


@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("p", NORMS, ids=str)
def test_paramset_is_one_flat_pass(p, align, dtype, rng):
    ps = ParamSet({"W1": (300, 40), "b1": 40, "W2": (40, 3), "b2": 3}, dtype=dtype, align=align)
    for name in ps:
        ps.grads[name][...] = _grad(rng, ps.shapes[name], dtype)
    flat = ps.grad.copy()
    norm = ref_norm([flat], p)  # the whole buffer, zero padding included

    def run():
        ps.grad[:] = flat
        return clip_grad_norm_(ps, norm / 2, norm_type=p), ps.grad.copy()

    got_norm, got = _same_for_all_threads(run)
    if p == 3:
        assert got_norm == pytest.approx(norm, rel=1e-14)
    else:
        assert got_norm == norm
    np.testing.assert_array_equal(got, ref_clipped(flat, norm / 2, got_norm))
    views = [flat[ps.slices[n]] for n in ps.names]
    assert got_norm == pytest.approx(ref_norm(views, p), rel=1e-12)  # the same norm as a list of the tensors


def test_paramset_selection(rng):
    ps = ParamSet({"a": 5000, "b": 3, "c": (4, 4), "d": 6000}, align=True)
    ps.grad[:] = 0
    for name in ps:
        ps.grads[name][...] = _grad(rng, ps.shapes[name], np.float64)
    before = {n: ps.grads[n].copy() for n in ps}
    sel = ps.select(["d", "a", "c"])  # runs: [a], [c, d]
    want = ref_norm([before["a"], before["c"], before["d"]], 2)
    got = clip_grad_norm_(sel, want / 4)
    assert got == pytest.approx(want, rel=1e-14)
    for n in ("a", "c", "d"):
        np.testing.assert_array_equal(ps.grads[n], ref_clipped(before[n], want / 4, got))
    np.testing.assert_array_equal(ps.grads["b"], before["b"])
    norms = clip_grad_norm_per_array_(sel, INF)
    assert list(norms) == ["a", "c", "d"]
    assert norms["c"] == ref_norm([ps.grads["c"]], 2)


# --------------------------------------------------------------------------
# clip_grad_norm_per_array_
# --------------------------------------------------------------------------
@pytest.mark.parametrize("p", NORMS, ids=str)
def test_per_array(p, rng):
    arrays = [_grad(rng, 5, np.float64, 0.01), _grad(rng, 40000, np.float32), np.zeros(0), _grad(rng, 9, np.float64)]
    norms = [ref_norm([a], p) for a in arrays]
    max_norm = 0.05

    def run():
        copies = [a.copy() for a in arrays]
        return clip_grad_norm_per_array_(copies, max_norm, norm_type=p), copies

    got_norms, copies = _same_for_all_threads(run)
    assert got_norms == pytest.approx(norms, rel=1e-14)
    for a, c, n in zip(arrays, copies, got_norms):
        np.testing.assert_array_equal(c, ref_clipped(a, max_norm, n))
    assert got_norms[0] < max_norm and copies[0].tobytes() == arrays[0].tobytes()  # small enough: untouched

    g = arrays[1].copy()
    assert clip_grad_norm_per_array_(g, max_norm, norm_type=p) == got_norms[1]
    d = {"x": arrays[0].copy(), "y": arrays[3].copy()}
    assert clip_grad_norm_per_array_(d, max_norm, norm_type=p) == {"x": got_norms[0], "y": got_norms[3]}


def test_per_array_paramset_by_tensor(rng):
    ps = ParamSet({"w": (30, 30), "b": 30}, align=True)
    for name in ps:
        ps.grads[name][...] = _grad(rng, ps.shapes[name], np.float64)
    before = {n: ps.grads[n].copy() for n in ps}
    norms = clip_grad_norm_per_array_(ps, 1.0)
    assert norms == {n: ref_norm([before[n]], 2) for n in ps}
    for n in ps:
        np.testing.assert_array_equal(ps.grads[n], ref_clipped(before[n], 1.0, norms[n]))


# --------------------------------------------------------------------------
# Non-finite gradients and overflow
# --------------------------------------------------------------------------
@pytest.mark.parametrize("p", NORMS, ids=str)
def test_nan_gradient_makes_everything_nan_like_torch(p, dtype):
    a, b = np.arange(1.0, 5000.0, dtype=dtype), np.ones(3, dtype=dtype)
    a[1234] = np.nan
    assert math.isnan(clip_grad_norm_([a, b], 1.0, norm_type=p))
    assert np.isnan(a).all() and np.isnan(b).all()


@pytest.mark.parametrize("p", NORMS, ids=str)
def test_inf_gradient_zeroes_finite_elements_like_torch(p, dtype):
    a = np.array([1.0, -2.0, np.inf, 0.0], dtype=dtype)
    b = np.array([-3.0], dtype=dtype)
    assert clip_grad_norm_([a, b], 1.0, norm_type=p) == INF
    np.testing.assert_array_equal(a, [0.0, 0.0, np.nan, 0.0])  # inf * 0 is NaN
    assert np.signbit(a).tolist()[:2] == [False, True] and np.signbit(b).tolist() == [True]  # the sign stays
    np.testing.assert_array_equal(b, [0.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_error_if_nonfinite_refuses_and_changes_nothing(bad, dtype):
    a, b = np.ones(100, dtype=dtype), np.ones(5, dtype=dtype)
    b[2] = bad
    before = (a.tobytes(), b.tobytes())
    with pytest.raises(NonFiniteNormError, match="cannot be clipped"):
        clip_grad_norm_([a, b], 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match=r"grads\[1\]"):
        clip_grad_norm_per_array_([a, b], 1.0, error_if_nonfinite=True)
    assert (a.tobytes(), b.tobytes()) == before
    assert clip_grad_norm_(a, 1.0, error_if_nonfinite=True) == 10.0  # finite: no error


def test_nan_keeps_paramset_padding_zero():
    ps = ParamSet({"a": 3, "b": 5}, align=True)
    ps.grads["a"][...] = [1.0, np.nan, 2.0]
    ps.grads["b"][...] = 1.0
    assert math.isnan(clip_grad_norm_(ps, 1.0))
    pad = np.ones(ps.size, bool)
    for s in ps.slices.values():
        pad[s] = False
    assert pad.any() and (ps.grad[pad] == 0).all()
    assert np.isnan(ps.grads["a"]).all() and np.isnan(ps.grads["b"]).all()


def test_overflowing_sum_is_redone_scaled():
    g = np.array([3e200, -4e200, 0.0, 1e-300])
    norm = clip_grad_norm_(g, 1.0)
    assert norm == pytest.approx(5e200, rel=1e-15)  # torch: inf
    np.testing.assert_allclose(g, [0.6, -0.8, 0.0, 0.0], rtol=1e-12, atol=1e-300)
    h = [np.full(5000, 1e306), np.full(3, -1e306)]
    assert clip_grad_norm_(h, INF, norm_type=1.0) == INF  # the norm itself exceeds the float64 range
    assert clip_grad_norm_(h, INF, norm_type=3.0) == pytest.approx(1e306 * 5003 ** (1 / 3), rel=1e-13)
    assert clip_grad_norm_(np.full(20000, 1e300), INF, norm_type=0.5) == INF  # the 1/p-th power overflows


# --------------------------------------------------------------------------
# Accuracy for any p at any magnitude (no spurious overflow or underflow)
# --------------------------------------------------------------------------
EPS64 = 2.0 ** -52
SWEEP_P = [1.0, 1.5, 2.0, 3.0, 10.0, 100.0, 1100.0, 3000.0, 1e6]
SMALL_P = [0.5, 0.25]  # accepted too (norm_type > 0), though not norms
MAGNITUDES = {
    np.float64: [1e-320, 1e-300, 1e-200, 1e-160, 1e-100, 1.0, 1e100, 1e160, 1e200, 1e300, 1.7e308],
    np.float32: [1e-44, 1e-38, 1e-20, 1.0, 1e20, 3e38],
}
_DECIMAL = decimal.Context(prec=50, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def careful_norm(values, p):
    """The p-norm of the exact values in 50-digit decimal arithmetic, rounded once to float64.

    Independent of the kernels' arithmetic: ``m * (sum (|x| / m)^p)^(1/p)``
    with ``m = max |x|``, every step to 50 digits with an unbounded exponent
    range; ``p`` a whole number or a multiple of 1/4.
    """
    xs = [abs(Decimal(float(v))) for v in np.asarray(values).reshape(-1)]
    m = max(xs, default=Decimal(0))
    if m == 0:
        return 0.0
    if p == INF:
        return float(m)
    quarters = int(p * 4)
    assert quarters == p * 4
    total = Decimal(0)
    for x in xs:
        r = _DECIMAL.divide(x, m)
        if p == int(p):
            term = _DECIMAL.power(r, int(p))
        else:
            term = _DECIMAL.power(_DECIMAL.sqrt(_DECIMAL.sqrt(r)), quarters)
        total = _DECIMAL.add(total, term)
    root = _DECIMAL.exp(_DECIMAL.divide(_DECIMAL.ln(total), Decimal(p)))
    return float(_DECIMAL.multiply(m, root))  # inf beyond the float64 range


def _assert_accurate(got, want, p, n):
    """A few units in the last place: the float64 sums' rounding, times 1/p for p < 1."""
    if math.isinf(want) or want == 0.0:
        assert got == want
        return
    ulps = (4 + math.log2(max(n, 1))) * max(1.0, 1.0 / p)
    assert abs(got - want) <= ulps * EPS64 * want, (got, want, p, abs(got - want) / want / EPS64)


def _spread(rng, n, magnitude, dtype):
    """n elements of both signs within three decades below ``magnitude``, a few of them zero."""
    x = rng.choice([-1.0, 1.0], n) * magnitude * 10.0 ** rng.uniform(-3, 0, n)
    x[3::11] = 0.0
    return x.astype(dtype)


@pytest.mark.parametrize("norm_type, grad, want", [(3000, [3.0], 3.0), (1100, [2.0, 2.0], 2.0 * 2.0 ** (1 / 1100))],
                         ids=["3-p3000", "2,2-p1100"])
def test_large_p_norm_does_not_underflow(norm_type, grad, want, dtype):
    """The audit's cases: sum |g|^p overflowed, and the old power-of-two rescue underflowed to 0."""
    g = np.array(grad, dtype=dtype)
    got = clip_grad_norm_(g, 1.0, norm_type=norm_type)
    assert got == pytest.approx(want, rel=4 * EPS64)
    np.testing.assert_array_equal(g, np.array(grad, dtype) * dtype.type(1.0 / (got + 1e-6)))  # and clipped
    assert clip_grad_norm_(g, INF, norm_type=norm_type) == pytest.approx(1.0, rel=1e-6)  # now at max_norm


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_norm_is_accurate_for_any_p_and_magnitude(dtype_name):
    dtype = np.dtype(dtype_name)
    rng = np.random.default_rng(2024)
    for magnitude in MAGNITUDES[dtype.type]:
        for n in (1, 2, 50):
            g = _spread(rng, n, magnitude, dtype)
            for p in SWEEP_P + SMALL_P + [INF]:
                got = clip_grad_norm_(g.copy(), INF, norm_type=p)
                _assert_accurate(got, careful_norm(g, p), p, n)


@pytest.mark.parametrize("magnitude", [1e-300, 1e300])
def test_norm_is_accurate_over_several_chunks(magnitude, dtype):
    if dtype == np.float32:
        magnitude = 1e-40 if magnitude < 1 else 1e38
    rng = np.random.default_rng(7)
    g = _spread(rng, 3001, magnitude, dtype)  # six float64 chunks, three float32 ones
    for p in SWEEP_P + [0.5]:
        got = _same_for_all_threads(lambda: clip_grad_norm_(g.copy(), INF, norm_type=p))
        _assert_accurate(got, careful_norm(g, p), p, g.size)


@pytest.mark.parametrize("p", SWEEP_P + SMALL_P + [INF], ids=str)
def test_scaled_norm_and_clipping_have_the_same_bits_for_any_thread_count(p, dtype, rng):
    a = _grad(rng, 200003, dtype, scale=1e-30 if dtype == np.float32 else 1e-250)  # enough for three threads
    b = _grad(rng, 70001, dtype, scale=1e30 if dtype == np.float32 else 1e250)

    def run():
        copies = [a.copy(), b.copy()]
        return clip_grad_norm_(copies, 1.0, norm_type=p), copies

    norm, (ca, cb) = _same_for_all_threads(run)
    assert math.isfinite(norm) and norm >= float(np.abs(b).max())
    if p >= 1:
        assert norm <= float(np.abs(b).max()) * 70001  # the triangle inequality's bound
    np.testing.assert_array_equal(cb, b * dtype.type(1.0 / (norm + 1e-6)))


def test_tiny_gradients_have_a_norm():
    """Squares below the normal range once made the 2-norm of tiny gradients 0."""
    g = np.full(1000, 3e-300)
    assert clip_grad_norm_(g, INF) == pytest.approx(3e-300 * math.sqrt(1000), rel=4 * EPS64)
    assert clip_grad_norm_(np.array([5e-324] * 4), INF) == 1e-323  # 2 * 2**-1074, exactly
    assert clip_grad_norm_(np.array([0.0, -5e-324]), INF, norm_type=3000) == 5e-324
    assert clip_grad_norm_(np.array([1e-300, 0.0]), INF, norm_type=1.5) == 1e-300
    mixed = [np.full(10, 1e-200), np.full(3, 1e-170)]  # the small ones vanish next to 1e-170, as they should
    assert clip_grad_norm_(mixed, INF) == pytest.approx(1e-170 * math.sqrt(3), rel=4 * EPS64)
    for p in (1.0, 2.0, 3.0, 3000.0, INF):
        assert clip_grad_norm_([np.zeros(5), np.zeros(3, np.float32)], 1.0, norm_type=p) == 0.0


def test_norms_beyond_the_float64_range_are_inf():
    h = np.full(4, 1.5e308)
    assert clip_grad_norm_(h, INF, norm_type=1.0) == INF
    assert clip_grad_norm_(h, INF, norm_type=2.0) == INF
    assert clip_grad_norm_(h, INF, norm_type=3000.0) == pytest.approx(1.5e308 * 4 ** (1 / 3000), rel=4 * EPS64)
    assert clip_grad_norm_(h, INF, norm_type=INF) == 1.5e308
    # p < 1: the root of the scaled sum can exceed the range while the norm does not
    tiny = np.full(8, 1e-300)
    assert clip_grad_norm_(tiny, INF, norm_type=0.003) == pytest.approx(1e-300 * 8.0 ** (1 / 0.003), rel=1e-12)
    assert clip_grad_norm_(tiny, INF, norm_type=0.001) == INF  # 8**1000 * 1e-300 is about 1e603
    assert clip_grad_norm_(np.array([1e-300, 0.0]), INF, norm_type=1e-300) == 1e-300  # one nonzero: its magnitude


def test_per_array_norms_at_large_p_and_extreme_magnitudes(rng):
    arrays = [_spread(rng, 40, 1e-300, np.float64), _spread(rng, 5000, 1e300, np.float64),
              _spread(rng, 9, 1e-40, np.float32), np.zeros(3), _spread(rng, 7, 1.0, np.float64)]
    for p in (3.0, 1100.0, 3000.0, 1e6):
        copies = [a.copy() for a in arrays]
        norms = _same_for_all_threads(lambda: clip_grad_norm_per_array_([a.copy() for a in arrays], 1e-301,
                                                                        norm_type=p))
        assert clip_grad_norm_per_array_(copies, 1e-301, norm_type=p) == norms
        for a, c, norm in zip(arrays, copies, norms):
            _assert_accurate(norm, careful_norm(a, p), p, a.size)
            np.testing.assert_array_equal(c, ref_clipped(a, 1e-301, norm) if norm else a)


def test_p_zero_and_negative_are_refused():
    """torch's norm_type=0 counts nonzeros and -inf takes the smallest |g|; fastopt refuses both."""
    g = np.array([1.0, 0.0, 2.0])
    for p in (0, 0.0, -0.0, -1.0, -INF):
        for call in (clip_grad_norm_, clip_grad_norm_per_array_):
            with pytest.raises(ValueError, match="norm_type must be > 0"):
                call(g, 1.0, norm_type=p)
    np.testing.assert_array_equal(g, [1.0, 0.0, 2.0])


_P_VALUES = st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, 10.0, 100.0, 1100.0, 3000.0, 1e6, INF])


@st.composite
def _gradients(draw, dtype=None):
    dtype = draw(st.sampled_from([np.float32, np.float64])) if dtype is None else dtype
    width = 32 if dtype == np.float32 else 64
    bound = 2.0 ** 100 if dtype == np.float32 else 2.0 ** 930  # room for the factor of the homogeneity test
    values = draw(st.lists(st.floats(-bound, bound, allow_nan=False, width=width), min_size=1, max_size=40))
    return np.array(values, dtype=dtype)


@settings(derandomize=True, deadline=None, max_examples=300)
@given(g=_gradients(np.float64), c=st.floats(1e-12, 1e12) | st.floats(-1e12, -1e-12), p=_P_VALUES)
def test_norm_is_absolutely_homogeneous(g, c, p):
    cg = g * c
    assume(not np.any((cg != 0) & (np.abs(cg) < np.finfo(np.float64).tiny)))  # each product rounds to eps/2
    norm = clip_grad_norm_(g.copy(), INF, norm_type=p)
    scaled = clip_grad_norm_(cg, INF, norm_type=p)
    slack = (4 + math.log2(g.size)) * max(1.0, 1.0 / p) * EPS64 * abs(c) * norm
    assert abs(scaled - abs(c) * norm) <= slack


@settings(derandomize=True, deadline=None, max_examples=300)
@given(g=_gradients(), p=_P_VALUES)
def test_norm_is_at_least_the_largest_element(g, p):
    norm = clip_grad_norm_(g.copy(), INF, norm_type=p)
    assert norm >= float(np.abs(g).max())  # exactly, at every p
    if p == INF:
        assert norm == float(np.abs(g).max())


@settings(derandomize=True, deadline=None, max_examples=200)
@given(g=_gradients())
def test_norm_decreases_as_p_grows(g):
    ps = [1.0, 1.5, 2.0, 3.0, 10.0, 100.0, 1100.0, 3000.0, 1e6, INF]
    norms = [clip_grad_norm_(g.copy(), INF, norm_type=p) for p in ps]
    for p, q, a, b in zip(ps, ps[1:], norms, norms[1:]):  # ||g||_p >= ||g||_q for p <= q, up to rounding
        assert a >= b * (1 - 8 * EPS64), (p, q, a, b)


# --------------------------------------------------------------------------
# clip_grad_value_
# --------------------------------------------------------------------------
@pytest.mark.parametrize("n", SIZES)
def test_clip_grad_value(n, dtype, rng):
    g = _grad(rng, n, dtype, scale=2.0)
    if n > 5:
        g[[1, 3, 5]] = [np.nan, np.inf, -np.inf]

    def run():
        out = g.copy()
        clip_grad_value_([out], 0.75)
        return out

    got = _same_for_all_threads(run)
    want = np.clip(g, dtype.type(-0.75), dtype.type(0.75))  # NumPy's clip keeps NaN too
    np.testing.assert_array_equal(got, want)


def test_clip_grad_value_containers(rng):
    ps = ParamSet({"a": 100, "b": (3, 3)}, dtype=np.float32)
    ps.grad[:] = _grad(rng, ps.size, np.float32, 5.0)
    want = np.clip(ps.grad, -1, 1)
    assert clip_grad_value_(ps, 1) is None
    np.testing.assert_array_equal(ps.grad, want)
    d = {"x": _grad(rng, 4, np.float64, 5.0), "y": _grad(rng, (2, 2), np.float32, 5.0)}
    want = {k: np.clip(v, -0.5, 0.5) for k, v in d.items()}
    clip_grad_value_(d, 0.5)
    for k in d:
        np.testing.assert_array_equal(d[k], want[k].astype(d[k].dtype))
    z = np.array([-2.0, 0.5, np.nan])
    clip_grad_value_(z, 0)
    np.testing.assert_array_equal(z, [0.0, 0.0, np.nan])
    clip_grad_value_(z, INF)


# --------------------------------------------------------------------------
# Empty input and bad input
# --------------------------------------------------------------------------
def test_empty_inputs():
    for empty in ([], (), {}, np.zeros(0), np.zeros((0, 3), np.float32), [np.zeros(0)]):
        assert clip_grad_norm_(empty, 1.0) == 0.0
        clip_grad_value_(empty, 1.0)
    assert clip_grad_norm_per_array_([], 1.0) == []
    assert clip_grad_norm_per_array_({}, 1.0) == {}
    assert clip_grad_norm_per_array_(np.zeros(0), 1.0) == 0.0


def test_bad_arrays_are_refused_before_anything_changes():
    good = np.full(4, 10.0)
    ro = np.ones(3)
    ro.flags.writeable = False
    cases = [
        ([good, np.ones(6)[::2]], ValueError, r"grads\[1\] must be C-contiguous"),
        ([good, np.ones(3, np.int64)], TypeError, r"grads\[1\] must have dtype float32 or float64"),
        ([good, np.ones(3, np.float16)], TypeError, "float16"),
        ([good, ro], ValueError, r"grads\[1\] is read-only"),
        ([good, [1.0, 2.0]], TypeError, r"grads\[1\] must be a numpy.ndarray"),
        ([good, good[1:]], ValueError, "share memory"),
        ({"w": good, "v": np.ones((3, 4)).T}, ValueError, r"grads\['v'\]"),
    ]
    for grads, error, message in cases:
        for call in (lambda g: clip_grad_norm_(g, 1.0), lambda g: clip_grad_norm_per_array_(g, 1.0),
                     lambda g: clip_grad_value_(g, 1.0)):
            with pytest.raises(error, match=message):
                call(grads)
            np.testing.assert_array_equal(good, 10.0)
    for grads in ({1.0, 2.0}, (x for x in [good]), 3.0, "abc", None):
        with pytest.raises(TypeError, match="grads must be"):
            clip_grad_norm_(grads, 1.0)
    ps = ParamSet({"a": 3})
    ps.grad.flags.writeable = False
    with pytest.raises(ValueError, match="ParamSet.grad is read-only"):
        clip_grad_norm_(ps, 1.0)


def test_bad_numbers():
    g = np.ones(3)
    for value, error in [(0, ValueError), (-1.0, ValueError), (math.nan, ValueError), (-INF, ValueError),
                         ("1.0", TypeError), (True, TypeError), (None, TypeError), (1j, TypeError)]:
        with pytest.raises(error, match="max_norm"):
            clip_grad_norm_(g, value)
        with pytest.raises(error, match="max_norm"):
            clip_grad_norm_per_array_(g, value)
    for value, error in [(0, ValueError), (-2, ValueError), (math.nan, ValueError), (-INF, ValueError),
                         ("inf", TypeError), (False, TypeError)]:
        with pytest.raises(error, match="norm_type"):
            clip_grad_norm_(g, 1.0, norm_type=value)
    for value, error in [(-0.5, ValueError), (math.nan, ValueError), ("1", TypeError), (True, TypeError)]:
        with pytest.raises(error, match="clip_value"):
            clip_grad_value_(g, value)
    np.testing.assert_array_equal(g, 1.0)
    assert clip_grad_norm_(g, np.float32(0.5), norm_type=np.int64(2)) == math.sqrt(3.0)  # NumPy scalars are fine


def test_docstring_examples():
    result = doctest.testmod(clip_module)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------
# torch.nn.utils parity
# --------------------------------------------------------------------------
def _torch_clip_norm(torch, arrays, max_norm, p, **kw):
    params = [torch.zeros(a.shape, dtype=torch.float64 if a.dtype == np.float64 else torch.float32,
                          requires_grad=True) for a in arrays]
    for prm, a in zip(params, arrays):
        prm.grad = torch.from_numpy(a.copy())
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=p, **kw)
    return float(norm), [prm.grad.numpy() for prm in params]


@pytest.mark.parametrize("p", NORMS, ids=str)
@pytest.mark.parametrize("factor", [0.3, 10.0], ids=["clips", "no-clip"])
def test_torch_clip_grad_norm_parity(p, factor, rng):
    torch = pytest.importorskip("torch")
    arrays = [_grad(rng, s, np.float64) for s in [(3, 4), 1, 7, 50000, (2, 3, 5)]]
    max_norm = factor * ref_norm(arrays, p)
    want_norm, want = _torch_clip_norm(torch, arrays, max_norm, p)
    copies = [a.copy() for a in arrays]
    got_norm = clip_grad_norm_(copies, max_norm, norm_type=p)
    assert got_norm == pytest.approx(want_norm, rel=1e-12)
    for c, w in zip(copies, want):
        np.testing.assert_allclose(c, w, rtol=1e-12, atol=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_torch_nonfinite_parity(bad):
    torch = pytest.importorskip("torch")
    arrays = [np.array([1.0, -2.0, 0.5]), np.array([bad, 3.0, -0.0])]
    want_norm, want = _torch_clip_norm(torch, arrays, 1.0, 2.0)
    copies = [a.copy() for a in arrays]
    got_norm = clip_grad_norm_(copies, 1.0)
    np.testing.assert_array_equal(got_norm, want_norm)
    for c, w in zip(copies, want):
        assert c.tobytes() == w.tobytes()  # NaN where torch has NaN, signed zeros included
    with pytest.raises(RuntimeError):
        _torch_clip_norm(torch, arrays, 1.0, 2.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError):
        clip_grad_norm_([a.copy() for a in arrays], 1.0, error_if_nonfinite=True)


def test_torch_float32_norm_is_close(rng):
    torch = pytest.importorskip("torch")
    arrays = [_grad(rng, 100000, np.float32), _grad(rng, 33, np.float32)]
    want_norm, want = _torch_clip_norm(torch, arrays, 1.0, 2.0)
    copies = [a.copy() for a in arrays]
    assert clip_grad_norm_(copies, 1.0) == pytest.approx(want_norm, rel=1e-5)  # torch sums in float32
    for c, w in zip(copies, want):
        np.testing.assert_allclose(c, w, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_torch_clip_grad_value_parity(dtype_name, rng):
    torch = pytest.importorskip("torch")
    g = _grad(rng, 10000, dtype_name, scale=2.0)
    g[:4] = [np.nan, np.inf, -np.inf, -0.0]
    prm = torch.zeros(g.shape, dtype=getattr(torch, dtype_name), requires_grad=True)
    prm.grad = torch.from_numpy(g.copy())
    torch.nn.utils.clip_grad_value_([prm], 0.3)
    got = g.copy()
    clip_grad_value_(got, 0.3)
    np.testing.assert_array_equal(got, prm.grad.numpy())


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_max_norm_inf_only_measures_even_when_nonfinite(bad):
    g = [np.array([1.0, bad]), np.array([2.0])]
    before = [a.tobytes() for a in g]
    norm = clip_grad_norm_(g, INF)
    assert math.isnan(norm) if np.isnan(bad) else norm == INF
    assert clip_grad_norm_per_array_(g, INF)[1] == 2.0
    assert [a.tobytes() for a in g] == before  # torch would multiply by inf / inf = NaN
