"""Building blocks around the optimizer: gradient clipping and batch normalization kernels."""
from fastopt.nn.batchnorm import BatchNorm, BatchNormCache, batch_norm_backward, batch_norm_forward
from fastopt.nn.clip import NonFiniteNormError, clip_grad_norm_, clip_grad_norm_per_array_, clip_grad_value_

__all__ = ["BatchNorm", "BatchNormCache", "NonFiniteNormError", "batch_norm_backward", "batch_norm_forward",
           "clip_grad_norm_", "clip_grad_norm_per_array_", "clip_grad_value_"]
