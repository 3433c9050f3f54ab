"""Named experiments: each returns the measured result next to the theory for it, ``(measured, theory)``.

==============  ==========================================================================================
name            claim checked
==============  ==========================================================================================
interpolation   exact BCPs keep SGD at θ* (T1); one-hot/noisy targets plateau at the Lyapunov prediction < T3
step_size       plateau ∝ γ (log-log slope 1), each step below its T3 bound
teacher_noise   plateau ∝ ν (Gaussian noise) and ∝ 1/(1+α) (Dirichlet teacher)
lambda_sweep    plateau quadratic in λ, minimised near the predicted λ*
capacity        a non-realizable problem keeps a floor even with exact BCPs
adam            Adam against SGD, exact against one-hot targets
mlp_students    MLP students (no PL guarantee): does the variance reduction survive?
notebook        replica of the official synthetic notebook (MLP 30-128-128-5, finite sum, 2 epochs)
==============  ==========================================================================================

Example::

    >>> from sgdbound.experiments import EXPERIMENTS, run_experiment
    >>> measured, theory = EXPERIMENTS["step_size"](steps=4000, replicas=64)
    >>> result = run_experiment("interpolation", quick=True)
"""

from sgdbound.experiments._common import PROBLEMS, Band, Fit, SummaryRow, fit_loglog, make_problem, parse_target
from sgdbound.experiments.official import notebook
from sgdbound.experiments.plateaus import lambda_sweep, step_size, teacher_noise
from sgdbound.experiments.realizability import capacity, interpolation
from sgdbound.experiments.registry import (
    EXPERIMENTS,
    SPECS,
    ExperimentResult,
    ExperimentSpec,
    experiment_config,
    load_result,
    result_matches,
    run_experiment,
    save_result,
)
from sgdbound.experiments.students import adam, mlp_students

__all__ = ["EXPERIMENTS", "SPECS", "PROBLEMS", "Band", "Fit", "SummaryRow", "ExperimentResult", "ExperimentSpec",
           "experiment_config", "run_experiment", "save_result", "load_result", "result_matches", "fit_loglog",
           "make_problem", "parse_target", "interpolation", "step_size", "teacher_noise", "lambda_sweep", "capacity",
           "adam", "mlp_students", "notebook"]
