"""Teachers on a Gaussian mixture: their error's moments and the gradient noise they predict at θ*."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from sgdbound.data import GaussianMixture
from sgdbound.kd.synthetic import TeacherError, fidelity_from_probs, teacher_fidelity
from sgdbound.models import LinearSoftmax

F64 = torch.float64


@pytest.fixture(scope="module")
def problem():
    mixture = GaussianMixture.reference(seed=0).standardized()
    sample = mixture.sample(200, seed=4)
    student = LinearSoftmax.from_params(*mixture.bayes_linear())
    return mixture, sample, student


def test_exact_teacher_has_no_noise(problem):
    _, s, student = problem
    f = fidelity_from_probs(student, s.x, s.bcp, s.bcp.clone())
    assert f.nu == pytest.approx(0, abs=1e-28) and f.kl == pytest.approx(0, abs=1e-12) and f.accuracy == 1
    assert f.measured == pytest.approx(0, abs=1e-14) and f.predicted_covariance == pytest.approx(0, abs=1e-14)
    assert f.onehot > 0


def test_constant_error_is_predicted_exactly(problem):
    """e(x) = b for every x: E tr(M G) with M = b bᵀ equals (1/n) Σ bᵀ G_i b, the measured noise."""
    _, s, student = problem
    b = torch.tensor([0.01, -0.02, 0.0, 0.015, -0.005], dtype=F64)
    f = fidelity_from_probs(student, s.x, s.bcp, s.bcp + b)
    assert_close(torch.tensor(f.bias, dtype=F64), b)
    assert f.nu == pytest.approx(b.pow(2).mean().item())
    assert f.predicted_covariance == pytest.approx(f.measured, rel=1e-9)
    assert torch.tensor(f.covariance).abs().max() < 1e-12


def test_teacher_error_model_moments():
    b = torch.tensor([0.1, -0.1, 0.0], dtype=F64)
    m = torch.outer(b, b) + 0.01 * torch.eye(3, dtype=F64)
    model = TeacherError(b, m)
    bcp = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]], dtype=F64)
    assert_close(model.mean(bcp), bcp + b)
    assert_close(model.covariance(bcp)[1], 0.01 * torch.eye(3, dtype=F64))
    draws = model.sample(bcp.repeat(20000, 1), generator=torch.Generator().manual_seed(0))
    assert (draws[0::2] - bcp[0] - b).pow(2).mean().item() == pytest.approx(0.01, rel=0.05)
    assert model.biased
    with pytest.raises(ValueError, match="positive semi-definite"):
        TeacherError(b, torch.zeros(3, 3, dtype=F64))


@pytest.mark.parametrize("kind", ["deterministic", "laplace"])
def test_trained_teacher_fidelity(kind):
    f = teacher_fidelity(kind, n_train=1000, n_eval=200, epochs=15, samples=3)
    assert 0 < f.nu < 0.1 and f.accuracy > 0.5 and 0 < f.measured < f.onehot
    # the empirical-covariance model tracks the measurement far better than a constant error would miss it
    assert abs(f.predicted_covariance / f.measured - 1) < 0.5
