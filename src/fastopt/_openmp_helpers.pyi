"""Type stub of the compiled fastopt._openmp_helpers (src/fastopt/_openmp_helpers.pyx)."""
from typing import TypedDict, type_check_only

@type_check_only
class _BuildInfo(TypedDict):
    compiler: str
    flags: str
    openmp: bool
    openmp_version: int
    simd: str
    simd_bytes: int
    chunk_bytes: int
    min_chunks_per_thread: int
    cache_line_bytes: int
    processors: int

def cpu_runs(isa: str) -> bool: ...
def openmp_enabled() -> bool: ...
def team_size(n: int, itemsize: int, requested: int) -> int: ...
def runtime_max_threads() -> int: ...
def build_info() -> _BuildInfo: ...
