import contextlib
import os
import subprocess
import sys

import pytest

import fastopt

OPENMP = fastopt.build_info()["openmp"]


def more_than_one_thread():
    """Asking for threads > 1 warns only in a serial build."""
    if OPENMP:
        return contextlib.nullcontext()
    return pytest.warns(RuntimeWarning, match="without OpenMP")


def test_set_get_and_previous_value():
    before = fastopt.get_num_threads()
    with more_than_one_thread():
        assert fastopt.set_num_threads(3) == before
    assert fastopt.get_num_threads() == (3 if OPENMP else 1)


def test_context_manager_restores_on_exit_and_on_error():
    with more_than_one_thread():
        fastopt.set_num_threads(2)
    with fastopt.threads(1):
        assert fastopt.get_num_threads() == 1
    assert fastopt.get_num_threads() == (2 if OPENMP else 1)
    with pytest.raises(RuntimeError):
        with fastopt.threads(1):
            raise RuntimeError
    assert fastopt.get_num_threads() == (2 if OPENMP else 1)


@pytest.mark.parametrize("n, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError),
                                      ("2", TypeError)])
def test_bad_thread_counts(n, error):
    with pytest.raises(error):
        fastopt.set_num_threads(n)


@pytest.mark.skipif(not OPENMP, reason="serial build")
@pytest.mark.parametrize("value", ["1", "3"])
def test_omp_num_threads_is_honoured(value):
    env = dict(os.environ, OMP_NUM_THREADS=value)
    out = subprocess.run([sys.executable, "-c", "import fastopt; print(fastopt.get_num_threads())"],
                         env=env, capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == value
