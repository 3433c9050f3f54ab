"""Optimisers acting in place on lists of batched parameters, with a per-replica step size.

``lr`` is a ``(N,)`` tensor (one step size per replica, so several configurations share one program); it is
broadcast over each parameter's trailing axes. ``rows`` restricts a step to a slice of replicas (the simulator
steps cache-sized chunks). A gradient may be given factored as ``(left (N, m, 1), right (N, 1, n))`` for the
outer product ``left · right`` (one example per replica): SGD then folds it into the update without
materialising it. Heavy ball follows ``torch.optim.SGD``:
``v ← β v + g``, ``θ ← θ − γ v``. Adam follows ``torch.optim.Adam`` (bias-corrected, ``eps`` outside the root).
"""

from __future__ import annotations

import torch

__all__ = ["BatchedSGD", "BatchedAdam", "OPTIMIZERS"]


def _view(lr: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return lr.reshape(-1, *([1] * (like.dim() - 1)))


class BatchedSGD:
    """SGD with optional heavy-ball momentum ``β``."""

    def __init__(self, params: list[torch.Tensor], momentum: float = 0.0):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        self.params, self.momentum = params, momentum
        self.buffers = [torch.zeros_like(p) for p in params] if momentum else None

    def step(self, grads: list, lr: torch.Tensor, rows: slice = slice(None)) -> None:
        for i, g in enumerate(grads):
            p = self.params[i][rows]
            if self.buffers is not None:
                buf = self.buffers[i][rows].mul_(self.momentum)
                buf.addcmul_(*g) if isinstance(g, tuple) else buf.add_(g)
                p.addcmul_(buf, _view(-lr, p))
            elif isinstance(g, tuple):
                p.addcmul_(g[0], g[1] * _view(-lr, g[1]))
            else:
                p.addcmul_(g, _view(-lr, p))


class BatchedAdam:
    """Adam with ``betas`` and ``eps`` as in ``torch.optim.Adam``."""

    def __init__(self, params: list[torch.Tensor], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params, self.betas, self.eps = params, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: list, lr: torch.Tensor, rows: slice = slice(None)) -> None:
        if rows == slice(None) or rows.start in (None, 0):
            self.t += 1
        beta1, beta2 = self.betas
        correction1 = 1 - beta1**self.t
        correction2 = 1 - beta2**self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            p, m, v = p[rows], m[rows], v[rows]
            g = g[0] * g[1] if isinstance(g, tuple) else g
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v / correction2).sqrt_().add_(self.eps)
            p.addcdiv_(m * _view(-lr / correction1, p), denom)


OPTIMIZERS = {"sgd": BatchedSGD, "adam": BatchedAdam}
