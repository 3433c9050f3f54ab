"""Fast draws of ``(x, y, P(·|x))`` on the simulator's device and dtype, for streaming SGD.

Each problem of ``sgdbound.data`` gets a sampler that keeps its constants on the device and draws a whole
``(N, b)`` block of examples (one per replica and batch slot) in a handful of tensor operations.
"""

from __future__ import annotations

import torch

from sgdbound.data import GaussianMixture, LogisticTeacher, QuadraticMixture

__all__ = ["StreamSampler", "make_sampler"]


class StreamSampler:
    """Draws ``x`` ``(*shape, d)``, ``y`` ``(*shape,)`` and ``bcp`` ``(*shape, K)`` from a problem."""

    def __init__(self, problem, device: torch.device, dtype: torch.dtype):
        self.problem, self.device, self.dtype = problem, device, dtype
        self.dim, self.num_classes = problem.dim, problem.num_classes

    def draw(self, shape: tuple[int, ...], generator: torch.Generator):
        raise NotImplementedError

    def _labels(self, priors: torch.Tensor, shape, generator) -> torch.Tensor:
        if self.uniform:  # one randint
            return torch.randint(priors.numel(), shape, generator=generator, device=self.device)
        cdf = priors.cumsum(0)
        u = torch.rand(shape, generator=generator, device=self.device, dtype=priors.dtype)
        return torch.searchsorted(cdf, u * cdf[-1]).clamp_max(priors.numel() - 1)


class _MixtureSampler(StreamSampler):
    def __init__(self, problem: GaussianMixture, device, dtype):
        super().__init__(problem, device, dtype)
        put = {"device": device, "dtype": dtype}
        self.means = problem.means.to(**put)
        self.priors = problem.priors.to(**put)
        self.uniform = bool(problem.priors.max() - problem.priors.min() <= 1e-15)
        chol = problem._chol
        self.scale = None
        if torch.equal(chol, torch.diag(chol.diagonal())):
            self.scale = chol.diagonal().to(**put)
        self.chol_t = chol.T.to(**put)
        weight, bias = problem.bayes_linear()
        self.weight_t, self.bias = weight.T.to(**put), bias.to(**put)

    def _inputs(self, y, shape, generator):
        z = torch.randn(*shape, self.dim, generator=generator, device=self.device, dtype=self.dtype)
        if self.scale is not None:
            return torch.addcmul(self.means[y], z, self.scale)
        return self.means[y] + z @ self.chol_t

    def draw(self, shape, generator):
        y = self._labels(self.priors, shape, generator)
        x = self._inputs(y, shape, generator)
        return x, y, torch.softmax(x @ self.weight_t + self.bias, dim=-1)


class _QuadraticSampler(_MixtureSampler):
    def __init__(self, problem: QuadraticMixture, device, dtype):
        StreamSampler.__init__(self, problem, device, dtype)
        put = {"device": device, "dtype": dtype}
        self.means = problem.means.to(**put)
        self.priors = problem.priors.to(**put)
        self.uniform = bool(problem.priors.max() - problem.priors.min() <= 1e-15)
        self.chols = problem._chols.to(**put)
        # log N(x; μ_k, Σ_k) = −½‖L_k⁻¹(x − μ_k)‖² − ½ log det Σ_k + const: keep L_k⁻¹.
        self.inv_chols = torch.linalg.inv(problem._chols).to(**put)
        self.log_norm = (problem.priors.log() - problem._chols.diagonal(dim1=1, dim2=2).log().sum(1)).to(**put)

    def draw(self, shape, generator):
        y = self._labels(self.priors, shape, generator)
        z = torch.randn(*shape, self.dim, generator=generator, device=self.device, dtype=self.dtype)
        x = self.means[y] + (self.chols[y] @ z[..., None])[..., 0]
        white = torch.einsum("kij,...kj->...ki", self.inv_chols, x[..., None, :] - self.means)
        return x, y, torch.softmax(self.log_norm - 0.5 * (white**2).sum(-1), dim=-1)


class _LogisticSampler(StreamSampler):
    def __init__(self, problem: LogisticTeacher, device, dtype):
        super().__init__(problem, device, dtype)
        put = {"device": device, "dtype": dtype}
        self.weight_t, self.bias = problem.weight.T.to(**put), problem.bias.to(**put)
        self.input_scale = problem.input_scale

    def draw(self, shape, generator):
        x = self.input_scale * torch.randn(*shape, self.dim, generator=generator, device=self.device,
                                           dtype=self.dtype)
        bcp = torch.softmax(x @ self.weight_t + self.bias, dim=-1)
        u = torch.rand(*shape, 1, generator=generator, device=self.device, dtype=self.dtype)
        y = (bcp.cumsum(-1) < u * bcp.sum(-1, keepdim=True)).sum(-1).clamp_max(self.num_classes - 1)
        return x, y, bcp


_SAMPLERS: dict[type, type[StreamSampler]] = {
    QuadraticMixture: _QuadraticSampler,
    GaussianMixture: _MixtureSampler,
    LogisticTeacher: _LogisticSampler,
}


def make_sampler(problem, device: torch.device, dtype: torch.dtype) -> StreamSampler:
    """The device sampler for ``problem`` (exact type first, then base classes)."""
    for cls in type(problem).__mro__:
        if cls in _SAMPLERS:
            return _SAMPLERS[cls](problem, device, dtype)
    raise ValueError(f"problem must be one of {[c.__name__ for c in _SAMPLERS]}, got {type(problem).__name__}")
