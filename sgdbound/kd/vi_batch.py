"""Monte Carlo logit samples of a bayesian-torch mean-field network in one batched forward pass.

A network put through ``bayesian_torch.models.dnn_to_bnn.dnn_to_bnn`` (type ``"Reparameterization"``) draws one
weight sample per call, for the whole batch: each layer computes ``σ = log1p(exp(ρ))``, fills its ``eps``
buffer(s) in place with ``N(0, 1)`` draws from the global generator of their device (``eps_weight`` or
``eps_kernel``, then ``eps_bias``) and uses ``w = μ + σ · ε``. ``S`` samples are thus ``S`` forward passes.

:func:`vi_logit_samples` draws the ``S`` weight samples itself and runs them through a *plain twin* of the
network (each Reparameterization layer replaced by the ``nn.Linear`` / ``nn.Conv{1,2,3}d`` of the same stride,
padding, dilation, groups and bias; everything else shared, BatchNorm included) in one ``torch.func.vmap`` over
``torch.func.functional_call``: the input is shared by the samples (``in_dims=None``), the sampled weights are
stacked ``(S, *shape)``. The twin is built once per network (cached, rebuilt when its modules, parameters or
buffers change identity).

The draws are bayesian-torch's own: sample by sample, layer by layer in the order the forward calls them
(traced once per network), weight before bias, each ``ε`` drawn by ``normal_`` into a tensor like the buffer
(shape, dtype, device, memory format). From the same generator state the batched samples are therefore the
samples of the ``S``-pass loop, up to floating-point reassociation (tested), and they do not depend on
``max_batch_samples``: switching between the two paths changes no result beyond rounding.

Speed (``benchmarks/bench_vi.py``, one CPU thread): on the CPU the batched pass is *slower* than the loop (about
2× for a CIFAR WRN-16-2 at ``S = 10``, ``n = 100``: the convolutions are compute-bound and the batched ones,
grouped convolutions behind vmap, pay for layout copies), so ``method="auto"`` loops on the CPU and batches on
accelerators, where ``S`` small passes are launch-bound.

Under ``torch.autocast`` the batched path casts the input, the sampled weights and the shared floating tensors
(BatchNorm's affine parameters and running statistics) to the autocast dtype itself: under vmap, autocast leaves
convolutions in float32 and BatchNorm's batching rule refuses a bf16 input with float32 statistics. The result
matches the loop under autocast to the autocast dtype's precision (BatchNorm then runs on bf16 statistics).

Supported layers: ``LinearReparameterization`` and ``Conv{1,2,3}dReparameterization`` as ``dnn_to_bnn`` builds
them (``dnn_to_bnn_flag`` set, so their forward returns the output alone, not ``(output, kl)``). A network with
another stochastic bayesian-torch layer (Flipout, LSTM, ConvTranspose, quantised layers), with a layer called
more than once per forward, or with no bayesian-torch layer at all is sampled by the loop under ``auto`` (with a
warning in the first two cases) and refused with a ``ValueError`` under ``method="batched"`` or with ``eps``.
"""

from __future__ import annotations

import copy
import warnings
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn
from torch.func import functional_call, vmap

__all__ = ["VIMethod", "LOOP_DEVICES", "vi_logit_samples", "vi_logit_samples_loop", "vi_eps_names", "batched_supported"]


class VIMethod(str, Enum):
    """How :func:`vi_logit_samples` computes the ``S`` samples."""

    AUTO = "auto"
    """Batched when the network allows it (see :func:`batched_supported`), else the ``S``-pass loop; without
    ``eps``, the loop on the :data:`LOOP_DEVICES` (the CPU), where it is as fast and draws the same noise."""
    BATCHED = "batched"
    """One vmapped forward pass per group of ``max_batch_samples`` samples; ``ValueError`` if unsupported."""
    LOOP = "loop"
    """``S`` calls of the network's own forward (bayesian-torch draws the weights): the reference."""


@dataclass(frozen=True)
class _Draw:
    """One sampled tensor of one layer: the twin's parameter ``name`` is ``mu + log1p(exp(rho)) · eps``."""

    name: str  # the twin's parameter, e.g. "body.0.weight"
    eps: str  # the bayesian-torch eps buffer, e.g. "body.0.eps_weight"
    mu: str  # the bayesian-torch parameters, e.g. "body.0.mu_weight"
    rho: str


