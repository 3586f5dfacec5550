"""Storage types (issue 14): bfloat16 parameters, stochastic rounding, blockwise int8 optimizer state.

``storage_reference.py`` implements the bit-exact storage contract in NumPy.
The first tests check those references themselves (against ml_dtypes'
conversions, independent scalar implementations, and the properties the
contract promises); the rest hold the kernels' helpers and the optimizers'
compressed-storage steps to them bit for bit, for every thread count.
"""
import functools

import numpy as np
import pytest
from test_kernels import OPTIMIZERS, assert_bitwise_equal, assert_same_on_any_thread_count

import fastopt
import storage_reference as sr
from fastopt import _kernels
from fastopt._rules import RULES
from fastopt._storage import BFLOAT16, BLOCK, resolve_state_dtype

HELPER_SIZES = [0, 1, 255, 256, 257, 2**20 + 3]
THREADS = [1, 2]
KEYS = [0, 1, 2**64 - 1, sr.rounding_key(12345, 3, 7)]
MASK32 = 0xFFFFFFFF


@functools.lru_cache(maxsize=None)
def float32_patterns():
    """Every bf16 pattern widened, and just below, at, and above each rounding tie, plus random bits.

    That holds ties to even and odd, NaNs with payloads (quiet and signaling, both signs), +-inf, zeros,
    subnormals, and values that round up to infinity.
    """
    top = np.arange(2**16, dtype=np.uint32) << np.uint32(16)
    low = np.array([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF], dtype=np.uint32)
    rand = np.random.default_rng(5).integers(0, 2**32, 2**18, dtype=np.uint32)
    x = np.concatenate([(top[:, None] | low).ravel(), rand]).view(np.float32)
    x.flags.writeable = False  # shared by the tests
    return x


