"""Bad input fails early with a ``ValueError`` that names the argument (STYLE.md rule 9).

Cases are data: ``(id, call, pattern)``; each call must raise ``ValueError`` whose message matches the pattern
(the argument's name).
"""

from __future__ import annotations

import math

import pytest
import torch

from sgdbound._checks import check_simplex
from sgdbound.data import GaussianMixture, LogisticTeacher, QuadraticMixture
from sgdbound.models import MLP, LinearSoftmax
from sgdbound.targets import Dirichlet, Exact, Gaussian, Mix, OneHot, Temperature
from sgdbound.theory import (
    batch_noise,
    curvature,
    decreasing_step_bound,
    decreasing_steps,
    empirical_noise,
    expected_smoothness,
    expected_sq_grad_norm,
    interpolation_gap,
    logit_ntk,
    loss_hessian,
    noisy_bcp_noise,
    onehot_noise,
    optimal_lambda,
    per_sample_gradients,
    per_sample_lipschitz,
    pl_bound,
    predicted_gradient_covariance,
    predicted_noise,
    quasi_convex_bound,
    stationary_prediction,
)

F64 = torch.float64
GM = GaussianMixture.random(3, 2, seed=0)
S = GM.sample(6, seed=1)
MODEL = LinearSoftmax.from_params(*GM.bayes_linear())
X, BCP = S.x, S.bcp

OFF = BCP.clone()
OFF[2, 0] += 0.2  # row 2 sums to 1.2
NEG = BCP.clone()
NEG[1] = torch.tensor([1.2, -0.1, -0.1], dtype=F64)  # sums to one, negative entries
NAN = BCP.clone()
NAN[3, 1] = math.nan
XNAN = X.clone()
XNAN[0, 0] = math.nan

QC = dict(mu=0.1, smoothness=2.0, sigma2=0.5, step=0.25, dist0=1.0)
PL = dict(mu=0.1, lipschitz=1.0, smoothness=2.0, sigma2=0.5, step=0.025, gap0=1.0)


def _with(base, **changes):
    return {**base, **changes}


NOISE_FNS = {
    "predicted_noise": lambda b, x=X: predicted_noise(MODEL, x, b, OneHot()),
    "expected_sq_grad_norm": lambda b, x=X: expected_sq_grad_norm(MODEL, x, b, Dirichlet(1.0)),
    "onehot_noise": lambda b, x=X: onehot_noise(MODEL, x, b),
    "noisy_bcp_noise": lambda b, x=X: noisy_bcp_noise(MODEL, x, b, 0.1),
    "interpolation_gap": lambda b, x=X: interpolation_gap(MODEL, x, b),
    "optimal_lambda": lambda b, x=X: optimal_lambda(MODEL, x, b, Dirichlet(1.0)),
    "predicted_gradient_covariance": lambda b, x=X: predicted_gradient_covariance(MODEL, x, b, OneHot()),
}

BCP_CASES = []
for name, fn in NOISE_FNS.items():
    BCP_CASES += [
        (f"{name}-off-simplex", lambda fn=fn: fn(OFF), r"bcp.*sum to 1"),
        (f"{name}-negative", lambda fn=fn: fn(NEG), r"bcp.*non-negative"),
        (f"{name}-nan", lambda fn=fn: fn(NAN), r"bcp.*finite"),
        (f"{name}-rows", lambda fn=fn: fn(BCP[:4]), r"bcp.*rows"),
        (f"{name}-cols", lambda fn=fn: fn(BCP[:, :2] / BCP[:, :2].sum(1, keepdim=True)), r"bcp.*columns"),
        (f"{name}-x-nan", lambda fn=fn: fn(BCP, XNAN), r"^x must be finite"),
        (f"{name}-x-1d", lambda fn=fn: fn(BCP, X[:, 0]), r"^x must be 2-D"),
    ]

TARGET_CASES = []
for name, fn in {
    "empirical_noise": lambda t: empirical_noise(MODEL, X, t),
    "per_sample_gradients": lambda t: per_sample_gradients(MODEL, X, t),
    "loss_hessian": lambda t: loss_hessian(MODEL, X, t),
    "per_sample_lipschitz": lambda t: per_sample_lipschitz(MODEL, X, t),
    "curvature": lambda t: curvature(MODEL, X, t),
}.items():
    TARGET_CASES += [
        (f"{name}-targets-nan", lambda fn=fn: fn(NAN), r"targets.*finite"),
        (f"{name}-targets-rows", lambda fn=fn: fn(BCP[:5]), r"targets.*rows"),
        (f"{name}-targets-cols", lambda fn=fn: fn(BCP[:, :2]), r"targets.*columns"),
    ]

