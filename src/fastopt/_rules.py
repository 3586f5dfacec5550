"""The update rules, declared once.

Every update rule fastopt has is one entry of :data:`RULES`: its
hyperparameters, its state arrays (and which settings use each), the extra
arguments its kernel takes, the per-step scalars it derives from them, and
its element-wise body.  Everything else is derived from this table:

* at build time, ``_codegen.py`` writes the kernels (``_update_rules.pyx``),
  their declarations (``_update_rules.pxd``), ``cython_kernels.pxd/.pyx``
  and the C header ``csrc/fastopt.h`` (structs, signatures, the C API
  table) from the templates beside them;
* at run time, the optimizers in ``fastopt.optim`` take their state arrays
  and hyperparameter checks from here; which optional state arrays a setting
  uses is decided by the generated ``needed()`` (and ``BoundStep``) with the
  very flag expressions the kernels branch on.

This module is plain Python with no imports from fastopt, so that setup.py
can load it before anything is compiled.

How a body is written
---------------------
A body is the Cython code of one loop iteration over element ``i``.  It
reads and writes ``p[i]`` (the parameter), reads ``g[i]`` (the gradient),
and reads and writes the state arrays by their names (``exp_avg[i]``...).
It may use the rule's scalars and flags by name, its ``locals`` (all of the
element type), and the element helpers of ``_update_rules.pyx.tp``
(``_sqrt``, ``_abs``, ``_maximum``, ``_clamp``, ``_sign``, ``_lerp``,
``_direction``, ``_decayed``).  Each body performs torch.optim's operations (its
single-tensor path) in the same order and in the parameter's precision; with
floating-point contraction off, kernel and NumPy reference
(``tests/reference.py``) agree bit for bit.

``setup`` is Cython code run once per call, in double precision, with the
hyperparameter struct as ``h`` and the rule's ``args`` in scope; each of
``scalars`` is then cast once to the element type, each of ``flags`` is a
``bint``.  A flag listed in ``specialize`` becomes a literal instead: the
kernel is compiled once per combination of those flags, so every copy of
the loop is free of that branch and vectorizes (GCC does not unswitch loops
this large by itself).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

# The C API's version: raise it whenever an entry already in the table changes (see csrc/fastopt.h).
ABI_VERSION = 1


@dataclass(frozen=True)
class Hyper:
    """A hyperparameter.

    ``check`` names its domain, as the Python optimizers validate it:
    "nonnegative" (a finite real >= 0), "real" (any finite real), "unit"
    (in [0, 1]), "beta" (in [0, 1): ``beta1``, ``beta2`` and, if there is
    one, ``beta3`` together are the optimizer's ``betas``), "steps" (a count
    of steps: an integer >= 0, or None, stored as 0), "flag" (a bool; an
    ``int`` in C), and for the rules of :data:`TENSOR_RULES` only
    "nonpositive" (a finite real <= 0), "positive" (a finite real > 0),
    "at_least_one" (a real >= 1, infinity included),
    "growth" (a real > 0, infinity included), "optional_beta" (None or in
    [0, 1)), "beta_pair" (a pair of decay rates under another name than
    ``betas``), "eps_pair" (Adafactor's ``eps``), and Muon's
    "real_triple", "ns_steps" and "adjust_lr".
    With ``kernel=False`` it is checked but the kernel never sees it (Adagrad's
    ``initial_accumulator_value`` fills the state array once).
    """

    name: str
    check: str = "nonnegative"
    kernel: bool = True

    @property
    def is_flag(self) -> bool:
        return self.check == "flag"


@dataclass(frozen=True)
class State:
    """A state array, as large as the parameter; ``c_name`` is its argument name in C where that differs.

    ``signed`` says whether it holds values of either sign (momenta) or only
    non-negative ones (second moments); int8 storage codes each with its own
    map (csrc/fastopt_storage.h).

    ``when`` is None for an array every step uses, else ``(flag, text)``:
    the array is used exactly when the rule's flag ``flag`` is true (the
    kernels and ``BoundStep`` evaluate the same expression), and ``text``
    says when it is not, for the documentation; kernels accept NULL for an
    array the settings do not use.
    """

    name: str
    when: Optional[Tuple[str, str]] = None
    c_name: str = ""
    signed: bool = False  # takes negative values (a first moment), which int8 storage codes with a sign bit

    @property
    def arg(self) -> str:
        return self.c_name or self.name


@dataclass(frozen=True)
class Arg:
    """An extra argument of a kernel, after its hyperparameters."""

    cython: str    # its declaration in Cython
    c: str         # ... and in C
    bound: str     # what BoundStep.run passes for it
    doc: str       # what a caller must know about it, for the generated comments ("" if its name says it)
    # The per-slot numbers it points to, kept in the optimizer's state between steps and updated in place by the
    # kernel: ((state name, value before the first step), ...); BoundStep.run passes them as ``running``.
    running: Tuple[Tuple[str, float], ...] = ()


ARGS = {
    "momentum_buffer_is_new": Arg(
        "bint momentum_buffer_is_new", "int momentum_buffer_is_new", "fresh",
        "the buffer holds garbage and is set to the gradient (plus weight decay), as on the first step with "
        "momentum (torch.optim.SGD clones the gradient into a missing buffer)"),
    "step": Arg("long long step", "long long step", "step", ""),  # counts from 1: fastopt.h says so for all
    "mu_product": Arg(
        "double* mu_product", "double *mu_product", "running",
        "the running product of the momentum coefficients, 1.0 before the first step; updated in place",
        running=(("mu_product", 1.0),)),
    "averaging": Arg(
        "double* averaging", "double *averaging", "running",
        "two numbers updated in place: the sum of the averaging weights (0.0 before the first step) and the "
        "largest learning rate so far (-1.0 before the first step)",
        running=(("weight_sum", 0.0), ("lr_max", -1.0))),
}


@dataclass(frozen=True)
class Rule:
    """One update rule: see the module docstring for how the fields are used."""

    name: str
    label: str            # its display name, as in the optimizer's class name; its struct is <label>Hyper
    origin: str           # where it comes from (the torch class or the paper), for the generated comments
    formula: str          # the update, one step per line, for the generated code's comments
    hyper: Tuple[Hyper, ...]
    state: Tuple[State, ...]
    body: str
    locals: str
    args: Tuple[str, ...] = ()
    setup: str = ""
    scalars: Tuple[Tuple[str, str], ...] = ()
    flags: Tuple[Tuple[str, str], ...] = ()
    specialize: Tuple[str, ...] = ()

    @property
    def state_names(self) -> Tuple[str, ...]:
        return tuple(s.name for s in self.state)

    @property
    def kernel_hyper(self) -> Tuple[Hyper, ...]:
        return tuple(h for h in self.hyper if h.kernel)

    @property
    def running(self) -> Tuple[Tuple[str, float], ...]:
        """``((name, initial value), ...)``: the per-slot numbers its kernel updates in place (see Arg.running)."""
        return tuple(pair for a in self.args for pair in ARGS[a].running)

    @property
    def switchable(self) -> Tuple[str, ...]:
        """The state arrays that only some settings use."""
        return tuple(s.name for s in self.state if s.when is not None)


_LR = Hyper("lr")
_WD = Hyper("weight_decay")
_EPS = Hyper("eps")
_BETAS = (Hyper("beta1", "beta"), Hyper("beta2", "beta"))
_MAXIMIZE = Hyper("maximize", "flag")
_DECOUPLED = Hyper("decoupled_weight_decay", "flag")
_EXP_AVG = State("exp_avg", signed=True)
# Schedule-free averaging (Defazio et al., 2024; the schedulefree package's SGDScheduleFree and
# AdamWScheduleFree): the step's learning rate after warmup, and the weight ckp1 of this step's point in the
# running average, from the weights' sum and the largest learning rate so far (kept in ``averaging``).
_SCHEDULE_FREE_HYPER = (Hyper("warmup_steps", "steps"), Hyper("r", "real"), Hyper("weight_lr_power"))
_SCHEDULE_FREE_SETUP = """cdef double lr_t = h.lr
if step <= h.warmup_steps:
    lr_t = h.lr * (<double>step / h.warmup_steps)
