"""Type stub of the compiled fastopt._memory (src/fastopt/_memory.pyx)."""
from typing import Any

import numpy as np
from numpy.typing import NDArray

def byte_span(arr: NDArray[Any]) -> tuple[int, int]: ...
def gather(dst: NDArray[np.uint8], offsets: NDArray[np.intp], sources: NDArray[np.uintp],
           lengths: NDArray[np.intp], num_threads: int) -> None: ...
