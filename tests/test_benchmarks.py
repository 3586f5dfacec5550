"""The benchmark scripts keep working (they are not timed here)."""
import pathlib
import runpy

import numpy as np
import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.skipif(not BENCHMARKS.exists(), reason="needs the source tree")
def test_thread_benchmark_kernels_run():
    module = runpy.run_path(str(BENCHMARKS / "threads.py"), run_name="benchmark")
    for fn in module["kernels"](5000, np.dtype(np.float32)).values():
        fn(2)
    assert module["time_once"](lambda t: None, 1, 3) >= 0


@pytest.mark.skipif(not BENCHMARKS.exists(), reason="needs the source tree")
def test_asv_classes_set_up_and_time():
    module = runpy.run_path(str(BENCHMARKS / "benchmarks.py"), run_name="benchmark")
    bench = module["OptimizerStep"]()
    bench.setup("adam", "1x10K", "fastopt")
    bench.time_step("adam", "1x10K", "fastopt")
    with pytest.raises(NotImplementedError):
        bench.setup("rmsprop", "1x10K", "torch-fused")  # torch has none (or is not installed)


@pytest.mark.skipif(not BENCHMARKS.exists(), reason="needs the source tree")
def test_asv_storage_classes_set_up_and_time():
    module = runpy.run_path(str(BENCHMARKS / "benchmarks.py"), run_name="benchmark")
    bench = module["StorageStep"]()
    for storage in module["StorageStep"].params[1]:
        bench.setup("adam", storage, "1x10K", "fastopt")
        bench.time_step("adam", storage, "1x10K", "fastopt")
    with pytest.raises(NotImplementedError):
        bench.setup("adam", "f32/f32", "1x10K", "bnb-adam8bit")  # int8 rows only


@pytest.mark.skipif(not BENCHMARKS.exists(), reason="needs the source tree")
def test_wrapper_benchmark_cases_run():
    module = runpy.run_path(str(BENCHMARKS / "wrappers.py"), run_name="benchmark")
    for fn in module["cases"](1000).values():
        fn()
