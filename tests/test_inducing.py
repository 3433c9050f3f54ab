"""Inducing-weight layers (Ritter et al. 2021): the closed forms against the explicit joint Gaussian, the fast
whitened path against its cholesky_solve twin, Monte Carlo moments, the KL, shapes on CIFAR nets, a short fit."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sgdbound.cifar.inducing import (
    INDUCING_DEFAULTS,
    JITTER,
    JITTER_RETRIES,
    InducingConv2d,
    InducingHyper,
    InducingLinear,
    conditional_mean,
    inducing_bayesianize,
    inducing_kl,
    jittered_cholesky,
    matheron_noise,
)
from sgdbound.cifar.models import build_model, count_parameters

R, C_IN, M, N = 3, 3, 2, 2  # the tiny layer: W (3, 4) with its bias column, U (2, 2)


def _tiny_layer(seed: int = 0, **hyper) -> InducingLinear:
    torch.manual_seed(seed)
    hyper = {"init_d": 0.5, **hyper}  # D well away from 0, so K is well conditioned for the 1e-10 checks
    return InducingLinear(nn.Linear(C_IN, R), M, N, **hyper).double()


def _explicit_joint(layer: InducingLinear) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Explicit joint of the augmented matrix ``X = [[U, ·], [·, W]]`` ``(M+r, N+c)``: covariance ``kron(Ψ, Φ)``
    of the row-major ``vec X``, and the index sets of the U and W blocks; also ``(A, B) = (Z_rᵀK_r⁻¹Z_r, ...)``."""
    z_r, z_c = layer.z_row.detach(), layer.z_col.detach()
    d_r, d_c = F.softplus(layer.d_row.detach()), F.softplus(layer.d_col.detach())
    r, c = z_r.shape[1], z_c.shape[1]
    k_r, k_c = z_r @ z_r.T + torch.diag(d_r**2), z_c @ z_c.T + torch.diag(d_c**2)
    psi = torch.cat([torch.cat([k_r, z_r], 1), torch.cat([z_r.T, torch.eye(r, dtype=z_r.dtype)], 1)], 0)
    phi = torch.cat([torch.cat([k_c, z_c], 1), torch.cat([z_c.T, torch.eye(c, dtype=z_c.dtype)], 1)], 0)
    sigma = torch.kron(psi, phi)
    idx = torch.arange((M + r) * (N + c)).reshape(M + r, N + c)
    return sigma, idx[:M, :N].reshape(-1), idx[M:, N:].reshape(-1), (k_r, k_c)


def _closed_form_cov(layer: InducingLinear) -> torch.Tensor:
    z_r, z_c = layer.z_row.detach(), layer.z_col.detach()
    _, _, _, (k_r, k_c) = _explicit_joint(layer)
    a, b = z_r.T @ torch.linalg.solve(k_r, z_r), z_c.T @ torch.linalg.solve(k_c, z_c)
    return torch.eye(a.shape[0] * b.shape[0], dtype=a.dtype) - torch.kron(a, b)


def test_conditional_covariance_closed_form_is_the_schur_complement():
    layer = _tiny_layer()
    sigma, iu, iw, _ = _explicit_joint(layer)
    s_wu = sigma[iw][:, iu]
    schur = sigma[iw][:, iw] - s_wu @ torch.linalg.solve(sigma[iu][:, iu], s_wu.T)
    torch.testing.assert_close(schur, _closed_form_cov(layer), atol=1e-10, rtol=0)


def test_conditional_mean_matches_explicit_joint():
    layer = _tiny_layer(1)
    sigma, iu, iw, _ = _explicit_joint(layer)
    u = torch.randn(5, M, N, dtype=torch.float64)
    exact = (sigma[iw][:, iu] @ torch.linalg.solve(sigma[iu][:, iu], u.reshape(5, -1).T)).T.reshape(5, R, C_IN + 1)
    torch.testing.assert_close(layer.conditional_mean(u).detach(), exact, atol=1e-10, rtol=0)


