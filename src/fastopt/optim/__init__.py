"""Optimizers: torch.optim's names, defaults and formulas over fused kernels."""
from fastopt.optim.adam import Adam
from fastopt.optim.optimizer import Optimizer
from fastopt.optim.sgd import SGD

__all__ = ["Adam", "Optimizer", "SGD"]
