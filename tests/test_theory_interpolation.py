"""Interpolation (Prop. 2), the noise at the optimum (Prop. 3) by Monte Carlo, and the distillation weight λ."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sgdbound.data import GaussianMixture, LogisticTeacher, QuadraticMixture
from sgdbound.models import LinearSoftmax
from sgdbound.targets import Dirichlet, Exact, Gaussian, Mix, OneHot, Temperature
from sgdbound.theory import (
    empirical_noise,
    expected_sq_grad_norm,
    interpolation_gap,
    optimal_lambda,
    per_sample_gradients,
    predicted_noise,
)

F64 = torch.float64


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), classes=st.integers(2, 5), dim=st.integers(1, 6),
       separation=st.floats(0.2, 1.5), full=st.booleans())
def test_bayes_linear_student_interpolates(seed, classes, dim, separation, full):
    """On any shared-covariance mixture the Bayes-linear student has every per-sample gradient zero with
    exact-BCP targets (to round-off), while one-hot labels leave a clearly non-zero gap."""
    gen = torch.Generator().manual_seed(seed)
    means = separation * torch.randn(classes, dim, generator=gen, dtype=F64)
    if full:
        a = torch.randn(dim, dim, generator=gen, dtype=F64)
        cov = a @ a.T / dim + 0.5 * torch.eye(dim, dtype=F64)
    else:
        cov = torch.rand(dim, generator=gen, dtype=F64) + 0.5
    priors = torch.softmax(torch.randn(classes, generator=gen, dtype=F64), 0)
    problem = GaussianMixture(means, cov, priors=priors)
    s = problem.sample(60, seed=seed + 1)
    model = LinearSoftmax.from_params(*problem.bayes_linear())
    exact_gap = interpolation_gap(model, s.x, s.bcp)
    onehot_gap = interpolation_gap(model, s.x, s.onehot)
    # for a linear student M = (‖x‖² + 1) I, so the one-hot gap is at least the mean ‖P − e_y‖² (> 0 unless every
    # BCP is already one-hot); the exact gap is round-off next to it
    floor = ((s.bcp - s.onehot) ** 2).sum(1).mean().item()
    assert onehot_gap >= floor * (1 - 1e-12) and floor > 1e-8
    assert exact_gap < 1e-20 * onehot_gap


def test_logistic_teacher_student_interpolates():
    teacher = LogisticTeacher.random(4, 5, scale=3.0, seed=1)
    s = teacher.sample(80, seed=2)
    model = LinearSoftmax.from_params(*teacher.bayes_linear())
    assert interpolation_gap(model, s.x, s.bcp) < 1e-20 * interpolation_gap(model, s.x, s.onehot)


def _fit_linear(x, targets, iterations=200):
    """The best linear-softmax student for ``targets`` on ``x`` (float64, L-BFGS to a tiny gradient)."""
    model = LinearSoftmax(x.shape[1], targets.shape[1], dtype=F64)
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=iterations, tolerance_grad=1e-14,
                            tolerance_change=1e-16, history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = -(targets * torch.log_softmax(model(x), 1)).sum(1).mean()
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    return model


def test_non_realizable_problem_keeps_a_gap():
    """QuadraticMixture: the best linear student for exact BCPs (full gradient ≈ 0) still has per-sample
    gradients far from zero (AS4 fails)."""
    qm = QuadraticMixture.random(3, 2, separation=1.0, spread=1.2, seed=4)
    s = qm.sample(300, seed=5)
    model = _fit_linear(s.x, s.bcp)
    grads = per_sample_gradients(model, s.x, s.bcp)
    full_grad_sq = (grads.mean(0) ** 2).sum().item()
    gap = interpolation_gap(model, s.x, s.bcp)
    onehot_gap = interpolation_gap(model, s.x, s.onehot)
    assert full_grad_sq < 1e-14 * gap  # it is the optimum on this sample
    assert gap > 1e-3 * onehot_gap and gap > 1e-4
    # same problem, realizable twin (shared covariance): the fitted student interpolates
    shared = GaussianMixture(qm.means, qm.covariances.mean(0))
    s2 = shared.sample(300, seed=5)
    fitted = _fit_linear(s2.x, s2.bcp)
    assert interpolation_gap(fitted, s2.x, s2.bcp) < 1e-12 * interpolation_gap(fitted, s2.x, s2.onehot)


def _optimum(seed=0, n=40, classes=3, dim=4):
    problem = GaussianMixture.random(classes, dim, separation=1.5, seed=seed)
    s = problem.sample(n, seed=seed + 1)
    return LinearSoftmax.from_params(*problem.bayes_linear()), s


def _block_means(model, s, noise_model, seed, blocks=12, per_block=40):
    """``empirical_noise`` over ``blocks`` blocks, each ``per_block`` fresh target draws for every ``x``
    (batch means: the block values are independent, so their spread gives the standard error)."""
    gen = torch.Generator().manual_seed(seed)
    x, bcp = s.x.repeat(per_block, 1), s.bcp.repeat(per_block, 1)
    return torch.tensor([empirical_noise(model, x, noise_model.sample(bcp, generator=gen)) for _ in range(blocks)],
                        dtype=F64)


@pytest.mark.parametrize("noise_model", [OneHot(), Dirichlet(2.0), Gaussian(0.05), Mix(0.4, Dirichlet(1.0))],
                         ids=repr)
def test_empirical_noise_converges_to_prediction_at_optimum(noise_model):
    """Draw fresh targets ``R`` times at θ*: the mean of ``empirical_noise`` converges to ``predicted_noise``
    (the error shrinks with R and sits within a few standard errors)."""
    model, s = _optimum(seed=3)
    predicted = predicted_noise(model, s.x, s.bcp, noise_model)
    assert predicted > 0
    draws = _block_means(model, s, noise_model, seed=9)
    errors = [abs(draws[:r].mean().item() - predicted) for r in (1, len(draws))]
    se = draws.std().item() / len(draws) ** 0.5
    assert errors[1] < 5 * se
    assert errors[1] < errors[0] or errors[0] < se
    # and the expected norm carries no bias part at the optimum
    assert abs(expected_sq_grad_norm(model, s.x, s.bcp, noise_model) / predicted - 1) < 1e-10


def test_empirical_noise_converges_to_expected_norm_off_optimum():
    """Away from θ*, E_t‖∇ℓ‖² = mᵀGm + tr(CG): Monte Carlo of ``empirical_noise`` converges to it."""
    problem = GaussianMixture.random(3, 4, separation=1.5, seed=5)
    s = problem.sample(30, seed=6)
    weight, bias = problem.bayes_linear()
    model = LinearSoftmax.from_params(0.5 * weight, bias + 0.3)
    noise_model = Mix(0.5, Gaussian(0.2))
    expected = expected_sq_grad_norm(model, s.x, s.bcp, noise_model)
    assert expected > predicted_noise(model, s.x, s.bcp, noise_model)
    draws = _block_means(model, s, noise_model, seed=1)
    assert abs(draws.mean().item() - expected) < 5 * draws.std().item() / len(draws) ** 0.5


def test_exact_and_temperature_give_no_noise():
    model, s = _optimum(seed=7)
    assert predicted_noise(model, s.x, s.bcp, Exact()) == 0
    assert predicted_noise(model, s.x, s.bcp, Temperature(3.0)) == 0
    # a biased teacher moves the optimum: its targets leave a non-zero gradient at θ*
    hot = Temperature(3.0).sample(s.bcp)
    assert empirical_noise(model, s.x, hot) > 1e-4


def test_dirichlet_noise_is_scaled_onehot_noise():
    model, s = _optimum(seed=8)
    onehot = predicted_noise(model, s.x, s.bcp, OneHot())
    for alpha in (0.1, 1.0, 30.0):
        assert abs(predicted_noise(model, s.x, s.bcp, Dirichlet(alpha)) * (1 + alpha) / onehot - 1) < 1e-12


_MIX_CASE = _optimum(seed=10, n=25)
_TEACHERS = [Dirichlet(0.5), Dirichlet(5.0), Gaussian(0.02), Gaussian(0.3), Exact()]


@settings(max_examples=15, deadline=None)
@given(lam=st.floats(0.0, 1.0), teacher=st.sampled_from(_TEACHERS))
def test_mix_noise_is_quadratic_in_lambda(lam, teacher):
    model, s = _MIX_CASE
    a = predicted_noise(model, s.x, s.bcp, OneHot())
    b = predicted_noise(model, s.x, s.bcp, teacher)
    mixed = predicted_noise(model, s.x, s.bcp, Mix(lam, teacher))
    assert abs(mixed - ((1 - lam) ** 2 * a + lam**2 * b)) <= 1e-10 * (a + b)


@pytest.mark.parametrize("teacher", _TEACHERS, ids=repr)
def test_optimal_lambda_minimises_mix_noise(teacher):
    model, s = _MIX_CASE
    choice = optimal_lambda(model, s.x, s.bcp, teacher)
    assert abs(choice.lam - choice.onehot / (choice.onehot + choice.teacher)) < 1e-14
    best = predicted_noise(model, s.x, s.bcp, Mix(choice.lam, teacher))
    assert abs(best - choice.noise) <= 1e-10 * choice.onehot
    assert abs(choice.noise - choice.onehot * choice.teacher / (choice.onehot + choice.teacher)) < 1e-12
    for lam in torch.linspace(0, 1, 21).tolist():
        assert predicted_noise(model, s.x, s.bcp, Mix(lam, teacher)) >= best * (1 - 1e-12)
    if isinstance(teacher, Exact):
        assert choice.lam == 1.0 and best < 1e-15
    with pytest.raises(ValueError, match="teacher"):
        optimal_lambda(model, s.x, s.bcp, Mix(0.5, teacher))