def test_matheron_noise_has_the_conditional_covariance():
    """Empirical covariance of 200k draws of vec(noise) (row-major) within 5 standard errors (sqrt(2/n) bounds the
    SE of every entry, whose variances are <= 1) of the closed form; the column-major convention is far off."""
    layer, n = _tiny_layer(2), 200_000
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        noise = layer.conditional_noise((n,), generator=gen).reshape(n, -1)
    emp = noise.T @ noise / n  # mean 0 is known
    closed = _closed_form_cov(layer)
    tol = 5 * math.sqrt(2 / n)
    assert (emp - closed).abs().max() < tol
    col_major = noise.reshape(n, R, C_IN + 1).mT.reshape(n, -1)
    assert ((col_major.T @ col_major / n) - closed).abs().max() > 10 * tol
    assert torch.linalg.eigvalsh(closed).min() > 0  # D > 0 keeps Z_rᵀK_r⁻¹Z_r ≺ I, so the conditional is proper


def test_fast_whitened_path_equals_cholesky_solve_twin():
    layer = _tiny_layer(3, init_lamda=0.02)
    gen = torch.Generator().manual_seed(1)
    eps_u, e1, e2, e3, e4 = layer.draw_standard_normals((7,), generator=gen)
    with torch.no_grad():
        fast = layer.weight_from_normals(eps_u, e1, e2, e3, e4)
        l_r, _, _, l_c, _, _ = layer.factors()
        u = l_r @ (layer.mu_u + layer.sd_u * eps_u) @ l_c.T
        z_r, z_c, d_r, d_c = layer.z_row, layer.z_col, F.softplus(layer.d_row), F.softplus(layer.d_col)
        slow = layer.prior_sd_eff * (conditional_mean(u, z_r, d_r, z_c, d_c)
                                     + layer.lamda * matheron_noise(e1, e2, e3, e4, z_r, d_r, z_c, d_c))
    torch.testing.assert_close(fast, slow, atol=1e-10, rtol=0)


def test_weight_marginal_is_the_prior_when_q_is_the_prior():
    """λ = 1 and q(Ū) = N(0, I) make the joint the prior: vec W ~ N(0, σ² I), σ = prior_sd / sqrt(c); the empirical
    covariance of 100k draws within 5 SE (σ²·sqrt(2/n))."""
    layer, n = _tiny_layer(4, init_lamda=1.0, max_lamda=2.0, init_sd_u=1.0, max_sd_u=2.0, prior_sd=1.5), 100_000
    with torch.no_grad():
        layer.mu_u.zero_()
        w = layer.sample_weight_matrix((n,), generator=torch.Generator().manual_seed(2)).reshape(n, -1)
    var = layer.prior_sd_eff**2
    assert var == pytest.approx(1.5**2 / (C_IN + 1))
    emp = w.T @ w / n
    torch.testing.assert_close(emp, var * torch.eye(R * (C_IN + 1), dtype=w.dtype), atol=5 * var * math.sqrt(2 / n),
                               rtol=0)


