"""Plain NumPy references for the storage types of issue 14: bfloat16 and blockwise int8.

Every function follows one paragraph of the storage contract ("Bit-exact
definitions" in the issue's spec; the constants live in fastopt._storage)
and reproduces it bit for bit with wrapping uint32/uint64 array arithmetic,
so the kernels must agree with it exactly.  Nothing is modified in place.
"""
import numpy as np

from fastopt._storage import ABSMAX_SUFFIX, BFLOAT16, BLOCK, MASTER

U32, U64 = np.uint32, np.uint64
# Which code map a state array uses (spec: "signed (first moments)" / "unsigned (second moments)"),
# as fixed by State.signed in fastopt._rules.
SIGNED = frozenset({"exp_avg", "momentum_buffer", "grad_avg", "exp_avg_fast", "exp_avg_slow", "z"})
UNSIGNED = frozenset({"exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum", "exp_inf", "acc_delta"})


def _bits(x):
    """The float32 bits of ``x`` (uint32 array)."""
    return np.ascontiguousarray(x, dtype=np.float32).view(U32)


def _nan_bf16(b):
    """Spec, f32 -> bf16: a NaN becomes the quiet NaN 0x7fc0 with its sign."""
    return (U32(0x7FC0) | ((b >> U32(31)) << U32(15)))


def _is_nan(b):
    return (b & U32(0x7FFFFFFF)) > U32(0x7F800000)


def bf16_nearest(x):
    """Spec "f32 -> bf16, round to nearest even": (b + 0x7fff + ((b >> 16) & 1)) >> 16, NaN -> 0x7fc0 | sign.

    Returns a bfloat16 array (ml_dtypes' own conversion gives the same bits).
    """
    b = _bits(x)
    out = np.where(_is_nan(b), _nan_bf16(b), (b + U32(0x7FFF) + ((b >> U32(16)) & U32(1))) >> U32(16))
    return out.astype(np.uint16).view(BFLOAT16)


def bf16_widen(x):
    """Spec "bf16 -> f32: bits << 16" (exact; NaN payloads kept).  Takes bfloat16 or its uint16 view."""
    return (np.ascontiguousarray(x).view(np.uint16).astype(U32) << U32(16)).view(np.float32)


def lowbias32(x):
    """Spec "lowbias32": x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16 (uint32)."""
    x = np.asarray(x, dtype=U32).copy()
    x ^= x >> U32(16)
    x *= U32(0x7FEB352D)
    x ^= x >> U32(15)
    x *= U32(0x846CA68B)
    x ^= x >> U32(16)
    return x


def splitmix64(z):
    """Spec "splitmix64(z)", wrapping uint64; takes and returns an int or a uint64 array."""
    scalar = np.isscalar(z)
    z = np.array(z, dtype=U64, ndmin=1)
    z = z + U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> U64(30))) * U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
    z = z ^ (z >> U64(31))
    return int(z[0]) if scalar else z


def rounding_key(seed, stream, step):
    """Spec "key = rounding_key(seed, stream, step) = splitmix64(splitmix64(splitmix64(seed) ^ stream) ^ step)".

    The optimizer uses stream = slot index, step = the step being taken (from 1).
    """
    return splitmix64(splitmix64(splitmix64(int(seed)) ^ int(stream)) ^ int(step))


def rounding_bits(key, index):
    """Spec, stochastic rounding: h = lowbias32(lo32(i) ^ lo32(k)); h = lowbias32(h ^ hi32(k) ^ hi32(i))."""
    i = np.asarray(index, dtype=np.int64).astype(U64)
    k = U64(int(key))
    lo = lambda v: (v & U64(0xFFFFFFFF)).astype(U32)  # noqa: E731
    hi = lambda v: (v >> U64(32)).astype(U32)  # noqa: E731
    h = lowbias32(lo(i) ^ lo(k))
    return lowbias32(h ^ hi(k) ^ hi(i))


def bf16_stochastic(x, key, offset=0):
    """Spec "Stochastic rounding f32 -> bf16": (b + (h & 0xffff)) >> 16 with h from (key, element index).

    Element j of ``x`` has index ``offset + j`` (its place in the slot's 1-D array); NaN as in nearest.
    """
    b = _bits(x)
    h = rounding_bits(key, offset + np.arange(b.size, dtype=np.int64))
    out = np.where(_is_nan(b), _nan_bf16(b), (b + (h & U32(0xFFFF))) >> U32(16))
    return out.astype(np.uint16).view(BFLOAT16)


