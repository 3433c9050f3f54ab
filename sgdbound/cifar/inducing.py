"""Inducing-weight variational layers (Ritter et al., NeurIPS 2021), the VI teacher of the official code.

Setting. A layer's weight as a matrix ``W`` ``(r, c)``: ``r`` output features/channels, ``c = in·kh·kw`` (+1 for
the bias, the last column). Small inducing weights ``U`` ``(M, N)`` and ``W`` form one matrix-normal
``[[U, ·], [·, W]]`` with row covariance ``Ψ = [[K_r, Z_r], [Z_rᵀ, I_r]]`` and column covariance
``Φ = [[K_c, Z_c], [Z_cᵀ, I_c]]``, where ``K_r = Z_r Z_rᵀ + D_r²`` ``(M, M)``, ``K_c = Z_c Z_cᵀ + D_c²`` ``(N, N)``.
With row-major ``vec`` the joint covariance is ``kron(Ψ, Φ)``.

Algorithm (one sample per forward call, shared by the batch). Whitened ``Ū ~ q = N(μ_U, diag s_U²)``,
``U = L_r Ū L_cᵀ`` (``L = chol K``); ``W = σ · (M_w + λ · ε)`` with ``σ = prior_sd / sqrt(c)``, the conditional mean
``M_w = Z_rᵀ K_r⁻¹ U K_c⁻¹ Z_c`` and ``ε ~ N(0, I − (Z_rᵀK_r⁻¹Z_r) ⊗ (Z_cᵀK_c⁻¹Z_c))`` drawn by Matheron's rule
(:func:`matheron_noise`). ``KL(q‖p) = Σ KL(N(μ_U, s_U²) ‖ N(0, 1)) + r·c·(λ²/2 − log λ − 1/2)``.

The fast path (the layers) works in whitened factors ``P = L⁻¹ Z``, ``Q = L⁻¹ D``; its slow twins
:func:`conditional_mean` and :func:`matheron_noise` use ``cholesky_solve`` on the unwhitened quantities, and the
tests compare the two in float64 and both with the Schur complement of the explicit joint covariance.

Batched sampling: the layers implement ``sgdbound.kd.vi_batch.SampledLayer`` (the ``vi_*`` methods, no import of
``sgdbound.kd`` needed), so ``vi_logit_samples`` runs ``S`` draws in one vmapped pass: the noise drawn by the
forward's own calls (sample by sample, layer by layer), the ``S`` weight matrices by one ``weight_from_normals``.

Reference: H. Ritter, M. Kukla, C. Zhang, Y. Li, "Sparse Uncertainty Representation in Deep Learning with
Inducing Weights", NeurIPS 2021 (official config ``ffg_u_cifar100.json``, mirrored by :data:`INDUCING_DEFAULTS`).

Example::

    net = inducing_bayesianize(build_model("wrn_16_1", 10), **INDUCING_DEFAULTS)
    loss = F.cross_entropy(net(x), y) + inducing_kl(net) / n_train
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["INDUCING_DEFAULTS", "InducingHyper", "InducingConv2d", "InducingLinear", "inducing_bayesianize",
           "inducing_kl", "jittered_cholesky", "cholesky_jitter_factor", "conditional_mean", "matheron_noise",
           "JITTER_RETRIES"]

#: Relative jitter ``eps`` of :func:`jittered_cholesky` (``eps · mean(diag K) · I``) per dtype.
JITTER = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 1e-2}
#: Factors of ``eps`` that :func:`jittered_cholesky` tries in turn when ``K + eps · mean(diag K) · I`` is not positive
#: definite in ``K``'s precision: ``K`` is rank ``r < M`` plus ``D²``, and once training has grown ``Z`` and shrunk
#: ``D``, float32 rounding of ``Z Zᵀ`` (~ ``M · 6e-8 · λ_max``) can exceed the base jitter (seen on digits, float32).
JITTER_RETRIES = (10.0, 100.0, 1000.0)


@dataclass(frozen=True)
class InducingHyper:
    """Hyperparameters shared by all inducing layers (defaults: the official ``ffg_u_cifar100.json``).

    ``init_sd_u`` / ``init_d``: the softplus-initial values of ``s_U`` and of the diagonals of ``D_r``, ``D_c``
    (1e-3 in the official code). ``whitened_u=True`` and ``q_inducing="diagonal"`` are the only variants built."""

    prior_sd: float = 1.0
    init_lamda: float = 1e-3
    max_lamda: float = 0.03
    learn_lamda: bool = True
    max_sd_u: float = 0.1
    init_sd_u: float = 1e-3
    init_d: float = 1e-3
    sqrt_width_scaling: bool = True
    whitened_u: bool = True
    q_inducing: str = "diagonal"
    cache_cholesky: bool = True

    def __post_init__(self) -> None:
        for name in ("prior_sd", "init_lamda", "max_lamda", "max_sd_u", "init_sd_u", "init_d"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if self.init_lamda > self.max_lamda:
            raise ValueError(f"init_lamda must be <= max_lamda ({self.max_lamda}), got {self.init_lamda}")
        if self.init_sd_u > self.max_sd_u:
            raise ValueError(f"init_sd_u must be <= max_sd_u ({self.max_sd_u}), got {self.init_sd_u}")
        if self.whitened_u is not True:
            raise ValueError("whitened_u must be True (only the whitened parameterisation is implemented)")
        if self.q_inducing != "diagonal":
            raise ValueError(f"q_inducing must be 'diagonal' (only variant implemented), got {self.q_inducing!r}")


#: The official configuration: every Conv2d gets 128×128 inducing weights, the Linear head 100×128.
INDUCING_DEFAULTS: dict = {"conv": (128, 128), "linear": (100, 128), **asdict(InducingHyper())}


def _inv_softplus(x: float) -> float:
    return x + math.log(-math.expm1(-x))  # log(exp(x) − 1), stable for small and large x


def jittered_cholesky(k: torch.Tensor, eps: float | None = None, retries: int = len(JITTER_RETRIES)) -> torch.Tensor:
    """Lower Cholesky factor of ``k + eps · mean(diag k) · I``; ``k`` ``(*, n, n)``, ``eps`` from :data:`JITTER`.

    When that fails, the first ``retries`` factors of :data:`JITTER_RETRIES` multiply ``eps`` in turn (one jitter
    for the whole batch); ``torch.linalg.LinAlgError`` when every one fails."""
    return cholesky_jitter_factor(k, eps, retries)[0]


def cholesky_jitter_factor(k: torch.Tensor, eps: float | None = None, retries: int = len(JITTER_RETRIES)
                           ) -> tuple[torch.Tensor, float]:
    """:func:`jittered_cholesky` and the factor of ``eps`` that succeeded (1.0: the base jitter)."""
    eps = JITTER.get(k.dtype, 1e-6) if eps is None else eps
    eye = torch.eye(k.shape[-1], dtype=k.dtype, device=k.device)
    mean_diag = k.diagonal(dim1=-2, dim2=-1).mean(-1)[..., None, None]
    factors = (1.0, *JITTER_RETRIES[:retries])
    for factor in factors:
        lower, info = torch.linalg.cholesky_ex(k + (eps * factor) * mean_diag * eye)
        if not bool((info != 0).any()):
            return lower, factor
    raise torch.linalg.LinAlgError(f"jittered_cholesky: k + {eps * factor:g} · mean(diag k) · I is not positive "
                                   f"definite in {k.dtype} (tried the jitter × {factors})")


def _gram(z: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``K = Z Zᵀ + diag(d)²``; ``z`` ``(m, n)``, ``d`` ``(m,)``."""
    return z @ z.mT + torch.diag_embed(d * d)


