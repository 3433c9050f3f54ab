"""Monte Carlo logit samples of a variational network in one batched forward pass.

A variational network draws one weight sample per call, for the whole batch, in each of its *sampled layers*, so
``S`` samples are ``S`` forward passes. Two kinds of sampled layer are known here:

* bayesian-torch's mean-field layers as ``bayesian_torch.models.dnn_to_bnn.dnn_to_bnn`` (type
  ``"Reparameterization"``) builds them: each computes ``σ = log1p(exp(ρ))``, fills its ``eps`` buffer(s) in place
  with ``N(0, 1)`` draws from the global generator of their device (``eps_weight`` or ``eps_kernel``, then
  ``eps_bias``) and uses ``w = μ + σ · ε``;
* any layer that implements :class:`SampledLayer`, such as the inducing-weight layers of
  ``sgdbound.cifar.inducing`` (five ``N(0, 1)`` tensors per call, turned into the weight matrix by Matheron's rule).

:func:`vi_logit_samples` draws the ``S`` weight samples itself and runs them through a *plain twin* of the
network (each sampled layer replaced by the ``nn.Linear`` / ``nn.Conv{1,2,3}d`` of the same stride, padding,
dilation, groups and bias; everything else shared, BatchNorm included) in one ``torch.func.vmap`` over
``torch.func.functional_call``: the input is shared by the samples (``in_dims=None``), the sampled weights are
stacked ``(S, *shape)``. The twin is built once per network (cached, rebuilt when its modules, parameters or
buffers change identity).

The draws are the layers' own: sample by sample, layer by layer in the order the forward calls them (traced once
per network), each layer's noise drawn by the same calls, in the same order, with the same shapes, dtype, device
(and, for bayesian-torch, memory format) as one call of the layer draws it; only the weights are then computed for
all ``S`` at once (the inducing layers' Cholesky factors once). From the same generator state the batched samples
are therefore the samples of the ``S``-pass loop, up to floating-point reassociation (tested), ``S`` samples are
the first ``S`` of more, and they do not depend on ``max_batch_samples``: switching between the two paths changes
no result beyond rounding.

Layering. This module knows bayesian-torch (through a small adapter, imported lazily; bayesian-torch is optional)
and otherwise only the :class:`SampledLayer` protocol: a layer says itself what its plain twin is, what noise one
call draws and how stacked noise becomes stacked weights. ``sgdbound.cifar.inducing`` implements the protocol
without importing this module, and this module never imports ``sgdbound.cifar``: a new kind of sampled layer
needs no change here (structural typing rather than a registry, so there is no import-time registration either).

Speed (``benchmarks/bench_vi.py``, one CPU thread): on the CPU the batched pass is *slower* than the loop (about
2× for a mean-field CIFAR WRN-16-2 at ``S = 10``, ``n = 100``; 1.6× for an inducing-weight WRN-16-1 at ``S = 4``,
``n = 50``: the convolutions are compute-bound and the batched ones, grouped convolutions behind vmap, pay for
layout copies), so ``method="auto"`` loops on the CPU and batches on accelerators, where ``S`` small passes are
launch-bound.

Under ``torch.autocast`` the weights are computed in the parameters' precision (autocast disabled, as the inducing
layers' own forward does: a bf16 Gram matrix is not positive definite), then the batched path casts the input,
the sampled weights and the shared floating tensors (BatchNorm's affine parameters and running statistics) to the
autocast dtype itself: under vmap, autocast leaves convolutions in float32 and BatchNorm's batching rule refuses a
bf16 input with float32 statistics. The result matches the loop under autocast to the autocast dtype's precision
(BatchNorm then runs on bf16 statistics).

Supported: :class:`SampledLayer` layers, and ``LinearReparameterization`` and ``Conv{1,2,3}dReparameterization``
as ``dnn_to_bnn`` builds them (``dnn_to_bnn_flag`` set, so their forward returns the output alone, not
``(output, kl)``), mixed freely. A network with another stochastic bayesian-torch layer (Flipout, LSTM,
ConvTranspose, quantised layers), with a sampled layer called more than once per forward, or with no sampled layer
at all is sampled by the loop under ``auto`` (with a warning in the first two cases) and refused with a
``ValueError`` under ``method="batched"`` or with ``eps``.
"""

