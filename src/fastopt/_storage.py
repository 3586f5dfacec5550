"""Storage types: how parameters and optimizer state may be held in memory.

Every kernel computes in float32 or float64 registers; what varies is the
type an array is *stored* in, and so the bytes a step moves:

* parameters and gradients: float32, float64, or bfloat16
  (``ml_dtypes.bfloat16``, the NumPy dtype maintained by the JAX team);
* optimizer state: like the parameters, float32, bfloat16, or ``"int8"``:
  blockwise 8-bit codes (Dettmers et al., "8-bit Optimizers via Block-wise
  Quantization", 2022), one byte per element plus one float32 ``absmax`` per
  :data:`BLOCK` elements.  A state array named ``exp_avg`` is then held as
  ``exp_avg`` (the codes, uint8) and ``exp_avg_absmax`` (float32).

The code maps (which value each byte stands for) are described in
``csrc/fastopt_storage.h``, next to the conversions the kernels use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import ml_dtypes

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)
UINT8 = np.dtype(np.uint8)

# Elements per quantization block: one float32 absmax each (csrc/fastopt_storage.h: FASTOPT_BLOCK).
BLOCK = 256

# The dtypes parameters (and their gradients) may have.
PARAM_DTYPES = (FLOAT32, FLOAT64, BFLOAT16)
# The names state_dtype= accepts, and the parameter dtypes each one goes with.
STATE_DTYPES = {"float32": (FLOAT32, BFLOAT16), "float64": (FLOAT64,), "bfloat16": (FLOAT32, BFLOAT16),
                "int8": (FLOAT32, BFLOAT16)}
ABSMAX_SUFFIX = "_absmax"
MASTER = "master_param"  # the float32 master copy of bfloat16 parameters (master_weights=True)


def dtype_name(dtype: DTypeLike) -> str:
    """``"float32"``, ``"float64"`` or ``"bfloat16"`` for one of PARAM_DTYPES."""
    return "bfloat16" if dtype == BFLOAT16 else np.dtype(dtype).name


def absmax_length(n: int) -> int:
    """Blocks (absmax entries) of an int8 state array of ``n`` elements."""
    return -(-n // BLOCK)


def state_layout(name: str, n: int,
                 state_dtype: str) -> dict[str, tuple[tuple[int, ...], np.dtype[Any]]]:
    """``{key: (shape, dtype)}``: how a state array ``name`` of ``n`` elements is held in ``state_dtype``
    (a key of STATE_DTYPES: resolved, not None)."""
    if state_dtype not in STATE_DTYPES:
        raise ValueError(f"state_dtype must be one of {sorted(STATE_DTYPES)} here, got {state_dtype!r}")
    if state_dtype == "int8":
        return {name: ((n,), UINT8), name + ABSMAX_SUFFIX: ((absmax_length(n),), FLOAT32)}
    return {name: ((n,), BFLOAT16 if state_dtype == "bfloat16" else np.dtype(state_dtype))}


def resolve_state_dtype(state_dtype: str | None, param_dtype: DTypeLike, name: str) -> str:
    """The state storage (a key of STATE_DTYPES) for parameters of ``param_dtype``: ``None`` means theirs.

    Raises TypeError/ValueError naming ``name`` (the parameter) when the two do not go together.
    """
    if state_dtype is None:
        return dtype_name(param_dtype)
    if state_dtype not in STATE_DTYPES:
        raise ValueError(f"state_dtype must be None or one of {sorted(STATE_DTYPES)}, got {state_dtype!r}")
    if param_dtype not in STATE_DTYPES[state_dtype]:
        allowed = sorted(k for k, v in STATE_DTYPES.items() if param_dtype in v)
        raise ValueError(f"state_dtype={state_dtype!r} does not go with {dtype_name(param_dtype)} parameters "
                         f"({name}); for those: None or {allowed}")
    return state_dtype


def state_dtype_option(value: DTypeLike | None) -> str | None:
    """Normalize the ``state_dtype=`` option: None, one of STATE_DTYPES' names, or a dtype of one."""
    if value is None or isinstance(value, str):
        if value is not None and value not in STATE_DTYPES:
            raise ValueError(f"state_dtype must be None or one of {sorted(STATE_DTYPES)}, got {value!r}")
        return value
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise TypeError(f"state_dtype must be None, a string or a dtype, got {type(value).__name__}") from None
    if dtype == np.int8:
        return "int8"
    if dtype not in PARAM_DTYPES:
        raise ValueError(f"state_dtype must be None or one of {sorted(STATE_DTYPES)}, got {dtype}")
    return dtype_name(dtype)
