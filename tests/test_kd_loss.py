"""The distillation loss against its formulas written out entry by entry, and its input checks."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from sgdbound.kd.loss import distillation_loss, tempered_probs

F64 = torch.float64


def _softmax_row(z, T=1.0):
    m = max(v / T for v in z)
    e = [math.exp(v / T - m) for v in z]
    s = sum(e)
    return [v / s for v in e]


def _hand_loss(student, labels, teacher_samples, lam, tt, ts, scale, temper="sample"):
    """Plain-Python loops: (1/n) Σ_i [(1−λ)(−log softmax(s_i)_{y_i}) + λ·scale·Σ_k p_ik log(p_ik / q_ik)]."""
    n, S = len(student), len(teacher_samples)
    total = 0.0
    for i in range(n):
        if temper == "sample":
            p = [sum(_softmax_row(teacher_samples[s][i], tt)[k] for s in range(S)) / S for k in range(len(student[i]))]
        else:
            mean = [sum(_softmax_row(teacher_samples[s][i])[k] for s in range(S)) / S for k in range(len(student[i]))]
            p = _softmax_row([math.log(v) for v in mean], tt)
        q1 = _softmax_row(student[i])
        qt = _softmax_row(student[i], ts)
        ce = -math.log(q1[labels[i]])
        kl = sum(pk * math.log(pk / qk) for pk, qk in zip(p, qt) if pk > 0)
        total += (1 - lam) * ce + lam * scale * kl
    return total / n


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(6, 4, generator=g, dtype=F64) * 2
    teacher = torch.randn(3, 6, 4, generator=g, dtype=F64) * 3  # S = 3 Monte Carlo samples
    labels = torch.tensor([0, 3, 1, 2, 2, 0])
    return student, labels, teacher


@pytest.mark.parametrize("lam,tt,ts", [(0.5, 1.0, 1.0), (0.3, 4.0, 2.0), (1.0, 0.5, 3.0), (0.0, 2.0, 2.0),
                                       (0.9, 2.0, 1.0)])
def test_official_matches_hand_formula(batch, lam, tt, ts):
    student, labels, teacher = batch
    got = distillation_loss(student, labels, teacher_logits=teacher, lam=lam, t_teacher=tt, t_student=ts)
    want = _hand_loss(student.tolist(), labels.tolist(), teacher.tolist(), lam, tt, ts, tt * ts)
    assert got.item() == pytest.approx(want, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0])
def test_hinton_uses_T_squared(batch, T):
    student, labels, teacher = batch
    got = distillation_loss(student, labels, teacher_logits=teacher, lam=0.7, t_teacher=T, t_student=T,
                            convention="hinton")
    want = _hand_loss(student.tolist(), labels.tolist(), teacher.tolist(), 0.7, T, T, T**2)
    assert got.item() == pytest.approx(want, rel=1e-10)


def test_temper_on_the_mean_predictive(batch):
    student, labels, teacher = batch
    got = distillation_loss(student, labels, teacher_logits=teacher, lam=0.6, t_teacher=3.0, t_student=2.0,
                            temper="mean")
    want = _hand_loss(student.tolist(), labels.tolist(), teacher.tolist(), 0.6, 3.0, 2.0, 6.0, temper="mean")
    assert got.item() == pytest.approx(want, rel=1e-10)
    per_sample = distillation_loss(student, labels, teacher_logits=teacher, lam=0.6, t_teacher=3.0, t_student=2.0)
    assert abs(got.item() - per_sample.item()) > 1e-6  # the two conventions differ when S > 1 and T ≠ 1


def test_probs_and_logits_inputs_agree(batch):
    student, labels, teacher = batch
    probs = tempered_probs(teacher, 2.5)
    a = distillation_loss(student, labels, teacher_probs=probs, lam=0.4, t_teacher=2.5, t_student=1.5)
    b = distillation_loss(student, labels, teacher_logits=teacher, lam=0.4, t_teacher=2.5, t_student=1.5)
    assert_close(a, b)
    assert_close(tempered_probs(teacher[0], 2.0), torch.softmax(teacher[0] / 2.0, 1))


def test_kd_gradient_is_scaled_probability_gap(batch):
    """∂/∂s of λ T_t T_s KL(p ‖ softmax(s/T_s)) (batchmean) is λ T_t (q_T − p) / n."""
    student, labels, teacher = batch
    s = student.clone().requires_grad_(True)
    p = tempered_probs(teacher, 2.0)
    lam, tt, ts = 1.0, 2.0, 3.0
    distillation_loss(s, labels, teacher_probs=p, lam=lam, t_teacher=tt, t_student=ts).backward()
    want = lam * tt * (torch.softmax(student / ts, 1) - p) / student.shape[0]
    assert_close(s.grad, want)


@settings(max_examples=30, deadline=None)
@given(lam=st.floats(0, 1), tt=st.floats(0.2, 8), ts=st.floats(0.2, 8))
def test_loss_is_affine_in_lambda(lam, tt, ts):
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(5, 3, generator=g, dtype=F64), torch.randn(2, 5, 3, generator=g, dtype=F64)
    labels = torch.tensor([0, 1, 2, 1, 0])

    def loss(value):
        return distillation_loss(student, labels, teacher_logits=teacher, lam=value, t_teacher=tt, t_student=ts).item()

    assert loss(lam) == pytest.approx((1 - lam) * loss(0.0) + lam * loss(1.0), rel=1e-9, abs=1e-12)
    assert loss(1.0) >= -1e-12  # a KL divergence


@pytest.mark.parametrize("kwargs,match", [
    ({"lam": -0.1}, "lam must lie in"),
    ({"lam": 1.5}, "lam must lie in"),
    ({"t_teacher": 0.0}, "t_teacher must be a positive"),
    ({"t_student": -1.0}, "t_student must be a positive"),
    ({"t_teacher": float("inf")}, "t_teacher must be a positive"),
    ({"convention": "hinton", "t_teacher": 2.0, "t_student": 1.0}, "hinton convention uses one temperature"),
    ({"convention": "bogus"}, "convention must be one of"),
    ({"temper": "bogus"}, "temper must be one of"),
])
def test_bad_parameters_fail_early(batch, kwargs, match):
    student, labels, teacher = batch
    with pytest.raises(ValueError, match=match):
        distillation_loss(student, labels, teacher_logits=teacher, **kwargs)


def test_bad_shapes_fail_early(batch):
    student, labels, teacher = batch
    with pytest.raises(ValueError, match="exactly one"):
        distillation_loss(student, labels, lam=0.5)
    with pytest.raises(ValueError, match="labels must have shape"):
        distillation_loss(student, labels[:3], teacher_logits=teacher)
    with pytest.raises(ValueError, match="teacher probabilities must have shape"):
        distillation_loss(student, labels, teacher_probs=torch.full((6, 5), 0.2, dtype=F64))
