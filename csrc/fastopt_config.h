/*
 * fastopt_config.h -- what the compiler was asked to build, seen from C.
 *
 * The kernels include this header (through src/fastopt/_parallel.pxd) so that
 * facts only the preprocessor knows -- whether OpenMP is on, which SIMD
 * instruction set the compiler targets, the flags setup.py passed -- are
 * available to Cython code and to `python -m fastopt info`.
 *
 * It also supplies serial stand-ins for the few OpenMP runtime calls fastopt
 * makes, so that a build without OpenMP compiles unchanged and runs on one
 * thread (Cython's prange already degrades to a plain loop without _OPENMP).
 */
#ifndef FASTOPT_CONFIG_H
#define FASTOPT_CONFIG_H

#ifdef _OPENMP
#include <omp.h>
#define FASTOPT_OPENMP_VERSION _OPENMP
#else
#define FASTOPT_OPENMP_VERSION 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_num_procs(void) { return 1; }
#endif

/* Widest vector register the compiler may use, in bytes, and its name. */
#if defined(__AVX512F__)
#define FASTOPT_SIMD_BYTES 64
#define FASTOPT_SIMD_NAME "AVX-512F"
#elif defined(__AVX2__)
#define FASTOPT_SIMD_BYTES 32
#define FASTOPT_SIMD_NAME "AVX2"
#elif defined(__AVX__)
#define FASTOPT_SIMD_BYTES 32
#define FASTOPT_SIMD_NAME "AVX"
#elif defined(__SSE2__) || defined(_M_X64)
#define FASTOPT_SIMD_BYTES 16
#define FASTOPT_SIMD_NAME "SSE2"
#elif defined(__ARM_NEON) || defined(__aarch64__)
#define FASTOPT_SIMD_BYTES 16
#define FASTOPT_SIMD_NAME "NEON"
#else
#define FASTOPT_SIMD_BYTES 0
#define FASTOPT_SIMD_NAME "none"
#endif

/* Whether this CPU and its OS run the code of each instruction-set build of
 * the update rules (see src/fastopt/_kernels.py, which picks one at import):
 * AVX2 + FMA, and AVX-512 F/BW/DQ/VL on top of those.  The CPU's feature bits
 * are not enough: the OS must also save the wider registers on a context
 * switch (XCR0: SSE and AVX state for AVX2; opmask and both halves of the
 * zmm registers as well for AVX-512), which older GCCs' __builtin_cpu_supports
 * does not check, so XCR0 is read here. */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>

static inline unsigned long long fastopt_xcr0(void) {
    unsigned int eax, ebx, ecx, edx, lo, hi;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_OSXSAVE)) {
        return 0;  /* no XGETBV: the OS manages no extended state */
    }
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static inline int fastopt_cpu_has_avx2(void) {
    __builtin_cpu_init();
    return (fastopt_xcr0() & 0x6) == 0x6 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static inline int fastopt_cpu_has_avx512(void) {
    return fastopt_cpu_has_avx2() && (fastopt_xcr0() & 0xe6) == 0xe6 && __builtin_cpu_supports("avx512f")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512vl");
}
#else
static inline int fastopt_cpu_has_avx2(void) { return 0; }
static inline int fastopt_cpu_has_avx512(void) { return 0; }
#endif

#ifndef FASTOPT_BUILD_FLAGS
#define FASTOPT_BUILD_FLAGS ""
#endif

#if defined(__clang__)
#define FASTOPT_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define FASTOPT_COMPILER "gcc " __VERSION__
#elif defined(_MSC_VER)
#define FASTOPT_COMPILER "msvc"
#else
#define FASTOPT_COMPILER "unknown"
#endif

/* Kernels split work into fixed chunks of this many bytes (1024 float32 or
 * 512 float64 elements), a multiple of the 64-byte cache line, so chunk
 * boundaries never depend on the thread count.  A thread is only woken for
 * at least FASTOPT_MIN_CHUNKS_PER_THREAD chunks (256 KiB), so arrays under
 * 512 KiB run on the calling thread without entering the OpenMP runtime.
 * fastopt's idle threads sleep (its OpenMP runtime is loaded with
 * OMP_WAIT_POLICY=PASSIVE unless the environment sets a policy) because in
 * a training loop the kernels run right after NumPy's matrix products, whose
 * BLAS threads keep spinning on the cores; waking a sleeping thread costs about 25 us on a 2-core AMD
 * EPYC VM, and a second thread pays for that from about 256K float32
 * elements on (python benchmarks/threads.py [--after-matmul]). */
#define FASTOPT_CHUNK_BYTES 4096
#define FASTOPT_MIN_CHUNKS_PER_THREAD 64
#define FASTOPT_CACHE_LINE 64

#endif /* FASTOPT_CONFIG_H */
