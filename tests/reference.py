"""Plain NumPy references for every kernel.

Each function performs the same IEEE operations, in the same order and the
same precision, as the Cython kernel it mirrors (and as torch.optim's
single-tensor code), so the kernels must match it bit for bit: the build
disables floating-point contraction.  Scalars computed in double precision
(bias corrections, step sizes) are converted to the array's dtype explicitly,
as the kernels do once per call.  Each takes the state as arrays and returns
new arrays; nothing is modified in place.
"""
import math

import numpy as np


def _direction(g, p, weight_decay, maximize):
    # A weight decay that rounds to zero in the parameter's precision is no decay (torch would still add
    # 0 * p, which only differs where p is infinite or NaN).
    t = p.dtype.type
    d = -g if maximize else g
    return d + t(weight_decay) * p if t(weight_decay) != 0 else d


def _decayed(p, lr, weight_decay):
    decay = p.dtype.type(1.0 - lr * weight_decay)
    return p * decay if decay != 1 else p


def _lerp(start, end, weight):
    """torch.lerp with a scalar weight."""
    w = start.dtype.type(weight)
    if abs(w) < 0.5:
        return start + w * (end - start)
    return end - (end - start) * (start.dtype.type(1) - w)


def _maximum(a, b):
    return np.maximum(a, b)  # propagates NaN, like torch.maximum


def _adam_moments(p, g, m, v, lr, betas, weight_decay, decoupled_weight_decay, maximize):
    """The start shared by Adam, NAdam and RAdam: (decayed p, direction, new m, new v)."""
    t = p.dtype.type
    beta1, beta2 = betas
    if decoupled_weight_decay and weight_decay != 0:
        p = _decayed(p, lr, weight_decay)
    d = _direction(g, p, 0.0 if decoupled_weight_decay else weight_decay, maximize)
    return p, d, _lerp(m, d, 1.0 - beta1), v * t(beta2) + (t(1.0 - beta2) * d) * d


def sgd(p, g, buf, *, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
        maximize=False):
    """(param, momentum_buffer); ``buf`` None means the buffer does not exist yet."""
    t = p.dtype.type
    d = _direction(g, p, weight_decay, maximize)
    if momentum != 0:
        buf = d.copy() if buf is None else buf * t(momentum) + t(1.0 - dampening) * d
        d = d + t(momentum) * buf if nesterov else buf
    return p + t(-lr) * d, buf


def adagrad(p, g, state_sum, step, *, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10, maximize=False,
            initial_accumulator_value=0.0):
    """(param, state_sum) after step ``step`` (from 1); ``state_sum`` starts full of initial_accumulator_value."""
    t = p.dtype.type
    d = _direction(g, p, weight_decay, maximize)
    clr = lr / (1 + (step - 1) * lr_decay)
    state_sum = state_sum + d * d
    return p + (t(-clr) * d) / (np.sqrt(state_sum) + t(eps)), state_sum


def rmsprop(p, g, square_avg, buf, grad_avg, *, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
            momentum=0.0, centered=False, maximize=False):
    """(param, square_avg, momentum_buffer, grad_avg); unused buffers pass through."""
    t = p.dtype.type
    d = _direction(g, p, weight_decay, maximize)
    square_avg = square_avg * t(alpha) + (t(1.0 - alpha) * d) * d
    if centered:
        grad_avg = _lerp(grad_avg, d, 1.0 - alpha)
        avg = np.sqrt(square_avg - grad_avg * grad_avg) + t(eps)
    else:
        avg = np.sqrt(square_avg) + t(eps)
    if momentum > 0:
        buf = buf * t(momentum) + d / avg
        p = p + t(-lr) * buf
    else:
        p = p + (t(-lr) * d) / avg
    return p, square_avg, buf, grad_avg


def adam(p, g, m, v, vmax, step, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
         amsgrad=False, maximize=False, decoupled_weight_decay=False):
    """(param, exp_avg, exp_avg_sq, max_exp_avg_sq) after step ``step`` (from 1)."""
    t = p.dtype.type
    beta1, beta2 = betas
    p, d, m, v = _adam_moments(p, g, m, v, lr, betas, weight_decay, decoupled_weight_decay, maximize)
    denom_v = v
    if amsgrad:
        vmax = _maximum(vmax, v)
        denom_v = vmax
    # torch divides by sqrt(bias_correction2); multiplying by its reciprocal (within an ulp of
    # that) spares a division per element, which is what an in-cache Adam step is bound by.
    inv_bc2_sqrt = t((1.0 - beta2**step) ** -0.5)
    neg_step_size = t(-(lr / (1.0 - beta1**step)))
    return p + (neg_step_size * m) / (np.sqrt(denom_v) * inv_bc2_sqrt + t(eps)), m, v, vmax


