"""Type stub of the compiled fastopt._stream (src/fastopt/_stream.pyx)."""
from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

def stream(read: NDArray[np.float32 | np.float64], written: Iterable[NDArray[np.float32 | np.float64]],
           scale: float = 1e-3, num_threads: int = 1) -> None: ...
def axpy(a: NDArray[np.float32], b: NDArray[np.float32], scale: float, num_threads: int = 1) -> None: ...
