"""Constants of the bounds at a point: Hessian, μ off the softmax's flat directions, L and L_max.

The softmax is unchanged when the same vector is added to every class's row of the last layer (and the
same scalar to every bias): those *flat directions* make every Hessian singular, so μ is the smallest
eigenvalue of the Hessian restricted to their orthogonal complement. Distances to the optimum are
likewise measured to the *set* of optima, by projecting the flat directions out.

Small models get exact Hessians (``torch.func.hessian``); large ones Lanczos (ARPACK through
``scipy.sparse.linalg.eigsh``) on Hessian-vector products.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse.linalg as sla
import torch
from torch import nn
from torch.func import hessian, jvp, vmap

from sgdbound._checks import check_count, check_matrix_rows, check_nonnegative, check_seed
from sgdbound.theory.gradients import (
    check_chunk_size,
    check_model_inputs,
    num_parameters,
    parameter_dict,
    stateless_forward,
)

__all__ = [
    "flat_directions",
    "complement_basis",
    "project_out_flat",
    "flat_params",
    "unflatten_params",
    "loss_hessian",
    "hessian_vector_product",
    "per_sample_lipschitz",
    "Curvature",
    "curvature",
    "EXACT_LIMIT",
]

EXACT_LIMIT = 3000
"""Models with at most this many parameters get exact (dense) Hessians."""


def flat_params(model: nn.Module) -> torch.Tensor:
    """All parameters as one vector ``(P,)`` in ``named_parameters`` order."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def unflatten_params(model: nn.Module, vector: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split a ``(P,)`` vector into a parameter dict shaped like ``model``'s."""
    out, start = {}, 0
    for name, p in model.named_parameters():
        out[name] = vector[start:start + p.numel()].reshape(p.shape)
        start += p.numel()
    if start != vector.numel():
        raise ValueError(f"vector must have {start} entries, got {vector.numel()}")
    return out


def _head(model: nn.Module) -> nn.Module:
    """The module holding the logit layer's ``weight`` ``(K, h)`` and ``bias`` ``(K,)``."""
    for candidate in (model, getattr(model, "head", None)):
        if candidate is not None and isinstance(getattr(candidate, "weight", None), torch.Tensor):
            if candidate.weight.dim() == 2:
                return candidate
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("cannot find the model's logit layer (a final nn.Linear or a `head` attribute)")
    return linears[-1]


def flat_directions(model: nn.Module) -> torch.Tensor:
    """Orthonormal basis ``(P, h + 1)`` (or ``(P, h)`` without bias) of the softmax's flat directions:
    adding one vector ``v`` to every row of the logit layer's weight (and one scalar to every bias)."""
    head = _head(model)
    index = {id(p): i for i, p in enumerate(model.parameters())}
    sizes = [p.numel() for p in model.parameters()]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    weight = head.weight
    num_classes, width = weight.shape
    columns = []
    w0 = offsets[index[id(weight)]]
    for j in range(width):
        col = torch.zeros(offsets[-1], dtype=weight.dtype, device=weight.device)
        col[w0 + j + width * torch.arange(num_classes)] = 1 / num_classes**0.5
        columns.append(col)
    bias = getattr(head, "bias", None)
    if isinstance(bias, torch.Tensor):
        col = torch.zeros(offsets[-1], dtype=weight.dtype, device=weight.device)
        b0 = offsets[index[id(bias)]]
        col[b0:b0 + num_classes] = 1 / num_classes**0.5
        columns.append(col)
    return torch.stack(columns, 1).detach()


def complement_basis(model: nn.Module) -> torch.Tensor:
    """Orthonormal basis ``(P, P − m)`` of the complement of the flat directions."""
    flat = flat_directions(model)
    q, _ = torch.linalg.qr(torch.cat([flat, torch.eye(flat.shape[0], dtype=flat.dtype, device=flat.device)], 1))
    return q[:, flat.shape[1]:]


