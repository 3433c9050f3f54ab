"""Students for many replicas at once: parameters carry a leading replica axis ``N``.

Forward and backward are written out with batched matrix products (``baddbmm``/``bmm``), so one step of
``N`` replicas costs a few kernel launches whatever ``N`` is. The cross-entropy's logit gradient uses the
full formula ``r = (Σ t) q − t`` (targets off the simplex are allowed).
"""

from __future__ import annotations

import math

import torch

__all__ = ["BatchedLinear", "BatchedMLP", "ACTIVATION_GRADS", "flat_views"]


def _relu(a):
    return torch.relu(a)


def _relu_backward(delta, a, h):
    return torch.ops.aten.threshold_backward(delta, h, 0)  # δ where h > 0, else 0: one kernel


def _tanh(a):
    return torch.tanh(a)


def _tanh_backward(delta, a, h):
    return torch.ops.aten.tanh_backward(delta, h)


def _softplus_backward(delta, a, h):
    return delta * torch.sigmoid(a)


ACTIVATION_GRADS = {  # name: (activation, backward(δ, pre-activation, post-activation))
    "relu": (_relu, _relu_backward),
    "tanh": (_tanh, _tanh_backward),
    "softplus": (torch.nn.functional.softplus, _softplus_backward),
}


class BatchedLinear:
    """``N`` linear-softmax students: ``weight`` ``(N, K, d)`` and ``bias`` ``(N, K)`` (the ``LinearSoftmax`` layout).

    With one example per replica the logits are an elementwise product summed over ``d`` (twice as fast as a
    batched ``matmul`` of ``(1, d) @ (d, K)`` blocks here) and the weight gradient an outer product.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        self.params = [weight, bias]

    @property
    def weight(self) -> torch.Tensor:
        return self.params[0]

    @property
    def bias(self) -> torch.Tensor:
        return self.params[1]

    @classmethod
    def init(cls, n: int, dim: int, num_classes: int, init, generator, device, dtype) -> BatchedLinear:
        if isinstance(init, tuple):
            weight, bias = init
            w = weight.to(device=device, dtype=dtype).expand(n, num_classes, dim).clone()
            return cls(w, bias.to(device=device, dtype=dtype).expand(n, num_classes).clone())
        if init == "random":
            scale = 1 / math.sqrt(dim)
            w = scale * torch.randn(n, num_classes, dim, generator=generator, device=device, dtype=dtype)
            b = scale * torch.randn(n, num_classes, generator=generator, device=device, dtype=dtype)
            return cls(w, b)
        raise ValueError(f"init must be 'optimum', 'random' or a (weight, bias) tuple, got {init!r}")

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(N, m, d)`` → ``(N, m, K)``."""
        if x.shape[1] == 1:
            return ((self.params[0] * x).sum(-1) + self.params[1])[:, None, :]
        return torch.baddbmm(self.params[1][:, None, :], x, self.params[0].transpose(1, 2))

    def gradients(self, x: torch.Tensor, residual: torch.Tensor) -> list[torch.Tensor]:
        """Mean-over-batch gradients for the logit residual ``r`` ``(N, b, K)``."""
        if x.shape[1] == 1:  # one example per replica: an outer product, cheaper elementwise than bmm
            return [residual.transpose(1, 2) * x, residual[:, 0]]
        scaled = residual / x.shape[1]
        if x.shape[1] * x.shape[2] * residual.shape[2] <= 4096:  # tiny matrices: bmm's per-matrix overhead dominates
            return [(scaled[..., :, None] * x[..., None, :]).sum(1), scaled.sum(1)]
        return [torch.bmm(scaled.transpose(1, 2), x), scaled.sum(1)]

    def params_for(self, chunk: slice) -> BatchedLinear:
        return BatchedLinear(self.params[0][chunk], self.params[1][chunk])


