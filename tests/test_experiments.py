"""Every experiment in a tiny configuration, asserting the relation its theory claims; plus the registry.

Tolerances are wider than the full runs' (tens of replicas, a few thousand steps); each states what it allows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sgdbound.experiments import (
    EXPERIMENTS,
    SPECS,
    Band,
    experiment_config,
    fit_loglog,
    load_result,
    parse_target,
    result_matches,
    run_experiment,
    save_result,
)
from sgdbound.targets import Dirichlet, Exact, Gaussian, OneHot

# Small, fast settings shared by the linear experiments: γ = 0.032 relaxes in ~500 steps on the "teacher" problem.
TINY = {"replicas": 32, "theory_samples": 4096, "eval_size": 64, "record_every": 100, "device": "cpu"}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_registry_lists_every_experiment_with_quick_settings():
    assert list(EXPERIMENTS) == list(SPECS)
    assert set(EXPERIMENTS) == {"interpolation", "step_size", "teacher_noise", "lambda_sweep", "capacity", "adam",
                                "mlp_students", "notebook"}
    for name in EXPERIMENTS:
        full, quick = experiment_config(name), experiment_config(name, quick=True)
        assert set(full) == set(quick)
        assert "seed" in full


def test_experiment_config_applies_quick_then_overrides_and_refuses_unknown_keys():
    config = experiment_config("step_size", quick=True, steps=123)
    assert config["steps"] == 123
    assert config["lrs"] == list(SPECS["step_size"].quick["lrs"])
    with pytest.raises(ValueError, match="no parameter"):
        experiment_config("step_size", stepz=5)
    with pytest.raises(ValueError, match="unknown experiment"):
        experiment_config("nope")


@pytest.mark.parametrize("spec, expected", [("onehot", OneHot()), ("exact", Exact()), ("dirichlet:5", Dirichlet(5.0)),
                                            ("gaussian:0.01", Gaussian(0.01))])
def test_parse_target(spec, expected):
    assert parse_target(spec) == expected


@pytest.mark.parametrize("spec", ["dirichlet", "onehot:3", "laplace:1"])
def test_parse_target_refuses_bad_specs(spec):
    with pytest.raises(ValueError):
        parse_target(spec)


def test_fit_loglog_recovers_a_power_law():
    x = np.geomspace(1e-3, 1e-1, 6)
    fit = fit_loglog(x, 3.0 * x**1.5)
    assert fit.slope == pytest.approx(1.5)
    np.testing.assert_allclose(fit.predict(x), 3.0 * x**1.5)
    with pytest.raises(ValueError, match="two positive"):
        fit_loglog([1.0, 2.0], [0.0, -1.0])


@pytest.mark.slow
def test_interpolation_exact_stays_at_optimum_and_noisy_plateaus_match_theory():
    measured, theory = EXPERIMENTS["interpolation"](targets=("exact", "onehot"), lr=0.032, steps=2000, **TINY)
    # T1 with σ² = 0: started at θ*, SGD never moves (float64 round-off only).
    assert measured.plateau["optimum/exact"] < 1e-12
    assert theory.sigma2["optimum/exact"] == 0
    # From a random start the exact-BCP distance decays and stays under the T1 curve.
    band = measured.dist_sq["random/exact"]
    assert measured.final["random/exact"] < 0.05 * band.mean[0]
    assert np.all(band.mean <= np.asarray(theory.bound_curve["random/exact"]) * 1.001)
    # One-hot labels: a plateau near the Lyapunov prediction (±25% for 32 replicas) and below T3.
    plateau, prediction = measured.plateau["optimum/onehot"], theory.prediction["optimum/onehot"]
    assert abs(plateau / prediction - 1) < 0.25
    assert plateau <= theory.neighborhood["optimum/onehot"]
    assert theory.theorem["optimum/onehot"] == "T3" and theory.theorem["optimum/exact"] == "T1"


@pytest.mark.slow
def test_step_size_slope_is_one_and_plateaus_sit_below_t3():
    measured, theory = EXPERIMENTS["step_size"](lrs=(0.008, 0.016, 0.032), steps=4000, **TINY)
    assert abs(measured.slope - 1) < 0.2
    assert abs(theory.prediction_slope - 1) < 0.1
    for plateau, prediction, neighborhood in zip(measured.plateau, theory.prediction, theory.neighborhood):
        assert abs(plateau / prediction - 1) < 0.25
        assert neighborhood is not None and plateau <= neighborhood


@pytest.mark.slow
def test_teacher_noise_plateau_is_proportional_to_the_noise():
    measured, theory = EXPERIMENTS["teacher_noise"](lr=0.032, nus=(0.001, 0.004), alphas=(1.0, 9.0), steps=1500,
                                                    **{**TINY, "replicas": 24})
    for family in ("gaussian", "dirichlet"):
        assert abs(measured.slope[family] - 1) < 0.2, family
        ratios = np.asarray(measured.plateau[family]) / np.asarray(theory.prediction[family])
        assert np.all(np.abs(ratios - 1) < 0.25), (family, ratios)
    # The predicted noise itself is exactly linear in the level.
    sig = theory.sigma2["gaussian"]
    assert sig[1] / sig[0] == pytest.approx(4.0, rel=1e-9)
    assert measured.reference["exact"] < 1e-6 * measured.reference["onehot"]


@pytest.mark.slow
def test_lambda_sweep_minimum_matches_the_predicted_lambda():
    measured, theory = EXPERIMENTS["lambda_sweep"](lams=(0.0, 0.5, 1.0), lr=0.032, steps=1500, **TINY)
    assert 0 < theory.lam_noise < 1 and 0 < theory.lam_plateau < 1
    assert abs(measured.best - theory.lam_plateau) < 0.1
    # each λ's plateau against its own Lyapunov prediction, as the summary's "worst ratio" row (seen: 0.97-1.04);
    # a Mix covariance without the squares of (1-λ) and λ gave 0.49 here while the best λ still matched
    for plateau, prediction in zip(measured.plateau, theory.prediction):
        assert abs(plateau / prediction - 1) < 0.15
    # σ² of the mix is the quadratic (1−λ)² A + λ² B, minimised at λ* = A/(A+B).
    assert theory.lam_noise == pytest.approx(theory.onehot_noise / (theory.onehot_noise + theory.teacher_noise))
    assert min(theory.sigma2) >= theory.onehot_noise * theory.teacher_noise / (
        theory.onehot_noise + theory.teacher_noise) * (1 - 1e-9)


@pytest.mark.slow
def test_capacity_keeps_a_floor_with_exact_bcps():
    measured, theory = EXPERIMENTS["capacity"](lr=0.032, steps=1500, **{**TINY, "replicas": 24})
    floor, clean = measured.plateau["quadratic/exact"], measured.plateau["teacher/exact"]
    assert theory.sigma2["quadratic/exact"] > 0.01
    assert theory.sigma2["teacher/exact"] == 0
    assert floor > 1e6 * max(clean, 1e-300)
    assert abs(floor / theory.prediction["quadratic/exact"] - 1) < 0.3


@pytest.mark.slow
def test_adam_and_sgd_both_gain_from_exact_bcps():
    measured, theory = EXPERIMENTS["adam"](steps=2000, **{**TINY, "replicas": 16})
    for optimizer in ("sgd", "adam"):
        assert measured.plateau[f"{optimizer}/exact"] < measured.plateau[f"{optimizer}/onehot"]
    assert theory.prediction["adam/onehot"] is None and theory.bound_curve["adam/exact"] is None
    assert theory.bound_curve["sgd/exact"] is not None


@pytest.mark.slow
def test_mlp_students_exact_bcps_lower_the_excess_risk():
    measured, theory = EXPERIMENTS["mlp_students"](targets=("onehot", "exact"), hidden=(16,), steps=3000,
                                                   replicas=4, record_every=250, eval_size=512, device="cpu")
    assert measured.ratio["exact"] < 0.7
    assert theory.linear_ratio == {"onehot": 1.0, "exact": 0.0}
    assert all(math.isfinite(v) and v > 0 for v in measured.plateau.values())


@pytest.mark.slow
def test_notebook_replica_curves_stay_above_the_bayes_values():
    measured, theory = EXPERIMENTS["notebook"](points=1000, hidden=(32, 32), replicas=2, record_every=100,
                                               targets=("onehot", "exact"), device="cpu")
    assert measured.train_size == 450 and measured.steps == 900
    for target in measured.targets:
        curves = measured.curves[target]
        assert curves["ce"].median[-1] < curves["ce"].median[0]  # it learns
        assert measured.final[target]["ce"] >= theory.bayes["ce"] - 0.05  # never much below H(Y|X)
        assert measured.final[target]["accuracy"] <= theory.bayes["accuracy"] + 0.05
    assert 0 < theory.bayes["ce"] < math.log(5)


@pytest.mark.slow
def test_results_round_trip_through_json(tmp_path):
    result = run_experiment("step_size", lrs=(0.016, 0.032), steps=300, **{**TINY, "replicas": 8})
    path = tmp_path / "step_size.json"
    save_result(result, path)
    assert result_matches(path, result.config)
    assert not result_matches(path, {**result.config, "steps": 301})
    loaded = load_result(path)
    assert loaded.config == result.config
    assert loaded.provenance["sgdbound_version"] and loaded.provenance["seed"] == 0
    assert loaded.measured.plateau == pytest.approx(result.measured.plateau)
    assert isinstance(loaded.measured.dist_sq[0], Band)
    np.testing.assert_allclose(loaded.measured.dist_sq[0].median, result.measured.dist_sq[0].median)
    assert [r.quantity for r in loaded.summary] == [r.quantity for r in result.summary]