SUPERVISION_CASES = [
    ("dirichlet-negative", lambda: Dirichlet(-1.0), "alpha"),
    ("dirichlet-zero", lambda: Dirichlet(0.0), "alpha"),
    ("dirichlet-nan", lambda: Dirichlet(math.nan), "alpha"),
    ("gaussian-negative", lambda: Gaussian(-0.1), "nu"),
    ("gaussian-nan", lambda: Gaussian(math.nan), "nu"),
    ("temperature-zero", lambda: Temperature(0.0), "T"),
    ("temperature-negative", lambda: Temperature(-2.0), "T"),
    ("mix-lam", lambda: Mix(1.5, Exact()), "lam"),
    ("mix-lam-nan", lambda: Mix(math.nan, Exact()), "lam"),
    ("mix-teacher", lambda: Mix(0.5, "dirichlet"), "teacher"),
]
for model in (OneHot(), Exact(), Dirichlet(2.0), Gaussian(0.1), Temperature(2.0), Mix(0.5, Dirichlet(1.0))):
    name = type(model).__name__
    SUPERVISION_CASES += [
        (f"{name}-mean-off", lambda m=model: m.mean(OFF), r"bcp.*sum to 1"),
        (f"{name}-cov-negative", lambda m=model: m.covariance(NEG), r"bcp.*non-negative"),
        (f"{name}-sample-nan", lambda m=model: m.sample(NAN), r"bcp.*finite"),
        (f"{name}-sample-y-shape", lambda m=model: m.sample(BCP, torch.zeros(4, dtype=torch.long)), r"^y must"),
        (f"{name}-sample-y-range", lambda m=model: m.sample(BCP, torch.full((6,), 3)), r"^y must"),
    ]

DATA_CASES = [
    ("means-nan", lambda: GaussianMixture([[0.0, math.nan], [1.0, 1.0]], 1.0), "means"),
    ("means-1-class", lambda: GaussianMixture([[0.0, 1.0]], 1.0), "means"),
    ("var-negative", lambda: GaussianMixture([[0.0], [1.0]], -1.0), "noise_var"),
    ("var-zero", lambda: GaussianMixture([[0.0], [1.0]], 0.0), "noise_var"),
    ("var-diag-negative", lambda: GaussianMixture([[0.0, 0.0], [1.0, 1.0]], [1.0, -0.5]), "noise_var"),
    ("var-diag-shape", lambda: GaussianMixture([[0.0, 0.0], [1.0, 1.0]], [1.0, 1.0, 1.0]), "noise_var"),
    ("var-full-indefinite", lambda: GaussianMixture([[0.0, 0.0], [1.0, 1.0]], [[1.0, 2.0], [2.0, 1.0]]), "noise_var"),
    ("var-full-asymmetric", lambda: GaussianMixture([[0.0, 0.0], [1.0, 1.0]], [[1.0, 0.5], [0.0, 1.0]]), "noise_var"),
    ("var-nan", lambda: GaussianMixture([[0.0], [1.0]], math.nan), "noise_var"),
    ("priors-sum", lambda: GaussianMixture([[0.0], [1.0]], 1.0, priors=[0.5, 0.6]), "priors"),
    ("priors-negative", lambda: GaussianMixture([[0.0], [1.0]], 1.0, priors=[1.5, -0.5]), "priors"),
    ("priors-shape", lambda: GaussianMixture([[0.0], [1.0]], 1.0, priors=[0.2, 0.3, 0.5]), "priors"),
    ("priors-nan", lambda: GaussianMixture([[0.0], [1.0]], 1.0, priors=[math.nan, 0.5]), "priors"),
    ("bcp-x-dim", lambda: GM.bcp(torch.zeros(3, 5, dtype=F64)), r"^x must"),
    ("bcp-x-nan", lambda: GM.bcp(XNAN), r"^x must"),
    ("sample-n", lambda: GM.sample(0, seed=0), r"^n must"),
    ("quadratic-shape", lambda: QuadraticMixture([[0.0], [1.0]], torch.ones(3, 1, 1)), "covariances"),
    ("quadratic-indefinite", lambda: QuadraticMixture([[0.0], [1.0]], -torch.ones(2, 1, 1)), r"covariances\[0\]"),
    ("quadratic-x", lambda: QuadraticMixture.random(2, 2).bcp(torch.zeros(2, 3)), r"^x must"),
    ("logistic-shape", lambda: LogisticTeacher(torch.zeros(3, 2), torch.zeros(2)), "weight"),
    ("logistic-scale", lambda: LogisticTeacher(torch.zeros(3, 2), torch.zeros(3), input_scale=-1.0), "input_scale"),
    ("logistic-x", lambda: LogisticTeacher.random(3, 2).bcp(torch.zeros(2, 5)), r"^x must"),
    ("logistic-x-nan", lambda: LogisticTeacher.random(3, 2).bcp(torch.full((2, 2), math.nan)), r"^x must"),
    ("logistic-n", lambda: LogisticTeacher.random(3, 2).sample(0), r"^n must"),
    ("seed-and-generator", lambda: GM.sample(3, seed=1, generator=torch.Generator()), "seed"),
    ("linear-dim", lambda: LinearSoftmax(0, 3), "dim"),
    ("linear-classes", lambda: LinearSoftmax(3, 1), "num_classes"),
    ("mlp-hidden", lambda: MLP(3, 2, hidden=(4, 0)), "hidden"),
    ("mlp-activation", lambda: MLP(3, 2, activation="swish"), "activation"),
    ("from-params", lambda: LinearSoftmax.from_params(torch.zeros(3, 2), torch.zeros(2)), "weight"),
]

