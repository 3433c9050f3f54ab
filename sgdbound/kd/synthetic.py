"""Teachers on a Gaussian mixture: how far their probabilities are from the exact BCPs, and the gradient noise
that distance predicts for a student at the Bayes-optimal parameters (the bridge from ``kd`` to ``theory``).

Setting: a shared-covariance mixture (``GaussianMixture.reference``, standardised), so the BCPs ``P(x)`` are a
linear softmax and the linear student ``θ* = bayes_linear()`` interpolates them. A teacher of each kind is
trained on ``n_train`` labelled draws; on ``n_eval`` fresh inputs its probabilities ``p̃`` give the error
``e = p̃ − P``, summarised as

* ``nu``: the paper's ν, the mean squared error per entry ``(1/nK) Σ_i Σ_k e_ik²``;
* ``bias``: ``(K,)`` the mean error ``E e`` (a biased teacher moves the optimum as well);
* ``covariance``: ``(K, K)`` the covariance ``E[(e − b)(e − b)ᵀ]`` and ``second_moment`` ``E[e eᵀ]``.

At ``θ*`` the per-sample gradient with target ``p̃`` is ``Jzᵀ Aᵀ e``, so the measured noise is exactly
``(1/n) Σ_i e_iᵀ G_i e_i`` (``G`` the softmax Gram of ``sgdbound.theory``). Two models predict it from the
summaries alone: the paper's isotropic ``Gaussian(ν)`` (``ν E tr G``) and ``TeacherError`` (this module: mean
``P + b``, covariance ``M − b bᵀ``, giving ``E tr(M G)``). Their gap to the measurement is how much the error's
dependence on ``x`` matters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sgdbound.data import GaussianMixture
from sgdbound.kd.nets import MLPNet
from sgdbound.kd.teachers import TEACHERS, check_teacher_name
from sgdbound.kd.train import OptimConfig
from sgdbound.models import LinearSoftmax
from sgdbound.targets import Gaussian, OneHot, SupervisionModel
from sgdbound.theory import empirical_noise, expected_sq_grad_norm, predicted_noise

__all__ = ["TeacherError", "TeacherFidelity", "fidelity_from_probs", "teacher_fidelity", "synthetic_teacher_study",
           "fidelity_table"]


class TeacherError(SupervisionModel):
    """Targets ``t = P + e`` with an error of mean ``bias`` ``(K,)`` and second moment ``second_moment``
    ``(K, K)`` (``E[e eᵀ]``), the same for every ``x``: mean ``P + b``, covariance ``M − b bᵀ``.
    Sampling draws ``e`` Gaussian with those moments."""

    def __init__(self, bias: torch.Tensor, second_moment: torch.Tensor):
        bias, second = torch.as_tensor(bias, dtype=torch.float64), torch.as_tensor(second_moment, dtype=torch.float64)
        if bias.dim() != 1 or second.shape != (bias.shape[0], bias.shape[0]):
            raise ValueError(f"bias must be (K,) and second_moment (K, K), got {tuple(bias.shape)} and "
                             f"{tuple(second.shape)}")
        cov = second - torch.outer(bias, bias)
        if torch.linalg.eigvalsh((cov + cov.T) / 2)[0] < -1e-10 * max(1.0, cov.abs().max().item()):
            raise ValueError("second_moment − bias biasᵀ must be positive semi-definite")
        self.bias, self.second_moment, self._cov = bias, second, (cov + cov.T) / 2

    @property
    def biased(self) -> bool:  # type: ignore[override]
        return bool(self.bias.abs().max() > 0)

    def mean(self, bcp):
        self.check(bcp)
        return bcp + self.bias.to(bcp)

    def covariance(self, bcp):
        self.check(bcp)
        return self._cov.to(bcp).expand(bcp.shape[0], -1, -1).clone()

    def _sample(self, bcp, y, generator):
        vals, vecs = torch.linalg.eigh(self._cov)
        root = (vecs * vals.clamp_min(0).sqrt()).to(bcp)
        z = torch.randn(bcp.shape, generator=generator, dtype=bcp.dtype, device=bcp.device)
        return bcp + self.bias.to(bcp) + z @ root.T


@dataclass(frozen=True)
class TeacherFidelity:
    """A teacher's distance to the BCPs and the gradient noise at ``θ*``: ``measured`` (targets ``p̃``) next to
    ``predicted_gaussian`` (paper's ``Gaussian(ν)``) and ``predicted_covariance`` (``TeacherError``), with
    ``onehot`` (one-hot labels' noise) for scale. ``accuracy``: the teacher's agreement with the Bayes
    classifier's argmax; ``kl``: mean ``KL(P ‖ p̃)`` (nats)."""

    teacher: str
    nu: float
    bias: list
    covariance: list
    second_moment: list
    kl: float
    accuracy: float
    measured: float
    predicted_gaussian: float
    predicted_covariance: float
    onehot: float


def fidelity_from_probs(student: torch.nn.Module, x: torch.Tensor, bcp: torch.Tensor, probs: torch.Tensor,
                        name: str = "teacher") -> TeacherFidelity:
    """Summaries and noise for teacher probabilities ``probs`` ``(n, K)`` against the BCPs ``bcp`` ``(n, K)``
    at the parameters of ``student`` (float64 inputs ``x`` ``(n, d)``)."""
    probs = probs.to(torch.float64)
    probs = probs / probs.sum(1, keepdim=True)
    err = probs - bcp
    bias = err.mean(0)
    second = err.T @ err / err.shape[0]
    kl = (bcp * (torch.log(bcp.clamp_min(1e-300)) - torch.log(probs.clamp_min(1e-300)))).sum(1).mean().item()
    nu = err.pow(2).mean().item()
    return TeacherFidelity(
        teacher=name, nu=nu, bias=bias.tolist(), covariance=(second - torch.outer(bias, bias)).tolist(),
        second_moment=second.tolist(), kl=kl, accuracy=(probs.argmax(1) == bcp.argmax(1)).double().mean().item(),
        measured=empirical_noise(student, x, probs),
        predicted_gaussian=predicted_noise(student, x, bcp, Gaussian(nu)),
        predicted_covariance=expected_sq_grad_norm(student, x, bcp, TeacherError(bias, second)),
        onehot=predicted_noise(student, x, bcp, OneHot()))


def teacher_fidelity(kind: str, mixture: GaussianMixture | None = None, *, n_train: int = 2000, n_eval: int = 1000,
                     samples: int = 10, epochs: int = 30, hidden: Sequence[int] = (64,), lr: float = 3e-3,
                     seed: int = 0, **options) -> TeacherFidelity:
    """Train a ``kind`` teacher (an MLP of widths ``hidden``) on ``n_train`` draws of ``mixture`` (default: the
    standardised reference mixture) and measure it on ``n_eval`` fresh draws with ``samples`` samples at
    ``T = 1``; ``options`` go to the teacher class."""
    check_teacher_name(kind)
    mixture = mixture or GaussianMixture.reference(seed=0).standardized()
    train, evaluation = mixture.sample(n_train, seed=seed + 1), mixture.sample(n_eval, seed=seed + 2)
    dim, classes = mixture.dim, mixture.num_classes

    def factory(**extra):
        return MLPNet(dim, classes, hidden=tuple(hidden), **extra)

    teacher = TEACHERS[kind](factory, epochs=epochs, optim=OptimConfig(lr=lr), seed=seed, **options)
    teacher.fit(train.x.float(), train.y)
    probs = teacher.probs(evaluation.x.float(), samples)
    weight, bias = mixture.bayes_linear()
    student = LinearSoftmax.from_params(weight, bias)
    return fidelity_from_probs(student, evaluation.x, evaluation.bcp, probs, kind)


def synthetic_teacher_study(kinds: Sequence[str] = tuple(TEACHERS), **kwargs) -> list[TeacherFidelity]:
    """``teacher_fidelity`` for each teacher kind with the same data and settings."""
    return [teacher_fidelity(kind, **kwargs) for kind in kinds]


def fidelity_table(rows: Sequence[TeacherFidelity]) -> str:
    """A markdown table of ``TeacherFidelity`` rows: distance to the BCPs, then measured next to predicted noise."""
    lines = ["| teacher | ν (mean sq. error per entry) | ‖bias‖ | KL(P‖p̃) (nats) | agreement with Bayes argmax (%) "
             "| measured σ² at θ* | predicted, Gaussian(ν) | predicted, covariance model | one-hot σ² |",
             "|---|---|---|---|---|---|---|---|---|"]
    for f in rows:
        bias = sum(v * v for v in f.bias) ** 0.5
        lines.append(f"| {f.teacher} | {f.nu:.2e} | {bias:.1e} | {f.kl:.4f} | {100 * f.accuracy:.1f} "
                     f"| {f.measured:.4f} | {f.predicted_gaussian:.4f} | {f.predicted_covariance:.4f} "
                     f"| {f.onehot:.3f} |")
    return "\n".join(lines) + "\n"
