"""Hessians and the constants of the bounds (μ off the flat directions, L, L_max) against slow twins."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from sgdbound import reference as ref
from sgdbound.data import GaussianMixture
from sgdbound.models import MLP, LinearSoftmax
from sgdbound.theory import (
    curvature,
    flat_directions,
    flat_params,
    hessian_vector_product,
    loss_hessian,
    per_sample_lipschitz,
    project_out_flat,
)

F64 = torch.float64


def _problem(classes, dim, seed, n=10):
    problem = GaussianMixture.random(classes, dim, separation=1.5, seed=seed)
    return problem, problem.sample(n, seed=seed + 1)


def _linear(dim, classes, seed):
    gen = torch.Generator().manual_seed(seed)
    return LinearSoftmax.from_params(torch.randn(classes, dim, generator=gen, dtype=F64),
                                     torch.randn(classes, generator=gen, dtype=F64))


def _mlp(dim, classes, hidden, activation, seed):
    torch.manual_seed(seed)
    return MLP(dim, classes, hidden=hidden, activation=activation, dtype=F64)


MODELS = {
    "linear": lambda d, k: _linear(d, k, 0),
    "mlp-tanh": lambda d, k: _mlp(d, k, 4, "tanh", 1),
    "mlp-softplus-2": lambda d, k: _mlp(d, k, (3, 4), "softplus", 2),
    "mlp-relu": lambda d, k: _mlp(d, k, 5, "relu", 3),
}


def _noisy_targets(bcp, seed, scale=0.2):
    gen = torch.Generator().manual_seed(seed)
    return bcp + scale * torch.randn(bcp.shape, generator=gen, dtype=F64)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_loss_hessian_matches_autograd(name):
    _, s = _problem(3, 3, seed=5)
    model = MODELS[name](3, 3)
    targets = _noisy_targets(s.bcp, 1)  # the Hessian is linear in targets that need not sum to one
    assert_close(loss_hessian(model, s.x, targets, chunk_size=4), ref.loss_hessian(model, s.x, targets),
                 rtol=1e-8, atol=1e-13)


def test_linear_softmax_hessian_closed_form():
    """``(Σ t)(diag q − q qᵀ) ⊗ x̃ x̃ᵀ`` in the order weight (K, d) row-major, then bias (K,)."""
    _, s = _problem(4, 3, seed=6, n=9)
    model = _linear(3, 4, 7)
    targets = _noisy_targets(s.bcp, 2)
    closed = ref.linear_softmax_hessian(model.weight.detach(), model.bias.detach(), s.x, targets)
    assert_close(ref.loss_hessian(model, s.x, targets), closed, rtol=1e-10, atol=1e-13)
    assert_close(loss_hessian(model, s.x, targets), closed, rtol=1e-8, atol=1e-13)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_per_sample_lipschitz_matches_autograd(name):
    _, s = _problem(3, 3, seed=8, n=6)
    model = MODELS[name](3, 3)
    assert_close(per_sample_lipschitz(model, s.x, s.bcp, chunk_size=4),
                 ref.per_sample_hessian_norm(model, s.x, s.bcp), rtol=1e-8, atol=1e-13)


@pytest.mark.parametrize("name", ["linear", "mlp-tanh"])
def test_flat_directions_are_flat_and_match_reference(name):
    _, s = _problem(3, 3, seed=9)
    model = MODELS[name](3, 3)
    flat = flat_directions(model)
    expected = ref.flat_basis(model)
    # same span: projecting the reference spanning vectors onto the fast orthonormal basis loses nothing
    resid = expected - flat.numpy() @ (flat.numpy().T @ expected)
    assert np.abs(resid).max() < 1e-12
    assert flat.shape[1] == expected.shape[1]
    assert_close(flat.T @ flat, torch.eye(flat.shape[1], dtype=F64), rtol=0, atol=1e-12)
    hess = ref.loss_hessian(model, s.x, s.bcp)
    assert (hess @ flat).abs().max() < 1e-10 * hess.abs().max()
    v = torch.randn(flat.shape[0], dtype=F64)
    assert (project_out_flat(model, v) @ flat).abs().max() < 1e-12


@pytest.mark.parametrize("name", ["linear", "mlp-tanh", "mlp-softplus-2"])
def test_curvature_constants_match_reference(name):
    problem, s = _problem(3, 3, seed=10, n=12)
    model = LinearSoftmax.from_params(*problem.bayes_linear()) if name == "linear" else MODELS[name](3, 3)
    curv = curvature(model, s.x, s.bcp, method="exact")
    hess = ref.loss_hessian(model, s.x, s.bcp)
    mu = ref.mu_off_flat(hess, ref.flat_basis(model))
    lip = torch.linalg.eigvalsh(hess)[-1].item()
    lip_max = ref.per_sample_hessian_norm(model, s.x, s.bcp).max().item()
    assert_close(torch.tensor([curv.mu, curv.lipschitz, curv.lipschitz_max], dtype=F64),
                 torch.tensor([mu, lip, lip_max], dtype=F64), rtol=1e-8, atol=1e-14)
    if name == "linear":
        assert mu > 0  # off the flat directions the convex linear student's Hessian is definite


def test_lanczos_agrees_with_exact():
    problem, s = _problem(3, 4, seed=11, n=30)
    model = _mlp(4, 3, 6, "tanh", 12)
    exact = curvature(model, s.x, s.bcp, method="exact")
    lanczos = curvature(model, s.x, s.bcp, method="lanczos", lanczos_tol=1e-12)
    assert lanczos.hessian is None
    assert abs(lanczos.lipschitz / exact.lipschitz - 1) < 1e-6
    assert abs(lanczos.mu - exact.mu) < 1e-6 * exact.lipschitz


def test_hessian_vector_product_matches_dense():
    _, s = _problem(3, 3, seed=13)
    model = _mlp(3, 3, 4, "gelu", 14)
    hess = ref.loss_hessian(model, s.x, s.bcp)
    v = torch.randn(flat_params(model).numel(), generator=torch.Generator().manual_seed(0), dtype=F64)
    assert_close(hessian_vector_product(model, s.x, s.bcp)(v), hess @ v, rtol=1e-8, atol=1e-13)


def test_per_sample_lipschitz_is_the_norm_when_targets_sum_below_zero(monkeypatch):
    """Gaussian targets whose row sums are negative make ``∇²ℓ_i`` negative semi-definite: L_max is its largest
    |eigenvalue| (exact path, power iteration, the linear closed form and the slow twin agree), not its top one."""
    import sgdbound.theory.constants as constants
    from sgdbound.sim.optimum import linear_per_sample_lipschitz

    _, s = _problem(3, 3, seed=21, n=8)
    model = _linear(3, 3, 22)
    targets = _noisy_targets(s.bcp, 23, scale=1.5)
    assert (targets.sum(1) < 0).any() and (targets.sum(1) > 0).any()
    expected = ref.per_sample_hessian_norm(model, s.x, targets)
    closed = linear_per_sample_lipschitz(s.x, targets, model.weight.detach(), model.bias.detach())
    assert_close(closed, expected, rtol=1e-8, atol=1e-13)
    assert_close(per_sample_lipschitz(model, s.x, targets), expected, rtol=1e-8, atol=1e-13)
    negative = targets.sum(1) < 0
    assert (expected[negative] > 1e-3).all()  # the top signed eigenvalue of those rows is 0
    monkeypatch.setattr(constants, "EXACT_LIMIT", 0)
    assert_close(per_sample_lipschitz(model, s.x, targets, iterations=400), expected, rtol=1e-6, atol=1e-12)


def test_power_iteration_for_large_models(monkeypatch):
    """Above ``EXACT_LIMIT`` parameters L_max comes from power iteration: a lower estimate that converges to
    the exact per-sample ‖∇²ℓ_i‖₂ (checked on a linear student, with BCP targets: PSD per-sample Hessians)."""
    import sgdbound.theory.constants as constants

    _, s = _problem(3, 3, seed=15, n=5)
    model = _linear(3, 3, 16)
    exact = ref.per_sample_hessian_norm(model, s.x, s.bcp)
    monkeypatch.setattr(constants, "EXACT_LIMIT", 0)
    approx = per_sample_lipschitz(model, s.x, s.bcp, iterations=400)
    assert (approx <= exact * (1 + 1e-10)).all()
    assert (approx >= exact * (1 - 1e-6)).all()