from __future__ import annotations

import copy
import warnings
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

import torch
from torch import nn
from torch.func import functional_call, vmap

__all__ = ["VIMethod", "LOOP_DEVICES", "SampledLayer", "vi_logit_samples", "vi_logit_samples_loop", "vi_eps_names",
           "batched_supported"]


class VIMethod(str, Enum):
    """How :func:`vi_logit_samples` computes the ``S`` samples."""

    AUTO = "auto"
    """Batched when the network allows it (see :func:`batched_supported`), else the ``S``-pass loop; without
    ``eps``, the loop on the :data:`LOOP_DEVICES` (the CPU), where it is as fast and draws the same noise."""
    BATCHED = "batched"
    """One vmapped forward pass per group of ``max_batch_samples`` samples; ``ValueError`` if unsupported."""
    LOOP = "loop"
    """``S`` calls of the network's own forward (each layer draws its weights): the reference."""


@runtime_checkable
class SampledLayer(Protocol):
    """A layer that draws new weights at each call, in the form :func:`vi_logit_samples` batches.

    One call of the layer must be: draw the noise of :meth:`vi_draw_noise`, compute the weights as
    :meth:`vi_weights` does (for ``S = 1``) and apply them as :meth:`vi_plain_layer` would.
    """

    def vi_plain_layer(self) -> nn.Module:
        """The deterministic layer (any device, e.g. ``meta``: its parameters are always replaced) whose parameters
        are the keys of :meth:`vi_weights`."""

    def vi_noise_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{name: shape}`` of the noise one call draws, in the order it draws it."""

    def vi_draw_noise(self) -> dict[str, torch.Tensor]:
        """One call's noise, drawn by the very calls the forward makes (generator, shapes, dtype, device, order),
        so the generator advances exactly as one forward pass advances it."""

    def vi_weights(self, noise: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The plain layer's parameters ``{name: (S, *shape)}`` from ``noise`` ``{name: (S, *noise shape)}``
        (called with autocast disabled; the result stays in the parameters' precision)."""

    def vi_mean_weights(self) -> dict[str, torch.Tensor]:
        """The plain layer's parameters at the posterior mean (unbatched): used once, to trace the call order."""


class _MeanField:
    """:class:`SampledLayer` view of a bayesian-torch Reparameterization layer: noise ``eps_weight`` (or
    ``eps_kernel``) then ``eps_bias``, each drawn by ``normal_`` into a tensor like the buffer; ``w = μ + log1p(exp(ρ))
    · ε``."""

    def __init__(self, layer: nn.Module, plain: type):
        self.layer, self.plain = layer, plain
        kernel = "weight" if hasattr(layer, "mu_weight") else "kernel"
        # (the twin's parameter, the eps buffer's name = the noise's name, the mean, the rho)
        self.draws = [("weight", f"eps_{kernel}", f"mu_{kernel}", f"rho_{kernel}")]
        if layer.mu_bias is not None:
            self.draws.append(("bias", "eps_bias", "mu_bias", "rho_bias"))

    def vi_plain_layer(self) -> nn.Module:
        layer, bias = self.layer, self.layer.mu_bias is not None
        if self.plain is nn.Linear:
            return nn.Linear(layer.in_features, layer.out_features, bias=bias, device="meta")
        return self.plain(layer.in_channels, layer.out_channels, tuple(layer.mu_kernel.shape[2:]), stride=layer.stride,
                          padding=layer.padding, dilation=layer.dilation, groups=layer.groups, bias=bias,
                          device="meta")

    def vi_noise_shapes(self) -> dict[str, tuple[int, ...]]:
        return {eps: tuple(getattr(self.layer, eps).shape) for _, eps, _, _ in self.draws}

    def vi_draw_noise(self) -> dict[str, torch.Tensor]:
        return {eps: torch.empty_like(getattr(self.layer, eps)).normal_() for _, eps, _, _ in self.draws}

    def vi_weights(self, noise: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for name, eps, mu, rho in self.draws:
            mu, rho = getattr(self.layer, mu), getattr(self.layer, rho)
            out[name] = mu + torch.log1p(torch.exp(rho)) * noise[eps].to(mu.device)
        return out

    def vi_mean_weights(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self.layer, mu) for name, _, mu, _ in self.draws}


