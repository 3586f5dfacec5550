"""fastopt: fast, trustworthy CPU optimizer kernels for NumPy.

Update rules run as fused, GIL-free, OpenMP-parallel Cython kernels that make
one pass over memory per step.  A :class:`ParamSet` keeps every parameter of
a model in one contiguous buffer, so a step over the whole model is one
kernel call.

>>> import numpy as np, fastopt
>>> ps = fastopt.ParamSet({"w": np.zeros(4)})
>>> opt = fastopt.Adam(ps, lr=0.1)
>>> ps.grads["w"][:] = 1.0
>>> opt.step()
True
>>> ps["w"]
array([-0.1, -0.1, -0.1, -0.1])
"""
from importlib.metadata import PackageNotFoundError, version as _version

from fastopt._include import get_include
from fastopt._threads import get_num_threads, set_num_threads, threads
from fastopt.info import build_info
from fastopt.checkpoint import CheckpointError, load, save
from fastopt import datasets
from fastopt.data import minibatches, num_batches, train_test_split
from fastopt.optim import (
    ADOPT, LAMB, LARS, SGD, Accumulate, AdEMAMix, Adadelta, Adafactor, Adagrad, Adam, Adamax, AdamW, AdamWScheduleFree,
    Lion, Lookahead, Muon, NAdam, Optimizer, Prodigy, RAdam, RMSprop, SGDScheduleFree,
)
from fastopt.paramset import ParamSelection, ParamSet
from fastopt.second_order import minimize
from fastopt.training import History, NonFiniteLossError, fit

try:
    __version__ = _version("fastopt")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "ADOPT",
    "Accumulate",
    "AdEMAMix",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "AdamWScheduleFree",
    "Adamax",
    "LAMB",
    "LARS",
    "Lion",
    "Lookahead",
    "Muon",
    "NAdam",
    "Optimizer",
    "ParamSelection",
    "ParamSet",
    "Prodigy",
    "RAdam",
    "RMSprop",
    "SGD",
    "SGDScheduleFree",
    "CheckpointError",
    "History",
    "NonFiniteLossError",
    "datasets",
    "fit",
    "load",
    "minibatches",
    "minimize",
    "num_batches",
    "save",
    "train_test_split",
    "build_info",
    "get_include",
    "get_num_threads",
    "set_num_threads",
    "threads",
    "__version__",
]
