"""Optima and local theory for linear-softmax students, in float64.

``fit_linear`` minimises the mean cross-entropy to fixed targets by Newton's method with a backtracking line
search; the softmax's flat directions are handled by adding their projector to the Hessian (the Newton step
then has no flat component). ``linear_theory`` gathers the constants, noise and predictions of DESIGN.md §1
at an optimum.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from sgdbound._checks import check_count, check_matrix_rows, check_positive
from sgdbound.theory import (
    Bound,
    batch_noise,
    expected_smoothness,
    pl_bound,
    quasi_convex_bound,
    stationary_prediction,
)

__all__ = ["fit_linear", "LinearTheory", "linear_theory", "linear_per_sample_lipschitz", "flat_distance_sq"]

_F64 = torch.float64
#: Norm of ``[W b]`` beyond which :func:`fit_linear`, not converged, reports that no minimiser exists.
DIVERGED = 1e6


def _augment(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)], 1)


def _loss(theta: torch.Tensor, xa: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(targets * torch.log_softmax(xa @ theta.T, 1)).sum(1).mean()


def fit_linear(x: torch.Tensor, targets: torch.Tensor, init: tuple[torch.Tensor, torch.Tensor] | None = None,
               tol: float = 1e-11, max_iter: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """``argmin_{W, b} (1/n) Σ_i −Σ_k t_ik log softmax(W x_i + b)_k`` in float64, centred (rows of ``[W b]``
    sum to zero). Returns ``(W (K, d), b (K,))``; warns if the gradient norm does not reach ``tol``.

    Targets with negative entries (fixed Gaussian noise) can make the objective unbounded below, with no
    minimiser: when Newton's Hessian turns singular, or the iterate ends beyond :data:`DIVERGED` in norm without
    converging, a ``ValueError`` naming ``targets`` says so instead of returning a meaningless point."""
    check_matrix_rows("x", x)
    check_matrix_rows("targets", targets, rows=x.shape[0])
    if x.shape[0] == 0:
        raise ValueError("x must have at least one row")
    max_iter, tol = check_count("max_iter", max_iter), check_positive("tol", tol)
    xa, t = _augment(x.to(_F64)), targets.to(_F64)
    n, num_classes = t.shape
    width = xa.shape[1]
    negative = int((t < 0).any(1).sum())
    unbounded = (f"targets: Newton's method finds no minimiser of the mean cross-entropy to these targets over a "
                 f"linear-softmax student ({negative} of {n} target rows have negative entries, as fixed Gaussian "
                 f"noise gives, and with them the objective can decrease without bound): ")
    if init is None:
        theta = torch.zeros(num_classes, width, dtype=_F64)
    else:
        theta = torch.cat([init[0].to(_F64), init[1].to(_F64)[:, None]], 1)
    theta = theta - theta.mean(0)
    flat = _interior_flat_projector(num_classes, width)
    mass = t.sum(1)
    loss = _loss(theta, xa, t)
    for _ in range(max_iter):
        q = torch.softmax(xa @ theta.T, 1)
        grad = ((mass[:, None] * q - t).T @ xa) / n  # (K, d+1)
        if grad.norm() < tol:
            break
        weights = mass[:, None, None] * (torch.diag_embed(q) - q[:, :, None] * q[:, None, :])  # (n, K, K)
        hess = kron_blocks(xa, weights) + flat
        solved, info = torch.linalg.solve_ex(hess, grad.reshape(-1))
        if int(info) != 0 or not bool(torch.isfinite(solved).all()):
            rank = int(torch.linalg.matrix_rank(xa))
            if rank < width:
                raise ValueError(f"x: the inputs with a column of ones have rank {rank} < {width}, so the optimum "
                                 f"is not unique (Newton's Hessian is singular)")
            raise ValueError(unbounded + f"Newton's Hessian is singular at |θ| = {theta.norm():.3g}")
        step = -solved.reshape(num_classes, width)
        size = 1.0
        while size > 1e-10:
            trial = theta + size * step
            trial_loss = _loss(trial, xa, t)
            if trial_loss <= loss + 1e-4 * size * (grad * step).sum():
                break
            size *= 0.5
        theta, loss = trial, trial_loss
    else:
        if not bool(torch.isfinite(theta).all()) or theta.norm() > DIVERGED:
            raise ValueError(unbounded + f"|θ| reached {theta.norm():.3g} in {max_iter} Newton steps")
        warnings.warn(f"fit_linear stopped after {max_iter} Newton steps (gradient norm {grad.norm():.2e})",
                      stacklevel=2)
    theta = theta - theta.mean(0)
    return theta[:, :-1].contiguous(), theta[:, -1].contiguous()


def kron_blocks(xa: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``(1/n) Σ_i W_i ⊗ x̃_i x̃_iᵀ`` as a ``(K·w, K·w)`` matrix for per-sample ``W_i`` ``(n, K, K)`` (symmetric) and
    augmented inputs ``x̃`` ``(n, w)``: the Hessian and gradient covariance of a linear-softmax student, whose
    per-sample gradient is ``r ⊗ x̃`` in the ``(K, w)`` layout."""
    n, width = xa.shape
    num_classes = weights.shape[1]
    out = torch.empty(num_classes, width, num_classes, width, dtype=xa.dtype, device=xa.device)
    for k in range(num_classes):
        for l in range(k, num_classes):
            block = (xa * weights[:, k, l, None]).T @ xa / n
            out[k, :, l, :] = block
            out[l, :, k, :] = block.T
    return out.reshape(num_classes * width, num_classes * width)


