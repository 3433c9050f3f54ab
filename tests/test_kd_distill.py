"""Distillation runs: resume after a kill gives the same final metrics; sweeps skip finished runs."""

from __future__ import annotations

import dataclasses
import json

import pytest

from sgdbound.kd.distill import DistillConfig, distill, epochs_for
from sgdbound.kd.sweep import expand_grid, sweep

TINY = dict(dataset="mixture", teacher_net="mlp", student="mlp", teacher_net_options={"hidden": [16]},
            student_options={"hidden": [16]}, epochs=5, teacher_epochs=2, samples=3, beta=0.2, batch_size=50,
            last=3)


def _same(a, b):
    assert a.test_acc == b.test_acc and a.train_loss == b.train_loss
    assert (a.final_acc, a.best_acc, a.convergence_noise, a.teacher) == (b.final_acc, b.best_acc,
                                                                           b.convergence_noise, b.teacher)


@pytest.mark.parametrize("extra", [
    dict(teacher="deterministic", lam=0.5),
    # redrawn VI samples and student dropout: the global generator's state must travel in the checkpoint
    dict(teacher="vi", lam=0.7, t_teacher=2.0, t_student=2.0, redraw=True, student_options={"hidden": [16],
                                                                                            "dropout": 0.3}),
    dict(teacher="mc_dropout", lam=1.0, optimizer="sgd", lr=0.05, schedule="cosine"),
])
def test_resume_after_kill_gives_same_result(tmp_path, extra):
    config = DistillConfig(**{**TINY, **extra})
    whole = distill(config, tmp_path / "whole")
    assert distill(config, tmp_path / "killed", stop_after=2) is None
    checkpoint = tmp_path / "killed" / config.run_id / "checkpoint.pt"
    assert checkpoint.exists() and not (tmp_path / "killed" / config.run_id / "result.json").exists()
    resumed = distill(config, tmp_path / "killed", resume=True)
    _same(whole, resumed)
    assert resumed.epochs_run == 5 and len(resumed.test_acc) == 5


def test_sparse_checkpoints_lose_only_the_epochs_since_the_last_one(tmp_path):
    import torch

    config = DistillConfig(**TINY, teacher="deterministic", checkpoint_every=2)
    assert config.run_id == DistillConfig(**TINY, teacher="deterministic").run_id  # runtime only
    whole = distill(config, tmp_path / "whole")
    assert distill(config, tmp_path / "killed", stop_after=3) is None
    checkpoint = torch.load(tmp_path / "killed" / config.run_id / "checkpoint.pt", weights_only=False)
    assert checkpoint["epoch"] == 2  # epoch 3 finished after the last checkpoint: lost, redone on resume
    _same(whole, distill(config, tmp_path / "killed", resume=True))
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1"):
        DistillConfig(**TINY, checkpoint_every=0)


def test_result_file_has_provenance_and_config(tmp_path):
    config = DistillConfig(**TINY, teacher="ensemble", teacher_options={"members": 2})
    result = distill(config, tmp_path)
    payload = json.loads((tmp_path / config.run_id / "result.json").read_text())
    assert payload["config"]["teacher_options"] == {"members": 2}
    assert payload["provenance"]["sgdbound_version"] and "git_commit" in payload["provenance"]
    assert payload["provenance"]["seed"] == 0 and payload["last"] == 3
    from sgdbound.kd.data import few_shot_count, load_dataset

    counts = load_dataset("mixture").y_train.bincount().tolist()
    assert result.train_size == sum(few_shot_count(n, 0.2) for n in counts)
    assert 0 <= result.final_acc <= result.best_acc <= 1
    # resume of a finished run returns it without training
    again = distill(config, tmp_path, resume=True)
    assert again.seconds == result.seconds


def test_lambda_zero_needs_no_teacher():
    result = distill(DistillConfig(**{**TINY, "lam": 0.0, "teacher": "laplace"}))
    assert result.teacher is None


def test_min_steps_raise_epochs():
    assert epochs_for(200, 100, 5, 0) == 5
    assert epochs_for(200, 100, 5, 300) == 150
    assert epochs_for(4000, 100, 15, 300) == 15