@dataclass(frozen=True)
class _Twin:
    signature: tuple
    module: nn.Module | None  # None: batched sampling unsupported (``reason`` says why)
    layers: dict[str, SampledLayer]  # every supported sampled layer, by path
    reason: str = ""
    stochastic: bool = True  # whether the net has any sampled (or bayesian-torch) layer
    order: tuple[str, ...] | None = None  # the sampled layers in the order the forward calls them; None until traced


#: Device types where ``method="auto"`` keeps the ``S``-pass loop (as fast there, see the module docstring).
LOOP_DEVICES: tuple[str, ...] = ("cpu",)

_TWINS: weakref.WeakKeyDictionary[nn.Module, _Twin] = weakref.WeakKeyDictionary()


def _bayesian_torch() -> tuple[type | None, dict[type, type]]:
    """bayesian-torch's variational base class and its supported layers with their plain classes (None, {} when
    bayesian-torch is not installed: networks of :class:`SampledLayer` layers do not need it)."""
    try:
        from bayesian_torch.layers.base_variational_layer import BaseVariationalLayer_
        from bayesian_torch.layers.variational_layers import conv_variational, linear_variational
    except ImportError:
        return None, {}
    return BaseVariationalLayer_, {linear_variational.LinearReparameterization: nn.Linear,
                                   conv_variational.Conv1dReparameterization: nn.Conv1d,
                                   conv_variational.Conv2dReparameterization: nn.Conv2d,
                                   conv_variational.Conv3dReparameterization: nn.Conv3d}


def _join(path: str, name: str) -> str:
    """``"path.name"``; ``name`` alone for the root module (``path == ""``)."""
    return f"{path}.{name}" if path else name


def _signature(net: nn.Module) -> tuple:
    return (tuple((name, id(m)) for name, m in net.named_modules()),
            tuple(id(t) for t in (*net.parameters(), *net.buffers())))


def _build_twin(net: nn.Module, signature: tuple) -> _Twin:
    base, plain_of = _bayesian_torch()
    layers: dict[str, SampledLayer] = {}
    reason, stochastic = "", False
    for name, m in net.named_modules():
        if isinstance(m, SampledLayer):
            layers[name], stochastic = m, True
        elif base is not None and isinstance(m, base):
            stochastic = True
            if type(m) not in plain_of:
                reason = reason or (f"layer {name!r} is a {type(m).__name__} (batched sampling supports "
                                    f"{', '.join(c.__name__ for c in plain_of)} and SampledLayer layers)")
            elif not m.dnn_to_bnn_flag:
                reason = reason or f"layer {name!r} was not built by dnn_to_bnn (its forward returns (output, kl))"
            else:
                layers[name] = _MeanField(m, plain_of[type(m)])
    if not stochastic:
        reason = "the network has no bayesian-torch layer and no other sampled layer (SampledLayer)"
    if reason:
        return _Twin(signature, None, layers, reason, stochastic=stochastic)
    # share every tensor with the net and put each sampled layer's plain twin in its place (the memo maps each
    # tensor to itself, each sampled layer to its twin): only the rest of the module tree is copied
    memo = {id(t): t for t in (*net.parameters(), *net.buffers())}
    memo.update({id(net.get_submodule(name)): layer.vi_plain_layer() for name, layer in layers.items()})
    return _Twin(signature, copy.deepcopy(net, memo).eval(), layers)


def _twin(net: nn.Module) -> _Twin:
    signature = _signature(net)
    cached = _TWINS.get(net)
    if cached is None or cached.signature != signature:
        cached = _TWINS[net] = _build_twin(net, signature)
    return cached


def _shared_state(net: nn.Module, layers: Mapping[str, SampledLayer]) -> dict[str, torch.Tensor]:
    """The net's parameters and buffers outside the sampled layers (BatchNorm and the like), by name."""
    prefixes = tuple(_join(name, "") for name in layers)  # "" (the net is a sampled layer): everything
    return {name: t for name, t in (*net.named_parameters(), *net.named_buffers()) if not name.startswith(prefixes)}


