"""Presets for the paper's CIFAR-100 runs, checked against the official scripts of ``Bayesian-KD/Bayesian-KD``.

Every preset is a frozen dataclass in :data:`PRESETS`; :func:`get_preset` looks one up and lists the valid names
when the name is unknown. Names:

* ``teacher-{arch}-{kind}``: teacher training (``kind`` ∈ deterministic, vi, laplace);
* ``kd-{teacher}-{student}-{kind}``: student distillation from a teacher of that kind (the paper's table);
* ``fewshot{β}-{teacher}-{student}-{kind}``: the same on the official few-shot subset with β % of each class;
* ``samples{S}-{teacher}-{student}-vi``: a VI teacher averaged over ``S`` Monte Carlo samples, with the Monte
  Carlo script's own loss (λ = 1, T_t = T_s = 1).

What the official code does (``scripts/train_teacher_deterministic_VI.py``, ``train_teacher_LA.py``,
``train_student.py``, ``create_cifar_subsets.py``; README examples):

* Adam (no weight decay; the ``--momentum`` option is never used), lr 1e-3, batch 100, 200 epochs, lr × 0.1
  at epoch 100 (script default; the README's deterministic-teacher example passes ``--lr_decay_epochs 100,150``);
  MobileNetV2 / ShuffleNetV2 use lr 1e-2.
* VI teacher: Microsoft's ``bayesianize`` library (``bnn.bayesianize_`` with ``configs/ffg_u_cifar100.json``),
  NLL only for the first 100 epochs, then the KL weight ramps linearly to 1 over 50 epochs; KL divided by the
  training set size; 1 test sample. That config (as ``microsoft/bayesianize`` ships it) is *not* mean-field VI
  over the weights but Ritter et al.'s (2021) inducing-weight VI: every Conv2d gets 128 × 128 inducing weights
  (the Linear head 100 × 128), a fully factorised Gaussian ``q(U)`` in whitened space (``max_sd_u`` 0.1), a
  learned ``λ`` (init 1e-3, at most 0.03) in the matrix-normal ``p(W | U)``, prior sd 1, sqrt-width scaling.
  ``bayesianize`` is not on PyPI and bayesian-torch has no such layers, so the VI presets use sgdbound's own
  inducing-weight layers (``sgdbound.cifar.inducing``, teacher option ``layers="inducing"``) with these settings;
  ``layers="mean_field"`` selects bayesian-torch's mean-field reparameterisation instead.
* Laplace teacher: post hoc on the deterministic teacher, last layer, fitted on the augmented training set with
  batch 20. Script defaults: ``diag`` Hessian, prior precision by ``gridsearch``; the README example and the
  student example's folder name use ``kron`` and ``marglik``; both predict with ``glm`` + ``probit``.
* Student loss: ``(1 − λ) CE(z_s, y) + λ · T_t T_s · KL(p_t ‖ softmax(z_s / T_s))`` (``reduction="batchmean"``),
  where ``p_t`` is ``softmax(z_t / T_t)`` (deterministic), the mean over ``S`` samples of
  ``softmax(z_t / T_t)`` (VI), or the Laplace predictive ``p`` sharpened as ``p^{1/T_t}`` and renormalised.
  The KL scale is ``T_t T_s``; it equals Hinton's ``T²`` only when ``T_t = T_s`` (Laplace: 2 · 2), and is 4
  where Hinton's would be 16 for the deterministic and VI presets (``T_t = 4``, ``T_s = 1``).
* Few-shot (``train_fewshot_exp_students.py``): the same loss and schedule (200 epochs over the subset), with
  ``(T_t, T_s, λ)`` passed per run (no per-kind defaults; the presets use the table's) and ``--bnn_samples``
  defaulting to 10, not 1 (the presets keep S = 1; set ``samples`` to follow the script's default).
* Monte Carlo sweep (``train_bnn_samples_exp_students.py``): λ = 1, T_t = T_s = 1, and the students for
  S = 1…12 share one set of 12 teacher draws per batch (student S uses the mean of the first S).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum

from sgdbound.kd.train import OptimConfig

__all__ = ["TeacherKind", "OFFICIAL_OPTIM", "OFFICIAL_EPOCHS", "VIConfig", "LaplaceConfig", "KDConfig",
           "TeacherPreset", "StudentPreset", "PAIRS", "PAPER_ACCURACY", "PRESETS", "KD_DEFAULTS", "FEWSHOT_PERCENTS",
           "MC_SAMPLES", "get_preset", "expand_presets", "preset_config_fields", "preset_configs", "NOISE_WINDOW"]


class TeacherKind(str, Enum):
    """How the teacher's probabilities are obtained."""

    DETERMINISTIC = "deterministic"
    """One network trained with cross-entropy; ``softmax(z / T_t)``."""
    VI = "vi"
    """Variational inference (the official one with inducing weights, see :class:`VIConfig`); the mean of ``S``
    sampled softmaxes."""
    LAPLACE = "laplace"
    """Last-layer Laplace approximation fitted post hoc on the deterministic teacher; GLM predictive, probit."""