def test_kl_matches_torch_distributions_and_lambda_term():
    layer = _tiny_layer(5, init_lamda=0.01, max_lamda=3.0, init_sd_u=0.05)
    with torch.no_grad():
        layer.rho_u.add_(torch.randn_like(layer.rho_u))
    q = torch.distributions.Normal(layer.mu_u, layer.sd_u)
    p = torch.distributions.Normal(torch.zeros_like(layer.mu_u), torch.ones_like(layer.mu_u))
    kl_u = torch.distributions.kl_divergence(q, p).sum()
    lam, rc = layer.lamda, R * (C_IN + 1)
    torch.testing.assert_close(layer.kl_divergence(), kl_u + rc * (lam**2 / 2 - torch.log(lam) - 0.5))
    for value in (0.01, 0.5, 1.0, 2.0):
        with torch.no_grad():
            layer.lamda_raw.fill_(math.log(math.expm1(value)))
        term = layer.kl_divergence() - kl_u
        assert term >= 0
        if value == 1.0:
            assert abs(term.item()) < 1e-12


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("stride", "padding"), [(1, 1), (2, 0)])
def test_conv_shapes(bias, stride, padding):
    conv = nn.Conv2d(3, 5, 3, stride=stride, padding=padding, bias=bias)
    layer = InducingConv2d(conv, 4, 6)
    x = torch.randn(2, 3, 8, 8)
    assert layer(x).shape == conv(x).shape
    assert (layer.rows, layer.cols) == (5, 27 + bias)
    assert layer.sample_weight_matrix((3,)).shape == (3, 5, 27 + bias)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_shape(bias):
    layer = InducingLinear(nn.Linear(7, 4, bias=bias), 3, 5)
    assert layer(torch.randn(6, 7)).shape == (6, 4)
    assert layer.z_col.shape == (5, 7 + bias)


def test_bayesianize_wrn_forward_sampling_and_official_sizes():
    torch.manual_seed(0)
    det = build_model("wrn_16_1", 10)
    n_det = count_parameters(det)
    net = inducing_bayesianize(det, **INDUCING_DEFAULTS)
    assert not any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in net.modules())
    assert isinstance(net.head, InducingLinear) and net.head.z_row.shape == (100, 10)
    assert net.head.z_col.shape == (128, 65)  # 64 features + bias
    convs = [m for m in net.modules() if isinstance(m, InducingConv2d)]
    assert convs and all(m.mu_u.shape == (128, 128) for m in convs)
    x = torch.randn(2, 3, 32, 32)
    a, b = net(x), net(x)
    assert a.shape == (2, 10) and torch.isfinite(a).all() and not torch.equal(a, b)
    assert count_parameters(net) == 1_073_532 and n_det == 175_066  # inducing layers are larger on this small net
    assert torch.isfinite(inducing_kl(net))


def test_bf16_autocast_draws_weights_in_float32():
    """Under bf16 autocast (the CUDA fast path) the weights are drawn in float32 (a bf16 Gram matrix is not
    positive definite once training has shrunk D) and only the conv runs in bf16: same draws as in float32."""
    torch.manual_seed(0)
    net = inducing_bayesianize(build_model("wrn_16_1", 10), **INDUCING_DEFAULTS)  # train mode: no cached factors
    for m in net.modules():
        if isinstance(m, (InducingConv2d, InducingLinear)):
            m.d_row.data.fill_(-14.0)  # softplus ≈ 1e-6: D² ≈ 1e-12, far below bf16's resolution of Z Zᵀ
            m.d_col.data.fill_(-14.0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.manual_seed(1)
        full = net(x)
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = net(x)
    assert half.dtype == torch.bfloat16 and torch.isfinite(half.float()).all()
    torch.testing.assert_close(half.float(), full, rtol=0.1, atol=0.1 * full.abs().max().item())


def test_bad_hyperparameters_and_layers_raise():
    lin = nn.Linear(3, 2)
    for kwargs, match in [({"max_lamda": 0.0}, "max_lamda"), ({"init_lamda": 0.1}, "init_lamda"),
                          ({"prior_sd": -1.0}, "prior_sd"), ({"max_sd_u": float("nan")}, "max_sd_u"),
                          ({"whitened_u": False}, "whitened_u"), ({"q_inducing": "full"}, "q_inducing"),
                          ({"bogus": 1}, "unknown")]:
        with pytest.raises(ValueError, match=match):
            InducingLinear(lin, 2, 2, **kwargs)
    with pytest.raises(ValueError, match="inducing_rows"):
        InducingLinear(lin, -1, 2)
    with pytest.raises(ValueError, match="groups"):
        InducingConv2d(nn.Conv2d(4, 4, 3, groups=2))
    net = nn.Sequential(nn.Linear(3, 4), nn.Conv2d(4, 4, 3, groups=4))
    with pytest.raises(ValueError, match="groups"):
        inducing_bayesianize(net)
    assert isinstance(net[0], nn.Linear)  # nothing replaced before the check failed
    with pytest.raises(ValueError, match="conv"):
        inducing_bayesianize(nn.Linear(3, 2), conv=(0, 4))
    assert InducingHyper(**{k: v for k, v in INDUCING_DEFAULTS.items() if k not in ("conv", "linear")})


def test_eval_cache_is_reused_and_invalidated():
    layer = _tiny_layer(6).eval()
    with torch.no_grad():
        f1 = layer.factors()
        assert layer.factors() is f1
        layer.z_row.add_(0.1)
        assert layer.factors() is not f1
    layer.train()
    assert layer.factors() is not layer.factors()


def test_short_training_fits_and_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    n = 200
    y = torch.randint(0, 2, (n,))
    x = torch.randn(n, 2) * 0.5 + (2.0 * y[:, None] - 1.0) * torch.tensor([1.5, 1.5])
    net = inducing_bayesianize(nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2)), linear=(8, 8))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for step in range(300):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y) + inducing_kl(net) / n
        loss.backward()
        if step == 0:
            for name, p in net.named_parameters():
                assert p.grad is not None and p.grad.abs().sum() > 0, name
        opt.step()
    with torch.no_grad():
        acc = (net(x).argmax(1) == y).float().mean().item()
    assert acc > 0.95


