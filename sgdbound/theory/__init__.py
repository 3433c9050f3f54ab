"""The paper's theory as code: gradient noise, interpolation, constants, bounds, stationary prediction.

Every function accepts any ``nn.Module`` mapping ``(n, d)`` inputs to ``(n, K)`` logits.
"""

from sgdbound.theory.bounds import (
    Bound,
    DecreasingStepBound,
    batch_noise,
    decreasing_step_bound,
    decreasing_steps,
    expected_smoothness,
    pl_bound,
    quasi_convex_bound,
)
from sgdbound.theory.constants import (
    Curvature,
    complement_basis,
    curvature,
    flat_directions,
    flat_params,
    hessian_vector_product,
    loss_hessian,
    per_sample_lipschitz,
    project_out_flat,
)
from sgdbound.theory.gradients import logit_jacobians, logit_ntk, per_sample_gradients, softmax_gram
from sgdbound.theory.noise import (
    LambdaChoice,
    empirical_noise,
    expected_sq_grad_norm,
    interpolation_gap,
    noisy_bcp_noise,
    onehot_noise,
    optimal_lambda,
    predicted_gradient_covariance,
    predicted_noise,
)
from sgdbound.theory.stationary import StationaryPrediction, stationary_prediction

__all__ = [
    "Bound",
    "Curvature",
    "DecreasingStepBound",
    "LambdaChoice",
    "StationaryPrediction",
    "batch_noise",
    "complement_basis",
    "curvature",
    "decreasing_step_bound",
    "decreasing_steps",
    "empirical_noise",
    "expected_smoothness",
    "expected_sq_grad_norm",
    "flat_directions",
    "flat_params",
    "hessian_vector_product",
    "interpolation_gap",
    "logit_jacobians",
    "logit_ntk",
    "loss_hessian",
    "noisy_bcp_noise",
    "onehot_noise",
    "optimal_lambda",
    "per_sample_gradients",
    "per_sample_lipschitz",
    "pl_bound",
    "predicted_gradient_covariance",
    "predicted_noise",
    "project_out_flat",
    "quasi_convex_bound",
    "softmax_gram",
    "stationary_prediction",
]