if lr_t > averaging[1]:
    averaging[1] = lr_t
cdef double weight = pow(<double>step, h.r) * pow(averaging[1], h.weight_lr_power)
averaging[0] = averaging[0] + weight
cdef double ckp1 = weight / averaging[0] if averaging[0] != 0 else 0.0"""
_SCHEDULE_FREE_FORMULA = """lr_t = lr min(1, t / warmup_steps) ;  lr_max = max(lr_max, lr_t) ;  c = t ** r lr_max ** weight_lr_power
weight_sum = weight_sum + c ;  ckp1 = c / weight_sum (0 while weight_sum is 0)"""

# The direction and the decay every rule with both kinds of weight decay derives the same way.
_SIGN = ("sign", "-1 if h.maximize else 1")
_L2 = ("l2", "h.weight_decay")
_L2_OR_DECOUPLED = (("l2", "0 if h.decoupled_weight_decay else h.weight_decay"),
                    ("decay", "(1.0 - h.lr * h.weight_decay) if h.decoupled_weight_decay else 1"))
_MOMENTS = (("w1", "1.0 - h.beta1"), ("beta2", "h.beta2"), ("one_minus_beta2", "1.0 - h.beta2"))
# ... and how Adam, NAdam and RAdam start each element: decay, direction, both moments (with their scalars).
_ADAM_MOMENTS = """
pi = _decayed(p[i], decay)
d = _direction(g[i], pi, sign, l2)
mi = _lerp(exp_avg[i], d, w1)
vi = exp_avg_sq[i] * beta2 + (one_minus_beta2 * d) * d
exp_avg[i] = mi
exp_avg_sq[i] = vi
"""

RULES = {rule.name: rule for rule in (
    Rule(
        "sgd", "SGD", "(torch.optim.SGD)",
        """d = ±g + wd p
