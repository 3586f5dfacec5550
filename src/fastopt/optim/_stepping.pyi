"""Type stub of the compiled fastopt.optim._stepping (src/fastopt/optim/_stepping.pyx)."""
from typing import Any, Final, final

from numpy.typing import NDArray

from fastopt._update_rules import BoundStep
from fastopt.optim.optimizer import Optimizer

@final
class SlotBinding:
    # Read-only (cdef readonly): a new binding is made when anything changes.
    @property
    def kernel(self) -> BoundStep: ...
    @property
    def version(self) -> int: ...
    @property
    def grad(self) -> NDArray[Any]: ...
    @property
    def arrays(self) -> tuple[tuple[str, NDArray[Any]], ...]: ...
    def __init__(self, kernel: BoundStep, version: int, grad: NDArray[Any],
                 arrays: tuple[tuple[str, NDArray[Any]], ...]) -> None: ...
    def holds(self, state: dict[str, Any]) -> bool: ...

MAX_STEP: Final[int]

def step_slots(optimizer: Optimizer, grads: list[NDArray[Any] | None], num_threads: int) -> None: ...
def _next_step(optimizer: Optimizer, index: int, step: object) -> int: ...
