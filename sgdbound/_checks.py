"""Input checks shared by every part: fail early with a ``ValueError`` that names the argument."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

__all__ = [
    "check_finite",
    "check_number",
    "check_positive",
    "check_nonnegative",
    "check_probability",
    "check_count",
    "check_count_or_inf",
    "check_seed",
    "check_float_dtype",
    "check_generator",
    "describe",
    "check_simplex",
    "check_matrix_rows",
]

_SEED_RANGE = (-(2**63), 2**64 - 1)  # what ``torch.Generator.manual_seed`` accepts


def _tolerance(dtype: torch.dtype) -> float:
    """Round-off allowed on a probability: 1e-10 in float64, 1e-4 in float32, ten ulps in half precision."""
    if dtype == torch.float64:
        return 1e-10
    return max(1e-4, 10 * torch.finfo(dtype).eps)


def _is_bool(value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return True
    return (torch.is_tensor(value) and value.dtype == torch.bool) or (
        isinstance(value, np.ndarray) and value.dtype == np.bool_)


def _one_number(name: str, value):
    """Refuse what cannot stand for one real number; return ``value`` (a 0-d or one-element array unwrapped)."""
    if torch.is_tensor(value) or isinstance(value, np.ndarray):
        size = value.numel() if torch.is_tensor(value) else value.size
        if size != 1:
            raise ValueError(f"{name} must be a single number, got shape {tuple(value.shape)}")
        if _is_bool(value):
            raise ValueError(f"{name} must be a real number, got {value!r}")
        value = value.item()
    if value is None or isinstance(value, (str, bytes)) or _is_bool(value) or (
            isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    return value


def check_number(name: str, value) -> float:
    """``value`` as a ``float``; refuse anything but one real number (a string, None, a bool, a complex number, a
    tensor or array of several entries) with a ``ValueError`` that names ``name``. NaN and ±inf pass: each
    caller states its own range."""
    value = _one_number(name, value)
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"{name} must be a real number, got {type(value).__name__}") from err


def check_finite(name: str, value: torch.Tensor) -> None:
    """Refuse NaN or infinite entries."""
    if not torch.is_tensor(value):
        raise ValueError(f"{name} must be a tensor, got {type(value).__name__}")
    bad = ~torch.isfinite(value)
    if bad.any():
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name} must be finite (entry {index} is {value[index].item()})")


def check_positive(name: str, value) -> float:
    """Refuse a scalar that is not strictly positive and finite (or not a number at all)."""
    value = check_number(name, value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return value


def check_nonnegative(name: str, value) -> float:
    """Refuse a scalar that is negative, NaN or infinite (or not a number at all)."""
    value = check_number(name, value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be non-negative and finite, got {value}")
    return value


def check_probability(name: str, value) -> float:
    """Refuse a scalar outside [0, 1] (NaN included, or not a number at all)."""
    value = check_number(name, value)
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return value


def _count_rule(minimum: int | None) -> str:
    if minimum is None:
        return "an integer"
    if minimum == 1:
        return "a positive integer"
    if minimum == 0:
        return "a non-negative integer"
    return f"an integer >= {minimum}"


def check_count(name: str, value, minimum: int | None = 1) -> int:
    """``value`` as an ``int`` (a size, a count, a number of steps); refuse bools, non-integral or non-finite
    floats, strings and None, and values below ``minimum`` (no lower limit when None), with a ``ValueError``
    that names ``name``. Integral floats (``10.0``) and one-element integer tensors are accepted."""
    rule = _count_rule(minimum)
    try:
        number = _one_number(name, value)
    except ValueError as err:
        raise ValueError(f"{name} must be {rule}, got {value!r}") from err
    if not isinstance(number, numbers.Integral):
        try:
            real = float(number)
        except (TypeError, ValueError, OverflowError) as err:
            raise ValueError(f"{name} must be {rule}, got {type(value).__name__}") from err
        if not math.isfinite(real) or real != math.floor(real):
            raise ValueError(f"{name} must be {rule}, got {value!r}")
        number = real
    number = int(number)
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be {rule}, got {number}")
    return number


def check_count_or_inf(name: str, value, minimum: int = 1) -> int | float:
    """:func:`check_count`, or ``math.inf`` for the number ``+inf`` (a training-set size ``n = math.inf`` means
    streaming); the message names both forms."""
    if isinstance(value, (float, np.floating)) and value == math.inf:
        return math.inf
    try:
        return check_count(name, value, minimum)
    except ValueError as err:
        raise ValueError(f"{name} must be {_count_rule(minimum)} or math.inf (streaming), got {value!r}") from err


def check_seed(name: str, value) -> int:
    """A seed for ``torch.Generator.manual_seed``: an integer in ``[-2**63, 2**64)``."""
    seed = check_count(name, value, minimum=None)
    if not _SEED_RANGE[0] <= seed <= _SEED_RANGE[1]:
        raise ValueError(f"{name} must be an integer in [-2**63, 2**64), got {seed}")
    return seed


def check_float_dtype(name: str, dtype) -> torch.dtype:
    """Refuse anything but a real floating-point ``torch.dtype`` (integer and bool dtypes cannot hold
    probabilities or parameters)."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating-point torch.dtype, got {dtype!r}")
    return dtype