def test_float32_cholesky_retries_a_larger_jitter_when_rounding_beats_the_base_jitter():
    """Regression: ``K = Z Zᵀ + D²`` is positive definite, but with ``M = 128 > r = 16``, one dominant direction of
    ``Z`` and ``D = 1e-4`` (as training grows ``Z`` and shrinks ``D``), float32 rounding of ``Z Zᵀ`` exceeds the base
    jitter ``1e-6 · mean(diag K)``: the base factorisation fails. It used to raise ``LinAlgError`` from the layer's
    forward (the float32 digits run of ``benchmarks/inducing_stability.py`` hit it first in epoch 47, then about
    once per thousand factorisations); now the jitter × 10 is tried and the factor is finite and accurate."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(128, 16, generator=gen) / math.sqrt(128)
    z[:, 0] *= 5.0
    torch.manual_seed(0)
    layer = InducingLinear(nn.Linear(15, 16), 128, 128)  # W (16, 16): K_r is (128, 128) of rank 16 plus D_r²
    with torch.no_grad():
        layer.z_row.copy_(z)
        layer.d_row.fill_(math.log(math.expm1(1e-4)))
    d = F.softplus(layer.d_row.detach())
    k = z @ z.T + torch.diag(d * d)
    exact = z.double() @ z.double().T + torch.diag(d.double() ** 2)
    assert torch.linalg.eigvalsh(exact).min() > 0.5e-8  # positive definite (D² = 1e-8) ...
    assert torch.linalg.eigvalsh(k.double()).min() < 0  # ... but not as rounded to float32
    with pytest.raises(torch.linalg.LinAlgError, match="not positive definite"):
        jittered_cholesky(k, retries=0)  # the base jitter alone: what the layer did before the retries
    lower = jittered_cholesky(k)
    assert torch.isfinite(lower).all()
    err = (lower.double() @ lower.double().T - k.double()).abs().max()
    assert err <= 2 * JITTER_RETRIES[0] * JITTER[torch.float32] * k.diagonal().mean()  # the first retry sufficed
    x = torch.randn(4, 15)
    assert torch.isfinite(layer(x)).all()  # train mode: raised LinAlgError before the fix
    with torch.no_grad():
        assert torch.isfinite(layer.eval()(x)).all()
