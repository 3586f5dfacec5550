"""What the extension was built with, and the OpenMP runtime's defaults."""
from fastopt._parallel cimport (
    FASTOPT_BUILD_FLAGS, FASTOPT_CACHE_LINE, FASTOPT_CHUNK_BYTES, FASTOPT_COMPILER,
    FASTOPT_MIN_CHUNKS_PER_THREAD,
    FASTOPT_OPENMP_VERSION, FASTOPT_SIMD_BYTES, FASTOPT_SIMD_NAME,
    fastopt_cpu_has_avx2, fastopt_cpu_has_avx512, omp_get_max_threads, omp_get_num_procs, split,
)


def cpu_runs(str isa):
    """True when this CPU and OS run the code of kernel build ``isa``: "baseline", "avx2" (AVX2 + FMA)
    or "avx512" (AVX-512 F, BW, DQ and VL, with AVX2 + FMA)."""
    if isa == "baseline":
        return True
    if isa == "avx2":
        return bool(fastopt_cpu_has_avx2())
    if isa == "avx512":
        return bool(fastopt_cpu_has_avx512())
    raise ValueError(f"unknown instruction set {isa!r}: baseline, avx2 or avx512")


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return FASTOPT_OPENMP_VERSION != 0


def team_size(Py_ssize_t n, Py_ssize_t itemsize, int requested):
    """The threads a kernel over ``n`` elements of ``itemsize`` bytes runs on when given ``requested``
    (``fastopt._parallel.split``'s rule: small arrays run on the calling thread alone)."""
    return split(n, itemsize, requested).team


def runtime_max_threads():
    """The OpenMP runtime's default team size (honours ``OMP_NUM_THREADS``); 1 without OpenMP."""
    return max(1, omp_get_max_threads())


def build_info():
    """Facts fixed when the extension was compiled, as a dict."""
    return {
        "compiler": FASTOPT_COMPILER.decode(),
        "flags": FASTOPT_BUILD_FLAGS.decode(),
        "openmp": FASTOPT_OPENMP_VERSION != 0,
        "openmp_version": FASTOPT_OPENMP_VERSION,
        "simd": FASTOPT_SIMD_NAME.decode(),
        "simd_bytes": FASTOPT_SIMD_BYTES,
        "chunk_bytes": FASTOPT_CHUNK_BYTES,
        "min_chunks_per_thread": FASTOPT_MIN_CHUNKS_PER_THREAD,
        "cache_line_bytes": FASTOPT_CACHE_LINE,
        "processors": omp_get_num_procs(),
    }
