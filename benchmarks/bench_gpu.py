"""Student-training throughput on CIFAR-format data with a ResNet-50 teacher: the official code's loop against
the fast path, in one process.

Baseline (the official ``train_student.py``): fp32, a CPU ``DataLoader`` (``num_workers`` workers, pinned
memory, batch 100) over PIL images and torchvision transforms (reflect-pad crop, flip, ToTensor, Normalize),
teacher and student in fp32 (PyTorch's default conv settings, so TF32 convolutions on recent GPUs), Adam.
Fast path: the whole split on the device as uint8 (``sgdbound.cifar.DeviceLoader``, augmentation as one
gather), bf16 autocast for the student, channels_last, the teacher cast to bf16 and run under ``no_grad``,
fused Adam on CUDA, optionally ``torch.compile`` of both nets. Same loss for both: the official
``(1 − λ) CE + λ T_t T_s KL`` with the deterministic preset (λ = 0.5, T_t = 4, T_s = 1).

Pipeline: the same pair trained by ``sgdbound.kd.distill`` itself (``sgdbound.cifar.kd``, the code a preset run
uses: per-batch teacher targets through the ``Teacher`` interface, the run's loss, per-epoch bookkeeping), with
``precision="auto"`` (the fast path on CUDA) and the teacher read from a checkpoint; its images per second are
the training set size over the wall time of the last timed epoch (``DistillResult.epoch_seconds``; the first
epoch, with cudnn autotuning and compilation, is not counted). ``--pipeline-teachers vi laplace`` adds those
teacher kinds, with the loss, S, tempering and teacher options of the ``kd-resnet50-resnet18-*`` presets (VI with
inducing weights and S = 1, Laplace with its probit predictive sharpened as ``p^(1/T)``).

Data: synthetic files in the official python-pickle format written by ``write_fake_cifar100`` to a temporary
folder, read back with ``load_cifar100`` (random pixels: throughput does not depend on them).

    python benchmarks/bench_gpu.py [--device cuda] [--compile [MODE]] [--json out.json]
    python benchmarks/bench_gpu.py --smoke        # tiny sizes, runs on the CPU in seconds
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from sgdbound.cifar.data import (
    DeviceLoader,
    OfficialStyleDataset,
    load_cifar100,
    official_transform,
    write_fake_cifar100,
)
from sgdbound.cifar.models import build_model, count_parameters
from sgdbound.cifar.presets import KD_DEFAULTS, TeacherKind

KD = KD_DEFAULTS[TeacherKind.DETERMINISTIC]


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The official student loss (``train_student.py``), computed in float32."""
    z_s, z_t = student_logits.float(), teacher_logits.float()
    p_t = F.softmax(z_t / KD.t_teacher, dim=1)
    kl = F.kl_div(F.log_softmax(z_s / KD.t_student, dim=1), p_t, reduction="batchmean") * KD.kl_scale
    return (1 - KD.lam) * F.cross_entropy(z_s, y) + KD.lam * kl


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cycle(make_iter):
    while True:
        yield from make_iter()


def _timed(step, batches, warmup: int, steps: int, device: torch.device) -> float:
    """Seconds for ``steps`` calls of ``step`` after ``warmup`` calls (data fetching included)."""
    for _ in range(warmup):
        step(*next(batches))
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(*next(batches))
    _sync(device)
    return time.perf_counter() - start


def baseline(split, args, device: torch.device) -> dict:
    """The official loop: CPU DataLoader + transforms, fp32 teacher and student."""
    torch.manual_seed(0)
    teacher = build_model(args.teacher).to(device).eval()
    student = build_model(args.student).to(device).train()
    optim = torch.optim.Adam(student.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(
        OfficialStyleDataset(split, official_transform(train=True)), batch_size=args.batch_size, shuffle=True,
        num_workers=args.workers, pin_memory=device.type == "cuda", drop_last=True,
        persistent_workers=args.workers > 0)

    def step(x, y):
        x, y = x.to(device), y.to(device)
        optim.zero_grad()
        logits = student(x)
        with torch.no_grad():
            t_logits = teacher(x)
        kd_loss(logits, t_logits, y).backward()
        optim.step()

    seconds = _timed(step, _cycle(lambda: iter(loader)), args.warmup, args.steps, device)
    # the loader alone, to show where the baseline's time goes
    batches = _cycle(lambda: iter(loader))
    start = time.perf_counter()
    for _ in range(args.steps):
        next(batches)
    loader_seconds = time.perf_counter() - start
    return {"images_per_s": args.steps * args.batch_size / seconds, "seconds": seconds,
            "loader_only_images_per_s": args.steps * args.batch_size / loader_seconds}


def fast(split, args, device: torch.device, compile_: bool) -> dict:
    """Device-resident data, bf16 autocast, channels_last, bf16 teacher under no_grad, optional compile."""
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    cl = torch.channels_last
    teacher = build_model(args.teacher).to(device=device, dtype=torch.bfloat16, memory_format=cl).eval()
    student = build_model(args.student).to(device=device, memory_format=cl).train()
    optim = torch.optim.Adam(student.parameters(), lr=1e-3, fused=device.type == "cuda")
    loader = DeviceLoader(split, args.batch_size, device=device, drop_last=True, seed=0, dtype=torch.bfloat16,
                          channels_last=True)
    student_fwd, teacher_fwd = student, teacher
    if compile_:
        mode = None if compile_ is True else compile_
        student_fwd, teacher_fwd = torch.compile(student, mode=mode), torch.compile(teacher, mode=mode)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)

    def step(x, y):
        optim.zero_grad(set_to_none=True)
        with torch.no_grad():
            t_logits = teacher_fwd(x)
        with autocast:
            logits = student_fwd(x)
        kd_loss(logits, t_logits, y).backward()
        optim.step()

    compile_start = time.perf_counter()
    batches = _cycle(lambda: iter(loader))
    step(*next(batches))  # first call: compilation when asked
    _sync(device)
    first = time.perf_counter() - compile_start
    seconds = _timed(step, batches, args.warmup, args.steps, device)
    start = time.perf_counter()
    for _ in range(args.steps):
        next(batches)
    _sync(device)
    loader_seconds = time.perf_counter() - start
    return {"images_per_s": args.steps * args.batch_size / seconds, "seconds": seconds,
            "first_step_seconds": first, "loader_only_images_per_s": args.steps * args.batch_size / loader_seconds}


