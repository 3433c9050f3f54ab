"""What a run's ``precision`` setting means on its device: one small object that every CIFAR code path asks.

``auto`` is bf16 on CUDA and float32 on the CPU; ``bf16`` and ``fp32`` choose on any device (``bf16`` on the CPU
runs the CUDA fast path's code, slowly: what the tests use to exercise it without a GPU). With bf16: the forward
passes run under ``torch.autocast(device, bfloat16)``, networks and batches are ``channels_last`` and the
device-resident batches are bf16; losses, metrics and the optimiser state stay float32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Precision"]


@dataclass(frozen=True)
class Precision:
    """``device`` and whether it runs in bf16 (with channels_last)."""

    device: torch.device
    bf16: bool

    @classmethod
    def of(cls, precision: str | bool | None, device: torch.device | str) -> Precision:
        """From a setting: ``auto``/None (bf16 on CUDA only), ``bf16``/True, ``fp32``/False."""
        device = torch.device(device)
        if precision in ("auto", None):
            return cls(device, device.type == "cuda")
        if precision in ("bf16", True):
            return cls(device, True)
        if precision in ("fp32", False):
            return cls(device, False)
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")

    @property
    def batch_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.bf16 else torch.float32

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.bf16 else torch.contiguous_format

    def autocast(self):
        """bf16 autocast on the device, or nothing."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def prepare(self, net: nn.Module) -> nn.Module:
        """``net`` on the device, channels_last when bf16 (weights stay float32: autocast casts them)."""
        return net.to(device=self.device, memory_format=self.memory_format)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """A float image batch ``(n, 3, H, W)`` in the batch dtype and memory format, on the device."""
        x = x.to(device=self.device, dtype=self.batch_dtype)
        return x.contiguous(memory_format=self.memory_format)
