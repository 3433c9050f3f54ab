"""The four bounds (T1–T4): hypothesis properties, literal formulas, and the one-step inequalities behind them
checked *exactly* on finite sums.

The finite-sum problem is least squares ``ℓ_i(θ) = ½(a_iᵀθ − b_i)²``, ``f = (1/n) Σ ℓ_i``, whose constants are
exact: ``μ = λ_min(AᵀA/n)`` (strong convexity, hence AS1 and AS2), ``L = λ_max(AᵀA/n)``, ``L_i = ‖a_i‖²``,
``ℒ(b)`` from ``expected_smoothness``. The expectation over a minibatch drawn uniformly without replacement
is the average over *all* subsets of size ``b``, enumerated.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sgdbound import reference as ref
from sgdbound.theory import (
    batch_noise,
    decreasing_step_bound,
    decreasing_steps,
    expected_smoothness,
    pl_bound,
    quasi_convex_bound,
)

SETTINGS = settings(max_examples=40, deadline=None)
pos = st.floats(1e-3, 1e3)


@st.composite
def qc_args(draw, exact=None):
    mu = draw(st.floats(1e-4, 1.0))
    smoothness = mu * draw(st.floats(1.0, 1e3))
    sigma2 = 0.0 if exact else draw(st.floats(1e-6, 1e2)) if exact is False else draw(
        st.sampled_from([0.0, draw(st.floats(1e-6, 1e2))]))
    limit = 1 / smoothness if sigma2 == 0 else 1 / (2 * smoothness)
    step = limit * draw(st.floats(1e-3, 1.0))
    return dict(mu=mu, smoothness=smoothness, sigma2=sigma2, step=step, dist0=draw(st.floats(0.0, 1e3)))


@st.composite
def pl_args(draw, exact=None):
    mu = draw(st.floats(1e-4, 1.0))
    lipschitz = mu * draw(st.floats(1.0, 1e2))
    smoothness = lipschitz * draw(st.floats(1.0, 10.0))
    sigma2 = 0.0 if exact else draw(st.floats(1e-6, 1e2)) if exact is False else draw(
        st.sampled_from([0.0, draw(st.floats(1e-6, 1e2))]))
    limit = mu / (lipschitz * smoothness) * (1 if sigma2 == 0 else 0.5)
    step = limit * draw(st.floats(1e-3, 1.0))
    return dict(mu=mu, lipschitz=lipschitz, smoothness=smoothness, sigma2=sigma2, step=step,
                gap0=draw(st.floats(0.0, 1e3)))


def _rel(a, b, rtol=1e-12):
    return abs(a - b) <= rtol * max(abs(a), abs(b), 1e-300)


# -- properties of the bound objects ---------------------------------------------------------------------
@SETTINGS
@given(args=qc_args())
def test_quasi_convex_bound_literal(args):
    bound = quasi_convex_bound(**args)
    literal = ref.t1 if args["sigma2"] == 0 else ref.t3
    for t in (0, 1, 7, 100):
        if args["sigma2"] == 0:
            value, limit = literal(args["mu"], args["smoothness"], args["step"], args["dist0"], t)
        else:
            value, limit = literal(args["mu"], args["smoothness"], args["sigma2"], args["step"], args["dist0"], t)
        assert _rel(bound.at(t), value, 1e-10)
    assert _rel(bound.max_step, limit)
    assert bound.theorem == ("T1" if args["sigma2"] == 0 else "T3")
    assert _rel(bound.at(0), bound.start + bound.neighborhood)
    assert bound.start == args["dist0"]
    assert _rel(bound.rate, 1 - args["step"] * args["mu"])


@SETTINGS
@given(args=pl_args())
def test_pl_bound_literal(args):
    bound = pl_bound(**args)
    for t in (0, 1, 7, 100):
        if args["sigma2"] == 0:
            value, limit = ref.t2(args["mu"], args["lipschitz"], args["smoothness"], args["step"], args["gap0"], t)
        else:
            value, limit = ref.t4(args["mu"], args["lipschitz"], args["smoothness"], args["sigma2"], args["step"],
                                  args["gap0"], t)
        assert _rel(bound.at(t), value, 1e-10)
    assert _rel(bound.max_step, limit)
    assert bound.theorem == ("T2" if args["sigma2"] == 0 else "T4")
    assert _rel(bound.at(0), bound.start + bound.neighborhood)


@SETTINGS
@given(args=st.one_of(qc_args(), pl_args()))
def test_bound_non_increasing_in_t(args):
    bound = quasi_convex_bound(**args) if "dist0" in args else pl_bound(**args)
    values = bound.at(np.arange(0, 200, 3))
    assert (np.diff(values) <= 1e-12 * values[0]).all()
    assert 0 <= bound.rate < 1
    assert bound.at(1e9) >= bound.neighborhood * (1 - 1e-12)


@SETTINGS
@given(mu=st.floats(1e-3, 1.0), ratio=st.floats(1.0, 100.0), sigma2=st.floats(1e-4, 10.0),
       frac=st.floats(0.01, 0.5), scale=st.floats(0.1, 10.0))
def test_neighborhood_linear_in_sigma2_and_step(mu, ratio, sigma2, frac, scale):
    smoothness = mu * ratio
    step = frac / (2 * smoothness)
    base = quasi_convex_bound(mu=mu, smoothness=smoothness, sigma2=sigma2, step=step, dist0=1.0)
    more_noise = quasi_convex_bound(mu=mu, smoothness=smoothness, sigma2=scale * sigma2, step=step, dist0=1.0)
    half_step = quasi_convex_bound(mu=mu, smoothness=smoothness, sigma2=sigma2, step=step / 2, dist0=1.0)
    assert _rel(more_noise.neighborhood, scale * base.neighborhood, 1e-12)
    assert _rel(half_step.neighborhood, base.neighborhood / 2, 1e-12)
    lipschitz = smoothness / 2
    mu_pl = min(mu, lipschitz)
    pl_step = frac * mu_pl / (2 * lipschitz * smoothness)
    pl = pl_bound(mu=mu_pl, lipschitz=lipschitz, smoothness=smoothness, sigma2=sigma2, step=pl_step, gap0=1.0)
    pl2 = pl_bound(mu=mu_pl, lipschitz=lipschitz, smoothness=smoothness, sigma2=scale * sigma2, step=pl_step / 2,
                   gap0=1.0)
    assert _rel(pl2.neighborhood, scale / 2 * pl.neighborhood, 1e-12)


@SETTINGS
@given(mu=st.floats(1e-3, 1.0), ratio=st.floats(1.0, 100.0), sigma2=st.floats(1e-6, 10.0))
def test_max_step_exact_is_twice_noisy(mu, ratio, sigma2):
    smoothness = mu * ratio
    exact = quasi_convex_bound(mu=mu, smoothness=smoothness, sigma2=0.0, step=1 / smoothness, dist0=1.0)
    noisy = quasi_convex_bound(mu=mu, smoothness=smoothness, sigma2=sigma2, step=0.5 / smoothness, dist0=1.0)
    assert _rel(exact.max_step, 1 / smoothness) and _rel(noisy.max_step, exact.max_step / 2)
    lipschitz = smoothness
    exact = pl_bound(mu=mu, lipschitz=lipschitz, smoothness=smoothness, sigma2=0.0, step=mu / lipschitz**2, gap0=1.0)
    noisy = pl_bound(mu=mu, lipschitz=lipschitz, smoothness=smoothness, sigma2=sigma2, step=mu / lipschitz**2 / 2,
                     gap0=1.0)
    assert _rel(exact.max_step, mu / (lipschitz * smoothness)) and _rel(noisy.max_step, exact.max_step / 2)
    # beyond the limit: refused, naming the step
    with pytest.raises(ValueError, match="step"):
        quasi_convex_bound(mu=mu, smoothness=smoothness, sigma2=sigma2, step=0.51 / smoothness, dist0=1.0)
    with pytest.raises(ValueError, match="step"):
        quasi_convex_bound(mu=mu, smoothness=smoothness, sigma2=0.0, step=1.01 / smoothness, dist0=1.0)
    with pytest.raises(ValueError, match="step"):
        pl_bound(mu=mu, lipschitz=lipschitz, smoothness=smoothness, sigma2=sigma2, step=0.51 * mu / lipschitz**2,
                 gap0=1.0)
    with pytest.raises(ValueError, match="step"):
        pl_bound(mu=mu, lipschitz=lipschitz, smoothness=smoothness, sigma2=0.0, step=1.01 * mu / lipschitz**2,
                 gap0=1.0)


@SETTINGS
@given(args=st.one_of(qc_args(), pl_args()), accuracy=st.floats(1e-6, 1e3))
def test_iterations_is_first_t_below_accuracy(args, accuracy):
    bound = quasi_convex_bound(**args) if "dist0" in args else pl_bound(**args)
    t = bound.iterations(accuracy)
    if accuracy <= bound.neighborhood:
        assert t == math.inf
        return
    assume(t < 10**7)
    tol = 1e-9 * accuracy
    assert bound.at(t) <= accuracy + tol
    if t > 0:
        assert bound.at(t - 1) > accuracy - tol


@SETTINGS
@given(lip=st.floats(1e-3, 1e3), extra=st.floats(1.0, 100.0), n=st.integers(2, 500), data=st.data())
def test_expected_smoothness_endpoints_and_monotone(lip, extra, n, data):
    lip_max = lip * extra
    batch = data.draw(st.integers(1, n))
    assert _rel(expected_smoothness(lipschitz=lip, lipschitz_max=lip_max, n=n, batch=1), lip_max)
    assert _rel(expected_smoothness(lipschitz=lip, lipschitz_max=lip_max, n=n, batch=n), lip)
    value = expected_smoothness(lipschitz=lip, lipschitz_max=lip_max, n=n, batch=batch)
    assert _rel(value, ref.expected_smoothness(lip, lip_max, n, batch), 1e-12)
    assert lip * (1 - 1e-12) <= value <= lip_max * (1 + 1e-12)
    if batch < n:
        assert expected_smoothness(lipschitz=lip, lipschitz_max=lip_max, n=n, batch=batch + 1) <= value * (1 + 1e-12)
    stream = expected_smoothness(lipschitz=lip, lipschitz_max=lip_max, n=math.inf, batch=batch)
    assert _rel(stream, (batch - 1) / batch * lip + lip_max / batch)
    assert _rel(batch_noise(sigma2=lip, n=n, batch=batch), ref.batch_noise(lip, n, batch), 1e-12)
    assert batch_noise(sigma2=lip, n=n, batch=n) == 0
    assert _rel(batch_noise(sigma2=lip, n=math.inf, batch=batch), lip / batch)


def test_decreasing_steps_rule():
    steps = decreasing_steps(mu=0.5, smoothness=2.0, steps=40)
    switch = 4 * math.ceil(2.0 / 0.5)
    assert np.allclose(steps[:switch], 1 / 4.0, rtol=0, atol=0)
    t = np.arange(switch, 40)
    assert np.allclose(steps[switch:], (2 * t + 1) / ((t + 1) ** 2 * 0.5), rtol=1e-15)
    assert (steps <= 1 / (2 * 2.0) + 1e-15).all()  # every step admissible for T3
    bound = decreasing_step_bound(mu=0.5, smoothness=2.0, sigma2=0.3, dist0=2.0)
    value = bound.at(switch + 5)
    tt = switch + 5
    assert _rel(value, 8 * 0.3 / (0.25 * tt) + 16 * 16 * 2.0 / (math.e**2 * tt**2))
    with pytest.raises(ValueError, match="t >= "):
        bound.at(switch - 1)


# -- the one-step inequalities behind T1–T4, exactly on finite sums --------------------------------------
class LeastSquares:
    """``ℓ_i = ½(a_iᵀθ − b_i)²`` with exact constants and exact minibatch expectations."""

    def __init__(self, seed: int, n: int, dim: int, interpolate: bool):
        rng = np.random.default_rng(seed)
        self.a = rng.normal(size=(n, dim)) * rng.uniform(0.3, 2.0, size=(n, 1))
        theta_true = rng.normal(size=dim)
        self.b = self.a @ theta_true + (0 if interpolate else rng.normal(size=n))
        self.n, self.dim = n, dim
        self.hess = self.a.T @ self.a / n
        self.opt = np.linalg.solve(self.hess, self.a.T @ self.b / n)
        evals = np.linalg.eigvalsh(self.hess)
        self.mu, self.lipschitz = evals[0], evals[-1]
        self.lipschitz_max = float((self.a**2).sum(1).max())
        self.sigma2 = float(np.mean(((self.a @ self.opt - self.b)[:, None] * self.a) ** 2) * dim)

    def f(self, theta):
        return 0.5 * np.mean((self.a @ theta - self.b) ** 2)

    def grad_batch(self, theta, batch):
        idx = list(batch)
        return self.a[idx].T @ (self.a[idx] @ theta - self.b[idx]) / len(idx)

    def after_step(self, theta, step, batch_size):
        """``θ⁺ = θ − γ ∇ℓ_B(θ)`` for every minibatch ``B`` of the given size, ``(subsets, dim)``."""
        return np.stack([theta - step * self.grad_batch(theta, b) for b in ref.minibatches(self.n, batch_size)])

    def exact_batch_noise(self, batch_size):
        return float(np.mean([np.sum(self.grad_batch(self.opt, b) ** 2)
                              for b in ref.minibatches(self.n, batch_size)]))


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(3, 8), dim=st.integers(1, 3), data=st.data())
def test_one_step_inequalities_exact_on_finite_sums(seed, n, dim, data):
    assume(n > dim)
    batch = data.draw(st.integers(1, n - 1))
    for interpolate in (False, True):
        ls = LeastSquares(seed, n, dim, interpolate)
        assume(ls.mu > 1e-3 * ls.lipschitz)
        smooth = expected_smoothness(lipschitz=ls.lipschitz, lipschitz_max=ls.lipschitz_max, n=n, batch=batch)
        # σ²(b) from batch_noise is the exact subset average of ‖∇ℓ_B(θ*)‖²
        sigma2_b = batch_noise(sigma2=ls.sigma2, n=n, batch=batch)
        assert abs(sigma2_b - ls.exact_batch_noise(batch)) <= 1e-10 * max(ls.sigma2, 1e-300) + 1e-28
        if interpolate:
            assert ls.sigma2 < 1e-20
        rng = np.random.default_rng(seed + 1)
        theta = ls.opt + rng.normal(size=dim) * data.draw(st.floats(0.01, 10.0))
        dist, gap = np.sum((theta - ls.opt) ** 2), ls.f(theta) - ls.f(ls.opt)
        sigma2 = 0.0 if interpolate else ls.sigma2
        tol = 1e-9

        qc = quasi_convex_bound(mu=ls.mu, smoothness=smooth, sigma2=sigma2, step=1 / smooth, dist0=dist) \
            if interpolate else quasi_convex_bound(mu=ls.mu, smoothness=smooth, sigma2=sigma2,
                                                   step=1 / (2 * smooth), dist0=dist)
        step = qc.max_step
        nxt = ls.after_step(theta, step, batch)
        exp_dist = np.mean(np.sum((nxt - ls.opt) ** 2, 1))
        one_step = (1 - step * ls.mu) * dist + 2 * step**2 * sigma2_b * (not interpolate)
        assert exp_dist <= one_step * (1 + tol) + 1e-30
        assert exp_dist <= qc.at(1) * (1 + tol) + 1e-30

        pl = pl_bound(mu=ls.mu, lipschitz=ls.lipschitz, smoothness=smooth, sigma2=sigma2,
                      step=ls.mu / (ls.lipschitz * smooth) * (1 if interpolate else 0.5), gap0=gap)
        step = pl.max_step
        nxt = ls.after_step(theta, step, batch)
        exp_gap = np.mean([ls.f(th) for th in nxt]) - ls.f(ls.opt)
        one_step = (1 - step * ls.mu) * gap + ls.lipschitz * step**2 * sigma2_b * (not interpolate)
        assert exp_gap <= one_step * (1 + tol) + 1e-30
        assert exp_gap <= pl.at(1) * (1 + tol) + 1e-30


def _exact_moments(ls: LeastSquares, theta0, step, batch, steps):
    """Exact ``E‖θ_t − θ*‖²`` and ``E f(θ_t) − f*`` for ``t = 0..steps`` by propagating the first two moments
    of ``δ = θ − θ*`` through ``δ⁺ = (I − γH_B) δ − γ ξ_B`` over all minibatches ``B`` (uniform)."""
    batches = ref.minibatches(ls.n, batch)
    eye = np.eye(ls.dim)
    mats = [eye - step * ls.a[list(b)].T @ ls.a[list(b)] / batch for b in batches]
    xis = [ls.grad_batch(ls.opt, b) for b in batches]
    m = theta0 - ls.opt
    second = np.outer(m, m)
    dists, gaps = [np.trace(second)], [0.5 * np.trace(ls.hess @ second)]
    for _ in range(steps):
        new_second = np.zeros_like(second)
        new_m = np.zeros_like(m)
        for mat, xi in zip(mats, xis):
            cross = np.outer(mat @ m, xi)
            new_second += mat @ second @ mat.T - step * (cross + cross.T) + step**2 * np.outer(xi, xi)
            new_m += mat @ m - step * xi
        second, m = new_second / len(mats), new_m / len(mats)
        dists.append(np.trace(second))
        gaps.append(0.5 * np.trace(ls.hess @ second))
    return np.array(dists), np.array(gaps)


@pytest.mark.parametrize("interpolate", [False, True])
@pytest.mark.parametrize("batch", [1, 2, 4])
def test_bounds_hold_along_exact_trajectories(interpolate, batch):
    """The whole bound ``at(t)``, not only its one-step form, dominates the exact expected trajectory."""
    ls = LeastSquares(seed=3, n=6, dim=2, interpolate=interpolate)
    smooth = expected_smoothness(lipschitz=ls.lipschitz, lipschitz_max=ls.lipschitz_max, n=6, batch=batch)
    sigma2 = 0.0 if interpolate else ls.sigma2
    theta0 = ls.opt + np.array([3.0, -2.0])
    dist0, gap0 = np.sum((theta0 - ls.opt) ** 2), ls.f(theta0) - ls.f(ls.opt)
    qc_step = 1 / smooth if interpolate else 1 / (2 * smooth)
    qc = quasi_convex_bound(mu=ls.mu, smoothness=smooth, sigma2=batch_noise(sigma2=sigma2, n=6, batch=batch),
                            step=qc_step, dist0=dist0)
    dists, _ = _exact_moments(ls, theta0, qc.max_step, batch, 60)
    assert (dists <= qc.at(np.arange(61)) * (1 + 1e-9)).all()
    pl_step = ls.mu / (ls.lipschitz * smooth) * (1 if interpolate else 0.5)
    pl = pl_bound(mu=ls.mu, lipschitz=ls.lipschitz, smoothness=smooth,
                  sigma2=batch_noise(sigma2=sigma2, n=6, batch=batch), step=pl_step, gap0=gap0)
    _, gaps = _exact_moments(ls, theta0, pl.max_step, batch, 60)
    assert (gaps <= pl.at(np.arange(61)) * (1 + 1e-9)).all()
    if interpolate:
        assert dists[-1] < dists[0] * 1e-3  # exact supervision: linear convergence to θ* itself
