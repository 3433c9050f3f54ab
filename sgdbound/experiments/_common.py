"""Shared pieces of the experiments: named problems, replica bands, log-log fits, summary rows."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sgdbound.data import GaussianMixture, LogisticTeacher, QuadraticMixture
from sgdbound.targets import SupervisionModel, get_target

__all__ = ["PROBLEMS", "make_problem", "Band", "Fit", "fit_loglog", "SummaryRow", "DTYPES", "as_dtype",
           "parse_target", "tail_mean", "relative_error"]

PROBLEMS: dict[str, Callable[[int], object]] = {
    # A well-conditioned realizable problem (mu ~ 0.03, L_max ~ 12): plateaus settle within a few thousand steps.
    "teacher": lambda seed: LogisticTeacher.random(3, 5, scale=2.0, seed=seed),
    # The official notebook's problem (5 classes, 30 dims), standardised; ill-conditioned for a linear student.
    "reference": lambda seed: GaussianMixture.reference(seed=seed).standardized(),
    # Class-specific covariances: BCPs are quadratic-softmax, a linear student cannot represent them.
    "quadratic": lambda seed: QuadraticMixture.random(3, 5, separation=1.5, spread=1.0, seed=seed),
}
"""Named problems; each builder takes the problem seed."""

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def make_problem(name: str, seed: int = 0):
    """A problem from ``PROBLEMS`` by name."""
    if name not in PROBLEMS:
        raise ValueError(f"problem must be one of {sorted(PROBLEMS)}, got {name!r}")
    return PROBLEMS[name](seed)


def as_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def parse_target(spec: str) -> SupervisionModel:
    """``"onehot"``, ``"exact"``, ``"dirichlet:5"``, ``"gaussian:0.01"``, ``"temperature:2"`` → a supervision model.

    Strings keep experiment configurations JSON-safe and comparable."""
    name, _, value = spec.partition(":")
    params = {"dirichlet": "alpha", "gaussian": "nu", "temperature": "T"}
    if name in params:
        if not value:
            raise ValueError(f"target {spec!r} needs a parameter, e.g. '{name}:1.0'")
        return get_target(name, **{params[name]: float(value)})
    if value:
        raise ValueError(f"target {name!r} takes no parameter, got {spec!r}")
    return get_target(name)


@dataclass
class Band:
    """Median and 10–90% band of one metric across replicas, against steps.

    ``steps``, ``median``, ``low``, ``high``, ``mean``: ``(records,)``."""

    steps: np.ndarray
    median: np.ndarray
    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray

    @classmethod
    def of(cls, traj, metric: str = "dist_sq") -> Band:
        values = np.asarray(getattr(traj, metric), dtype=float)
        low, median, high = np.quantile(values, (0.1, 0.5, 0.9), axis=0)
        return cls(np.asarray(traj.steps), median, low, high, values.mean(0))


@dataclass
class Fit:
    """``log y = slope · log x + intercept`` by least squares; ``predict(x)`` evaluates the fitted power law."""

    slope: float
    intercept: float

    def predict(self, x) -> np.ndarray:
        return np.exp(self.intercept) * np.asarray(x, dtype=float) ** self.slope


def fit_loglog(x: Sequence[float], y: Sequence[float]) -> Fit:
    """Least-squares line through ``(log x, log y)``; needs two or more positive points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 2:
        raise ValueError(f"a log-log fit needs at least two positive points, got {int(keep.sum())}")
    slope, intercept = np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)
    return Fit(float(slope), float(intercept))


def tail_mean(traj, metric: str = "dist_sq", tail: float = 0.5) -> float:
    """Mean of ``metric`` over replicas and the last ``tail`` fraction of the records."""
    return traj.plateau(tail=tail, metric=metric)


def relative_error(measured: float, predicted: float | None) -> float:
    if predicted is None or predicted == 0 or not math.isfinite(predicted):
        return math.nan
    return measured / predicted - 1


@dataclass
class SummaryRow:
    """One line of the summary table: a measured quantity beside what the theory says about it."""

    experiment: str
    quantity: str
    measured: float
    theory: float | None
    relation: str  # "<=", "≈", ">>", "<<" or "" (what the theory claims)
    holds: bool | None

    def as_tuple(self) -> tuple:
        return self.experiment, self.quantity, self.measured, self.theory, self.relation, self.holds
