"""Building blocks around the optimizer: gradient clipping and batch normalization kernels."""
from fastopt.nn.clip import NonFiniteNormError, clip_grad_norm_, clip_grad_norm_per_array_, clip_grad_value_

__all__ = ["NonFiniteNormError", "clip_grad_norm_", "clip_grad_norm_per_array_", "clip_grad_value_"]
