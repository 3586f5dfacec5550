"""Trajectories of the rules torch.optim lacks, against their authors' algorithms written with torch ops.

Where no package of the rule is installed here, the peer is the reference
implementation's update, step for step, in torch (its operations and their
order, not fastopt's formula): 300 steps in float64 on a problem whose
gradient depends on the parameters, so a difference in the update shows
along the whole trajectory.  The largest relative difference must stay
below 1e-9: the two differ only where torch's vectorized ops round
differently (its fused ``lerp``), which is 1e-16 on most cases here, up to a
few 1e-12 where ADOPT's clip bound is active (its steps then behave like
signs, which amplify an ulp).
"""
import math

import numpy as np
import pytest

import fastopt
from trajectory import gradient, problem

torch = pytest.importorskip("torch")

STEPS = 300



def adopt_reference(params, lr=1e-3, betas=(0.9, 0.9999), eps=1e-6, weight_decay=0.0, decouple=False, clip=True,
                    maximize=False):
    """ADOPT as Taniguchi et al.'s reference code steps one tensor (its step counter starts at 0)."""
    beta1, beta2 = betas
    state = [dict(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p)) for p in params]

    def step():
        for p, st in zip(params, state):
            grad = -p.grad if maximize else p.grad
            if weight_decay != 0 and not decouple:
                grad = grad.add(p, alpha=weight_decay)
            if st["step"] == 0:
                st["exp_avg_sq"].addcmul_(grad, grad)
                st["step"] += 1
                continue
            if weight_decay != 0 and decouple:
                p.add_(p, alpha=-lr * weight_decay)
            normed = grad.div(torch.clamp(st["exp_avg_sq"].sqrt(), eps))
            if clip:
                bound = st["step"] ** 0.25
                normed.clamp_(-bound, bound)
            st["exp_avg"].lerp_(normed, 1 - beta1)
            p.add_(st["exp_avg"], alpha=-lr)
            st["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            st["step"] += 1

    return step


def ademamix_reference(params, lr=1e-3, betas=(0.9, 0.999, 0.9999), alpha=2.0, beta3_warmup=None,
                       alpha_warmup=None, eps=1e-8, weight_decay=0.0):
    """AdEMAMix as Pagliardini et al.'s reference code steps one tensor, with its warm-up schedulers."""
    beta1, beta2, beta3_final = betas
    state = [dict(step=0, fast=torch.zeros_like(p), slow=torch.zeros_like(p), sq=torch.zeros_like(p))
             for p in params]

    def half_life(beta):
        return math.log(0.5) / math.log(beta + 1e-8) - 1

    def step():
        for p, st in zip(params, state):
            st["step"] += 1
            t = st["step"]
            alpha_t, beta3 = alpha, beta3_final
            if alpha_warmup is not None and t < alpha_warmup:
                a = t / float(alpha_warmup)
                alpha_t = (1.0 - a) * 0 + a * alpha
            if beta3_warmup is not None and t < beta3_warmup:
                a = t / float(beta3_warmup)
                beta3 = math.pow(0.5, 1 / ((1.0 - a) * half_life(beta1) + a * half_life(beta3_final) + 1))
            if beta1 != 0.0:
                st["fast"].mul_(beta1).add_(p.grad, alpha=1 - beta1)
            else:  # the reference keeps no fast average then
                st["fast"] = p.grad
            st["slow"].mul_(beta3).add_(p.grad, alpha=1 - beta3)
            st["sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denom = (st["sq"].sqrt() / math.sqrt(1 - beta2 ** t)).add_(eps)
            update = (st["fast"].div(1 - beta1 ** t) + alpha_t * st["slow"]) / denom
            update.add_(p, alpha=weight_decay)
            p.add_(-lr * update)

    return step


PEERS = {"ADOPT": adopt_reference, "AdEMAMix": ademamix_reference}
CASES = [
    ("ADOPT", dict()),
    ("ADOPT", dict(lr=0.01, weight_decay=0.1, decouple=True)),
    ("ADOPT", dict(lr=0.01, weight_decay=0.05, clip=False, betas=(0.5, 0.99), maximize=False)),
    ("ADOPT", dict(lr=0.003, betas=(0.9, 0.5), eps=1e-3, maximize=True)),
    ("AdEMAMix", dict()),
    ("AdEMAMix", dict(lr=0.01, weight_decay=0.1, alpha=5.0, beta3_warmup=100, alpha_warmup=100)),
    ("AdEMAMix", dict(lr=0.003, betas=(0.5, 0.99, 0.999), alpha_warmup=50)),
    ("AdEMAMix", dict(lr=0.01, betas=(0.0, 0.99, 0.999), beta3_warmup=80)),
    ("ADOPT", dict(lr=0.01, betas=(0.9, 0.9))),  # v follows recent gradients: the clip bound matters
]


@pytest.mark.parametrize("name, config", CASES, ids=[f"{n}-{c}" for n, c in CASES])
def test_300_steps_match_the_reference_algorithm(name, config):
    inits, scales, targets = problem()
    sign = -1.0 if config.get("maximize") else 1.0  # maximize: climb -f, which has the same stable point

    ours = [p.copy() for p in inits]
    opt = getattr(fastopt, name)(ours, **config)
    theirs = [torch.tensor(p) for p in inits]
    peer_step = PEERS[name](theirs, **config)

    worst = 0.0
    for _ in range(STEPS):
        opt.step([sign * gradient(p, s, t) for p, s, t in zip(ours, scales, targets)])
        for tp, s, t in zip(theirs, scales, targets):
            tp.grad = torch.from_numpy(sign * gradient(tp.numpy(), s, t))
        peer_step()
        for p, tp in zip(ours, theirs):
            ref = tp.numpy()
            worst = max(worst, np.max(np.abs(p - ref)) / max(np.max(np.abs(ref)), 1e-300))
    assert worst <= 1e-9, f"largest relative difference along the trajectory: {worst:.3g}"
    moved = max(np.max(np.abs(p - p0)) for p, p0 in zip(ours, inits))
    assert moved > 100 * config.get("lr", 1e-3)  # the run went somewhere: not a trajectory of zeros
