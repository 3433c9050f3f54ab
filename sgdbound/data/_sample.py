"""The sample container and the generator plumbing shared by the synthetic problems."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sgdbound._checks import check_generator, check_seed, check_simplex, describe

__all__ = ["Sample", "make_generator"]


def make_generator(seed: int | None = None, generator: torch.Generator | None = None) -> torch.Generator:
    """An explicit CPU generator: ``generator`` if given, else one seeded with ``seed`` (fresh entropy if None).

    ``seed``: an integer (``3`` or ``3.0``; ``1.5``, a bool or a string is refused); ``generator``: a
    ``torch.Generator``. Giving both is refused.
    """
    if generator is not None:
        if seed is not None:
            raise ValueError("give either seed or generator, not both")
        check_generator("generator", generator)
        return generator
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(check_seed("seed", seed))
    return gen


@dataclass(frozen=True)
class Sample:
    """Labelled draws with their exact Bayes class probabilities.

    ``x``: ``(n, d)`` inputs; ``y``: ``(n,)`` labels drawn from ``bcp``; ``bcp``: ``(n, K)`` rows on the simplex,
    ``bcp[i, k] = P(y = k | x_i)``. Row counts that disagree, or ``bcp`` off the simplex, are refused.
    """

    x: torch.Tensor
    y: torch.Tensor
    bcp: torch.Tensor

    def __post_init__(self):
        if not torch.is_tensor(self.x) or self.x.dim() != 2:
            raise ValueError(f"x must be a 2-D tensor (n, d), got {describe(self.x)}")
        n = self.x.shape[0]
        if not torch.is_tensor(self.y) or self.y.shape != (n,):
            raise ValueError(f"y must be a tensor of shape ({n},) to match x, got {describe(self.y)}")
        if self.y.is_floating_point() or self.y.is_complex() or self.y.dtype == torch.bool:
            raise ValueError(f"y must hold integer labels, got dtype {self.y.dtype}")
        check_simplex("bcp", self.bcp, rows=n, allow_empty=True)

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def onehot(self) -> torch.Tensor:
        """``(n, K)`` one-hot labels in the dtype of ``bcp``."""
        return torch.nn.functional.one_hot(self.y, self.bcp.shape[1]).to(self.bcp.dtype)

    def to(self, *args, **kwargs) -> Sample:
        """Move ``x`` and ``bcp`` (dtype and device) and ``y`` (device only)."""
        x, bcp = self.x.to(*args, **kwargs), self.bcp.to(*args, **kwargs)
        return Sample(x, self.y.to(x.device), bcp)

    def __getitem__(self, index) -> Sample:
        return Sample(self.x[index], self.y[index], self.bcp[index])
