"""The sample container and the generator plumbing shared by the synthetic problems."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Sample", "make_generator"]


def make_generator(seed: int | None = None, generator: torch.Generator | None = None) -> torch.Generator:
    """An explicit CPU generator: ``generator`` if given, else one seeded with ``seed`` (fresh entropy if None)."""
    if generator is not None:
        if seed is not None:
            raise ValueError("give either seed or generator, not both")
        return generator
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


@dataclass(frozen=True)
class Sample:
    """Labelled draws with their exact Bayes class probabilities.

    ``x``: ``(n, d)`` inputs; ``y``: ``(n,)`` labels drawn from ``bcp``; ``bcp``: ``(n, K)`` rows on the simplex,
    ``bcp[i, k] = P(y = k | x_i)``.
    """

    x: torch.Tensor
    y: torch.Tensor
    bcp: torch.Tensor

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
