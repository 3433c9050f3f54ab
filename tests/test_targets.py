"""Supervision models: the sampled targets converge to the stated mean and covariance.

Convergence is checked the curvlinops way: the Monte Carlo error shrinks as the number of draws grows and,
at the largest size, lies within a few standard errors estimated from the draws themselves.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from sgdbound import reference as ref
from sgdbound.targets import TARGETS, Dirichlet, Exact, Gaussian, Mix, OneHot, Temperature, get_target
from sgdbound.targets.models import sample_gamma_log

F64 = torch.float64

BCP = torch.tensor([[0.5, 0.3, 0.2], [0.05, 0.05, 0.9], [1 / 3, 1 / 3, 1 / 3], [0.7, 0.3 - 1e-6, 1e-6]], dtype=F64)

MODELS = [
    OneHot(),
    Dirichlet(0.5),
    Dirichlet(4.0),
    Dirichlet(2.0),  # with the 1e-6 entry: α P_k = 2e-6, a tiny Gamma shape
    Gaussian(0.04),
    Mix(0.3, Dirichlet(1.0)),
    Mix(0.6, Gaussian(0.1)),
    Mix(0.5, OneHot()),
]


def _moments(model, bcp, n, seed):
    """Sample mean ``(R, K)`` and covariance ``(R, K, K)`` from ``n`` draws per row, with standard errors.

    The mean's standard error uses the stated variance (a rare class, ``P_k = 1e-6``, is never drawn in a
    sample, so its sample variance is zero). For a covariance entry ``E[c_k c_l]`` of targets on the simplex,
    ``|c_l| ≤ 1`` gives ``Var(c_k c_l) ≤ C_kk``: the standard error is the larger of the sample estimate and
    ``sqrt(min(C_kk, C_ll) / n)``; unbounded (Gaussian) targets use the sample estimate.
    """
    gen = torch.Generator().manual_seed(seed)
    rows = bcp.repeat_interleave(n, 0)
    t = model.sample(rows, generator=gen).reshape(bcp.shape[0], n, bcp.shape[1])
    assert torch.isfinite(t).all()
    mean = t.mean(1)
    centred = t - mean[:, None]
    prods = centred[:, :, :, None] * centred[:, :, None, :]
    cov = prods.mean(1)
    var = model.covariance(bcp).diagonal(dim1=1, dim2=2)
    mean_se = (var / n).sqrt()
    cov_se = (prods.var(1) / n).sqrt()
    if t.min() >= 0 and t.max() <= 1:
        cov_se = torch.maximum(cov_se, (torch.minimum(var[:, :, None], var[:, None, :]) / n).sqrt())
    return mean, cov, mean_se, cov_se


@pytest.mark.parametrize("model", MODELS, ids=repr)
def test_sampling_converges_to_stated_moments(model):
    true_mean, true_cov = model.mean(BCP), model.covariance(BCP)
    # the stated closed forms are the ones of DESIGN.md
    assert_close(true_mean, torch.stack([ref.target_mean(model, p) for p in BCP]), rtol=1e-12, atol=1e-15)
    assert_close(true_cov, torch.stack([ref.target_covariance(model, p) for p in BCP]), rtol=1e-12, atol=1e-15)
    errors = []
    for n, seed in ((500, 1), (50_000, 2)):
        mean, cov, mean_se, cov_se = _moments(model, BCP, n, seed)
        errors.append(((mean - true_mean).abs().max().item(), (cov - true_cov).abs().max().item()))
    assert errors[1][0] < errors[0][0] and errors[1][1] < errors[0][1], errors
    # within a few standard errors at the larger size
    assert ((mean - true_mean).abs() <= 5 * mean_se + 1e-12).all()
    assert ((cov - true_cov).abs() <= 5 * cov_se + 1e-12).all()


@pytest.mark.parametrize("model", [Exact(), Temperature(2.0), Temperature(0.5), Temperature(1.0)], ids=repr)
def test_deterministic_targets(model):
    gen = torch.Generator().manual_seed(0)
    t = model.sample(BCP, generator=gen)
    assert_close(t, model.mean(BCP), rtol=0, atol=0)
    assert_close(model.covariance(BCP), torch.zeros(4, 3, 3, dtype=F64), rtol=0, atol=0)
    powered = BCP ** (1 / model.T) if isinstance(model, Temperature) else BCP
    assert_close(t, powered / powered.sum(1, keepdim=True), rtol=1e-12, atol=1e-15)
    assert model.biased == (isinstance(model, Temperature) and model.T != 1.0)


def test_dirichlet_limits():
    """α → 0 approaches one-hot labels (vertices); α → ∞ the exact BCPs."""
    gen = torch.Generator().manual_seed(3)
    rows = BCP[:2].repeat_interleave(2000, 0)
    near_onehot = Dirichlet(1e-3).sample(rows, generator=gen)
    assert (near_onehot.max(1).values > 0.99).float().mean() > 0.98
    near_exact = Dirichlet(1e6).sample(rows, generator=gen)
    assert (near_exact - rows).abs().max() < 5e-3
    assert_close(near_onehot.sum(1), torch.ones(4000, dtype=F64), rtol=0, atol=1e-12)


def test_dirichlet_zero_entries_stay_zero():
    bcp = torch.tensor([[0.6, 0.4, 0.0]], dtype=F64).repeat(100, 1)
    t = Dirichlet(3.0).sample(bcp, generator=torch.Generator().manual_seed(0))
    assert (t[:, 2] == 0).all() and torch.isfinite(t).all()


@pytest.mark.parametrize("shape", [1e-4, 0.3, 1.0, 2.5, 40.0])
def test_gamma_sampler_moments(shape):
    """``log G`` with ``G ~ Gamma(a, 1)``: ``E log G = ψ(a)`` and ``Var log G = ψ'(a)``."""
    n = 40_000
    logs = sample_gamma_log(torch.full((n,), shape, dtype=F64), torch.Generator().manual_seed(4))
    digamma = torch.special.digamma(torch.tensor(shape, dtype=F64))
    trigamma = torch.special.polygamma(1, torch.tensor(shape, dtype=F64))
    assert abs(logs.mean() - digamma) < 5 * (trigamma / n).sqrt()
    assert abs(logs.var() / trigamma - 1) < 0.1


