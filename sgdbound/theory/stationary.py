"""The stationary spread of SGD around the optimum: sharper than the bounds.

Near ``θ*`` the iterates of constant-step SGD follow ``δ_{t+1} = (I − γH) δ_t − γ ξ_t`` with
``Cov ξ = S / b``; their stationary covariance solves the discrete Lyapunov equation

    Σ = (I − γH) Σ (I − γH)ᵀ + γ² S / b,

and ``E‖θ − θ*‖² ≈ tr Σ ≈ (γ / 2b) tr(H⁺ S)`` for small ``γ``. Heavy-ball momentum ``β`` uses the augmented
state ``(δ_t, δ_{t−1})`` with ``A = [[(1+β)I − γH, −βI], [I, 0]]``; for small steps it divides ``γ`` by
``1 − β``. Directions where ``H`` vanishes (the softmax's flat directions) carry no noise and are left out,
so the prediction is the spread around the *set* of optima.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.linalg
import torch

from sgdbound._checks import check_count, check_count_or_inf, check_number, check_positive

__all__ = ["StationaryPrediction", "stationary_prediction"]


class StationaryPrediction(float):
    """The predicted stationary ``E‖θ − θ*‖²`` (a ``float``), carrying its parts.

    ``covariance``: the stationary ``Σ`` ``(P, P)`` of ``θ − θ*`` (numpy, float64); ``small_step``: the
    first-order value ``γ tr(H⁺S) / (2b(1−β))``; ``step``, ``momentum``, ``batch``.
    """

    covariance: np.ndarray
    small_step: float
    step: float
    momentum: float
    batch: int

    def __new__(cls, value: float, **parts):
        obj = super().__new__(cls, value)
        for key, item in parts.items():
            setattr(obj, key, item)
        return obj

    def __repr__(self) -> str:
        return f"StationaryPrediction({float(self):.6g}, small_step={self.small_step:.6g})"


def _symmetric(name: str, matrix) -> np.ndarray:
    if torch.is_tensor(matrix):
        if matrix.is_complex():
            raise ValueError(f"{name} must be a real matrix, got dtype {matrix.dtype}")
        matrix = matrix.detach().cpu().double().numpy()
    try:
        arr = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a square matrix of real numbers: {err}") from err
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite")
    scale = max(np.abs(arr).max(), 1e-300)
    if np.abs(arr - arr.T).max() > 1e-8 * scale:
        raise ValueError(f"{name} must be symmetric")
    return 0.5 * (arr + arr.T)


def stationary_prediction(hessian, noise_cov, step: float, momentum: float = 0.0, batch: int = 1,
                          n: int | None = None, rtol: float = 1e-9) -> StationaryPrediction:
    """Predicted stationary ``E‖θ − θ*‖²`` of SGD (or heavy ball) with constant ``step``.

    ``hessian`` ``(P, P)``: ``H = ∇²f(θ*)``; ``noise_cov`` ``(P, P)``: ``S = E[∇ℓ ∇ℓᵀ]`` at ``θ*`` for one
    sample; ``batch``: ``b`` (noise ``S/b``; with ``n`` given, sampling without replacement from ``n``,
    ``S (n−b)/(b(n−1))``; ``n = math.inf`` is the same as None, streaming); ``momentum``: ``β ∈ [0, 1)``.
    Eigen-directions of ``H`` below ``rtol · λ_max`` (``rtol`` in ``(0, 1)``) are flat and excluded; noise
    there would make the spread unbounded (``inf``, with a warning).

    Raises ``ValueError`` when the step makes the linear recursion unstable (``γ λ_max ≥ 2(1+β)``).
    """
    h, s = _symmetric("hessian", hessian), _symmetric("noise_cov", noise_cov)
    if h.shape != s.shape:
        raise ValueError(f"hessian {h.shape} and noise_cov {s.shape} must have the same shape")
    step = check_positive("step", step)
    momentum = check_number("momentum", momentum)
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
    batch = check_count("batch", batch)
    if n is not None:
        n = check_count_or_inf("n", n, minimum=batch)
        if n == math.inf:
            n = None  # streaming
    rtol = check_number("rtol", rtol)
    if not 0.0 < rtol < 1.0:
        raise ValueError(f"rtol must lie in (0, 1), got {rtol}")
    if np.linalg.eigvalsh(s)[0] < -1e-8 * max(np.abs(s).max(), 1e-300):
        raise ValueError("noise_cov must be positive semi-definite")
    evals, evecs = np.linalg.eigh(h)
    top = evals[-1]
    if top <= 0:
        raise ValueError("hessian must have a positive eigenvalue")
    if evals[0] < -rtol * top:
        raise ValueError(f"hessian must be positive semi-definite at the optimum (min eigenvalue {evals[0]:.3g})")
    if step * top >= 2 * (1 + momentum):
        raise ValueError(f"step {step:.6g} is unstable: step * max eigenvalue = {step * top:.6g} >= 2(1+momentum)")
    factor = 1 / batch if n is None else (0.0 if n == 1 else (n - batch) / (batch * (n - 1)))
    keep = evals > rtol * top
    lam = evals[keep]
    basis = evecs[:, keep]
    s_rot = basis.T @ s @ basis * factor
    flat = evecs[:, ~keep]
    if flat.size and np.abs(flat.T @ s @ flat).max() > 1e-10 * max(np.abs(s).max(), 1e-300):
        warnings.warn("noise_cov has mass on flat directions of the hessian: the spread is unbounded",
                      stacklevel=2)
        return StationaryPrediction(math.inf, covariance=np.full_like(h, np.inf), small_step=math.inf,
                                    step=step, momentum=momentum, batch=int(batch))
    small = step * float(np.sum(np.diag(s_rot) / lam)) / (2 * (1 - momentum))
    if momentum == 0.0:
        contraction = 1 - step * lam
        cov_rot = step**2 * s_rot / (1 - np.outer(contraction, contraction))
    else:
        m = lam.size
        eye = np.eye(m)
        a = np.block([[(1 + momentum) * eye - step * np.diag(lam), -momentum * eye], [eye, np.zeros((m, m))]])
        q = np.zeros((2 * m, 2 * m))
        q[:m, :m] = step**2 * s_rot
        cov_rot = scipy.linalg.solve_discrete_lyapunov(a, q)[:m, :m]
        cov_rot = 0.5 * (cov_rot + cov_rot.T)
    covariance = basis @ cov_rot @ basis.T
    return StationaryPrediction(float(np.trace(cov_rot)), covariance=covariance, small_step=small, step=step,
                                momentum=momentum, batch=int(batch))
