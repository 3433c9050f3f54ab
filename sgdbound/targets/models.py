"""The supervision models of DESIGN.md §1 with their exact means and covariances."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from sgdbound._checks import check_generator, check_nonnegative, check_positive, check_probability, check_simplex

__all__ = ["SupervisionModel", "OneHot", "Exact", "Dirichlet", "Gaussian", "Temperature", "Mix", "TARGETS",
           "get_target", "sample_gamma_log"]


def _outer_cov(bcp: torch.Tensor) -> torch.Tensor:
    """``diag(P) − P Pᵀ`` for each row, ``(n, K, K)``: the covariance of a one-hot draw."""
    return torch.diag_embed(bcp) - bcp[:, :, None] * bcp[:, None, :]


def _check_labels(y: torch.Tensor | None, bcp: torch.Tensor) -> None:
    if y is None:
        return
    if not torch.is_tensor(y):
        raise ValueError(f"y must be a tensor of integer labels, got {type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"y must hold integer labels, got dtype {y.dtype}")
    if y.shape != bcp.shape[:1]:
        raise ValueError(f"y must have shape ({bcp.shape[0]},) to match bcp, got {tuple(y.shape)}")
    if y.numel() and (y.min() < 0 or y.max() >= bcp.shape[1]):
        raise ValueError(f"y must hold labels in [0, {bcp.shape[1]})")


def _row_parameter(name: str, value, bcp: torch.Tensor, *, positive: bool):
    """A model parameter given as a number, or as a tensor with one value per row of ``bcp`` (``(n, 1)``, or one
    element for all rows); refuse NaN, inf and values that are not positive (``positive``) or negative."""
    if not torch.is_tensor(value):
        return check_positive(name, value) if positive else check_nonnegative(name, value)
    n = bcp.shape[0]
    if not (value.numel() == 1 and value.dim() <= 2) and tuple(value.shape) != (n, 1):
        raise ValueError(f"{name} must be a number or an ({n}, 1) tensor (one value per row of bcp), "
                         f"got shape {tuple(value.shape)}")
    if not value.is_floating_point():
        raise ValueError(f"{name} must have a floating-point dtype, got {value.dtype}")
    bad = ~(((value > 0) if positive else (value >= 0)) & (value < math.inf))  # NaN fails both comparisons
    if bad.any():
        index = tuple(int(i) for i in bad.nonzero()[0])
        rule = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be {rule} and finite (entry {index} is {value[index].item()})")
    return value


def _checked_rows(name: str, value, bcp: torch.Tensor, generator, *, positive: bool):
    """The checks of a ``sample_rows``: ``bcp`` as ``sample``'s, the row parameter, the generator."""
    check_simplex("bcp", bcp)
    value = _row_parameter(name, value, bcp, positive=positive)
    check_generator("generator", generator)
    return value