def block_data(n, kind, rng, low=-140):
    """float32 data for int8 tests: blocks of scales 2**low .. 2**120 (low -140: absmax subnormal, 1/absmax
    infinite), zeros, -0.0.

    ``kind``: "normal"; "zeros" / "negzero" (every element +0.0 / -0.0); "nonfinite" (NaN in blocks 0, 3, 6, ...;
    +inf in blocks 1, 4, ...; -inf in blocks 4, 7, ...; blocks 2, 5, ... left finite).
    """
    if kind in ("zeros", "negzero"):
        return np.full(n, -0.0 if kind == "negzero" else 0.0, np.float32)
    scales = np.exp2(rng.integers(low, 120, -(-n // BLOCK))).astype(np.float32)
    x = rng.standard_normal(n).astype(np.float32) * np.repeat(scales, BLOCK)[:n]
    x[rng.random(n) < 0.05] = 0.0
    x[rng.random(n) < 0.05] = -0.0
    if kind == "nonfinite":
        for start, value in ((0, np.nan), (BLOCK + 7, np.inf), (4 * BLOCK + 9, -np.inf)):
            x[start::3 * BLOCK] = value  # (even a 1-element array gets its NaN)
    return x


def bits(a):
    return np.asarray(a).view(f"u{np.asarray(a).dtype.itemsize}")


# ------------------------------------------------------- references vs ml_dtypes
def test_widen_matches_ml_dtypes_on_every_bf16_pattern():
    every = np.arange(2**16, dtype=np.uint16).view(BFLOAT16)
    assert_bitwise_equal(sr.bf16_widen(every), every.astype(np.float32))
    assert_bitwise_equal(sr.bf16_widen(every.view(np.uint16)), every.astype(np.float32))


def test_nearest_matches_ml_dtypes():
    x = float32_patterns()
    with np.errstate(invalid="ignore"):
        expected = x.astype(BFLOAT16)
    assert_bitwise_equal(sr.bf16_nearest(x), expected)


@pytest.mark.parametrize("value, expected", [
    (0x3F808000, 0x3F80), (0x3F818000, 0x3F82), (0x3F808001, 0x3F81), (0x7F7FFFFF, 0x7F80),
    (0xFF800000, 0xFF80), (0x7F800001, 0x7FC0), (0xFFC12345, 0xFFC0), (0x00008000, 0x0000),
    (0x00018000, 0x0002), (0x80000000, 0x8000),
])
def test_nearest_examples(value, expected):
    x = np.array([value], np.uint32).view(np.float32)
    assert int(bits(sr.bf16_nearest(x))[0]) == expected


# ----------------------------------------------------------- hash references
def _py_lowbias32(x):
    x ^= x >> 16
    x = (x * 0x7FEB352D) & MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & MASK32
    return x ^ (x >> 16)


def _py_splitmix64(z):
    m = 2**64 - 1
    z = (z + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def test_hashes_match_scalar_python():
    rng = np.random.default_rng(1)
    x = np.concatenate([[0, 1, MASK32], rng.integers(0, 2**32, 1000)]).astype(np.uint32)
    assert sr.lowbias32(x).tolist() == [_py_lowbias32(int(v)) for v in x]
    z = np.concatenate([np.array([0, 1, 2**64 - 1], np.uint64), rng.integers(0, 2**63, 1000).astype(np.uint64)])
    assert sr.splitmix64(z).tolist() == [_py_splitmix64(int(v)) for v in z]
    # The published splitmix64 stream from state 0: its first two outputs.
    assert sr.splitmix64(0) == 0xE220A8397B1DCDAF
    assert sr.splitmix64(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4
    for seed, stream, step in [(0, 0, 1), (2**64 - 1, 5, 10**6), (42, 2**40, 3)]:
        key = sr.rounding_key(seed, stream, step)
        assert key == _py_splitmix64(_py_splitmix64(_py_splitmix64(seed) ^ stream) ^ step) and 0 <= key < 2**64
    key, index = 0x0123456789ABCDEF, np.array([0, 1, 2**32 + 5, 2**40 + 2**33 + 9], np.int64)
    expected = [_py_lowbias32(_py_lowbias32((i & MASK32) ^ (key & MASK32)) ^ (key >> 32) ^ (i >> 32))
                for i in index.tolist()]
    assert sr.rounding_bits(key, index).tolist() == expected


def test_rounding_keys_are_distinct():
    keys = {sr.rounding_key(seed, stream, step) for seed in (0, 1, 2**64 - 1) for stream in range(4)
            for step in range(1, 20)}
    assert len(keys) == 3 * 4 * 19


# ------------------------------------------- stochastic rounding: the reference's properties
def test_stochastic_reference_properties():
    x = float32_patterns()
    b = bits(x)
    key = KEYS[3]
    out = bits(sr.bf16_stochastic(x, key))
    nan = np.isnan(x)
    assert_bitwise_equal(out[nan], bits(sr.bf16_nearest(x))[nan])
    trunc = (b >> 16).astype(np.uint16)
    assert np.all((out[~nan] == trunc[~nan]) | (out[~nan] == trunc[~nan] + np.uint16(1)))
    exact = ~nan & ((b & 0xFFFF) == 0)  # representable in bf16: kept, whatever the key
    assert_bitwise_equal(out[exact], trunc[exact])
    for offset in (1, 300, 2**18 + 1):  # element indices carry over to a slice
        assert_bitwise_equal(bits(sr.bf16_stochastic(x[offset:], key, offset)), out[offset:])


def rounded(impl, x, key, threads=1):
    """``x`` rounded stochastically by the reference or by the kernel helper."""
    if impl == "reference":
        return sr.bf16_stochastic(x, key)
    dst = np.empty(x.size, BFLOAT16)
    _kernels.bf16_round(x, dst, key=key, num_threads=threads)
    return dst


@pytest.mark.parametrize("impl", ["reference", "kernel"])
def test_stochastic_rounding_is_unbiased(impl, rng):
    n, copies_n = 2000, 400
    x = rng.standard_normal(n).astype(np.float32)
    x = x[(bits(x) & 0xFFFF) != 0]  # not representable in bf16
    trunc = (bits(x) >> 16).astype(np.uint16)  # the neighbour toward zero; trunc + 1 the one away from it
    lower = sr.bf16_widen(trunc).astype(np.float64)
    ulp = sr.bf16_widen(trunc + np.uint16(1)) - lower  # signed
    frac = (bits(x) & 0xFFFF) / 2.0**16  # the probability of rounding away from zero
    copies = np.array([bits(rounded(impl, x, sr.rounding_key(7, 0, s))) for s in range(1, copies_n + 1)])
    assert np.all((copies == trunc) | (copies == trunc + np.uint16(1)))
    mean = sr.bf16_widen(copies.astype(np.uint16)).astype(np.float64).mean(axis=0)
    error = (mean - x) / np.abs(ulp)  # in ulps; E = 0, sd = sqrt(frac (1 - frac) / copies) <= 1 / (2 sqrt(copies))
    sigma = np.sqrt(frac * (1 - frac) / copies_n)
    assert np.all(np.abs(error) <= 6 * sigma + 1e-12)  # each element (6 sigma: a sure pass when unbiased)
    assert abs(error.mean()) <= 5 / (2 * np.sqrt(copies_n * x.size))  # all together: no bias of 3e-3 ulp


@pytest.mark.parametrize("impl", ["reference", "kernel"])
def test_different_keys_round_differently(impl, rng):
    x = rng.standard_normal(10000).astype(np.float32)
    outs = [bits(rounded(impl, x, key)) for key in KEYS]
    for i in range(len(outs)):
        for j in range(i):
            assert 0.31 < np.mean(outs[i] != outs[j]) < 0.36  # 2 f (1 - f) for f = the dropped fraction: 1/3


# ------------------------------------------------------------ int8: the reference's properties
def test_int8_code_maps_by_hand():
    x = np.array([1.0, -0.25, 0.5, -0.0, 0.0, 2.0**-16, -2.0**-15 * 1.125], np.float32)
    codes, absmax = sr.quantize_blockwise(x, signed=True)
    assert absmax.tolist() == [1.0]
    assert codes.tolist() == [124, 128 | 116, 120, 128, 0, 60, 128 | 65]  # 1.125 ties away: 1.25
    assert_bitwise_equal(sr.dequantize_blockwise(codes, absmax, True),
                         np.array([1.0, -0.25, 0.5, -0.0, 0.0, 2.0**-16, -2.0**-15 * 1.25], np.float32))
    codes, absmax = sr.quantize_blockwise(np.abs(x) * 4, signed=False)
    assert absmax.tolist() == [4.0] and codes.tolist() == [252, 244, 248, 0, 0, 188, 193]
    codes, absmax = sr.quantize_blockwise(np.array([1.0, 2.0**-33, 2.0**-70], np.float32), signed=True)
    assert codes.tolist() == [124, 0, 0]  # below 1.25 * 2**-31 of absmax: a first moment becomes 0
    codes, absmax = sr.quantize_blockwise(np.array([1.0, 2.0**-70], np.float32), signed=False)
    assert codes.tolist() == [252, 1]  # a positive second moment never becomes 0


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize("n", [1, 255, 256, 257, 3 * BLOCK + 17])
def test_int8_reference_properties(n, signed, rng):
    x = block_data(n, "normal", rng, low=-100)  # 1/absmax finite: within the error bound
    x = x if signed else np.abs(x)
    codes, absmax = sr.quantize_blockwise(x, signed)
    assert codes.dtype == np.uint8 and codes.shape == (n,)
    assert absmax.dtype == np.float32 and absmax.shape == (-(-n // BLOCK),)
    blocks = np.repeat(np.arange(absmax.size), BLOCK)[:n]
    expected = np.array([np.abs(x[blocks == k]).max() for k in range(absmax.size)], np.float32)
    assert_bitwise_equal(absmax, expected)
    m = codes & 127 if signed else codes
    assert m.max() <= (124 if signed else 252)
    if signed:
        np.testing.assert_array_equal(codes >> 7, np.signbit(x))
    else:
        np.testing.assert_array_equal(codes == 0, x == 0)
    y = sr.dequantize_blockwise(codes, absmax, signed)
    scale = absmax[blocks].astype(np.float64)
    err = np.abs(y.astype(np.float64) - x)
    floor = 2.0**-30 if signed else 2.0**-62  # above the smallest nonzero magnitude, relative to the block's absmax
    assert np.all(err <= 2.0**-3 * (1 + 2.0**-16) * np.abs(x) + floor * scale + 1e-45)
    assert np.all(np.signbit(y) == np.signbit(x))
    top = np.abs(x) == scale
    np.testing.assert_array_equal(np.abs(y[top]), np.abs(x[top]))  # each block's absmax comes back exactly
    for k in range(absmax.size):  # the map is monotonic
        order = np.argsort(x[blocks == k], kind="stable")
        assert np.all(np.diff(y[blocks == k][order].astype(np.float64)) >= 0)


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_int8_reference_special_blocks(signed, rng):
    x = np.ones(5 * BLOCK + 3, np.float32)
    x[BLOCK + 4], x[2 * BLOCK], x[3 * BLOCK + 9], x[-1] = np.nan, np.inf, -np.inf, np.nan
    x[4 * BLOCK:5 * BLOCK] = -0.0 if signed else 0.0
    codes, absmax = sr.quantize_blockwise(x, signed)
    assert np.isnan(absmax).tolist() == [False, True, True, True, False, True]
    assert absmax[0] == 1 and absmax[4] == 0
    np.testing.assert_array_equal(codes[BLOCK:4 * BLOCK], 0)
    np.testing.assert_array_equal(codes[5 * BLOCK:], 0)
    y = sr.dequantize_blockwise(codes, absmax, signed)
    assert np.all(np.isnan(y[BLOCK:4 * BLOCK])) and np.all(np.isnan(y[5 * BLOCK:]))
    assert_bitwise_equal(y[4 * BLOCK:5 * BLOCK], np.zeros(BLOCK, np.float32))  # no value >= 2**-126: +0.0
    assert_bitwise_equal(y[:BLOCK], x[:BLOCK])
    assert sr.quantize_blockwise(np.zeros(0, np.float32), signed)[1].shape == (0,)


def test_signed_and_unsigned_tables_match_the_rule_table():
    states = {s.name: s for rule in RULES.values() for s in rule.state}
    assert set(states) == sr.SIGNED | sr.UNSIGNED
    assert {name for name, s in states.items() if s.signed} == sr.SIGNED


# ------------------------------------------------------------- kernel helpers vs references
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("n", HELPER_SIZES)
@pytest.mark.parametrize("key", [None, *KEYS], ids=lambda k: "nearest" if k is None else f"key{k:x}")
def test_kernel_bf16_round(key, n, threads, rng):
    x = float32_patterns()[rng.integers(0, 2**16 * 6 + 2**18, n)]
    x[: n // 2] = rng.standard_normal(n // 2)
    expected = sr.bf16_nearest(x) if key is None else sr.bf16_stochastic(x, key)
    for dst in (np.full(n, 7, np.uint16).view(BFLOAT16), np.full(n, 7, np.uint16)):
        _kernels.bf16_round(x, dst, key=key, num_threads=threads)
        assert_bitwise_equal(dst.view(np.uint16), expected.view(np.uint16))


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("n", HELPER_SIZES)
def test_kernel_bf16_widen(n, threads, rng):
    src = rng.integers(0, 2**16, n, dtype=np.uint16)
    src[: min(n, 2**16)] = np.arange(min(n, 2**16), dtype=np.uint16)
    for view in (src.view(BFLOAT16), src):
        dst = np.full(n, 7, np.float32)
        _kernels.bf16_widen(view, dst, num_threads=threads)
        assert_bitwise_equal(dst, sr.bf16_widen(src))


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("n", HELPER_SIZES)
@pytest.mark.parametrize("kind", ["normal", "zeros", "negzero", "nonfinite"])
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_kernel_blockwise_round_trip(signed, kind, n, threads, rng):
    x = block_data(n, kind, rng)
    x = x if signed else np.abs(x)
    want_codes, want_absmax = sr.quantize_blockwise(x, signed)
    codes, absmax = np.full(n, 77, np.uint8), np.full(want_absmax.size, 7, np.float32)
    _kernels.quantize_blockwise(x, codes, absmax, signed, num_threads=threads)
    assert_bitwise_equal(codes, want_codes, "codes")
    assert_bitwise_equal(absmax, want_absmax, "absmax")
    dst = np.full(n, 7, np.float32)
    _kernels.dequantize_blockwise(codes, absmax, dst, signed, num_threads=threads)
    assert_bitwise_equal(dst, sr.dequantize_blockwise(codes, absmax, signed))


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("n", HELPER_SIZES)
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_kernel_dequantize_any_codes(signed, n, threads, rng):
    codes = rng.integers(0, 256, n, dtype=np.uint8)
    absmax = np.exp2(rng.integers(-140, 120, -(-n // BLOCK))).astype(np.float32)
    absmax[::3] = np.nan
    dst = np.empty(n, np.float32)
    _kernels.dequantize_blockwise(codes, absmax, dst, signed, num_threads=threads)
    assert_bitwise_equal(dst, sr.dequantize_blockwise(codes, absmax, signed))


def test_kernel_rounding_key():
    for seed, stream, step in [(0, 0, 1), (1, 0, 1), (2**64 - 1, 7, 10**9), (12345, 2**31, 3)]:
        assert _kernels.rounding_key(seed, stream, step) == sr.rounding_key(seed, stream, step)


def test_kernel_stochastic_rounding_does_not_depend_on_threads(rng):
    x = rng.standard_normal(3 * 2**16 + 5).astype(np.float32)
    first = bits(rounded("kernel", x, KEYS[3], 1))
    for threads in (2, 3, 4, 7):
        assert_bitwise_equal(bits(rounded("kernel", x, KEYS[3], threads)), first)
    assert_bitwise_equal(first, bits(sr.bf16_stochastic(x, KEYS[3])))


# ------------------------------------------------------- optimizer steps with compressed storage
STORAGE_OPTIONS = ("state_dtype", "master_weights", "stochastic_rounding", "seed")
# (parameter dtype, storage options)
STORAGE = [
    ("float32", dict(state_dtype="bfloat16")),
    ("float32", dict(state_dtype="int8")),
    ("bfloat16", dict()),
    ("bfloat16", dict(state_dtype="float32")),
    ("bfloat16", dict(state_dtype="int8")),
    ("bfloat16", dict(master_weights=True)),
    ("bfloat16", dict(master_weights=True, state_dtype="int8")),
    ("bfloat16", dict(stochastic_rounding=True, seed=1234)),
    ("bfloat16", dict(stochastic_rounding=True, seed=2**64 - 1, state_dtype="int8")),
]
# (optimizer, config): Adagrad's initial_accumulator_value is exact in bf16 and int8, so the reference may
# start from it in float32.
STORAGE_CASES = [
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.01, momentum=0.9, nesterov=True, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.05)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("Lion", dict(lr=0.01, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
    ("RMSprop", dict(lr=0.01)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.5)),
    ("Adamax", dict(lr=0.01)),
    ("NAdam", dict(lr=0.01)),
    ("RAdam", dict(lr=0.01)),
    ("Adadelta", dict()),
    ("ADOPT", dict(lr=0.01, weight_decay=0.1, decouple=True)),
    ("ADOPT", dict(lr=0.01, clip=False)),
    ("AdEMAMix", dict(lr=0.01, beta3_warmup=3, alpha_warmup=3, weight_decay=0.1)),
    ("SGDScheduleFree", dict(lr=0.1, weight_decay=0.1, warmup_steps=2)),
    ("AdamWScheduleFree", dict(lr=0.01, weight_decay=0.1, r=1.0)),
]
# The state arrays that start as a copy of the parameters, not as a constant (and stay in float32).
FROM_PARAM = {"SGDScheduleFree": ("z",), "AdamWScheduleFree": ("z",)}


def _id(value):
    return "-".join(f"{k}={v}" for k, v in value.items()) or "default"


def start(n, param_dtype, steps, rng):
    """Initial parameters and ``steps`` gradients, of ``param_dtype``."""
    dtype = BFLOAT16 if param_dtype == "bfloat16" else np.dtype(param_dtype)
    p0 = rng.standard_normal(n).astype(np.float32).astype(dtype)
    return p0, [rng.standard_normal(n).astype(np.float32).astype(dtype) for _ in range(steps)]


class Mirror:
    """The mixed-storage reference of one single-slot optimizer, stepped alongside it."""

    def __init__(self, name, opt, p0, options):
        self.ref_step = OPTIMIZERS[name][1]
        self.from_param = FROM_PARAM.get(name, ())
        self.hyper = {k: v for k, v in opt.param_groups[0].items() if k not in ("params", *STORAGE_OPTIONS)}
        self.state_dtype = resolve_state_dtype(options.get("state_dtype"), p0.dtype, "p")
        self.master = options.get("master_weights", False)
        self.seed = options.get("seed") if options.get("stochastic_rounding") else None
        self.p, self.state, self.steps = p0.copy(), {}, 0

    def step(self, g):
        self.steps += 1
        key = None if self.seed is None else sr.rounding_key(self.seed, 0, self.steps)
        self.p, self.state = sr.mixed_step(self.ref_step, self.p, g, self.state, self.steps, self.hyper,
                                           state_dtype=self.state_dtype, master_weights=self.master, key=key,
                                           from_param=self.from_param, full_precision=self.from_param)

    def check(self, opt, p, what):
        assert_bitwise_equal(p, self.p, f"param {what}")
        state = opt.state[0]
        counted = {"step"} if self.seed is not None and self.steps else set()  # stochastic rounding counts steps
        assert set(state) == set(self.state) | counted, what
        layout = opt.state_layout(0)
        for key, value in self.state.items():
            if isinstance(value, np.ndarray):
                assert_bitwise_equal(state[key], value, f"{key} {what}")
                assert layout[key] == (value.shape, value.dtype), key
            else:
                assert state[key] == value, key


def run_storage(name, config, storage, n, threads, rng):
    param_dtype, options = storage
    p0, grads = start(n, param_dtype, OPTIMIZERS[name][3], rng)
    p = p0.copy()
    opt = OPTIMIZERS[name][0]([p], **config, **options)
    mirror = Mirror(name, opt, p0, options)
    for step, g in enumerate(grads, 1):
        with fastopt.threads(threads):
            opt.step([g])
        mirror.step(g)
        mirror.check(opt, p, f"after step {step}")


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("n", [0, 1, 255, 257])
@pytest.mark.parametrize("storage", STORAGE, ids=lambda s: f"{s[0]}-{_id(s[1])}")
@pytest.mark.parametrize("name, config", STORAGE_CASES, ids=lambda v: v if isinstance(v, str) else _id(v))
def test_storage_step_matches_mixed_reference(name, config, storage, n, threads, rng):
    run_storage(name, config, storage, n, threads, rng)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("name, config, storage", [
    ("Adam", dict(lr=0.01, amsgrad=True), STORAGE[-1]),
    ("SGD", dict(lr=0.05, momentum=0.9), STORAGE[6]),
], ids=["Adam-bf16-int8-SR", "SGD-bf16-master-int8"])
def test_storage_step_matches_mixed_reference_large(name, config, storage, threads, rng):
    run_storage(name, config, storage, 2**20 + 3, threads, rng)


def test_storage_step_does_not_depend_on_threads(rng):
    p0, grads = start(3 * 2**16 + 5, "bfloat16", 3, rng)
    assert_same_on_any_thread_count(
        lambda p: fastopt.Adam([p], lr=0.01, state_dtype="int8", stochastic_rounding=True, seed=9), p0, grads,
        (1, 2, 3, 4))


# ------------------------------------------------------------------------- resume
@pytest.mark.parametrize("how", ["state_dict", "checkpoint"])
@pytest.mark.parametrize("name, config, storage", [
    ("Adam", dict(lr=0.01), STORAGE[-1]),
    ("SGD", dict(lr=0.05, momentum=0.9), STORAGE[1]),
    ("Lion", dict(lr=0.01), STORAGE[7]),
    ("RMSprop", dict(lr=0.01, centered=True), STORAGE[6]),
], ids=["Adam-int8-SR", "SGD-f32-int8", "Lion-SR", "RMSprop-master-int8"])
def test_resume_is_bit_exact(name, config, storage, how, rng, tmp_path):
    param_dtype, options = storage
    cls = OPTIMIZERS[name][0]
    p0, grads = start(700, param_dtype, 6, rng)
    straight = p0.copy()
    opt = cls([straight], **config, **options)
    for g in grads:
        opt.step([g])

    first = p0.copy()
    opt1 = cls([first], **config, **options)
    for g in grads[:3]:
        opt1.step([g])
    resumed = np.zeros_like(p0)
    other = {**options, "seed": 99} if "seed" in options else options  # the seed comes from the state
    opt2 = cls([resumed], **config, **other)
    if how == "state_dict":
        saved = opt1.state_dict()
        if options.get("stochastic_rounding"):
            assert saved["seed"] == options["seed"]
        resumed[...] = first
        opt2.load_state_dict(saved)
    else:
        fastopt.save(tmp_path / "ckpt.npz", [first], opt1)
        fastopt.load(tmp_path / "ckpt.npz", [resumed], opt2)
    for g in grads[3:]:
        opt2.step([g])
    assert_bitwise_equal(resumed, straight)
    assert set(opt2.state[0]) == set(opt.state[0])
    for key, value in opt.state[0].items():
        if isinstance(value, np.ndarray):
            assert_bitwise_equal(opt2.state[0][key], value, key)
        else:
            assert opt2.state[0][key] == value, key


# ----------------------------------------------------------------------- refusals
@pytest.mark.parametrize("dtype, options, match", [
    (np.float64, dict(state_dtype="int8"), "state_dtype"),
    (np.float64, dict(state_dtype="bfloat16"), "state_dtype"),
    (np.float32, dict(state_dtype="float64"), "state_dtype"),
    (np.float32, dict(state_dtype="int4"), "state_dtype"),
    (np.float32, dict(state_dtype="float16"), "state_dtype"),
    (np.float32, dict(state_dtype=np.float16), "state_dtype"),
    (np.float32, dict(state_dtype=3), "state_dtype"),
    (np.float32, dict(state_dtype=object()), "state_dtype"),
    (np.float32, dict(master_weights=True), "master_weights"),
    (np.float64, dict(master_weights=True), "master_weights"),
    (BFLOAT16, dict(master_weights=True, stochastic_rounding=True), "master_weights|stochastic_rounding"),
], ids=lambda v: _id(v) if isinstance(v, dict) else getattr(v, "__name__", None) if not isinstance(v, str) else "")
@pytest.mark.parametrize("cls", [fastopt.Adam, fastopt.SGD, fastopt.Lion], ids=lambda c: c.__name__)
def test_refusals(cls, dtype, options, match):
    with pytest.raises((ValueError, TypeError), match=match) as refused:
        cls([np.zeros(4, dtype)], lr=0.1, **options)
    assert "unexpected keyword" not in str(refused.value)  # refused for what it asks, not for the option's name


@pytest.mark.parametrize("spelling", [np.int8, np.dtype(np.int8), BFLOAT16, np.float32])
def test_state_dtype_may_be_a_dtype(spelling, rng):
    name = {np.dtype(np.int8): "int8", BFLOAT16: "bfloat16"}.get(np.dtype(spelling), "float32")
    p0, grads = start(300, "bfloat16", 2, rng)
    a, b = p0.copy(), p0.copy()
    opt_a, opt_b = fastopt.Adam([a], lr=0.01, state_dtype=spelling), fastopt.Adam([b], lr=0.01, state_dtype=name)
    for g in grads:
        opt_a.step([g])
        opt_b.step([g])
    assert_bitwise_equal(a, b)
    assert {k: v.dtype for k, v in opt_a.state[0].items() if isinstance(v, np.ndarray)} == \
        {k: v.dtype for k, v in opt_b.state[0].items() if isinstance(v, np.ndarray)}


# ------------------------------------------------------------- state dicts and pickles
def test_an_int8_state_array_comes_with_its_absmax_or_is_refused(rng):
    p = rng.standard_normal(300).astype(np.float32)
    opt = fastopt.Adam([p], amsgrad=True, state_dtype="int8")
    opt.step([np.ones_like(p)])
    saved = opt.state_dict()
    for missing in ("exp_avg_absmax", "max_exp_avg_sq_absmax", "max_exp_avg_sq"):
        broken = {**saved, "state": {0: {k: v for k, v in saved["state"][0].items() if k != missing}}}
        with pytest.raises(ValueError, match="lacks"):
            fastopt.Adam([p.copy()], amsgrad=True, state_dtype="int8").load_state_dict(broken)


def test_an_optimizer_pickled_before_the_storage_options_still_loads():
    import pickle
    p = np.ones(4, np.float32)
    opt = fastopt.Adam([p], lr=0.1)
    opt.step([np.ones_like(p)])
    state = opt.__getstate__()
    old = {"params": state["params"], "defaults": state["defaults"], "skip_nonfinite": True,
           "state_dict": state["state_dict"]}  # the layout of __getstate__ before state_dtype and friends
    restored = fastopt.Adam.__new__(fastopt.Adam)
    restored.__setstate__(old)
    assert restored.skip_nonfinite and restored.state_dtype is None and restored.state[0]["step"] == 1
    assert pickle.loads(pickle.dumps(fastopt.Adam([p], state_dtype="int8"))).state_dtype == "int8"
