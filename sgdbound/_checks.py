"""Input checks shared by every part: fail early with a ``ValueError`` that names the argument."""

from __future__ import annotations

import math

import torch

__all__ = [
    "check_finite",
    "check_positive",
    "check_nonnegative",
    "check_simplex",
    "check_matrix_rows",
    "check_probability",
]


def _tolerance(dtype: torch.dtype) -> float:
    return 1e-10 if dtype == torch.float64 else 1e-4


def check_finite(name: str, value: torch.Tensor) -> None:
    """Refuse NaN or infinite entries."""
    if not torch.is_tensor(value):
        raise ValueError(f"{name} must be a tensor, got {type(value).__name__}")
    bad = ~torch.isfinite(value)
    if bad.any():
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name} must be finite (entry {index} is {value[index].item()})")


def check_positive(name: str, value: float) -> float:
    """Refuse a scalar that is not strictly positive and finite."""
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return value


def check_nonnegative(name: str, value: float) -> float:
    """Refuse a scalar that is negative, NaN or infinite."""
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be non-negative and finite, got {value}")
    return value


def check_probability(name: str, value: float) -> float:
    """Refuse a scalar outside [0, 1]."""
    value = float(value)
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return value


def check_matrix_rows(name: str, value: torch.Tensor, rows: int | None = None, cols: int | None = None) -> None:
    """Refuse anything but a finite 2-D tensor of the stated shape."""
    if not torch.is_tensor(value):
        raise ValueError(f"{name} must be a tensor, got {type(value).__name__}")
    if value.dim() != 2:
        raise ValueError(f"{name} must be 2-D (n, k), got shape {tuple(value.shape)}")
    if rows is not None and value.shape[0] != rows:
        raise ValueError(f"{name} must have {rows} rows to match the inputs, got {value.shape[0]}")
    if cols is not None and value.shape[1] != cols:
        raise ValueError(f"{name} must have {cols} columns, got {value.shape[1]}")
    check_finite(name, value)


def check_simplex(name: str, probs: torch.Tensor, rows: int | None = None, cols: int | None = None) -> None:
    """Refuse ``probs`` unless it is ``(n, K)`` with non-negative rows that sum to one."""
    check_matrix_rows(name, probs, rows, cols)
    tol = _tolerance(probs.dtype)
    if (probs < -tol).any():
        row, col = (int(i) for i in (probs < -tol).nonzero()[0])
        raise ValueError(f"{name} must be non-negative (row {row}, class {col} is {probs[row, col].item():.3g})")
    sums = probs.sum(dim=1)
    off = (sums - 1).abs() > tol * max(1, probs.shape[1])
    if off.any():
        row = int(off.nonzero()[0])
        raise ValueError(f"{name} rows must sum to 1 (row {row} sums to {sums[row].item():.6g})")
