"""Type stub of the compiled fastopt._tensorwise (src/fastopt/_tensorwise.pyx), and of its _avx2 and _avx512
builds (``fastopt._kernels.tensorwise`` is one of them)."""
from collections.abc import Iterable
from typing import Literal, TypeAlias, overload

import numpy as np
from numpy.typing import NDArray

# A 1-D contiguous array of the parameters' dtype (every array of one call has the same one).
_Floats: TypeAlias = NDArray[np.float32 | np.float64]

# prodigy_pass's state is (exp_avg, exp_avg_sq, s, p0) and its scalars twelve numbers (both checked at run time).
def pieces(bounds: Iterable[tuple[int, int]], itemsize: int) -> NDArray[np.intp]: ...
def lamb_step(param: _Floats, grad: _Floats, exp_avg: _Floats, exp_avg_sq: _Floats, pieces: NDArray[np.intp],
              ratios: NDArray[np.float64], lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
              maximize: bool, step: int, num_threads: int = 1) -> None: ...
def lars_step(param: _Floats, grad: _Floats, momentum_buffer: _Floats, pieces: NDArray[np.intp],
              ratios: NDArray[np.float64], lr: float, momentum: float, weight_decay: float,
              trust_coefficient: float, eps: float, nesterov: bool, maximize: bool,
              num_threads: int = 1) -> None: ...
def adafactor_step(param: _Floats, grad: _Floats, row_var: _Floats, col_var: _Floats, variance: _Floats,
                   descriptors: NDArray[np.intp], lr: float, beta2_decay: float, eps1: float, eps2: float,
                   d: float, weight_decay: float, maximize: bool, step: int, num_threads: int = 1) -> None: ...
@overload
def prodigy_pass(param: _Floats, grad: _Floats, state: tuple[_Floats, ...],
                 pieces: NDArray[np.intp], scalars: tuple[float, ...], use_exp_avg: bool, update: Literal[False],
                 num_threads: int = 1) -> tuple[float, float]: ...
@overload
def prodigy_pass(param: _Floats, grad: _Floats, state: tuple[_Floats, ...],
                 pieces: NDArray[np.intp], scalars: tuple[float, ...], use_exp_avg: bool, update: Literal[True],
                 num_threads: int = 1) -> None: ...
@overload
def prodigy_pass(param: _Floats, grad: _Floats, state: tuple[_Floats, ...],
                 pieces: NDArray[np.intp], scalars: tuple[float, ...], use_exp_avg: bool, update: bool,
                 num_threads: int = 1) -> tuple[float, float] | None: ...