@dataclass(frozen=True)
class _Twin:
    signature: tuple
    module: nn.Module | None  # None: batched sampling unsupported (``reason`` says why)
    layers: tuple[str, ...]  # every Reparameterization layer's path
    reason: str = ""
    stochastic: bool = True  # whether the net has any bayesian-torch layer
    draws: tuple[_Draw, ...] | None = None  # in bayesian-torch's order within one forward; None until traced


#: Device types where ``method="auto"`` keeps the ``S``-pass loop (as fast there, see the module docstring).
LOOP_DEVICES: tuple[str, ...] = ("cpu",)

_TWINS: weakref.WeakKeyDictionary[nn.Module, _Twin] = weakref.WeakKeyDictionary()


def _plain_classes() -> dict[type, type]:
    from bayesian_torch.layers.variational_layers import conv_variational, linear_variational

    return {linear_variational.LinearReparameterization: nn.Linear,
            conv_variational.Conv1dReparameterization: nn.Conv1d,
            conv_variational.Conv2dReparameterization: nn.Conv2d,
            conv_variational.Conv3dReparameterization: nn.Conv3d}


def _plain_layer(layer: nn.Module, plain: type) -> nn.Module:
    """The deterministic layer of the same geometry; its (meta) weights are always replaced at call time."""
    bias = layer.mu_bias is not None
    if plain is nn.Linear:
        return nn.Linear(layer.in_features, layer.out_features, bias=bias, device="meta")
    return plain(layer.in_channels, layer.out_channels, tuple(layer.mu_kernel.shape[2:]), stride=layer.stride,
                 padding=layer.padding, dilation=layer.dilation, groups=layer.groups, bias=bias, device="meta")


def _signature(net: nn.Module) -> tuple:
    return (tuple((name, id(m)) for name, m in net.named_modules()),
            tuple(id(t) for t in (*net.parameters(), *net.buffers())))


def _build_twin(net: nn.Module, signature: tuple) -> _Twin:
    from bayesian_torch.layers.base_variational_layer import BaseVariationalLayer_

    plain_of = _plain_classes()
    bayes = {name: m for name, m in net.named_modules() if isinstance(m, BaseVariationalLayer_)}
    layers = tuple(name for name, m in bayes.items() if type(m) in plain_of)
    for name, m in bayes.items():
        if type(m) not in plain_of:
            return _Twin(signature, None, layers, f"layer {name!r} is a {type(m).__name__} (batched sampling "
                                                  f"supports {', '.join(c.__name__ for c in plain_of)})")
        if not m.dnn_to_bnn_flag:
            return _Twin(signature, None, layers, f"layer {name!r} was not built by dnn_to_bnn (its forward "
                                                  "returns (output, kl))")
    if not bayes:
        return _Twin(signature, None, layers, "the network has no bayesian-torch layer", stochastic=False)
    # share every tensor with the net (the memo maps each to itself): only the module tree is copied
    memo = {id(t): t for t in (*net.parameters(), *net.buffers())}
    twin = copy.deepcopy(net, memo)
    for name in layers:
        parent, _, attr = name.rpartition(".")
        owner = twin.get_submodule(parent)
        setattr(owner, attr, _plain_layer(getattr(owner, attr), plain_of[type(bayes[name])]))
    return _Twin(signature, twin.eval(), layers)


def _twin(net: nn.Module) -> _Twin:
    signature = _signature(net)
    cached = _TWINS.get(net)
    if cached is None or cached.signature != signature:
        cached = _TWINS[net] = _build_twin(net, signature)
    return cached


