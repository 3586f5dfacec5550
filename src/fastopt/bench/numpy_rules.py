"""NumPy implementations of the benchmarked update rules, the way people write them.

``textbook`` follows the papers line by line and allocates a temporary for
every intermediate; ``inplace`` is the tuned version, with ``out=`` arguments
and one scratch array per tensor.  Both run tensor by tensor.  They exist to
be timed (tests check that they agree with fastopt to rounding).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from fastopt._typing import Array

RULES = ("sgd-momentum", "adagrad", "rmsprop", "adam", "adamw")  # the rules written here


def _bias(h: Mapping[str, Any], t: int) -> tuple[float, float]:
    beta1, beta2 = h["betas"]
    return 1 - beta1**t, 1 - beta2**t


def textbook(rule: str, params: Sequence[Array], grads: Sequence[Array], state: Sequence[Sequence[Array]], t: int,
             h: Mapping[str, Any]) -> None:
    lr = h["lr"]
    for p, g, s in zip(params, grads, state):
        if rule == "sgd-momentum":
            s[0][...] = h["momentum"] * s[0] + g
            p -= lr * s[0]
        elif rule == "adagrad":
            s[0] += g * g
            p -= lr * g / (np.sqrt(s[0]) + h["eps"])
        elif rule == "rmsprop":
            s[0][...] = h["alpha"] * s[0] + (1 - h["alpha"]) * g * g
            p -= lr * g / (np.sqrt(s[0]) + h["eps"])
        else:  # adam, adamw
            beta1, beta2 = h["betas"]
            bc1, bc2 = _bias(h, t)
            if rule == "adamw":
                p *= 1 - lr * h["weight_decay"]
            s[0][...] = beta1 * s[0] + (1 - beta1) * g
            s[1][...] = beta2 * s[1] + (1 - beta2) * g * g
            p -= lr * (s[0] / bc1) / (np.sqrt(s[1] / bc2) + h["eps"])


def inplace(rule: str, params: Sequence[Array], grads: Sequence[Array], state: Sequence[Sequence[Array]],
            scratch: Sequence[Array], t: int, h: Mapping[str, Any]) -> None:
    lr = h["lr"]
    for p, g, s, tmp in zip(params, grads, state, scratch):
        if rule == "sgd-momentum":
            s[0] *= h["momentum"]
            s[0] += g
            np.multiply(s[0], -lr, out=tmp)
            p += tmp
        elif rule in ("adagrad", "rmsprop"):
            np.multiply(g, g, out=tmp)
            if rule == "rmsprop":
                tmp *= 1 - h["alpha"]
                s[0] *= h["alpha"]
            s[0] += tmp
            np.sqrt(s[0], out=tmp)
            tmp += h["eps"]
            np.divide(g, tmp, out=tmp)
            tmp *= -lr
            p += tmp
        else:
            beta1, beta2 = h["betas"]
            bc1, bc2 = _bias(h, t)
            if rule == "adamw":
                p *= 1 - lr * h["weight_decay"]
            s[0] *= beta1
            np.multiply(g, 1 - beta1, out=tmp)
            s[0] += tmp
            np.multiply(g, g, out=tmp)
            tmp *= 1 - beta2
            s[1] *= beta2
            s[1] += tmp
            np.sqrt(s[1], out=tmp)
            tmp *= 1 / math.sqrt(bc2)  # a Python float keeps the pass in float32
            tmp += h["eps"]
            np.divide(s[0], tmp, out=tmp)
            tmp *= -lr / bc1
            p += tmp
