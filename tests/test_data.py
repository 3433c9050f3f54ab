"""Problems with exact BCPs: Gaussian mixtures (scalar, diagonal, full covariance; priors), the official
notebook's setting, standardisation, the logistic teacher and the non-realizable quadratic mixture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from sgdbound import reference as ref
from sgdbound.data import GaussianMixture, LogisticTeacher, QuadraticMixture

F64 = torch.float64


def _random_spd(dim, seed):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=gen, dtype=F64)
    return a @ a.T / dim + 0.5 * torch.eye(dim, dtype=F64)


def _mixtures():
    gen = torch.Generator().manual_seed(0)
    means = 2 * torch.randn(4, 3, generator=gen, dtype=F64)
    priors = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64)
    return {
        "scalar": GaussianMixture(means, 1.7),
        "diagonal": GaussianMixture(means, torch.tensor([0.5, 1.0, 2.5], dtype=F64)),
        "full": GaussianMixture(means, _random_spd(3, 1)),
        "full-priors": GaussianMixture(means, _random_spd(3, 2), priors=priors),
        "scalar-priors": GaussianMixture(means, 0.9, priors=priors),
    }


MIXTURES = _mixtures()


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_bcp_matches_scipy_densities(name):
    gm = MIXTURES[name]
    s = gm.sample(200, seed=3)
    expected = ref.gmm_bcp(gm.means.numpy(), gm.covariance.numpy(), gm.priors.numpy(), s.x.numpy())
    assert_close(s.bcp, torch.from_numpy(expected), rtol=1e-9, atol=1e-13)
    assert_close(gm.bcp(s.x), s.bcp, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_bayes_linear_reproduces_bcp(name):
    gm = MIXTURES[name]
    x = gm.sample(300, seed=4).x
    weight, bias = gm.bayes_linear()
    assert weight.shape == (gm.num_classes, gm.dim) and bias.shape == (gm.num_classes,)
    expected = ref.gmm_bcp(gm.means.numpy(), gm.covariance.numpy(), gm.priors.numpy(), x.numpy())
    assert_close(torch.softmax(x @ weight.T + bias, 1), torch.from_numpy(expected), rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_standardized_keeps_bcps_at_mapped_points(name):
    gm = MIXTURES[name]
    s = gm.sample(2000, seed=5)
    mean, std = gm.standardization()
    std_gm = gm.standardized()
    mapped = (s.x - mean) / std
    assert_close(std_gm.bcp(mapped), s.bcp, rtol=1e-9, atol=1e-12)
    # population standardisation: marginal mean 0, marginal variances 1
    assert_close(std_gm.marginal_mean, torch.zeros(gm.dim, dtype=F64), rtol=0, atol=1e-12)
    assert_close(std_gm.marginal_covariance.diagonal(), torch.ones(gm.dim, dtype=F64), rtol=1e-12, atol=1e-12)
    # and the sample agrees with the population moments to Monte Carlo accuracy
    assert (mapped.mean(0).abs() < 0.15).all() and ((mapped.std(0) - 1).abs() < 0.1).all()


def test_marginal_moments_by_monte_carlo():
    gm = MIXTURES["full-priors"]
    x = gm.sample(40000, seed=6).x
    assert (x.mean(0) - gm.marginal_mean).abs().max() < 0.06
    assert (torch.cov(x.T) - gm.marginal_covariance).abs().max() < 0.15


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_reference_problem(seed):
    gm = GaussianMixture.reference(seed=seed)
    assert gm.num_classes == 5 and gm.dim == 30
    assert set(gm.means.unique().tolist()) <= {4.0, 5.0, 6.0}
    assert len(set(gm.means.unique().tolist())) == 3  # 150 draws use all three centres
    assert_close(gm.covariance, 2.5 * torch.eye(30, dtype=F64), rtol=0, atol=0)
    assert_close(gm.priors, torch.full((5,), 0.2, dtype=F64), rtol=0, atol=1e-15)
    again = GaussianMixture.reference(seed=seed)
    assert torch.equal(gm.means, again.means)


def test_reference_problem_depends_on_seed():
    assert not torch.equal(GaussianMixture.reference(seed=0).means, GaussianMixture.reference(seed=1).means)


@pytest.mark.parametrize("problem", [MIXTURES["full-priors"], QuadraticMixture.random(3, 4, seed=2),
                                     LogisticTeacher.random(3, 5, scale=2.0, seed=3)],
                         ids=["mixture", "quadratic", "logistic"])
def test_sample_shapes_and_reproducibility(problem):
    s = problem.sample(50, seed=11)
    assert s.x.shape == (50, problem.dim) and s.y.shape == (50,) and s.bcp.shape == (50, problem.num_classes)
    assert s.x.dtype == F64 and s.bcp.dtype == F64 and s.y.dtype == torch.int64
    assert len(s) == 50
    assert_close(s.bcp.sum(1), torch.ones(50, dtype=F64), rtol=0, atol=1e-12)
    assert ((s.y >= 0) & (s.y < problem.num_classes)).all()
    again = problem.sample(50, seed=11)
    other = problem.sample(50, seed=12)
    assert torch.equal(s.x, again.x) and torch.equal(s.y, again.y) and torch.equal(s.bcp, again.bcp)
    assert not torch.equal(s.x, other.x)
    gen = torch.Generator().manual_seed(11)
    assert torch.equal(problem.sample(50, generator=gen).x, s.x)
    s32 = problem.sample(50, seed=11, dtype=torch.float32)
    assert s32.x.dtype == torch.float32 and s32.bcp.dtype == torch.float32
    assert torch.equal(s32.y, s.y)


def test_labels_follow_the_bcps():
    """Labels are draws from P(·|x): class frequencies match the average BCP (and the priors)."""
    gm = MIXTURES["full-priors"]
    s = gm.sample(20000, seed=13)
    freq = torch.bincount(s.y, minlength=4).to(F64) / 20000
    se = (gm.priors * (1 - gm.priors) / 20000).sqrt()
    assert ((freq - gm.priors).abs() < 5 * se).all()
    assert ((freq - s.bcp.mean(0)).abs() < 5 * se).all()


def test_logistic_teacher():
    teacher = LogisticTeacher.random(4, 6, scale=3.0, seed=5)
    s = teacher.sample(300, seed=6)
    weight, bias = teacher.bayes_linear()
    assert_close(s.bcp, torch.softmax(s.x @ weight.T + bias, 1), rtol=1e-12, atol=1e-15)
    assert (s.x.std(0) - 1).abs().max() < 0.2
    scaled = LogisticTeacher(weight, bias, input_scale=3.0)
    assert (scaled.sample(2000, seed=1).x.std(0) - 3).abs().max() < 0.3


def test_quadratic_mixture():
    qm = QuadraticMixture.random(3, 4, spread=1.0, seed=7)
    s = qm.sample(200, seed=8)
    expected = ref.gmm_bcp(qm.means.numpy(), qm.covariances.numpy(), qm.priors.numpy(), s.x.numpy())
    assert_close(s.bcp, torch.from_numpy(expected), rtol=1e-9, atol=1e-13)
    with pytest.raises(ValueError, match="not linear-softmax"):
        qm.bayes_linear()
    # standardising keeps the BCPs at mapped points
    mean, std = qm.standardization()
    assert_close(qm.standardized().bcp((s.x - mean) / std), s.bcp, rtol=1e-9, atol=1e-12)
    # class-conditional covariances are the stated ones
    big = qm.sample(30000, seed=9)
    for k in range(3):
        xs = big.x[big.y == k]
        assert (torch.cov(xs.T) - qm.covariances[k]).abs().max() < 0.25 * qm.covariances[k].abs().max()


def test_quadratic_bcp_is_not_linear():
    """No linear-softmax fits the quadratic BCPs exactly: the log-odds are not affine in x."""
    qm = QuadraticMixture.random(2, 2, spread=1.0, seed=1)
    x = qm.sample(400, seed=2).x
    bcp = qm.bcp(x)
    logodds = (bcp[:, 1] / bcp[:, 0]).log()
    design = torch.cat([x, torch.ones(400, 1, dtype=F64)], 1)
    coef = torch.linalg.lstsq(design, logodds[:, None]).solution
    resid = logodds - (design @ coef)[:, 0]
    assert resid.abs().max() > 0.1 * logodds.abs().max()


def test_gmm_reference_agrees_with_numpy_formula():
    """The scipy reference itself: two classes, 1-D, P(1|x) is a logistic in x."""
    means, var = np.array([[0.0], [2.0]]), np.array([[1.5]])
    x = np.linspace(-3, 5, 9)[:, None]
    logit = (means[1, 0] - means[0, 0]) / var[0, 0] * x[:, 0] - (means[1, 0] ** 2 - means[0, 0] ** 2) / (2 * var[0, 0])
    expected = 1 / (1 + np.exp(-(logit + np.log(0.7 / 0.3))))
    np.testing.assert_allclose(ref.gmm_bcp(means, var, np.array([0.3, 0.7]), x)[:, 1], expected, rtol=1e-12)