b = d on the buffer's first use, else momentum b + (1 - dampening) d
d = d + momentum b (nesterov) or b
p = p + (-lr) d""",
        hyper=(_LR, Hyper("momentum"), Hyper("dampening", "real"), _WD, Hyper("nesterov", "flag"), _MAXIMIZE),
        state=(State("momentum_buffer", ("use_momentum", "when momentum is 0"), signed=True),),
        args=("momentum_buffer_is_new",),
        scalars=(_SIGN, _L2, ("momentum", "h.momentum"), ("one_minus_dampening", "1.0 - h.dampening"),
                 ("neg_lr", "-h.lr")),
        flags=(("use_momentum", "h.momentum != 0"), ("fresh", "momentum_buffer_is_new"),
               ("nesterov", "h.nesterov")),
        specialize=("use_momentum",),
        locals="d, b",
        body="""
d = _direction(g[i], p[i], sign, l2)
if use_momentum:
    b = d if fresh else momentum_buffer[i] * momentum + one_minus_dampening * d
    momentum_buffer[i] = b
    d = d + momentum * b if nesterov else b
p[i] = p[i] + neg_lr * d
"""),
    Rule(
        "adagrad", "Adagrad", "(torch.optim.Adagrad)",
        """d = ±g + wd p ;  s = s + d d ;  p = p + (-clr d) / (sqrt(s) + eps)
clr = lr / (1 + (t - 1) lr_decay)""",
        hyper=(_LR, Hyper("lr_decay"), _WD, _EPS, _MAXIMIZE, Hyper("initial_accumulator_value", kernel=False)),
        state=(State("sum", c_name="state_sum"),),
        args=("step",),
        scalars=(_SIGN, _L2, ("eps", "h.eps"), ("neg_clr", "-(h.lr / (1.0 + (step - 1) * h.lr_decay))")),
        locals="d, si",
        body="""
d = _direction(g[i], p[i], sign, l2)
si = state_sum[i] + d * d
state_sum[i] = si
p[i] = p[i] + (neg_clr * d) / (_sqrt(si) + eps)
"""),
    Rule(
        "rmsprop", "RMSprop", "(torch.optim.RMSprop)",
        """d = ±g + wd p ;  v = alpha v + ((1 - alpha) d) d
centered: a = lerp(a, d, 1 - alpha), avg = sqrt(v - a a) + eps ; else avg = sqrt(v) + eps
momentum: b = momentum b + d / avg, p = p + (-lr) b ; else p = p + (-lr d) / avg""",
        hyper=(_LR, Hyper("alpha"), _EPS, _WD, Hyper("momentum"), Hyper("centered", "flag"), _MAXIMIZE),
        state=(State("square_avg"),
               State("momentum_buffer", ("use_momentum", "when momentum is 0"), signed=True),
               State("grad_avg", ("centered", "when not centered"), signed=True)),
        scalars=(_SIGN, _L2, ("alpha", "h.alpha"), ("one_minus_alpha", "1.0 - h.alpha"), ("eps", "h.eps"),
                 ("momentum", "h.momentum"), ("neg_lr", "-h.lr")),
        flags=(("use_momentum", "h.momentum > 0"), ("centered", "h.centered")),
        specialize=("use_momentum", "centered"),
        locals="d, vi, ai, avg, b",
        body="""
d = _direction(g[i], p[i], sign, l2)
vi = square_avg[i] * alpha + (one_minus_alpha * d) * d
square_avg[i] = vi
if centered:
    ai = _lerp(grad_avg[i], d, one_minus_alpha)
    grad_avg[i] = ai
    avg = _sqrt(vi - ai * ai) + eps
else:
    avg = _sqrt(vi) + eps
if use_momentum:
    b = momentum_buffer[i] * momentum + d / avg
    momentum_buffer[i] = b
    p[i] = p[i] + neg_lr * b
else:
    p[i] = p[i] + (neg_lr * d) / avg
"""),
    Rule(
        "adam", "Adam", "/ AdamW (torch.optim.Adam; decoupled_weight_decay=True is AdamW)",
        """p = p (1 - lr wd) (decoupled) ;  d = ±g + wd p (otherwise)
