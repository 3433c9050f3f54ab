"""Gradient noise of SGD under a supervision model, measured and predicted (DESIGN.md §1).

For a target ``t`` with ``E[t|x] = m(x)`` and ``Cov[t|x] = C(x)``, the per-sample gradient is
``∇θ ℓ = Jzᵀ r`` with ``r = (Σ t) q − t = −Aᵀ t`` (``A = I − 1 qᵀ``), hence exactly

    E_t ‖∇θ ℓ(θ; x, t)‖² = mᵀ G m + tr(C G).

At the optimum of an interpolating student (``q = P = m``) the first term vanishes and the noise is
``σ² = E_x tr(C G)``: one-hot labels give ``E Σ_k ‖J_k‖²/P_k``, Gaussian noise ``ν E Σ_k ‖J_k‖²/P_k²``,
exact BCPs zero (Props. 2 and 3 of the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sgdbound._checks import check_matrix_rows, check_nonnegative, check_simplex
from sgdbound.targets import Mix, OneHot, SupervisionModel
from sgdbound.theory.gradients import (
    check_model_inputs,
    logit_jacobians,
    logit_ntk,
    loss_residual,
    softmax_gram,
)

__all__ = [
    "empirical_noise",
    "predicted_noise",
    "expected_sq_grad_norm",
    "onehot_noise",
    "noisy_bcp_noise",
    "interpolation_gap",
    "optimal_lambda",
    "LambdaChoice",
    "noise_terms",
    "predicted_gradient_covariance",
]


def _check_supervision(name: str, value) -> None:
    if not isinstance(value, SupervisionModel):
        raise ValueError(f"{name} must be a SupervisionModel (sgdbound.targets), got {type(value).__name__}")


def _model_and_bcp(model: nn.Module, x: torch.Tensor, bcp: torch.Tensor, chunk_size: int | None = None
                   ) -> torch.Tensor:
    """Check the inputs (before any Jacobian is computed) and return ``bcp`` in the model's dtype. Rows that pass
    ``check_simplex`` at a lower precision's tolerance are clamped at 0 and renormalised when cast up, so the
    supervision models' float64 checks accept what the float32 check accepted."""
    logits = check_model_inputs(model, x, chunk_size=chunk_size)
    check_simplex("bcp", bcp, rows=x.shape[0], cols=logits.shape[1])
    if bcp.dtype == logits.dtype:
        return bcp
    bcp = bcp.to(logits.dtype).clamp_min(0)
    return bcp / bcp.sum(1, keepdim=True)


def empirical_noise(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, chunk_size: int | None = None) -> float:
    """Measured ``(1/n) Σ_i ‖∇θ ℓ(θ; x_i, t_i)‖²`` for the given targets ``(n, K)`` (any finite vectors).

    At ``θ*`` with targets drawn from a supervision model this is a Monte Carlo estimate of ``σ²``.
    """
    logits = check_model_inputs(model, x, chunk_size=chunk_size)
    check_matrix_rows("targets", targets, rows=x.shape[0], cols=logits.shape[1])
    return _mean_sq_gradient(model, x, targets, chunk_size)


def _mean_sq_gradient(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, chunk_size: int | None) -> float:
    """``(1/n) Σ_i r_iᵀ M_i r_i`` with ``r = (Σ t) q − t``: the mean squared per-sample gradient norm."""
    logits, ntk = logit_ntk(model, x, chunk_size)
    r = loss_residual(torch.softmax(logits, 1), targets.to(logits.dtype))
    return torch.einsum("nk,nkl,nl->n", r, ntk, r).mean().item()


