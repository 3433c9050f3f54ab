"""CIFAR-100 distillation runs: the ``sgdbound.kd`` pipeline (``DistillConfig``, ``distillation_loss``,
``DistillResult``, checkpoints and resume, sweeps, reports) on the official data, with zoo networks.

``sgdbound.kd.distill(config)`` lands here when ``config.dataset == "cifar100"``. What differs from the small
datasets is only what the scale needs:

* data: :func:`sgdbound.cifar.load_cifar100` under ``config.data_root`` (its clear errors, before any training),
  the official few-shot subset ``fewshot_indices(labels, 100·β)``, and the device-resident
  :class:`sgdbound.cifar.DeviceLoader` with the official augmentation, seeded per epoch, on any device;
* teachers (:mod:`sgdbound.cifar.teachers`): trained here on the same data (or read from
  ``config.teacher_checkpoint``, checked up front) and evaluated on each augmented batch under ``no_grad``, as the
  official script does; a trained teacher network is cached under ``<out>/teachers/`` and shared by every run
  with the same teacher settings (``teacher_seed`` lets the five student seeds share one teacher);
* speed (``config.precision``, :class:`sgdbound.cifar.precision.Precision`): on CUDA by default, bf16 autocast,
  channels_last, bf16 device-resident batches, teacher under ``no_grad`` in bf16 (``precision="bf16"`` runs the same
  code on the CPU); optional ``torch.compile`` of the student (``config.compile``: True or a mode,
  ``reduce-overhead`` capturing CUDA graphs); ``history["epoch_seconds"]`` times each epoch's training;
* several processes (``torchrun``): when ``WORLD_SIZE > 1`` the run joins a process group (gloo on the CPU, nccl
  on CUDA), every rank draws the same global batch from the same seeded loader and keeps its contiguous
  ``1/W`` share, the loss is rescaled so that DDP's gradient average is the gradient of the global batch's mean
  loss, BatchNorm is synchronised on CUDA (``SyncBatchNorm``; on the CPU its statistics stay per rank), training
  loss and test accuracy are all-reduced, and only rank 0 writes checkpoints and results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sgdbound.cifar.data import CifarSplit, DeviceLoader, check_data_root, fewshot_indices, load_cifar100, normalize
from sgdbound.cifar.models import MODELS
from sgdbound.cifar.precision import Precision
from sgdbound.cifar.teachers import (
    CIFAR_TEACHERS,
    STUDENT_EXTRA_NETS,
    VI_LAYERS,
    VICifarTeacher,
    base_kind,
    bayesianize,
    build_net,
    check_teacher_checkpoint,
    load_teacher_net,
    save_teacher_checkpoint,
    vi_kl,
)
from sgdbound.io import atomic_torch_save, provenance, write_json
from sgdbound.kd.bayes_teachers import kl_weight
from sgdbound.kd.distill import DistillResult, checkpoint_due, epochs_for, teacher_targets
from sgdbound.kd.loss import distillation_loss
from sgdbound.kd.metrics import convergence_noise, prob_metrics
from sgdbound.kd.train import make_optimizer

__all__ = ["check_cifar_config", "distill_cifar", "preflight", "train_teacher_net", "teacher_path", "DistContext",
           "ensure_teacher",
           "NUM_CLASSES"]

log = logging.getLogger(__name__)
NUM_CLASSES = 100


def _vi_layers(config) -> str:
    return config.teacher_options.get("layers", "mean_field") if config.teacher == "vi" else "mean_field"


def check_cifar_config(config) -> None:
    """Validation of a ``DistillConfig`` with ``dataset="cifar100"`` (called from its ``__post_init__``)."""
    if config.data_root is None:
        raise ValueError("dataset 'cifar100' needs data_root (--data-root): the folder holding "
                         "cifar-100-python/{train,test,meta}")
    check_data_root(config.data_root)
    if config.teacher not in CIFAR_TEACHERS:
        raise ValueError(f"teacher {config.teacher!r} is not available at CIFAR scale; valid: "
                         f"{', '.join(CIFAR_TEACHERS)}")
    if config.teacher_net not in MODELS:
        raise ValueError(f"unknown teacher_net {config.teacher_net!r} for cifar100; valid: {', '.join(sorted(MODELS))}")
    if config.student not in MODELS and config.student not in STUDENT_EXTRA_NETS:
        valid = ", ".join(sorted([*MODELS, *STUDENT_EXTRA_NETS]))
        raise ValueError(f"unknown student {config.student!r} for cifar100; valid: {valid}")
    percent = 100 * float(config.beta)
    if config.beta < 1 and abs(percent - round(percent)) > 1e-9:
        raise ValueError(f"beta for cifar100 must be a whole percentage (official few-shot rule), got {config.beta}")
    try:
        device = torch.device(config.device)
    except RuntimeError as error:
        raise ValueError(f"device {config.device!r} is not a torch device ({error})") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda[:i], got {config.device!r}")
    layers = _vi_layers(config)
    if layers not in VI_LAYERS:
        raise ValueError(f"teacher option layers must be one of {', '.join(VI_LAYERS)}, got {layers!r}")
    unknown = sorted(set(config.teacher_options) - set(CIFAR_TEACHERS[config.teacher].defaults))
    if unknown:
        valid = ", ".join(sorted(CIFAR_TEACHERS[config.teacher].defaults)) or "none"
        raise ValueError(f"unknown option(s) {unknown} for the CIFAR {config.teacher!r} teacher; valid: {valid}")


def preflight(config) -> None:
    """Everything a run checks before training: the data files load, and a given teacher checkpoint fits."""
    load_cifar100(config.data_root, "test")
    if config.lam > 0 and config.teacher_checkpoint is not None:
        check_teacher_checkpoint(config.teacher_checkpoint, config.teacher_net, NUM_CLASSES, config.teacher,
                                 config.teacher_net_options, vi_layers=_vi_layers(config))


# --------------------------------------------------------------------------------------------- processes


@dataclass
class DistContext:
    """Rank, world size and device of this process; ``owner``: this call created the process group."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    owner: bool = False

    @classmethod
    def setup(cls, device: str) -> DistContext:
        import torch.distributed as dist

        world = int(os.environ.get("WORLD_SIZE", "1"))
        dev = torch.device(device)
        if world <= 1 and not dist.is_initialized():
            return cls(0, 1, dev)
        owner = False
        if dev.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            # long timeout: rank 0 may train the teacher while the others wait at a barrier
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=24))
            owner = True
        return cls(dist.get_rank(), dist.get_world_size(), dev, owner)

    def all_sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.owner:
            import torch.distributed as dist

            dist.destroy_process_group()