def project_out_flat(model: nn.Module, vectors: torch.Tensor) -> torch.Tensor:
    """Remove the flat-direction component of parameter vectors ``(..., P)``."""
    flat = flat_directions(model)
    if not torch.is_tensor(vectors) or vectors.dim() < 1 or vectors.shape[-1] != flat.shape[0] \
            or vectors.dtype != flat.dtype:
        got = (tuple(vectors.shape), vectors.dtype) if torch.is_tensor(vectors) else type(vectors).__name__
        raise ValueError(f"vectors must be (..., {flat.shape[0]}) parameter vectors of {flat.dtype}, got {got}")
    return vectors - (vectors @ flat) @ flat.T


def _mean_loss(model: nn.Module, x: torch.Tensor, targets: torch.Tensor):
    forward = stateless_forward(model)

    def loss(vector: torch.Tensor) -> torch.Tensor:
        logits = forward(unflatten_params(model, vector), x)
        return -(targets * torch.log_softmax(logits, 1)).sum(1).mean()

    return loss


def _check_targets(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> None:
    logits = check_model_inputs(model, x)
    check_matrix_rows("targets", targets, rows=x.shape[0], cols=logits.shape[1])


def loss_hessian(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """Exact Hessian ``(P, P)`` of ``f(θ) = (1/n) Σ_i −Σ_k t_ik log q_k(x_i)`` at the model's parameters.

    The Hessian is linear in the targets, so passing the mean targets ``m = E[t|x]`` gives ``E_t ∇²f``.
    """
    chunk_size = check_chunk_size(chunk_size)
    _check_targets(model, x, targets)
    if num_parameters(model) > EXACT_LIMIT:
        raise ValueError(f"model has {num_parameters(model)} parameters; exact Hessians are for <= {EXACT_LIMIT}"
                         " (use hessian_vector_product and curvature(..., method='lanczos'))")
    theta = flat_params(model)
    n = x.shape[0]
    total = torch.zeros(theta.numel(), theta.numel(), dtype=theta.dtype, device=theta.device)
    for start in range(0, n, chunk_size):
        part = slice(start, min(n, start + chunk_size))
        weight = (part.stop - part.start) / n
        total += weight * hessian(_mean_loss(model, x[part], targets[part]))(theta)
    return 0.5 * (total + total.T)


def hessian_vector_product(model: nn.Module, x: torch.Tensor, targets: torch.Tensor):
    """``v ↦ ∇²f(θ) v`` for ``(P,)`` vectors (forward-over-reverse, one pass over the data)."""
    _check_targets(model, x, targets)
    loss = _mean_loss(model, x, targets)
    theta = flat_params(model)
    grad = torch.func.grad(loss)

    def hvp(vector: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(vector) or vector.shape != theta.shape or vector.dtype != theta.dtype:
            got = (tuple(vector.shape), vector.dtype) if torch.is_tensor(vector) else type(vector).__name__
            raise ValueError(f"vector must be a {tuple(theta.shape)} tensor of {theta.dtype}, got {got}")
        return jvp(grad, (theta,), (vector,))[1]

    return hvp


def per_sample_lipschitz(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, chunk_size: int = 256,
                         iterations: int = 100, seed: int = 0) -> torch.Tensor:
    """``‖∇²ℓ_i‖₂`` (largest |eigenvalue|) for every sample, ``(n,)``: the per-sample smoothness whose maximum is
    ``L_max``. A target row summing below zero (Gaussian noise) makes ``∇²ℓ_i`` negative semi-definite, so the
    largest |eigenvalue| is not always the top one.

    Exact (dense per-sample Hessians) for models up to ``EXACT_LIMIT`` parameters; power iteration on
    batched per-sample Hessian-vector products otherwise (a lower estimate).
    """
    chunk_size = check_chunk_size(chunk_size)
    iterations, seed = check_count("iterations", iterations), check_seed("seed", seed)
    _check_targets(model, x, targets)
    params = parameter_dict(model)
    forward = stateless_forward(model)
    theta = flat_params(model)

    def loss(vector, xi, ti):
        logits = forward(unflatten_params(model, vector), xi[None])[0]
        return -(ti * torch.log_softmax(logits, 0)).sum()

    del params
    out = []
    exact = theta.numel() <= EXACT_LIMIT
    gen = torch.Generator(device=theta.device).manual_seed(seed)
    for start in range(0, x.shape[0], chunk_size):
        xs, ts = x[start:start + chunk_size], targets[start:start + chunk_size]
        if exact:
            hs = vmap(hessian(loss), in_dims=(None, 0, 0))(theta, xs, ts)
            out.append(torch.linalg.eigvalsh(0.5 * (hs + hs.transpose(1, 2))).abs().amax(1))
            continue
        grad = torch.func.grad(loss)

        def hvp(v, xi, ti, grad=grad):
            return jvp(lambda th: grad(th, xi, ti), (theta,), (v,))[1]

        batched = vmap(hvp)
        v = torch.randn(xs.shape[0], theta.numel(), generator=gen, dtype=theta.dtype, device=theta.device)
        v = v / v.norm(dim=1, keepdim=True)
        value = torch.zeros(xs.shape[0], dtype=theta.dtype, device=theta.device)
        for _ in range(iterations):
            hv = batched(v, xs, ts)
            value = (v * hv).sum(1)
            v = hv / hv.norm(dim=1, keepdim=True).clamp_min(1e-300)
        out.append(value.abs())
    return torch.cat(out)


@dataclass(frozen=True)
class Curvature:
    """Constants of the loss at a point.

    ``mu``: smallest Hessian eigenvalue off the flat directions (μ of AS1/AS2 near the point);
    ``lipschitz``: ``L = λ_max(∇²f)``; ``lipschitz_max``: ``L_max = max_i ‖∇²ℓ_i‖₂``;
    ``hessian``: ``(P, P)`` when computed exactly, else None; ``eigenvalues``: the restricted spectrum
    (exact method) in ascending order.
    """

    mu: float
    lipschitz: float
    lipschitz_max: float
    hessian: torch.Tensor | None = field(default=None, repr=False)
    eigenvalues: torch.Tensor | None = field(default=None, repr=False)

    @property
    def condition_number(self) -> float:
        return self.lipschitz / self.mu if self.mu > 0 else float("inf")


def curvature(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, method: str = "auto",
              lanczos_tol: float = 1e-8) -> Curvature:
    """μ (off the flat directions), L and L_max of the cross-entropy to ``targets`` at the model's parameters.

    ``method``: ``"exact"`` (dense Hessian), ``"lanczos"`` (ARPACK on Hessian-vector products) or ``"auto"``
    (exact up to ``EXACT_LIMIT`` parameters).
    """
    if method not in ("auto", "exact", "lanczos"):
        raise ValueError(f"method must be 'auto', 'exact' or 'lanczos', got {method!r}")
    lanczos_tol = check_nonnegative("lanczos_tol", lanczos_tol)  # 0: ARPACK's machine precision
    _check_targets(model, x, targets)
    lmax_i = per_sample_lipschitz(model, x, targets).max().item()
    size = num_parameters(model)
    if method == "exact" or (method == "auto" and size <= EXACT_LIMIT):
        hess = loss_hessian(model, x, targets)
        basis = complement_basis(model)
        restricted = torch.linalg.eigvalsh(basis.T @ hess @ basis)
        full_max = torch.linalg.eigvalsh(hess)[-1].item()
        return Curvature(mu=restricted[0].item(), lipschitz=full_max, lipschitz_max=lmax_i, hessian=hess,
                         eigenvalues=restricted)
    hvp = hessian_vector_product(model, x, targets)
    theta = flat_params(model)
    flat = flat_directions(model)

    def as_operator(fn):
        def matvec(v):
            vt = torch.as_tensor(np.asarray(v).reshape(-1), dtype=theta.dtype, device=theta.device)
            return fn(vt).detach().cpu().numpy()

        return sla.LinearOperator((size, size), matvec=matvec, dtype=np.float64)

    top = sla.eigsh(as_operator(hvp), k=1, which="LA", tol=lanczos_tol, return_eigenvectors=False)[0]

    def restricted(v):
        v_in = v - flat @ (flat.T @ v)
        hv = hvp(v_in)
        hv = hv - flat @ (flat.T @ hv)
        return hv + top * (v - v_in)  # push the flat directions to the top of the spectrum

    bottom = sla.eigsh(as_operator(restricted), k=1, which="SA", tol=lanczos_tol, return_eigenvectors=False)[0]
    return Curvature(mu=float(bottom), lipschitz=float(top), lipschitz_max=lmax_i)
