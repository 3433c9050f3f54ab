"""Gaussian mixtures whose Bayes class probabilities are known exactly.

With a covariance Σ shared by all classes, ``log P(k|x) = xᵀΣ⁻¹μ_k − ½ μ_kᵀΣ⁻¹μ_k + log π_k − c(x)``, so
the BCPs are a linear softmax and a linear student can represent them (assumption AS4 of the paper).
With class-specific covariances (``QuadraticMixture``) they are a quadratic softmax and it cannot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from sgdbound._checks import (
    check_count,
    check_finite,
    check_float_dtype,
    check_nonnegative,
    check_positive,
    check_simplex,
)
from sgdbound.data._sample import Sample, make_generator

__all__ = ["GaussianMixture", "QuadraticMixture", "LogisticTeacher"]

_F64 = torch.float64


def _as_f64(name: str, value) -> torch.Tensor:
    if torch.is_tensor(value):
        if value.dtype == torch.bool or value.is_complex():
            raise ValueError(f"{name} must hold real numbers, got dtype {value.dtype}")
        tensor = value
    else:
        try:
            tensor = torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must hold real numbers: {err}") from err
    tensor = tensor.to(_F64).clone()
    check_finite(name, tensor)
    return tensor


def _check_means(name: str, means: torch.Tensor) -> None:
    if means.dim() != 2 or means.shape[0] < 2 or means.shape[1] < 1:
        raise ValueError(f"{name} must be (K, d) with K >= 2 and d >= 1, got shape {tuple(means.shape)}")


def _affine_map(matrix, shift, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``matrix`` ``(m, d)`` of full row rank and ``shift`` ``(m,)`` in float64, or a ``ValueError`` naming them."""
    matrix, shift = _as_f64("matrix", matrix), _as_f64("shift", shift)
    if matrix.dim() != 2 or matrix.shape[1] != dim or matrix.shape[0] < 1:
        raise ValueError(f"matrix must be (m, {dim}) to act on {dim}-dimensional inputs, got {tuple(matrix.shape)}")
    if shift.shape != matrix.shape[:1]:
        raise ValueError(f"shift must have shape ({matrix.shape[0]},) to match matrix, got {tuple(shift.shape)}")
    singular = torch.linalg.svdvals(matrix)
    if singular[-1] <= singular[0] * max(matrix.shape) * torch.finfo(_F64).eps:
        raise ValueError(f"matrix must have full row rank {matrix.shape[0]} (singular values "
                         f"{singular[0].item():.3g} … {singular[-1].item():.3g})")
    return matrix, shift


def _sample_args(n, dtype) -> int:
    n = check_count("n", n)
    check_float_dtype("dtype", dtype)
    return n


def _check_spd(name: str, matrix: torch.Tensor) -> torch.Tensor:
    if not torch.allclose(matrix, matrix.T, rtol=1e-10, atol=1e-12):
        raise ValueError(f"{name} must be symmetric")
    smallest = torch.linalg.eigvalsh(matrix)[0].item()
    if smallest <= 0:
        raise ValueError(f"{name} must be positive definite (smallest eigenvalue {smallest:.3g})")
    return torch.linalg.cholesky(matrix)


def _priors(priors, num_classes: int) -> torch.Tensor:
    if priors is None:
        return torch.full((num_classes,), 1.0 / num_classes, dtype=_F64)
    pri = _as_f64("priors", priors)
    if pri.shape != (num_classes,):
        raise ValueError(f"priors must have shape ({num_classes},), got {tuple(pri.shape)}")
    check_simplex("priors", pri[None])
    if (pri <= 0).any():
        raise ValueError("priors must be positive")
    return pri