def _solve_both_sides(x: torch.Tensor, l_r: torch.Tensor, l_c: torch.Tensor) -> torch.Tensor:
    """``K_r⁻¹ X K_c⁻¹`` for ``x`` ``(*, M, N)`` from the Cholesky factors (``cholesky_solve``, no inverses)."""
    y = torch.cholesky_solve(x, l_r)  # K_r⁻¹ X
    return torch.cholesky_solve(y.mT, l_c).mT  # (K_c⁻¹ (K_r⁻¹ X)ᵀ)ᵀ, K_c symmetric


def conditional_mean(u: torch.Tensor, z_r: torch.Tensor, d_r: torch.Tensor, z_c: torch.Tensor,
                     d_c: torch.Tensor) -> torch.Tensor:
    """Slow twin: ``E[W | U] = Z_rᵀ K_r⁻¹ U K_c⁻¹ Z_c``; ``u`` ``(*, M, N)`` (unwhitened) → ``(*, r, c)``."""
    l_r, l_c = jittered_cholesky(_gram(z_r, d_r)), jittered_cholesky(_gram(z_c, d_c))
    return z_r.mT @ _solve_both_sides(u, l_r, l_c) @ z_c


def matheron_noise(e1: torch.Tensor, e2: torch.Tensor, e3: torch.Tensor, e4: torch.Tensor, z_r: torch.Tensor,
                   d_r: torch.Tensor, z_c: torch.Tensor, d_c: torch.Tensor) -> torch.Tensor:
    """Slow twin: a draw of ``W − E[W | U]`` under the joint prior (Matheron's rule), ``(*, r, c)``.

    Args:
        e1: ``(*, r, c)``, e2: ``(*, r, N)``, e3: ``(*, M, c)``, e4: ``(*, M, N)``, all i.i.d. ``N(0, 1)``.
        z_r, d_r, z_c, d_c: ``(M, r)``, ``(M,)``, ``(N, c)``, ``(N,)``.

    ``ū = Z_r e1 Z_cᵀ + Z_r e2 D_c + D_r e3 Z_cᵀ + D_r e4 D_c`` is a joint draw of ``U`` with ``W = e1``, and the
    result is ``e1 − Z_rᵀ K_r⁻¹ ū K_c⁻¹ Z_c``. The middle terms equal in distribution ``A_r e2' D_c`` and
    ``D_r e3' A_cᵀ`` with ``A = chol(Z Zᵀ)``, ``e2', e3'`` ``(M, N)`` (both have covariance ``Z_rZ_rᵀ ⊗ D_c²``
    resp. ``D_r² ⊗ Z_cZ_cᵀ``) but need no Cholesky of ``Z Zᵀ``, which is singular when ``M > r`` or ``N > c``.
    """
    l_r, l_c = jittered_cholesky(_gram(z_r, d_r)), jittered_cholesky(_gram(z_c, d_c))
    u_bar = (z_r @ e1 @ z_c.mT + (z_r @ e2) * d_c + d_r[:, None] * (e3 @ z_c.mT) + d_r[:, None] * e4 * d_c)
    return e1 - z_r.mT @ _solve_both_sides(u_bar, l_r, l_c) @ z_c