def _shared_state(net: nn.Module, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The net's parameters and buffers outside the Bayesian layers (BatchNorm and the like), by name."""
    prefixes = tuple(f"{name}." for name in layers)
    return {name: t for name, t in (*net.named_parameters(), *net.named_buffers()) if not name.startswith(prefixes)}


def _layer_draws(net: nn.Module, path: str) -> list[_Draw]:
    layer = net.get_submodule(path)
    kernel = "weight" if hasattr(layer, "mu_weight") else "kernel"
    draws = [_Draw(f"{path}.weight", f"{path}.eps_{kernel}", f"{path}.mu_{kernel}", f"{path}.rho_{kernel}")]
    if layer.mu_bias is not None:
        draws.append(_Draw(f"{path}.bias", f"{path}.eps_bias", f"{path}.mu_bias", f"{path}.rho_bias"))
    return draws


def _trace(net: nn.Module, twin: _Twin, x: torch.Tensor) -> _Twin:
    """The draws in the order bayesian-torch makes them: the order the forward calls the layers (one
    deterministic pass of the twin at the posterior means on ``x[:1]``)."""
    calls: list[str] = []
    hooks = [twin.module.get_submodule(name).register_forward_pre_hook(lambda *_, name=name: calls.append(name))
             for name in twin.layers]
    params = dict(net.named_parameters())
    means = {d.name: params[d.mu] for name in twin.layers for d in _layer_draws(net, name)}
    try:
        with torch.no_grad():
            functional_call(twin.module, (_shared_state(net, twin.layers), means), (x[:1],))
    finally:
        for hook in hooks:
            hook.remove()
    repeated = sorted({name for name in calls if calls.count(name) > 1})
    if repeated:
        twin = _Twin(twin.signature, None, twin.layers, f"layer(s) {repeated} are called more than once per "
                                                        "forward (bayesian-torch draws anew at each call)")
    else:
        twin = _Twin(twin.signature, twin.module, twin.layers,
                     draws=tuple(d for name in calls for d in _layer_draws(net, name)))
    _TWINS[net] = twin
    return twin


def batched_supported(net: nn.Module) -> tuple[bool, str]:
    """Whether :func:`vi_logit_samples` can batch ``net`` (before the forward is traced), and why not."""
    twin = _twin(net)
    return twin.module is not None, twin.reason


def vi_eps_names(net: nn.Module) -> list[str]:
    """The names of the eps buffers (``"path.eps_weight"``, ``"path.eps_kernel"``, ``"path.eps_bias"``) of the
    net's supported Bayesian layers: the keys ``eps=`` of :func:`vi_logit_samples` takes."""
    return [d.eps for name in _twin(net).layers for d in _layer_draws(net, name)]


def vi_logit_samples_loop(net: nn.Module, x: torch.Tensor, samples: int) -> torch.Tensor:
    """The reference: ``S`` forward passes of ``net`` (bayesian-torch draws each pass's weights), ``(S, n, K)``."""
    return torch.stack([net(x) for _ in range(samples)])


def _check(net: nn.Module, samples: int, max_batch_samples: int | None) -> None:
    if net.training:
        raise ValueError("net must be in eval mode (net.eval()): in training mode BatchNorm would use batch "
                         "statistics and update its running ones")
    if int(samples) != samples or samples < 1:
        raise ValueError(f"samples (S) must be an integer >= 1, got {samples!r}")
    if max_batch_samples is not None and (int(max_batch_samples) != max_batch_samples or max_batch_samples < 1):
        raise ValueError(f"max_batch_samples must be None or an integer >= 1, got {max_batch_samples!r}")


def _draw_eps(net: nn.Module, draws: tuple[_Draw, ...], count: int) -> dict[str, torch.Tensor]:
    """``count`` samples ``(count, *shape)`` of every eps, drawn as bayesian-torch does: sample by sample, in
    forward order, by ``normal_`` on a tensor like the buffer (same strides, so channels_last draws match too)."""
    buffers = dict(net.named_buffers())
    drawn: dict[str, list[torch.Tensor]] = {d.eps: [] for d in draws}
    for _ in range(count):
        for d in draws:
            drawn[d.eps].append(torch.empty_like(buffers[d.eps]).normal_())
    return {name: torch.stack(values) for name, values in drawn.items()}


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.to(dtype) if t.is_floating_point() else t


def _check_eps(eps: Mapping[str, torch.Tensor], twin: _Twin, net: nn.Module, samples: int) -> None:
    buffers = dict(net.named_buffers())
    required = {d.eps for d in twin.draws}
    allowed = {d.eps for name in twin.layers for d in _layer_draws(net, name)}  # uncalled layers: ignored
    missing, unexpected = sorted(required - set(eps)), sorted(set(eps) - allowed)
    if missing or unexpected:
        raise ValueError(f"eps must have one entry per eps buffer of the Bayesian layers, see vi_eps_names "
                         f"(missing: {missing}; unexpected: {unexpected})")
    for name in sorted(required):
        want = (samples, *buffers[name].shape)
        if tuple(eps[name].shape) != want:
            raise ValueError(f"eps[{name!r}] must have shape (S, *buffer shape) = {want}, got "
                             f"{tuple(eps[name].shape)}")


def vi_logit_samples(net: nn.Module, x: torch.Tensor, samples: int, *, eps: Mapping[str, torch.Tensor] | None = None,
                     max_batch_samples: int | None = None, method: VIMethod | str = VIMethod.AUTO) -> torch.Tensor:
    """``S`` logit samples ``(S, n, K)`` of a ``dnn_to_bnn`` mean-field network ``net`` on ``x`` ``(n, ...)``.

    Sample ``s`` is ``net(x)`` with weights ``w_s = μ + log1p(exp(ρ)) · ε_s`` in every Reparameterization layer.

    Args:
        net: in eval mode (``ValueError`` otherwise: BatchNorm would use and update batch statistics).
        x: the inputs, shared by all samples; on the network's device.
        samples: ``S >= 1``.
        eps: the noise ``{eps buffer name: (S, *buffer shape)}`` (names: :func:`vi_eps_names`); default: drawn
            from the global generator of the buffers' device, exactly as ``S`` calls of ``net`` would draw it
            (see the module docstring). Only the batched path takes it.
        max_batch_samples: at most this many samples per vmapped pass (memory: the pass holds ``S · n`` inputs'
            activations); the result does not depend on it. None: all ``S`` in one pass.
        method: a :class:`VIMethod`: ``auto`` (batched when the network allows it, except on the
            :data:`LOOP_DEVICES` without ``eps``; the loop otherwise), ``batched`` or ``loop``.

    Returns:
        ``(S, n, K)`` logits, in the dtype ``net(x)`` has (the autocast dtype under autocast). Runs under the
        caller's grad mode and autocast.
    """
    _check(net, samples, max_batch_samples)
    method = VIMethod(method)
    if method is VIMethod.AUTO and eps is None and x.device.type in LOOP_DEVICES:
        method = VIMethod.LOOP  # as fast on the CPU, and the same draws (module docstring)
    if method is VIMethod.LOOP:
        if eps is not None:
            raise ValueError("eps cannot be given with method='loop': bayesian-torch draws its own noise")
        return vi_logit_samples_loop(net, x, samples)
    twin = _twin(net)
    if twin.module is not None and twin.draws is None:
        twin = _trace(net, twin, x)
    if twin.module is None:
        if method is VIMethod.BATCHED or eps is not None:
            raise ValueError(f"batched VI sampling is not possible: {twin.reason}")
        if twin.stochastic:
            warnings.warn(f"VI samples by {samples} forward passes: {twin.reason}", stacklevel=2)
        return vi_logit_samples_loop(net, x, samples)
    if eps is not None:
        _check_eps(eps, twin, net, samples)
    shared = _shared_state(net, twin.layers)
    params = dict(net.named_parameters())
    amp = _autocast_dtype(x.device.type)
    if amp is not None:  # autocast's casts, done by hand (module docstring)
        x, shared = _cast(x, amp), {name: _cast(t, amp) for name, t in shared.items()}

    def forward(sampled: dict[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(twin.module, (shared, sampled), (x,))

    group = samples if max_batch_samples is None else min(samples, int(max_batch_samples))
    parts = []
    for start in range(0, samples, group):
        count = min(group, samples - start)
        noise = (_draw_eps(net, twin.draws, count) if eps is None
                 else {d.eps: eps[d.eps][start:start + count] for d in twin.draws})
        sampled = {}
        for d in twin.draws:
            mu, rho = params[d.mu], params[d.rho]
            weight = mu + torch.log1p(torch.exp(rho)) * noise[d.eps].to(mu.device)
            sampled[d.name] = weight if amp is None else _cast(weight, amp)
        with warnings.catch_warnings():  # channels_last pooling falls back to a per-sample loop: one cheap op
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet")
            out = vmap(forward, in_dims=(0,))(sampled)
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"net must return a tensor of logits, got {type(out).__name__}")
        parts.append(out)
    return parts[0] if len(parts) == 1 else torch.cat(parts)