m = lerp(m, d, 1 - beta1) ;  v = beta2 v + ((1 - beta2) d) d
vmax = maximum(vmax, v) (amsgrad, used in place of v below)
p = p + (-step_size m) / (sqrt(v) * bias_correction2 ** -0.5 + eps)
step_size = lr / (1 - beta1 ** t), bias_correction2 = 1 - beta2 ** t""",
        hyper=(_LR, *_BETAS, _EPS, _WD, Hyper("amsgrad", "flag"), _MAXIMIZE, _DECOUPLED),
        state=(_EXP_AVG, State("exp_avg_sq"), State("max_exp_avg_sq", ("amsgrad", "without amsgrad"))),
        args=("step",),
        setup="cdef double t = <double>step",
        scalars=(_SIGN, *_L2_OR_DECOUPLED, *_MOMENTS, ("inv_bc2_sqrt", "pow(1.0 - pow(h.beta2, t), -0.5)"),
                 ("eps", "h.eps"), ("neg_step_size", "-(h.lr / (1.0 - pow(h.beta1, t)))")),
        flags=(("amsgrad", "h.amsgrad"),),
        specialize=("amsgrad",),
        locals="pi, d, mi, vi",
        body=_ADAM_MOMENTS + """\
if amsgrad:
    vi = _maximum(max_exp_avg_sq[i], vi)
    max_exp_avg_sq[i] = vi
p[i] = pi + (neg_step_size * mi) / (_sqrt(vi) * inv_bc2_sqrt + eps)
"""),
    Rule(
        "adamax", "Adamax", "(torch.optim.Adamax)",
        """d = ±g + wd p ;  m = lerp(m, d, 1 - beta1) ;  u = maximum(beta2 u, |d| + eps)
p = p + (-clr m) / u,  clr = lr / (1 - beta1 ** t)""",
        hyper=(_LR, *_BETAS, _EPS, _WD, _MAXIMIZE),
        state=(_EXP_AVG, State("exp_inf")),
        args=("step",),
        scalars=(_SIGN, _L2, ("w1", "1.0 - h.beta1"), ("beta2", "h.beta2"), ("eps", "h.eps"),
                 ("neg_clr", "-(h.lr / (1.0 - pow(h.beta1, <double>step)))")),
        locals="d, mi, ui",
        body="""
d = _direction(g[i], p[i], sign, l2)
mi = _lerp(exp_avg[i], d, w1)
ui = _maximum(exp_inf[i] * beta2, _abs(d) + eps)
exp_avg[i] = mi
exp_inf[i] = ui
p[i] = p[i] + (neg_clr * mi) / ui
"""),
    Rule(
        "nadam", "NAdam", "(torch.optim.NAdam)",
        """p = p (1 - lr wd) (decoupled) ;  d = ±g + wd p (otherwise)
m = lerp(m, d, 1 - beta1) ;  v = beta2 v + ((1 - beta2) d) d
denom = sqrt(v / (1 - beta2 ** t)) + eps
p = p + (c_grad d) / denom ;  p = p + (c_avg m) / denom
mu_t = beta1 (1 - 0.5 * 0.96 ** (t momentum_decay)), mu_product *= mu_t,
c_grad = -lr (1 - mu_t) / (1 - mu_product), c_avg = -lr mu_{t+1} / (1 - mu_product mu_{t+1})""",
        hyper=(_LR, *_BETAS, _EPS, _WD, Hyper("momentum_decay"), _DECOUPLED, _MAXIMIZE),
        state=(_EXP_AVG, State("exp_avg_sq")),
        args=("step", "mu_product"),
        setup="""cdef double t = <double>step
cdef double mu = h.beta1 * (1.0 - 0.5 * pow(0.96, t * h.momentum_decay))
cdef double mu_next = h.beta1 * (1.0 - 0.5 * pow(0.96, (t + 1) * h.momentum_decay))
mu_product[0] = mu_product[0] * mu
cdef double mu_product_next = mu_product[0] * mu_next""",
        scalars=(_SIGN, *_L2_OR_DECOUPLED, *_MOMENTS, ("bc2", "1.0 - pow(h.beta2, t)"), ("eps", "h.eps"),
                 ("c_grad", "-h.lr * (1.0 - mu) / (1.0 - mu_product[0])"),
                 ("c_avg", "(-h.lr * mu_next) / (1.0 - mu_product_next)")),
        locals="pi, d, mi, vi, denom",
        body=_ADAM_MOMENTS + """\
denom = _sqrt(vi / bc2) + eps
pi = pi + (c_grad * d) / denom
p[i] = pi + (c_avg * mi) / denom
"""),
    Rule(
        "radam", "RAdam", "(torch.optim.RAdam)",
        """p = p (1 - lr wd) (decoupled) ;  d = ±g + wd p (otherwise)
m = lerp(m, d, 1 - beta1) ;  v = beta2 v + ((1 - beta2) d) d
u = (m / (1 - beta1 ** t)) lr
if rho_t > 5:  u = (u (bias_correction2 ** 0.5 / (sqrt(v) + eps))) rect
p = p - u
rho_inf = 2 / (1 - beta2) - 1, rho_t = rho_inf - 2 t beta2 ** t / bias_correction2,
rect = ((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t)) ** 0.5""",
        hyper=(_LR, *_BETAS, _EPS, _WD, _DECOUPLED, _MAXIMIZE),
        state=(_EXP_AVG, State("exp_avg_sq")),
        args=("step",),
        setup="""cdef double t = <double>step