def linear_per_sample_lipschitz(x: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor,
                                bias: torch.Tensor) -> torch.Tensor:
    """Closed form ``λ_max(∇²ℓ_i) = |Σ_k t_ik| λ_max(diag q_i − q_i q_iᵀ) (‖x_i‖² + 1)`` for a linear-softmax
    student (the per-sample Hessian is a Kronecker product), ``(n,)``."""
    q = torch.softmax(x @ weight.T + bias, 1)
    cov = torch.diag_embed(q) - q[:, :, None] * q[:, None, :]
    top = torch.linalg.eigvalsh(cov)[:, -1]
    return targets.sum(1).abs() * top * (x.pow(2).sum(1) + 1)


def flat_distance_sq(weight: torch.Tensor, bias: torch.Tensor, opt_weight: torch.Tensor,
                     opt_bias: torch.Tensor) -> torch.Tensor:
    """Squared distance from ``N`` students (``weight`` ``(N, K, d)``, ``bias`` ``(N, K)``) to the *set* of optima
    ``{(W* + 1vᵀ, b* + c1)}``: the difference with its mean over classes removed, ``(N,)``."""
    dw = weight - opt_weight
    db = bias - opt_bias
    dw = dw - dw.mean(-2, keepdim=True)
    db = db - db.mean(-1, keepdim=True)
    return dw.pow(2).sum((-2, -1)) + db.pow(2).sum(-1)


@dataclass
class LinearTheory:
    """What the theory says about one configuration of a linear student (float64, at its optimum).

    ``weight``/``bias``: the optimum (centred); ``hessian``/``noise_cov``: ``H`` and the one-sample ``S``
    ``(K(d+1), K(d+1))`` in the augmented layout (row ``k`` of ``[W b]``); ``mu`` (off the flat directions),
    ``lipschitz``, ``lipschitz_max``, ``smoothness`` (ℒ(b)), ``sigma2`` (σ²(b) for the batch; round-off below
    ``1e-12 tr H`` counts as exact interpolation); ``predicted_stationary``: the Lyapunov prediction (None where it
    does not apply).
    """

    weight: torch.Tensor
    bias: torch.Tensor
    hessian: torch.Tensor = field(repr=False)
    noise_cov: torch.Tensor = field(repr=False)
    mu: float
    lipschitz: float
    lipschitz_max: float
    smoothness: float
    sigma2: float
    noise_factor: float = 1.0
    predicted_stationary: float | None = None

    def constants(self) -> dict[str, float]:
        return {"mu": self.mu, "lipschitz": self.lipschitz, "lipschitz_max": self.lipschitz_max,
                "smoothness": self.smoothness, "sigma2": self.sigma2}

    def bound(self, step: float, dist0: float) -> Bound | None:
        """T1/T3 with these (local) constants, or None when ``step`` exceeds the theorem's limit."""
        try:
            return quasi_convex_bound(mu=self.mu, smoothness=self.smoothness, sigma2=self.sigma2, step=step,
                                      dist0=dist0)
        except ValueError:
            return None

    def pl(self, step: float, gap0: float) -> Bound | None:
        """T2/T4 with these (local) constants for the excess loss, or None beyond the step limit."""
        try:
            return pl_bound(mu=self.mu, lipschitz=self.lipschitz, smoothness=self.smoothness, sigma2=self.sigma2,
                            step=step, gap0=gap0)
        except ValueError:
            return None

    def predicted_curve(self, steps: np.ndarray, step: float, init_cov: torch.Tensor | None = None) -> np.ndarray:
        """``E‖θ_t − θ*‖²`` of the linearised SGD recursion at every ``t`` in ``steps`` (constant step, no momentum):
        ``Σ_t = A^t Σ_0 A^tᵀ + Σ_∞ − A^t Σ_∞ A^tᵀ`` with ``A = I − γH``; ``init_cov`` is ``E δ_0 δ_0ᵀ`` (zero when
        starting at the optimum)."""
        evals, evecs = torch.linalg.eigh(self.hessian)
        keep = evals > 1e-9 * evals[-1]
        lam, basis = evals[keep], evecs[:, keep]
        contraction = 1 - step * lam
        s_diag = (basis.T @ self.noise_cov @ basis).diagonal() * self.noise_factor
        stationary = step**2 * s_diag / (1 - contraction**2)
        start = torch.zeros_like(lam) if init_cov is None else (basis.T @ init_cov.to(_F64) @ basis).diagonal()
        t = torch.as_tensor(np.asarray(steps, dtype=float), dtype=_F64)[:, None]
        decay = contraction[None, :].abs() ** (2 * t)
        return (stationary + decay * (start - stationary)).sum(1).numpy()


