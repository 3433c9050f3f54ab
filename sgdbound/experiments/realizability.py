"""Interpolation and capacity: exact BCPs remove SGD's noise floor only when the student can represent them.

Setting: streaming SGD (batch 1, constant step) on a linear-softmax student. On a realizable problem the exact
BCP ``P(x)`` is a common minimiser of every per-sample loss (Prop. 2), so ``σ² = 0`` and SGD started at ``θ*``
never leaves it (T1); one-hot or noisy targets put ``σ² > 0`` back and the iterates spread to a plateau of
size ``≈ (γ/2) tr(H⁺S)`` (Lyapunov prediction), below the T3 neighbourhood ``2γσ²/μ``. On a non-realizable
problem (``QuadraticMixture``) the exact BCP still leaves a floor: interpolation fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sgdbound.experiments._common import Band, SummaryRow, as_dtype, make_problem, parse_target
from sgdbound.sim import simulate

__all__ = ["InterpolationMeasured", "InterpolationTheory", "interpolation", "summarize_interpolation",
           "CapacityMeasured", "CapacityTheory", "capacity", "summarize_capacity"]

INITS = ("optimum", "random")


@dataclass
class InterpolationMeasured:
    """Keys of the dicts are ``"<init>/<target>"`` (``init`` ∈ optimum, random).

    ``dist_sq``: replica bands of ``‖θ_t − θ*‖²`` (to the set of optima); ``plateau``: mean over replicas and the
    last half of the run; ``final``: mean at the last record."""

    targets: list[str]
    dist_sq: dict[str, Band]
    plateau: dict[str, float]
    final: dict[str, float]


@dataclass
class InterpolationTheory:
    """``prediction``: Lyapunov stationary ``E‖θ−θ*‖²``; ``bound_curve``: T1/T3 at the recorded steps (None
    beyond the step limit); ``neighborhood``: ``2γσ²/μ``; ``sigma2``: σ² at the optimum; ``theorem``;
    ``step``: γ."""

    prediction: dict[str, float | None]
    bound_curve: dict[str, list[float] | None]
    neighborhood: dict[str, float | None]
    sigma2: dict[str, float]
    theorem: dict[str, str | None]
    step: float = math.nan


def _theory_of(traj) -> tuple[float | None, list[float] | None, float | None, float, str | None]:
    bound = traj.bound
    curve = None if bound is None else [float(v) for v in traj.bound_curve]
    return (traj.predicted_stationary, curve, None if bound is None else bound.neighborhood,
            traj.constants.get("sigma2", float("nan")), None if bound is None else bound.theorem)


def interpolation(*, problem: str = "teacher", targets: tuple[str, ...] = ("exact", "onehot", "dirichlet:4",
                  "gaussian:0.002"), lr: float = 0.016, steps: int = 20_000, replicas: int = 128,
                  record_every: int = 200, dtype: str = "float64", theory_samples: int = 32768,
                  eval_size: int = 512, seed: int = 0,
                  device: str = "auto") -> tuple[InterpolationMeasured, InterpolationTheory]:
    """Exact against one-hot and noisy BCPs, started at the optimum and at a random point.

    Theory: exact BCPs → T1 (``σ² = 0``): from ``θ*`` the distance stays at round-off (float64: below 1e-12),
    from a random start it decays like ``(1−γμ)^t``; noisy targets → a plateau near the Lyapunov prediction and
    below the T3 bound. Returns ``(measured, theory)``.

    Example::

        >>> measured, theory = interpolation(steps=2000, replicas=32)
        >>> measured.plateau["optimum/exact"] < 1e-12
        True
    """
    prob = make_problem(problem, seed)
    models = [parse_target(t) for t in targets]
    measured = InterpolationMeasured(list(targets), {}, {}, {})
    theory = InterpolationTheory({}, {}, {}, {}, {}, step=lr)
    for init in INITS:
        trajs = simulate(prob, noise=models, lr=lr, steps=steps, replicas=replicas, init=init, seed=seed,
                         device=device, dtype=as_dtype(dtype), record_every=record_every,
                         theory_samples=theory_samples, eval_size=eval_size)
        for name, traj in zip(targets, trajs):
            key = f"{init}/{name}"
            measured.dist_sq[key] = Band.of(traj)
            measured.plateau[key] = traj.plateau()
            measured.final[key] = float(traj.dist_sq[:, -1].mean())
            (theory.prediction[key], theory.bound_curve[key], theory.neighborhood[key], theory.sigma2[key],
             theory.theorem[key]) = _theory_of(traj)
    return measured, theory


def summarize_interpolation(measured: InterpolationMeasured, theory: InterpolationTheory) -> list[SummaryRow]:
    rows = [SummaryRow("interpolation", "exact from θ*: plateau E‖θ−θ*‖²", measured.plateau["optimum/exact"],
                       0.0, "≈ 0 (<1e-12)", measured.plateau["optimum/exact"] < 1e-12)]
    start = float(measured.dist_sq["random/exact"].mean[0])
    curve = theory.bound_curve["random/exact"]
    rows.append(SummaryRow("interpolation", "exact from random: final E‖θ−θ*‖²", measured.final["random/exact"],
                           None if curve is None else curve[-1], "<= T1", None if curve is None else
                           measured.final["random/exact"] <= curve[-1] and measured.final["random/exact"] < start))
    for name in measured.targets:
        key = f"optimum/{name}"
        if name == "exact":
            continue
        prediction = theory.prediction[key]
        if prediction is not None:
            ratio = measured.plateau[key] / prediction
            rows.append(SummaryRow("interpolation", f"{name}: plateau vs Lyapunov", measured.plateau[key],
                                   prediction, "≈ (±15%)", abs(ratio - 1) < 0.15))
        if theory.neighborhood[key] is not None:
            rows.append(SummaryRow("interpolation", f"{name}: plateau vs T3 neighbourhood", measured.plateau[key],
                                   theory.neighborhood[key], "<=", measured.plateau[key] <= theory.neighborhood[key]))
    return rows


# -- capacity ----------------------------------------------------------------------------------------------


@dataclass
class CapacityMeasured:
    """Keys: ``"<problem>/<target>"``. ``dist_sq``: bands; ``plateau``: tail means of ``‖θ−θ*‖²``;
    ``excess_risk``: tail means of ``E KL(P‖q)``."""

    keys: list[str]
    dist_sq: dict[str, Band]
    plateau: dict[str, float]
    excess_risk: dict[str, float]


@dataclass
class CapacityTheory:
    """``sigma2``: σ² at the optimum (for exact BCPs: the interpolation gap, zero iff realizable);
    ``prediction``: Lyapunov plateau; ``neighborhood``: T3 ``2γσ²/μ`` (None beyond the step limit)."""

    sigma2: dict[str, float]
    prediction: dict[str, float | None]
    neighborhood: dict[str, float | None]


def capacity(*, problem: str = "quadratic", realizable: str = "teacher", lr: float = 0.008, steps: int = 15_000,
             replicas: int = 128, record_every: int = 200, dtype: str = "float64",
             theory_samples: int = 32768, eval_size: int = 512,
             seed: int = 0, device: str = "auto") -> tuple[CapacityMeasured, CapacityTheory]:
    """A non-realizable problem keeps a noise floor even with exact BCPs (AS4 fails, so does Prop. 2).

    Runs exact and one-hot supervision on ``problem`` (``QuadraticMixture``: BCPs quadratic in ``x``) and exact
    supervision on the realizable ``realizable`` problem, all started at their optimum. Theory: the exact-BCP
    noise ``σ² = E‖∇ℓ(θ*; x, P(x))‖²`` is positive on the first and zero on the second, and the plateau follows
    the Lyapunov prediction. Returns ``(measured, theory)``.
    """
    runs = [(problem, ("exact", "onehot")), (realizable, ("exact",))]
    keys: list[str] = []
    measured = CapacityMeasured(keys, {}, {}, {})
    theory = CapacityTheory({}, {}, {})
    for name, targets in runs:
        trajs = simulate(make_problem(name, seed), noise=[parse_target(t) for t in targets], lr=lr, steps=steps,
                         replicas=replicas, init="optimum", seed=seed, device=device, dtype=as_dtype(dtype),
                         record_every=record_every, theory_samples=theory_samples, eval_size=eval_size)
        for target, traj in zip(targets, trajs):
            key = f"{name}/{target}"
            keys.append(key)
            measured.dist_sq[key] = Band.of(traj)
            measured.plateau[key] = traj.plateau()
            measured.excess_risk[key] = traj.plateau(metric="excess_risk")
            theory.sigma2[key] = traj.constants.get("sigma2", float("nan"))
            theory.prediction[key] = traj.predicted_stationary
            theory.neighborhood[key] = None if traj.bound is None else traj.bound.neighborhood
    return measured, theory


def summarize_capacity(measured: CapacityMeasured, theory: CapacityTheory) -> list[SummaryRow]:
    floor_key, clean_key = measured.keys[0], measured.keys[2]
    floor, clean = measured.plateau[floor_key], measured.plateau[clean_key]
    rows = [SummaryRow("capacity", f"{floor_key}: σ² at θ* (interpolation gap)", theory.sigma2[floor_key], None,
                       "> 0", theory.sigma2[floor_key] > 0),
            SummaryRow("capacity", f"{floor_key} plateau / {clean_key} plateau", floor / max(clean, 1e-300), None,
                       ">> 1 (>1e6)", floor > 1e6 * max(clean, 1e-300))]
    prediction = theory.prediction[floor_key]
    if prediction is not None:
        rows.append(SummaryRow("capacity", f"{floor_key}: plateau vs Lyapunov", floor, prediction, "≈ (±15%)",
                               abs(floor / prediction - 1) < 0.15))
    return rows
