"""What a simulation returns: measured curves per replica next to the theory for the same run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sgdbound.io import to_jsonable
from sgdbound.theory import Bound

__all__ = ["Trajectory", "METRICS"]

METRICS = ("dist_sq", "excess_risk", "ce", "accuracy", "l2_bcp", "ece")


@dataclass
class Trajectory:
    """One configuration's replicas, recorded every ``record_every`` steps.

    Arrays are numpy float64 of shape ``(replicas, records)``:
    ``dist_sq`` squared distance to the set of optima (NaN for MLP students); ``excess_risk`` ``E KL(P‖q)`` on
    the fixed evaluation set (exact, since the BCPs are known); ``ce`` cross-entropy against its labels;
    ``accuracy``; ``l2_bcp`` mean ``‖q − P‖₂``; ``ece`` expected calibration error (10 bins).
    ``steps`` ``(records,)``. Theory (linear students): ``predicted_stationary`` (Lyapunov), ``predicted_curve``
    ``(records,)`` (the linearised recursion from the measured start, SGD without momentum), ``bound`` (T1/T3 with
    the local constants at the optimum; None beyond its step limit), ``bound_curve`` ``(records,)``,
    ``constants``; ``pl_bound`` (T2/T4 on the excess risk, streaming with unbiased targets; None beyond its
    step limit ``μ/(Lℒ)``, which is small).
    """

    steps: np.ndarray
    dist_sq: np.ndarray
    excess_risk: np.ndarray
    ce: np.ndarray
    accuracy: np.ndarray
    l2_bcp: np.ndarray
    ece: np.ndarray
    config: dict[str, Any]
    seed: int
    predicted_stationary: float | None = None
    predicted_curve: np.ndarray | None = None
    bound: Bound | None = None
    pl_bound: Bound | None = None
    constants: dict[str, float] = field(default_factory=dict)
    optimum: tuple | None = field(default=None, repr=False)

    @property
    def replicas(self) -> int:
        return self.dist_sq.shape[0]

    @property
    def bound_curve(self) -> np.ndarray | None:
        return None if self.bound is None else np.asarray(self.bound.at(self.steps), dtype=float)

    def _tail(self, tail: float) -> np.ndarray:
        if not 0 < tail <= 1:
            raise ValueError(f"tail must lie in (0, 1], got {tail}")
        return self.steps >= (1 - tail) * self.steps[-1]

    def plateau(self, tail: float = 0.5, metric: str = "dist_sq") -> float:
        """Mean of ``metric`` over replicas and the records in the last ``tail`` fraction of the run."""
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        return float(getattr(self, metric)[:, self._tail(tail)].mean())

    def predicted_plateau(self, tail: float = 0.5) -> float | None:
        """The theory for :meth:`plateau` (``dist_sq``) over the same records: the mean of ``predicted_curve`` on the
        last ``tail`` fraction of the run. Equals ``predicted_stationary`` once the run has reached stationarity;
        before (a short or slow run from the optimum), it is the transient that the plateau should be compared
        with. None where there is no predicted curve (MLP students, momentum, finite sums)."""
        if self.predicted_curve is None:
            return None
        return float(np.asarray(self.predicted_curve)[self._tail(tail)].mean())

    def plateau_sem(self, tail: float = 0.5, metric: str = "dist_sq") -> float:
        """Standard error of ``plateau`` across replicas (replicas are independent; records within one are not)."""
        per_replica = getattr(self, metric)[:, self._tail(tail)].mean(1)
        return float(per_replica.std(ddof=1) / np.sqrt(len(per_replica))) if len(per_replica) > 1 else float("nan")

    def quantiles(self, metric: str = "dist_sq", q=(0.1, 0.5, 0.9)) -> np.ndarray:
        """``(len(q), records)`` quantiles across replicas: the bands the figures draw."""
        return np.quantile(getattr(self, metric), q, axis=0)

    def to_dict(self, curves: bool = True) -> dict[str, Any]:
        """JSON-safe summary; ``curves`` adds the replica means (and 10/50/90% quantiles of dist_sq)."""
        out: dict[str, Any] = {
            "config": self.config, "seed": self.seed, "replicas": self.replicas,
            "predicted_stationary": self.predicted_stationary, "predicted_plateau": self.predicted_plateau(),
            "bound": None if self.bound is None else {
                "theorem": self.bound.theorem, "rate": self.bound.rate, "neighborhood": self.bound.neighborhood,
                "max_step": self.bound.max_step, "step": self.bound.step, "start": self.bound.start},
            "constants": self.constants,
            "plateau": {m: self.plateau(metric=m) for m in METRICS},
        }
        if curves:
            out["steps"] = self.steps
            out["predicted_curve"] = self.predicted_curve
            out["mean"] = {m: getattr(self, m).mean(0) for m in METRICS}
            out["dist_sq_quantiles"] = self.quantiles()
        return to_jsonable(out)