def _interior_flat_projector(num_classes: int, width: int) -> torch.Tensor:
    return torch.kron(torch.full((num_classes, num_classes), 1 / num_classes, dtype=_F64),
                      torch.eye(width, dtype=_F64))


def linear_theory(x: torch.Tensor, bcp: torch.Tensor, targets_mean: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor, *, noise_model=None, fixed_targets: torch.Tensor | None = None,
                  n: float = math.inf, batch: int = 1, step: float | None = None, momentum: float = 0.0,
                  predict: bool = True) -> LinearTheory:
    """Constants and predictions at the optimum ``(weight, bias)``, in closed form for a linear student.

    Per-sample gradients are ``r ⊗ x̃`` with ``r = B t``, ``B = q 1ᵀ − I``; so ``H = (1/n) Σ (Σ m)(diag q − q qᵀ) ⊗
    x̃ x̃ᵀ`` and ``S = (1/n) Σ B (C + m mᵀ) Bᵀ ⊗ x̃ x̃ᵀ``. Streaming (``fixed_targets`` None): ``x``, ``bcp`` are a
    large reference sample, ``C`` and ``m`` come from ``noise_model``. Finite sum: ``x`` is the training set and
    ``S`` the exact second moment of the ``n`` per-sample gradients to ``fixed_targets``.
    """
    x64, w64, b64 = x.to(_F64), weight.to(_F64), bias.to(_F64)
    xa = _augment(x64)
    num_classes, width = w64.shape[0], xa.shape[1]
    theta = torch.cat([w64, b64[:, None]], 1)
    q = torch.softmax(xa @ theta.T, 1)
    outer = torch.diag_embed(q) - q[:, :, None] * q[:, None, :]
    mean = targets_mean.to(_F64) if fixed_targets is None else fixed_targets.to(_F64)
    hess = kron_blocks(xa, mean.sum(1)[:, None, None] * outer)
    if fixed_targets is None:
        bcp64 = bcp.to(_F64)
        m, cov = noise_model.mean(bcp64), noise_model.covariance(bcp64)
        back = q[:, :, None] - torch.eye(num_classes, dtype=_F64)  # B = q 1ᵀ − I
        weights = back @ (cov + m[:, :, None] * m[:, None, :]) @ back.transpose(1, 2)
    else:
        r = mean.sum(1, keepdim=True) * q - mean
        weights = r[:, :, None] * r[:, None, :]
    noise_cov = kron_blocks(xa, weights)
    if noise_cov.trace() <= 1e-12 * hess.trace():
        noise_cov = torch.zeros_like(noise_cov)  # interpolation: what is left is round-off
    lmax = linear_per_sample_lipschitz(x64, mean, w64, b64)
    evals = torch.linalg.eigvalsh(hess)
    lipschitz = evals[-1].item()
    mu = torch.linalg.eigvalsh(hess + 10 * lipschitz * _interior_flat_projector(num_classes, width))[0].item()
    lipschitz_max = max(lmax.max().item(), lipschitz)
    smoothness = expected_smoothness(lipschitz=lipschitz, lipschitz_max=lipschitz_max, n=n, batch=batch)
    sigma2 = batch_noise(sigma2=noise_cov.trace().item(), n=n, batch=batch)
    factor = batch_noise(sigma2=1.0, n=n, batch=batch)
    predicted = None
    if predict and step is not None:
        if sigma2 == 0:
            predicted = 0.0
        else:
            try:
                predicted = float(stationary_prediction(hess, noise_cov, step, momentum=momentum, batch=batch,
                                                        n=None if n == math.inf else int(n)))
            except ValueError:
                predicted = None
    return LinearTheory(w64, b64, hess, noise_cov, mu, lipschitz, lipschitz_max, smoothness, sigma2, factor,
                        predicted)
