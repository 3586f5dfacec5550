/*
 * fastopt_storage.h -- the storage types of fastopt's kernels, and their conversions.
 *
 * Kernels compute in float32 (or float64) registers; an array may be stored
 * in another type, converted on load and on store within the same pass over
 * memory:
 *
 *   FASTOPT_FLOAT32   float, as it is;
 *   FASTOPT_BFLOAT16  bfloat16 (the upper half of a float32; uint16_t here),
 *                     widened exactly on load, rounded on store to nearest
 *                     even (NaN becomes the quiet NaN 0x7fc0 with its sign),
 *                     bit for bit as ml_dtypes.bfloat16 converts, or
 *                     stochastically (below);
 *   FASTOPT_INT8      optimizer state only: one byte per element plus one
 *                     float32 absmax per FASTOPT_BLOCK elements (blocks start
 *                     at element 0; the last may be short), after Dettmers et
 *                     al., "8-bit Optimizers via Block-wise Quantization" (2022).
 *
 * The int8 code maps are 8-bit floats relative to the block's absmax: with a
 * = |x| / absmax in [0, 1],
 *   signed (first moments):    sign bit, 4-bit exponent, 3-bit mantissa:
 *                              magnitudes 1.125 * 2^-15 to 1; smaller ones
 *                              become 0;
 *   unsigned (second moments): 5-bit exponent, 3-bit mantissa: 1.125 * 2^-31
 *                              to 1; a positive value never becomes 0 (it
 *                              becomes the smallest code), so the denominator
 *                              of an Adam-type update never collapses.
 * Each code is the float32 bit pattern of a rounded to 3 mantissa bits (to
 * nearest, ties away from zero) and rebased, so encoding and decoding are a
 * few integer operations that vectorize, with no table search; a NumPy
 * reference reproduces them bit for bit (tests/storage_reference.py).  A
 * block whose values are not all finite stores absmax = NaN and codes 0: the
 * whole block reads back as NaN.  A block with no value of magnitude 2^-126
 * or more (all zeros or float32 subnormals) stores absmax = 0 and codes 0.
 *
 * Stochastic rounding adds 16 random bits below a float32's bfloat16 part
 * before truncating, so the rounded value is unbiased.  The bits come from a
 * counter-based hash of the element index and a 64-bit key
 * (fastopt_rounding_key(seed, stream, step)): the same for any thread count,
 * and reproducible from a checkpoint.
 *
 * Everything here is static inline and works on plain C arrays; the loops
 * are written so that GCC vectorizes them.
 */
#ifndef FASTOPT_STORAGE_H
#define FASTOPT_STORAGE_H

#include <stdint.h>
#include <string.h>
#include <Python.h>

#define FASTOPT_BLOCK 256
#define FASTOPT_MAX_STATE 8  /* state arrays a fastopt_storage describes: fixed, it is part of the C API */

enum { FASTOPT_FLOAT32 = 0, FASTOPT_BFLOAT16 = 1, FASTOPT_INT8 = 2 };

/* One array and how it is stored. */
typedef struct fastopt_buffer {
    int dtype;       /* FASTOPT_FLOAT32, FASTOPT_BFLOAT16 or FASTOPT_INT8 */
    void *data;      /* float, uint16_t (bfloat16) or uint8_t (int8 codes) elements; NULL: not used */
    float *absmax;   /* FASTOPT_INT8: one per FASTOPT_BLOCK elements; otherwise unused */
} fastopt_buffer;

/* The arrays of one stored-update call (fastopt_<rule>_update_stored). */
typedef struct fastopt_storage {
    fastopt_buffer param;      /* FASTOPT_FLOAT32 or FASTOPT_BFLOAT16 */
    fastopt_buffer grad;       /* FASTOPT_FLOAT32 or FASTOPT_BFLOAT16 */
    float *master;             /* bfloat16 parameters: their float32 master copy, updated in place and
                                  then rounded to nearest into param; NULL for none */
    int stochastic_rounding;   /* bfloat16 parameters without a master copy: round stochastically */
    uint64_t rounding_key;     /* ... with this key (fastopt_rounding_key) */
    fastopt_buffer state[FASTOPT_MAX_STATE];  /* the rule's state arrays in order (data NULL where unused) */
} fastopt_storage;

static inline uint32_t fastopt_bits(float x) { uint32_t u; memcpy(&u, &x, sizeof u); return u; }
static inline float fastopt_float(uint32_t u) { float x; memcpy(&x, &u, sizeof x); return x; }

/* ------------------------------------------------------------------------
 * Counter-based random bits
 * ------------------------------------------------------------------------ */
static inline uint64_t fastopt_splitmix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The key of one call: a user's seed, a stream (fastopt's optimizers use the slot's index) and the step. */
static inline uint64_t fastopt_rounding_key(uint64_t seed, uint64_t stream, uint64_t step) {
    return fastopt_splitmix64(fastopt_splitmix64(fastopt_splitmix64(seed) ^ stream) ^ step);
}

/* Chris Wellons' "lowbias32" integer hash. */
static inline uint32_t fastopt_lowbias32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

/* ------------------------------------------------------------------------
 * bfloat16
 * ------------------------------------------------------------------------ */
static inline float fastopt_bf16_widen(uint16_t h) { return fastopt_float((uint32_t)h << 16); }

