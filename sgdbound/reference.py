"""Slow twins of the fast paths, written independently of ``sgdbound.theory`` and used by the tests.

Everything here is a plain loop in float64: per sample and per class ``torch.autograd.grad`` for the
gradients, ``torch.autograd.functional.hessian`` on a flat-parameter closure for Hessians, numpy's Kronecker
products for the stationary covariance, ``scipy.stats.multivariate_normal`` for Gaussian-mixture BCPs, and the
bounds of DESIGN.md §1 written out literally. Nothing here imports ``sgdbound.theory``: a twin shares no code
with the function it checks. The price is speed, so keep inputs small (tens of samples, a few hundred
parameters).

Parameter vectors are flattened in ``model.parameters()`` order; for ``LinearSoftmax`` that is ``weight``
``(K, d)`` row-major, then ``bias`` ``(K,)``.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.linalg
import scipy.special
import scipy.stats
import torch
from torch import nn

from sgdbound.targets import Dirichlet, Exact, Gaussian, Mix, OneHot, SupervisionModel, Temperature

__all__ = [
    "flat_vector",
    "grad_log_probs",
    "grad_probs",
    "probs",
    "gram",
    "loss_gradients",
    "empirical_noise",
    "target_mean",
    "target_covariance",
    "predicted_noise",
    "expected_sq_grad_norm",
    "gradient_second_moment",
    "onehot_noise",
    "noisy_bcp_noise",
    "interpolation_gap",
    "optimal_lambda",
    "loss_hessian",
    "linear_softmax_hessian",
    "per_sample_hessian_norm",
    "flat_basis",
    "mu_off_flat",
    "stationary_covariance",
    "small_step_spread",
    "gmm_bcp",
    "expected_smoothness",
    "batch_noise",
    "t1",
    "t2",
    "t3",
    "t4",
    "minibatches",
]


# -- gradients, one sample and one class at a time -------------------------------------------------------
def flat_vector(tensors) -> torch.Tensor:
    """Concatenate tensors (gradients or parameters) into one ``(P,)`` vector in the given order."""
    return torch.cat([t.reshape(-1) for t in tensors])


def _params(model: nn.Module) -> list[torch.Tensor]:
    return list(model.parameters())


def grad_log_probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``g_k(x_i) = ∇θ log q_k(x_i)`` for every sample and class, ``(n, K, P)``, one backward pass each."""
    params = _params(model)
    rows = []
    for i in range(x.shape[0]):
        log_q = torch.log_softmax(model(x[i:i + 1])[0], dim=0)
        per_class = []
        for k in range(log_q.shape[0]):
            grads = torch.autograd.grad(log_q[k], params, retain_graph=True)
            per_class.append(flat_vector(grads))
        rows.append(torch.stack(per_class))
    return torch.stack(rows).detach()


def grad_probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``J_k(x_i) = ∇θ q_k(x_i)`` for every sample and class, ``(n, K, P)``."""
    params = _params(model)
    rows = []
    for i in range(x.shape[0]):
        q = torch.softmax(model(x[i:i + 1])[0], dim=0)
        rows.append(torch.stack([flat_vector(torch.autograd.grad(q[k], params, retain_graph=True))
                                 for k in range(q.shape[0])]))
    return torch.stack(rows).detach()


def probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``q(x_i)`` ``(n, K)``."""
    with torch.no_grad():
        return torch.softmax(model(x), dim=1)