#: The optimiser of the official teachers and students: Adam, lr 1e-3, no weight decay, batch 100, lr × 0.1 at
#: epoch 100 (MobileNetV2 / ShuffleNetV2: lr 1e-2).
OFFICIAL_OPTIM = OptimConfig("adam", 1e-3, weight_decay=0.0, schedule="step", milestones=(100,), gamma=0.1,
                             batch_size=100)
#: Epochs of every official teacher and (full-data or few-shot) student run.
OFFICIAL_EPOCHS = 200


@dataclass(frozen=True)
class VIConfig:
    """VI teacher training: ``ml_epochs`` of NLL only, then the KL weight rises by ``1/annealing_epochs`` per
    epoch up to 1; ``test_samples`` Monte Carlo samples at evaluation."""

    ml_epochs: int = 100
    annealing_epochs: int = 50
    test_samples: int = 1
    layer_config: str = "ffg_u_cifar100"


#: The official VI layer configurations and the VI teacher's ``layers`` option that implements each.
VI_LAYER_KINDS = {"ffg_u_cifar100": "inducing", "mean_field": "mean_field"}


@dataclass(frozen=True)
class LaplaceConfig:
    """Post hoc Laplace (laplace-torch ``Laplace(model, "classification", …)``)."""

    subset_of_weights: str = "last_layer"
    hessian_structure: str = "kron"
    prior_method: str = "marglik"
    pred_type: str = "glm"
    link_approx: str = "probit"
    fit_batch_size: int = 20
    chunk: int = 20


@dataclass(frozen=True)
class KDConfig:
    """Distillation hyperparameters: ``lam`` (the official ``--alpha``), teacher and student temperatures,
    Monte Carlo samples of a Bayesian teacher."""

    lam: float
    t_teacher: float
    t_student: float
    samples: int = 1

    @property
    def kl_scale(self) -> float:
        """Factor on the KL term in the official loss: ``T_t · T_s``."""
        return self.t_teacher * self.t_student


@dataclass(frozen=True)
class TeacherPreset:
    name: str
    arch: str
    kind: TeacherKind
    optim: OptimConfig = OFFICIAL_OPTIM
    epochs: int = OFFICIAL_EPOCHS
    vi: VIConfig | None = None
    laplace: LaplaceConfig | None = None

    @property
    def base(self) -> str | None:
        """The preset of the network a post hoc teacher starts from (Laplace: the deterministic teacher)."""
        return f"teacher-{self.arch}-deterministic" if self.kind is TeacherKind.LAPLACE else None


@dataclass(frozen=True)
class StudentPreset:
    name: str
    teacher: str
    student: str
    kind: TeacherKind
    kd: KDConfig
    optim: OptimConfig = OFFICIAL_OPTIM
    epochs: int = OFFICIAL_EPOCHS
    fewshot_percent: int | None = None
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    paper_accuracy: float | None = None
    """Top-1 test accuracy (%) the paper reports for this run, where it does."""


#: The official hyperparameters per teacher kind (README examples of ``train_student.py``).
KD_DEFAULTS = {
    TeacherKind.DETERMINISTIC: KDConfig(lam=0.5, t_teacher=4.0, t_student=1.0, samples=1),
    TeacherKind.VI: KDConfig(lam=0.7, t_teacher=4.0, t_student=1.0, samples=1),
    TeacherKind.LAPLACE: KDConfig(lam=1.0, t_teacher=2.0, t_student=2.0, samples=1),
}

