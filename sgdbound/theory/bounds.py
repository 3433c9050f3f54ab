"""The four convergence bounds of SGD with BCP supervision (T1–T4 of DESIGN.md §1) and their helpers.

Constants: ``μ`` strong quasi-convexity (AS1) or PL constant (AS2), ``L`` smoothness of ``f``, ``ℒ`` expected
smoothness (AS3: ``E‖∇ℓ_v(θ) − ∇ℓ_v(θ*)‖² ≤ 2ℒ (f(θ) − f*)``), ``σ² = E‖∇ℓ_v(θ*)‖²``, ``γ`` the step.

=====  ========  =============  ====================================================================
thm    setting   step limit     bound
=====  ========  =============  ====================================================================
T1     AS1, σ²=0  γ ≤ 1/ℒ        E‖θ_t − θ*‖² ≤ (1−γμ)^t ‖θ_0 − θ*‖²
T2     AS2, σ²=0  γ ≤ μ/(Lℒ)     E[f(θ_t) − f*] ≤ (1−γμ)^t (f(θ_0) − f*)
T3     AS1       γ ≤ 1/(2ℒ)     E‖θ_t − θ̃*‖² ≤ (1−γμ)^t ‖θ_0 − θ̃*‖² + 2γσ²/μ      (Gower et al. 2019, Thm 3.1)
T4     AS2       γ ≤ μ/(2Lℒ)    E[f̃(θ_t) − f̃*] ≤ (1−γμ)^t (f̃(θ_0) − f̃*) + Lγσ²/μ
=====  ========  =============  ====================================================================

Interpolation (σ² = 0) doubles the admissible step because it removes the ``2σ²`` term of
``E‖∇ℓ_v(θ)‖² ≤ 4ℒ(f − f*) + 2σ²``. References: Gower, Loizou, Qian, Sailanbayev, Shulgin, Richtárik,
*SGD: general analysis and improved rates*, ICML 2019; Khaled & Richtárik, *Better theory for SGD in the
nonconvex world*, 2020.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sgdbound._checks import check_count, check_count_or_inf, check_nonnegative, check_positive

__all__ = [
    "Bound",
    "quasi_convex_bound",
    "pl_bound",
    "expected_smoothness",
    "batch_noise",
    "decreasing_steps",
    "DecreasingStepBound",
    "decreasing_step_bound",
]

_SLACK = 1e-12  # relative round-off allowed when a step sits exactly on its limit


def _times(t) -> np.ndarray:
    """``t`` (a number or an array of step counts) as a float array; refuse strings, NaN and negative entries.
    ``t = inf`` is allowed: the limit of the bound."""
    try:
        t_arr = np.asarray(t, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"t must be a number or an array of numbers, got {type(t).__name__}") from err
    if np.isnan(t_arr).any():
        raise ValueError("t must not be NaN")
    return t_arr


@dataclass(frozen=True)
class Bound:
    """``at(t) = rate^t · start + neighborhood``: a linear rate to a neighbourhood.

    ``theorem``: "T1"…"T4"; ``rate``: ``1 − γμ``; ``neighborhood``: ``2γσ²/μ`` (AS1) or ``Lγσ²/μ`` (AS2),
    zero with exact BCPs; ``max_step``: the theorem's step limit for this σ²; ``start``: the initial
    distance ``‖θ_0 − θ*‖²`` (AS1) or gap ``f(θ_0) − f*`` (AS2).
    """

    theorem: str
    rate: float
    neighborhood: float
    max_step: float
    step: float
    start: float

    def at(self, t):
        """The bound after ``t`` steps (a number, or an array for an array of ``t``; ``t = inf`` gives the
        neighbourhood)."""
        t_arr = _times(t)
        if (t_arr < 0).any():
            raise ValueError("t must be non-negative")
        value = self.rate**t_arr * self.start + self.neighborhood
        return float(value) if np.ndim(value) == 0 else value

    def iterations(self, accuracy: float) -> float:
        """The smallest ``t`` with ``at(t) ≤ accuracy``; ``inf`` when ``accuracy`` is not above the
        neighbourhood (the bound never gets there)."""
        accuracy = check_positive("accuracy", accuracy)
        if accuracy <= self.neighborhood:
            return math.inf
        room = accuracy - self.neighborhood
        if self.start <= room:
            return 0
        if self.rate <= 0:
            return 1
        return math.ceil(math.log(room / self.start) / math.log(self.rate) - 1e-12)


def _check_step(step: float, limit: float, rule: str) -> float:
    step = check_positive("step", step)
    if step > limit * (1 + _SLACK):
        raise ValueError(f"step {step:.6g} exceeds the theorem's limit {rule} = {limit:.6g}")
    return step


def quasi_convex_bound(*, mu: float, smoothness: float, sigma2: float, step: float, dist0: float) -> Bound:
    """T1 (``sigma2 == 0``, ``γ ≤ 1/ℒ``) or T3 (``γ ≤ 1/(2ℒ)``) under strong quasi-convexity (AS1).

    ``mu``: μ; ``smoothness``: the expected smoothness ℒ; ``sigma2``: σ² at the optimum; ``dist0``:
    ``‖θ_0 − θ*‖²``. Returns ``Bound`` with ``at(t) = (1−γμ)^t dist0 + 2γσ²/μ``.

    Example::

        >>> b = quasi_convex_bound(mu=0.1, smoothness=2.0, sigma2=0.5, step=0.25, dist0=1.0)
        >>> b.rate, b.neighborhood, b.max_step
        (0.975, 2.5, 0.25)
    """
    mu, smoothness = check_positive("mu", mu), check_positive("smoothness", smoothness)
    sigma2, dist0 = check_nonnegative("sigma2", sigma2), check_nonnegative("dist0", dist0)
    if mu > smoothness:
        raise ValueError(f"mu ({mu}) cannot exceed the expected smoothness ({smoothness})")
    exact = sigma2 == 0
    limit = 1 / smoothness if exact else 1 / (2 * smoothness)
    step = _check_step(step, limit, "1/smoothness" if exact else "1/(2 smoothness)")
    return Bound("T1" if exact else "T3", 1 - step * mu, 2 * step * sigma2 / mu, limit, step, dist0)


def pl_bound(*, mu: float, lipschitz: float, smoothness: float, sigma2: float, step: float, gap0: float) -> Bound:
    """T2 (``sigma2 == 0``, ``γ ≤ μ/(Lℒ)``) or T4 (``γ ≤ μ/(2Lℒ)``) under the PL condition (AS2).

    ``lipschitz``: L, smoothness of ``f``; ``smoothness``: ℒ; ``gap0``: ``f(θ_0) − f*``.
    Returns ``Bound`` with ``at(t) = (1−γμ)^t gap0 + Lγσ²/μ``.
    """
    mu, lipschitz = check_positive("mu", mu), check_positive("lipschitz", lipschitz)
    smoothness = check_positive("smoothness", smoothness)
    sigma2, gap0 = check_nonnegative("sigma2", sigma2), check_nonnegative("gap0", gap0)
    if mu > lipschitz:
        raise ValueError(f"mu ({mu}) cannot exceed the Lipschitz constant of the gradient ({lipschitz})")
    if smoothness < lipschitz * (1 - _SLACK):
        raise ValueError(f"smoothness (the expected smoothness ℒ, {smoothness}) cannot be below lipschitz "
                         f"(L, {lipschitz}): ℒ >= L always holds")
    exact = sigma2 == 0
    limit = mu / (lipschitz * smoothness) * (1 if exact else 0.5)
    step = _check_step(step, limit, "mu/(lipschitz smoothness)" if exact else "mu/(2 lipschitz smoothness)")
    return Bound("T2" if exact else "T4", 1 - step * mu, lipschitz * step * sigma2 / mu, limit, step, gap0)


def _check_batch(n: float, batch: int) -> tuple[float, int]:
    batch, n = check_count("batch", batch), check_count_or_inf("n", n)
    if batch > n:
        raise ValueError(f"batch ({batch}) cannot exceed n ({n})")
    return n, batch


def expected_smoothness(*, lipschitz: float, lipschitz_max: float, n: float, batch: int) -> float:
    """ℒ(b) for minibatches of ``b`` drawn without replacement from ``n`` samples (Gower et al. 2019, Prop. 3.8):

        ℒ(b) = n(b−1)/(b(n−1)) · L + (n−b)/(b(n−1)) · L_max.

    ``n = math.inf`` (streaming) gives the limit ``(b−1)/b · L + L_max/b``; ``b = 1`` gives ``L_max``, ``b = n``
    gives ``L``.
    """
    lipschitz = check_positive("lipschitz", lipschitz)
    lipschitz_max = check_positive("lipschitz_max", lipschitz_max)
    if lipschitz_max < lipschitz * (1 - 1e-12):
        raise ValueError(f"lipschitz_max ({lipschitz_max}) must be at least lipschitz ({lipschitz})")
    n, b = _check_batch(n, batch)
    if n == math.inf:
        return (b - 1) / b * lipschitz + lipschitz_max / b
    if n == 1:
        return lipschitz_max
    return n * (b - 1) / (b * (n - 1)) * lipschitz + (n - b) / (b * (n - 1)) * lipschitz_max


def batch_noise(*, sigma2: float, n: float, batch: int) -> float:
    """σ²(b) = (n−b)/(b(n−1)) · σ²_1 for minibatches of ``b`` without replacement (``σ²_1/b`` when streaming).

    Exact when ``∇f(θ*) = 0``: the minibatch mean of ``n`` zero-mean vectors.
    """
    sigma2 = check_nonnegative("sigma2", sigma2)
    n, b = _check_batch(n, batch)
    if n == math.inf:
        return sigma2 / b
    if n == 1:
        return 0.0
    return (n - b) / (b * (n - 1)) * sigma2


def decreasing_steps(*, mu: float, smoothness: float, steps: int) -> np.ndarray:
    """The switching rule of Gower et al. 2019, Thm 3.2: ``γ_t = 1/(2ℒ)`` for ``t < 4⌈𝒦⌉`` and
    ``γ_t = (2t + 1) / ((t + 1)² μ)`` afterwards, with ``𝒦 = ℒ/μ``. Returns ``(steps,)`` step sizes."""
    mu, smoothness = check_positive("mu", mu), check_positive("smoothness", smoothness)
    if mu > smoothness:
        raise ValueError(f"mu ({mu}) cannot exceed the expected smoothness ({smoothness})")
    steps = check_count("steps", steps)
    switch = 4 * math.ceil(smoothness / mu)
    t = np.arange(steps, dtype=float)
    return np.where(t < switch, 1 / (2 * smoothness), (2 * t + 1) / ((t + 1) ** 2 * mu))


@dataclass(frozen=True)
class DecreasingStepBound:
    """Gower et al. 2019, Thm 3.2: for ``t ≥ 4⌈𝒦⌉``,
    ``E‖θ_t − θ*‖² ≤ 8σ²/(μ² t) + 16⌈𝒦⌉² ‖θ_0 − θ*‖² / (e² t²)``."""

    mu: float
    smoothness: float
    sigma2: float
    dist0: float

    @property
    def switch(self) -> int:
        return 4 * math.ceil(self.smoothness / self.mu)

    def at(self, t):
        """The bound after ``t >= switch`` steps (a number or an array; ``t = inf`` gives 0)."""
        t_arr = _times(t)
        if (t_arr < self.switch).any():
            raise ValueError(f"the bound holds for t >= 4 ceil(smoothness/mu) = {self.switch}")
        kappa = math.ceil(self.smoothness / self.mu)
        value = 8 * self.sigma2 / (self.mu**2 * t_arr) + 16 * kappa**2 * self.dist0 / (math.e**2 * t_arr**2)
        return float(value) if np.ndim(value) == 0 else value


def decreasing_step_bound(*, mu: float, smoothness: float, sigma2: float, dist0: float) -> DecreasingStepBound:
    """The ``O(1/t)`` bound that goes with ``decreasing_steps`` (AS1)."""
    mu, smoothness = check_positive("mu", mu), check_positive("smoothness", smoothness)
    if mu > smoothness:
        raise ValueError(f"mu ({mu}) cannot exceed the expected smoothness ({smoothness})")
    return DecreasingStepBound(mu, smoothness, check_nonnegative("sigma2", sigma2),
                               check_nonnegative("dist0", dist0))
