import numpy as np
import pytest

import fastopt

DTYPES = [np.float32, np.float64]
# 0 and 1 elements, an odd size inside one chunk, and a size spanning many
# chunks with a ragged last chunk (2**20 + 3).
SIZES = [0, 1, 7, 2**20 + 3]
THREADS = [1, 2, 3]


def same_for_all_threads(compute, thread_counts=THREADS):
    """``compute(threads)`` for each thread count; every result must have the same bits.  Returns the first."""
    results = [compute(t) for t in thread_counts]
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
    return results[0]


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _restore_threads():
    before = fastopt.get_num_threads()
    yield
    fastopt.set_num_threads(before)


@pytest.fixture(scope="module")
def playground_server():
    """The interactive playground's server on a free port, serving from a thread for the module's tests."""
    import threading

    from fastopt.playground.server import make_server

    server = make_server(port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)
