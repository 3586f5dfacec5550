"""Type aliases of fastopt's public signatures (for annotations only: nothing here runs at import)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from fastopt.paramset import ParamSelection, ParamSet

__all__ = ["Array", "ArrayLike", "Grads", "NDArray", "ParamGroup", "Params", "Scalar", "StateDict"]

# A NumPy array of any dtype fastopt takes (float32, float64, bfloat16 through ml_dtypes).
Array = NDArray[Any]
# A learning rate, beta, ...: a Python or NumPy real.
Scalar = Union[float, np.floating[Any], np.integer[Any]]
# One parameter group: {"params": ..., "lr": ..., ...}, as in torch.optim.
ParamGroup = Mapping[str, Any]
# What an optimizer updates: a ParamSet, a selection of one, arrays (in a sequence or by name), or groups.
# One sequence type for arrays and groups: a literal list of group dicts whose values differ is inferred as a
# list of their join, which a union of two sequence types would refuse (a mix of both is refused at run time).
Params = Union["ParamSet", "ParamSelection", Sequence[Union[Array, ParamGroup]], Mapping[str, Array]]
# Gradients in the structure of ``Params`` (None: a ParamSet's own gradient buffer).
Grads = Union[None, Array, Sequence[Any], Mapping[str, Any]]
# What ``state_dict()`` returns and ``load_state_dict()`` takes.
StateDict = dict[str, Any]
