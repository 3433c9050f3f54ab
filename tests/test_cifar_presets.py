"""Presets of the paper's CIFAR-100 runs: official hyperparameters per teacher kind, the pairs, the sweeps,
the paper's reported accuracies, and the registry's error."""

import dataclasses

import pytest

from sgdbound.cifar.data import write_fake_cifar100
from sgdbound.cifar.models import MODELS
from sgdbound.cifar.presets import (
    FEWSHOT_PERCENTS,
    KD_DEFAULTS,
    MC_SAMPLES,
    PAIRS,
    PAPER_ACCURACY,
    PRESETS,
    StudentPreset,
    TeacherKind,
    TeacherPreset,
    get_preset,
    preset_configs,
)

# (λ, T_t, T_s, S) from the official README's train_student.py examples
OFFICIAL = {"deterministic": (0.5, 4.0, 1.0, 1), "vi": (0.7, 4.0, 1.0, 1), "laplace": (1.0, 2.0, 2.0, 1)}


@pytest.mark.parametrize("kind", list(OFFICIAL))
def test_official_hyperparameters_per_teacher_kind(kind):
    kd = KD_DEFAULTS[TeacherKind(kind)]
    assert (kd.lam, kd.t_teacher, kd.t_student, kd.samples) == OFFICIAL[kind]
    assert kd.kl_scale == kd.t_teacher * kd.t_student == 4.0
    for teacher, student in PAIRS:
        preset = get_preset(f"kd-{teacher}-{student}-{kind}")
        assert preset.kd == kd and preset.student == student and preset.kind.value == kind
        assert preset.teacher == f"teacher-{teacher}-{kind}"


def test_schedules_are_the_official_ones():
    for preset in PRESETS.values():
        s = preset.optim
        assert (s.optimizer, s.lr, s.batch_size, preset.epochs, s.schedule, s.milestones, s.gamma, s.weight_decay) == (
            "adam", 1e-3, 100, 200, "step", (100,), 0.1, 0.0)


def test_runs_train_with_the_presets_optimisers(tmp_path):
    # the DistillConfig a preset expands to rebuilds the preset's optimiser for the student and for the teacher
    # (gamma and weight decay are not config fields: OptimConfig's defaults must be the official values)
    students = [n for n in PRESETS if isinstance(PRESETS[n], StudentPreset)]
    root = str(write_fake_cifar100(tmp_path, n_train=10, n_test=10))
    _, configs = preset_configs(students, data_root=root, seeds=[0])
    assert len(configs) == len(students)
    for name, config in zip(students, configs, strict=True):
        preset = PRESETS[name]
        assert config.student_optim() == preset.optim
        assert config.teacher_optim() == get_preset(preset.teacher).optim
        assert (config.epochs, config.teacher_epochs) == (preset.epochs, get_preset(preset.teacher).epochs)


def test_teachers_cover_every_pair_and_kind():
    for preset in PRESETS.values():
        if isinstance(preset, StudentPreset):
            teacher = get_preset(preset.teacher)
            assert isinstance(teacher, TeacherPreset) and teacher.kind is preset.kind
            assert preset.student in MODELS and teacher.arch in MODELS
    vi, la = get_preset("teacher-resnet50-vi"), get_preset("teacher-vgg13-laplace")
    assert vi.vi is not None and (vi.vi.ml_epochs, vi.vi.annealing_epochs) == (100, 50)
    assert la.laplace.subset_of_weights == "last_layer" and la.base == "teacher-vgg13-deterministic"
    assert get_preset("teacher-wrn_40_2-deterministic").base is None


def test_paper_accuracies_sit_beside_the_presets():
    assert get_preset("kd-resnet50-vgg8-vi").paper_accuracy == 77.27
    assert get_preset("kd-vgg13-wrn_40_1-deterministic").paper_accuracy == 67.90
    assert get_preset("kd-resnet50-wrn_16_2-laplace").paper_accuracy == 72.52
    assert get_preset("kd-resnet50-wrn_40_2-deterministic").paper_accuracy == 73.79
    assert get_preset("kd-resnet50-resnet18-vi").paper_accuracy is None  # not in the stored table
    for pair, row in PAPER_ACCURACY.items():
        assert pair in PAIRS and set(row) == set(TeacherKind)
        assert row[TeacherKind.VI] > row[TeacherKind.LAPLACE] > row[TeacherKind.DETERMINISTIC]


def test_sweeps():
    fewshot = [p for p in PRESETS.values() if isinstance(p, StudentPreset) and p.fewshot_percent]
    assert sorted({p.fewshot_percent for p in fewshot}) == list(FEWSHOT_PERCENTS) == [5, 10, 15, 25, 35, 50]
    assert len(fewshot) == 6 * 3
    samples = [get_preset(f"samples{s}-resnet50-resnet18-vi") for s in MC_SAMPLES]
    assert [p.kd.samples for p in samples] == list(range(1, 13))
    # train_bnn_samples_exp_students.py: KD only, temperature 1
    assert all((p.kd.lam, p.kd.t_teacher, p.kd.t_student) == (1.0, 1.0, 1.0) and p.kind is TeacherKind.VI
               for p in samples)
    assert all(p.seeds == (0, 1, 2, 3, 4) for p in fewshot + samples)


def test_presets_are_frozen_and_unknown_names_list_valid_ones():
    preset = get_preset("kd-resnet50-vgg8-deterministic")
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.student = "vgg13"
    with pytest.raises(ValueError, match=r"unknown preset 'kd-resnet50-vgg9-vi'.*kd-resnet50-vgg8-vi.*valid presets"):
        get_preset("kd-resnet50-vgg9-vi")


def test_vi_presets_use_the_official_inducing_weight_layers():
    """The official VI teacher is bayesianize's ``ffg_u_cifar100`` (inducing weights), not mean-field VI."""
    from sgdbound.cifar.inducing import INDUCING_DEFAULTS
    from sgdbound.cifar.presets import preset_config_fields

    for name in ("teacher-resnet50-vi", "kd-resnet50-resnet18-vi", "samples12-resnet50-resnet18-vi"):
        options = preset_config_fields(name)["teacher_options"]
        assert options == {"ml_epochs": 100, "anneal_epochs": 50, "layers": "inducing"}
    # the official ffg_u_cifar100.json: conv 128 x 128, head 100 x 128, λ ≤ 0.03 from 1e-3, max sd_u 0.1, prior sd 1
    assert (INDUCING_DEFAULTS["conv"], INDUCING_DEFAULTS["linear"]) == ((128, 128), (100, 128))
    assert (INDUCING_DEFAULTS["init_lamda"], INDUCING_DEFAULTS["max_lamda"], INDUCING_DEFAULTS["max_sd_u"],
            INDUCING_DEFAULTS["prior_sd"], INDUCING_DEFAULTS["sqrt_width_scaling"]) == (1e-3, 0.03, 0.1, 1.0, True)
    assert preset_config_fields("kd-resnet50-resnet18-deterministic")["teacher_options"] == {}