BOUND_CASES = [
    ("qc-mu-negative", lambda: quasi_convex_bound(**_with(QC, mu=-0.1)), r"^mu must"),
    ("qc-mu-nan", lambda: quasi_convex_bound(**_with(QC, mu=math.nan)), r"^mu must"),
    ("qc-mu-above-smoothness", lambda: quasi_convex_bound(**_with(QC, mu=3.0)), r"^mu \("),
    ("qc-smoothness", lambda: quasi_convex_bound(**_with(QC, smoothness=0.0)), r"^smoothness must"),
    ("qc-sigma2", lambda: quasi_convex_bound(**_with(QC, sigma2=-1e-3)), r"^sigma2 must"),
    ("qc-dist0", lambda: quasi_convex_bound(**_with(QC, dist0=-1.0)), r"^dist0 must"),
    ("qc-step-negative", lambda: quasi_convex_bound(**_with(QC, step=-0.1)), r"^step must"),
    ("qc-step-beyond-T3", lambda: quasi_convex_bound(**_with(QC, step=0.26)), r"^step .* exceeds"),
    ("qc-step-beyond-T1", lambda: quasi_convex_bound(**_with(QC, sigma2=0.0, step=0.51)), r"^step .* exceeds"),
    ("pl-mu", lambda: pl_bound(**_with(PL, mu=-1.0)), r"^mu must"),
    ("pl-mu-above-lipschitz", lambda: pl_bound(**_with(PL, mu=1.5)), r"^mu \("),
    ("pl-lipschitz", lambda: pl_bound(**_with(PL, lipschitz=-1.0)), r"^lipschitz must"),
    ("pl-smoothness", lambda: pl_bound(**_with(PL, smoothness=math.inf)), r"^smoothness must"),
    ("pl-sigma2", lambda: pl_bound(**_with(PL, sigma2=math.nan)), r"^sigma2 must"),
    ("pl-gap0", lambda: pl_bound(**_with(PL, gap0=-1.0)), r"^gap0 must"),
    ("pl-step-beyond-T4", lambda: pl_bound(**_with(PL, step=0.026)), r"^step .* exceeds"),
    ("pl-step-beyond-T2", lambda: pl_bound(**_with(PL, sigma2=0.0, step=0.051)), r"^step .* exceeds"),
    ("at-negative-t", lambda: quasi_convex_bound(**QC).at(-1), r"^t must"),
    ("iterations-accuracy", lambda: quasi_convex_bound(**QC).iterations(-1.0), r"^accuracy must"),
    ("es-lipschitz", lambda: expected_smoothness(lipschitz=-1.0, lipschitz_max=2.0, n=10, batch=2), r"^lipschitz"),
    ("es-lmax-below", lambda: expected_smoothness(lipschitz=2.0, lipschitz_max=1.0, n=10, batch=2),
     r"^lipschitz_max"),
    ("es-batch-zero", lambda: expected_smoothness(lipschitz=1.0, lipschitz_max=2.0, n=10, batch=0), r"^batch"),
    ("es-batch-above-n", lambda: expected_smoothness(lipschitz=1.0, lipschitz_max=2.0, n=10, batch=11), r"^batch"),
    ("es-batch-float", lambda: expected_smoothness(lipschitz=1.0, lipschitz_max=2.0, n=10, batch=1.5), r"^batch"),
    ("es-n", lambda: expected_smoothness(lipschitz=1.0, lipschitz_max=2.0, n=2.5, batch=1), r"^n must"),
    ("bn-sigma2", lambda: batch_noise(sigma2=-1.0, n=10, batch=2), r"^sigma2"),
    ("bn-batch", lambda: batch_noise(sigma2=1.0, n=10, batch=20), r"^batch"),
    ("ds-mu", lambda: decreasing_steps(mu=-1.0, smoothness=2.0, steps=10), r"^mu"),
    ("ds-steps", lambda: decreasing_steps(mu=1.0, smoothness=2.0, steps=0), r"^steps"),
    ("dsb-sigma2", lambda: decreasing_step_bound(mu=1.0, smoothness=2.0, sigma2=-1.0, dist0=1.0), r"^sigma2"),
    ("sp-momentum", lambda: stationary_prediction(torch.eye(2), torch.eye(2), 0.1, momentum=-0.1), "momentum"),
    ("sp-step", lambda: stationary_prediction(torch.eye(2), torch.eye(2), 2.5), "step"),
    ("sp-shape", lambda: stationary_prediction(torch.eye(2), torch.eye(3), 0.1), "shape"),
]