cdef double bc2 = 1.0 - pow(h.beta2, t)
cdef double rho_inf = 2.0 / (1.0 - h.beta2) - 1.0
cdef double rho_t = rho_inf - 2.0 * t * pow(h.beta2, t) / bc2
cdef double rect = 0.0
if rho_t > 5.0:
    rect = pow((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t), 0.5)""",
        scalars=(_SIGN, *_L2_OR_DECOUPLED, *_MOMENTS, ("bc1", "1.0 - pow(h.beta1, t)"), ("lr", "h.lr"),
                 ("bc2_sqrt", "pow(bc2, 0.5)"), ("eps", "h.eps"), ("rect", "rect")),
        flags=(("rectify", "rho_t > 5.0"),),
        locals="pi, d, mi, vi, u",
        body=_ADAM_MOMENTS + """\
u = (mi / bc1) * lr
if rectify:
    u = (u * (bc2_sqrt / (_sqrt(vi) + eps))) * rect
p[i] = pi - u
"""),
    Rule(
        "adadelta", "Adadelta", "(torch.optim.Adadelta)",
        """d = ±g + wd p ;  v = rho v + ((1 - rho) d) d
delta = (sqrt(a + eps) / sqrt(v + eps)) d ;  a = rho a + ((1 - rho) delta) delta
p = p + (-lr) delta""",
        hyper=(_LR, Hyper("rho", "unit"), _EPS, _WD, _MAXIMIZE),
        state=(State("square_avg"), State("acc_delta")),
        scalars=(_SIGN, _L2, ("rho", "h.rho"), ("one_minus_rho", "1.0 - h.rho"), ("eps", "h.eps"),
                 ("neg_lr", "-h.lr")),
        locals="d, vi, delta",
        body="""
d = _direction(g[i], p[i], sign, l2)
vi = square_avg[i] * rho + (one_minus_rho * d) * d
square_avg[i] = vi
delta = (_sqrt(acc_delta[i] + eps) / _sqrt(vi + eps)) * d
acc_delta[i] = acc_delta[i] * rho + (one_minus_rho * delta) * delta
p[i] = p[i] + neg_lr * delta
"""),
    Rule(
        "lion", "Lion", '(Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms")',
        """p = p (1 - lr wd) ;  d = ±g
p = p + (-lr) sign(beta1 m + (1 - beta1) d) ;  m = beta2 m + (1 - beta2) d""",
        hyper=(_LR, *_BETAS, _WD, _MAXIMIZE),
        state=(_EXP_AVG,),
        scalars=(_SIGN, ("decay", "1.0 - h.lr * h.weight_decay"), ("beta1", "h.beta1"),
                 ("one_minus_beta1", "1.0 - h.beta1"), ("beta2", "h.beta2"), ("one_minus_beta2", "1.0 - h.beta2"),
                 ("neg_lr", "-h.lr")),
        locals="d, mi",
        body="""
d = sign * g[i]
mi = exp_avg[i]
p[i] = _decayed(p[i], decay) + neg_lr * _sign(mi * beta1 + one_minus_beta1 * d)
exp_avg[i] = mi * beta2 + one_minus_beta2 * d
"""),
    Rule(
        "adopt", "ADOPT", '(Taniguchi et al., 2024, "ADOPT: Modified Adam Can Converge with Any beta2 with the '
        'Optimal Rate", and its reference code)',
        """d = ±g + wd p (unless decoupled)
t = 1:  v = v + d d  (p and m unchanged)
t > 1:  n = d / maximum(sqrt(v), eps), clamped to ±(t - 1) ** 0.25 (clip) ;  m = lerp(m, n, 1 - beta1)
        p = p + (-lr wd) p (decoupled) ;  p = p + (-lr) m ;  v = beta2 v + ((1 - beta2) d) d""",
        hyper=(_LR, *_BETAS, _EPS, _WD, Hyper("decouple", "flag"), Hyper("clip", "flag"), _MAXIMIZE),
        state=(_EXP_AVG, State("exp_avg_sq")),
        args=("step",),
        setup="""cdef double t = <double>step
cdef double clip_bound = pow(t - 1.0, 0.25)""",
        scalars=(_SIGN, ("l2", "0 if h.decouple else h.weight_decay"),
                 ("neg_lr_wd", "-h.lr * h.weight_decay if h.decouple else 0"), ("w1", "1.0 - h.beta1"),
                 ("beta2", "h.beta2"), ("one_minus_beta2", "1.0 - h.beta2"), ("eps", "h.eps"),
                 ("clip", "clip_bound"), ("neg_clip", "-clip_bound"), ("neg_lr", "-h.lr")),
        flags=(("first", "step == 1"), ("clipped", "h.clip")),
        specialize=("first", "clipped"),
        locals="pi, d, vi, ni, mi",
        body="""
d = _direction(g[i], p[i], sign, l2)
vi = exp_avg_sq[i]
if first:
    exp_avg_sq[i] = vi + d * d