def _trace(net: nn.Module, twin: _Twin, x: torch.Tensor) -> _Twin:
    """The order the forward calls the sampled layers, hence draws their noise (one deterministic pass of the twin
    at the posterior means on ``x[:1]``)."""
    calls: list[str] = []
    hooks = [twin.module.get_submodule(name).register_forward_pre_hook(lambda *_, name=name: calls.append(name))
             for name in twin.layers]
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):  # as the weights (module docstring)
        means = {_join(name, key): w for name, layer in twin.layers.items()
                 for key, w in layer.vi_mean_weights().items()}
    try:
        with torch.no_grad():
            functional_call(twin.module, (_shared_state(net, twin.layers), means), (x[:1],))
    finally:
        for hook in hooks:
            hook.remove()
    repeated = sorted({name for name in calls if calls.count(name) > 1})
    if repeated:
        twin = _Twin(twin.signature, None, twin.layers, f"layer(s) {repeated} are called more than once per "
                                                        "forward (a sampled layer draws anew at each call)")
    else:
        twin = _Twin(twin.signature, twin.module, twin.layers, order=tuple(calls))
    _TWINS[net] = twin
    return twin


def batched_supported(net: nn.Module) -> tuple[bool, str]:
    """Whether :func:`vi_logit_samples` can batch ``net`` (before the forward is traced), and why not."""
    twin = _twin(net)
    return twin.module is not None, twin.reason


def vi_eps_names(net: nn.Module) -> list[str]:
    """The names of the noise tensors of the net's supported sampled layers, ``"path.name"``: bayesian-torch's eps
    buffers (``eps_weight``, ``eps_kernel``, ``eps_bias``), the inducing layers' ``eps_u``, ``e1`` … ``e4``: the
    keys ``eps=`` of :func:`vi_logit_samples` takes."""
    return [_join(path, name) for path, layer in _twin(net).layers.items() for name in layer.vi_noise_shapes()]


def vi_logit_samples_loop(net: nn.Module, x: torch.Tensor, samples: int) -> torch.Tensor:
    """The reference: ``S`` forward passes of ``net`` (its layers draw each pass's weights), ``(S, n, K)``."""
    return torch.stack([net(x) for _ in range(samples)])


def _check(net: nn.Module, samples: int, max_batch_samples: int | None) -> None:
    if net.training:
        raise ValueError("net must be in eval mode (net.eval()): in training mode BatchNorm would use batch "
                         "statistics and update its running ones")
    if isinstance(samples, bool) or int(samples) != samples or samples < 1:
        raise ValueError(f"samples (S) must be an integer >= 1, got {samples!r}")
    if max_batch_samples is not None and (isinstance(max_batch_samples, bool)
                                          or int(max_batch_samples) != max_batch_samples or max_batch_samples < 1):
        raise ValueError(f"max_batch_samples must be None or an integer >= 1, got {max_batch_samples!r}")


def _draw_noise(twin: _Twin, count: int) -> dict[str, dict[str, torch.Tensor]]:
    """``count`` samples ``{path: {name: (count, *shape)}}`` of every layer's noise, drawn as ``count`` forward
    passes draw it: sample by sample, layer by layer in call order, each by the layer's own draw."""
    drawn: dict[str, list[dict[str, torch.Tensor]]] = {path: [] for path in twin.order}
    for _ in range(count):
        for path in twin.order:
            drawn[path].append(twin.layers[path].vi_draw_noise())
    return {path: {name: torch.stack([d[name] for d in draws]) for name in draws[0]} for path, draws in drawn.items()}


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.to(dtype) if t.is_floating_point() else t


def _check_eps(eps: Mapping[str, torch.Tensor], twin: _Twin, samples: int) -> None:
    shapes = {_join(path, name): shape for path in twin.order
              for name, shape in twin.layers[path].vi_noise_shapes().items()}
    allowed = {_join(path, name) for path, layer in twin.layers.items() for name in layer.vi_noise_shapes()}
    missing, unexpected = sorted(set(shapes) - set(eps)), sorted(set(eps) - allowed)  # uncalled layers: ignored
    if missing or unexpected:
        raise ValueError(f"eps must have one entry per noise tensor of the sampled layers, see vi_eps_names "
                         f"(missing: {missing}; unexpected: {unexpected})")
    for name in sorted(shapes):
        want = (samples, *shapes[name])
        if tuple(eps[name].shape) != want:
            raise ValueError(f"eps[{name!r}] must have shape (S, *noise shape) = {want}, got {tuple(eps[name].shape)}")