def _loader(split: CifarSplit, config, seed: int, fast: Precision) -> DeviceLoader:
    return DeviceLoader(split, config.batch_size, device=fast.device, seed=seed, dtype=fast.batch_dtype,
                        channels_last=fast.bf16)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _compiled(model: nn.Module, setting: bool | str) -> nn.Module:
    if not setting:
        return model
    return torch.compile(model) if setting is True else torch.compile(model, mode=setting)


def _shard(n: int, ctx: DistContext) -> slice:
    per = n // ctx.world
    return slice(ctx.rank * per, (ctx.rank + 1) * per) if ctx.rank < ctx.world - 1 else slice(ctx.rank * per, n)


# ---------------------------------------------------------------------------------------------------- teacher


def teacher_path(config, out: str | Path) -> Path:
    """Where the trained teacher network of ``config`` is cached: ``<out>/teachers/<net>-<kind>-seed<s>-<hash>.pt``
    (the Laplace teacher shares the deterministic network's file)."""
    kind = base_kind(config.teacher)
    options = config.teacher_options if kind == "vi" else {}
    key = dataclasses.replace(config, teacher=kind, teacher_options=options).teacher_key()
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return Path(out) / "teachers" / f"{config.teacher_net}-{kind}-seed{config.seed_of_teacher}-{digest}.pt"