else:
    pi = p[i]
    if neg_lr_wd != 0:  # the reference's p.add_(p, alpha=-lr * weight_decay)
        pi = pi + neg_lr_wd * pi
    ni = d / _maximum(_sqrt(vi), eps)
    if clipped:
        ni = _clamp(ni, neg_clip, clip)
    mi = _lerp(exp_avg[i], ni, w1)
    exp_avg[i] = mi
    p[i] = pi + neg_lr * mi
    exp_avg_sq[i] = vi * beta2 + (one_minus_beta2 * d) * d
"""),
    Rule(
        "ademamix", "AdEMAMix", '(Pagliardini et al., 2024, "The AdEMAMix Optimizer: Better, Faster, Older", and '
        'its reference code)',
        """d = ±g ;  m1 = beta1 m1 + (1 - beta1) d ;  m2 = beta3_t m2 + (1 - beta3_t) d
v = beta2 v + ((1 - beta2) d) d
u = (m1 / (1 - beta1 ** t) + alpha_t m2) / (sqrt(v) / sqrt(1 - beta2 ** t) + eps) + wd p ;  p = p + (-lr) u
alpha_t = (t / alpha_warmup) alpha and beta3_t = 0.5 ** (1 / (lerp(h(beta1), h(beta3), t / beta3_warmup) + 1)),
h(b) = log(0.5) / log(b + 1e-8) - 1 (the half-life), during their warm-ups (0: none); alpha and beta3 after""",
        hyper=(_LR, *_BETAS, Hyper("beta3", "beta"), Hyper("alpha"), Hyper("beta3_warmup", "steps"),
               Hyper("alpha_warmup", "steps"), _EPS, _WD, _MAXIMIZE),
        state=(State("exp_avg_fast", signed=True), State("exp_avg_slow", signed=True), State("exp_avg_sq")),
        args=("step",),
        setup="""cdef double t = <double>step
cdef double alpha_t = h.alpha
cdef double beta3_t = h.beta3
cdef double w
if t < h.alpha_warmup:
    alpha_t = (t / h.alpha_warmup) * h.alpha
if t < h.beta3_warmup:
    w = t / h.beta3_warmup
    beta3_t = pow(0.5, 1.0 / ((1.0 - w) * (log(0.5) / log(h.beta1 + 1e-8) - 1.0)
                               + w * (log(0.5) / log(h.beta3 + 1e-8) - 1.0) + 1.0))""",
        scalars=(_SIGN, ("beta1", "h.beta1"), ("one_minus_beta1", "1.0 - h.beta1"), ("beta3", "beta3_t"),
                 ("one_minus_beta3", "1.0 - beta3_t"), ("beta2", "h.beta2"), ("one_minus_beta2", "1.0 - h.beta2"),
                 ("bc1", "1.0 - pow(h.beta1, t)"), ("bc2_sqrt", "sqrt(1.0 - pow(h.beta2, t))"), ("alpha", "alpha_t"),
                 ("eps", "h.eps"), ("wd", "h.weight_decay"), ("neg_lr", "-h.lr")),
        locals="d, m1, m2, vi, u",
        body="""
d = sign * g[i]
m1 = exp_avg_fast[i] * beta1 + one_minus_beta1 * d
m2 = exp_avg_slow[i] * beta3 + one_minus_beta3 * d
vi = exp_avg_sq[i] * beta2 + (one_minus_beta2 * d) * d
exp_avg_fast[i] = m1
exp_avg_slow[i] = m2
exp_avg_sq[i] = vi
u = (m1 / bc1 + alpha * m2) / (_sqrt(vi) / bc2_sqrt + eps)
if wd != 0:  # a decay that rounds to 0 in the element type is none
    u = u + wd * p[i]
p[i] = p[i] + neg_lr * u
"""),
    Rule(
        "sgd_schedule_free", "SGDScheduleFree", '(Defazio et al., 2024, "The Road Less Scheduled"; the '
        'schedulefree package\'s SGDScheduleFree)',
        _SCHEDULE_FREE_FORMULA + """
d = ±g + wd y ;  y = lerp(y, z, ckp1) + (lr_t (momentum (1 - ckp1) - 1)) d ;  z = z + (-lr_t) d
(p holds y while training; eval() moves it to x = lerp(y, z, 1 - 1 / momentum), train() back)""",
        hyper=(_LR, Hyper("momentum", "unit"), _WD, *_SCHEDULE_FREE_HYPER, _MAXIMIZE),
        state=(State("z", signed=True),),
        args=("step", "averaging"),
        setup=_SCHEDULE_FREE_SETUP,
        scalars=(_SIGN, _L2, ("ckp1", "ckp1"), ("y_lr", "lr_t * (h.momentum * (1.0 - ckp1) - 1.0)"),
                 ("neg_lr", "-lr_t")),
        locals="d, zi",
        body="""