class _InducingLayer(nn.Module):
    """Shared parameters and sampling of :class:`InducingConv2d` / :class:`InducingLinear` for ``W`` ``(r, c)``."""

    def __init__(self, rows: int, cols: int, inducing_rows: int, inducing_cols: int, has_bias: bool,
                 hyper: InducingHyper, device: torch.device | None, dtype: torch.dtype | None):
        super().__init__()
        for name, value in (("inducing_rows", inducing_rows), ("inducing_cols", inducing_cols)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.rows, self.cols, self.has_bias, self.hyper = rows, cols, has_bias, hyper
        self.inducing_rows, self.inducing_cols = inducing_rows, inducing_cols
        m, n, kw = inducing_rows, inducing_cols, {"device": device, "dtype": dtype}
        self.z_row = nn.Parameter(torch.randn(m, rows, **kw) / math.sqrt(m))
        self.z_col = nn.Parameter(torch.randn(n, cols, **kw) / math.sqrt(n))
        self.d_row = nn.Parameter(torch.full((m,), _inv_softplus(hyper.init_d), **kw))
        self.d_col = nn.Parameter(torch.full((n,), _inv_softplus(hyper.init_d), **kw))
        self.mu_u = nn.Parameter(torch.randn(m, n, **kw))
        self.rho_u = nn.Parameter(torch.full((m, n), _inv_softplus(hyper.init_sd_u), **kw))
        lamda = torch.tensor(_inv_softplus(hyper.init_lamda), **kw)
        if hyper.learn_lamda:
            self.lamda_raw = nn.Parameter(lamda)
        else:
            self.register_buffer("lamda_raw", lamda)
        self.prior_sd_eff = hyper.prior_sd / math.sqrt(cols) if hyper.sqrt_width_scaling else hyper.prior_sd
        self._cache: tuple | None = None

    # ------------------------------------------------------------------------------------ constrained values
    @property
    def sd_u(self) -> torch.Tensor:
        """``s_U = clamp(softplus(ρ_U), tiny, max_sd_u)`` ``(M, N)`` (``tiny`` instead of 0 keeps ``log s`` finite)."""
        return F.softplus(self.rho_u).clamp(torch.finfo(self.rho_u.dtype).tiny, self.hyper.max_sd_u)

    @property
    def lamda(self) -> torch.Tensor:
        """``λ = clamp(softplus(λ̃), tiny, max_lamda)``, a scalar tensor."""
        return F.softplus(self.lamda_raw).clamp(torch.finfo(self.lamda_raw.dtype).tiny, self.hyper.max_lamda)

    def kl_divergence(self) -> torch.Tensor:
        """``Σ KL(N(μ_U, s_U²) ‖ N(0, 1)) + r·c·(λ²/2 − log λ − 1/2)``, a scalar (nats)."""
        s, lam = self.sd_u, self.lamda
        kl_u = (0.5 * (s * s + self.mu_u * self.mu_u - 1.0) - torch.log(s)).sum()
        return kl_u + self.rows * self.cols * (0.5 * lam * lam - torch.log(lam) - 0.5)

    # ------------------------------------------------------------------------------------------- sampling
    def factors(self) -> tuple[torch.Tensor, ...]:
        """Whitened factors ``(L_r, P_r, Q_r, L_c, P_c, Q_c)``: ``L = chol K``, ``P = L⁻¹ Z``, ``Q = L⁻¹ D``.

        Cached in eval mode without autograd when ``hyper.cache_cholesky`` (keyed on the parameters' versions)."""
        use_cache = self.hyper.cache_cholesky and not self.training and not torch.is_grad_enabled()
        params = (self.z_row, self.d_row, self.z_col, self.d_col)
        key = tuple((p._version, p.data_ptr()) for p in params)
        if use_cache and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        out: list[torch.Tensor] = []
        for z, d_raw in ((self.z_row, self.d_row), (self.z_col, self.d_col)):
            d = F.softplus(d_raw)
            lower = jittered_cholesky(_gram(z, d))
            p = torch.linalg.solve_triangular(lower, z, upper=False)
            q = torch.linalg.solve_triangular(lower, torch.diag_embed(d), upper=False)
            out += [lower, p, q]
        factors = tuple(out)
        self._cache = (key, factors) if use_cache else None
        return factors

    def draw_standard_normals(self, sample_shape: tuple[int, ...] = (), generator: torch.Generator | None = None
                              ) -> tuple[torch.Tensor, ...]:
        """``(ε_U, e1, e2, e3, e4)`` with shapes ``(*S, M, N)``, ``(*S, r, c)``, ``(*S, r, N)``, ``(*S, M, c)``,
        ``(*S, M, N)``, i.i.d. ``N(0, 1)``."""
        kw = {"device": self.mu_u.device, "dtype": self.mu_u.dtype, "generator": generator}
        s = tuple(sample_shape)
        return tuple(torch.randn(*s, *shape, **kw) for shape in self.vi_noise_shapes().values())

    def weight_from_normals(self, eps_u: torch.Tensor, e1: torch.Tensor, e2: torch.Tensor, e3: torch.Tensor,
                            e4: torch.Tensor, lamda: torch.Tensor | None = None) -> torch.Tensor:
        """Fast path: ``W = σ (λ e1 + P_rᵀ (Ū − λ L_r⁻¹ ū L_c⁻ᵀ) P_c)`` ``(*S, r, c)``, ``Ū = μ_U + s_U ⊙ ε_U``;
        equals ``σ (conditional_mean(L_r Ū L_cᵀ) + λ matheron_noise(e1, ..., e4))``. ``lamda=0`` gives the mean."""
        _, p_r, q_r, _, p_c, q_c = self.factors()
        lam = self.lamda if lamda is None else lamda
        u_bar = self.mu_u + self.sd_u * eps_u
        u_noise = (p_r @ e1 + q_r @ e3) @ p_c.mT + p_r @ e2 @ q_c.mT + q_r @ e4 @ q_c.mT  # L_r⁻¹ ū L_c⁻ᵀ
        return self.prior_sd_eff * (lam * e1 + p_r.mT @ (u_bar - lam * u_noise) @ p_c)

    def conditional_noise(self, sample_shape: tuple[int, ...] = (), generator: torch.Generator | None = None
                          ) -> torch.Tensor:
        """Matheron draws of ``W/σ − E[W/σ | U]`` ``(*S, r, c)``, covariance ``I − (Z_rᵀK_r⁻¹Z_r)⊗(Z_cᵀK_c⁻¹Z_c)``
        (row-major ``vec``)."""
        _, p_r, q_r, _, p_c, q_c = self.factors()
        _, e1, e2, e3, e4 = self.draw_standard_normals(sample_shape, generator)
        u_noise = (p_r @ e1 + q_r @ e3) @ p_c.mT + p_r @ e2 @ q_c.mT + q_r @ e4 @ q_c.mT
        return e1 - p_r.mT @ u_noise @ p_c

    def conditional_mean(self, u: torch.Tensor) -> torch.Tensor:
        """``Z_rᵀ K_r⁻¹ U K_c⁻¹ Z_c`` ``(*, r, c)`` for an unwhitened ``u`` ``(*, M, N)`` (unscaled by ``σ``)."""
        return conditional_mean(u, self.z_row, F.softplus(self.d_row), self.z_col, F.softplus(self.d_col))

    def sample_weight_matrix(self, sample_shape: tuple[int, ...] = (), generator: torch.Generator | None = None
                             ) -> torch.Tensor:
        """Draws of the full weight matrix ``W`` ``(*S, r, c)`` (bias in the last column) from ``q``."""
        return self.weight_from_normals(*self.draw_standard_normals(sample_shape, generator))

    def _sampled(self) -> dict[str, torch.Tensor]:
        """One draw of the plain layer's ``weight`` (and ``bias``), as one forward call uses it."""
        # the factors and the draw stay in the parameters' precision under autocast: a Gram matrix rounded to bf16
        # is not positive definite (its smallest eigenvalues are D² ~ 1e-6); the layer's conv/matmul is autocast
        with torch.autocast(self.mu_u.device.type, enabled=False):
            return self._as_parameters(self.sample_weight_matrix())

    def _as_parameters(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """``W`` ``(*S, r, c)`` as the plain layer's ``{"weight": (*S, *weight shape), "bias": (*S, r)}``."""
        weight = (w[..., :-1] if self.has_bias else w).reshape(*w.shape[:-2], *self._weight_shape)
        return {"weight": weight, "bias": w[..., -1]} if self.has_bias else {"weight": weight}

    # ------------------------------------------------ batched sampling: sgdbound.kd.vi_batch.SampledLayer
    def vi_noise_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{name: shape}`` of the noise of one call, in draw order: ``eps_u`` ``(M, N)``, ``e1`` ``(r, c)``,
        ``e2`` ``(r, N)``, ``e3`` ``(M, c)``, ``e4`` ``(M, N)`` (see :meth:`draw_standard_normals`)."""
        m, n, r, c = self.inducing_rows, self.inducing_cols, self.rows, self.cols
        return {"eps_u": (m, n), "e1": (r, c), "e2": (r, n), "e3": (m, c), "e4": (m, n)}

    def vi_draw_noise(self) -> dict[str, torch.Tensor]:
        """The noise of one forward call, drawn by the same :meth:`draw_standard_normals` call the forward makes."""
        return dict(zip(self.vi_noise_shapes(), self.draw_standard_normals()))

    def vi_weights(self, noise: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The plain layer's parameters ``(S, *shape)`` from ``noise`` ``{name: (S, *noise shape)}``: one
        :meth:`weight_from_normals` for all ``S`` (factors computed once)."""
        device = self.mu_u.device
        return self._as_parameters(self.weight_from_normals(*(noise[k].to(device) for k in self.vi_noise_shapes())))

    def vi_mean_weights(self) -> dict[str, torch.Tensor]:
        """The plain layer's parameters at the mean of ``q``: ``σ P_rᵀ μ_U P_c`` (all normals 0)."""
        kw = {"device": self.mu_u.device, "dtype": self.mu_u.dtype}
        zeros = [torch.zeros(shape, **kw) for shape in self.vi_noise_shapes().values()]
        return self._as_parameters(self.weight_from_normals(*zeros))


class InducingConv2d(_InducingLayer):
    """Inducing-weight version of an ``nn.Conv2d`` (``groups == 1``, zero padding); ``W`` ``(out, in·kh·kw [+1])``."""

    def __init__(self, conv: nn.Conv2d, inducing_rows: int = 128, inducing_cols: int = 128,
                 hyper: InducingHyper | None = None, **kwargs):
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
        if conv.groups != 1:
            raise ValueError(f"conv.groups must be 1 for an inducing layer, got {conv.groups}")
        if conv.padding_mode != "zeros":
            raise ValueError(f"conv.padding_mode must be 'zeros', got {conv.padding_mode!r}")
        hyper = _hyper(hyper, kwargs)
        rows, (c_in, kh, kw) = conv.out_channels, conv.weight.shape[1:]
        has_bias = conv.bias is not None
        super().__init__(rows, c_in * kh * kw + has_bias, inducing_rows, inducing_cols, has_bias, hyper,
                         conv.weight.device, conv.weight.dtype)
        self.in_channels, self.out_channels, self.kernel_size = conv.in_channels, conv.out_channels, conv.kernel_size
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, 1
        self._weight_shape = (self.out_channels, self.in_channels, *self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(n, in, h, w)`` → ``(n, out, h', w')`` with one weight sample for the batch."""
        p = self._sampled()
        return F.conv2d(x, p["weight"], p.get("bias"), self.stride, self.padding, self.dilation)

    def vi_plain_layer(self) -> nn.Conv2d:
        """The ``nn.Conv2d`` of the same geometry (on ``meta``: its parameters come from :meth:`vi_weights`)."""
        return nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                         padding=self.padding, dilation=self.dilation, bias=self.has_bias, device="meta")

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.has_bias}, inducing=({self.inducing_rows}, "
                f"{self.inducing_cols})")


class InducingLinear(_InducingLayer):
    """Inducing-weight version of an ``nn.Linear``; ``W`` ``(out_features, in_features [+1])``."""

    def __init__(self, linear: nn.Linear, inducing_rows: int = 100, inducing_cols: int = 128,
                 hyper: InducingHyper | None = None, **kwargs):
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        hyper = _hyper(hyper, kwargs)
        has_bias = linear.bias is not None
        super().__init__(linear.out_features, linear.in_features + has_bias, inducing_rows, inducing_cols,
                         has_bias, hyper, linear.weight.device, linear.weight.dtype)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._weight_shape = (self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(*, in_features)`` → ``(*, out_features)`` with one weight sample for the batch."""
        p = self._sampled()
        return F.linear(x, p["weight"], p.get("bias"))

    def vi_plain_layer(self) -> nn.Linear:
        """The ``nn.Linear`` of the same shape (on ``meta``: its parameters come from :meth:`vi_weights`)."""
        return nn.Linear(self.in_features, self.out_features, bias=self.has_bias, device="meta")

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.has_bias}, "
                f"inducing=({self.inducing_rows}, {self.inducing_cols})")


def _hyper(hyper: InducingHyper | None, kwargs: dict) -> InducingHyper:
    if hyper is not None and kwargs:
        raise ValueError("pass either hyper or keyword hyperparameters, not both")
    if hyper is not None:
        return hyper
    valid = sorted(InducingHyper.__dataclass_fields__)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"unknown hyperparameters {unknown}; valid: {valid}")
    return InducingHyper(**kwargs)