def train_teacher_net(config, train: CifarSplit, device: torch.device | str = "cpu") -> nn.Module:
    """Train the network a ``config.teacher`` teacher is built on: cross-entropy (deterministic, and Laplace's
    MAP network) or the negative ELBO with bayesian-torch layers (VI: ``CE + w_e · KL / N``, ``w_e`` from
    ``kl_weight``), Adam ``teacher_lr``, ``teacher_epochs`` over the augmented ``train`` split, lr × 0.1 at each of
    ``milestones``; seeded by ``teacher_seed`` (or ``seed``). Returns the network in eval mode on ``device``."""
    device = torch.device(device)
    kind = base_kind(config.teacher)
    seed = config.seed_of_teacher
    opts = {**VICifarTeacher.defaults, **config.teacher_options} if kind == "vi" else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1000)
        net = build_net(config.teacher_net, NUM_CLASSES, **config.teacher_net_options)
        if kind == "vi":
            bayesianize(net, opts["prior_sigma"], opts["rho_init"], opts["layers"])
    fast = Precision.of(config.precision, device)
    net = fast.prepare(net)
    loader = _loader(train, config, seed + 5000, fast)
    opt, sched = make_optimizer(net.parameters(), config.teacher_optim(), config.teacher_epochs)
    anneal = config.teacher_epochs // 2 if opts.get("anneal_epochs") is None else int(opts["anneal_epochs"])
    n = len(train)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed + 6000)
        for epoch in range(config.teacher_epochs):
            net.train()
            factor = kl_weight(epoch, int(opts.get("ml_epochs", 0)), anneal) if kind == "vi" else 0.0
            for xb, yb in loader.epoch_iter(epoch):
                with fast.autocast():
                    logits = net(xb)
                loss = F.cross_entropy(logits.float(), yb)
                if factor > 0:
                    loss = loss + factor * vi_kl(net) / n
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if sched is not None:
                sched.step()
    return net.eval()


def ensure_teacher(config, out: str | Path) -> Path:
    """Train and cache the teacher network of ``config`` under ``<out>/teachers/`` unless it is there; returns
    its path (what a ``teacher-*`` preset run does, and what a parallel sweep runs first)."""
    path = teacher_path(config, out)
    if not path.exists():
        train = load_cifar100(config.data_root, "train")
        if config.teacher_beta < 1:
            train = train.subset(fewshot_indices(train.labels, int(round(100 * config.teacher_beta))))
        net = train_teacher_net(config, train, torch.device(config.device))
        save_teacher_checkpoint(path, net, arch=config.teacher_net, num_classes=NUM_CLASSES, kind=config.teacher,
                                config=config.to_dict())
    return path


def _normalized(split: CifarSplit, fast: Precision) -> torch.Tensor:
    return fast.images(normalize(split.images.to(fast.device), fast.batch_dtype))


def make_cifar_teacher(config, out: str | Path | None, train: CifarSplit, ctx: DistContext):
    """The run's teacher: from ``teacher_checkpoint``, else from the cache under ``<out>/teachers/``, else trained
    (by rank 0, then cached; the other ranks wait and read it)."""
    if config.teacher_checkpoint is not None:
        payload = check_teacher_checkpoint(config.teacher_checkpoint, config.teacher_net, NUM_CLASSES, config.teacher,
                                           config.teacher_net_options, vi_layers=_vi_layers(config))
        net = load_teacher_net(payload, config.teacher_options, config.teacher_net_options)
    else:
        path = None if out is None else teacher_path(config, out)
        ctx.barrier()  # every rank looks for the file at the same moment, so all take the same branch
        if path is None or not path.exists():
            net = None
            if ctx.rank == 0:
                net = train_teacher_net(config, train, ctx.device)
                if path is not None:
                    save_teacher_checkpoint(path, net, arch=config.teacher_net, num_classes=NUM_CLASSES,
                                            kind=config.teacher, config=config.to_dict())
            ctx.barrier()
            if net is None and path is None:
                raise ValueError("several processes need an output folder to share the teacher")
        if path is not None and path.exists():
            payload = check_teacher_checkpoint(path, config.teacher_net, NUM_CLASSES, config.teacher,
                                               config.teacher_net_options, vi_layers=_vi_layers(config))
            net = load_teacher_net(payload, config.teacher_options, config.teacher_net_options)
    options = {k: v for k, v in config.teacher_options.items()}
    fast = Precision.of(config.precision, ctx.device)
    teacher = CIFAR_TEACHERS[config.teacher](net, seed=config.seed_of_teacher + 7000, device=ctx.device,
                                             precision=config.precision, **options)
    if config.teacher == "laplace":
        teacher.fit_features(_normalized(train, fast), train.labels.to(ctx.device))
    return teacher