def noise_terms(model: nn.Module, x: torch.Tensor, bcp: torch.Tensor, noise_model: SupervisionModel,
                chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``(mᵀ G m, tr(C G))``, each ``(n,)``: the bias and noise parts of ``E_t ‖∇θ ℓ‖²``."""
    _check_supervision("noise_model", noise_model)
    bcp = _model_and_bcp(model, x, bcp, chunk_size)
    logits, ntk = logit_ntk(model, x, chunk_size)
    gram = softmax_gram(torch.softmax(logits, 1), ntk)
    mean, cov = noise_model.mean(bcp), noise_model.covariance(bcp)
    bias = torch.einsum("nk,nkl,nl->n", mean, gram, mean)
    noise = torch.einsum("nkl,nlk->n", cov, gram)
    return bias, noise


def predicted_noise(model: nn.Module, x: torch.Tensor, bcp: torch.Tensor, noise_model: SupervisionModel,
                    chunk_size: int | None = None) -> float:
    """Predicted gradient noise ``σ² = (1/n) Σ_i tr(C(x_i) G(x_i))`` at the model's parameters.

    ``bcp`` ``(n, K)``: the Bayes class probabilities of ``x`` ``(n, d)``; ``noise_model`` gives
    ``C = noise_model.covariance(bcp)``. Equals ``E ‖∇θ ℓ(θ*; x, t)‖²`` at an interpolating optimum; elsewhere
    see ``expected_sq_grad_norm``, which adds the bias part.
    """
    return noise_terms(model, x, bcp, noise_model, chunk_size)[1].mean().item()


def expected_sq_grad_norm(model: nn.Module, x: torch.Tensor, bcp: torch.Tensor, noise_model: SupervisionModel,
                          chunk_size: int | None = None) -> float:
    """Exact ``(1/n) Σ_i E_t ‖∇θ ℓ(θ; x_i, t)‖² = (1/n) Σ_i (mᵀ G m + tr(C G))`` at any parameters: what
    ``empirical_noise`` estimates when targets are drawn from ``noise_model``."""
    bias, noise = noise_terms(model, x, bcp, noise_model, chunk_size)
    return (bias + noise).mean().item()


def _jk_norms(model: nn.Module, x: torch.Tensor, bcp: torch.Tensor, chunk_size: int | None):
    bcp = _model_and_bcp(model, x, bcp, chunk_size)
    logits, ntk = logit_ntk(model, x, chunk_size)
    probs = torch.softmax(logits, 1)
    gram = softmax_gram(probs, ntk)
    return probs, gram.diagonal(dim1=1, dim2=2), bcp


def _ratio(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``q / P`` with the limits of the paper's forms where ``P_k = 0``: 1 if ``q_k = 0`` too, else ``inf``."""
    safe = torch.where(p > 0, p, torch.ones_like(p))
    return torch.where(p > 0, q / safe, torch.where(q > 0, torch.full_like(q, torch.inf), torch.ones_like(q)))


def onehot_noise(model: nn.Module, x: torch.Tensor, bcp: torch.Tensor, chunk_size: int | None = None) -> float:
    """The paper's one-hot form (Prop. 3): ``σ² = (1/n) Σ_i Σ_k ‖J_k(x_i)‖² / P_k(x_i)``.

    Equal to ``predicted_noise(..., OneHot())`` when the model interpolates (``q = P``).
    """
    # ‖J_k‖² / P_k = q_k² G_kk / P_k = (q_k / P_k) q_k G_kk; a class with P_k = q_k = 0 contributes 0
    q, g_diag, bcp = _jk_norms(model, x, bcp, chunk_size)
    return (_ratio(q, bcp) * q * g_diag).sum(1).mean().item()


def noisy_bcp_noise(model: nn.Module, x: torch.Tensor, bcp: torch.Tensor, nu: float,
                    chunk_size: int | None = None) -> float:
    """The paper's noisy-BCP form (Prop. 3): ``σ² = ν (1/n) Σ_i Σ_k ‖J_k(x_i)‖² / P_k(x_i)²``.

    Equal to ``predicted_noise(..., Gaussian(nu))`` when the model interpolates.
    """
    nu = check_nonnegative("nu", nu)
    # ‖J_k‖² / P_k² = (q_k / P_k)² G_kk
    q, g_diag, bcp = _jk_norms(model, x, bcp, chunk_size)
    return nu * (_ratio(q, bcp) ** 2 * g_diag).sum(1).mean().item()


def interpolation_gap(model: nn.Module, x: torch.Tensor, bcp: torch.Tensor, chunk_size: int | None = None) -> float:
    """``(1/n) Σ_i ‖∇θ ℓ(θ; x_i, P(x_i))‖²``: the mean squared per-sample gradient with exact-BCP targets.

    Zero (to round-off) exactly when the model interpolates (Prop. 2: ``θ*`` minimises every per-sample loss).
    ``bcp`` may be any rows on the simplex (one-hot labels give the one-hot gap).
    """
    bcp = _model_and_bcp(model, x, bcp, chunk_size)
    return _mean_sq_gradient(model, x, bcp, chunk_size)


@dataclass(frozen=True)
class LambdaChoice:
    """The noise-minimising distillation weight ``λ* = A / (A + B)``.

    ``onehot``: ``A = E tr(C_onehot G)``; ``teacher``: ``B = E tr(C_teacher G)``; ``noise``: the minimum
    ``(1 − λ*)² A + λ*² B = A B / (A + B)``.
    """

    lam: float
    onehot: float
    teacher: float

    @property
    def noise(self) -> float:
        return self.noise_at(self.lam)

    def noise_at(self, lam: float) -> float:
        """``(1 − λ)² A + λ² B``: the predicted noise of ``Mix(λ, teacher)``."""
        return (1 - lam) ** 2 * self.onehot + lam**2 * self.teacher


LAMBDA_CRITERIA = ("noise", "plateau")


def optimal_lambda(model: nn.Module, x: torch.Tensor, bcp: torch.Tensor, teacher: SupervisionModel,
                   chunk_size: int | None = None, criterion: str = "noise") -> LambdaChoice:
    """Choose ``λ`` in ``t = (1 − λ) e_y + λ p̃`` to minimise ``(1 − λ)² A + λ² B``: ``λ* = A / (A + B)``.

    ``criterion="noise"``: ``A``, ``B`` are the gradient noises ``E tr(C G)`` of one-hot labels and of the teacher
    (σ², DESIGN.md §1). ``criterion="plateau"``: ``A = tr(H⁺ S_onehot)``, ``B = tr(H⁺ S_teacher)``, the weights of
    SGD's small-step stationary spread ``(γ/2b) tr(H⁺ S)`` (``H`` the Hessian at the model, small models only).
    The two agree when the teacher's noise is shaped like one-hot noise (a Dirichlet teacher: ``(1+α)/(2+α)``)
    and differ otherwise. A data-driven answer to the paper's open question of how to weight the distillation
    term. The teacher's noise is taken independent of the label.

    A biased teacher (mean ``m ≠ P``, e.g. :class:`~sgdbound.targets.Temperature`): ``"noise"`` counts its
    covariance only (``B = 0`` for a deterministic one), ``"plateau"`` its second moment at the model, so ``B``
    also holds the per-sample bias gradients ``Γᵀ(m − P)`` (``tr(H⁺ (1/n) Σ ∇ℓ(x_i, m_i) ∇ℓ(x_i, m_i)ᵀ)`` at a
    BCP optimum). Neither accounts for the shift of the optimum that the bias causes.
    """
    if isinstance(teacher, Mix):
        raise ValueError("teacher must be the teacher's own supervision model, not a Mix")
    if criterion not in LAMBDA_CRITERIA:
        raise ValueError(f"criterion must be one of {LAMBDA_CRITERIA}, got {criterion!r}")
    _check_supervision("teacher", teacher)
    if criterion == "noise":
        a = predicted_noise(model, x, bcp, OneHot(), chunk_size)
        b = predicted_noise(model, x, bcp, teacher, chunk_size)
    else:
        from sgdbound.theory.constants import loss_hessian

        hess = loss_hessian(model, x, _model_and_bcp(model, x, bcp, chunk_size))
        pinv = torch.linalg.pinv(hess, hermitian=True, rtol=1e-9)
        a = (pinv * predicted_gradient_covariance(model, x, bcp, OneHot(), chunk_size)).sum().item()
        b = (pinv * predicted_gradient_covariance(model, x, bcp, teacher, chunk_size)).sum().item()
    lam = 1.0 if a + b == 0 else a / (a + b)
    return LambdaChoice(lam=lam, onehot=a, teacher=b)


def predicted_gradient_covariance(model: nn.Module, x: torch.Tensor, bcp: torch.Tensor,
                                  noise_model: SupervisionModel, chunk_size: int | None = None) -> torch.Tensor:
    """``S = (1/n) Σ_i E_t[∇θ ℓ ∇θ ℓᵀ]`` ``(P, P)``: with ``Γ = A Jz`` (rows ``g_k``),
    ``S_i = Γᵀ (C + m mᵀ) Γ``. At an interpolating optimum ``m``-terms vanish and ``tr S = σ²``.
    For small models (holds the ``(n, K, P)`` Jacobians of a chunk)."""
    _check_supervision("noise_model", noise_model)
    bcp = _model_and_bcp(model, x, bcp, chunk_size)
    logits, jz = logit_jacobians(model, x, chunk_size)
    probs = torch.softmax(logits, 1)
    eye = torch.eye(probs.shape[1], dtype=probs.dtype, device=probs.device)
    gamma = (eye - probs[:, None, :]) @ jz  # (n, K, P), row k = g_k
    mean = noise_model.mean(bcp)
    second = noise_model.covariance(bcp) + mean[:, :, None] * mean[:, None, :]
    return torch.einsum("nkp,nkl,nlq->pq", gamma, second, gamma) / x.shape[0]