def _check_sizes(name: str, sizes: tuple[int, int]) -> tuple[int, int]:
    if len(tuple(sizes)) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise ValueError(f"{name} must be two ints >= 1 (inducing rows, cols), got {sizes!r}")
    return tuple(sizes)


def inducing_bayesianize(net: nn.Module, conv: tuple[int, int] = (128, 128), linear: tuple[int, int] = (100, 128),
                         **hyper) -> nn.Module:
    """Replace every ``nn.Conv2d`` / ``nn.Linear`` of ``net`` in place by :class:`InducingConv2d` /
    :class:`InducingLinear` with ``conv`` / ``linear`` = (inducing rows, inducing cols); returns ``net`` (the new
    layer when ``net`` itself is a Conv2d/Linear). ``hyper``: :class:`InducingHyper` fields. All inputs (sizes,
    hyperparameters, grouped or non-zero-padded convolutions) are checked before anything is replaced."""
    conv, linear, config = _check_sizes("conv", conv), _check_sizes("linear", linear), _hyper(None, hyper)
    targets = [(name, m) for name, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for name, m in targets:
        if isinstance(m, nn.Conv2d) and (m.groups != 1 or m.padding_mode != "zeros"):
            raise ValueError(f"module {name or '<root>'}: groups must be 1 and padding_mode 'zeros' "
                             f"(got groups={m.groups}, padding_mode={m.padding_mode!r})")

    def convert(m: nn.Module) -> nn.Module:
        if isinstance(m, nn.Conv2d):
            return InducingConv2d(m, *conv, hyper=config)
        return InducingLinear(m, *linear, hyper=config)

    if isinstance(net, (nn.Conv2d, nn.Linear)):
        return convert(net)
    for name, m in targets:
        parent_name, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent_name), child, convert(m))
    return net


def inducing_kl(net: nn.Module) -> torch.Tensor:
    """Sum of :meth:`kl_divergence` over the inducing layers of ``net`` (a scalar; 0 when there are none)."""
    kls = [m.kl_divergence() for m in net.modules() if isinstance(m, _InducingLayer)]
    return torch.stack(kls).sum() if kls else torch.zeros(())