# ---------------------------------------------------------------------------------------------------- the run


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: DistContext, fast: Precision,
              chunk: int = 1000) -> float:
    model.eval()
    part = _shard(x.shape[0], ctx)
    correct = 0.0
    for xb, yb in zip(x[part].split(chunk), y[part].split(chunk)):
        with fast.autocast():
            correct += float((model(xb).argmax(1) == yb).sum())
    correct, count = ctx.all_sum([correct, float(y[part].shape[0])])
    return correct / count


def distill_cifar(config, out: str | Path | None = None, *, resume: bool = False, stop_after: int | None = None,
                  cache: dict | None = None):
    """One CIFAR-100 distillation run (see the module docstring); the arguments are those of
    ``sgdbound.kd.distill``. Returns a ``DistillResult`` (on every rank), or None when stopped by ``stop_after``.
    Accuracies are fractions; ``convergence_noise`` is the std of the last ``last`` epochs' test accuracy."""
    results = distill_cifar_group([config], out, resume=resume, stop_after=stop_after)
    return None if results is None else results[0]


def check_group(configs) -> list:
    """``configs`` sorted by ``samples``, after checking that they can train together: CIFAR-100 runs that differ
    in ``samples`` alone, each ``S`` once; ``ValueError`` naming the first field that differs otherwise."""
    configs = sorted(configs, key=lambda c: c.samples)
    if not configs:
        raise ValueError("a joint run needs at least one config")
    first = dataclasses.replace(configs[0], samples=1).identity()
    for config in configs[1:]:
        other = dataclasses.replace(config, samples=1).identity()
        if other != first:
            field = next(k for k in first if first[k] != other.get(k))
            raise ValueError(f"runs trained jointly may differ only in samples (S); {config.run_id} differs in "
                             f"{field}: {other.get(field)!r} vs {first[field]!r}")
    counts = [c.samples for c in configs]
    if len(set(counts)) != len(counts):
        raise ValueError(f"runs trained jointly need distinct samples (S), got {counts}")
    if configs[0].dataset != "cifar100":
        raise ValueError(f"joint runs are for cifar100, got dataset {configs[0].dataset!r}")
    return configs


