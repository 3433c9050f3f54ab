"""Students and small teachers: modules that map ``(n, d)`` inputs to ``(n, K)`` logits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from sgdbound._checks import check_count, check_finite, check_float_dtype

__all__ = ["LinearSoftmax", "MLP", "ACTIVATIONS", "hidden_widths"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
}


def _check_dtype(dtype) -> None:
    if dtype is not None:
        check_float_dtype("dtype", dtype)


def hidden_widths(hidden) -> list[int]:
    """``hidden`` (one width or a sequence of widths) as a list of positive ints, or a ``ValueError`` naming it."""
    scalar = (torch.is_tensor(hidden) or isinstance(hidden, np.ndarray)) and hidden.ndim == 0
    if isinstance(hidden, (str, bytes)) or scalar or not isinstance(hidden, Iterable):
        items, single = [hidden], True
    else:
        items, single = list(hidden), False
    try:
        return [check_count("hidden", h) for h in items]
    except ValueError as err:
        got = hidden if single else list(hidden)
        raise ValueError(f"hidden widths must be positive integers, got {got!r}") from err


class LinearSoftmax(nn.Module):
    """Multinomial logistic regression, ``logits = x Wᵀ + b``.

    Parameters are stored as ``weight`` ``(K, d)`` and ``bias`` ``(K,)`` (state dict keys ``weight`` and
    ``bias``). The softmax is left to the loss: ``forward`` returns logits.
    """

    def __init__(self, dim: int, num_classes: int, *, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None):
        super().__init__()
        dim, num_classes = check_count("dim", dim), check_count("num_classes", num_classes, 2)
        _check_dtype(dtype)
        self.dim, self.num_classes = dim, num_classes
        self.weight = nn.Parameter(torch.zeros(num_classes, dim, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.zeros(num_classes, dtype=dtype, device=device))

    @classmethod
    def from_params(cls, weight: torch.Tensor, bias: torch.Tensor) -> LinearSoftmax:
        """A student holding a copy of ``weight`` ``(K, d)`` and ``bias`` ``(K,)``."""
        for name, value in (("weight", weight), ("bias", bias)):
            if not torch.is_tensor(value) or not value.is_floating_point():
                raise ValueError(f"{name} must be a floating-point tensor, got "
                                 f"{value.dtype if torch.is_tensor(value) else type(value).__name__}")
        if weight.dim() != 2 or bias.shape != weight.shape[:1]:
            raise ValueError(f"weight must be (K, d) and bias (K,), got {tuple(weight.shape)} and {tuple(bias.shape)}")
        check_finite("weight", weight.detach())
        check_finite("bias", bias.detach())
        model = cls(weight.shape[1], weight.shape[0], dtype=weight.dtype, device=weight.device)
        with torch.no_grad():
            model.weight.copy_(weight)
            model.bias.copy_(bias)
        return model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T + self.bias

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_classes={self.num_classes}"


class MLP(nn.Module):
    """A fully connected network ``d → hidden… → K`` returning logits.

    ``hidden`` is one width or a sequence of widths (``(128, 128)`` is the official notebook's
    30-128-128-5 network); ``activation`` is a name from ``ACTIVATIONS``. The last layer is ``self.head``.
    """

    def __init__(self, dim: int, num_classes: int, hidden: int | Sequence[int] = (128, 128),
                 activation: str = "relu", *, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None):
        super().__init__()
        dim, num_classes = check_count("dim", dim), check_count("num_classes", num_classes, 2)
        widths = hidden_widths(hidden)
        _check_dtype(dtype)
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        layers: list[nn.Module] = []
        previous = dim
        for width in widths:
            layers += [nn.Linear(previous, width, dtype=dtype, device=device), ACTIVATIONS[activation]()]
            previous = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(previous, num_classes, dtype=dtype, device=device)
        self.dim, self.num_classes, self.hidden, self.activation = dim, num_classes, tuple(widths), activation

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer ``(n, hidden[-1])``."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
