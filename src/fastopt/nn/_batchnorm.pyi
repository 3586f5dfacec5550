"""Type stub of the compiled fastopt.nn._batchnorm (src/fastopt/nn/_batchnorm.pyx)."""
from typing import Any, TypeAlias, TypedDict, type_check_only

import numpy as np
from numpy.typing import NDArray

# 1-D contiguous arrays of the input's dtype, float32 or float64 (every such array of one call has the same one).
_Floats: TypeAlias = NDArray[np.float32 | np.float64]

@type_check_only
class _Layout(TypedDict):
    rows: bool
    packed_rows: int
    tile_rows: int
    tile_width: int
    tasks: int
    threads: int

def first_overlap(arrays: list[NDArray[Any] | None], n_written: int) -> tuple[int, int] | None: ...
def layout(N: int, C: int, S: int, itemsize: int, num_threads: int = 1) -> _Layout: ...
def forward(x: _Floats, y: _Floats, weight: _Floats | None, bias: _Floats | None, running_mean: _Floats | None,
            running_var: _Floats | None, mean: NDArray[np.float64], inv_std: NDArray[np.float64], N: int, C: int,
            S: int, training: bool, momentum: float, eps: float, num_threads: int = 1) -> None: ...
def eval_statistics(running_mean: _Floats, running_var: _Floats, eps: float, mean: NDArray[np.float64],
                    inv_std: NDArray[np.float64]) -> None: ...
def backward(dy: _Floats, x: _Floats, dx: _Floats, weight: _Floats | None, mean: NDArray[np.float64],
             inv_std: NDArray[np.float64], dweight: _Floats | None, dbias: _Floats | None, N: int, C: int, S: int,
             training: bool, accumulate: bool = False, num_threads: int = 1) -> None: ...