d = _direction(g[i], p[i], sign, l2)
zi = z[i]
p[i] = _lerp(p[i], zi, ckp1) + y_lr * d
z[i] = zi + neg_lr * d
"""),
    Rule(
        "adamw_schedule_free", "AdamWScheduleFree", '(Defazio et al., 2024, "The Road Less Scheduled"; the '
        'schedulefree package\'s AdamWScheduleFree)',
        _SCHEDULE_FREE_FORMULA + """
d = ±g ;  v = beta2 v + ((1 - beta2) d) d ;  u = d / (sqrt(v / (1 - beta2 ** t)) + eps) + wd y
y = lerp(y, z, ckp1) + (lr_t (beta1 (1 - ckp1) - 1)) u ;  z = z + (-lr_t) u
(p holds y while training; eval() moves it to x = lerp(y, z, 1 - 1 / beta1), train() back)""",
        hyper=(_LR, *_BETAS, _EPS, _WD, *_SCHEDULE_FREE_HYPER, _MAXIMIZE),
        state=(State("z", signed=True), State("exp_avg_sq")),
        args=("step", "averaging"),
        setup=_SCHEDULE_FREE_SETUP,
        scalars=(_SIGN, ("beta2", "h.beta2"), ("one_minus_beta2", "1.0 - h.beta2"),
                 ("bc2", "1.0 - pow(h.beta2, <double>step)"), ("eps", "h.eps"), ("wd", "h.weight_decay"),
                 ("ckp1", "ckp1"), ("y_lr", "lr_t * (h.beta1 * (1.0 - ckp1) - 1.0)"), ("neg_lr", "-lr_t")),
        locals="d, vi, u, zi",
        body="""
d = sign * g[i]
vi = exp_avg_sq[i] * beta2 + (one_minus_beta2 * d) * d
exp_avg_sq[i] = vi
u = d / (_sqrt(vi / bc2) + eps)
if wd != 0:  # a decay that rounds to 0 in the element type is none
    u = u + wd * p[i]
