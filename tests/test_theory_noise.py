"""Fast gradient-noise paths (torch.func, chunked) against their slow twins in ``sgdbound.reference``.

Every comparison is in float64 at ``rtol = 1e-8``, on linear students and small MLPs, at random
(non-optimal) parameters and at the Bayes-linear optimum of random Gaussian mixtures.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from sgdbound import reference as ref
from sgdbound.data import GaussianMixture
from sgdbound.models import MLP, LinearSoftmax
from sgdbound.targets import Dirichlet, Exact, Gaussian, Mix, OneHot, Temperature
from sgdbound.theory import (
    empirical_noise,
    expected_sq_grad_norm,
    interpolation_gap,
    logit_jacobians,
    logit_ntk,
    loss_hessian,
    noisy_bcp_noise,
    onehot_noise,
    optimal_lambda,
    per_sample_gradients,
    predicted_gradient_covariance,
    predicted_noise,
    softmax_gram,
)

F64 = torch.float64
RTOL = 1e-8


def close(actual, expected, rtol=RTOL, atol=1e-14):
    assert_close(torch.as_tensor(actual, dtype=F64), torch.as_tensor(expected, dtype=F64), rtol=rtol, atol=atol)


def _random_linear(dim, classes, seed):
    gen = torch.Generator().manual_seed(seed)
    return LinearSoftmax.from_params(torch.randn(classes, dim, generator=gen, dtype=F64),
                                     torch.randn(classes, generator=gen, dtype=F64))


def _mlp(dim, classes, hidden, activation, seed):
    torch.manual_seed(seed)  # nn.Linear initialisation draws from the global generator; seeded per test
    return MLP(dim, classes, hidden=hidden, activation=activation, dtype=F64)


# name -> (problem seed, number of classes, dim, model factory)
CASES = {
    "linear-random": (0, 3, 4, lambda d, k: _random_linear(d, k, 1)),
    "linear-optimum": (1, 4, 3, None),  # the Bayes-linear student of the problem
    "mlp-tanh-1": (2, 3, 4, lambda d, k: _mlp(d, k, 5, "tanh", 2)),
    "mlp-relu-2": (3, 3, 4, lambda d, k: _mlp(d, k, (5, 4), "relu", 3)),
    "mlp-gelu-2": (4, 4, 3, lambda d, k: _mlp(d, k, (4, 4), "gelu", 4)),
    "mlp-softplus-1": (5, 2, 3, lambda d, k: _mlp(d, k, 6, "softplus", 5)),
    "mlp-sigmoid-3": (6, 3, 3, lambda d, k: _mlp(d, k, (4, 3, 4), "sigmoid", 6)),
}


@pytest.fixture(params=sorted(CASES), scope="module")
def case(request):
    seed, classes, dim, factory = CASES[request.param]
    problem = GaussianMixture.random(classes, dim, separation=1.5, noise_var=0.8, seed=seed)
    sample = problem.sample(12, seed=seed + 100)
    model = LinearSoftmax.from_params(*problem.bayes_linear()) if factory is None else factory(dim, classes)
    return model, sample, ref.gram(model, sample.x)


NOISE_MODELS = [
    OneHot(),
    Exact(),
    Dirichlet(3.0),
    Gaussian(0.05),
    Temperature(2.0),
    Mix(0.3, Dirichlet(1.5)),
    Mix(0.7, Gaussian(0.1)),
    Mix(0.5, Temperature(0.5)),
]


def test_gram_matches_loops(case):
    model, s, grams = case
    logits, ntk = logit_ntk(model, s.x, chunk_size=5)
    close(softmax_gram(torch.softmax(logits, 1), ntk), grams)


def test_logit_jacobians_give_grad_log_probs(case):
    model, s, grams = case
    logits, jz = logit_jacobians(model, s.x, chunk_size=7)
    q = torch.softmax(logits, 1)
    eye = torch.eye(q.shape[1], dtype=F64)
    close((eye - q[:, None, :]) @ jz, ref.grad_log_probs(model, s.x))


def test_per_sample_gradients_full_formula(case):
    model, s, grams = case
    gen = torch.Generator().manual_seed(7)
    targets = s.bcp + 0.3 * torch.randn(s.bcp.shape, generator=gen, dtype=F64)  # rows do not sum to one
    assert (targets.sum(1) - 1).abs().max() > 1e-2
    close(per_sample_gradients(model, s.x, targets, chunk_size=5), ref.loss_gradients(model, s.x, targets))
    close(empirical_noise(model, s.x, targets, chunk_size=5), ref.empirical_noise(model, s.x, targets))


def test_predicted_noise_matches_loops(case):
    model, s, grams = case
    for noise_model in NOISE_MODELS:
        close(predicted_noise(model, s.x, s.bcp, noise_model),
              ref.predicted_noise(model, s.x, s.bcp, noise_model, grams=grams))
        close(expected_sq_grad_norm(model, s.x, s.bcp, noise_model),
              ref.expected_sq_grad_norm(model, s.x, s.bcp, noise_model, grams=grams))


def test_gradient_covariance_matches_loops(case):
    model, s, grams = case
    for noise_model in (OneHot(), Mix(0.4, Gaussian(0.2))):
        close(predicted_gradient_covariance(model, s.x, s.bcp, noise_model, chunk_size=5),
              ref.gradient_second_moment(model, s.x, s.bcp, noise_model))


def test_paper_forms_match_loops(case):
    model, s, grams = case
    close(onehot_noise(model, s.x, s.bcp), ref.onehot_noise(model, s.x, s.bcp))
    close(noisy_bcp_noise(model, s.x, s.bcp, 0.3), ref.noisy_bcp_noise(model, s.x, s.bcp, 0.3))


def test_interpolation_gap_and_lambda_match_loops(case):
    model, s, grams = case
    close(interpolation_gap(model, s.x, s.bcp), ref.interpolation_gap(model, s.x, s.bcp), atol=1e-28)
    choice = optimal_lambda(model, s.x, s.bcp, Dirichlet(0.7))
    lam, a, b = ref.optimal_lambda(model, s.x, s.bcp, Dirichlet(0.7))
    close([choice.lam, choice.onehot, choice.teacher], [lam, a, b])


def test_optimal_lambda_with_a_biased_teacher_counts_covariance_or_bias_as_documented():
    """A deterministic biased teacher (``Temperature(2)``, covariance 0) at a BCP optimum: ``"noise"`` gives
    ``B = 0`` and ``λ* = 1``; ``"plateau"`` gives ``B = tr(H⁺ (1/n) Σ ∇ℓ(x_i, m_i) ∇ℓ(x_i, m_i)ᵀ)`` (autograd twin)."""
    problem = GaussianMixture.random(4, 3, separation=1.5, seed=31)
    s = problem.sample(30, seed=32)
    model = LinearSoftmax.from_params(*problem.bayes_linear())
    teacher = Temperature(2.0)
    noise = optimal_lambda(model, s.x, s.bcp, teacher)
    assert noise.teacher == 0.0 and noise.lam == 1.0
    grads = ref.loss_gradients(model, s.x, teacher.mean(s.bcp))
    pinv = torch.linalg.pinv(ref.loss_hessian(model, s.x, s.bcp), hermitian=True, rtol=1e-9)
    bias = (pinv * (grads.T @ grads / s.x.shape[0])).sum().item()
    plateau = optimal_lambda(model, s.x, s.bcp, teacher, criterion="plateau")
    assert bias > 1e-3
    close(plateau.teacher, bias, rtol=1e-8)
    close(plateau.lam, plateau.onehot / (plateau.onehot + bias), rtol=1e-8)


def test_paper_forms_equal_trace_form_at_optimum():
    """Prop. 3: at an interpolating θ*, ``E Σ ‖J_k‖²/P_k`` is the one-hot ``E tr(C G)`` and
    ``ν E Σ ‖J_k‖²/P_k²`` the Gaussian one."""
    problem = GaussianMixture.random(4, 5, separation=2.0, seed=11)
    s = problem.sample(40, seed=12)
    model = LinearSoftmax.from_params(*problem.bayes_linear())
    close(onehot_noise(model, s.x, s.bcp), predicted_noise(model, s.x, s.bcp, OneHot()), rtol=1e-10)
    close(noisy_bcp_noise(model, s.x, s.bcp, 0.2), predicted_noise(model, s.x, s.bcp, Gaussian(0.2)), rtol=1e-10)
    close(onehot_noise(model, s.x, s.bcp), ref.onehot_noise(model, s.x, s.bcp))


def test_chunking_does_not_change_results():
    problem = GaussianMixture.random(3, 4, seed=3)
    s = problem.sample(23, seed=4)
    model = _mlp(4, 3, (6, 5), "tanh", 9)
    whole = predicted_noise(model, s.x, s.bcp, Dirichlet(2.0), chunk_size=1000)
    for chunk in (1, 4, 22):
        close(predicted_noise(model, s.x, s.bcp, Dirichlet(2.0), chunk_size=chunk), whole, rtol=1e-12)


def test_ntk_methods_agree_with_loops(case):
    """The layer-structure NTK (fully connected nets) and the Jacobian one give the same ``G``."""
    model, s, grams = case
    for method in ("jacobian", "linear"):
        if method == "linear" and not isinstance(model, MLP):
            with pytest.raises(ValueError, match="method"):
                logit_ntk(model, s.x, method=method)
            continue
        logits, ntk = logit_ntk(model, s.x, chunk_size=5, method=method)
        close(softmax_gram(torch.softmax(logits, 1), ntk), grams)


def _shared_layer():
    torch.manual_seed(0)
    shared = torch.nn.Linear(3, 3, dtype=F64)
    return torch.nn.Sequential(shared, torch.nn.Tanh(), shared, torch.nn.Tanh(), torch.nn.Linear(3, 4, dtype=F64))


def _tied_weight():
    torch.manual_seed(0)
    first, second = torch.nn.Linear(3, 3, dtype=F64), torch.nn.Linear(3, 3, dtype=F64)
    second.weight = first.weight
    return torch.nn.Sequential(first, torch.nn.Tanh(), second, torch.nn.Tanh(), torch.nn.Linear(3, 4, dtype=F64))


@pytest.mark.parametrize("make", [_shared_layer, _tied_weight])
def test_shared_weights_fall_back_to_jacobians(make):
    """A layer applied twice, or a weight held by two layers, breaks the per-layer formula: ``auto`` must
    notice and stay exact, and the caller's model must be left intact."""
    model = make()
    problem = GaussianMixture.random(4, 3, seed=1)
    s = problem.sample(8, seed=2)
    params = list(model.parameters())
    logits, ntk = logit_ntk(model, s.x)
    # the caller's model is left intact (torch's functional_call can leave detached tensors behind)
    assert all(a is b for a, b in zip(model.parameters(), params))
    assert all(isinstance(p, torch.nn.Parameter) for p in model.parameters())
    close(softmax_gram(torch.softmax(logits, 1), ntk), ref.gram(model, s.x))
    with pytest.raises(ValueError, match="method"):
        logit_ntk(model, s.x, method="linear")
    close(predicted_noise(model, s.x, s.bcp, OneHot()), ref.predicted_noise(model, s.x, s.bcp, OneHot()))
    close(per_sample_gradients(model, s.x, s.bcp), ref.loss_gradients(model, s.x, s.bcp))
    close(loss_hessian(model, s.x, s.bcp), ref.loss_hessian(model, s.x, s.bcp))
    assert all(a is b for a, b in zip(model.parameters(), params))


