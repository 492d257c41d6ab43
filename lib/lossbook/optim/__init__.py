"""lossbook.optim: the one optimizer factory and the LR schedules."""

from lossbook.optim.optimizers import OPTIMIZERS, make_optimizer

__all__ = ["OPTIMIZERS", "make_optimizer"]
