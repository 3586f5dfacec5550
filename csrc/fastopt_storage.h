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
 *   signed (first moments):    sign bit, 5-bit exponent, 2-bit mantissa:
 *                              magnitudes 1.25 * 2^-31 to 1 (those below
 *                              1.125 * 2^-31 become 0);
 *   unsigned (second moments): 6-bit exponent, 2-bit mantissa: 1.25 * 2^-63
 *                              to 1; a nonzero value never becomes 0 (it
 *                              becomes the smallest code), so the denominator
 *                              of an Adam-type update never collapses.
 * (Codes above 1, signed 125-127 and unsigned 253-255, are never written.)
 * The range is what a block needs when its gradients span many orders of
 * magnitude (9 decades of first moments, 19 of second moments, i.e. of
 * squared gradients); the price is a relative rounding error of at most 1/8
 * (the update's denominator, a square root, sees half of it).
 * Each code is the float32 bit pattern of a rounded to 2 mantissa bits (to
 * nearest, ties away from zero) and rebased, so encoding and decoding are a
 * few integer operations that vectorize, with no table search; a NumPy
 * reference reproduces them bit for bit (tests/storage_reference.py).  A
 * block whose values are not all finite stores absmax = NaN and codes 0: the
 * whole block reads back as NaN.  A block with no value of magnitude 2^-126
 * or more (all zeros or float32 subnormals) stores absmax = 0 and codes 0.
 *
 * Stochastic rounding adds 16 random bits below a float32's bfloat16 part
 * before truncating, so the rounded value is unbiased (a value beyond
 * bfloat16's largest finite one becomes inf, as it does rounded to nearest).  The bits come from a
 * counter-based hash of the element index and a 64-bit key
 * (fastopt_rounding_key(seed, stream, step)): the same for any thread count,
 * and reproducible from a checkpoint.
 *
 * Everything here is static inline and works on plain C arrays; the loops
 * are written so that GCC vectorizes them.
 */
#ifndef FASTOPT_STORAGE_H
#define FASTOPT_STORAGE_H

#include <Python.h>  /* first, as Python asks */
#include <stdint.h>
#include <string.h>

/* With AVX-512 F/BW the conversions below take explicit vector loops (GCC's own vectorization of the narrowing
 * stores costs several shuffles per vector); they compute exactly what the portable loops do, which finish the
 * last few elements.  (AVX-512 BF16's vcvtneps2bf16 is not used: it flushes subnormals and drops NaN payloads,
 * so its bits would differ from ml_dtypes' and from the other builds'.) */
#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#define FASTOPT_STORAGE_AVX512 1
#endif

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
    Py_ssize_t i = 0;
#ifdef FASTOPT_STORAGE_AVX512
    for (; i + 16 <= n; i += 16) {
        __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + i)));
        _mm512_storeu_si512((void *)(dst + i), _mm512_slli_epi32(h, 16));
    }
#endif
    for (; i < n; i++) dst[i] = fastopt_bf16_widen(src[i]);
}

static inline void fastopt_round_bf16(const float *src, uint16_t *dst, Py_ssize_t n) {
    Py_ssize_t i = 0;
#ifdef FASTOPT_STORAGE_AVX512
    const __m512i magnitude = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i one = _mm512_set1_epi32(1), half = _mm512_set1_epi32(0x7fff);
    const __m512i sign = _mm512_set1_epi32(0x8000), quiet = _mm512_set1_epi32(0x7fc0);
    for (; i + 16 <= n; i += 16) {
        __m512i b = _mm512_loadu_si512((const void *)(src + i));
        __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), one);
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(b, _mm512_add_epi32(half, lsb)), 16);
        __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(b, magnitude), inf);
        __m512i q = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(b, 16), sign), quiet);
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, r, q)));
    }
#endif
    for (; i < n; i++) dst[i] = fastopt_bf16_nearest(src[i]);
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
/* Each map keeps 2 mantissa bits: code = (rounded bits >> FASTOPT_CODE_SHIFT) - base, where the base moves
 * the smallest binade to 1. */
#define FASTOPT_CODE_SHIFT 21                        /* 23 float32 mantissa bits - 2 kept */
#define FASTOPT_CODE_ROUND (1u << (FASTOPT_CODE_SHIFT - 1))
#define FASTOPT_SIGNED_BASE ((127u - 31u) << 2)      /* 384: code 1 is 1.25 * 2^-31 (code 0 is zero) */
#define FASTOPT_UNSIGNED_BASE ((127u - 63u) << 2)    /* 256: code 1 is 1.25 * 2^-63 */

/* The bits of the largest |x| of a block (non-negative floats order as their bits do, NaN above inf). */
static inline uint32_t fastopt_block_top(const float *x, Py_ssize_t n) {
    uint32_t top = 0;
    Py_ssize_t i = 0;
#ifdef FASTOPT_STORAGE_AVX512
    __m512i vtop = _mm512_setzero_si512();
    const __m512i magnitude = _mm512_set1_epi32(0x7fffffff);
    for (; i + 16 <= n; i += 16) {
        vtop = _mm512_max_epu32(vtop, _mm512_and_si512(_mm512_loadu_si512((const void *)(x + i)), magnitude));
    }
    top = _mm512_reduce_max_epu32(vtop);
#endif
    for (; i < n; i++) {
        uint32_t a = fastopt_bits(x[i]) & 0x7fffffffu;
        top = a > top ? a : top;
    }
    return top;
}

/* Every decision below is on bits, not float compares, so that a caller compiled with -ffast-math gets the
 * same codes.  (Under flush-to-zero, a block whose absmax is 2^126 or more would lose its subnormal
 * ratios: fastopt never turns flush-to-zero on.) */