def test_paper_forms_with_a_class_of_zero_probability():
    """A class with P_k = q_k = 0 (underflow) contributes nothing to the one-hot form and G_kk to the ν form;
    with P_k = 0 < q_k the forms are infinite (no NaN either way)."""
    from sgdbound.models import LinearSoftmax
    from sgdbound.theory import noisy_bcp_noise, onehot_noise

    model = LinearSoftmax(2, 3, dtype=torch.float64)
    with torch.no_grad():
        model.bias.copy_(torch.tensor([0.0, 0.0, -1e4], dtype=torch.float64))  # q_3 underflows to exactly 0
    x = torch.tensor([[0.5, -1.0], [1.0, 2.0]], dtype=torch.float64)
    bcp = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]], dtype=torch.float64)
    two = LinearSoftmax(2, 2, dtype=torch.float64)  # the same student without the empty class
    bcp2 = bcp[:, :2]
    assert onehot_noise(model, x, bcp) == pytest.approx(onehot_noise(two, x, bcp2), rel=1e-12)
    assert math.isfinite(noisy_bcp_noise(model, x, bcp, 0.1))
    with torch.no_grad():
        model.bias.zero_()
    assert onehot_noise(model, x, bcp) == math.inf


def test_optimal_lambda_plateau_criterion():
    """The plateau criterion minimises the stationary spread of Mix(λ, teacher) (Lyapunov, small step) over a grid
    of λ; for a Dirichlet teacher both criteria give (1+α)/(2+α), for a Gaussian one they differ."""
    from sgdbound.theory import loss_hessian, optimal_lambda, predicted_gradient_covariance, stationary_prediction

    gm = GaussianMixture.random(3, 3, separation=1.5, seed=4)
    s = gm.sample(400, seed=5)
    model = LinearSoftmax.from_params(*gm.bayes_linear())
    for teacher, differ in ((Dirichlet(3.0), False), (Gaussian(0.05), True)):
        by_noise = optimal_lambda(model, s.x, s.bcp, teacher)
        by_plateau = optimal_lambda(model, s.x, s.bcp, teacher, criterion="plateau")
        if not differ:
            assert by_noise.lam == pytest.approx(4 / 5, rel=1e-9)
            assert by_plateau.lam == pytest.approx(4 / 5, rel=1e-9)
        else:
            assert abs(by_noise.lam - by_plateau.lam) > 0.01
        hess = loss_hessian(model, s.x, s.bcp)
        grid = torch.linspace(0, 1, 201, dtype=torch.float64)
        spread = [float(stationary_prediction(hess, predicted_gradient_covariance(model, s.x, s.bcp, Mix(float(lam),
                                                                                                     teacher)), 1e-4))
                  for lam in grid]
        best = float(grid[int(torch.tensor(spread).argmin())])
        assert best == pytest.approx(by_plateau.lam, abs=0.006)
    with pytest.raises(ValueError, match="criterion"):
        optimal_lambda(model, s.x, s.bcp, OneHot(), criterion="accuracy")
