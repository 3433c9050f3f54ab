"""Each teacher on tiny data: one interface, probabilities on the simplex, per-sample tempering, determinism."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from sgdbound.kd.bayes_teachers import kl_weight
from sgdbound.kd.data import load_dataset
from sgdbound.kd.teachers import TEACHERS, make_teacher
from sgdbound.kd.train import OptimConfig

OPTIONS = {"ensemble": {"members": 3}, "laplace": {"link": "mc"}}


@pytest.fixture(scope="module")
def tiny():
    data = load_dataset("mixture")
    return data, data.x_train[:300], data.y_train[:300], data.x_test[:50]


def _teacher(name, data, **extra):
    options = {**OPTIONS.get(name, {}), **extra}
    return make_teacher(name, data, net="mlp", net_options={"hidden": [16]}, epochs=3,
                        optim=OptimConfig(lr=3e-3), seed=0, **options)


@pytest.fixture(scope="module")
def fitted(tiny):
    data, x, y, _ = tiny
    return {name: _teacher(name, data).fit(x, y) for name in TEACHERS}


def test_registry_names():
    assert set(TEACHERS) == {"deterministic", "vi", "laplace", "mc_dropout", "ensemble"}


@pytest.mark.parametrize("name", list(TEACHERS))
def test_probs_interface(name, fitted, tiny):
    teacher, x = fitted[name], tiny[3]
    mean, per = teacher.probs(x, samples=4, temperature=2.0, return_samples=True)
    S = 3 if name == "ensemble" else 4  # an ensemble's samples are its members
    assert mean.shape == (50, 5) and per.shape == (S, 50, 5)
    assert_close(mean.sum(1), torch.ones(50))
    assert (mean >= 0).all()
    assert_close(mean, per.mean(0))
    # a teacher is one fixed function: the same call gives the same probabilities
    assert_close(teacher.probs(x, samples=4, temperature=2.0), mean)


@pytest.mark.parametrize("name", ["vi", "laplace", "mc_dropout"])
def test_stochastic_teachers_have_spread(name, fitted, tiny):
    _, per = fitted[name].probs(tiny[3], samples=5, return_samples=True)
    assert per.std(0).max() > 1e-4


def test_temperature_acts_per_sample(fitted, tiny):
    """probs(T) = (1/S) Σ_s softmax(z_s / T) for the same draws z_s."""
    teacher, x = fitted["mc_dropout"], tiny[3]
    from sgdbound.kd.train import seeded

    with seeded(123), torch.no_grad():
        z = teacher.sample_logits(x, 6)
    want = torch.softmax(z / 3.0, -1).mean(0)
    assert_close(teacher.probs(x, samples=6, temperature=3.0, seed=123), want)
    assert not torch.allclose(want, torch.softmax(torch.log(torch.softmax(z, -1).mean(0)) / 3.0, -1), atol=1e-4)


def test_deterministic_samples_are_identical(fitted, tiny):
    _, per = fitted["deterministic"].probs(tiny[3], samples=3, return_samples=True)
    assert_close(per[0], per[2])


def test_laplace_probit_matches_monte_carlo(tiny):
    """The probit predictive with temperature T approximates the average of softmax(f/T), f ~ N(f_μ, f_Σ)."""
    data, x, y, xt = tiny
    la = _teacher("laplace", data, link="probit").fit(x, y)
    probit = la.probs(xt, samples=1, temperature=2.0)
    mc = la.probs(xt, samples=4000, temperature=2.0, return_samples=True)[1].mean(0)
    assert (probit - mc).abs().max() < 0.03
    assert la.la.prior_precision.item() > 0 and math.isfinite(la.marginal_likelihood())


def test_mc_dropout_computes_features_once(fitted, tiny, monkeypatch):
    teacher, calls = fitted["mc_dropout"], []
    original = teacher.net.features
    monkeypatch.setattr(teacher.net, "features", lambda x: calls.append(1) or original(x))
    teacher.probs(tiny[3], samples=10)
    assert len(calls) == 1


def test_laplace_samples_reuse_one_feature_pass(fitted, tiny, monkeypatch):
    teacher, calls = fitted["laplace"], []
    original = teacher._glm
    monkeypatch.setattr(teacher, "_glm", lambda x: calls.append(1) or original(x))
    teacher.probs(tiny[3], samples=10)
    assert len(calls) == 1


def test_laplace_and_deterministic_share_the_map_net(tiny):
    data, x, y, xt = tiny
    cache: dict = {}
    det = make_teacher("deterministic", data, net="mlp", net_options={"hidden": [16]}, epochs=2, cache=cache,
                       cache_key="tiny").fit(x, y)
    la = make_teacher("laplace", data, net="mlp", net_options={"hidden": [16]}, epochs=2, cache=cache,
                      cache_key="tiny").fit(x, y)
    assert len([k for k in cache if isinstance(k, tuple)]) == 1
    assert_close(la.net(xt), det.net(xt))


def test_kl_annealing_schedule():
    assert [kl_weight(e, 2, 4) for e in range(8)] == [0, 0, 0, 0.25, 0.5, 0.75, 1, 1]
    assert kl_weight(0, 0, 0) == 1.0


def test_bad_teacher_input(tiny):
    data, x, y, _ = tiny
    with pytest.raises(ValueError, match="unknown teacher 'bogus'; valid: deterministic, vi"):
        make_teacher("bogus", data)
    with pytest.raises(ValueError, match="unknown option"):
        make_teacher("vi", data, members=3)
    teacher = make_teacher("deterministic", data, net="mlp", epochs=1)
    with pytest.raises(ValueError, match="must be fit"):
        teacher.probs(x)
    teacher.fit(x[:20], y[:20])
    with pytest.raises(ValueError, match="samples"):
        teacher.probs(x, samples=0)
    with pytest.raises(ValueError, match="temperature"):
        teacher.probs(x, temperature=0.0)
    with pytest.raises(ValueError, match="unknown net"):
        make_teacher("deterministic", data, net="resnet").fit(x, y)