def test_mix_uses_given_labels_for_the_hard_part():
    y = torch.tensor([2, 0, 1, 1])
    t = Mix(0.25, Exact()).sample(BCP, y, torch.Generator().manual_seed(0))
    expected = 0.75 * torch.nn.functional.one_hot(y, 3).to(F64) + 0.25 * BCP
    assert_close(t, expected, rtol=0, atol=1e-15)
    assert_close(OneHot().sample(BCP, y), torch.nn.functional.one_hot(y, 3).to(F64), rtol=0, atol=0)


def test_reproducible_with_generator():
    for model in MODELS:
        a = model.sample(BCP, generator=torch.Generator().manual_seed(5))
        b = model.sample(BCP, generator=torch.Generator().manual_seed(5))
        assert torch.equal(a, b)


def test_registry():
    assert set(TARGETS) == {"onehot", "exact", "dirichlet", "gaussian", "temperature", "mix"}
    assert get_target("dirichlet", alpha=5) == Dirichlet(5)
    assert get_target("mix", lam=0.2, teacher=Gaussian(0.1)) == Mix(0.2, Gaussian(0.1))
    with pytest.raises(ValueError, match="unknown target"):
        get_target("nope")


def test_sample_rows_with_one_parameter_per_row():
    """Several configurations drawn in one call (the simulator's path): each row block has its own model's moments."""
    gen = torch.Generator().manual_seed(0)
    bcp = torch.tensor([[0.6, 0.3, 0.1]], dtype=torch.float64).expand(40_000, 3)
    for cls, values in ((Gaussian, (0.01, 0.2)), (Dirichlet, (0.5, 8.0))):
        column = torch.tensor(values, dtype=torch.float64).repeat_interleave(20_000)[:, None]
        draws = cls.sample_rows(column, bcp, gen)
        for i, value in enumerate(values):
            block = draws[i * 20_000:(i + 1) * 20_000]
            cov = cls(value).covariance(bcp[:1])[0]
            centred = block - bcp[0]
            measured = centred.T @ centred / block.shape[0]
            torch.testing.assert_close(block.mean(0), bcp[0], atol=5 * cov.diagonal().max().sqrt().item() / 141, rtol=0)
            torch.testing.assert_close(measured, cov, atol=0.06 * cov.abs().max().item(), rtol=0)