static inline void fastopt_encode_block_as(const float *x, uint8_t *q, float *absmax, Py_ssize_t n,
                                           const int is_signed) {
    uint32_t top = fastopt_block_top(x, n);
    if (top >= 0x7f800000u || top < 0x00800000u) {  /* not finite; or zeros and subnormals (1/top overflows) */
        *absmax = fastopt_float(top >= 0x7f800000u ? 0x7fc00000u : 0u);
        memset(q, 0, (size_t)n);
        return;
    }
    *absmax = fastopt_float(top);
    float inv = 1.0f / fastopt_float(top);
    Py_ssize_t i = 0;
#ifdef FASTOPT_STORAGE_AVX512
    const __m512i magnitude = _mm512_set1_epi32(0x7fffffff), round = _mm512_set1_epi32(FASTOPT_CODE_ROUND);
    const __m512i base = _mm512_set1_epi32(is_signed ? FASTOPT_SIGNED_BASE : FASTOPT_UNSIGNED_BASE);
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1), sign = _mm512_set1_epi32(0x80);
    const __m512i unit = _mm512_set1_epi32(0x3f800000);
    const __m512 vinv = _mm512_set1_ps(inv);
    for (; i + 16 <= n; i += 16) {
        __m512i b = _mm512_loadu_si512((const void *)(x + i));
        __m512i mag = _mm512_and_si512(b, magnitude);
        __m512i ab = _mm512_min_epu32(_mm512_castps_si512(_mm512_mul_ps(_mm512_castsi512_ps(mag), vinv)), unit);
        __m512i c = _mm512_sub_epi32(_mm512_srli_epi32(_mm512_add_epi32(ab, round), FASTOPT_CODE_SHIFT), base);
        if (is_signed) {
            c = _mm512_or_si512(_mm512_max_epi32(c, zero), _mm512_and_si512(_mm512_srli_epi32(b, 24), sign));
        } else {
            c = _mm512_max_epi32(c, _mm512_maskz_mov_epi32(_mm512_test_epi32_mask(mag, mag), one));
        }
        _mm_storeu_si128((__m128i *)(q + i), _mm512_cvtepi32_epi8(c));
    }
#endif
    for (; i < n; i++) {
        uint32_t b = fastopt_bits(x[i]), mag = b & 0x7fffffffu;
        uint32_t ab = fastopt_bits(fastopt_float(mag) * inv);
        ab = ab < 0x3f800000u ? ab : 0x3f800000u;  /* a = min(|x| / absmax, 1), on its bits */
        uint32_t rounded = (ab + FASTOPT_CODE_ROUND) >> FASTOPT_CODE_SHIFT;
        if (is_signed) {
            int32_t c = (int32_t)rounded - (int32_t)FASTOPT_SIGNED_BASE;
            q[i] = (uint8_t)(((b >> 24) & 0x80u) | (uint32_t)(c > 0 ? c : 0));
        } else {
            int32_t c = (int32_t)rounded - (int32_t)FASTOPT_UNSIGNED_BASE;
            q[i] = (uint8_t)(c > 0 ? (uint32_t)c : (uint32_t)(mag != 0));  /* a nonzero x never becomes 0 */
        }
    }
}

static inline void fastopt_decode_block_as(const uint8_t *q, float absmax, float *x, Py_ssize_t n,
                                           const int is_signed) {
    Py_ssize_t i = 0;
#ifdef FASTOPT_STORAGE_AVX512
    const __m512i base = _mm512_set1_epi32(is_signed ? FASTOPT_SIGNED_BASE : FASTOPT_UNSIGNED_BASE);
    const __m512i low = _mm512_set1_epi32(0x7f), sign = _mm512_set1_epi32(0x80);
    const __m512 scale = _mm512_set1_ps(absmax);
    for (; i + 16 <= n; i += 16) {
        __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + i)));
        __m512i m = is_signed ? _mm512_and_si512(c, low) : c;
        __m512i mag = _mm512_maskz_mov_epi32(_mm512_test_epi32_mask(m, m),
                                             _mm512_slli_epi32(_mm512_add_epi32(m, base), FASTOPT_CODE_SHIFT));
        if (is_signed) mag = _mm512_or_si512(mag, _mm512_slli_epi32(_mm512_and_si512(c, sign), 24));
        _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_castsi512_ps(mag), scale));
    }
#endif
    for (; i < n; i++) {
        uint32_t m = is_signed ? (q[i] & 0x7fu) : q[i];
        uint32_t mag = m ? (m + (is_signed ? FASTOPT_SIGNED_BASE : FASTOPT_UNSIGNED_BASE)) << FASTOPT_CODE_SHIFT : 0u;
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

/* n elements from a block boundary (whole blocks, the last one possibly short): absmax has one per block. */
static inline void fastopt_encode(const float *x, uint8_t *q, float *absmax, Py_ssize_t n, int is_signed) {
    for (Py_ssize_t first = 0; first < n; first += FASTOPT_BLOCK) {
        Py_ssize_t m = n - first < FASTOPT_BLOCK ? n - first : FASTOPT_BLOCK;
        fastopt_encode_block(x + first, q + first, absmax + first / FASTOPT_BLOCK, m, is_signed);
    }
}

static inline void fastopt_decode(const uint8_t *q, const float *absmax, float *x, Py_ssize_t n, int is_signed) {
    for (Py_ssize_t first = 0; first < n; first += FASTOPT_BLOCK) {
        Py_ssize_t m = n - first < FASTOPT_BLOCK ? n - first : FASTOPT_BLOCK;
        fastopt_decode_block(q + first, absmax[first / FASTOPT_BLOCK], x + first, m, is_signed);
    }
}

#endif /* FASTOPT_STORAGE_H */
