"""Type stub of the compiled fastopt.second_order._bounds (src/fastopt/second_order/_bounds.pyx).

Every array is C-contiguous float64 (1-D vectors; S, Y and M 2-D), except ``order`` and ``rows`` (intp).
"""
import numpy as np
from numpy.typing import NDArray

def project(out: NDArray[np.float64], x: NDArray[np.float64], lower: NDArray[np.float64],
            upper: NDArray[np.float64], stp: float = 0.0, d: NDArray[np.float64] | None = None,
            num_threads: int = 1) -> None: ...
def projected_gradient_norm(x: NDArray[np.float64], g: NDArray[np.float64], lower: NDArray[np.float64],
                            upper: NDArray[np.float64], num_threads: int = 1) -> float: ...
def breakpoints(t: NDArray[np.float64], d: NDArray[np.float64], x: NDArray[np.float64], g: NDArray[np.float64],
                lower: NDArray[np.float64], upper: NDArray[np.float64], num_threads: int = 1) -> float: ...
def max_step(x: NDArray[np.float64], d: NDArray[np.float64], lower: NDArray[np.float64],
             upper: NDArray[np.float64], big: float = 1e10, num_threads: int = 1) -> float: ...
def cauchy_walk(order: NDArray[np.intp], t: NDArray[np.float64], d: NDArray[np.float64], x: NDArray[np.float64],
                lower: NDArray[np.float64], upper: NDArray[np.float64], S: NDArray[np.float64],
                Y: NDArray[np.float64], rows: NDArray[np.intp], M: NDArray[np.float64], theta: float,
                p: NDArray[np.float64], c: NDArray[np.float64], f1: float, f2: float,
                nmoving: int) -> tuple[float, int]: ...
