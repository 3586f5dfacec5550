"""Optimizers: torch.optim's names, defaults and formulas over fused kernels.

Learning-rate schedules live in :mod:`fastopt.optim.lr_scheduler` and weight-averaging tools in
:mod:`fastopt.optim.swa_utils`, as in torch.
"""
from fastopt.optim import lr_scheduler, swa_utils
from fastopt.optim.adadelta import Adadelta
from fastopt.optim.adafactor import Adafactor
from fastopt.optim.adagrad import Adagrad
from fastopt.optim.adam import Adam, AdamW
from fastopt.optim.adamax import Adamax
from fastopt.optim.ademamix import AdEMAMix
from fastopt.optim.adopt import ADOPT
from fastopt.optim.lion import Lion
from fastopt.optim._wrapper import OptimizerWrapper
from fastopt.optim.accumulate import Accumulate
from fastopt.optim.lookahead import Lookahead
from fastopt.optim.muon import Muon
from fastopt.optim.nadam import NAdam
from fastopt.optim.optimizer import Optimizer
from fastopt.optim.prodigy import Prodigy
from fastopt.optim.radam import RAdam
from fastopt.optim.rmsprop import RMSprop
from fastopt.optim.schedule_free import AdamWScheduleFree, SGDScheduleFree
from fastopt.optim.sgd import SGD
from fastopt.optim.trust_ratio import LAMB, LARS

__all__ = ["ADOPT", "Accumulate", "AdEMAMix", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "AdamWScheduleFree", "Adamax", "LAMB", "LARS", "Lion", "Lookahead", "Muon", "NAdam", "Optimizer", "OptimizerWrapper", "Prodigy", "RAdam", "RMSprop", "SGD", "SGDScheduleFree", "lr_scheduler", "swa_utils"]
