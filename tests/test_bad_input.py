"""Bad input found by the audit of STYLE.md rule 9 (ids A…, B…, C… of its report): each case must raise a
``ValueError`` that names the argument, before any work starts.

Cases are data: ``(id, call, pattern)``. A few valid inputs next to them must keep working.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from sgdbound._checks import check_count, check_nonnegative, check_positive, check_probability, check_simplex
from sgdbound.data import GaussianMixture, LogisticTeacher, QuadraticMixture, Sample, make_generator
from sgdbound.models import MLP, LinearSoftmax
from sgdbound.targets import Dirichlet, Exact, Gaussian, Mix, OneHot, Temperature, get_target
from sgdbound.targets.models import sample_gamma_log
from sgdbound.theory import (
    batch_noise,
    curvature,
    decreasing_step_bound,
    decreasing_steps,
    empirical_noise,
    expected_smoothness,
    hessian_vector_product,
    interpolation_gap,
    logit_jacobians,
    logit_ntk,
    loss_hessian,
    optimal_lambda,
    per_sample_gradients,
    per_sample_lipschitz,
    pl_bound,
    predicted_gradient_covariance,
    predicted_noise,
    project_out_flat,
    quasi_convex_bound,
    softmax_gram,
    stationary_prediction,
)

F64 = torch.float64
NAN, INF = math.nan, math.inf
GM = GaussianMixture.random(3, 2, seed=0)
S = GM.sample(8, seed=1)
X, BCP, T = S.x, S.bcp, S.onehot
LIN = LinearSoftmax(2, 3, dtype=F64)
P0 = torch.tensor([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]], dtype=F64)
OFF_ROW = torch.tensor([[0.5, 0.6, 0.1]], dtype=F64)  # sums to 1.2
NEG_ROW = torch.tensor([[1.2, -0.2, 0.0]], dtype=F64)
H, SIGMA = torch.diag(torch.tensor([2.0, 1.0], dtype=F64)), 0.1 * torch.eye(2, dtype=F64)
QC = dict(mu=0.1, smoothness=2.0, sigma2=0.5, step=0.25, dist0=1.0)
PL = dict(mu=0.1, lipschitz=1.0, smoothness=2.0, sigma2=0.5, step=0.025, gap0=1.0)


def _column(*values):
    return torch.tensor(values, dtype=F64)[:, None]


# -- A1, A2: NaN/inf gamma shapes used to loop forever --------------------------------------------------------
HANG_CASES = [
    ("A1-dirichlet-rows-nan", lambda: Dirichlet.sample_rows(NAN, P0), "alpha"),
    ("A1-dirichlet-rows-inf", lambda: Dirichlet.sample_rows(INF, P0), "alpha"),
    ("A1-dirichlet-rows-tensor-nan", lambda: Dirichlet.sample_rows(_column(2.0, NAN), P0), "alpha"),
    ("A2-gamma-nan", lambda: sample_gamma_log(torch.tensor([NAN], dtype=F64)), "shape"),
    ("A2-gamma-inf", lambda: sample_gamma_log(torch.tensor([1.0, INF], dtype=F64)), "shape"),
    ("A2-gamma-zero", lambda: sample_gamma_log(torch.tensor([0.0], dtype=F64)), "shape"),
    ("A2-gamma-int", lambda: sample_gamma_log(torch.tensor([2])), "shape"),
]


@pytest.mark.parametrize("call, pattern", [c[1:] for c in HANG_CASES], ids=[c[0] for c in HANG_CASES])
def test_non_finite_gamma_shapes_raise_instead_of_hanging(call, pattern):
    outcome = {}

    def run():
        try:
            call()
            outcome["result"] = "returned"
        except Exception as err:  # noqa: BLE001 - recorded and checked below
            outcome["result"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert "result" in outcome, "the call did not return within 5 s"
    assert isinstance(outcome["result"], ValueError), outcome["result"]
    assert pattern in str(outcome["result"])


# -- the cases that must raise a ValueError naming the argument ----------------------------------------------
CASES = [
    # A7, A8, C15, C16: the static row samplers check bcp and their parameter like the models do
    ("A7-dirichlet-rows-negative", lambda: Dirichlet.sample_rows(2.0, NEG_ROW), r"bcp.*non-negative"),
    ("A7-dirichlet-rows-sum", lambda: Dirichlet.sample_rows(2.0, OFF_ROW), r"bcp.*sum to 1"),
    ("A7-dirichlet-rows-nan", lambda: Dirichlet.sample_rows(2.0, torch.tensor([[NAN, 0.5, 0.5]], dtype=F64)),
     r"bcp.*finite"),
    ("A8-gaussian-rows-nan", lambda: Gaussian.sample_rows(NAN, P0), "nu"),
    ("A8-gaussian-rows-tensor-negative", lambda: Gaussian.sample_rows(_column(-1.0, 0.1), P0), "nu"),
    ("A8-gaussian-rows-sum", lambda: Gaussian.sample_rows(0.1, OFF_ROW), r"bcp.*sum to 1"),
    ("A8-gaussian-rows-shape", lambda: Gaussian.sample_rows(_column(0.1, 0.2, 0.3), P0), "nu"),
    ("C15-dirichlet-rows-negative", lambda: Dirichlet.sample_rows(-1.0, P0), "alpha"),
    ("C15-dirichlet-rows-zero", lambda: Dirichlet.sample_rows(0.0, P0), "alpha"),
    ("C16-gaussian-rows-negative", lambda: Gaussian.sample_rows(-1.0, P0), "nu"),
    # B1, C1: counts given as inf or NaN
    ("B1-es-batch-inf", lambda: expected_smoothness(lipschitz=1.0, lipschitz_max=2.0, n=10, batch=INF), "batch"),
    ("B1-es-n-minus-inf", lambda: expected_smoothness(lipschitz=1.0, lipschitz_max=2.0, n=-INF, batch=1), r"\bn\b"),
    ("B1-es-both-inf", lambda: expected_smoothness(lipschitz=1.0, lipschitz_max=2.0, n=INF, batch=INF), "batch"),
    ("B1-bn-batch-inf", lambda: batch_noise(sigma2=1.0, n=10, batch=INF), "batch"),
    ("B1-sp-batch-inf", lambda: stationary_prediction(H, SIGMA, 0.1, batch=INF), "batch"),
    ("C1-es-n-nan", lambda: expected_smoothness(lipschitz=1.0, lipschitz_max=2.0, n=NAN, batch=1), r"\bn\b"),
    ("C1-es-batch-nan", lambda: expected_smoothness(lipschitz=1.0, lipschitz_max=2.0, n=10, batch=NAN), "batch"),
    ("C1-bn-n-nan", lambda: batch_noise(sigma2=1.0, n=NAN, batch=2), r"\bn\b"),
    ("C1-bn-batch-nan", lambda: batch_noise(sigma2=1.0, n=10, batch=NAN), "batch"),
    ("C1-sp-batch-nan", lambda: stationary_prediction(H, SIGMA, 0.1, batch=NAN), "batch"),
    ("C1-sp-n-nan", lambda: stationary_prediction(H, SIGMA, 0.1, batch=1, n=NAN), r"\bn\b"),
    ("C1-sp-n-below-batch", lambda: stationary_prediction(H, SIGMA, 0.1, batch=3, n=2), r"\bn\b"),
    ("C1-es-batch-bool", lambda: expected_smoothness(lipschitz=1.0, lipschitz_max=2.0, n=10, batch=True), "batch"),
    ("C1-linear-nan", lambda: LinearSoftmax(2, NAN), "num_classes"),
    ("C1-make-generator-nan", lambda: make_generator(NAN), "seed"),
    ("C1-reference-seed-nan", lambda: GaussianMixture.reference(seed=NAN), "seed"),
    # B2: sample sizes
    ("B2-sample-fraction", lambda: GM.sample(2.5, seed=1), r"\bn\b"),
    ("B2-sample-nan", lambda: GM.sample(NAN, seed=1), r"\bn\b"),
    ("B2-sample-inf", lambda: GM.sample(INF, seed=1), r"\bn\b"),
    ("B2-sample-string", lambda: GM.sample("3"), r"\bn\b"),
    ("B2-sample-bool", lambda: GM.sample(True), r"\bn\b"),
    ("B2-quadratic-sample", lambda: QuadraticMixture.random(3, 2).sample(2.5), r"\bn\b"),
    ("B2-logistic-sample", lambda: LogisticTeacher.random(3, 2).sample(NAN), r"\bn\b"),
    # B3, B4, C11, C12: problem sizes and generator scales
    ("B3-means-no-dims", lambda: GaussianMixture(means=torch.zeros(2, 0), noise_var=1.0), "means"),
    ("B3-reference-dim-0", lambda: GaussianMixture.reference(dim=0), "dim"),
    ("B3-random-dim-0", lambda: GaussianMixture.random(3, 0), "dim"),
    ("B4-reference-classes-negative", lambda: GaussianMixture.reference(num_classes=-1), "num_classes"),
    ("B4-reference-dim-negative", lambda: GaussianMixture.reference(dim=-2), "dim"),
    ("B4-random-classes-negative", lambda: GaussianMixture.random(-3, 2), "num_classes"),
    ("B4-random-dim-negative", lambda: GaussianMixture.random(3, -1), "dim"),
    ("B4-random-dim-fraction", lambda: GaussianMixture.random(3, 2.5), "dim"),
    ("B4-reference-no-centers", lambda: GaussianMixture.reference(centers=()), "centers"),
    ("B4-logistic-dim-0", lambda: LogisticTeacher.random(3, 0), "dim"),
    ("C11-reference-one-class", lambda: GaussianMixture.reference(num_classes=1), "num_classes"),
    ("C11-reference-no-class", lambda: GaussianMixture.reference(num_classes=0), "num_classes"),
    ("C11-random-one-class", lambda: GaussianMixture.random(1, 2), "num_classes"),
    ("C12-centers-nan", lambda: GaussianMixture.reference(centers=(NAN, 1.0)), "centers"),
    ("C12-separation-nan", lambda: GaussianMixture.random(3, 2, separation=NAN), "separation"),
    ("C12-separation-inf", lambda: GaussianMixture.random(3, 2, separation=INF), "separation"),
    ("C12-spread-nan", lambda: QuadraticMixture.random(3, 2, spread=NAN), "spread"),
    ("C12-scale-nan", lambda: LogisticTeacher.random(3, 2, scale=NAN), "scale"),
    # B5, B6, C13: shapes of means and of the affine map
    ("B5-quadratic-means-1d", lambda: QuadraticMixture([0.0, 1.0], torch.eye(2)[None].repeat(2, 1, 1)), "means"),
    ("B6-affine-matrix-cols", lambda: GM.affine(torch.eye(3), torch.zeros(2)), "matrix"),
    ("B6-affine-shift", lambda: GM.affine(torch.eye(2), torch.zeros(3)), "shift"),
    ("B6-quadratic-affine", lambda: QuadraticMixture.random(3, 2).affine(torch.eye(3), torch.zeros(2)), "matrix"),
    ("C13-affine-singular", lambda: GM.affine(torch.zeros(2, 2), torch.zeros(2)), "matrix"),
    # A19: seeds and generators
    ("A19-make-generator-fraction", lambda: make_generator(1.5), "seed"),
    ("A19-reference-seed-fraction", lambda: GaussianMixture.reference(seed=1.5), "seed"),
    ("A19-sample-seed-fraction", lambda: GM.sample(3, seed=2.7), "seed"),
    ("A19-make-generator-not-generator", lambda: make_generator(generator=5), "generator"),
    ("A19-seed-bool", lambda: make_generator(True), "seed"),
    ("A19-seed-too-large", lambda: make_generator(2**64), "seed"),
    ("A19-linear-bool-dim", lambda: LinearSoftmax(True, 3), "dim"),
    ("C3-make-generator-string", lambda: make_generator("a"), "seed"),
    ("C3-reference-seed-string", lambda: GaussianMixture.reference(seed="a"), "seed"),
    ("C3-sample-seed-string", lambda: GM.sample(3, seed="a"), "seed"),
    # A20, B12, B13: model sizes and dtypes
    ("A20-mlp-one-class", lambda: MLP(2, 1, hidden=4), "num_classes"),
    ("A20-mlp-no-class", lambda: MLP(2, 0, hidden=4), "num_classes"),
    ("A20-mlp-dim-0", lambda: MLP(0, 3, hidden=4), "dim"),
    ("A20-mlp-dim-negative", lambda: MLP(-1, 3, hidden=4), "dim"),
    ("B12-linear-dim-fraction", lambda: LinearSoftmax(2.5, 3), "dim"),
    ("B12-linear-classes-fraction", lambda: LinearSoftmax(2, 3.5), "num_classes"),
    ("B12-linear-dim-string", lambda: LinearSoftmax("2", 3), "dim"),
    ("B12-mlp-hidden-fraction", lambda: MLP(2, 3, hidden=2.5), "hidden"),
    ("B12-mlp-hidden-nan", lambda: MLP(2, 3, hidden=(4, NAN)), "hidden"),
    ("B13-linear-int-dtype", lambda: LinearSoftmax(2, 3, dtype=torch.int64), "dtype"),
    ("B13-mlp-int-dtype", lambda: MLP(2, 3, hidden=4, dtype=torch.int64), "dtype"),
    ("B13-from-params-long", lambda: LinearSoftmax.from_params(torch.zeros(3, 2, dtype=torch.long),
                                                               torch.zeros(3, dtype=torch.long)), "weight"),
    ("A11-from-params-nan", lambda: LinearSoftmax.from_params(torch.tensor([[NAN, 0.0], [0.0, 1.0]]),
                                                              torch.zeros(2)), "weight"),
    # A16, C5, A23: decreasing steps
    ("A16-steps-fraction", lambda: decreasing_steps(mu=0.1, smoothness=2.0, steps=2.5), "steps"),
    ("C5-steps-nan", lambda: decreasing_steps(mu=0.1, smoothness=2.0, steps=NAN), "steps"),
    ("C5-steps-inf", lambda: decreasing_steps(mu=0.1, smoothness=2.0, steps=INF), "steps"),
    ("A23-mu-above-smoothness", lambda: decreasing_steps(mu=3.0, smoothness=2.0, steps=5), r"\bmu\b"),
    # C3, C4, B11: scalars that are not numbers
    ("C3-means-strings", lambda: GaussianMixture(means=[["a", "b"], ["c", "d"]], noise_var=1.0), "means"),
    ("C3-qc-mu-string", lambda: quasi_convex_bound(**{**QC, "mu": "a"}), r"\bmu\b"),
    ("C3-dirichlet-string", lambda: Dirichlet("a"), "alpha"),
    ("C3-bcp-string", lambda: GM.bcp("abc"), r"\bx\b"),
    ("C3-at-string", lambda: quasi_convex_bound(**QC).at("a"), r"\bt\b"),
    ("C3-sp-noise-cov-string", lambda: stationary_prediction(H.tolist(), "abc", 0.1), "noise_cov"),
    ("C3-sp-momentum-string", lambda: stationary_prediction(H, SIGMA, 0.1, momentum="a"), "momentum"),
    ("C4-dirichlet-vector", lambda: Dirichlet(torch.tensor([1.0, 2.0])), "alpha"),
    ("B11-dirichlet-none", lambda: Dirichlet(None), "alpha"),
    ("B11-qc-mu-none", lambda: quasi_convex_bound(**{**QC, "mu": None}), r"\bmu\b"),
    ("B11-temperature-bool", lambda: Temperature(True), r"\bT\b"),
    ("B11-mix-lam-string", lambda: Mix("0.5", Exact()), "lam"),
    # A25, B7, A6: non-floating probabilities
    ("A25-onehot-mean-int", lambda: OneHot().mean(torch.tensor([[0, 0, 1], [1, 0, 0]])), "bcp"),
    ("A25-exact-cov-bool", lambda: Exact().covariance(torch.tensor([[False, False, True]])), "bcp"),
    ("A25-check-simplex-int", lambda: check_simplex("probs", torch.tensor([[0, 1]])), "probs"),
    ("B7-onehot-cov-bool", lambda: OneHot().covariance(torch.tensor([[False, False, True]])), "bcp"),
    ("B7-dirichlet-cov-bool", lambda: Dirichlet(2.0).covariance(torch.tensor([[False, False, True]])), "bcp"),
    ("B7-onehot-sample-int", lambda: OneHot().sample(torch.tensor([[0, 0, 1]])), "bcp"),
    ("B7-mix-sample-int", lambda: Mix(0.5, OneHot()).sample(torch.tensor([[0, 0, 1]])), "bcp"),
    ("B7-gaussian-sample-int", lambda: Gaussian(0.1).sample(torch.tensor([[0, 0, 1]])), "bcp"),
    ("A6-sample-int-dtype", lambda: GM.sample(3, seed=1, dtype=torch.int64), "dtype"),
    ("A6-sample-bool-dtype", lambda: GM.sample(3, seed=1, dtype=torch.bool), "dtype"),
    ("A6-logistic-int-dtype", lambda: LogisticTeacher.random(3, 2).sample(3, seed=1, dtype=torch.int64), "dtype"),
    ("A6-quadratic-int-dtype", lambda: QuadraticMixture.random(3, 2).sample(3, seed=1, dtype=torch.int64), "dtype"),
    # B8, B9, B10: labels and generators given to the samplers
    ("B8-onehot-float-y", lambda: OneHot().sample(P0, y=torch.tensor([0.0, 2.0])), r"\by\b"),
    ("B8-exact-float-y", lambda: Exact().sample(P0, y=torch.tensor([0.0, 2.0])), r"\by\b"),
    ("B9-list-y", lambda: Dirichlet(2.0).sample(P0, y=[0, 2]), r"\by\b"),
    ("B10-generator-string", lambda: OneHot().sample(P0, generator="x"), "generator"),
    ("B10-exact-generator-string", lambda: Exact().sample(P0, generator="x"), "generator"),
    ("B10-rows-generator-string", lambda: Gaussian.sample_rows(0.1, P0, "x"), "generator"),
    # A27: empty inputs
    ("A27-bcp-empty", lambda: GM.bcp(torch.zeros(0, 2)), r"\bx\b"),
    ("A27-log-joint-empty", lambda: GM.log_joint(torch.zeros(0, 2)), r"\bx\b"),
    ("A27-quadratic-bcp-empty", lambda: QuadraticMixture.random(3, 2).bcp(torch.zeros(0, 2)), r"\bx\b"),
    ("A27-logistic-bcp-empty", lambda: LogisticTeacher.random(3, 2).bcp(torch.zeros(0, 2)), r"\bx\b"),
]
EMPTY = torch.zeros(0, 3, dtype=F64)
for _model in (OneHot(), Exact(), Dirichlet(2.0), Gaussian(0.1), Temperature(2.0), Mix(0.5, Dirichlet(1.0))):
    CASES += [
        (f"A27-{type(_model).__name__}-mean-empty", lambda m=_model: m.mean(EMPTY), "bcp"),
        (f"A27-{type(_model).__name__}-covariance-empty", lambda m=_model: m.covariance(EMPTY), "bcp"),
        (f"A27-{type(_model).__name__}-sample-empty", lambda m=_model: m.sample(EMPTY), "bcp"),
    ]
CASES += [
    # A15, A24, A29, C18, C6: bounds and the stationary prediction
    ("A15-at-nan", lambda: quasi_convex_bound(**QC).at(NAN), r"\bt\b"),
    ("A15-at-array-nan", lambda: quasi_convex_bound(**QC).at([0, NAN, 2]), r"\bt\b"),
    ("A15-decreasing-at-nan", lambda: decreasing_step_bound(mu=0.1, smoothness=2.0, sigma2=1.0, dist0=1.0).at(NAN),
     r"\bt\b"),
    ("A24-smoothness-below-lipschitz", lambda: pl_bound(mu=1.0, lipschitz=4.0, smoothness=0.5, sigma2=0.5,
                                                        step=0.2, gap0=1.0), r"smoothness.*lipschitz"),
    ("A29-rtol-nan", lambda: stationary_prediction(H, SIGMA, 0.1, rtol=NAN), "rtol"),
    ("A29-rtol-two", lambda: stationary_prediction(H, SIGMA, 0.1, rtol=2.0), "rtol"),
    ("C18-rtol-negative", lambda: stationary_prediction(H, SIGMA, 0.1, rtol=-1.0), "rtol"),
    ("C18-rtol-zero", lambda: stationary_prediction(H, SIGMA, 0.1, rtol=0.0), "rtol"),
    ("C6-empty-hessian", lambda: stationary_prediction(torch.zeros(0, 0), torch.zeros(0, 0), 0.1), "hessian"),
    # A21, A22: a one-class teacher and inconsistent samples
    ("A21-logistic-one-class", lambda: LogisticTeacher(torch.zeros(1, 2), torch.zeros(1)), "weight"),
    ("A21-logistic-random-one-class", lambda: LogisticTeacher.random(1, 2), "num_classes"),
    ("A22-sample-y-rows", lambda: Sample(torch.zeros(3, 2), torch.zeros(5, dtype=torch.long),
                                         torch.full((3, 3), 1 / 3)), r"\by\b"),
    ("A22-sample-bcp-rows", lambda: Sample(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long),
                                           torch.full((4, 3), 1 / 3)), "bcp"),
    ("A22-sample-bcp-off-simplex", lambda: Sample(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long),
                                                  torch.full((3, 3), 0.7)), "bcp"),
    ("A22-sample-x-1d", lambda: Sample(torch.zeros(3), torch.zeros(3, dtype=torch.long),
                                       torch.full((3, 3), 1 / 3)), r"\bx\b"),
    # A5, C7: empty x in every theory function (through the shared input check)
    ("A5-loss-hessian-empty", lambda: loss_hessian(LIN, X[:0], T[:0]), r"^x must have at least one row"),
    ("A5-hvp-empty", lambda: hessian_vector_product(LIN, X[:0], T[:0]), r"^x must have at least one row"),
    ("C7-empirical-noise-empty", lambda: empirical_noise(LIN, X[:0], T[:0]), r"^x must have at least one row"),
    ("C7-predicted-noise-empty", lambda: predicted_noise(LIN, X[:0], BCP[:0], OneHot()), r"^x must have"),
    ("C7-interpolation-gap-empty", lambda: interpolation_gap(LIN, X[:0], BCP[:0]), r"^x must have"),
    ("C7-logit-ntk-empty", lambda: logit_ntk(LIN, X[:0]), r"^x must have"),
    ("C7-logit-jacobians-empty", lambda: logit_jacobians(LIN, X[:0]), r"^x must have"),
    ("C7-per-sample-gradients-empty", lambda: per_sample_gradients(LIN, X[:0], T[:0]), r"^x must have"),
    # B14: a model that is not a module
    ("B14-not-a-module", lambda: logit_ntk(lambda z: z @ torch.ones(2, 3, dtype=F64), X), "model"),
    # B17: softmax_gram shapes
    ("B17-gram-classes", lambda: softmax_gram(P0, torch.eye(4, dtype=F64).expand(2, 4, 4)), "ntk"),
    ("B17-gram-rows", lambda: softmax_gram(P0, torch.eye(3, dtype=F64).expand(5, 3, 3)), "ntk"),
    ("B17-gram-1d", lambda: softmax_gram(P0[0], torch.eye(3, dtype=F64)), "probs"),
    # C20: the registry names its argument
    ("C20-unknown-target", lambda: get_target("foo"), r"\bname\b"),
    # A30, B18, B19: the constants' own arguments
    ("A30-lipschitz-iterations", lambda: per_sample_lipschitz(LIN, X, T, iterations=-1), "iterations"),
    ("A30-lanczos-tol", lambda: curvature(LIN, X, T, method="lanczos", lanczos_tol=-1.0), "lanczos_tol"),
    ("B19-lanczos-tol-nan", lambda: curvature(LIN, X, T, method="lanczos", lanczos_tol=NAN), "lanczos_tol"),
    ("B18-hvp-vector-size", lambda: hessian_vector_product(LIN, X, T)(torch.ones(3, dtype=F64)), "vector"),
    ("B18-project-size", lambda: project_out_flat(LIN, torch.ones(4, dtype=F64)), "vectors"),
    ("B18-project-dtype", lambda: project_out_flat(LIN, torch.ones(9)), "vectors"),
    # B15, B16, C10: supervision models checked up front, under their own names
    ("B15-covariance-noise-model", lambda: predicted_gradient_covariance(LIN, X, BCP, "onehot"), "noise_model"),
    ("C10-lambda-teacher", lambda: optimal_lambda(LIN, X, BCP, "dirichlet"), r"^teacher must be"),
    ("B16-lambda-plateau-teacher", lambda: optimal_lambda(LIN, X, BCP, None, criterion="plateau"), r"^teacher"),
]
# A28, C8: chunk_size must be None or a positive integer, in every function that takes one
for _name, _fn in {
    "logit_ntk": lambda c: logit_ntk(LIN, X, chunk_size=c),
    "logit_ntk-jacobian": lambda c: logit_ntk(LIN, X, chunk_size=c, method="jacobian"),
    "logit_jacobians": lambda c: logit_jacobians(LIN, X, chunk_size=c),
    "per_sample_gradients": lambda c: per_sample_gradients(LIN, X, T, chunk_size=c),
    "empirical_noise": lambda c: empirical_noise(LIN, X, T, chunk_size=c),
    "predicted_noise": lambda c: predicted_noise(LIN, X, BCP, OneHot(), chunk_size=c),
    "interpolation_gap": lambda c: interpolation_gap(LIN, X, BCP, chunk_size=c),
    "loss_hessian": lambda c: loss_hessian(LIN, X, T, chunk_size=c),  # A4: -1 gave an all-zero Hessian
    "per_sample_lipschitz": lambda c: per_sample_lipschitz(LIN, X, T, chunk_size=c),
    "predicted_gradient_covariance": lambda c: predicted_gradient_covariance(LIN, X, BCP, OneHot(), chunk_size=c),
}.items():
    CASES += [(f"C8-{_name}-chunk-{value}", lambda f=_fn, v=value: f(v), "chunk_size")
              for value in (0, -1, 2.5, NAN, "4")]


@pytest.mark.parametrize("call, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_value_error_naming_the_argument(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


# -- the central checks ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [True, False, 2.5, NAN, INF, -INF, "3", None, 1 + 2j, [3], torch.tensor([1, 2]),
                                   np.float64(2.5)], ids=repr)
def test_check_count_refuses_what_is_not_an_integer(value):
    with pytest.raises(ValueError, match=r"^steps must be a positive integer"):
        check_count("steps", value)


@pytest.mark.parametrize("value", [3, 3.0, np.int64(3), np.float32(3.0), torch.tensor(3), torch.tensor([3.0])],
                         ids=repr)
def test_check_count_accepts_integral_values(value):
    result = check_count("steps", value)
    assert result == 3 and type(result) is int


def test_check_count_minimum():
    assert check_count("n", 0, minimum=0) == 0
    assert check_count("seed", -5, minimum=None) == -5
    with pytest.raises(ValueError, match=r"^n must be an integer >= 2, got 1"):
        check_count("n", 1, minimum=2)


@pytest.mark.parametrize("check", [check_positive, check_nonnegative, check_probability])
@pytest.mark.parametrize("value", ["a", None, True, 1 + 2j, torch.tensor([0.5, 0.5]), np.array([0.1, 0.2])],
                         ids=repr)
def test_scalar_checks_refuse_non_numbers(check, value):
    with pytest.raises(ValueError, match=r"^lam must"):
        check("lam", value)


def test_scalar_checks_accept_numbers_of_any_kind():
    assert check_positive("alpha", torch.tensor(2.0)) == 2.0
    assert check_positive("alpha", np.float32(0.5)) == 0.5
    assert check_nonnegative("nu", 0) == 0.0
    assert check_probability("lam", torch.tensor([0.25])) == 0.25


# -- valid inputs that must keep working -------------------------------------------------------------------
def test_integral_seeds_and_sizes_are_accepted():
    assert torch.equal(GM.sample(4, seed=3.0).x, GM.sample(4, seed=3).x)
    assert torch.equal(GM.sample(4.0, seed=np.int64(3)).x, GM.sample(4, seed=3).x)
    assert make_generator(torch.tensor(7)).initial_seed() == 7
    assert make_generator(-1).initial_seed() == 2**64 - 1  # torch wraps negative seeds
    gen = torch.Generator().manual_seed(0)
    assert make_generator(generator=gen) is gen
    assert LinearSoftmax(np.int64(2), 3.0).num_classes == 3
    assert MLP(2, 3, hidden=np.array([4, 5])).hidden == (4, 5)
    assert MLP(2, 3, hidden=()).hidden == ()
    assert GaussianMixture.random(3, 2, separation=0.0).means.abs().max() == 0
    assert expected_smoothness(lipschitz=1.0, lipschitz_max=2.0, n=INF, batch=2.0) == 1.5
    assert expected_smoothness(lipschitz=1.0, lipschitz_max=2.0, n=10.0, batch=10) == pytest.approx(1.0)
    assert decreasing_steps(mu=0.1, smoothness=2.0, steps=5.0).shape == (5,)


def test_bound_at_infinity_is_the_limit():
    bound = quasi_convex_bound(**QC)
    assert bound.at(INF) == bound.neighborhood
    assert decreasing_step_bound(mu=0.1, smoothness=2.0, sigma2=1.0, dist0=1.0).at(INF) == 0.0


def test_pl_bound_accepts_smoothness_equal_to_lipschitz():
    """ℒ(b = n) = L exactly, up to round-off."""
    smoothness = expected_smoothness(lipschitz=1.3, lipschitz_max=2.0, n=7, batch=7)
    pl_bound(mu=0.1, lipschitz=1.3, smoothness=smoothness, sigma2=0.0, step=0.01, gap0=1.0)
    pl_bound(**PL)


def test_stationary_prediction_n_inf_is_streaming():
    assert float(stationary_prediction(H, SIGMA, 0.1, batch=2, n=INF)) == float(stationary_prediction(H, SIGMA, 0.1,
                                                                                                      batch=2))


def test_empty_sample_slices_are_still_samples():
    assert len(S[:0]) == 0
    assert S.to(torch.float32).bcp.dtype == torch.float32


def test_row_samplers_accept_valid_rows():
    gen = torch.Generator().manual_seed(0)
    draws = Dirichlet.sample_rows(_column(0.5, 8.0), P0, gen)
    assert torch.isfinite(draws).all() and torch.allclose(draws.sum(1), torch.ones(2, dtype=F64))
    assert torch.equal(Gaussian.sample_rows(0.0, P0, gen), P0)
    assert Gaussian.sample_rows(torch.tensor(0.1, dtype=F64), P0, gen).shape == P0.shape
    a = Dirichlet(2.0).sample(P0, generator=torch.Generator().manual_seed(3))
    b = Dirichlet.sample_rows(2.0, P0, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


# -- A9: a tiny temperature gives the arg-max, not NaN -------------------------------------------------------
@pytest.mark.parametrize("temperature", [1e-320, 1e-300, 1e-12])
def test_tiny_temperature_gives_the_argmax(temperature):
    model = Temperature(temperature)
    expected = torch.nn.functional.one_hot(P0.argmax(1), 3).to(F64)
    assert torch.equal(model.mean(P0), expected)
    assert torch.equal(model.sample(P0), expected)
    tie = torch.tensor([[0.4, 0.4, 0.2]], dtype=F64)
    torch.testing.assert_close(model.mean(tie), torch.tensor([[0.5, 0.5, 0.0]], dtype=F64), rtol=0, atol=0)


def test_temperature_matches_the_formula_and_keeps_zeros():
    bcp = torch.tensor([[0.7, 0.3, 0.0], [0.2, 0.3, 0.5]], dtype=F64)
    for temperature in (0.3, 1.0, 4.0, 1e6):
        tempered = Temperature(temperature).mean(bcp)
        torch.testing.assert_close(tempered, torch.softmax(torch.log(bcp) / temperature, 1), rtol=1e-12, atol=1e-15)
        assert tempered[0, 2] == 0


def test_theory_inputs_are_refused_before_any_jacobian(monkeypatch):
    """B15, B16, C10: a bad supervision model is refused before the Jacobians or the Hessian are computed."""
    import sgdbound.theory.gradients as gradients
    import sgdbound.theory.noise as noise

    def no_work(*args, **kwargs):
        raise AssertionError("Jacobians computed before the input was checked")

    for module in (gradients, noise):
        for name in ("logit_ntk", "logit_jacobians"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, no_work)
    for call in (lambda: predicted_gradient_covariance(LIN, X, BCP, "onehot"),
                 lambda: optimal_lambda(LIN, X, BCP, "dirichlet"),
                 lambda: optimal_lambda(LIN, X, BCP, None, criterion="plateau"),
                 lambda: predicted_noise(LIN, X, BCP, OneHot(), chunk_size=0)):
        with pytest.raises(ValueError):
            call()


def test_float32_bcp_works_with_a_float64_model():
    """C9: float32 BCP rows (sums within float32 round-off of 1) with a float64 model: the float64 supervision
    models' 1e-10 check used to refuse them after the Jacobians; they are renormalised on the cast instead."""
    bcp32 = BCP.float()
    bcp32[0] = torch.tensor([0.1, 0.2, 0.70002])  # within the float32 tolerance, not float64's
    for fn in (lambda b: predicted_noise(LIN, X, b, OneHot()),
               lambda b: optimal_lambda(LIN, X, b, Dirichlet(1.0)).lam,
               lambda b: interpolation_gap(LIN, X, b)):
        assert math.isfinite(fn(bcp32))
    fixed = bcp32.double() / bcp32.double().sum(1, keepdim=True)
    assert predicted_noise(LIN, X, bcp32, OneHot()) == pytest.approx(predicted_noise(LIN, X, fixed, OneHot()),
                                                                     rel=1e-12)


def test_integral_float_chunk_sizes_are_used_as_ints():
    """``chunk_size=4.0`` passes ``check_chunk_size``; the functions that chunk with ``range`` use its int."""
    torch.testing.assert_close(loss_hessian(LIN, X, T, chunk_size=4.0), loss_hessian(LIN, X, T, chunk_size=4))
    torch.testing.assert_close(per_sample_lipschitz(LIN, X, T, chunk_size=4.0), per_sample_lipschitz(LIN, X, T))
