"""Per-sample logit Jacobians and the Gram matrices built from them, through ``torch.func``.

Notation (DESIGN.md §1): logits ``z = f_θ(x)`` ``(K,)``, ``q = softmax(z)``, ``g_k = ∇θ log q_k`` and
``J_k = ∇θ q_k = q_k g_k``. With the logit Jacobian ``Jz = ∂z/∂θ`` ``(K, P)`` and its Gram
``M = Jz Jzᵀ`` ``(K, K)`` (the per-sample neural tangent kernel), ``g_k = Jzᵀ (e_k − q)`` and therefore

    G = A M Aᵀ,   A = I − 1 qᵀ  (rows e_k − q),   G_kl = ⟨g_k, g_l⟩.

The cross-entropy to a target ``t`` (any vector, not only on the simplex) has gradient
``∇θ ℓ = Jzᵀ r`` with ``r = (Σ_k t_k) q − t``, so ``‖∇θ ℓ‖² = rᵀ M r``. Everything the noise formulas need
is ``(q, M)`` per sample, computed in chunks so memory stays bounded.

Two ways to get ``M`` (``logit_ntk(..., method=)``): ``"jacobian"`` materialises ``Jz`` with
``vmap(jacrev(f))`` and works for any module; ``"linear"`` uses the structure of fully connected networks.
For a layer ``s = W a + b``, ``∂z_k/∂W = δ_k aᵀ`` with ``δ_k = ∂z_k/∂s``, so the layer adds
``(δ_k · δ_l)(‖a‖² + 1)`` to ``M_kl`` (``+1`` for the bias): one batched backward pass per class, no ``(K, P)``
Jacobian. ``"auto"`` takes ``"linear"`` when every submodule is a known per-sample layer (``nn.Linear``, the
activations, ``nn.Sequential``, ``sgdbound.models.MLP``) and each linear layer runs once per forward.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from sgdbound._checks import check_count, check_matrix_rows, describe
from sgdbound.models import ACTIVATIONS, MLP

__all__ = [
    "parameter_dict",
    "num_parameters",
    "logit_ntk",
    "NTK_METHODS",
    "softmax_gram",
    "loss_residual",
    "per_sample_gradients",
    "logit_jacobians",
    "auto_chunk",
    "supports_linear_ntk",
    "stateless_forward",
    "check_model_inputs",
    "check_chunk_size",
]

_CHUNK_BYTES = 128 * 2**20


def parameter_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached parameters in ``named_parameters`` order (the order of every flattened vector here)."""
    return {name: p.detach() for name, p in model.named_parameters()}


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def auto_chunk(model: nn.Module, num_outputs: int, budget_bytes: int = _CHUNK_BYTES) -> int:
    """Samples per chunk so a chunk's Jacobians ``(chunk, K, P)`` fit in ``budget_bytes``."""
    per_sample = max(1, num_outputs * num_parameters(model) * 8)
    return int(max(1, min(8192, budget_bytes // per_sample)))


def check_chunk_size(chunk_size: int | None) -> int | None:
    """``chunk_size``: None (chosen from a memory budget) or a positive integer; anything else (0, negative,
    fractional, NaN, a string) is refused with a ``ValueError`` naming it."""
    return None if chunk_size is None else check_count("chunk_size", chunk_size)


def check_model_inputs(model: nn.Module, x: torch.Tensor, *, chunk_size: int | None = None) -> torch.Tensor:
    """Run the model once on ``x`` and return the logits; refuse a ``model`` that is not an ``nn.Module``, an
    ``x`` that is not a finite, non-empty ``(n, d)`` tensor the model maps to ``(n, K)`` logits, and a
    ``chunk_size`` that ``check_chunk_size`` refuses (checked before the model runs; pass it so a caller that
    chunks later refuses a bad one before any work)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_chunk_size(chunk_size)
    check_matrix_rows("x", x)
    if x.shape[0] == 0:
        raise ValueError(f"x must have at least one row, got shape {tuple(x.shape)}")
    try:
        with torch.no_grad():
            logits = model(x)
    except RuntimeError as err:  # wrong feature count or dtype: name the argument, not the matmul
        raise ValueError(f"x of shape {tuple(x.shape)} and dtype {x.dtype} does not fit the model: {err}") from err
    if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError(f"model must map (n, d) inputs to (n, K) logits, got {tuple(logits.shape)}")
    return logits


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def stateless_forward(model: nn.Module):
    """``(params, args) ↦ model(*args)`` with ``params`` (keyed as ``named_parameters``) swapped in.

    Weight sharing is handled slot by slot: every distinct (module, attribute) holding a parameter is set once,
    to the tensor of that parameter, with ``tie_weights=False``. (``functional_call``'s default, or setting a
    module reached under two names twice, fails to restore the module and leaves plain detached tensors in
    the caller's model.)
    """
    aliases: dict[str, str] = {}
    first: dict[int, str] = {}
    slots: set[tuple[int, str]] = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        path, _, attr = name.rpartition(".")
        slot = (id(model.get_submodule(path)), attr)
        if slot not in slots:
            slots.add(slot)
            aliases[name] = first.setdefault(id(p), name)
    buffers = dict(model.named_buffers())

    def forward(params: dict[str, torch.Tensor], *args):
        full = {name: params[canonical] for name, canonical in aliases.items()}
        return functional_call(model, (full, buffers), args, tie_weights=False)

    return forward


def _single_logits(model: nn.Module):
    forward = stateless_forward(model)

    def logits(params: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return forward(params, xi[None])[0]

    return logits


NTK_METHODS = ("auto", "jacobian", "linear")
"""How ``logit_ntk`` builds ``M``: see the module docstring."""

_PER_SAMPLE_LAYERS = (nn.Linear, nn.Sequential, nn.Identity, MLP, *ACTIVATIONS.values())


def supports_linear_ntk(model: nn.Module) -> bool:
    """Whether ``model`` is built only from layers that treat samples independently and whose parameters all
    sit in ``nn.Linear`` layers (exact types, so a subclass with its own ``forward`` is not assumed), none shared."""
    if not all(type(module) in _PER_SAMPLE_LAYERS for module in model.modules()):
        return False
    if len(list(model.named_parameters(remove_duplicate=False))) != len(list(model.parameters())):
        return False  # a layer or weight used twice: the per-layer sum misses the cross terms
    return all(p.requires_grad for p in model.parameters()) and any(True for _ in model.parameters())


def _linear_ntk_chunk(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(logits, M)`` for one chunk through the layer structure; None if a linear layer ran more than once."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    seen: dict[int, list] = {id(m): [] for m in linears}

    def hook(module, args, output):
        seen[id(module)].append((args[0].detach(), output))

    handles = [m.register_forward_hook(hook) for m in linears]
    try:
        with torch.enable_grad():
            logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    if any(len(calls) != 1 for calls in seen.values()):
        return None
    num_classes = logits.shape[1]
    probes = torch.eye(num_classes, dtype=logits.dtype, device=logits.device)[:, None, :].expand(-1, x.shape[0], -1)
    outputs = [seen[id(m)][0][1] for m in linears]
    deltas = torch.autograd.grad(logits, outputs, grad_outputs=probes, is_grads_batched=True)
    ntk = None
    for module, delta in zip(linears, deltas):
        inputs = seen[id(module)][0][0]
        scale = (inputs * inputs).sum(1) + (1.0 if module.bias is not None else 0.0)  # (c,)
        delta = delta.transpose(0, 1)  # (c, K, out)
        term = (delta @ delta.transpose(1, 2)) * scale[:, None, None]
        ntk = term if ntk is None else ntk + term
    return logits.detach(), ntk.detach()


def logit_ntk(model: nn.Module, x: torch.Tensor, chunk_size: int | None = None, *,
              method: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(n, K)`` and the per-sample logit Gram ``M = Jz Jzᵀ`` ``(n, K, K)``.

    ``method="jacobian"``: ``Jz`` ``(K, P)`` from ``vmap(jacrev(f))`` over a chunk of ``chunk_size`` samples
    (chosen so a chunk's Jacobians take about 128 MiB when None); only the ``(K, K)`` Grams are kept.
    ``method="linear"``: the layer-structure formula of the module docstring (fully connected networks only);
    ``"auto"``: ``"linear"`` when ``supports_linear_ntk(model)``, else ``"jacobian"``.
    """
    if method not in NTK_METHODS:
        raise ValueError(f"method must be one of {NTK_METHODS}, got {method!r}")
    chunk_size = check_chunk_size(chunk_size)
    logits = check_model_inputs(model, x)
    num_classes = logits.shape[1]
    if method == "linear" and not supports_linear_ntk(model):
        raise ValueError("method 'linear' needs a model built from nn.Linear layers and activations only")
    if method in ("auto", "linear") and supports_linear_ntk(model):
        widths = sum(m.out_features + m.in_features for m in model.modules() if isinstance(m, nn.Linear))
        chunk = chunk_size or int(max(1, min(16384, _CHUNK_BYTES // (8 * (num_classes + 2) * widths))))
        parts = [_linear_ntk_chunk(model, x[part]) for part in _chunks(x.shape[0], chunk)]
        if all(part is not None for part in parts):
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        if method == "linear":
            raise ValueError("method 'linear' needs every nn.Linear layer to run once per forward pass")
    chunk = chunk_size or auto_chunk(model, num_classes)
    params = parameter_dict(model)
    jac = vmap(jacrev(_single_logits(model)), in_dims=(None, 0))
    grams = []
    for part in _chunks(x.shape[0], chunk):
        jacobians = jac(params, x[part])  # name -> (c, K, *shape)
        gram = None
        for value in jacobians.values():
            flat = value.reshape(value.shape[0], num_classes, -1)
            term = flat @ flat.transpose(1, 2)
            gram = term if gram is None else gram + term
        grams.append(gram)
    return logits, torch.cat(grams)


def softmax_gram(probs: torch.Tensor, ntk: torch.Tensor) -> torch.Tensor:
    """``G = A M Aᵀ`` with ``A = I − 1 qᵀ``: ``G_kl = ⟨∇θ log q_k, ∇θ log q_l⟩``, ``(n, K, K)``.

    ``probs``: ``(n, K)``; ``ntk``: ``(n, K, K)``. Shapes are checked (values are not: this runs in inner loops
    on outputs of ``logit_ntk``)."""
    if not (torch.is_tensor(probs) and torch.is_tensor(ntk)) or probs.dim() != 2 \
            or ntk.shape != (probs.shape[0], probs.shape[1], probs.shape[1]):
        raise ValueError(f"probs must be (n, K) and ntk (n, K, K), got {describe(probs)} and {describe(ntk)}")
    eye = torch.eye(probs.shape[1], dtype=probs.dtype, device=probs.device)
    a = eye - probs[:, None, :]  # row k is e_k − q
    return a @ ntk @ a.transpose(1, 2)


def loss_residual(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``r = (Σ t) q − t`` ``(n, K)``: the logit gradient of ``−Σ t_k log q_k`` for any target vector."""
    return targets.sum(1, keepdim=True) * probs - targets


def logit_jacobians(model: nn.Module, x: torch.Tensor, chunk_size: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(n, K)`` and full per-sample logit Jacobians ``Jz`` ``(n, K, P)`` (``named_parameters`` order).

    Holds ``n · K · P`` numbers: for small models (linear students, the Lyapunov prediction).
    """
    chunk_size = check_chunk_size(chunk_size)
    logits = check_model_inputs(model, x)
    num_classes = logits.shape[1]
    chunk = chunk_size or auto_chunk(model, num_classes)
    params = parameter_dict(model)
    jac = vmap(jacrev(_single_logits(model)), in_dims=(None, 0))
    parts = []
    for part in _chunks(x.shape[0], chunk):
        jacobians = jac(params, x[part])
        parts.append(torch.cat([v.reshape(v.shape[0], num_classes, -1) for v in jacobians.values()], dim=2))
    return logits, torch.cat(parts)


def per_sample_gradients(model: nn.Module, x: torch.Tensor, targets: torch.Tensor,
                         chunk_size: int | None = None) -> torch.Tensor:
    """``∇θ ℓ(θ; x_i, t_i)`` flattened in ``named_parameters`` order, ``(n, P)``.

    ``targets`` ``(n, K)``: any finite vectors (Gaussian-noised targets need not sum to one).
    """
    chunk_size = check_chunk_size(chunk_size)
    logits = check_model_inputs(model, x)
    check_matrix_rows("targets", targets, rows=x.shape[0], cols=logits.shape[1])
    params = parameter_dict(model)
    single = _single_logits(model)

    def loss(p, xi, ti):
        return -(ti * torch.log_softmax(single(p, xi), dim=0)).sum()

    grad = vmap(torch.func.grad(loss), in_dims=(None, 0, 0))
    chunk = chunk_size or auto_chunk(model, 1)
    out = []
    for part in _chunks(x.shape[0], chunk):
        grads = grad(params, x[part], targets[part])
        out.append(torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1))
    return torch.cat(out)
