"""Metrics of a predictive distribution and of a training run.

``probs`` ``(n, K)`` rows on the simplex, ``labels`` ``(n,)``. Each metric is a mean over the ``n`` examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["accuracy", "nll", "brier", "ece", "convergence_noise", "ProbMetrics", "prob_metrics"]


def accuracy(probs_or_logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy, a fraction in [0, 1]."""
    return (probs_or_logits.argmax(1) == labels).float().mean().item()


def nll(probs: torch.Tensor, labels: torch.Tensor, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood ``−(1/n) Σ_i log p_{y_i}(x_i)`` (nats), probabilities clamped at ``eps``."""
    return -torch.log(probs.gather(1, labels[:, None]).clamp_min(eps)).mean().item()


def brier(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Multiclass Brier score ``(1/n) Σ_i Σ_k (p_k(x_i) − [y_i = k])²``, in [0, 2]."""
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).to(probs.dtype)
    return (probs - onehot).pow(2).sum(1).mean().item()


def ece(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """Top-label expected calibration error with ``n_bins`` equal-width bins (torchmetrics, l1 norm)."""
    from torchmetrics.functional.classification import multiclass_calibration_error  # a slow import: when used

    return multiclass_calibration_error(probs.float(), labels, num_classes=probs.shape[1], n_bins=n_bins,
                                        norm="l1").item()


def convergence_noise(history: Sequence[float], last: int) -> float:
    """Standard deviation (population, ``ddof=0``) of the last ``last`` entries of a per-epoch history, e.g.
    test accuracy: how much the end of training still moves. NaN when fewer than two entries exist."""
    if last < 1:
        raise ValueError(f"last (E, epochs in the convergence-noise window) must be >= 1, got {last}")
    tail = np.asarray(list(history)[-last:], dtype=float)
    return float(tail.std()) if tail.size >= 2 else float("nan")


@dataclass(frozen=True)
class ProbMetrics:
    """Accuracy, NLL (nats), Brier score and ECE of a predictive distribution on labelled data."""

    accuracy: float
    nll: float
    brier: float
    ece: float


def prob_metrics(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> ProbMetrics:
    """All four metrics of ``probs`` ``(n, K)`` against ``labels`` ``(n,)``."""
    if probs.dim() != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(f"probs must be (n, K) and labels (n,), got {tuple(probs.shape)} and {tuple(labels.shape)}")
    return ProbMetrics(accuracy(probs, labels), nll(probs, labels), brier(probs, labels), ece(probs, labels, n_bins))
