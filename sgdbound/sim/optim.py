"""Optimisers acting in place on lists of batched parameters, with a per-replica step size.

``lr`` is a ``(N,)`` tensor (one step size per replica, so several configurations share one program); it is
broadcast over each parameter's trailing axes. ``rows`` restricts a step to a slice of replicas (the simulator
steps cache-sized groups). A weight gradient may be given factored as ``(left (N, m, b), right (N, b, n))`` for
the product ``left @ right`` (an outer product when ``b = 1``): SGD then folds it into the update without
materialising it (``addcmul_`` for an outer product, ``baddbmm_`` otherwise). Heavy ball follows
``torch.optim.SGD``: ``v ← β v + g``, ``θ ← θ − γ v``. Adam follows ``torch.optim.Adam`` (bias-corrected, ``eps``
outside the root).
"""

from __future__ import annotations

import torch

__all__ = ["BatchedSGD", "BatchedAdam", "OPTIMIZERS"]


def _view(lr: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return lr.reshape(-1, *([1] * (like.dim() - 1)))


def _accumulate(dst: torch.Tensor, grad, scale: torch.Tensor | None = None) -> None:
    """``dst += scale · grad`` in place, folding a factored gradient ``(left, right)`` into one kernel;
    ``scale`` ``(N,)`` (default 1) multiplies each replica's gradient."""
    if isinstance(grad, tuple):
        left, right = grad
        if scale is not None:
            right = right * _view(scale, right)
        if right.shape[1] == 1:  # an outer product: elementwise, faster than a k=1 matrix product
            dst.addcmul_(left, right)
        else:  # in place (into a strided view of a flat tensor it goes through a copy, still cheaper than bmm + add_)
            dst.baddbmm_(left, right)
    elif scale is None:
        dst.add_(grad)
    else:
        dst.addcmul_(grad, _view(scale, grad))


def _materialise(grad) -> torch.Tensor:
    if not isinstance(grad, tuple):
        return grad
    left, right = grad
    return left * right if right.shape[1] == 1 else torch.bmm(left, right)


class BatchedSGD:
    """SGD with optional heavy-ball momentum ``β``.

    ``flat`` ``(N, P)``: when the parameters are views of the rows of one contiguous tensor (``BatchedMLP.flat``),
    the momentum buffers are laid out alike and the scaling ``β v`` and the step ``θ − γ v`` are one pass over the
    rows being stepped instead of one per parameter.
    """

    def __init__(self, params: list[torch.Tensor], momentum: float = 0.0, flat: torch.Tensor | None = None):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        self.params, self.momentum, self.flat = params, momentum, flat
        self.flat_buffer = None
        self.buffers = None
        like = flat if flat is not None else params[0]
        self._beta = torch.tensor(momentum, dtype=like.dtype, device=like.device)  # a 0-d tensor: no scalar wrapping
        if momentum and flat is not None:
            self.flat_buffer = torch.zeros_like(flat)
            self.buffers = [_same_view(self.flat_buffer, flat, p) for p in params]
        elif momentum:
            self.buffers = [torch.zeros_like(p) for p in params]
        self._row_views: dict = {}

    def _rows(self, rows: slice):
        """``(params, buffers, flat, flat buffer)`` restricted to ``rows`` (views, cached per slice)."""
        key = (rows.start, rows.stop, rows.step)
        if key not in self._row_views:
            if len(self._row_views) > 64:
                self._row_views.clear()
            params = [p[rows] for p in self.params]
            buffers = None if self.buffers is None else [b[rows] for b in self.buffers]
            flat = None if self.flat is None else self.flat[rows]
            flat_buffer = None if self.flat_buffer is None else self.flat_buffer[rows]
            self._row_views[key] = (params, buffers, flat, flat_buffer)
        return self._row_views[key]

    def step(self, grads: list, lr: torch.Tensor, rows: slice = slice(None), t: int | None = None) -> None:
        """One step of ``rows`` (``t``, the step number, is not needed: the signature is ``BatchedAdam``'s)."""
        params, buffers, flat, flat_buffer = self._rows(rows)
        if buffers is None:
            neg_lr = -lr
            for p, g in zip(params, grads):
                _accumulate(p, g, neg_lr)
            return
        if flat_buffer is not None:
            flat_buffer.mul_(self._beta)
        else:
            for buf in buffers:
                buf.mul_(self._beta)
        for buf, g in zip(buffers, grads):
            _accumulate(buf, g)
        if flat_buffer is not None:
            flat.addcmul_(flat_buffer, lr[:, None], value=-1)
        else:
            for p, buf in zip(params, buffers):
                p.addcmul_(buf, _view(-lr, p))


def _same_view(storage: torch.Tensor, flat: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
    """The view of ``storage`` (shaped like ``flat``) that ``view`` is of ``flat``."""
    if not flat.is_contiguous() or view.untyped_storage().data_ptr() != flat.untyped_storage().data_ptr():
        raise ValueError("flat must be a contiguous tensor of which every parameter is a view")
    return storage.as_strided(view.shape, view.stride(), view.storage_offset() - flat.storage_offset())


class BatchedAdam:
    """Adam with ``betas`` and ``eps`` as in ``torch.optim.Adam``.

    ``flat`` ``(N, P)`` as for ``BatchedSGD``: the moments (and a gradient scratch) are laid out alike and the
    update is a few passes over the rows being stepped instead of a dozen kernels per parameter.
    """

    def __init__(self, params: list[torch.Tensor], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 flat: torch.Tensor | None = None):
        self.params, self.betas, self.eps, self.flat = params, betas, eps, flat
        if flat is None:
            self.m = [torch.zeros_like(p) for p in params]
            self.v = [torch.zeros_like(p) for p in params]
        else:
            self.flat_m, self.flat_v = torch.zeros_like(flat), torch.zeros_like(flat)
            self.flat_g, self.flat_work = torch.empty_like(flat), torch.empty_like(flat)
            self.m = [_same_view(self.flat_m, flat, p) for p in params]
            self.v = [_same_view(self.flat_v, flat, p) for p in params]
            self._g = [_same_view(self.flat_g, flat, p) for p in params]
        self.t = 0

    def step(self, grads: list, lr: torch.Tensor, rows: slice = slice(None), t: int | None = None) -> None:
        """``t``: the (1-based) step number of ``rows``; by default counted on the calls that include row 0."""
        if t is None:
            if rows == slice(None) or rows.start in (None, 0):
                self.t += 1
            t = self.t
        beta1, beta2 = self.betas
        correction1 = 1 - beta1**t
        correction2 = 1 - beta2**t
        if self.flat is not None:
            for dst, g in zip(self._g, grads):
                _write(dst[rows], g)
            p, m, v, g, work = (x[rows] for x in (self.flat, self.flat_m, self.flat_v, self.flat_g, self.flat_work))
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = torch.div(v, correction2, out=g).sqrt_().add_(self.eps)
            p.addcdiv_(torch.mul(m, (-lr / correction1)[:, None], out=work), denom)
            return
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            p, m, v = p[rows], m[rows], v[rows]
            g = _materialise(g)
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v / correction2).sqrt_().add_(self.eps)
            p.addcdiv_(m * _view(-lr / correction1, p), denom)


def _write(dst: torch.Tensor, grad) -> None:
    """``dst = grad``, a factored gradient multiplied out straight into ``dst``."""
    if not isinstance(grad, tuple):
        dst.copy_(grad)
    elif grad[1].shape[1] == 1:
        torch.mul(*grad, out=dst)
    else:
        torch.bmm(*grad, out=dst)


OPTIMIZERS = {"sgd": BatchedSGD, "adam": BatchedAdam}
