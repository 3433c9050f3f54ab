"""``stationary_prediction`` against the Kronecker solve ``vec Σ = (I − A⊗A)⁻¹ vec Q`` of ``sgdbound.reference``,
and against an exact second-moment recursion of the linear dynamics it models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sgdbound import reference as ref
from sgdbound.data import GaussianMixture
from sgdbound.models import LinearSoftmax
from sgdbound.targets import OneHot
from sgdbound.theory import curvature, predicted_gradient_covariance, stationary_prediction


def _problem(seed, dim, flat=0):
    """A PSD Hessian with ``flat`` zero directions and a noise covariance supported on its range."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    evals = np.concatenate([np.zeros(flat), rng.uniform(0.2, 3.0, size=dim - flat)])
    h = q @ np.diag(evals) @ q.T
    rng_part = q[:, flat:]
    b = rng.normal(size=(dim - flat, dim - flat))
    s = rng_part @ (b @ b.T / dim + 0.1 * np.eye(dim - flat)) @ rng_part.T
    return h, s


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), dim=st.integers(1, 5), flat=st.integers(0, 2),
       frac=st.floats(0.01, 0.95), momentum=st.sampled_from([0.0, 0.5, 0.9]), batch=st.integers(1, 4),
       finite=st.booleans())
def test_matches_kronecker_reference(seed, dim, flat, frac, momentum, batch, finite):
    flat = min(flat, dim - 1)
    h, s = _problem(seed, dim, flat)
    top = np.linalg.eigvalsh(h)[-1]
    step = frac * 2 * (1 + momentum) / top
    n = batch + 3 if finite else None
    pred = stationary_prediction(h, s, step, momentum=momentum, batch=batch, n=n)
    cov = ref.stationary_covariance(h, s, step, momentum=momentum, batch=batch, n=n)
    scale = np.abs(cov).max()
    np.testing.assert_allclose(pred.covariance, cov, rtol=1e-8, atol=1e-10 * scale)
    assert abs(float(pred) / np.trace(cov) - 1) < 1e-8
    factor = 1 / batch if n is None else (n - batch) / (batch * (n - 1))
    assert abs(pred.small_step / (factor * ref.small_step_spread(h, s, step, momentum, batch=1)) - 1) < 1e-8
    # the flat directions carry nothing
    if flat:
        null = np.linalg.eigh(h)[1][:, :flat]
        assert np.abs(null.T @ pred.covariance @ null).max() <= 1e-10 * scale


@pytest.mark.parametrize("momentum", [0.0, 0.6])
def test_small_step_limit(momentum):
    """As γ → 0 the spread approaches γ tr(H⁺S) / (2b(1−β)), with a relative error O(γ)."""
    h, s = _problem(1, 4, flat=1)
    errors = []
    for step in (1e-1, 1e-2, 1e-3):
        pred = stationary_prediction(h, s, step, momentum=momentum, batch=3)
        small = ref.small_step_spread(h, s, step, momentum, batch=3)
        assert abs(pred.small_step / small - 1) < 1e-10
        errors.append(abs(float(pred) / small - 1))
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 1e-2


def test_matches_exact_recursion_of_the_linear_model():
    """Iterate ``E δδᵀ`` of ``δ⁺ = (I − γH) δ + β(δ − δ⁻) − γ ξ`` to convergence: same covariance."""
    h, s = _problem(2, 3, flat=1)
    step, momentum, batch = 0.3, 0.4, 2
    m = 3
    a = np.block([[(1 + momentum) * np.eye(m) - step * h, -momentum * np.eye(m)], [np.eye(m), np.zeros((m, m))]])
    q = np.zeros((2 * m, 2 * m))
    q[:m, :m] = step**2 * s / batch
    second = np.zeros((2 * m, 2 * m))
    for _ in range(3000):
        second = a @ second @ a.T + q
    pred = stationary_prediction(h, s, step, momentum=momentum, batch=batch)
    np.testing.assert_allclose(pred.covariance, second[:m, :m], rtol=1e-8, atol=1e-12)


def test_noise_on_flat_directions_warns_and_is_infinite():
    h, _ = _problem(3, 3, flat=1)
    s = np.eye(3)
    with pytest.warns(UserWarning, match="flat"):
        pred = stationary_prediction(h, s, 0.1)
    assert float(pred) == np.inf


def test_unstable_step_and_bad_inputs():
    h, s = _problem(4, 3)
    top = np.linalg.eigvalsh(h)[-1]
    with pytest.raises(ValueError, match="step"):
        stationary_prediction(h, s, 2.0 / top)
    with pytest.raises(ValueError, match="step"):
        stationary_prediction(h, s, 2.0 * 1.5 / top * 1.001, momentum=0.5)
    stationary_prediction(h, s, 2.0 * 1.5 / top * 0.999, momentum=0.5)  # just inside: fine
    with pytest.raises(ValueError, match="momentum"):
        stationary_prediction(h, s, 0.1, momentum=1.0)
    with pytest.raises(ValueError, match="batch"):
        stationary_prediction(h, s, 0.1, batch=0)
    with pytest.raises(ValueError, match="hessian"):
        stationary_prediction(h[:2], s, 0.1)
    with pytest.raises(ValueError, match="noise_cov"):
        stationary_prediction(h, -s, 0.1)
    with pytest.raises(ValueError, match="hessian"):
        stationary_prediction(-h, s, 0.1)
    with pytest.raises(ValueError, match="noise_cov"):
        stationary_prediction(h, s + np.triu(np.ones((3, 3)), 1), 0.1)
    with pytest.raises(ValueError, match="shape"):
        stationary_prediction(h, s[:2, :2], 0.1)
    with pytest.raises(ValueError, match="step"):
        stationary_prediction(h, s, -0.1)
    bad = h.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="hessian"):
        stationary_prediction(bad, s, 0.1)


def test_linear_student_at_optimum():
    """The package's own Hessian and gradient covariance at θ* of a mixture: the noise lies in the range of H
    (no warning), the flat directions are left out, and the prediction matches the Kronecker reference."""
    problem = GaussianMixture.random(3, 2, separation=1.0, seed=2)
    s = problem.sample(200, seed=3)
    model = LinearSoftmax.from_params(*problem.bayes_linear())
    hess = curvature(model, s.x, s.bcp, method="exact").hessian
    noise = predicted_gradient_covariance(model, s.x, s.bcp, OneHot())
    step = 0.2
    pred = stationary_prediction(hess, noise, step, batch=2)
    cov = ref.stationary_covariance(hess.numpy(), noise.numpy(), step, batch=2)
    assert abs(float(pred) / np.trace(cov) - 1) < 1e-8
    assert abs(pred.small_step / ref.small_step_spread(hess.numpy(), noise.numpy(), step, batch=2) - 1) < 1e-6
    flat = torch.linalg.qr(torch.from_numpy(ref.flat_basis(model)))[0].numpy()
    assert np.abs(flat.T @ pred.covariance @ flat).max() < 1e-10 * np.abs(pred.covariance).max()