#: Teacher → student pairs of the paper and the official code.
PAIRS = (("resnet50", "resnet18"), ("resnet50", "vgg8"), ("vgg13", "wrn_40_1"), ("resnet50", "wrn_16_2"),
         ("resnet50", "wrn_40_2"), ("wrn_40_2", "wrn_40_1"))

#: Student top-1 accuracy (%) reported in the paper: pair → {teacher kind: accuracy}.
PAPER_ACCURACY: dict[tuple[str, str], dict[TeacherKind, float]] = {
    ("resnet50", "vgg8"): {TeacherKind.DETERMINISTIC: 75.66, TeacherKind.VI: 77.27, TeacherKind.LAPLACE: 76.11},
    ("vgg13", "wrn_40_1"): {TeacherKind.DETERMINISTIC: 67.90, TeacherKind.VI: 71.37, TeacherKind.LAPLACE: 70.87},
    ("resnet50", "wrn_16_2"): {TeacherKind.DETERMINISTIC: 69.36, TeacherKind.VI: 73.63, TeacherKind.LAPLACE: 72.52},
    ("resnet50", "wrn_40_2"): {TeacherKind.DETERMINISTIC: 73.79, TeacherKind.VI: 75.82, TeacherKind.LAPLACE: 74.57},
}

FEWSHOT_PERCENTS = (5, 10, 15, 25, 35, 50)
MC_SAMPLES = tuple(range(1, 13))
#: ``train_bnn_samples_exp_students.py``: pure distillation at temperature 1 (its defaults, "fixed"), not the VI
#: table's λ = 0.7, T_t = 4.
MC_SWEEP_KD = {"lam": 1.0, "t_teacher": 1.0, "t_student": 1.0}
#: The pair of the few-shot and Monte Carlo sweeps (the official README's examples of both scripts).
SWEEP_PAIR = ("resnet50", "resnet18")


def _optim_for(arch: str) -> OptimConfig:
    return dataclasses.replace(OFFICIAL_OPTIM, lr=1e-2) if arch in ("mobilenetv2", "shufflenetv2") else OFFICIAL_OPTIM


def _build() -> dict[str, TeacherPreset | StudentPreset]:
    presets: dict[str, TeacherPreset | StudentPreset] = {}
    for arch in sorted({a for pair in PAIRS for a in pair[:1]}):
        for kind in TeacherKind:
            name = f"teacher-{arch}-{kind.value}"
            presets[name] = TeacherPreset(name, arch, kind, _optim_for(arch),
                                          vi=VIConfig() if kind is TeacherKind.VI else None,
                                          laplace=LaplaceConfig() if kind is TeacherKind.LAPLACE else None)
    for teacher, student in PAIRS:
        for kind in TeacherKind:
            name = f"kd-{teacher}-{student}-{kind.value}"
            presets[name] = StudentPreset(name, f"teacher-{teacher}-{kind.value}", student, kind, KD_DEFAULTS[kind],
                                          _optim_for(student),
                                          paper_accuracy=PAPER_ACCURACY.get((teacher, student), {}).get(kind))
    teacher, student = SWEEP_PAIR
    for percent in FEWSHOT_PERCENTS:
        for kind in TeacherKind:
            name = f"fewshot{percent}-{teacher}-{student}-{kind.value}"
            presets[name] = StudentPreset(name, f"teacher-{teacher}-{kind.value}", student, kind, KD_DEFAULTS[kind],
                                          _optim_for(student), fewshot_percent=percent)
    for samples in MC_SAMPLES:
        name = f"samples{samples}-{teacher}-{student}-vi"
        presets[name] = StudentPreset(name, f"teacher-{teacher}-vi", student, TeacherKind.VI,
                                      KDConfig(**MC_SWEEP_KD, samples=samples), _optim_for(student))
    return presets


PRESETS: dict[str, TeacherPreset | StudentPreset] = _build()