def adamax(p, g, m, u, step, *, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False):
    """(param, exp_avg, exp_inf)."""
    t = p.dtype.type
    beta1, beta2 = betas
    d = _direction(g, p, weight_decay, maximize)
    m = _lerp(m, d, 1.0 - beta1)
    u = _maximum(u * t(beta2), np.abs(d) + t(eps))
    return p + (t(-(lr / (1.0 - beta1**step))) * m) / u, m, u


def nadam(p, g, m, v, step, mu_product, *, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
          momentum_decay=4e-3, decoupled_weight_decay=False, maximize=False):
    """(param, exp_avg, exp_avg_sq, mu_product); ``mu_product`` is 1.0 before the first step."""
    t = p.dtype.type
    beta1, beta2 = betas
    bc2 = 1.0 - beta2**step
    p, d, m, v = _adam_moments(p, g, m, v, lr, betas, weight_decay, decoupled_weight_decay, maximize)
    mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
    mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
    mu_product *= mu
    denom = np.sqrt(v / t(bc2)) + t(eps)
    p = p + (t(-lr * (1.0 - mu) / (1.0 - mu_product)) * d) / denom
    p = p + (t((-lr * mu_next) / (1.0 - mu_product * mu_next)) * m) / denom
    return p, m, v, mu_product


def radam(p, g, m, v, step, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
          decoupled_weight_decay=False, maximize=False):
    """(param, exp_avg, exp_avg_sq)."""
    t = p.dtype.type
    beta1, beta2 = betas
    p, _, m, v = _adam_moments(p, g, m, v, lr, betas, weight_decay, decoupled_weight_decay, maximize)
    bc1 = 1.0 - beta1**step
    bc2 = 1.0 - beta2**step
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * (beta2**step) / bc2
    u = (m / t(bc1)) * t(lr)
    if rho_t > 5.0:
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        u = (u * (t(bc2**0.5) / (np.sqrt(v) + t(eps)))) * t(rect)
    return p - u, m, v


