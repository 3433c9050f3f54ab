"""The interface every teacher shares: ``fit(x, y)``, then ``probs(x, samples=S, temperature=T)``.

A teacher's predictive is a Monte Carlo average over ``S`` logit samples ``z_s`` ``(S, n, K)``:
``p = (1/S) Σ_s softmax(z_s / T)``; the temperature acts on each sample (the official code's convention, see
``sgdbound.kd.loss``). Subclasses implement ``_fit`` and ``sample_logits``; methods that can, draw the ``S``
samples from features computed once (last-layer Laplace, last-layer MC-dropout), so ``S = 10`` costs little
more than ``S = 1``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from sgdbound.kd.train import OptimConfig, fit_classifier, seeded

__all__ = ["Teacher"]


class Teacher(ABC):
    """Base class. ``net_factory()`` builds a fresh network (see ``sgdbound.kd.nets``); ``epochs``, ``optim`` and
    ``seed`` fix the training; keyword ``options`` are the method's own settings (documented per class)."""

    kind: ClassVar[str] = ""
    defaults: ClassVar[dict] = {}

    def __init__(self, net_factory: Callable[..., nn.Module], *, epochs: int = 30, optim: OptimConfig | None = None,
                 seed: int = 0, cache: dict | None = None, cache_key: str | None = None, **options):
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(f"unknown option(s) {unknown} for the {self.kind!r} teacher; valid: {valid}")
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        self.net_factory, self.epochs, self.seed = net_factory, int(epochs), int(seed)
        self.optim = optim or OptimConfig()
        self.options = {**self.defaults, **options}
        self.fitted = False
        self.cache, self.cache_key = cache, cache_key

    def _train_net(self, x: torch.Tensor, y: torch.Tensor, seed: int, **net_kwargs) -> nn.Module:
        """A net from ``net_factory(**net_kwargs)`` initialised from ``seed`` and trained by cross-entropy.

        With a ``cache`` dict and a ``cache_key`` naming the data and the net (the caller's promise), a net
        trained with the same key, seed, epochs, optimiser and options is reused: the deterministic teacher,
        the Laplace teacher's MAP net and the ensemble's first member are then one training run.
        """
        key = None
        if self.cache is not None and self.cache_key is not None:
            key = (self.cache_key, seed, self.epochs, self.optim, tuple(sorted(net_kwargs.items())))
            if key in self.cache:
                return self.cache[key]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            net = self.net_factory(**net_kwargs)
        net = fit_classifier(net, x, y, epochs=self.epochs, optim=self.optim, seed=int(seed) + 1)
        if key is not None:
            self.cache[key] = net
        return net

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> Teacher:
        """Train on ``x`` ``(n, d)``, ``y`` ``(n,)``; returns ``self``."""
        if x.dim() != 2 or y.shape != x.shape[:1]:
            raise ValueError(f"x must be (n, d) and y (n,), got {tuple(x.shape)} and {tuple(y.shape)}")
        self._fit(x, y)
        self.fitted = True
        return self

    @abstractmethod
    def _fit(self, x: torch.Tensor, y: torch.Tensor) -> None: ...

    @abstractmethod
    def sample_logits(self, x: torch.Tensor, samples: int) -> torch.Tensor:
        """Logit samples ``(S, n, K)``; may draw from the global generator (``probs`` seeds it)."""

    def _mean_probs(self, x: torch.Tensor, samples: int, temperature: float) -> torch.Tensor | None:
        """A closed-form predictive (e.g. probit) where the method has one; None to use samples."""
        return None

    @torch.no_grad()
    def probs(self, x: torch.Tensor, samples: int = 1, temperature: float = 1.0, *, return_samples: bool = False,
              seed: int | None = None, chunk: int = 2048):
        """Mean predictive probabilities ``(n, K)``, tempered per sample; with ``return_samples`` also the
        per-sample probabilities ``(S, n, K)``. Where the method has a closed-form predictive (Laplace with
        ``link="probit"``) the mean is that closed form and the samples are its Monte Carlo draws.

        ``seed`` fixes the Monte Carlo draws (default: the teacher's seed, so a teacher is one fixed function).
        """
        if int(samples) != samples or samples < 1:
            raise ValueError(f"samples (S) must be an integer >= 1, got {samples!r}")
        (mean,), per = self._sampled_means(x, [int(samples)], temperature, seed, chunk, return_samples)
        return (mean, per) if return_samples else mean

    @torch.no_grad()
    def probs_prefixes(self, x: torch.Tensor, counts: list[int], temperature: float = 1.0, *,
                       seed: int | None = None, chunk: int = 2048) -> list[torch.Tensor]:
        """``[probs(x, S, temperature, seed=seed) for S in counts]`` from one draw of ``max(counts)`` samples: the
        mean for ``S`` averages the first ``S`` of them (what the official Monte Carlo script's students get).

        For teachers whose draws are sample-major (deterministic, VI: ``S`` samples are the first ``S`` of more from
        one seed, tested) each entry equals the separate call bitwise; for the others each is still the mean of
        ``S`` independent samples, only coupled across ``S``."""
        if not counts or any(int(c) != c or c < 1 for c in counts):
            raise ValueError(f"counts (S values) must be integers >= 1, got {counts!r}")
        means, _ = self._sampled_means(x, [int(c) for c in counts], temperature, seed, chunk, False)
        return means

    def _sampled_means(self, x: torch.Tensor, counts: list[int], temperature: float, seed: int | None, chunk: int,
                       keep_samples: bool) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """One draw of ``max(counts)`` samples per chunk of ``x``: the mean of the first ``S`` for each ``S`` in
        ``counts`` (the closed form where the method has one), and the per-sample probabilities if kept."""
        if not self.fitted:
            raise ValueError(f"the {self.kind!r} teacher must be fit before probs()")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be positive and finite, got {temperature!r}")
        most = max(counts)
        means: list[list[torch.Tensor]] = [[] for _ in counts]
        per = []
        with seeded(self.seed + 7919 if seed is None else seed):
            for part in x.split(chunk):
                closed = self._mean_probs(part, most, float(temperature))
                if closed is None or keep_samples:
                    sample_probs = torch.softmax(self.sample_logits(part, most) / temperature, dim=-1)
                    per.append(sample_probs)
                for out, count in zip(means, counts):
                    out.append(sample_probs[:count].mean(0) if closed is None else closed)
        return [torch.cat(out) for out in means], torch.cat(per, dim=1) if keep_samples else None
