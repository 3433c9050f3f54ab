"""Teacher and student networks for the small datasets.

Every net maps flat inputs ``(n, d)`` to logits ``(n, K)``, exposes ``features(x)`` ``(n, h)`` (the last hidden
layer) and ``head`` (the last ``nn.Linear``, registered last so that last-layer Laplace finds it), and applies
``dropout`` (0 by default) to the features just before the head: that is where the MC-dropout teacher samples,
so its ``S`` samples reuse one pass through the body.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod

import torch
from torch import nn

__all__ = ["MLPNet", "CNN1d", "CNN2d", "NETS", "make_net"]


class _FeatureNet(nn.Module):
    head: nn.Linear
    drop: nn.Dropout

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))


class MLPNet(_FeatureNet):
    """``d → hidden… → K`` with ReLU; ``input_shape`` is accepted for a uniform factory and ignored."""

    def __init__(self, dim: int, num_classes: int, hidden: int | Sequence[int] = (128, 128), dropout: float = 0.0,
                 input_shape: tuple[int, ...] | None = None):
        super().__init__()
        widths = [int(hidden)] if isinstance(hidden, int) else [int(h) for h in hidden]
        layers: list[nn.Module] = []
        previous = dim
        for width in widths:
            layers += [nn.Linear(previous, width), nn.ReLU()]
            previous = width
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(previous, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class CNN1d(_FeatureNet):
    """A small 1-D CNN for sequences ``(n, L)``: three 3-wide convolutions (stride 2 on the last two), then a
    ``hidden``-wide dense layer and the head."""

    def __init__(self, dim: int, num_classes: int, channels: int = 32, hidden: int = 64, dropout: float = 0.0,
                 input_shape: tuple[int, ...] | None = None):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(1, channels, 5, padding=2), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
        )
        with torch.no_grad():
            flat = self.body(torch.zeros(1, 1, dim)).numel()
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU())
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.body(x[:, None, :]))


class CNN2d(_FeatureNet):
    """A small 2-D CNN for images held flat, viewed as ``input_shape = (H, W)`` (8×8 digits): two 3×3
    convolutions with 2×2 max-pooling, a ``hidden``-wide dense layer and the head."""

    def __init__(self, dim: int, num_classes: int, channels: int = 16, hidden: int = 64, dropout: float = 0.0,
                 input_shape: tuple[int, ...] | None = None):
        super().__init__()
        if input_shape is None or len(input_shape) != 2 or prod(input_shape) != dim:
            raise ValueError(f"CNN2d needs input_shape (H, W) with H·W = dim = {dim}, got {input_shape}")
        self.input_shape = tuple(input_shape)
        self.body = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        with torch.no_grad():
            flat = self.body(torch.zeros(1, 1, *self.input_shape)).numel()
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU())
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.body(x.view(x.shape[0], 1, *self.input_shape)))


NETS: dict[str, Callable[..., _FeatureNet]] = {"mlp": MLPNet, "cnn1d": CNN1d, "cnn2d": CNN2d}


def make_net(name: str, dim: int, num_classes: int, input_shape: tuple[int, ...] | None = None,
             **options) -> _FeatureNet:
    """A net by registry name. ``"cnn"`` picks ``cnn1d`` for 1-D inputs and ``cnn2d`` for 2-D ones."""
    if name == "cnn":
        name = "cnn2d" if input_shape is not None and len(input_shape) == 2 else "cnn1d"
    if name not in NETS:
        raise ValueError(f"unknown net {name!r}; valid: cnn, {', '.join(sorted(NETS))}")
    return NETS[name](dim, num_classes, input_shape=input_shape, **options)