def _blocks(n):
    return -(-n // BLOCK)


# Code = (float32 bits of |x|/absmax, rounded to 2 mantissa bits) >> 21, minus the map's base
# (csrc/fastopt_storage.h): signed 1 + 5 + 2 bits, unsigned 6 + 2 bits.
SIGNED_BASE, UNSIGNED_BASE = (127 - 31) << 2, (127 - 63) << 2


def quantize_blockwise(x, signed):
    """Spec "Int8 blockwise" encode: (codes uint8 (n,), absmax float32 (ceil(n/256),)).

    Blocks of 256 from index 0, the last one possibly shorter; a block whose absmax is not finite stores
    absmax NaN and codes 0, one whose absmax is below 2**-126 (zeros and subnormals) absmax 0 and codes 0;
    ``signed`` picks the first-moment map (sign bit + 7 bits), else the unsigned map.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, nb = x.size, _blocks(x.size)
    mag = np.zeros(nb * BLOCK, np.float32)
    mag[:n] = np.abs(x)
    absmax = mag.reshape(nb, BLOCK).max(axis=1) if nb else np.zeros(0, np.float32)
    bad = ~np.isfinite(absmax)
    tiny = absmax < np.float32(2.0 ** -126)
    absmax = np.where(bad, np.float32(np.nan), np.where(tiny, np.float32(0), absmax)).astype(np.float32)
    with np.errstate(all="ignore"):
        inv = np.where(absmax > 0, np.float32(1) / absmax, np.float32(0)).astype(np.float32)
        a = mag[:n] * np.repeat(inv, BLOCK)[:n]
    a = np.where(np.isnan(a), np.float32(0), np.minimum(a, np.float32(1)))
    c = ((_bits(a) + U32(1 << 20)) >> U32(21)).astype(np.int32)
    if signed:
        code = np.where(c - SIGNED_BASE >= 1, c - SIGNED_BASE, 0) | (np.signbit(x).astype(np.int32) << 7)
    else:
        code = np.where(c - UNSIGNED_BASE >= 1, c - UNSIGNED_BASE, (mag[:n] > 0).astype(np.int32))  # x != 0
    code[np.repeat(bad | tiny, BLOCK)[:n]] = 0
    return code.astype(np.uint8), absmax


def dequantize_blockwise(codes, absmax, signed):
    """Spec "Int8 blockwise" decode: float32 (n,); a NaN block decodes to NaN, code 128 (signed) to -0.0 * absmax."""
    q = np.ascontiguousarray(codes, dtype=np.uint8).astype(U32)
    scale = np.repeat(np.asarray(absmax, np.float32), BLOCK)[:q.size]
    m = q & U32(127) if signed else q
    mag = np.where(m == 0, U32(0), (m + U32(SIGNED_BASE if signed else UNSIGNED_BASE)) << U32(21)).astype(U32).view(np.float32)
    if signed:
        mag = np.where(q & U32(128), -mag, mag)
    return mag * scale


def decode_state(state, name, state_dtype):
    """Spec "A step with any non-native storage": state array ``name`` of a storage-form state dict, in float32."""
    if state_dtype == "int8":
        return dequantize_blockwise(state[name], state[name + ABSMAX_SUFFIX], name in SIGNED)
    value = state[name]
    return bf16_widen(value) if value.dtype == BFLOAT16 else value


def encode_state(name, value, state_dtype):
    """Spec "store ... states: bf16 nearest, or int8 blockwise encode": ``{key: array}`` in storage form."""
    if state_dtype == "int8":
        codes, absmax = quantize_blockwise(value, name in SIGNED)
        return {name: codes, name + ABSMAX_SUFFIX: absmax}
    return {name: bf16_nearest(value) if state_dtype == "bfloat16" else value.astype(state_dtype)}


def mixed_step(rule_reference, param, grad, state, step, hyper, *, state_dtype, master_weights=False,
               key=None, from_param=(), full_precision=()):
    """One step with compressed storage (spec: "A step with any non-native storage computes in float32").

    ``rule_reference(p, g, state, step, hyper) -> (p, state)`` is a float32 reference step in the optimizers'
    state layout (test_kernels.OPTIMIZERS); ``state`` is the slot's storage-form state (as optimizer.state[i]
    holds it: int8 arrays as codes + "<name>_absmax", bf16 arrays as bfloat16, the float32 master copy under
    MASTER).  p is loaded from the master copy (made from the parameters on the first step), else widened;
    states are decoded; after the update p is stored as float32, as the master copy plus its nearest bf16,
    stochastically rounded with ``key`` (element index = position in the slot), or bf16 nearest; states are
    encoded.  ``state_dtype`` is the resolved storage ("float32", "bfloat16" or "int8"), except for the state
    arrays named in ``full_precision``, kept in float32.  Those named in ``from_param`` (schedule-free's ``z``)
    start as the parameters.  Returns ``(new param, new state)``.
    """
    bf16 = param.dtype == BFLOAT16
    if master_weights:
        p = state[MASTER] if MASTER in state else bf16_widen(param)
    else:
        p = bf16_widen(param) if bf16 else param
    g = bf16_widen(grad) if grad.dtype == BFLOAT16 else grad
    names = [k for k, v in state.items() if isinstance(v, np.ndarray) and k != MASTER
             and not k.endswith(ABSMAX_SUFFIX)]
    floats = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    def storage(k):
        return "float32" if k in full_precision else state_dtype

    floats.update({k: decode_state(state, k, storage(k)) for k in names})
    for k in from_param:
        if k not in floats:
            floats[k] = decode_state(encode_state(k, p.astype(np.float32), storage(k)), k, storage(k))
    with np.errstate(all="ignore"):
        p, new = rule_reference(p.astype(np.float32), g.astype(np.float32), floats, step, hyper)
    out = {}
    for k, v in new.items():
        out.update(encode_state(k, v, storage(k)) if isinstance(v, np.ndarray) else {k: v})
    if master_weights:
        out[MASTER] = p
        return bf16_nearest(p), out
    if not bf16:
        return p, out
    return (bf16_nearest(p) if key is None else bf16_stochastic(p, key)), out