def _inputs(x, dim: int) -> tuple[torch.Tensor, torch.dtype]:
    """``x`` (a tensor or array-like ``(n, d)``) in float64, and the dtype BCPs are returned in (``x``'s own
    floating dtype, float64 otherwise)."""
    if not torch.is_tensor(x):
        try:
            x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise ValueError(f"x must be an (n, {dim}) array of real numbers: {err}") from err
    if x.dim() != 2 or x.shape[1] != dim:
        raise ValueError(f"x must be (n, {dim}), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"x must have at least one row, got shape {tuple(x.shape)}")
    if x.dtype == torch.bool or x.is_complex():
        raise ValueError(f"x must hold real numbers, got dtype {x.dtype}")
    check_finite("x", x)
    return x.to(_F64), (x.dtype if x.is_floating_point() else _F64)


def _draw(generator: torch.Generator, n: int, priors: torch.Tensor) -> torch.Tensor:
    n = check_count("n", n)
    return torch.multinomial(priors, n, replacement=True, generator=generator)


class GaussianMixture:
    """Classes ``y ~ π`` and inputs ``x | y ~ N(μ_y, Σ)`` with one covariance for every class.

    ``means``: ``(K, d)``. ``noise_var``: the shared covariance, given as a scalar (``σ² I``), a vector
    ``(d,)`` (diagonal) or a matrix ``(d, d)`` (full, symmetric positive definite). ``priors``: ``(K,)`` on the
    simplex, uniform by default. All quantities are held in float64.

    Example::

        >>> gm = GaussianMixture.reference(seed=0)
        >>> s = gm.sample(1000, seed=1)
        >>> W, b = gm.bayes_linear()
        >>> torch.allclose(torch.softmax(s.x @ W.T + b, 1), s.bcp)
        True
    """

    def __init__(self, means, noise_var, priors=None):
        self.means = _as_f64("means", means)
        _check_means("means", self.means)
        num_classes, dim = self.means.shape
        var = _as_f64("noise_var", noise_var)
        if var.dim() == 0:
            check_positive("noise_var", var.item())
            self.covariance = var * torch.eye(dim, dtype=_F64)
        elif var.dim() == 1:
            if var.shape != (dim,):
                raise ValueError(f"noise_var as a vector must have shape ({dim},), got {tuple(var.shape)}")
            if (var <= 0).any():
                raise ValueError(f"noise_var entries must be positive, got min {var.min().item():.3g}")
            self.covariance = torch.diag(var)
        elif var.shape == (dim, dim):
            self.covariance = var
        else:
            raise ValueError(f"noise_var must be a scalar, ({dim},) or ({dim}, {dim}), got {tuple(var.shape)}")
        self.noise_var = var
        self._chol = _check_spd("noise_var", self.covariance)
        self.priors = _priors(priors, num_classes)

    # -- description -------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def __repr__(self) -> str:
        return f"GaussianMixture(num_classes={self.num_classes}, dim={self.dim})"

    @classmethod
    def reference(cls, seed: int = 0, *, num_classes: int = 5, dim: int = 30, noise_var: float = 2.5,
                  centers: Sequence[float] = (4.0, 5.0, 6.0)) -> GaussianMixture:
        """The official notebook's problem: 5 classes in 30 dimensions, each mean coordinate drawn uniformly
        from {4, 5, 6}, isotropic variance 2.5, uniform priors."""
        num_classes, dim = check_count("num_classes", num_classes, 2), check_count("dim", dim)
        centers = _as_f64("centers", centers)
        if centers.dim() != 1 or centers.numel() < 1:
            raise ValueError(f"centers must be a non-empty sequence of numbers, got shape {tuple(centers.shape)}")
        gen = make_generator(seed)
        choice = torch.randint(len(centers), (num_classes, dim), generator=gen)
        return cls(centers[choice], noise_var)

    @classmethod
    def random(cls, num_classes: int, dim: int, *, separation: float = 1.0, noise_var: float = 1.0,
               seed: int = 0) -> GaussianMixture:
        """Means ``N(0, separation² I)``; a quick problem for tests and sweeps."""
        num_classes, dim = check_count("num_classes", num_classes, 2), check_count("dim", dim)
        separation = check_nonnegative("separation", separation)
        gen = make_generator(seed)
        means = separation * torch.randn(num_classes, dim, generator=gen, dtype=_F64)
        return cls(means, noise_var)

    # -- exact quantities ----------------------------------------------------------------------------------
    def bayes_linear(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The Bayes-optimal linear-softmax parameters ``(W (K, d), b (K,))`` in float64:
        ``W_k = Σ⁻¹ μ_k`` and ``b_k = −½ μ_kᵀ Σ⁻¹ μ_k + log π_k`` (defined up to a shift common to all classes)."""
        weight = torch.cholesky_solve(self.means.T, self._chol).T
        bias = -0.5 * (weight * self.means).sum(1) + self.priors.log()
        return weight, bias

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """``log π_k + log N(x; μ_k, Σ)`` for every class, ``(n, K)`` in float64."""
        x = self._check_inputs(x)
        diff = x[:, None, :] - self.means[None]  # (n, K, d)
        white = torch.linalg.solve_triangular(self._chol, diff.reshape(-1, self.dim).T, upper=False)
        maha = (white**2).sum(0).reshape(x.shape[0], self.num_classes)
        logdet = 2 * self._chol.diagonal().log().sum()
        return self.priors.log() - 0.5 * (maha + logdet + self.dim * math.log(2 * math.pi))

    def bcp(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``P(k | x)``, ``(n, K)`` in the dtype of ``x`` (computed in float64)."""
        weight, bias = self.bayes_linear()
        xx, dtype = _inputs(x, self.dim)
        return torch.softmax(xx @ weight.T + bias, dim=1).to(dtype)

    def sample(self, n: int, seed: int | None = None, *, generator: torch.Generator | None = None,
               dtype: torch.dtype = _F64) -> Sample:
        """``n`` draws ``(x, y, bcp)``; reproducible for a ``seed`` (or an explicit ``generator``).
        ``dtype``: the floating-point dtype of ``x`` and ``bcp``."""
        n = _sample_args(n, dtype)
        gen = make_generator(seed, generator)
        y = _draw(gen, n, self.priors)
        noise = torch.randn(n, self.dim, generator=gen, dtype=_F64)
        x = self.means[y] + noise @ self._chol.T
        return Sample(x.to(dtype), y, self.bcp(x).to(dtype))

    @property
    def marginal_mean(self) -> torch.Tensor:
        """``E x = Σ_k π_k μ_k``."""
        return self.priors @ self.means

    @property
    def marginal_covariance(self) -> torch.Tensor:
        """``Cov x = Σ + Σ_k π_k (μ_k − m)(μ_k − m)ᵀ``."""
        centred = self.means - self.marginal_mean
        return self.covariance + centred.T @ (self.priors[:, None] * centred)

    def affine(self, matrix: torch.Tensor, shift: torch.Tensor) -> GaussianMixture:
        """The same problem seen through ``x' = A x + c``: means ``A μ_k + c`` and covariance ``A Σ Aᵀ``.
        The BCPs are unchanged point by point: ``P'(k | A x + c) = P(k | x)`` (for a square ``A``).
        ``matrix``: ``(m, d)`` of full row rank; ``shift``: ``(m,)``."""
        matrix, shift = _affine_map(matrix, shift, self.dim)
        return GaussianMixture(self.means @ matrix.T + shift, matrix @ self.covariance @ matrix.T, self.priors)

    def standardization(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean (d,), std (d,))`` of the marginal of ``x``: the population version of the notebook's
        per-feature normalisation."""
        return self.marginal_mean, self.marginal_covariance.diagonal().sqrt()

    def standardized(self) -> GaussianMixture:
        """The same problem in standardised coordinates ``(x − E x) / std x`` (per feature). Because
        the map is affine, the problem stays a shared-covariance mixture and its BCPs stay linear-softmax."""
        mean, std = self.standardization()
        scale = torch.diag(1 / std)
        return self.affine(scale, -mean / std)

    def _check_inputs(self, x) -> torch.Tensor:
        return _inputs(x, self.dim)[0]


class QuadraticMixture(GaussianMixture):
    """Class-specific covariances ``x | y ~ N(μ_y, Σ_y)``: BCPs are a *quadratic* softmax, so a linear student
    cannot represent them (AS4 fails) and even exact-BCP supervision leaves a noise floor.

    ``covariances``: ``(K, d, d)``, each symmetric positive definite.
    """

    def __init__(self, means, covariances, priors=None):
        means = _as_f64("means", means)
        _check_means("means", means)
        covs = _as_f64("covariances", covariances)
        if covs.shape != (means.shape[0], means.shape[1], means.shape[1]):
            raise ValueError(f"covariances must be (K, d, d) = {(means.shape[0], means.shape[1], means.shape[1])}, "
                             f"got {tuple(covs.shape)}")
        chols = torch.stack([_check_spd(f"covariances[{k}]", c) for k, c in enumerate(covs)])
        super().__init__(means, covs.mean(0), priors)
        self.covariances = covs
        self._chols = chols

    @classmethod
    def random(cls, num_classes: int, dim: int, *, separation: float = 1.0, spread: float = 1.0,
               seed: int = 0) -> QuadraticMixture:
        """Means ``N(0, separation² I)`` and covariances ``diag(exp(spread · N(0, 1)))``, different per class."""
        num_classes, dim = check_count("num_classes", num_classes, 2), check_count("dim", dim)
        separation = check_nonnegative("separation", separation)
        spread = check_nonnegative("spread", spread)
        gen = make_generator(seed)
        means = separation * torch.randn(num_classes, dim, generator=gen, dtype=_F64)
        variances = torch.exp(spread * torch.randn(num_classes, dim, generator=gen, dtype=_F64))
        return cls(means, torch.diag_embed(variances))

    def bayes_linear(self):
        raise ValueError("QuadraticMixture has class-specific covariances: its BCPs are not linear-softmax")

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_inputs(x)
        out = []
        for mean, chol in zip(self.means, self._chols):
            white = torch.linalg.solve_triangular(chol, (x - mean).T, upper=False)
            logdet = 2 * chol.diagonal().log().sum()
            out.append(-0.5 * ((white**2).sum(0) + logdet + self.dim * math.log(2 * math.pi)))
        return torch.stack(out, 1) + self.priors.log()

    def bcp(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.log_joint(x), dim=1).to(_inputs(x, self.dim)[1])

    def sample(self, n: int, seed: int | None = None, *, generator: torch.Generator | None = None,
               dtype: torch.dtype = _F64) -> Sample:
        n = _sample_args(n, dtype)
        gen = make_generator(seed, generator)
        y = _draw(gen, n, self.priors)
        noise = torch.randn(n, self.dim, generator=gen, dtype=_F64)
        x = self.means[y] + torch.einsum("nij,nj->ni", self._chols[y], noise)
        return Sample(x.to(dtype), y, self.bcp(x).to(dtype))

    @property
    def marginal_covariance(self) -> torch.Tensor:
        centred = self.means - self.marginal_mean
        within = (self.priors[:, None, None] * self.covariances).sum(0)
        return within + centred.T @ (self.priors[:, None] * centred)

    def affine(self, matrix, shift):
        matrix, shift = _affine_map(matrix, shift, self.dim)
        return QuadraticMixture(self.means @ matrix.T + shift, matrix @ self.covariances @ matrix.T, self.priors)


class LogisticTeacher:
    """Inputs ``x ~ N(0, scale² I)`` and labels ``P(y | x) = softmax(W* x + b*)``: realizable by a linear
    student by construction, with ``bayes_linear() = (W*, b*)``."""

    def __init__(self, weight, bias, *, input_scale: float = 1.0):
        self.weight, self.bias = _as_f64("weight", weight), _as_f64("bias", bias)
        if self.weight.dim() != 2 or self.bias.shape != self.weight.shape[:1]:
            raise ValueError(f"weight must be (K, d) and bias (K,), got {tuple(self.weight.shape)}, "
                             f"{tuple(self.bias.shape)}")
        if self.weight.shape[0] < 2 or self.weight.shape[1] < 1:
            raise ValueError(f"weight must be (K, d) with K >= 2 classes and d >= 1, got {tuple(self.weight.shape)}")
        self.input_scale = check_positive("input_scale", input_scale)

    @classmethod
    def random(cls, num_classes: int, dim: int, *, scale: float = 1.0, seed: int = 0) -> LogisticTeacher:
        """``W*`` with entries ``N(0, scale²/d)`` and ``b* = 0``."""
        num_classes, dim = check_count("num_classes", num_classes, 2), check_count("dim", dim)
        scale = check_nonnegative("scale", scale)
        gen = make_generator(seed)
        weight = scale / math.sqrt(dim) * torch.randn(num_classes, dim, generator=gen, dtype=_F64)
        return cls(weight, torch.zeros(num_classes, dtype=_F64))

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    @property
    def dim(self) -> int:
        return self.weight.shape[1]

    def bayes_linear(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight.clone(), self.bias.clone()

    def bcp(self, x: torch.Tensor) -> torch.Tensor:
        xx, dtype = _inputs(x, self.dim)
        return torch.softmax(xx @ self.weight.T + self.bias, 1).to(dtype)

    def sample(self, n: int, seed: int | None = None, *, generator: torch.Generator | None = None,
               dtype: torch.dtype = _F64) -> Sample:
        n = _sample_args(n, dtype)
        gen = make_generator(seed, generator)
        x = self.input_scale * torch.randn(n, self.dim, generator=gen, dtype=_F64)
        bcp = self.bcp(x)
        y = torch.multinomial(bcp, 1, generator=gen)[:, 0]
        return Sample(x.to(dtype), y, bcp.to(dtype))
