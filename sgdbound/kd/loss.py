"""The distillation loss, in the official code's convention and in Hinton's.

With a student's logits ``s`` ``(n, K)``, labels ``y`` ``(n,)`` and a teacher's tempered probabilities
``p`` ``(n, K)``:

* ``official`` (``Bayesian-KD/Bayesian-KD``, ``scripts/train_student.py``)::

      (1 − λ) · CE(y, softmax(s)) + λ · T_t · T_s · KL(p ‖ softmax(s / T_s))

  with ``p = (1/S) Σ_s softmax(z_s / T_t)``: the teacher temperature acts on each Monte Carlo sample's logits
  ``z_s`` before the probabilities are averaged. The cross-entropy uses the untempered logits.
* ``hinton`` (Hinton, Vinyals & Dean 2015): one temperature ``T = T_t = T_s`` and the factor ``T²``, which
  keeps the soft term's gradient on the scale of the hard term's as ``T`` grows.

Both average over the batch (``batchmean``). ``temper`` says where the teacher temperature acts on Monte Carlo
samples: ``"sample"`` (above, the official VI and MC teachers) or ``"mean"``, ``softmax(log p̄ / T_t)`` on the
averaged predictive, as the official Laplace teacher does (``laplace_probs_in_chunks``).
"""

from __future__ import annotations

import math
from enum import Enum

import torch
import torch.nn.functional as F

from sgdbound._checks import check_probability

__all__ = ["Convention", "Temper", "distillation_loss", "tempered_probs", "check_distillation_params"]


class Convention(str, Enum):
    """How the soft term is scaled."""

    OFFICIAL = "official"
    """``λ · T_t · T_s · KL``, any pair of temperatures (the official code)."""
    HINTON = "hinton"
    """``λ · T² · KL`` with ``T_t = T_s = T`` (Hinton et al. 2015)."""


class Temper(str, Enum):
    """Where the teacher temperature acts when the teacher gives Monte Carlo samples."""

    SAMPLE = "sample"
    """``(1/S) Σ_s softmax(z_s / T)``: per sample, then average (official VI teacher)."""
    MEAN = "mean"
    """``softmax(log p̄ / T)`` = ``p̄^(1/T)`` renormalised, ``p̄`` the teacher's predictive at T = 1 (the mean of its
    draws, or the Laplace probit predictive): average, then temper (the official Laplace teacher)."""


def _enum(kind: type[Enum], name: str, value) -> Enum:
    try:
        return kind(value)
    except ValueError:
        valid = ", ".join(repr(m.value) for m in kind)
        raise ValueError(f"{name} must be one of {valid}, got {value!r}") from None


def check_distillation_params(lam: float, t_teacher: float, t_student: float, samples: int = 1,
                              convention: str = "official") -> None:
    """Refuse ``λ ∉ [0, 1]``, temperatures that are not positive and finite, ``S < 1``, or unequal temperatures
    under the Hinton convention."""
    check_probability("lam", lam)
    for name, value in (("t_teacher", t_teacher), ("t_student", t_student)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite temperature, got {value!r}")
    if int(samples) != samples or samples < 1:
        raise ValueError(f"samples (S) must be an integer >= 1, got {samples!r}")
    if _enum(Convention, "convention", convention) is Convention.HINTON and t_teacher != t_student:
        raise ValueError(f"the hinton convention uses one temperature: t_teacher ({t_teacher}) must equal "
                         f"t_student ({t_student})")


def tempered_probs(teacher_logits: torch.Tensor, temperature: float = 1.0, temper: str = "sample") -> torch.Tensor:
    """Teacher probabilities ``(n, K)`` from logits ``(n, K)`` or Monte Carlo logits ``(S, n, K)``.

    ``temper="sample"``: ``(1/S) Σ_s softmax(z_s / T)``; ``"mean"``: ``softmax(log p̄ / T)`` with
    ``p̄ = (1/S) Σ_s softmax(z_s)``. The two agree when ``S = 1`` or ``T = 1``.
    """
    if teacher_logits.dim() == 2:
        teacher_logits = teacher_logits[None]
    if teacher_logits.dim() != 3:
        raise ValueError(f"teacher_logits must be (n, K) or (S, n, K), got shape {tuple(teacher_logits.shape)}")
    if _enum(Temper, "temper", temper) is Temper.SAMPLE:
        return torch.softmax(teacher_logits / temperature, dim=-1).mean(0)
    mean = torch.softmax(teacher_logits, dim=-1).mean(0)
    return torch.softmax(torch.log(mean.clamp_min(1e-30)) / temperature, dim=-1)


def distillation_loss(student_logits: torch.Tensor, labels: torch.Tensor, *, teacher_probs: torch.Tensor | None = None,
                      teacher_logits: torch.Tensor | None = None, lam: float = 0.5, t_teacher: float = 1.0,
                      t_student: float = 1.0, convention: str = "official", temper: str = "sample") -> torch.Tensor:
    """The distillation loss (a scalar, mean over the batch).

    Give the teacher either as ``teacher_probs`` ``(n, K)``: probabilities *already tempered* with ``t_teacher``
    (what ``Teacher.probs(x, temperature=t_teacher)`` returns), or as ``teacher_logits`` ``(n, K)`` or
    ``(S, n, K)`` Monte Carlo logits, tempered here with ``t_teacher`` as ``temper`` says.

    ``student_logits`` ``(n, K)``; ``labels`` ``(n,)`` integer classes. ``λ = 0`` is plain cross-entropy
    (the teacher is not used), ``λ = 1`` pure distillation. See the module docstring for the conventions.

    Example::

        >>> s, y = torch.zeros(2, 3), torch.tensor([0, 2])
        >>> distillation_loss(s, y, teacher_probs=torch.full((2, 3), 1 / 3), lam=1.0).item()
        0.0
    """
    check_distillation_params(lam, t_teacher, t_student, 1, convention)
    if student_logits.dim() != 2:
        raise ValueError(f"student_logits must be (n, K), got shape {tuple(student_logits.shape)}")
    n, k = student_logits.shape
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if (teacher_probs is None) == (teacher_logits is None):
        raise ValueError("give exactly one of teacher_probs or teacher_logits")
    if teacher_logits is not None:
        teacher_probs = tempered_probs(teacher_logits, t_teacher, temper)
    if teacher_probs.shape != (n, k):
        raise ValueError(f"teacher probabilities must have shape ({n}, {k}), got {tuple(teacher_probs.shape)}")
    ce = F.cross_entropy(student_logits, labels)
    if lam == 0:
        return ce
    scale = t_teacher * t_student  # equals T² under the Hinton convention (checked above)
    kl = F.kl_div(F.log_softmax(student_logits / t_student, dim=1), teacher_probs.to(student_logits.dtype),
                  reduction="batchmean")
    return (1 - lam) * ce + lam * scale * kl