def check_generator(name: str, generator) -> None:
    """Refuse anything but a ``torch.Generator`` or None."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"{name} must be a torch.Generator or None, got {type(generator).__name__}")


def describe(value) -> str:
    """What an error message says a value was: its shape for a tensor, else its type's name."""
    return f"shape {tuple(value.shape)}" if torch.is_tensor(value) else type(value).__name__


def check_matrix_rows(name: str, value: torch.Tensor, rows: int | None = None, cols: int | None = None) -> None:
    """Refuse anything but a finite 2-D tensor of the stated shape."""
    _check_shape(name, value, rows, cols)
    check_finite(name, value)


def _check_shape(name: str, value: torch.Tensor, rows: int | None, cols: int | None) -> None:
    if not torch.is_tensor(value):
        raise ValueError(f"{name} must be a tensor, got {type(value).__name__}")
    if value.dim() != 2:
        raise ValueError(f"{name} must be 2-D (n, k), got shape {tuple(value.shape)}")
    if rows is not None and value.shape[0] != rows:
        raise ValueError(f"{name} must have {rows} rows to match the inputs, got {value.shape[0]}")
    if cols is not None and value.shape[1] != cols:
        raise ValueError(f"{name} must have {cols} columns, got {value.shape[1]}")


def check_simplex(name: str, probs: torch.Tensor, rows: int | None = None, cols: int | None = None, *,
                  allow_empty: bool = False) -> None:
    """Refuse ``probs`` unless it is a floating-point ``(n, K)`` tensor with finite non-negative rows that sum
    to one, and (unless ``allow_empty``) at least one row. One host-device synchronisation when it passes."""
    _check_shape(name, probs, rows, cols)
    if not probs.is_floating_point():
        raise ValueError(f"{name} must have a floating-point dtype, got {probs.dtype}")
    if not allow_empty and probs.shape[0] == 0:
        raise ValueError(f"{name} must have at least one row, got shape {tuple(probs.shape)}")
    tol = _tolerance(probs.dtype)
    negative = probs < -tol
    sums = probs.sum(dim=1)
    off = ~((sums - 1).abs() <= tol * max(1, probs.shape[1]))  # also true for a row holding NaN or ±inf
    if not bool(off.any() | negative.any()):
        return
    check_finite(name, probs)
    if negative.any():
        row, col = (int(i) for i in negative.nonzero()[0])
        raise ValueError(f"{name} must be non-negative (row {row}, class {col} is {probs[row, col].item():.3g})")
    row = int(off.nonzero()[0])
    raise ValueError(f"{name} rows must sum to 1 (row {row} sums to {sums[row].item():.6g})")