/* NaN -> 0x7fc0 with its sign; else b + r, truncated (r: the rounding increment). */
static inline uint16_t fastopt_bf16_truncate(uint32_t b, uint32_t r) {
    uint16_t quiet = (uint16_t)(((b >> 16) & 0x8000u) | 0x7fc0u);
    uint16_t rounded = (uint16_t)((b + r) >> 16);
    return (b & 0x7fffffffu) > 0x7f800000u ? quiet : rounded;
}

static inline uint16_t fastopt_bf16_nearest(float x) {
    uint32_t b = fastopt_bits(x);
    return fastopt_bf16_truncate(b, 0x7fffu + ((b >> 16) & 1u));
}

static inline void fastopt_widen_bf16(const uint16_t *src, float *dst, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) dst[i] = fastopt_bf16_widen(src[i]);
}

static inline void fastopt_round_bf16(const float *src, uint16_t *dst, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) dst[i] = fastopt_bf16_nearest(src[i]);
}

/* Stochastic rounding of src[0..n) as the elements first, first + 1, ... of the array keyed by key. */
static inline void fastopt_round_bf16_stochastic(const float *src, uint16_t *dst, Py_ssize_t n, uint64_t key,
                                                 uint64_t first) {
    while (n > 0) {  /* in runs that share the index's upper 32 bits */
        uint64_t room = (((first >> 32) + 1) << 32) - first;
        Py_ssize_t len = (uint64_t)n < room ? n : (Py_ssize_t)room;
        uint32_t hi = (uint32_t)(first >> 32) ^ (uint32_t)(key >> 32), base = (uint32_t)first;
        for (Py_ssize_t i = 0; i < len; i++) {
            uint32_t h = fastopt_lowbias32((base + (uint32_t)i) ^ (uint32_t)key);
            h = fastopt_lowbias32(h ^ hi);
            dst[i] = fastopt_bf16_truncate(fastopt_bits(src[i]), h & 0xffffu);
        }
        src += len; dst += len; n -= len; first += len;
    }
}

/* ------------------------------------------------------------------------
 * Blockwise int8
 * ------------------------------------------------------------------------ */
/* Exponent rebasing of each map: code = (rounded bits >> 20) - base. */
#define FASTOPT_SIGNED_BASE 896u    /* (127 - 15) << 3 */
#define FASTOPT_UNSIGNED_BASE 768u  /* (127 - 31) << 3 */

/* The largest |x| of a block, or NaN if any of its values is not finite. */
static inline float fastopt_block_absmax(const float *x, Py_ssize_t n) {
    uint32_t top = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t a = fastopt_bits(x[i]) & 0x7fffffffu;  /* non-negative floats order as their bits do */
        top = a > top ? a : top;
    }
    return top >= 0x7f800000u ? fastopt_float(0x7fc00000u) : fastopt_float(top);
}

static inline void fastopt_encode_block_as(const float *x, uint8_t *q, float *absmax, Py_ssize_t n,
                                           const int is_signed) {
    float top = fastopt_block_absmax(x, n);
    if (!(top >= 0x1p-126f)) {  /* NaN, or nothing above the subnormals (whose reciprocal overflows) */
        *absmax = top == top ? 0.0f : top;
        memset(q, 0, (size_t)n);
        return;
    }
    *absmax = top;
    float inv = 1.0f / top;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t b = fastopt_bits(x[i]);
        float a = fastopt_float(b & 0x7fffffffu) * inv;
        a = a < 1.0f ? a : 1.0f;
        uint32_t rounded = (fastopt_bits(a) + 0x80000u) >> 20;
        if (is_signed) {
            int32_t c = (int32_t)rounded - (int32_t)FASTOPT_SIGNED_BASE;
            q[i] = (uint8_t)(((b >> 24) & 0x80u) | (uint32_t)(c > 0 ? c : 0));
        } else {
            int32_t c = (int32_t)rounded - (int32_t)FASTOPT_UNSIGNED_BASE;
            q[i] = (uint8_t)(c > 0 ? c : (a > 0.0f));
        }
    }
}

static inline void fastopt_decode_block_as(const uint8_t *q, float absmax, float *x, Py_ssize_t n,
                                           const int is_signed) {
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t m = is_signed ? (q[i] & 0x7fu) : q[i];
        uint32_t mag = m ? (m + (is_signed ? FASTOPT_SIGNED_BASE : FASTOPT_UNSIGNED_BASE)) << 20 : 0u;
        x[i] = fastopt_float(mag | (is_signed ? (uint32_t)(q[i] & 0x80u) << 24 : 0u)) * absmax;
    }
}

/* One block (n <= FASTOPT_BLOCK) of x as codes q and its absmax; the map is the signed one if is_signed. */
static inline void fastopt_encode_block(const float *x, uint8_t *q, float *absmax, Py_ssize_t n, int is_signed) {
    if (is_signed) fastopt_encode_block_as(x, q, absmax, n, 1);
    else fastopt_encode_block_as(x, q, absmax, n, 0);
}

static inline void fastopt_decode_block(const uint8_t *q, float absmax, float *x, Py_ssize_t n, int is_signed) {
    if (is_signed) fastopt_decode_block_as(q, absmax, x, n, 1);
    else fastopt_decode_block_as(q, absmax, x, n, 0);
}

#endif /* FASTOPT_STORAGE_H */
