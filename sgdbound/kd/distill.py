"""One distillation run: fit a teacher, train a student on the distillation loss, checkpoint every epoch.

A run is fully determined by its ``DistillConfig`` (the seed included): the few-shot subset, the teacher, the
student's initialisation, the batch order and every Monte Carlo draw come from seeds derived from
``config.seed``. Each epoch ends with an atomic checkpoint holding the student, the optimiser and scheduler, the
batch-order generator, the global generator (dropout, redrawn teacher samples) and the history, so
``distill(config, out, resume=True)`` after a kill finishes with exactly the result an uninterrupted run gives.
The teacher's training-set probabilities are saved once (``teacher.pt``), so a resumed run does not refit it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sgdbound.io import atomic_torch_save, provenance, read_json, write_json
from sgdbound.kd.data import DATASETS, few_shot_indices, load_dataset
from sgdbound.kd.loss import Convention, Temper, _enum, check_distillation_params, distillation_loss
from sgdbound.kd.metrics import accuracy, convergence_noise, prob_metrics
from sgdbound.kd.nets import NETS, make_net
from sgdbound.kd.teachers import Teacher, check_teacher_name, make_teacher
from sgdbound.kd.train import OptimConfig, batches, make_optimizer, predict_logits

__all__ = ["DistillConfig", "DistillResult", "distill", "distill_group", "fit_teacher", "epochs_for", "official_temper",
           "checkpoint_due", "teacher_targets"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    """Everything that defines a run. ``lam``: weight λ of the soft term; ``t_teacher``, ``t_student``: the
    temperatures; ``samples``: S Monte Carlo samples of the teacher; ``beta``: the student's per-class training
    fraction; ``teacher_data``: what the teacher is fitted on when ``beta < 1``, ``"full"`` (the whole training
    set, as the official few-shot script does) or ``"subset"`` (the student's subset);
    ``epochs``/``teacher_epochs``: passes over the (subset of the) training set, raised where needed to reach
    ``min_steps``/``teacher_min_steps`` optimiser steps (few-shot subsets); ``last``: E, the window of the
    convergence noise; ``redraw``: draw the teacher's samples afresh for every batch (the official script)
    instead of once per training example (a teacher as a fixed function, the default). ``milestones``: epochs at
    which a ``step`` schedule multiplies the learning rate by 0.1 (the teacher, which has no schedule of its own,
    steps at them too: :meth:`teacher_optim`); ``teacher_seed``: the teacher's seed (None: the
    run's ``seed``; one value lets several student seeds share a teacher). CIFAR-100 only
    (``sgdbound.cifar.kd``): ``data_root`` (the folder holding ``cifar-100-python/``), ``teacher_checkpoint`` (a
    trained teacher network, checked before training), ``device``, ``precision`` (``auto``: bf16 autocast,
    channels_last and bf16 batches on CUDA, float32 on the CPU; ``bf16`` or ``fp32`` to choose on any device) and
    ``compile`` (False, True, or a ``torch.compile`` mode: ``reduce-overhead`` captures CUDA graphs).
    ``temper``: ``"sample"``, ``"mean"`` or ``"auto"`` (default: the official rule of the teacher kind,
    :func:`official_temper`; :attr:`temper_rule` is the rule a run uses, and what its ``run_id`` records).
    ``checkpoint_every``: write the resumable checkpoint every this many epochs (a killed run redoes at most
    ``checkpoint_every − 1`` epochs; larger values spare the disk on long runs of big networks).
    ``data_root``, ``device``, ``precision``, ``compile`` and ``checkpoint_every`` do not enter ``run_id``."""

    dataset: str = "mnist1d"
    teacher: str = "deterministic"
    teacher_net: str = "cnn"
    student: str = "mlp"
    lam: float = 0.5
    t_teacher: float = 1.0
    t_student: float = 1.0
    samples: int = 10
    beta: float = 1.0
    seed: int = 0
    epochs: int = 20
    min_steps: int = 0
    teacher_epochs: int = 20
    teacher_min_steps: int = 0
    optimizer: str = "adam"
    lr: float = 1e-3
    schedule: str = "none"
    teacher_lr: float = 1e-3
    batch_size: int = 100
    last: int = 5
    convention: str = "official"
    temper: str = "auto"
    redraw: bool = False
    teacher_options: dict = field(default_factory=dict)
    teacher_net_options: dict = field(default_factory=dict)
    student_options: dict = field(default_factory=dict)
    milestones: tuple = ()
    teacher_seed: int | None = None
    data_root: str | None = None
    teacher_checkpoint: str | None = None
    device: str = "cpu"
    compile: bool | str = False
    precision: str = "auto"
    checkpoint_every: int = 1
    teacher_data: str = "full"

    def __post_init__(self):
        if self.dataset in IMAGE_DATASETS:
            from sgdbound.cifar.kd import check_cifar_config

            check_cifar_config(self)
        else:
            if self.dataset not in DATASETS:
                valid = ", ".join(sorted({*DATASETS, *IMAGE_DATASETS}))
                raise ValueError(f"unknown dataset {self.dataset!r}; valid: {valid}")
            check_teacher_name(self.teacher)
            for name in ("teacher_net", "student"):
                value = getattr(self, name)
                if value != "cnn" and value not in NETS:
                    raise ValueError(f"unknown {name} {value!r}; valid: cnn, {', '.join(sorted(NETS))}")
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        check_distillation_params(self.lam, self.t_teacher, self.t_student, self.samples, self.convention)
        _enum(Convention, "convention", self.convention)
        if self.temper != "auto":
            _enum(Temper, "temper", self.temper)
        if not (0.0 < float(self.beta) <= 1.0):
            raise ValueError(f"beta (per-class fraction) must lie in (0, 1], got {self.beta}")
        if self.teacher_data not in TEACHER_DATA:
            raise ValueError(f"teacher_data must be one of {', '.join(TEACHER_DATA)}, got {self.teacher_data!r}")
        for name in ("epochs", "last", "batch_size", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.teacher_epochs < 0 or self.min_steps < 0 or self.teacher_min_steps < 0:
            raise ValueError("teacher_epochs, min_steps and teacher_min_steps must be >= 0")
        self.student_optim(), self.teacher_optim()  # validates optimizer, schedule, lr, teacher_lr, milestones
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.compile, bool) and self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be True, False or a torch.compile mode ({', '.join(COMPILE_MODES)}), "
                             f"got {self.compile!r}")
        if self.dataset not in IMAGE_DATASETS and self.device != "cpu":
            raise ValueError(f"device applies to the image datasets ({', '.join(IMAGE_DATASETS)}) only; dataset "
                             f"{self.dataset!r} trains on the CPU (got device {self.device!r})")
        if self.dataset not in IMAGE_DATASETS and (self.compile or self.precision != "auto"):
            raise ValueError(f"compile and precision apply to the image datasets ({', '.join(IMAGE_DATASETS)}) only; "
                             f"dataset {self.dataset!r} trains in float32, eagerly")

    def student_optim(self) -> OptimConfig:
        """The student's optimiser: ``optimizer``, ``lr``, ``schedule`` (``milestones`` used by ``step``)."""
        return OptimConfig(self.optimizer, self.lr, schedule=self.schedule, milestones=self.milestones,
                           batch_size=self.batch_size)

    def teacher_optim(self) -> OptimConfig:
        """The teacher's optimiser: Adam at ``teacher_lr`` (the official teachers), stepped down at ``milestones``
        when there are any (the CIFAR presets: ×0.1 at epoch 100), constant otherwise."""
        return OptimConfig("adam", self.teacher_lr, schedule="step" if self.milestones else "none",
                           milestones=self.milestones, batch_size=self.batch_size)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def identity(self) -> dict:
        """The fields that define the result: every field but where the data lies and what runs it
        (``RUNTIME_FIELDS``), and without later-added fields left at their defaults (so run ids of results
        written before those fields existed stay valid)."""
        payload = self.to_dict()
        for name in RUNTIME_FIELDS:
            payload.pop(name)
        for name, default in _LATER_FIELDS.items():
            if payload[name] == default:
                payload.pop(name)
        if self.beta >= 1 or self.lam == 0:  # the whole training set either way, or no teacher at all
            payload.pop("teacher_data")
        payload["temper"] = self.temper_rule
        return payload

    @property
    def temper_rule(self) -> str:
        """``temper`` with ``"auto"`` resolved for this run's teacher and ``T_t`` (:func:`official_temper`)."""
        return official_temper(self.teacher, self.t_teacher) if self.temper == "auto" else self.temper

    @property
    def run_id(self) -> str:
        """A readable folder name plus a hash of the whole config (so every setting tells runs apart)."""
        digest = hashlib.sha1(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]
        return (f"{self.dataset}_{self.teacher}_lam{self.lam:g}_tt{self.t_teacher:g}_ts{self.t_student:g}"
                f"_S{self.samples}_b{self.beta:g}_seed{self.seed}_{digest}")

    @property
    def seed_of_teacher(self) -> int:
        """The seed the teacher is fitted from: ``teacher_seed``, or the run's ``seed`` when that is None."""
        return self.seed if self.teacher_seed is None else int(self.teacher_seed)

    @property
    def teacher_beta(self) -> float:
        """The per-class fraction the teacher is fitted on: 1 (``teacher_data="full"``) or ``beta``."""
        return float(self.beta) if self.teacher_data == "subset" else 1.0

    def teacher_key(self) -> tuple:
        """What the fitted teacher depends on (runs that differ only in λ, temperatures or S share it; few-shot
        runs share the full-data teacher unless ``teacher_data="subset"``)."""
        key = ("teacher", self.dataset, self.teacher, self.teacher_net, json.dumps(self.teacher_net_options,
               sort_keys=True), json.dumps(self.teacher_options, sort_keys=True), self.teacher_beta,
               self.seed_of_teacher,
               self.teacher_epochs, self.teacher_min_steps, self.teacher_lr, self.batch_size)
        return key + ((self.milestones,) if self.milestones else ())


def official_temper(teacher: str, t_teacher: float) -> str:
    """The official code's tempering for a teacher kind: the Laplace teacher's predictive is tempered after the
    probit average (``train_student.py``: ``p ** (1/T)``, renormalised: ``"mean"``), every other teacher's
    draws one by one (``"sample"``). At ``T_t = 1`` the two coincide and ``"sample"`` is returned (the value
    results were recorded with before ``"auto"`` existed, so their run ids stay valid)."""
    return "mean" if teacher == "laplace" and float(t_teacher) != 1.0 else "sample"


#: What the teacher is fitted on in a few-shot run (``beta < 1``): the whole training set (the official protocol:
#: ``train_fewshot_exp_students.py`` loads the full-data teacher) or the student's own subset.
TEACHER_DATA = ("full", "subset")
#: Fields that say where the data lies or what runs the config, not what the result is (left out of ``run_id``).
RUNTIME_FIELDS = ("data_root", "device", "compile", "precision", "checkpoint_every")
#: ``precision`` values (CIFAR-100 runs) and ``compile`` modes besides False/True (``torch.compile``'s ``mode``).
PRECISIONS = ("auto", "bf16", "fp32")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: Fields added after results were first written, with their defaults (left out of ``run_id`` at the default).
_LATER_FIELDS = {"milestones": (), "teacher_seed": None, "teacher_checkpoint": None}
#: Image datasets with their own training path (``sgdbound.cifar.kd``): augmentation, zoo nets, GPU options.
IMAGE_DATASETS = ("cifar100",)


@dataclass(frozen=True)
class DistillResult:
    """A finished run. Accuracies are fractions; ``test_acc`` ``(epochs,)`` per epoch; ``convergence_noise`` is
    the std of the last ``last`` entries of ``test_acc``; ``teacher`` holds the teacher's test metrics with
    ``samples`` samples at temperature 1 (None when λ = 0 and no teacher was used); ``epoch_seconds``: wall time of
    each epoch's training (CIFAR-100 runs; empty where not timed)."""

    run_id: str
    config: dict
    train_size: int
    epochs_run: int
    test_acc: list
    train_loss: list
    final_acc: float
    best_acc: float
    convergence_noise: float
    last: int
    teacher: dict | None
    seconds: float
    provenance: dict
    epoch_seconds: list = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> DistillResult:
        payload = read_json(path)  # results written before a field with a default existed lack it
        return cls(**{f.name: payload[f.name] for f in dataclasses.fields(cls) if f.name in payload})


def checkpoint_due(epoch: int, every: int) -> bool:
    """Whether the checkpoint is written after (0-based) ``epoch``: every ``every`` epochs (the finished run's
    ``result.json`` covers the end)."""
    return (epoch + 1) % int(every) == 0


def epochs_for(n: int, batch_size: int, epochs: int, min_steps: int) -> int:
    """``epochs``, raised so that at least ``min_steps`` optimiser steps are taken on ``n`` examples."""
    per_epoch = math.ceil(n / batch_size)
    return max(int(epochs), math.ceil(min_steps / per_epoch)) if min_steps else int(epochs)


def fit_teacher(config: DistillConfig, x: torch.Tensor, y: torch.Tensor, cache: dict | None = None) -> Teacher:
    """The run's teacher fitted on ``(x, y)``; reused from ``cache`` when an equal teacher was fitted before."""
    key = config.teacher_key()
    if cache is not None and key in cache:
        return cache[key]
    data = load_dataset(config.dataset)
    optim = config.teacher_optim()
    epochs = epochs_for(x.shape[0], config.batch_size, config.teacher_epochs, config.teacher_min_steps)
    teacher = make_teacher(config.teacher, data, net=config.teacher_net, net_options=config.teacher_net_options,
                           epochs=epochs, optim=optim, seed=config.seed_of_teacher + 1000, cache=cache,
                           cache_key=f"{config.dataset}|beta={config.teacher_beta}|seed={config.seed_of_teacher}",
                           **config.teacher_options).fit(x, y)
    if cache is not None:
        cache[key] = teacher
    return teacher


def teacher_targets(teacher: Teacher, x: torch.Tensor, configs: list[DistillConfig],
                    seed: int | None = None) -> list[torch.Tensor]:
    """The teacher's targets on ``x`` for each of ``configs`` (one run, or runs that differ only in ``samples``),
    from one draw of the largest ``S``, tempered as ``temper`` says."""
    config, counts = configs[0], [c.samples for c in configs]
    if config.temper_rule == Temper.MEAN.value:
        means = teacher.probs_prefixes(x, counts, 1.0, seed=seed)
        return [torch.softmax(torch.log(mean.clamp_min(1e-30)) / config.t_teacher, dim=1) for mean in means]
    return teacher.probs_prefixes(x, counts, config.t_teacher, seed=seed)


def distill_group(configs: list[DistillConfig], out: str | Path | None = None, *, resume: bool = False,
                  stop_after: int | None = None) -> list[DistillResult] | None:
    """Runs that differ only in ``samples`` (S), trained together from one teacher draw of the largest ``S`` per
    batch, each result equal to its separate run (CIFAR-100; see ``sgdbound.cifar.kd.distill_cifar_group``).
    Results in order of increasing ``S``; None when stopped by ``stop_after``."""
    configs = list(configs)
    if any(c.dataset not in IMAGE_DATASETS for c in configs):
        raise ValueError(f"joint runs are for {', '.join(IMAGE_DATASETS)}; small-data runs share a teacher through "
                         f"sweep's cache and draw their targets once per example")
    from sgdbound.cifar.kd import distill_cifar_group

    return distill_cifar_group(configs, out, resume=resume, stop_after=stop_after)


def distill(config: DistillConfig, out: str | Path | None = None, *, resume: bool = False,
            stop_after: int | None = None, cache: dict | None = None) -> DistillResult | None:
    """Run ``config``; with ``out``, checkpoint to ``out/<run_id>/checkpoint.pt`` each epoch and write
    ``result.json``. ``resume``: return a finished run's result as it is, or continue from its last checkpoint.
    ``stop_after``: stop (returning None) once ``stop_after`` epochs are done, as a kill would.
    ``cache``: a dict shared across runs to reuse fitted teachers and nets. Image datasets (``cifar100``) run
    through ``sgdbound.cifar.kd.distill_cifar`` (same config, checkpoints and result)."""
    if config.dataset in IMAGE_DATASETS:
        from sgdbound.cifar.kd import distill_cifar

        return distill_cifar(config, out, resume=resume, stop_after=stop_after, cache=cache)
    started = time.perf_counter()
    run_dir = None if out is None else Path(out) / config.run_id
    if run_dir is not None and resume and (run_dir / "result.json").exists():
        return DistillResult.load(run_dir / "result.json")
    data = load_dataset(config.dataset)
    sub = data.subset(few_shot_indices(data.y_train, config.beta, config.seed))
    ckpt = None
    if run_dir is not None and resume and (run_dir / "checkpoint.pt").exists():
        ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=False)

    teacher, targets, teacher_metrics = None, None, None
    if config.lam > 0:
        saved = None if run_dir is None or ckpt is None or not (run_dir / "teacher.pt").exists() else \
            torch.load(run_dir / "teacher.pt", weights_only=False)
        if saved is not None and not config.redraw:
            targets, teacher_metrics = saved["targets"], saved["metrics"]
        else:
            fit_on = sub if config.teacher_beta < 1 else data
            teacher = fit_teacher(config, fit_on.x_train, fit_on.y_train, cache)
            test_probs = teacher.probs(data.x_test, config.samples, 1.0)
            teacher_metrics = dataclasses.asdict(prob_metrics(test_probs, data.y_test))
            targets = None if config.redraw else teacher_targets(teacher, sub.x_train, [config])[0]
            if run_dir is not None:
                atomic_torch_save({"targets": targets, "metrics": teacher_metrics}, run_dir / "teacher.pt")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 2000)
        student = make_net(config.student, data.dim, data.num_classes, data.input_shape, **config.student_options)
    epochs = epochs_for(sub.x_train.shape[0], config.batch_size, config.epochs, config.min_steps)
    opt, sched = make_optimizer(student.parameters(), config.student_optim(), epochs)
    generator = torch.Generator().manual_seed(config.seed + 3000)
    history: dict[str, list] = {"test_acc": [], "train_loss": []}
    start = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 4000)
        if ckpt is not None:
            student.load_state_dict(ckpt["student"])
            opt.load_state_dict(ckpt["optimizer"])
            if sched is not None:
                sched.load_state_dict(ckpt["scheduler"])
            generator.set_state(ckpt["generator"])
            torch.set_rng_state(ckpt["torch_rng"])
            history, start = ckpt["history"], ckpt["epoch"]
            log.info("%s: resuming after epoch %d", config.run_id, start)
        for epoch in range(start, epochs):
            student.train()
            total, count = 0.0, 0
            for idx in batches(sub.x_train.shape[0], config.batch_size, generator):
                xb, yb = sub.x_train[idx], sub.y_train[idx]
                if config.lam > 0:
                    tb = targets[idx] if targets is not None else teacher_targets(
                        teacher, xb, [config], seed=int(torch.randint(0, 2**31 - 1, ())))[0]
                else:
                    tb = torch.full((xb.shape[0], data.num_classes), 1.0 / data.num_classes)
                loss = distillation_loss(student(xb), yb, teacher_probs=tb, lam=config.lam,
                                         t_teacher=config.t_teacher, t_student=config.t_student,
                                         convention=config.convention)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, count = total + loss.item() * xb.shape[0], count + xb.shape[0]
            if sched is not None:
                sched.step()
            history["train_loss"].append(total / count)
            history["test_acc"].append(accuracy(predict_logits(student, data.x_test), data.y_test))
            if run_dir is not None and checkpoint_due(epoch, config.checkpoint_every):
                atomic_torch_save({"student": student.state_dict(), "optimizer": opt.state_dict(),
                                   "scheduler": None if sched is None else sched.state_dict(),
                                   "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                                   "history": history, "epoch": epoch + 1, "config": config.to_dict()},
                                  run_dir / "checkpoint.pt")
            if stop_after is not None and epoch + 1 >= stop_after and epoch + 1 < epochs:
                return None

    acc = history["test_acc"]
    result = DistillResult(
        run_id=config.run_id, config=config.to_dict(), train_size=int(sub.x_train.shape[0]), epochs_run=epochs,
        test_acc=acc, train_loss=history["train_loss"], final_acc=acc[-1], best_acc=max(acc),
        convergence_noise=convergence_noise(acc, config.last), last=config.last, teacher=teacher_metrics,
        seconds=time.perf_counter() - started, provenance=provenance(config.seed))
    if run_dir is not None:
        write_json(run_dir / "result.json", dataclasses.asdict(result))
    return result

