"""Optimiser settings and the plain training loop shared by teachers and students.

Adam with learning rate 1e-3 is the official choice (``scripts/train_student.py``); SGD with heavy-ball
momentum and a step or cosine schedule is the alternative. Randomness comes from an explicit
``torch.Generator`` for the batch order and, for dropout or weight sampling inside modules, from the global
generator forked and seeded by ``seeded`` so the caller's state is left as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Optimizer", "Schedule", "OptimConfig", "make_optimizer", "batches", "fit_classifier", "seeded",
           "predict_logits"]


class Optimizer(str, Enum):
    ADAM = "adam"
    """Adam (the official students and teachers)."""
    SGD = "sgd"
    """SGD with heavy-ball momentum ``momentum``."""


class Schedule(str, Enum):
    NONE = "none"
    """Constant learning rate."""
    STEP = "step"
    """Multiply by ``gamma`` at each epoch in ``milestones`` (the official MultiStepLR)."""
    COSINE = "cosine"
    """Cosine decay to zero over the run's epochs."""


@dataclass(frozen=True)
class OptimConfig:
    """How to optimise: ``optimizer`` and ``schedule`` are names from ``Optimizer`` and ``Schedule``."""

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "none"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    batch_size: int = 100

    def __post_init__(self):
        for kind, name in ((Optimizer, "optimizer"), (Schedule, "schedule")):
            if getattr(self, name) not in {m.value for m in kind}:
                valid = ", ".join(m.value for m in kind)
                raise ValueError(f"{name} must be one of {valid}, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def make_optimizer(params, config: OptimConfig, epochs: int):
    """``(optimizer, scheduler)``; the scheduler steps once per epoch (None for a constant rate)."""
    if config.optimizer == Optimizer.ADAM.value:
        opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.schedule == Schedule.STEP.value:
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(config.milestones), gamma=config.gamma)
    elif config.schedule == Schedule.COSINE.value:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    else:
        sched = None
    return opt, sched


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with the global CPU generator forked and seeded with ``seed`` (module-internal sampling:
    dropout masks, bayesian-torch weight draws); the caller's generator state is restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled partition of ``range(n)`` into batches (the last may be smaller)."""
    return list(torch.randperm(n, generator=generator).split(batch_size))


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], torch.Tensor]


def fit_classifier(net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, optim: OptimConfig,
                   seed: int, loss_fn: LossFn | None = None) -> nn.Module:
    """Train ``net`` in place for ``epochs`` passes over ``(x, y)`` and return it in eval mode.

    ``loss_fn(net, xb, yb, epoch)`` defaults to the cross-entropy of ``net(xb)``. Fully determined by ``seed``.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    generator = torch.Generator().manual_seed(int(seed))
    opt, sched = make_optimizer(net.parameters(), optim, epochs)
    with seeded(seed):
        for epoch in range(epochs):
            net.train()
            for idx in batches(x.shape[0], optim.batch_size, generator):
                opt.zero_grad()
                loss = loss_fn(net, x[idx], y[idx], epoch) if loss_fn else F.cross_entropy(net(x[idx]), y[idx])
                loss.backward()
                opt.step()
            if sched is not None:
                sched.step()
    return net.eval()


@torch.no_grad()
def predict_logits(net: nn.Module, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """``net(x)`` in eval mode, in chunks, without gradients."""
    net.eval()
    return torch.cat([net(part) for part in x.split(chunk)])