def gram(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``G_kl(x_i) = ⟨g_k, g_l⟩``, ``(n, K, K)``."""
    g = grad_log_probs(model, x)
    return torch.stack([torch.stack([torch.stack([(gi[k] * gi[l]).sum() for l in range(gi.shape[0])])
                                     for k in range(gi.shape[0])]) for gi in g])


def loss_gradients(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``∇θ ℓ(θ; x_i, t_i)`` with the full formula ``ℓ = −Σ_k t_k log q_k`` (targets need not sum to one),
    ``(n, P)``."""
    params = _params(model)
    out = []
    for i in range(x.shape[0]):
        log_q = torch.log_softmax(model(x[i:i + 1])[0], dim=0)
        loss = -(targets[i].to(log_q.dtype) * log_q).sum()
        out.append(flat_vector(torch.autograd.grad(loss, params)))
    return torch.stack(out).detach()


def empirical_noise(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> float:
    """``(1/n) Σ_i ‖∇θ ℓ(θ; x_i, t_i)‖²``."""
    grads = loss_gradients(model, x, targets)
    return float((grads**2).sum(1).mean())


# -- supervision models: their moments written out per row -----------------------------------------------
def _onehot_cov(p: torch.Tensor) -> torch.Tensor:
    k = p.shape[0]
    cov = torch.zeros(k, k, dtype=p.dtype)
    for a in range(k):
        for b in range(k):
            cov[a, b] = (p[a] if a == b else 0.0) - p[a] * p[b]
    return cov


def target_mean(noise_model: SupervisionModel, p: torch.Tensor) -> torch.Tensor:
    """``E[t | x]`` for one BCP row ``p`` ``(K,)``, from the model's stated closed form."""
    if isinstance(noise_model, (OneHot, Exact, Dirichlet, Gaussian)):
        return p.clone()
    if isinstance(noise_model, Temperature):
        powered = p ** (1.0 / noise_model.T)
        return powered / powered.sum()
    if isinstance(noise_model, Mix):
        return (1 - noise_model.lam) * p + noise_model.lam * target_mean(noise_model.teacher, p)
    raise TypeError(f"no reference for {type(noise_model).__name__}")


def target_covariance(noise_model: SupervisionModel, p: torch.Tensor) -> torch.Tensor:
    """``Cov[t | x]`` for one BCP row ``p`` ``(K,)``: one-hot ``diag p − p pᵀ``; exact and temperature 0;
    Dirichlet ``(diag p − p pᵀ)/(1 + α)``; Gaussian ``ν I``; mix ``(1−λ)² C_onehot + λ² C_teacher``."""
    k = p.shape[0]
    if isinstance(noise_model, OneHot):
        return _onehot_cov(p)
    if isinstance(noise_model, (Exact, Temperature)):
        return torch.zeros(k, k, dtype=p.dtype)
    if isinstance(noise_model, Dirichlet):
        return _onehot_cov(p) / (1 + noise_model.alpha)
    if isinstance(noise_model, Gaussian):
        return noise_model.nu * torch.eye(k, dtype=p.dtype)
    if isinstance(noise_model, Mix):
        lam = noise_model.lam
        return (1 - lam) ** 2 * _onehot_cov(p) + lam**2 * target_covariance(noise_model.teacher, p)
    raise TypeError(f"no reference for {type(noise_model).__name__}")


def predicted_noise(model: nn.Module, x: torch.Tensor, bcp: torch.Tensor, noise_model: SupervisionModel,
                    grams: torch.Tensor | None = None) -> float:
    """``(1/n) Σ_i tr(C(x_i) G(x_i))`` with ``C`` from ``target_covariance`` (``grams``: ``gram(model, x)``
    when already computed)."""
    grams = gram(model, x) if grams is None else grams
    total = 0.0
    for i in range(x.shape[0]):
        total += float(torch.trace(target_covariance(noise_model, bcp[i]) @ grams[i]))
    return total / x.shape[0]


def expected_sq_grad_norm(model: nn.Module, x: torch.Tensor, bcp: torch.Tensor,
                          noise_model: SupervisionModel, grams: torch.Tensor | None = None) -> float:
    """``(1/n) Σ_i E_t ‖∇θ ℓ‖² = (1/n) Σ_i (mᵀ G m + tr(C G))`` (``∇θ ℓ = −Σ_k t_k g_k``)."""
    grams = gram(model, x) if grams is None else grams
    total = 0.0
    for i in range(x.shape[0]):
        m = target_mean(noise_model, bcp[i])
        total += float(m @ grams[i] @ m + torch.trace(target_covariance(noise_model, bcp[i]) @ grams[i]))
    return total / x.shape[0]


def gradient_second_moment(model: nn.Module, x: torch.Tensor, bcp: torch.Tensor,
                           noise_model: SupervisionModel) -> torch.Tensor:
    """``(1/n) Σ_i E_t[∇ℓ ∇ℓᵀ]`` ``(P, P)``, with ``∇ℓ = −Γᵀ t`` and ``Γ`` the rows ``g_k``."""
    g = grad_log_probs(model, x)
    total = torch.zeros(g.shape[2], g.shape[2], dtype=g.dtype)
    for i in range(x.shape[0]):
        m = target_mean(noise_model, bcp[i])
        second = target_covariance(noise_model, bcp[i]) + torch.outer(m, m)
        total += g[i].T @ second @ g[i]
    return total / x.shape[0]


def onehot_noise(model: nn.Module, x: torch.Tensor, bcp: torch.Tensor) -> float:
    """The paper's Prop. 3 one-hot form ``(1/n) Σ_i Σ_k ‖J_k‖² / P_k``."""
    jac = grad_probs(model, x)
    return float(((jac**2).sum(2) / bcp).sum(1).mean())


def noisy_bcp_noise(model: nn.Module, x: torch.Tensor, bcp: torch.Tensor, nu: float) -> float:
    """The paper's Prop. 3 noisy-BCP form ``ν (1/n) Σ_i Σ_k ‖J_k‖² / P_k²``."""
    jac = grad_probs(model, x)
    return float(nu * ((jac**2).sum(2) / bcp**2).sum(1).mean())


def interpolation_gap(model: nn.Module, x: torch.Tensor, bcp: torch.Tensor) -> float:
    """Mean squared per-sample gradient norm with the BCPs as targets."""
    return empirical_noise(model, x, bcp)


def optimal_lambda(model: nn.Module, x: torch.Tensor, bcp: torch.Tensor,
                   teacher: SupervisionModel) -> tuple[float, float, float]:
    """``(λ*, A, B)`` with ``A`` the one-hot noise, ``B`` the teacher's and ``λ* = A/(A+B)``."""
    a = predicted_noise(model, x, bcp, OneHot())
    b = predicted_noise(model, x, bcp, teacher)
    return a / (a + b), a, b


# -- curvature ---------------------------------------------------------------------------------------------
def _flat_loss(model: nn.Module, x: torch.Tensor, targets: torch.Tensor):
    """A closure ``θ ↦ (1/n) Σ_i −Σ_k t_ik log q_k(x_i; θ)`` on the flat parameter vector."""
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    # every name a parameter is reachable under (shared layers), each mapped to its position in the vector
    position = {id(p): i for i, p in enumerate(model.parameters())}
    every_name, slots = [], set()
    for name, p in model.named_parameters(remove_duplicate=False):
        path, _, attr = name.rpartition(".")
        slot = (id(model.get_submodule(path)), attr)  # a layer reached under two names is one slot
        if slot not in slots:
            slots.add(slot)
            every_name.append((name, position[id(p)]))

    def loss(theta: torch.Tensor) -> torch.Tensor:
        pieces = [piece.reshape(shape) for piece, shape in zip(torch.split(theta, sizes), shapes)]
        params = {name: pieces[i] for name, i in every_name}
        logits = torch.func.functional_call(model, params, (x,), tie_weights=False)
        return -(targets * torch.log_softmax(logits, dim=1)).sum(1).mean()

    return loss


def loss_hessian(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``∇²f`` ``(P, P)`` by ``torch.autograd.functional.hessian`` on the flat-parameter closure."""
    theta = flat_vector([p.detach() for p in model.parameters()])
    return torch.autograd.functional.hessian(_flat_loss(model, x, targets), theta)


def linear_softmax_hessian(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor,
                           targets: torch.Tensor) -> torch.Tensor:
    """Closed form ``(1/n) Σ_i (Σ_k t_ik)(diag q − q qᵀ) ⊗ x̃ x̃ᵀ`` with ``x̃ = (x, 1)``, laid out in the
    parameter order weight ``(K, d)`` row-major then bias ``(K,)``."""
    num_classes, dim = weight.shape
    size = num_classes * dim + num_classes
    # flat position of (class k, feature j), listed in kron order; feature j = dim is the bias
    position = torch.tensor([[k * dim + j for j in range(dim)] + [num_classes * dim + k]
                             for k in range(num_classes)]).reshape(-1)
    hess = torch.zeros(size, size, dtype=weight.dtype)
    for i in range(x.shape[0]):
        q = torch.softmax(x[i] @ weight.T + bias, dim=0)
        block = targets[i].sum() * (torch.diag(q) - torch.outer(q, q))
        xt = torch.cat([x[i], torch.ones(1, dtype=x.dtype)])
        full = torch.kron(block, torch.outer(xt, xt))  # row (k, j) at k * (dim + 1) + j
        hess[position[:, None], position[None, :]] += full
    return hess / x.shape[0]


def per_sample_hessian_norm(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``‖∇²ℓ_i‖₂`` (spectral norm, numpy's ``ord=2``: the largest singular value) for each sample, ``(n,)``."""
    return torch.stack([torch.tensor(np.linalg.norm(loss_hessian(model, x[i:i + 1], targets[i:i + 1]).numpy(), 2))
                        for i in range(x.shape[0])])


def flat_basis(model: nn.Module) -> np.ndarray:
    """Unnormalised spanning vectors ``(P, m)`` of the softmax's flat directions: the same vector added to
    every row of the last layer's weight, the same scalar to every entry of its bias. The last layer is the
    last parameter pair (weight ``(K, h)``, bias ``(K,)``) of ``model.parameters()``."""
    params = list(model.parameters())
    weight, bias = params[-2], params[-1]
    if weight.dim() != 2 or bias.shape != weight.shape[:1]:
        raise ValueError("reference.flat_basis expects the last two parameters to be a weight (K, h) and bias (K,)")
    sizes = [p.numel() for p in params]
    size = sum(sizes)
    w0 = size - sizes[-1] - sizes[-2]
    num_classes, width = weight.shape
    cols = []
    for j in range(width):
        v = np.zeros(size)
        for k in range(num_classes):
            v[w0 + k * width + j] = 1.0
        cols.append(v)
    v = np.zeros(size)
    v[size - num_classes:] = 1.0
    cols.append(v)
    return np.stack(cols, 1)


def mu_off_flat(hessian: torch.Tensor | np.ndarray, flat: np.ndarray) -> float:
    """Smallest eigenvalue of ``hessian`` on the orthogonal complement of ``span(flat)``."""
    h = np.asarray(hessian.detach().numpy() if torch.is_tensor(hessian) else hessian, dtype=np.float64)
    complement = scipy.linalg.null_space(flat.T)
    return float(np.linalg.eigvalsh(complement.T @ h @ complement)[0])


# -- the stationary spread ------------------------------------------------------------------------------
def stationary_covariance(hessian, noise_cov, step: float, momentum: float = 0.0, batch: int = 1,
                          n: int | None = None, rtol: float = 1e-9) -> np.ndarray:
    """Stationary ``Σ`` of ``δ⁺ = (I − γH) δ + β(δ − δ⁻) − γ ξ`` with ``Cov ξ = S·c`` (``c = 1/b``, or
    ``(n−b)/(b(n−1))`` with ``n``), from ``vec Σ_aug = (I − A⊗A)⁻¹ vec Q`` on the range of ``H`` (directions
    with eigenvalue ``≤ rtol · λ_max`` are dropped). Returned in the original coordinates, ``(P, P)``."""
    h = np.asarray(hessian, dtype=np.float64)
    s = np.asarray(noise_cov, dtype=np.float64)
    evals, evecs = np.linalg.eigh(0.5 * (h + h.T))
    basis = evecs[:, evals > rtol * evals[-1]]
    hr = basis.T @ h @ basis
    factor = 1.0 / batch if n is None else (n - batch) / (batch * (n - 1))
    sr = basis.T @ s @ basis * factor
    m = hr.shape[0]
    eye = np.eye(m)
    if momentum == 0.0:
        a = eye - step * hr
        q = step**2 * sr
    else:
        a = np.block([[(1 + momentum) * eye - step * hr, -momentum * eye], [eye, np.zeros((m, m))]])
        q = np.zeros((2 * m, 2 * m))
        q[:m, :m] = step**2 * sr
    size = a.shape[0]
    vec = np.linalg.solve(np.eye(size * size) - np.kron(a, a), q.reshape(-1))
    sigma = vec.reshape(size, size)[:m, :m]
    return basis @ sigma @ basis.T


def small_step_spread(hessian, noise_cov, step: float, momentum: float = 0.0, batch: int = 1) -> float:
    """``γ tr(H⁺ S) / (2 b (1 − β))``."""
    h = np.asarray(hessian, dtype=np.float64)
    s = np.asarray(noise_cov, dtype=np.float64)
    pinv = np.linalg.pinv(h, rcond=1e-9, hermitian=True)
    return step * float(np.trace(pinv @ s)) / (2 * batch * (1 - momentum))


# -- Gaussian mixtures -------------------------------------------------------------------------------------
def gmm_bcp(means, covariances, priors, x) -> np.ndarray:
    """``P(k | x)`` ``(n, K)`` from ``scipy.stats.multivariate_normal`` log-densities. ``covariances``: one
    ``(d, d)`` matrix shared by all classes or ``(K, d, d)``."""
    means = np.asarray(means, dtype=np.float64)
    covs = np.asarray(covariances, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if covs.ndim == 2:
        covs = np.broadcast_to(covs, (means.shape[0],) + covs.shape)
    logs = np.stack([np.log(priors[k]) + scipy.stats.multivariate_normal(means[k], covs[k]).logpdf(x)
                     for k in range(means.shape[0])], axis=1)
    return np.exp(logs - scipy.special.logsumexp(logs, axis=1, keepdims=True))


# -- minibatches and bounds, literally ---------------------------------------------------------------------
def minibatches(n: int, batch: int):
    """Every subset of ``range(n)`` of size ``batch`` (uniform sampling without replacement)."""
    return list(itertools.combinations(range(n), batch))


def expected_smoothness(lipschitz: float, lipschitz_max: float, n: int, batch: int) -> float:
    """``ℒ(b) = n(b−1)/(b(n−1)) L + (n−b)/(b(n−1)) L_max``."""
    return n * (batch - 1) / (batch * (n - 1)) * lipschitz + (n - batch) / (batch * (n - 1)) * lipschitz_max


def batch_noise(sigma2: float, n: int, batch: int) -> float:
    """``σ²(b) = (n−b)/(b(n−1)) σ²_1``."""
    return (n - batch) / (batch * (n - 1)) * sigma2


def t1(mu: float, smoothness: float, step: float, dist0: float, t: int) -> tuple[float, float]:
    """T1: ``(bound, step limit)`` = ``((1−γμ)^t ‖θ_0 − θ*‖², 1/ℒ)``."""
    return (1 - step * mu) ** t * dist0, 1 / smoothness


def t2(mu: float, lipschitz: float, smoothness: float, step: float, gap0: float, t: int) -> tuple[float, float]:
    """T2: ``((1−γμ)^t (f(θ_0) − f*), μ/(Lℒ))``."""
    return (1 - step * mu) ** t * gap0, mu / (lipschitz * smoothness)


def t3(mu: float, smoothness: float, sigma2: float, step: float, dist0: float, t: int) -> tuple[float, float]:
    """T3: ``((1−γμ)^t ‖θ_0 − θ̃*‖² + 2γσ²/μ, 1/(2ℒ))``."""
    return (1 - step * mu) ** t * dist0 + 2 * step * sigma2 / mu, 1 / (2 * smoothness)


def t4(mu: float, lipschitz: float, smoothness: float, sigma2: float, step: float, gap0: float,
       t: int) -> tuple[float, float]:
    """T4: ``((1−γμ)^t (f̃(θ_0) − f̃*) + Lγσ²/μ, μ/(2Lℒ))``."""
    return (1 - step * mu) ** t * gap0 + lipschitz * step * sigma2 / mu, mu / (2 * lipschitz * smoothness)

