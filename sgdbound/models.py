"""Students and small teachers: modules that map ``(n, d)`` inputs to ``(n, K)`` logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["LinearSoftmax", "MLP", "ACTIVATIONS"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
}


class LinearSoftmax(nn.Module):
    """Multinomial logistic regression, ``logits = x Wᵀ + b``.

    Parameters are stored as ``weight`` ``(K, d)`` and ``bias`` ``(K,)`` (state dict keys ``weight`` and
    ``bias``). The softmax is left to the loss: ``forward`` returns logits.
    """

    def __init__(self, dim: int, num_classes: int, *, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None):
        super().__init__()
        if dim < 1 or num_classes < 2:
            raise ValueError(f"dim must be >= 1 and num_classes >= 2, got dim={dim}, num_classes={num_classes}")
        self.dim, self.num_classes = int(dim), int(num_classes)
        self.weight = nn.Parameter(torch.zeros(num_classes, dim, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.zeros(num_classes, dtype=dtype, device=device))

    @classmethod
    def from_params(cls, weight: torch.Tensor, bias: torch.Tensor) -> LinearSoftmax:
        """A student holding a copy of ``weight`` ``(K, d)`` and ``bias`` ``(K,)``."""
        if weight.dim() != 2 or bias.shape != weight.shape[:1]:
            raise ValueError(f"weight must be (K, d) and bias (K,), got {tuple(weight.shape)} and {tuple(bias.shape)}")
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
        widths = [int(hidden)] if isinstance(hidden, int) else [int(h) for h in hidden]
        if any(w < 1 for w in widths):
            raise ValueError(f"hidden widths must be positive, got {widths}")
        if activation not in ACTIVATIONS:
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