def vi_logit_samples(net: nn.Module, x: torch.Tensor, samples: int, *, eps: Mapping[str, torch.Tensor] | None = None,
                     max_batch_samples: int | None = None, method: VIMethod | str = VIMethod.AUTO) -> torch.Tensor:
    """``S`` logit samples ``(S, n, K)`` of a variational network ``net`` on ``x`` ``(n, ...)``.

    Sample ``s`` is ``net(x)`` with the ``s``-th weight draw in every sampled layer: ``w_s = μ + log1p(exp(ρ)) ·
    ε_s`` in bayesian-torch's Reparameterization layers, ``vi_weights(noise_s)`` in :class:`SampledLayer` ones.

    Args:
        net: in eval mode (``ValueError`` otherwise: BatchNorm would use and update batch statistics).
        x: the inputs, shared by all samples; on the network's device.
        samples: ``S >= 1``.
        eps: the noise ``{"path.name": (S, *noise shape)}`` (names: :func:`vi_eps_names`); default: drawn from the
            global generator of the layers' device, exactly as ``S`` calls of ``net`` would draw it (see the module
            docstring). Only the batched path takes it.
        max_batch_samples: at most this many samples per vmapped pass (memory: the pass holds ``S · n`` inputs'
            activations); the result does not depend on it. None: all ``S`` in one pass.
        method: a :class:`VIMethod`: ``auto`` (batched when the network allows it, except on the
            :data:`LOOP_DEVICES` without ``eps``; the loop otherwise), ``batched`` or ``loop``.

    Returns:
        ``(S, n, K)`` logits, in the dtype ``net(x)`` has (the autocast dtype under autocast). Runs under the
        caller's grad mode and autocast.
    """
    _check(net, samples, max_batch_samples)
    if method not in [m.value for m in VIMethod]:  # VIMethod members are str: they pass too
        raise ValueError(f"method must be one of {', '.join(m.value for m in VIMethod)}, got {method!r}")
    method = VIMethod(method)
    if method is VIMethod.AUTO and eps is None and x.device.type in LOOP_DEVICES:
        method = VIMethod.LOOP  # as fast on the CPU, and the same draws (module docstring)
    if method is VIMethod.LOOP:
        if eps is not None:
            raise ValueError("eps cannot be given with method='loop': the layers draw their own noise")
        return vi_logit_samples_loop(net, x, samples)
    twin = _twin(net)
    if twin.module is not None and twin.order is None:
        twin = _trace(net, twin, x)
    if twin.module is None:
        if method is VIMethod.BATCHED or eps is not None:
            raise ValueError(f"batched VI sampling is not possible: {twin.reason}")
        if twin.stochastic:
            warnings.warn(f"VI samples by {samples} forward passes: {twin.reason}", stacklevel=2)
        return vi_logit_samples_loop(net, x, samples)
    if eps is not None:
        _check_eps(eps, twin, samples)
    shared = _shared_state(net, twin.layers)
    amp = _autocast_dtype(x.device.type)
    if amp is not None:  # autocast's casts, done by hand (module docstring)
        x, shared = _cast(x, amp), {name: _cast(t, amp) for name, t in shared.items()}

    def forward(sampled: dict[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(twin.module, (shared, sampled), (x,))

    group = samples if max_batch_samples is None else min(samples, int(max_batch_samples))
    parts = []
    for start in range(0, samples, group):
        count = min(group, samples - start)
        noise = (_draw_noise(twin, count) if eps is None else
                 {path: {name: eps[_join(path, name)][start:start + count]
                         for name in twin.layers[path].vi_noise_shapes()} for path in twin.order})
        sampled = {}
        with torch.autocast(x.device.type, enabled=False):  # weights in the parameters' precision (module docstring)
            for path in twin.order:
                for name, weight in twin.layers[path].vi_weights(noise[path]).items():
                    sampled[_join(path, name)] = weight if amp is None else _cast(weight, amp)
        with warnings.catch_warnings():  # channels_last pooling falls back to a per-sample loop: one cheap op
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet")
            out = vmap(forward, in_dims=(0,))(sampled)
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"net must return a tensor of logits, got {type(out).__name__}")
        parts.append(out)
    return parts[0] if len(parts) == 1 else torch.cat(parts)
