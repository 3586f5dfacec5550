"""fastopt's optimizers for PyTorch: ``torch.optim`` optimizers whose step is one fused kernel call per group.

Change one import line::

    from fastopt.torch import AdamW          # instead of: from torch.optim import AdamW
    opt = AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    for x, y in batches:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

Each class takes the arguments of the torch.optim class of the same name,
with the same defaults, and follows its update formula; its parameter groups,
schedulers (``torch.optim.lr_scheduler``), ``state_dict()`` format and
``zero_grad`` are torch's.  Building one moves the model's parameters into
ParamSet arenas (``param.data`` becomes a view of the arena, so the model
computes as before) and gradients accumulate into the arena, so a step over
hundreds of tensors is one kernel call.  See
:class:`fastopt.torch.Optimizer` for what it takes and what it refuses.

torch is an optional dependency (``pip install "fastopt[torch]"``); the rest
of fastopt never imports it.
"""
from importlib.util import find_spec as _find_spec

if _find_spec("torch") is None:
    raise ImportError("fastopt.torch needs PyTorch, an optional dependency: pip install \"fastopt[torch]\"")

from fastopt import optim as _optim
from fastopt.torch.optimizer import Optimizer


class SGD(Optimizer):
    """``torch.optim.SGD`` (momentum, dampening, Nesterov, weight decay), stepped by :class:`fastopt.SGD`'s kernel."""

    engine, peer = _optim.SGD, "SGD"


class Adam(Optimizer):
    """``torch.optim.Adam`` (with AMSGrad and ``decoupled_weight_decay``), stepped by :class:`fastopt.Adam`'s kernel."""

    engine, peer = _optim.Adam, "Adam"


class AdamW(Optimizer):
    """``torch.optim.AdamW``, stepped by :class:`fastopt.Adam`'s kernel with decoupled weight decay."""

    engine, peer = _optim.Adam, "AdamW"
    fixed = {"decoupled_weight_decay": True}  # as torch.optim.AdamW forces it, whatever an older torch or a state says


class Adagrad(Optimizer):
    """``torch.optim.Adagrad``, stepped by :class:`fastopt.Adagrad`'s kernel."""

    engine, peer = _optim.Adagrad, "Adagrad"


class RMSprop(Optimizer):
    """``torch.optim.RMSprop`` (centered, momentum), stepped by :class:`fastopt.RMSprop`'s kernel."""

    engine, peer = _optim.RMSprop, "RMSprop"


class NAdam(Optimizer):
    """``torch.optim.NAdam``, stepped by :class:`fastopt.NAdam`'s kernel."""

    engine, peer = _optim.NAdam, "NAdam"


class RAdam(Optimizer):
    """``torch.optim.RAdam``, stepped by :class:`fastopt.RAdam`'s kernel."""

    engine, peer = _optim.RAdam, "RAdam"


class Adamax(Optimizer):
    """``torch.optim.Adamax``, stepped by :class:`fastopt.Adamax`'s kernel."""

    engine, peer = _optim.Adamax, "Adamax"


class Adadelta(Optimizer):
    """``torch.optim.Adadelta``, stepped by :class:`fastopt.Adadelta`'s kernel."""

    engine, peer = _optim.Adadelta, "Adadelta"


class Adafactor(Optimizer):
    """``torch.optim.Adafactor``, stepped by :class:`fastopt.Adafactor`'s tensor-wise kernels."""

    engine, peer = _optim.Adafactor, "Adafactor"


class Muon(Optimizer):
    """``torch.optim.Muon``, stepped by :class:`fastopt.Muon`'s kernels.

    torch.optim.Muon takes matrices only; this one also takes the other
    parameters of a model and gives them :class:`fastopt.Muon`'s AdamW
    step (``adamw_lr``, ... keep their defaults: set them per group).
    """

    engine, peer = _optim.Muon, "Muon"
    step_if_missing = 0  # torch.optim.Muon counts no steps; a matrix's update needs none


class Lion(Optimizer):
    """Lion (torch.optim has none): the arguments and defaults of :class:`fastopt.Lion`."""

    engine = _optim.Lion


class ADOPT(Optimizer):
    """ADOPT (torch.optim has none): the arguments and defaults of :class:`fastopt.ADOPT`."""

    engine = _optim.ADOPT


class AdEMAMix(Optimizer):
    """AdEMAMix (torch.optim has none): the arguments and defaults of :class:`fastopt.AdEMAMix`."""

    engine = _optim.AdEMAMix


__all__ = ["ADOPT", "AdEMAMix", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "Lion", "Muon", "NAdam", "Optimizer",
           "RAdam", "RMSprop", "SGD"]