def adadelta(p, g, square_avg, acc_delta, *, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
    """(param, square_avg, acc_delta)."""
    t = p.dtype.type
    d = _direction(g, p, weight_decay, maximize)
    square_avg = square_avg * t(rho) + (t(1.0 - rho) * d) * d
    delta = (np.sqrt(acc_delta + t(eps)) / np.sqrt(square_avg + t(eps))) * d
    acc_delta = acc_delta * t(rho) + (t(1.0 - rho) * delta) * delta
    return p + t(-lr) * delta, square_avg, acc_delta


def lion(p, g, m, *, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False):
    """(param, exp_avg), after Chen et al. (2023), Algorithm 2."""
    t = p.dtype.type
    beta1, beta2 = betas
    d = -g if maximize else g
    c = m * t(beta1) + t(1.0 - beta1) * d
    sign = np.where(np.isnan(c), c, (c > 0).astype(p.dtype) - (c < 0).astype(p.dtype))
    p = _decayed(p, lr, weight_decay) + t(-lr) * sign
    return p, m * t(beta2) + t(1.0 - beta2) * d


def adopt(p, g, m, v, step, *, lr=1e-3, betas=(0.9, 0.9999), eps=1e-6, weight_decay=0.0, decouple=False,
          clip=True, maximize=False):
    """(param, exp_avg, exp_avg_sq) after step ``step`` (from 1), after Taniguchi et al. (2024)'s reference code."""
    t = p.dtype.type
    beta1, beta2 = betas
    d = _direction(g, p, 0.0 if decouple else weight_decay, maximize)
    if step == 1:
        return p, m, v + d * d
    n = d / np.maximum(np.sqrt(v), t(eps))
    if clip:
        c = t((step - 1.0) ** 0.25)
        n = np.where(n < -c, -c, np.where(n > c, c, n))  # torch.clamp: NaN stays NaN
    m = _lerp(m, n, 1.0 - beta1)
    if decouple and t(-lr * weight_decay) != 0:
        p = p + t(-lr * weight_decay) * p  # the reference's p.add_(p, alpha=-lr * weight_decay)
    return p + t(-lr) * m, m, v * t(beta2) + (t(1.0 - beta2) * d) * d


def ademamix(p, g, m1, m2, v, step, *, lr=1e-3, betas=(0.9, 0.999, 0.9999), alpha=2.0, beta3_warmup=0,
             alpha_warmup=0, eps=1e-8, weight_decay=0.0, maximize=False):
    """(param, exp_avg_fast, exp_avg_slow, exp_avg_sq) after step ``step`` (from 1), after Pagliardini et al.
    (2024)'s reference code, its warm-up schedulers included."""
    t = p.dtype.type
    beta1, beta2, beta3 = betas
    if step < (alpha_warmup or 0):
        alpha = (step / alpha_warmup) * alpha
    if step < (beta3_warmup or 0):
        w = step / beta3_warmup
        half_life = ((1.0 - w) * (math.log(0.5) / math.log(beta1 + 1e-8) - 1.0)
                     + w * (math.log(0.5) / math.log(beta3 + 1e-8) - 1.0))  # libm's log, as the kernel's
        beta3 = 0.5 ** (1.0 / (half_life + 1.0))
    d = -g if maximize else g
    m1 = m1 * t(beta1) + t(1.0 - beta1) * d
    m2 = m2 * t(beta3) + t(1.0 - beta3) * d
    v = v * t(beta2) + (t(1.0 - beta2) * d) * d
    u = (m1 / t(1.0 - beta1 ** step) + t(alpha) * m2) / (np.sqrt(v) / t(np.sqrt(1.0 - beta2 ** step)) + t(eps))
    if t(weight_decay) != 0:
        u = u + t(weight_decay) * p
    return p + t(-lr) * u, m1, m2, v


def _schedule_free_weight(step, averaging, lr, warmup_steps, r, weight_lr_power):
    """(lr_t, ckp1) of schedule-free step ``step`` (from 1); updates ``averaging`` = [weight_sum, lr_max] in place,
    as the schedulefree package updates its group's."""
    lr_t = lr * (step / warmup_steps) if step <= warmup_steps else lr
    averaging[1] = max(lr_t, averaging[1])
    weight = (step ** r) * (averaging[1] ** weight_lr_power)
    averaging[0] += weight
    return lr_t, (weight / averaging[0] if averaging[0] != 0 else 0.0)


def sgd_schedule_free(p, g, z, step, averaging, *, lr=1.0, momentum=0.9, weight_decay=0.0, warmup_steps=0, r=0.0,
                      weight_lr_power=2.0, maximize=False):
    """(y, z) after step ``step`` (from 1), as schedulefree.SGDScheduleFree; ``averaging`` is updated in place."""
    t = p.dtype.type
    lr_t, ckp1 = _schedule_free_weight(step, averaging, lr, warmup_steps, r, weight_lr_power)
    d = _direction(g, p, weight_decay, maximize)
    return _lerp(p, z, ckp1) + t(lr_t * (momentum * (1.0 - ckp1) - 1.0)) * d, z + t(-lr_t) * d


def adamw_schedule_free(p, g, z, v, step, averaging, *, lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                        warmup_steps=0, r=0.0, weight_lr_power=2.0, maximize=False):
    """(y, z, exp_avg_sq) after step ``step`` (from 1), as schedulefree.AdamWScheduleFree; ``averaging`` is
    updated in place."""
    t = p.dtype.type
    beta1, beta2 = betas
    lr_t, ckp1 = _schedule_free_weight(step, averaging, lr, warmup_steps, r, weight_lr_power)
    d = -g if maximize else g
    v = v * t(beta2) + (t(1.0 - beta2) * d) * d
    u = d / (np.sqrt(v / t(1.0 - beta2**step)) + t(eps))
    if t(weight_decay) != 0:
        u = u + t(weight_decay) * p
    return _lerp(p, z, ckp1) + t(lr_t * (beta1 * (1.0 - ckp1) - 1.0)) * u, z + t(-lr_t) * u, v


# --------------------------------------------------------------------------
# The rules of fastopt._rules.TENSOR_RULES: each call steps a list of tensors (one entry per tensor of a slot)
# --------------------------------------------------------------------------
def _norm(x):
    return float(np.linalg.norm(x.astype(np.float64).ravel()))


def _trust_ratio(p, u, trust_coefficient=1.0, eps=0.0):
    """optax.scale_by_trust_ratio's factor: trust_coefficient |p| / (|u| + eps), 1 where either norm is 0."""
    pn, un = _norm(p), _norm(u)
    return 1.0 if pn == 0 or un == 0 else trust_coefficient * pn / (un + eps)


def lamb(params, grads, ms, vs, step, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, maximize=False):
    """optax.lamb: scale_by_adam, add_decayed_weights, scale_by_trust_ratio, scale_by_learning_rate."""
    (b1, b2), ratios = betas, []
    for p, g, m, v in zip(params, grads, ms, vs):
        t = p.dtype.type
        d = -g if maximize else g
        m[...] = t(1.0 - b1) * d + t(b1) * m
        v[...] = t(1.0 - b2) * (d * d) + t(b2) * v
        u = (m / t(1.0 - b1**step)) / (np.sqrt(v / t(1.0 - b2**step)) + t(eps))
        if t(weight_decay) != 0:
            u = u + t(weight_decay) * p
        ratios.append(_trust_ratio(p, u))
        p += t(-lr) * (u * t(ratios[-1]))
    return ratios


def lars(params, grads, bufs, *, lr=1.0, momentum=0.9, weight_decay=0.0, trust_coefficient=1e-3, eps=0.0,
         nesterov=False, maximize=False):
    """optax.lars: add_decayed_weights, scale_by_trust_ratio, scale_by_learning_rate, trace."""
    ratios = []
    for p, g, b in zip(params, grads, bufs):
        t = p.dtype.type
        d = _direction(g, p, weight_decay, maximize)
        ratios.append(_trust_ratio(p, d, trust_coefficient, eps))
        u = t(-lr) * (d * t(ratios[-1]))
        b[...] = u + t(momentum) * b
        p += u + t(momentum) * b if nesterov else b
    return ratios


def adafactor_state(shape, dtype):
    """torch.optim.Adafactor's state of a tensor of ``shape``: {row_var, col_var} or {variance}, in its shapes."""
    if len(shape) > 1:
        return {"row_var": np.zeros(shape[:-1] + (1,), dtype), "col_var": np.zeros(shape[:-2] + (1,) + shape[-1:], dtype)}
    return {"variance": np.zeros(shape, dtype)}


def adafactor(params, grads, states, step, *, lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0,
              maximize=False):
    """torch.optim.Adafactor's single-tensor step (sums in float64); ``states`` from :func:`adafactor_state`."""
    for p, g, state in zip(params, grads, states):
        if p.size == 0:  # fastopt leaves an empty tensor alone (torch would fill an empty matrix's col_var with NaN)
            continue
        t = p.dtype.type
        dd = -g if maximize else g
        eps1 = float(np.finfo(p.dtype).eps) if eps[0] is None else eps[0]
        w = float(step) ** beta2_decay
        alpha = max(eps[1], _norm(p) / np.sqrt(p.size)) * min(lr, 1.0 / step**0.5)
        if weight_decay != 0 and t(1.0 - lr * weight_decay) != 1:
            p *= t(1.0 - lr * weight_decay)
        if p.ndim > 1:
            squares = dd.astype(np.float64) ** 2
            state["row_var"][...] = _lerp(state["row_var"], (squares.sum(-1, keepdims=True) / p.shape[-1]).astype(t), w)
            state["col_var"][...] = _lerp(state["col_var"], (squares.sum(-2, keepdims=True) / p.shape[-2]).astype(t), w)
            mean = (state["row_var"].astype(np.float64).sum(-2, keepdims=True) / p.shape[-2]).astype(t)
            v = (state["row_var"] * state["col_var"]) / np.maximum(mean, t(eps1))
        else:
            state["variance"][...] = _lerp(state["variance"], dd * dd, w)
            v = state["variance"]
        u = (t(1) / np.sqrt(np.maximum(v, t(eps1 * eps1)))) * dd
        p += t(-alpha / max(1.0, _norm(u) / (np.sqrt(u.size) * d))) * u


def prodigy_state(p):
    """A Prodigy slot's state arrays at its first step (p0: the parameters then)."""
    return {"exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p), "s": np.zeros_like(p), "p0": p.copy()}


def prodigy(params, grads, states, estimate, *, lr=1.0, betas=(0.9, 0.999), beta3=None, eps=1e-8, weight_decay=0.0,
            decouple=True, use_bias_correction=False, safeguard_warmup=False, d0=1e-6, d_coef=1.0,
            growth_rate=math.inf, maximize=False):
    """prodigyopt's Prodigy step for one group (sums in float64); ``states`` from :func:`prodigy_state`,
    ``estimate`` {"d", "d_max", "d_numerator", "k"} (start: d0, d0, 0, 0), updated in place."""
    b1, b2 = betas
    b3 = math.sqrt(b2) if beta3 is None else beta3
    d, d_max, k = estimate["d"], estimate["d_max"], estimate["k"]
    bias = math.sqrt(1 - b2 ** (k + 1)) / (1 - b1 ** (k + 1)) if use_bias_correction else 1.0
    dlr = d * lr * bias
    numerator, denominator = estimate["d_numerator"] * b3, 0.0
    es = []
    for p, g, st in zip(params, grads, states):
        t = p.dtype.type
        e = -g if maximize else g
        if not decouple and t(weight_decay) != 0:
            e = e + t(weight_decay) * p
        es.append(e)
        numerator += (d / d0) * dlr * float(np.dot(e.astype(np.float64).ravel(), (st["p0"] - p).astype(np.float64).ravel()))
        if b1 > 0:
            st["exp_avg"][...] = st["exp_avg"] * t(b1) + t(d * (1 - b1)) * e
        st["exp_avg_sq"][...] = st["exp_avg_sq"] * t(b2) + (t(d * d * (1 - b2)) * e) * e
        st["s"][...] = st["s"] * t(b3) + t((d / d0) * (d if safeguard_warmup else dlr)) * e
        denominator += float(np.abs(st["s"].astype(np.float64)).sum())
    if denominator == 0:
        return
    d_hat = d_coef * numerator / denominator
    if d == d0:
        d = max(d, d_hat)
    d_max = max(d_max, d_hat)
    d = min(d_max, d * growth_rate)
    for p, e, st in zip(params, es, states):
        t = p.dtype.type
        denom = np.sqrt(st["exp_avg_sq"]) + t(d * eps)
        if decouple and t(-weight_decay * dlr) != 0:
            p += t(-weight_decay * dlr) * p
        if b1 > 0:
            p += t(-dlr) * (st["exp_avg"] / denom)
        else:
            p += t(-dlr * d) * (e / denom)
    estimate.update(d=d, d_max=d_max, d_numerator=numerator, k=k + 1)


def muon_state(p, use_muon=True):
    """A Muon tensor's state: {"momentum_buffer"} for a matrix (2 or more dimensions), else AdamW's moments."""
    if use_muon and p.ndim >= 2:
        return {"momentum_buffer": np.zeros_like(p)}
    return {"exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p)}


def muon(params, grads, states, step, *, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
         ns_coefficients=(3.4445, -4.775, 2.0315), eps=1e-7, ns_steps=5, adjust_lr_fn=None, use_muon=True,
         adamw_lr=3e-4, adamw_betas=(0.9, 0.95), adamw_eps=1e-10, adamw_weight_decay=0.0):
    """torch.optim.Muon's step on the matrices (its Newton-Schulz iteration in the parameters' precision, not
    bfloat16), AdamW's on the other tensors; ``states`` from :func:`muon_state`."""
    a, b, c = ns_coefficients
    for p, g, st in zip(params, grads, states):
        if p.size == 0:
            continue
        if "exp_avg" in st:
            p[...], st["exp_avg"][...], st["exp_avg_sq"][...], _ = adam(
                p, g, st["exp_avg"], st["exp_avg_sq"], None, step, lr=adamw_lr, betas=adamw_betas, eps=adamw_eps,
                weight_decay=adamw_weight_decay, decoupled_weight_decay=True)
            continue
        buf = st["momentum_buffer"]
        buf[...] = _lerp(buf, g, 1.0 - momentum)
        update = _lerp(g, buf, momentum) if nesterov else buf
        rows, cols = p.shape[0], p.size // p.shape[0]
        x = update.reshape(rows, cols)
        if rows > cols:
            x = x.T
        x = x / max(float(np.linalg.norm(x)), eps)
        for _ in range(ns_steps):
            gram = x @ x.T
            update_gram = b * gram + c * (gram @ gram)  # torch.addmm(gram, gram, gram, beta=b, alpha=c)
            x = a * x + update_gram @ x                 # torch.addmm(x, update_gram, x, beta=a)
        if rows > cols:
            x = x.T
        ratio = math.sqrt(max(1.0, rows / cols)) if adjust_lr_fn in (None, "original") else 0.2 * math.sqrt(max(rows, cols))
        flat = p.reshape(rows, cols)
        flat *= p.dtype.type(1.0 - lr * weight_decay)
        flat += p.dtype.type(-lr * ratio) * x
