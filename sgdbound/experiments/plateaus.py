"""Where the plateau sits: against the step size, the teacher's noise, and the distillation weight λ.

Setting: streaming SGD (batch 1) on a realizable linear-softmax student, started at ``θ*``, so the iterates only
spread. Near ``θ*`` the spread solves a Lyapunov equation and for small steps
``E‖θ−θ*‖² ≈ (γ/2) tr(H⁺S)``: linear in ``γ`` (slope 1 on log-log axes) and linear in the target covariance
``C`` (``S`` is linear in ``C``), hence ∝ ν for Gaussian noise ``C = νI`` and ∝ 1/(1+α) for a Dirichlet teacher
``C = C_onehot/(1+α)``; for ``t = (1−λ) e_y + λ p̃`` it is the quadratic ``(1−λ)² a + λ² b``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from sgdbound.experiments._common import Band, SummaryRow, as_dtype, fit_loglog, make_problem, parse_target
from sgdbound.models import LinearSoftmax
from sgdbound.sim import simulate
from sgdbound.targets import Mix
from sgdbound.theory import optimal_lambda

__all__ = ["StepSizeMeasured", "StepSizeTheory", "step_size", "summarize_step_size",
           "TeacherNoiseMeasured", "TeacherNoiseTheory", "teacher_noise", "summarize_teacher_noise",
           "LambdaMeasured", "LambdaTheory", "lambda_sweep", "summarize_lambda_sweep"]


def _plateaus(trajs) -> tuple[list[float], list[float], list[float | None], list[float | None]]:
    plateau = [t.plateau() for t in trajs]
    sem = [t.plateau_sem() for t in trajs]
    prediction = [t.predicted_stationary for t in trajs]
    neighborhood = [None if t.bound is None else t.bound.neighborhood for t in trajs]
    return plateau, sem, prediction, neighborhood


def _fit_or_nan(x, y) -> tuple[float, float]:
    try:
        fit = fit_loglog(x, y)
    except ValueError:
        return math.nan, math.nan
    return fit.slope, fit.intercept


# -- step size ---------------------------------------------------------------------------------------------


@dataclass
class StepSizeMeasured:
    """``lrs``: the steps γ; ``plateau``/``sem``: tail mean of ``‖θ−θ*‖²`` and its standard error per γ;
    ``slope``/``intercept``: least-squares fit of log plateau on log γ; ``dist_sq``: bands per γ."""

    lrs: list[float]
    plateau: list[float]
    sem: list[float]
    slope: float
    intercept: float
    dist_sq: list[Band]


@dataclass
class StepSizeTheory:
    """``prediction``: Lyapunov plateau per γ; ``neighborhood``: T3 ``2γσ²/μ`` (None beyond ``1/(2ℒ)``);
    ``slope``: the small-step slope (1); ``prediction_slope``: the fitted slope of the predictions;
    ``lipschitz_max``, ``max_step``: ``L_max`` and the T3 step limit."""

    prediction: list[float | None]
    neighborhood: list[float | None]
    slope: float
    prediction_slope: float
    lipschitz_max: float
    max_step: float


def step_size(*, problem: str = "teacher", target: str = "onehot",
              lrs: tuple[float, ...] = (0.004, 0.008, 0.016, 0.032), steps: int = 20_000,
              replicas: int = 128, record_every: int = 200, dtype: str = "float32",
              theory_samples: int = 32768, eval_size: int = 512,
              seed: int = 0, device: str = "auto") -> tuple[StepSizeMeasured, StepSizeTheory]:
    """The plateau against the step: slope ≈ 1 on log-log axes, each point near its Lyapunov prediction and
    below its T3 bound. All steps run in one batched simulation. Returns ``(measured, theory)``.

    The run must be long against the slowest relaxation time ``1/(2γ_min μ)`` or the smallest step's plateau is
    read before it is reached (``steps`` defaults to about five such times).
    """
    trajs = simulate(make_problem(problem, seed), noise=parse_target(target), lr=list(lrs), steps=steps,
                     replicas=replicas, init="optimum", seed=seed, device=device, dtype=as_dtype(dtype),
                     record_every=record_every, theory_samples=theory_samples, eval_size=eval_size)
    plateau, sem, prediction, neighborhood = _plateaus(trajs)
    slope, intercept = _fit_or_nan(lrs, plateau)
    pred_slope, _ = _fit_or_nan([g for g, p in zip(lrs, prediction) if p], [p for p in prediction if p])
    constants = trajs[0].constants
    smoothness = constants.get("smoothness", math.nan)
    measured = StepSizeMeasured(list(lrs), plateau, sem, slope, intercept, [Band.of(t) for t in trajs])
    theory = StepSizeTheory(prediction, neighborhood, 1.0, pred_slope, constants.get("lipschitz_max", math.nan),
                            1 / (2 * smoothness))
    return measured, theory


def summarize_step_size(measured: StepSizeMeasured, theory: StepSizeTheory) -> list[SummaryRow]:
    rows = [SummaryRow("step_size", "log-log slope of plateau vs γ", measured.slope, theory.slope, "≈ (±0.15)",
                       abs(measured.slope - 1) < 0.15)]
    for lr, plateau, prediction, neighborhood in zip(measured.lrs, measured.plateau, theory.prediction,
                                                      theory.neighborhood):
        if prediction is not None and lr * theory.lipschitz_max <= 0.1:
            rows.append(SummaryRow("step_size", f"γ={lr:g} (γL_max={lr * theory.lipschitz_max:.2f}): plateau vs "
                                   "Lyapunov", plateau, prediction, "≈ (±10%)", abs(plateau / prediction - 1) < 0.1))
        if neighborhood is not None:
            rows.append(SummaryRow("step_size", f"γ={lr:g}: plateau vs T3", plateau, neighborhood, "<=",
                                   plateau <= neighborhood))
    return rows


# -- teacher noise -----------------------------------------------------------------------------------------


@dataclass
class TeacherNoiseMeasured:
    """Per family (``gaussian`` against ν, ``dirichlet`` against ``1/(1+α)``): ``x`` the noise level, ``plateau``
    and ``sem`` per level, ``slope`` of the log-log fit. ``reference``: plateaus of one-hot and exact targets."""

    x: dict[str, list[float]]
    plateau: dict[str, list[float]]
    sem: dict[str, list[float]]
    slope: dict[str, float]
    intercept: dict[str, float]
    reference: dict[str, float]


@dataclass
class TeacherNoiseTheory:
    """``prediction``: Lyapunov plateau per level; ``sigma2``: σ² per level; ``slope``: 1 for both families
    (the plateau is linear in the target covariance); ``reference``: predictions for one-hot and exact."""

    prediction: dict[str, list[float | None]]
    neighborhood: dict[str, list[float | None]]
    sigma2: dict[str, list[float]]
    slope: dict[str, float]
    reference: dict[str, float | None]


def teacher_noise(*, problem: str = "teacher", lr: float = 0.016, nus: tuple[float, ...] = (0.0005, 0.001, 0.002,
                  0.004, 0.008), alphas: tuple[float, ...] = (1.0, 3.0, 9.0, 27.0, 81.0), steps: int = 15_000,
                  replicas: int = 128, record_every: int = 200, dtype: str = "float32",
              theory_samples: int = 32768, eval_size: int = 512,
                  seed: int = 0, device: str = "auto") -> tuple[TeacherNoiseMeasured, TeacherNoiseTheory]:
    """The plateau against the teacher's error: ∝ ν for Gaussian noise on the BCPs (the paper's model) and
    ∝ 1/(1+α) for a Dirichlet teacher ``Dir(αP)`` (the official notebook's). One batched simulation holds every
    level plus one-hot and exact references. Returns ``(measured, theory)``.
    """
    specs = [f"gaussian:{nu}" for nu in nus] + [f"dirichlet:{a}" for a in alphas] + ["onehot", "exact"]
    trajs = simulate(make_problem(problem, seed), noise=[parse_target(s) for s in specs], lr=lr, steps=steps,
                     replicas=replicas, init="optimum", seed=seed, device=device, dtype=as_dtype(dtype),
                     record_every=record_every, theory_samples=theory_samples, eval_size=eval_size)
    plateau, sem, prediction, neighborhood = _plateaus(trajs)
    groups = {"gaussian": (slice(0, len(nus)), [float(v) for v in nus]),
              "dirichlet": (slice(len(nus), len(nus) + len(alphas)), [1 / (1 + a) for a in alphas])}
    measured = TeacherNoiseMeasured({}, {}, {}, {}, {}, {"onehot": plateau[-2], "exact": plateau[-1]})
    theory = TeacherNoiseTheory({}, {}, {}, {}, {"onehot": prediction[-2], "exact": prediction[-1]})
    for family, (rows, x) in groups.items():
        measured.x[family] = x
        measured.plateau[family] = plateau[rows]
        measured.sem[family] = sem[rows]
        measured.slope[family], measured.intercept[family] = _fit_or_nan(x, plateau[rows])
        theory.prediction[family] = prediction[rows]
        theory.neighborhood[family] = neighborhood[rows]
        theory.sigma2[family] = [t.constants.get("sigma2", math.nan) for t in trajs[rows]]
        theory.slope[family] = 1.0
    return measured, theory


def summarize_teacher_noise(measured: TeacherNoiseMeasured, theory: TeacherNoiseTheory) -> list[SummaryRow]:
    rows = []
    for family, label in (("gaussian", "ν"), ("dirichlet", "1/(1+α)")):
        rows.append(SummaryRow("teacher_noise", f"{family}: log-log slope vs {label}", measured.slope[family],
                               theory.slope[family], "≈ (±0.15)", abs(measured.slope[family] - 1) < 0.15))
        ratios = [p / q for p, q in zip(measured.plateau[family], theory.prediction[family]) if q]
        if ratios:
            worst = max(ratios, key=lambda r: abs(r - 1))
            rows.append(SummaryRow("teacher_noise", f"{family}: worst plateau/prediction", worst, 1.0, "≈ (±15%)",
                                   abs(worst - 1) < 0.15))
    return rows


# -- λ sweep -----------------------------------------------------------------------------------------------


@dataclass
class LambdaMeasured:
    """``lams``: the distillation weights; ``plateau``/``sem`` per λ; ``fit``: ``(a, b)`` of the least-squares
    quadratic ``(1−λ)² a + λ² b`` through the plateaus; ``best``: its minimiser ``a/(a+b)``; ``best_grid``: the
    λ with the smallest measured plateau."""

    lams: list[float]
    plateau: list[float]
    sem: list[float]
    fit: list[float]
    best: float
    best_grid: float


@dataclass
class LambdaTheory:
    """``lam_noise``: ``theory.optimal_lambda`` (minimises σ² = E tr(C G)); ``lam_plateau``: the minimiser of the
    predicted plateau ``(1−λ)² a + λ² b`` (``a``, ``b`` the Lyapunov predictions at λ = 0, 1; weights the noise
    by ``H⁺``); ``prediction``: predicted plateau per λ; ``sigma2``: predicted σ² per λ."""

    lam_noise: float
    lam_plateau: float
    prediction: list[float | None]
    sigma2: list[float]
    onehot_noise: float
    teacher_noise: float


def lambda_sweep(*, problem: str = "teacher", teacher: str = "gaussian:0.04", lr: float = 0.016,
                 lams: tuple[float, ...] = tuple(np.round(np.linspace(0, 1, 11), 2)), steps: int = 15_000,
                 replicas: int = 128, record_every: int = 200, dtype: str = "float32",
              theory_samples: int = 32768, eval_size: int = 512,
                 seed: int = 0, device: str = "auto") -> tuple[LambdaMeasured, LambdaTheory]:
    """The plateau of ``t = (1−λ) e_y + λ p̃`` against λ, with the predicted optimal λ marked.

    Theory: the target covariance is ``(1−λ)² C_onehot + λ² C_teacher`` (teacher independent of the label), so
    σ² and the plateau are quadratics in λ; ``optimal_lambda`` gives ``λ* = A/(A+B)`` for σ². When ``C_teacher``
    is not proportional to ``C_onehot`` (Gaussian teacher) the plateau's minimiser differs from σ²'s.
    Returns ``(measured, theory)``.
    """
    prob = make_problem(problem, seed)
    teacher_model = parse_target(teacher)
    trajs = simulate(prob, noise=[Mix(float(lam), teacher_model) for lam in lams], lr=lr, steps=steps,
                     replicas=replicas, init="optimum", seed=seed, device=device, dtype=as_dtype(dtype),
                     record_every=record_every, theory_samples=theory_samples, eval_size=eval_size)
    plateau, sem, prediction, _ = _plateaus(trajs)
    lam_arr = np.asarray(lams, dtype=float)
    design = np.stack([(1 - lam_arr) ** 2, lam_arr**2], 1)
    (a, b), *_ = np.linalg.lstsq(design, np.asarray(plateau), rcond=None)
    measured = LambdaMeasured([float(v) for v in lams], plateau, sem, [float(a), float(b)],
                              float(a / (a + b)), float(lam_arr[int(np.argmin(plateau))]))
    weight, bias = prob.bayes_linear()
    sample = prob.sample(min(theory_samples, 8192), seed=seed + 7)
    model = LinearSoftmax.from_params(weight.to(torch.float64), bias.to(torch.float64))
    choice = optimal_lambda(model, sample.x.to(torch.float64), sample.bcp.to(torch.float64), teacher_model)
    p0, p1 = prediction[0], prediction[-1]
    if lams[0] == 0 and lams[-1] == 1 and p0 is not None and p1 is not None:
        lam_plateau = p0 / (p0 + p1)
    else:
        lam_plateau = math.nan
    theory = LambdaTheory(choice.lam, float(lam_plateau), prediction, [choice.noise_at(float(v)) for v in lams],
                          choice.onehot, choice.teacher)
    return measured, theory


def summarize_lambda_sweep(measured: LambdaMeasured, theory: LambdaTheory) -> list[SummaryRow]:
    rows = [SummaryRow("lambda_sweep", "λ minimising the fitted plateau", measured.best, theory.lam_plateau,
                       "≈ (±0.05)", abs(measured.best - theory.lam_plateau) < 0.05),
            SummaryRow("lambda_sweep", "λ* of optimal_lambda (σ²)", theory.lam_noise, None, "", None)]
    ratios = [p / q for p, q in zip(measured.plateau, theory.prediction) if q]
    if ratios:
        worst = max(ratios, key=lambda r: abs(r - 1))
        rows.append(SummaryRow("lambda_sweep", "worst plateau/prediction over λ", worst, 1.0, "≈ (±15%)",
                               abs(worst - 1) < 0.15))
    return rows