def distill_cifar_group(configs, out: str | Path | None = None, *, resume: bool = False,
                        stop_after: int | None = None):
    """Runs that differ only in the teacher's Monte Carlo samples ``S`` (the Monte Carlo sweep), trained together:
    the same augmented batches, one teacher draw of ``max S`` samples per batch, the student for ``S`` distilled
    from the mean of the first ``S`` (as the official ``train_bnn_samples_exp_students.py``). Teacher draws are
    seeded per batch independently of ``S`` and sample-major, so each student's run equals its separate run
    (tested), at the teacher cost of the largest ``S`` instead of their sum. Each run keeps its own folder,
    checkpoints and ``result.json``; its ``epoch_seconds`` are the group's. Returns the results in the order of
    increasing ``S`` (None when stopped by ``stop_after``)."""
    configs = check_group(configs)
    started = time.perf_counter()
    run_dirs = [None if out is None else Path(out) / c.run_id for c in configs]
    finished = {k: DistillResult.load(d / "result.json") for k, d in enumerate(run_dirs)
                if resume and d is not None and (d / "result.json").exists()}
    todo = [k for k in range(len(configs)) if k not in finished]
    if not todo:
        return [finished[k] for k in range(len(configs))]
    config = configs[todo[0]]
    train_full = load_cifar100(config.data_root, "train")  # clear errors before anything else
    test = load_cifar100(config.data_root, "test")  # a teacher checkpoint is checked as it is read, before training
    if torch.device(config.device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {config.device!r} asked for, but this torch build sees no CUDA device")
    ctx = DistContext.setup(config.device)
    try:
        trained = _run([configs[k] for k in todo], [run_dirs[k] for k in todo], out, train_full, test, ctx, resume,
                       stop_after, started)
    finally:
        ctx.close()
    if trained is None:
        return None
    finished.update(zip(todo, trained))
    return [finished[k] for k in range(len(configs))]


class _Student:
    """One run of a (joint) training: its network, optimiser, history, and a generator state of its own (so that
    randomness inside its forward, e.g. dropout, is what a separate run would draw)."""

    def __init__(self, config, run_dir: Path | None, resume: bool, ctx: DistContext, fast: Precision, epochs: int):
        self.config, self.run_dir, self.device = config, run_dir, ctx.device
        self.ckpt = None
        if run_dir is not None and resume and (run_dir / "checkpoint.pt").exists():
            self.ckpt = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed + 2000)
            net = build_net(config.student, NUM_CLASSES, **config.student_options)
        self.net = fast.prepare(net)
        self.opt, self.sched = make_optimizer(self.net.parameters(), config.student_optim(), epochs)
        self.history: dict[str, list] = {"test_acc": [], "train_loss": []}
        self.start = 0
        if self.ckpt is not None:
            self.net.load_state_dict(self.ckpt["student"])
            self.opt.load_state_dict(self.ckpt["optimizer"])
            if self.sched is not None:
                self.sched.load_state_dict(self.ckpt["scheduler"])
            self.history, self.start = self.ckpt["history"], self.ckpt["epoch"]
            log.info("%s: resuming after epoch %d", config.run_id, self.start)
        self.history.setdefault("epoch_seconds", [])  # checkpoints written before epochs were timed lack it
        model = self.net
        if ctx.world > 1:
            if ctx.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        self.model = model
        self.forward = _compiled(model, config.compile)

    def begin_epoch(self, epoch: int) -> None:
        torch.manual_seed(self.config.seed * 1_000_003 + epoch)  # dropout masks etc.: a function of the epoch
        self.rng = self._rng_state()
        self.model.train()
        self.total = torch.zeros((), dtype=torch.float64, device=self.device)
        self.count = 0

    @contextlib.contextmanager
    def own_rng(self, alone: bool):
        """This run's generator state for the block (``alone``: the only run training, nothing to switch)."""
        if alone:
            yield
            return
        torch.set_rng_state(self.rng[0])
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(self.rng[1], self.device)
        yield
        self.rng = self._rng_state()

    def _rng_state(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The global CPU generator's state and, on CUDA, the device generator's."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return torch.get_rng_state(), cuda

    def checkpoint(self, epoch: int) -> None:
        atomic_torch_save({"student": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                           "scheduler": None if self.sched is None else self.sched.state_dict(),
                           "history": self.history, "epoch": epoch + 1, "config": self.config.to_dict()},
                          self.run_dir / "checkpoint.pt")


def _teacher_metrics(teacher, students: list[_Student], x_test, test, ctx) -> list[dict | None]:
    """Each run's teacher test metrics with its ``S`` samples at temperature 1 (saved in ``teacher.pt`` beside its
    checkpoint, so a resumed run reports what the first attempt measured)."""
    metrics: list[dict | None] = [None] * len(students)
    todo = []
    for k, student in enumerate(students):
        saved = student.run_dir / "teacher.pt" if student.run_dir is not None else None
        if student.ckpt is not None and saved is not None and saved.exists():
            metrics[k] = torch.load(saved, weights_only=False)["metrics"]
        else:
            todo.append(k)
    if teacher is None or not todo or ctx.rank != 0:
        return metrics
    probs = teacher.probs_prefixes(x_test, [students[k].config.samples for k in todo], 1.0)
    for k, p in zip(todo, probs):
        metrics[k] = dataclasses.asdict(prob_metrics(p.float().cpu(), test.labels))
        if students[k].run_dir is not None:
            atomic_torch_save({"metrics": metrics[k]}, students[k].run_dir / "teacher.pt")
    return metrics


def _run(configs, run_dirs, out, train_full, test, ctx, resume, stop_after, started):
    config, device = configs[0], ctx.device
    train = train_full if config.beta >= 1 else train_full.subset(
        fewshot_indices(train_full.labels, int(round(100 * config.beta))))
    fast = Precision.of(config.precision, device)
    x_test, y_test = _normalized(test, fast), test.labels.to(device)
    epochs = epochs_for(len(train), config.batch_size, config.epochs, config.min_steps)
    students = [_Student(c, d, resume, ctx, fast, epochs) for c, d in zip(configs, run_dirs)]
    teacher_train = train if config.teacher_beta < 1 else train_full  # the official few-shot teacher: full data
    teacher = make_cifar_teacher(config, out, teacher_train, ctx) if config.lam > 0 else None
    teacher_metrics = _teacher_metrics(teacher, students, x_test, test, ctx)
    loader = _loader(train, config, config.seed + 3000, fast)
    uniform = torch.full((1, NUM_CLASSES), 1.0 / NUM_CLASSES, device=device)

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for epoch in range(min(s.start for s in students), epochs):
            active = [s for s in students if s.start <= epoch]  # a run checkpointed further on waits
            for student in active:
                student.begin_epoch(epoch)
            epoch_start = time.perf_counter()
            for step, (xb, yb) in enumerate(loader.epoch_iter(epoch)):
                n_global = yb.shape[0]
                if n_global < ctx.world:
                    continue  # a last batch smaller than the world size is dropped on every rank
                part = _shard(n_global, ctx)
                xb, yb = xb[part], yb[part]
                if teacher is not None:
                    targets = teacher_targets(teacher, xb, [s.config for s in active],
                                              seed=config.seed * 7_919 + epoch * 100_003 + step)
                else:
                    targets = [uniform.expand(yb.shape[0], -1)] * len(active)
                for student, tb in zip(active, targets):
                    with student.own_rng(alone=len(active) == 1):
                        with fast.autocast():
                            logits = student.forward(xb)
                        loss = distillation_loss(logits.float(), yb, teacher_probs=tb, lam=config.lam,
                                                 t_teacher=config.t_teacher, t_student=config.t_student,
                                                 convention=config.convention)
                        student.opt.zero_grad(set_to_none=True)
                        # DDP averages gradients over ranks: scale so that the result is the global batch's mean
                        (loss * (yb.shape[0] * ctx.world / n_global)).backward()
                        student.opt.step()
                    student.total += loss.detach().double() * yb.shape[0]
                    student.count += yb.shape[0]
            for student in active:
                if student.sched is not None:
                    student.sched.step()
            _sync(device)
            seconds = time.perf_counter() - epoch_start
            for student in active:
                history = student.history
                history["epoch_seconds"].append(seconds)
                total_sum, count_sum = ctx.all_sum([float(student.total), float(student.count)])
                history["train_loss"].append(total_sum / max(count_sum, 1.0))
                history["test_acc"].append(_accuracy(student.net, x_test, y_test, ctx, fast))
                if student.run_dir is not None and ctx.rank == 0 and \
                        checkpoint_due(epoch, student.config.checkpoint_every):
                    student.checkpoint(epoch)
            ctx.barrier()
            if stop_after is not None and epoch + 1 >= stop_after and epoch + 1 < epochs:
                return None

    results = []
    for student, metrics in zip(students, teacher_metrics):
        c, h = student.config, student.history
        acc = h["test_acc"]
        result = DistillResult(
            run_id=c.run_id, config=c.to_dict(), train_size=len(train), epochs_run=epochs, test_acc=acc,
            train_loss=h["train_loss"], final_acc=acc[-1], best_acc=max(acc),
            convergence_noise=convergence_noise(acc, c.last) if len(acc) >= 2 else math.nan, last=c.last,
            teacher=metrics, seconds=time.perf_counter() - started, provenance=provenance(c.seed),
            epoch_seconds=h["epoch_seconds"])
        if student.run_dir is not None and ctx.rank == 0:
            write_json(student.run_dir / "result.json", dataclasses.asdict(result))
        results.append(result)
    ctx.barrier()
    return results