def test_sweep_grid_and_skip(tmp_path):
    base = {**TINY, "epochs": 2, "teacher_options": {"ensemble": {"members": 2}}}
    configs = expand_grid(base, teacher=["deterministic", "ensemble"], lam=[0.0, 0.5], seed=[0, 1], samples=[1, 2])
    # λ = 0 runs are kept once per seed (the teacher is unused): 2 seeds + 2 teachers × 2 S × 2 seeds
    assert len(configs) == 2 + 8
    assert all(c.teacher_options == {"members": 2} for c in configs if c.teacher == "ensemble" and c.lam > 0)
    seen = []
    sweep(configs, tmp_path, progress=lambda i, n, c, r: seen.append(r.seconds))
    again = []
    sweep(configs, tmp_path, progress=lambda i, n, c, r: again.append(r.seconds))
    assert sorted(again) == sorted(seen)  # loaded from result.json, not rerun


@pytest.mark.parametrize("bad,match", [
    (dict(teacher="bogus"), "unknown teacher 'bogus'; valid: deterministic, vi, laplace"),
    (dict(dataset="cifar"), "unknown dataset 'cifar'; valid: cifar100, digits, mixture, mnist1d"),
    (dict(device="cuda"), "device applies to the image datasets"),  # was ignored, and recorded as used
    (dict(lam=1.2), "lam must lie in"),
    (dict(t_teacher=0.0), "t_teacher must be a positive"),
    (dict(t_student=-2.0), "t_student must be a positive"),
    (dict(samples=0), "samples"),
    (dict(beta=0.0), "beta"),
    (dict(student="resnet"), "unknown student"),
    (dict(optimizer="lbfgs"), "optimizer must be one of"),
])
def test_bad_config_refused_up_front(bad, match):
    with pytest.raises(ValueError, match=match):
        DistillConfig(**{**TINY, **bad})


@pytest.mark.parametrize("axes,match", [(dict(teacher=["vi", "bogus"]), "unknown teacher 'bogus'"),
                                        (dict(lam=[0.5, -0.5]), "lam must lie in"),
                                        (dict(samples=[4, 0]), "samples"),
                                        (dict(momentum=[0.9]), "cannot sweep over")])
def test_sweep_refuses_bad_values_before_running(tmp_path, axes, match):
    with pytest.raises(ValueError, match=match):
        expand_grid(TINY, **axes)


def test_run_ids_tell_configs_apart():
    a = DistillConfig(**TINY)
    assert a.run_id != dataclasses.replace(a, lr=2e-3).run_id
    assert a.run_id == DistillConfig(**TINY).run_id


def test_few_shot_teacher_is_fitted_on_the_full_training_set_by_default(tmp_path):
    """``teacher_data="full"`` (default, the official protocol): a β = 0.2 run's teacher is the β = 1 run's
    (same key, same test metrics); ``"subset"`` fits it on the student's subset. β = 1 run ids do not depend on
    the field (the whole set either way); few-shot ones do."""
    few = DistillConfig(**{**TINY, "lam": 0.5})
    whole, subset = dataclasses.replace(few, beta=1.0), dataclasses.replace(few, teacher_data="subset")
    assert few.teacher_key() == whole.teacher_key() != subset.teacher_key()
    assert whole.run_id == dataclasses.replace(whole, teacher_data="subset").run_id
    assert few.run_id != subset.run_id
    no_teacher = dataclasses.replace(few, lam=0.0)
    assert no_teacher.run_id == dataclasses.replace(no_teacher, teacher_data="subset").run_id
    cache: dict = {}
    a, b = distill(few, cache=cache), distill(whole, cache={})
    c = distill(subset, cache=cache)
    assert a.teacher == b.teacher and a.teacher != c.teacher
    assert a.train_size < b.train_size
    with pytest.raises(ValueError, match="teacher_data must be one of full, subset"):
        DistillConfig(**{**TINY, "teacher_data": "half"})


def test_temper_auto_is_the_official_rule_of_each_teacher_kind():
    """``temper="auto"`` (default): the Laplace teacher's predictive is tempered after averaging (``"mean"``,
    the official ``p ** (1/T)`` renormalised), other teachers' draws one by one (``"sample"``); at ``T_t = 1``
    the rules coincide and ``"sample"`` is recorded, so results written before ``"auto"`` keep their ids."""
    base = DistillConfig(**{**TINY, "lam": 0.5})
    for teacher, t_teacher, rule in [("laplace", 2.0, "mean"), ("laplace", 1.0, "sample"), ("vi", 4.0, "sample"),
                                     ("deterministic", 4.0, "sample")]:
        auto = dataclasses.replace(base, teacher=teacher, t_teacher=t_teacher)
        assert auto.temper == "auto" and auto.temper_rule == rule
        assert auto.run_id == dataclasses.replace(auto, temper=rule).run_id
    with pytest.raises(ValueError, match="temper"):
        DistillConfig(**{**TINY, "temper": "median"})