MODEL_CASES = [
    ("logit-ntk-x", lambda: logit_ntk(MODEL, X[:, :1]), r"^x "),
    ("curvature-method", lambda: curvature(MODEL, X, BCP, method="dense"), "method"),
    ("model-output", lambda: predicted_noise(torch.nn.Sequential(torch.nn.Linear(2, 3, dtype=F64), torch.nn.Flatten(0)),
                                             X, BCP, OneHot()), r"^model must map"),
    ("model-dtype", lambda: predicted_noise(MODEL, X.float(), BCP, OneHot()), r"^x "),
    ("noise-model-type", lambda: predicted_noise(MODEL, X, BCP, "onehot"), "noise_model"),
    ("noisy-nu", lambda: noisy_bcp_noise(MODEL, X, BCP, -0.1), r"^nu must"),
    ("noisy-nu-nan", lambda: noisy_bcp_noise(MODEL, X, BCP, math.nan), r"^nu must"),
    ("optimal-lambda-mix", lambda: optimal_lambda(MODEL, X, BCP, Mix(0.5, Exact())), "teacher"),
]

CASES = BCP_CASES + TARGET_CASES + SUPERVISION_CASES + DATA_CASES + BOUND_CASES + MODEL_CASES


@pytest.mark.parametrize("call, pattern", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_raises_value_error_naming_the_argument(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_check_simplex_message_names_row():
    with pytest.raises(ValueError, match=r"bcp rows must sum to 1 \(row 2 sums to 1\.2\)"):
        check_simplex("bcp", OFF)
    check_simplex("bcp", BCP)  # a valid input passes silently
    check_simplex("bcp", BCP.float())


def test_valid_inputs_still_work():
    """The cases above fail because of the one broken argument: with it repaired, each call runs."""
    for fn in NOISE_FNS.values():
        fn(BCP)
    quasi_convex_bound(**QC)
    pl_bound(**PL)
    quasi_convex_bound(**_with(QC, step=0.25))  # exactly on the T3 limit 1/(2ℒ)
    quasi_convex_bound(**_with(QC, sigma2=0.0, step=0.5))  # exactly on the T1 limit 1/ℒ
    pl_bound(**_with(PL, sigma2=0.0, step=0.05))  # exactly on the T2 limit μ/(Lℒ)