zi = z[i]
p[i] = _lerp(p[i], zi, ckp1) + y_lr * u
z[i] = zi + neg_lr * u
"""),
)}

# The C API table's members in table order (csrc/fastopt.h): a new rule's three entry points (float32, float64,
# and stored: any storage types, csrc/fastopt_storage.h) are appended here, never inserted, so that modules
# compiled against an older header keep working; a change to a member raises ABI_VERSION.
_VERSION_1 = ("sgd", "adagrad", "rmsprop", "adam", "adamax", "nadam", "radam", "adadelta", "lion")
_APPENDED = ("adopt", "ademamix", "sgd_schedule_free", "adamw_schedule_free")  # rules added since version 1, in the order they came
C_API = (*(f"{rule}_update_{dtype}" for rule in _VERSION_1 for dtype in ("f32", "f64")),
         "count_nonfinite_f32", "count_nonfinite_f64",
         *(f"{rule}_update_stored" for rule in _VERSION_1),
         *(f"{rule}_update_{kind}" for rule in _APPENDED for kind in ("f32", "f64", "stored")))


@dataclass(frozen=True)
class TensorRule:
    """An update rule that needs numbers of whole tensors between its passes over memory.

    LAMB's and LARS's trust ratios need each tensor's norms before any
    element can be updated, and Adafactor's factored second moment needs
    each matrix's row and column sums: no element-wise body can say that.
    Their hyperparameters and state are declared here, as for :class:`Rule`,
    and the Python optimizers take their checks and state arrays from this
    entry; their passes are written in ``fastopt/_tensorwise.pyx``
    (each pass a fused, thread-count-invariant kernel over a slot's tensors),
    and have no C API entry yet.
    """

    name: str
    label: str
    origin: str
    formula: str
    hyper: Tuple[Hyper, ...]
    state: Tuple[State, ...]
    running = ()      # no per-slot numbers besides the step count
    switchable = ()   # every state array is used by every setting

    @property
    def state_names(self) -> Tuple[str, ...]:
        return tuple(s.name for s in self.state)


_TRUST_RATIO = """ratio = trust_coefficient |p| / (|u| + eps) per tensor, 1 where |p| or |u| is 0 (optax.scale_by_trust_ratio)"""

TENSOR_RULES = {rule.name: rule for rule in (
    TensorRule(
        "lamb", "LAMB", '(You et al., 2020, "Large Batch Optimization for Deep Learning: Training BERT in 76 '
        'minutes"; optax.lamb)',
        """d = ±g ;  m = (1 - beta1) d + beta1 m ;  v = (1 - beta2) d d + beta2 v
u = (m / (1 - beta1 ** t)) / (sqrt(v / (1 - beta2 ** t)) + eps) + wd p
p = p + (-lr) (u ratio),  """ + _TRUST_RATIO + """ with trust_coefficient 1""",
        hyper=(_LR, *_BETAS, _EPS, _WD, _MAXIMIZE),
        state=(_EXP_AVG, State("exp_avg_sq"))),
    TensorRule(
        "lars", "LARS", '(You et al., 2017, "Large Batch Training of Convolutional Networks"; optax.lars)',
        """d = ±g + wd p ;  u = (-lr) (d ratio),  """ + _TRUST_RATIO + """
b = u + momentum b ;  p = p + (u + momentum b) (nesterov) or p + b""",
        hyper=(_LR, Hyper("momentum"), _WD, Hyper("trust_coefficient"), _EPS, Hyper("nesterov", "flag"), _MAXIMIZE),
        state=(State("momentum_buffer", signed=True),)),
    TensorRule(
        "adafactor", "Adafactor", '(Shazeer & Stern, 2018, "Adafactor: Adaptive Learning Rates with Sublinear '
        'Memory Cost"; torch.optim.Adafactor)',
        """d = ±g ;  w = t ** beta2_decay ;  rho = min(lr, t ** -0.5) ;  alpha = max(eps2, |p| / sqrt(n)) rho
tensors of 2 or more dimensions, over the last two (rows r, columns c):
    row_var = lerp(row_var, mean_c d d, w) ;  col_var = lerp(col_var, mean_r d d, w)
    v = row_var col_var / max(mean_r row_var, eps1)
other tensors:  variance = lerp(variance, d d, w) ;  v = variance
u = d / sqrt(max(v, eps1 eps1)) ;  p = p (1 - lr wd) + (-alpha / max(1, |u| / (sqrt(n) d_clip))) u""",
        hyper=(_LR, Hyper("beta2_decay", "nonpositive"), Hyper("eps", "eps_pair"), Hyper("d", "at_least_one"), _WD,
               _MAXIMIZE),
        state=(State("row_var"), State("col_var"), State("variance"))),
    TensorRule(
        "prodigy", "Prodigy", '(Mishchenko & Defazio, 2024, "Prodigy: An Expeditiously Adaptive Parameter-Free '
        'Learner"; the prodigyopt package)',
        """D estimate over every slot of every group, then the update; d = d0 before the first step, k counts steps
dlr = d lr bc,  bc = sqrt(1 - beta2 ** (k + 1)) / (1 - beta1 ** (k + 1)) (use_bias_correction) or 1
e = ±g + wd p (unless decoupled) ;  num = beta3 num + (d / d0) dlr sum e (p0 - p)
m = beta1 m + (d (1 - beta1)) e ;  v = beta2 v + (d d (1 - beta2)) e e ;  s = beta3 s + ((d / d0) dlr) e (d with safeguard_warmup)
d_hat = d_coef num / sum |s| ;  d = max(d, d_hat) while d = d0 ;  d_max = max(d_max, d_hat) ;  d = min(d_max, d growth_rate)
p = p (1 - wd dlr) (decoupled) ;  p = p - dlr m / (sqrt(v) + d eps)   (beta1 = 0: p - dlr d e / (sqrt(v) + d eps))""",
        hyper=(_LR, *_BETAS, Hyper("beta3", "optional_beta"), Hyper("eps", "positive"), _WD,
               Hyper("decouple", "flag"), Hyper("use_bias_correction", "flag"), Hyper("safeguard_warmup", "flag"),
               Hyper("d0", "positive"), Hyper("d_coef", "positive"), Hyper("growth_rate", "growth"), _MAXIMIZE),
        state=(_EXP_AVG, State("exp_avg_sq"), State("s", signed=True), State("p0", signed=True))),
    TensorRule(
        "muon", "Muon", '(Jordan et al., 2024, "Muon: An optimizer for hidden layers in neural networks"; '
        'torch.optim.Muon, and AdamW for the other tensors as the reference MuonWithAuxAdam)',
        """matrices (tensors of 2 or more dimensions, viewed as shape[0] x the rest), unless use_muon is False:
    b = lerp(b, g, 1 - momentum) ;  u = lerp(g, b, momentum) (nesterov) or b
    X = u / max(|u|, eps), transposed if tall ;  ns_steps times: A = X X^T, X = a X + (b A + c A A) X
    p = p (1 - lr wd) ;  p = p + (-lr ratio) X,  ratio = sqrt(max(1, rows / cols)) (original) or 0.2 sqrt(max(rows, cols))
other tensors: AdamW (torch.optim.AdamW's update) with adamw_lr, adamw_betas, adamw_eps, adamw_weight_decay""",
        hyper=(_LR, _WD, Hyper("momentum"), Hyper("nesterov", "flag"), Hyper("ns_coefficients", "real_triple"),
               Hyper("eps"), Hyper("ns_steps", "ns_steps"), Hyper("adjust_lr_fn", "adjust_lr"),
               Hyper("use_muon", "flag"), Hyper("adamw_lr"), Hyper("adamw_betas", "beta_pair"),
               Hyper("adamw_eps"), Hyper("adamw_weight_decay")),
        state=(State("momentum_buffer", signed=True), _EXP_AVG, State("exp_avg_sq"))),
)}