def _labels(bcp: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    if y is not None:
        return y.to(bcp.device)
    return torch.multinomial(bcp.clamp_min(0), 1, generator=generator)[:, 0]


def sample_gamma_log(shape: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``log G`` with ``G ~ Gamma(shape, 1)`` elementwise, drawn from ``generator`` (Marsaglia & Tsang 2000).

    Shapes below one use ``G = G' U^{1/a}`` with ``G' ~ Gamma(a + 1)``, kept in log space so tiny shapes
    (``α P_k`` near zero) do not underflow.
    """
    if not torch.is_tensor(shape) or not shape.is_floating_point():
        raise ValueError(f"shape must be a floating-point tensor, got "
                         f"{shape.dtype if torch.is_tensor(shape) else type(shape).__name__}")
    bad = ~(torch.isfinite(shape) & (shape > 0))  # NaN and inf would never be accepted by the loop below
    if bad.any():
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"shape must hold positive, finite gamma shape parameters (entry {index} is "
                         f"{shape[index].item()})")
    boost = shape < 1
    a = torch.where(boost, shape + 1, shape)
    d = a - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.empty_like(a)
    todo = torch.ones_like(a, dtype=torch.bool)
    while todo.any():
        idx = todo.nonzero(as_tuple=True)
        dd, cc = d[idx], c[idx]
        z = torch.randn(dd.shape, generator=generator, dtype=a.dtype, device=a.device)
        u = torch.rand(dd.shape, generator=generator, dtype=a.dtype, device=a.device)
        v = (1 + cc * z) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * z**2 + dd - dd * v + dd * torch.log(v.clamp_min(1e-300)))
        good = tuple(i[ok] for i in idx)
        out[good] = torch.log(dd[ok]) + torch.log(v[ok])
        todo[good] = False
    if boost.any():
        u = torch.rand(shape.shape, generator=generator, dtype=a.dtype, device=a.device)
        out = torch.where(boost, out + torch.log(u) / shape, out)
    return out


class SupervisionModel(ABC):
    """A random target ``t`` given the BCPs: first two moments in closed form and a sampler.

    ``biased`` is true when ``mean(P) ≠ P``: such a teacher also moves the optimum, not only the noise.
    """

    biased: bool = False
    ROW_PARAMETER: str | None = None
    """Models whose configurations differ only in this one parameter can be drawn together by
    ``sample_rows(values (n, 1), bcp, generator)`` (the simulator's many-configuration runs)."""

    @abstractmethod
    def mean(self, bcp: torch.Tensor) -> torch.Tensor:
        """``E[t | x]``, ``(n, K)``."""

    @abstractmethod
    def covariance(self, bcp: torch.Tensor) -> torch.Tensor:
        """``Cov[t | x]``, ``(n, K, K)``."""

    @abstractmethod
    def _sample(self, bcp: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator | None):
        ...

    def sample(self, bcp: torch.Tensor, y: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Targets ``(n, K)`` for BCPs ``bcp`` ``(n, K)``. ``y`` ``(n,)``: the labels already drawn from
        ``bcp`` (one-hot parts use them; drawn afresh from ``bcp`` when None)."""
        check_simplex("bcp", bcp)
        _check_labels(y, bcp)
        check_generator("generator", generator)
        return self._sample(bcp, y, generator)

    def check(self, bcp: torch.Tensor) -> None:
        check_simplex("bcp", bcp)


@dataclass(frozen=True)
class OneHot(SupervisionModel):
    """Hard labels ``t = e_y`` with ``y ~ P(·|x)``: mean ``P``, covariance ``diag P − P Pᵀ``."""

    def mean(self, bcp):
        self.check(bcp)
        return bcp.clone()

    def covariance(self, bcp):
        self.check(bcp)
        return _outer_cov(bcp)

    def _sample(self, bcp, y, generator):
        return torch.nn.functional.one_hot(_labels(bcp, y, generator), bcp.shape[1]).to(bcp.dtype)


@dataclass(frozen=True)
class Exact(SupervisionModel):
    """The Bayes class probabilities themselves: ``t = P``, no noise."""

    def mean(self, bcp):
        self.check(bcp)
        return bcp.clone()

    def covariance(self, bcp):
        self.check(bcp)
        return bcp.new_zeros(bcp.shape[0], bcp.shape[1], bcp.shape[1])

    def _sample(self, bcp, y, generator):
        return bcp.clone()


@dataclass(frozen=True)
class Dirichlet(SupervisionModel):
    """The official notebook's noisy teacher ``t ~ Dir(α P)``: mean ``P``, covariance
    ``(diag P − P Pᵀ) / (1 + α)``. ``α → 0`` approaches one-hot labels, ``α → ∞`` the exact BCPs."""

    alpha: float

    def __post_init__(self):
        check_positive("alpha", self.alpha)

    def mean(self, bcp):
        self.check(bcp)
        return bcp.clone()

    def covariance(self, bcp):
        self.check(bcp)
        return _outer_cov(bcp) / (1 + self.alpha)

    ROW_PARAMETER = "alpha"

    def _sample(self, bcp, y, generator):
        return self._draw_rows(self.alpha, bcp, generator)

    @staticmethod
    def sample_rows(alpha, bcp: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draws for ``alpha`` a number or a ``(n, 1)`` tensor (one concentration per row), so several
        configurations sample together. Entries with ``P_k = 0`` stay exactly 0 (a degenerate component).

        ``bcp`` is checked like ``sample``'s, and ``alpha`` must be positive and finite."""
        return Dirichlet._draw_rows(_checked_rows("alpha", alpha, bcp, generator, positive=True), bcp, generator)

    @staticmethod
    def _draw_rows(alpha, bcp: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """``sample_rows`` on checked arguments."""
        shape = alpha * bcp
        positive = shape > 0  # P_k = 0 (or α P_k below the smallest float) is a degenerate component
        shape = torch.where(positive, shape, torch.ones_like(shape))
        logs = sample_gamma_log(shape, generator)
        logs = torch.where(positive, logs, torch.full_like(logs, -math.inf))
        return torch.softmax(logs, dim=1)


@dataclass(frozen=True)
class Gaussian(SupervisionModel):
    """The paper's noisy BCP: ``t = P + ε`` with independent ``ε_k ~ N(0, ν)``; covariance ``ν I``.
    Targets leave the simplex, so the loss gradient must use the full formula ``(Σ t) q − t``."""

    nu: float

    def __post_init__(self):
        check_nonnegative("nu", self.nu)

    def mean(self, bcp):
        self.check(bcp)
        return bcp.clone()

    def covariance(self, bcp):
        self.check(bcp)
        eye = torch.eye(bcp.shape[1], dtype=bcp.dtype, device=bcp.device)
        return self.nu * eye.expand(bcp.shape[0], -1, -1).clone()

    ROW_PARAMETER = "nu"

    def _sample(self, bcp, y, generator):
        return self._draw_rows(self.nu, bcp, generator)

    @staticmethod
    def sample_rows(nu, bcp: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draws for ``nu`` a number or a ``(n, 1)`` tensor (one variance per row).

        ``bcp`` is checked like ``sample``'s, and ``nu`` must be non-negative and finite."""
        return Gaussian._draw_rows(_checked_rows("nu", nu, bcp, generator, positive=False), bcp, generator)

    @staticmethod
    def _draw_rows(nu, bcp: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """``sample_rows`` on checked arguments."""
        noise = torch.randn(bcp.shape, generator=generator, dtype=bcp.dtype, device=bcp.device)
        scale = nu.sqrt() if torch.is_tensor(nu) else math.sqrt(nu)
        return bcp + scale * noise


@dataclass(frozen=True)
class Temperature(SupervisionModel):
    """A deterministic, *biased* teacher ``t = softmax(log P / T)``: no noise, but a shifted optimum
    (``T > 1`` under-confident, ``T < 1`` over-confident)."""

    T: float

    def __post_init__(self):
        check_positive("T", self.T)

    def _tempered(self, bcp: torch.Tensor) -> torch.Tensor:
        """``softmax(log P / T)`` computed as ``softmax((log P − max log P) / T)``: the largest entry of each row
        is 0 before the division, so a tiny ``T`` gives the arg-max (ties shared), never ``−inf − (−inf)``.
        Zero entries (and round-off below zero) stay exactly 0."""
        logs = bcp.clamp_min(0).log()
        logs = logs - logs.amax(dim=1, keepdim=True)
        return torch.softmax(logs / self.T, dim=1)

    @property
    def biased(self) -> bool:  # type: ignore[override]
        return self.T != 1.0

    def mean(self, bcp):
        self.check(bcp)
        return self._tempered(bcp)

    def covariance(self, bcp):
        self.check(bcp)
        return bcp.new_zeros(bcp.shape[0], bcp.shape[1], bcp.shape[1])

    def _sample(self, bcp, y, generator):
        return self._tempered(bcp)


@dataclass(frozen=True)
class Mix(SupervisionModel):
    """The distillation target ``t = (1 − λ) e_y + λ p̃`` with a teacher ``p̃`` drawn independently of ``y``:
    mean ``(1 − λ) P + λ E p̃``, covariance ``(1 − λ)² (diag P − P Pᵀ) + λ² C_teacher``."""

    lam: float
    teacher: SupervisionModel

    def __post_init__(self):
        check_probability("lam", self.lam)
        if not isinstance(self.teacher, SupervisionModel):
            raise ValueError(f"teacher must be a SupervisionModel, got {type(self.teacher).__name__}")

    @property
    def biased(self) -> bool:  # type: ignore[override]
        return self.lam > 0 and self.teacher.biased

    def mean(self, bcp):
        self.check(bcp)
        return (1 - self.lam) * bcp + self.lam * self.teacher.mean(bcp)

    def covariance(self, bcp):
        self.check(bcp)
        return (1 - self.lam) ** 2 * _outer_cov(bcp) + self.lam**2 * self.teacher.covariance(bcp)

    def _sample(self, bcp, y, generator):
        hard = torch.nn.functional.one_hot(_labels(bcp, y, generator), bcp.shape[1]).to(bcp.dtype)
        soft = self.teacher._sample(bcp, None if isinstance(self.teacher, OneHot) else y, generator)
        return (1 - self.lam) * hard + self.lam * soft


TARGETS: dict[str, type[SupervisionModel]] = {
    "onehot": OneHot,
    "exact": Exact,
    "dirichlet": Dirichlet,
    "gaussian": Gaussian,
    "temperature": Temperature,
    "mix": Mix,
}


def get_target(name: str, **params) -> SupervisionModel:
    """A supervision model by registry name, e.g. ``get_target("dirichlet", alpha=5)``."""
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}: name must be one of {', '.join(sorted(TARGETS))}")
    return TARGETS[name](**params)
