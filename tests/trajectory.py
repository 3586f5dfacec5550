"""The problem the 300-step trajectory tests run every optimizer on, against its peer.

Two tensors, each element with its own quadratic plus a sine: the gradient
depends on the parameters, so a difference in an update shows along the
whole trajectory, and at small step sizes the iteration contracts, so an ulp
stays an ulp.
"""
import numpy as np


def problem(seed=2024):
    """(initial values, scales, targets): one list entry per tensor, shapes (7, 5) and (11,)."""
    rng = np.random.default_rng(seed)
    shapes = [(7, 5), (11,)]
    inits = [rng.standard_normal(s) for s in shapes]
    scales = [rng.uniform(0.5, 2.0, s) for s in shapes]
    targets = [rng.standard_normal(s) for s in shapes]
    return inits, scales, targets


def gradient(p, scale, target):
    """The gradient of sum(scale p**2 / 2 - cos(3 p) / 6 - target p) at ``p``."""
    return scale * p + 0.5 * np.sin(3.0 * p) - target
