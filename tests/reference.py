"""Plain NumPy references for every kernel.

Each function performs the same IEEE operations, in the same order and the
same precision, as the Cython kernel it mirrors, so the kernels must match
it bit for bit (the build disables floating-point contraction).  Scalars are
converted to the array's dtype explicitly, as the kernels do once per call.
"""
import math

import numpy as np


def sgd(p, g, lr, weight_decay=0.0, maximize=False):
    """New parameter after one plain SGD step."""
    t = p.dtype.type
    d = -g if maximize else g
    if weight_decay != 0:
        d = d + t(weight_decay) * p
    return p + t(-lr) * d


def adam(p, g, m, v, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False):
    """(param, exp_avg, exp_avg_sq) after Adam step number ``step`` (from 1)."""
    t = p.dtype.type
    beta1, beta2 = betas
    d = -g if maximize else g
    if weight_decay != 0:
        d = d + t(weight_decay) * p
    w1 = 1.0 - beta1
    if w1 < 0.5:
        m = m + t(w1) * (d - m)
    else:
        m = d - (d - m) * t(1.0 - w1)
    v = v * t(beta2) + (t(1.0 - beta2) * d) * d
    bc2_sqrt = t(math.sqrt(1.0 - beta2**step))
    neg_step_size = t(-(lr / (1.0 - beta1**step)))
    p = p + (neg_step_size * m) / (np.sqrt(v) / bc2_sqrt + t(eps))
    return p, m, v