def get_preset(name: str) -> TeacherPreset | StudentPreset:
    """The preset ``name``; ``ValueError`` listing the valid names (grouped by prefix) when it is unknown."""
    if name in PRESETS:
        return PRESETS[name]
    close = sorted(n for n in PRESETS if name and (name in n or n.split("-")[0] == name.split("-")[0]))[:12]
    hint = f" (close: {', '.join(close)})" if close else ""
    raise ValueError(f"unknown preset {name!r}{hint}; valid presets: {', '.join(PRESETS)}")


# ------------------------------------------------------------------------------------------ presets → runs

#: Epochs in the convergence-noise window (std of the test accuracy over the last E epochs).
NOISE_WINDOW = 10


def expand_presets(patterns: list[str] | tuple[str, ...]) -> list[str]:
    """Preset names matching ``patterns`` (exact names or shell globs such as ``kd-*``), in registry order;
    ``ValueError`` listing the valid names when a pattern matches nothing."""
    import fnmatch

    names: list[str] = []
    for pattern in patterns:
        matched = [n for n in PRESETS if fnmatch.fnmatchcase(n, pattern)] if any(c in pattern for c in "*?[") else []
        if not matched:
            get_preset(pattern)  # raises with the list of valid names unless it is an exact name
            matched = [pattern]
        names += [n for n in matched if n not in names]
    return names


def preset_config_fields(name: str) -> dict:
    """The ``DistillConfig`` fields of preset ``name`` (no seed, no data root). A teacher preset gives the fields
    of its teacher (its network trains as the student of a λ = 1 run would need it)."""
    preset = get_preset(name)
    if isinstance(preset, TeacherPreset):
        teacher, student = preset, preset.arch
        kd, percent = KD_DEFAULTS[preset.kind], None
    else:
        teacher, student = get_preset(preset.teacher), preset.student
        kd, percent = preset.kd, preset.fewshot_percent
    optim = preset.optim
    options: dict = {}
    if teacher.kind is TeacherKind.VI:
        options = {"ml_epochs": teacher.vi.ml_epochs, "anneal_epochs": teacher.vi.annealing_epochs,
                   "layers": VI_LAYER_KINDS[teacher.vi.layer_config]}
    elif teacher.kind is TeacherKind.LAPLACE:
        options = {"hessian": teacher.laplace.hessian_structure, "link": teacher.laplace.link_approx,
                   "prior": teacher.laplace.prior_method}
    return {"dataset": "cifar100", "teacher": teacher.kind.value, "teacher_net": teacher.arch, "student": student,
            "lam": kd.lam, "t_teacher": kd.t_teacher, "t_student": kd.t_student, "samples": kd.samples,
            "beta": 1.0 if percent is None else percent / 100, "epochs": preset.epochs,
            "teacher_epochs": teacher.epochs, "optimizer": optim.optimizer, "lr": optim.lr,
            "teacher_lr": teacher.optim.lr, "batch_size": optim.batch_size, "schedule": optim.schedule,
            "milestones": optim.milestones, "last": NOISE_WINDOW, "convention": "official",
            "temper": "mean" if teacher.kind is TeacherKind.LAPLACE else "sample", "teacher_seed": 0,
            "teacher_options": options}


def preset_configs(names: list[str] | tuple[str, ...], *, data_root: str | None, seeds: list[int] | None = None,
                   **overrides) -> tuple[list, list]:
    """``(teacher_runs, student_runs)``: ``DistillConfig`` objects for the presets ``names`` (globs allowed), one per
    seed (``seeds``, default: the preset's five seeds; teacher presets: seed 0), ``overrides`` winning over the
    preset's fields (e.g. ``epochs=1`` for a smoke run). Everything is validated here."""
    from sgdbound.kd.distill import DistillConfig

    teachers, students = [], []
    for name in expand_presets(names):
        preset = PRESETS[name]
        fields = {**preset_config_fields(name), **overrides, "data_root": data_root}
        if isinstance(preset, TeacherPreset):
            teachers += [DistillConfig(**fields, seed=s) for s in (seeds or [0])]
        else:
            students += [DistillConfig(**fields, seed=s) for s in (seeds or list(preset.seeds))]
    return teachers, students