def pipeline(root: str, args, device: torch.device, kind: str, compile_) -> dict:
    """``sgdbound.kd.distill`` on the CIFAR-format folder ``root``: ``args.pipeline_epochs`` epochs, the last timed."""
    from sgdbound.cifar.presets import preset_config_fields
    from sgdbound.cifar.teachers import bayesianize, save_teacher_checkpoint
    from sgdbound.kd.distill import DistillConfig, distill

    # the loss, S, tempering and teacher options of the paper's preset for this kind (VI: inducing weights)
    preset = preset_config_fields(f"kd-resnet50-resnet18-{kind}")
    settings = {k: preset[k] for k in ("lam", "t_teacher", "t_student", "samples", "temper", "convention",
                                       "teacher_options")}
    torch.manual_seed(0)
    net = build_model(args.teacher)
    if kind == "vi":
        bayesianize(net, layers=settings["teacher_options"].get("layers", "mean_field"))
    checkpoint = f"{root}/teacher-{kind}.pt"
    save_teacher_checkpoint(checkpoint, net, arch=args.teacher, num_classes=100, kind=kind)
    config = DistillConfig(dataset="cifar100", data_root=root, teacher=kind, teacher_net=args.teacher,
                           student=args.student, batch_size=args.batch_size, epochs=args.pipeline_epochs,
                           teacher_checkpoint=checkpoint, device=str(device), compile=compile_ or False, **settings)
    started = time.perf_counter()
    result = distill(config)  # no output folder: nothing written, nothing resumed
    seconds = result.epoch_seconds[-1]
    return {"teacher_kind": kind, "images_per_s": args.n_train / seconds, "epoch_seconds": result.epoch_seconds,
            "run_seconds": time.perf_counter() - started, "compile": compile_ or False}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CPU in seconds)")
    parser.add_argument("--teacher", default="resnet50")
    parser.add_argument("--student", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=None, help="default 100 (smoke: 4)")
    parser.add_argument("--n-train", type=int, default=None, help="synthetic training images (default 10000)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 60)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10)")
    parser.add_argument("--workers", type=int, default=None, help="baseline DataLoader workers (official: 8)")
    parser.add_argument("--compile", nargs="?", const=True, default=False, metavar="MODE",
                        help="also time the fast path under torch.compile (MODE, e.g. reduce-overhead: CUDA graphs)")
    parser.add_argument("--pipeline-teachers", nargs="*", default=["deterministic"],
                        help="teacher kinds to time through sgdbound.kd.distill (none: skip the pipeline)")
    parser.add_argument("--pipeline-epochs", type=int, default=2, help="epochs per pipeline run; the last is timed")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (smoke default: 1)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    small = args.smoke
    args.batch_size = args.batch_size or (4 if small else 100)
    args.n_train = args.n_train or (32 if small else 10_000)
    args.steps = args.steps or (2 if small else 60)
    args.warmup = args.warmup if args.warmup is not None else (1 if small else 10)
    args.workers = args.workers if args.workers is not None else (0 if small else 8)
    threads = args.threads or (1 if small else None)
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        write_fake_cifar100(tmp, n_train=args.n_train, n_test=10, seed=0)
        split = load_cifar100(tmp, "train")
        results = {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "teacher": args.teacher, "student": args.student,
            "teacher_params": count_parameters(build_model(args.teacher)),
            "student_params": count_parameters(build_model(args.student)),
            "batch_size": args.batch_size, "steps": args.steps, "n_train": args.n_train,
            "baseline_workers": args.workers, "threads": torch.get_num_threads(),
        }
        results["baseline"] = baseline(split, args, device)
        results["fast"] = fast(split, args, device, compile_=False)
        results["speedup"] = results["fast"]["images_per_s"] / results["baseline"]["images_per_s"]
        if args.compile:
            results["fast_compiled"] = fast(split, args, device, compile_=args.compile)
            results["speedup_compiled"] = (results["fast_compiled"]["images_per_s"]
                                           / results["baseline"]["images_per_s"])
        for kind in args.pipeline_teachers:
            run = pipeline(tmp, args, device, kind, args.compile)
            run["speedup"] = run["images_per_s"] / results["baseline"]["images_per_s"]
            results.setdefault("pipeline", []).append(run)
    b, f = results["baseline"]["images_per_s"], results["fast"]["images_per_s"]
    line = f"{args.teacher}->{args.student} on {results['device']}: baseline {b:,.0f} img/s, fast {f:,.0f} img/s"
    line += f" ({results['speedup']:.2f}x)"
    if args.compile:
        line += f", compiled {results['fast_compiled']['images_per_s']:,.0f} img/s ({results['speedup_compiled']:.2f}x)"
    for run in results.get("pipeline", []):
        line += (f"; pipeline ({run['teacher_kind']} teacher{', compiled' if run['compile'] else ''}) "
                 f"{run['images_per_s']:,.0f} img/s ({run['speedup']:.2f}x)")
    print(line)
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