class BatchedMLP:
    """``N`` MLPs ``d → hidden… → K``: weights ``(N, in, out)``, biases ``(N, out)``; the last pair is the head.

    ``init`` lays every replica's parameters out contiguously in one ``flat`` ``(N, P)`` tensor (replica-major;
    ``params`` are views of it), so that a group of replicas is one contiguous block of memory and an optimiser can
    update all its parameters in one pass (``BatchedSGD(params, flat=flat)``).
    """

    def __init__(self, params: list[torch.Tensor], activation: str, flat: torch.Tensor | None = None):
        if activation not in ACTIVATION_GRADS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATION_GRADS)} for the simulator, "
                             f"got {activation!r}")
        self.params, self.activation, self.flat = params, activation, flat
        self._act, self._act_backward = ACTIVATION_GRADS[activation]
        self._weights = params[0::2]
        self._weights_t = [w.transpose(1, 2) for w in self._weights]  # for δ Wᵀ in the backward pass
        self._biases = [b[:, None, :] for b in params[1::2]]  # (N, 1, out), broadcast over the batch

    @classmethod
    def init(cls, n: int, widths: list[int], activation: str, init, generator, device, dtype) -> BatchedMLP:
        """PyTorch's default ``nn.Linear`` initialisation, independently per replica (``init="random"``), or a
        given ``nn.Module``-style list ``[(weight (out, in), bias (out,)), ...]`` copied to every replica."""
        params = []
        if isinstance(init, (list, tuple)) and init and isinstance(init[0], tuple):
            for weight, bias in init:
                params += [weight.to(device=device, dtype=dtype).T.expand(n, *weight.T.shape),
                           bias.to(device=device, dtype=dtype).expand(n, bias.numel())]
        elif init != "random":
            raise ValueError(f"MLP students start from init='random' or a list of (weight, bias); got {init!r}")
        else:
            for fan_in, fan_out in zip(widths[:-1], widths[1:]):
                bound = 1 / math.sqrt(fan_in)
                w = (2 * torch.rand(n, fan_in, fan_out, generator=generator, device=device, dtype=dtype) - 1) * bound
                b = (2 * torch.rand(n, fan_out, generator=generator, device=device, dtype=dtype) - 1) * bound
                params += [w, b]
        flat = torch.empty(n, sum(p[0].numel() for p in params), device=device, dtype=dtype)
        views = flat_views(flat, [p.shape[1:] for p in params])
        for view, p in zip(views, params):
            view.copy_(p)
        return cls(views, activation, flat)

    def _forward(self, x: torch.Tensor):
        pre, post = [], [x]
        h = x
        layers = len(self._weights)
        for i in range(layers):
            a = torch.baddbmm(self._biases[i], h, self._weights[i])
            if i == layers - 1:
                return a, pre, post
            h = self._act(a)
            pre.append(a)
            post.append(h)
        raise AssertionError("unreachable")

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)[0]

    def forward_with_cache(self, x: torch.Tensor):
        return self._forward(x)

    def gradients_from_cache(self, cache, residual: torch.Tensor) -> list:
        """Mean-over-batch gradients for the logit residual ``r`` ``(N, b, K)``: each weight gradient is returned
        factored, ``(hᵀ (N, in, b), δ (N, b, out))`` for ``hᵀ δ`` (an outer product when ``b = 1``), so that the
        optimiser can fold it into its update without materialising it (see ``sgdbound.sim.optim``)."""
        _, pre, post = cache
        single = residual.shape[1] == 1
        delta = residual if single else residual / residual.shape[1]
        layers = len(self._weights)
        grads: list = [None] * (2 * layers)
        for i in reversed(range(layers)):
            grads[2 * i] = (post[i].transpose(1, 2), delta)
            grads[2 * i + 1] = delta[:, 0] if single else delta.sum(1)
            if i:
                delta = self._act_backward(torch.bmm(delta, self._weights_t[i]), pre[i - 1], post[i])
        return grads

    def params_for(self, chunk: slice) -> BatchedMLP:
        return BatchedMLP([p[chunk] for p in self.params], self.activation,
                          None if self.flat is None else self.flat[chunk])


def flat_views(flat: torch.Tensor, shapes: list) -> list[torch.Tensor]:
    """Views ``(N, *shape)`` of consecutive segments of each row of ``flat`` ``(N, P)``, one per shape."""
    views, offset = [], 0
    for shape in shapes:
        size = math.prod(shape)
        views.append(flat[:, offset:offset + size].unflatten(1, tuple(shape)))
        offset += size
    if offset != flat.shape[1]:
        raise ValueError(f"flat has {flat.shape[1]} columns but the shapes need {offset}")
    return views
