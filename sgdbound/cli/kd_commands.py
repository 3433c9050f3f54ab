"""``sgdbound distill`` (one run or a sweep, or ``--study small``), ``sgdbound report`` and
``sgdbound teachers-synthetic``.

Settings come from a TOML config file (keys are ``DistillConfig`` fields; the swept ones may be lists; a
``[teacher_options]`` table may hold one table per teacher) and from flags, flags winning. Swept flags take
several values: ``--teacher vi laplace --lam 0.3 0.7 --seeds 0 1 2``.

CIFAR-100 (``--data-root``): ``--preset NAME`` (globs such as ``'kd-*'`` allowed) runs the paper's settings,
flags overriding them; ``distill`` runs seed 0 and ``sweep`` the preset's five seeds unless ``--seeds`` is given.
``--backend process|ray`` spreads the runs over local processes or a Ray cluster; ``--dry-run`` checks
everything (data files, teacher checkpoints) and lists the runs without training.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from sgdbound.cli import add_threads_option, set_threads

__all__ = ["register", "distill_command", "report_command", "synthetic_command"]

# flag dest -> DistillConfig field, for the swept axes
_AXES = {"teacher": "teacher", "lam": "lam", "t_teacher": "t_teacher", "t_student": "t_student", "seeds": "seed",
         "beta": "beta", "samples": "samples"}
#: DistillConfig fields given as one value each: flag dest -> (type, help)
_SCALARS = {
    "dataset": (str, "mnist1d, digits, mixture (small, CPU) or cifar100 (needs --data-root)"),
    "teacher_net": (str, "the teacher's network: mlp, cnn1d, cnn2d, cnn (small data) or a CIFAR architecture"),
    "student": (str, "the student's network: mlp, cnn1d, cnn2d, cnn (small data) or a CIFAR architecture"),
    "epochs": (int, "student epochs"),
    "teacher_epochs": (int, "teacher epochs"),
    "min_steps": (int, "at least this many student steps (epochs raised to reach it: few-shot subsets)"),
    "teacher_min_steps": (int, "at least this many teacher steps"),
    "optimizer": (str, "student optimiser: adam or sgd"),
    "lr": (float, "student learning rate"),
    "teacher_lr": (float, "teacher learning rate (Adam)"),
    "schedule": (str, "student schedule: none, step or cosine"),
    "batch_size": (int, "minibatch size"),
    "last": (int, "epochs at the end averaged for the convergence noise"),
    "convention": (str, "scaling of the soft term: official (λ T_t T_s KL) or hinton (λ T² KL, T_t = T_s)"),
    "temper": (str, "sample (temper each draw, then average), mean (average, then temper) or auto (default: the "
                    "official rule: mean for laplace, sample otherwise)"),
    "data_root": (str, "folder holding cifar-100-python/ (nothing is downloaded)"),
    "device": (str, "cpu, cuda or cuda:N (image datasets; small data trains on the CPU)"),
    "teacher_checkpoint": (str, "CIFAR-100: a trained teacher network to load (checked before training)"),
    "teacher_seed": (int, "seed of the teacher (default: the run's seed)"),
    "checkpoint_every": (int, "epochs between resumable checkpoints"),
    "teacher_data": (str, "few-shot runs: fit the teacher on the full training set (full, the official protocol) or "
                          "on the student's subset (subset)"),
}


def register(sub: argparse._SubParsersAction) -> None:
    for name, help_text in (("distill", "train students from (Bayesian) teachers; sweeps"),
                            ("sweep", "the same as distill (a grid of runs from lists of values)")):
        _add_distill_arguments(sub.add_parser(name, help=help_text, description=__doc__))
    _add_report_and_synthetic(sub)


def _add_distill_arguments(d: argparse.ArgumentParser) -> None:
    d.add_argument("--config", type=Path, help="TOML file with DistillConfig fields (lists for swept axes)")
    d.add_argument("--out", type=Path, help="results folder (default runs/distill, or runs/small_study)")
    d.add_argument("--resume", action="store_true", help="continue killed runs from their checkpoints")
    d.add_argument("--study", choices=["small"], help="run a named study (mnist1d small-data study)")
    d.add_argument("--seeds", type=int, nargs="+", help="seeds (swept); with --study: the first N = len")
    d.add_argument("--teacher", nargs="+", help="teacher kind(s): deterministic vi laplace mc_dropout ensemble")
    d.add_argument("--lam", type=float, nargs="+", help="λ, weight of the distillation term, in [0, 1]")
    d.add_argument("--t-teacher", dest="t_teacher", type=float, nargs="+", help="teacher temperature(s) > 0")
    d.add_argument("--t-student", dest="t_student", type=float, nargs="+", help="student temperature(s) > 0")
    d.add_argument("--samples", "-S", type=int, nargs="+", help="teacher Monte Carlo samples S >= 1")
    d.add_argument("--beta", type=float, nargs="+", help="per-class training fraction(s) β in (0, 1]")
    for name, (kind, help_text) in _SCALARS.items():
        d.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, help=help_text)
    add_threads_option(d)
    d.add_argument("--preset", nargs="+", help="CIFAR-100 preset name(s) or globs ('kd-*'); see docs/cifar.md")
    d.add_argument("--compile", nargs="?", const=True, default=None, metavar="MODE",
                   help="torch.compile the student; MODE: default, reduce-overhead (CUDA graphs), max-autotune, "
                        "max-autotune-no-cudagraphs")
    d.add_argument("--precision", choices=["auto", "bf16", "fp32"],
                   help="CIFAR-100: auto (bf16 + channels_last on CUDA, fp32 on the CPU), or bf16/fp32 anywhere")
    d.add_argument("--backend", choices=["local", "process", "ray"], default="local",
                   help="where runs execute: this process, a process pool, or a Ray cluster")
    d.add_argument("--workers", type=int, default=2, help="--backend process: number of processes")
    d.add_argument("--gpus-per-run", type=float, help="--backend ray: GPUs each run asks for (default 1 on CUDA)")
    d.add_argument("--ray-address", help="--backend ray: cluster address (default: RAY_ADDRESS or a local instance)")
    d.add_argument("--joint-samples", action="store_true",
                   help="CIFAR-100: train runs that differ only in S together (one teacher draw of the largest S "
                        "per batch; each result equals its separate run)")
    d.add_argument("--dry-run", action="store_true", help="validate and list the runs, train nothing")
    d.add_argument("--figures", type=Path, help="with --study: folder for the PNGs")
    d.add_argument("--doc", type=Path, help="with --study: markdown file for the table")
    d.set_defaults(func=distill_command)


def _add_report_and_synthetic(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="tables (mean ± std over seeds) and plots from a results folder")
    r.add_argument("folder", type=Path, help="a results folder written by `sgdbound distill`")
    r.add_argument("--out", type=Path, help="where to write tables and PNGs (default: the folder)")
    r.add_argument("--figures", type=Path, help="where to write the PNGs (default: --out)")
    r.add_argument("--prefix", default="kd_", help="file-name prefix of the PNGs")
    r.set_defaults(func=report_command)

    t = sub.add_parser("teachers-synthetic", help="teachers on a Gaussian mixture: distance to the exact BCPs and "
                       "the gradient noise it predicts at the Bayes-optimal student")
    t.add_argument("--teacher", nargs="+", help="teacher kinds (default: all)")
    t.add_argument("--n-train", type=int, default=2000)
    t.add_argument("--n-eval", type=int, default=1000)
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--samples", "-S", type=int, default=10)
    t.add_argument("--members", type=int, default=3, help="ensemble members")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, help="also write the rows as JSON here")
    add_threads_option(t)
    t.set_defaults(func=synthetic_command)


def _load_config(path: Path | None) -> dict:
    if path is None:
        return {}
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise ValueError("config files need Python >= 3.11 (tomllib); pass flags instead") from None
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {error}") from None


def _progress(i, total, config, result):
    print(f"[{i}/{total}] {config.run_id}: final acc {100 * result.final_acc:.2f}%, "
          f"best {100 * result.best_acc:.2f}%, conv. noise {100 * result.convergence_noise:.2f} pp", flush=True)


def distill_command(args: argparse.Namespace) -> int:
    from sgdbound.io import atomic_write_text
    from sgdbound.kd.report import run_rows, runs_csv
    from sgdbound.kd.sweep import SWEEP_AXES, expand_grid, sweep

    set_threads(args)
    if args.study == "small":
        from sgdbound.kd.study import small_data_study

        out = args.out or Path("runs/small_study")
        command = "sgdbound " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
        result = small_data_study(out, seeds=len(args.seeds) if args.seeds else 5, threads=args.threads,
                                  figures=args.figures, doc=args.doc, command=command, progress=_progress)
        print(result.table)
        print(f"{result.runs} runs in {result.seconds:.0f} s; files: {', '.join(map(str, result.files))}")
        return 0
    settings = _load_config(args.config)
    for dest, field_name in _AXES.items():
        value = getattr(args, dest)
        if value is not None:
            settings[field_name] = value
    for name in _SCALARS:
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    if args.compile:
        settings["compile"] = args.compile
    if args.precision:
        settings["precision"] = args.precision
    out = args.out or Path(settings.pop("out", "runs/distill"))
    settings.pop("out", None)
    teachers = []
    if args.preset:
        configs, teachers = _preset_runs(args, settings)
    else:
        axes = {k: settings.pop(k) for k in SWEEP_AXES if k in settings}
        configs = expand_grid(settings, **axes)  # validates everything before the first run
    from sgdbound.kd.sweep import preflight_all, train_teachers

    preflight_all([*teachers, *configs])  # data files and teacher checkpoints, before any training
    if args.dry_run:
        for config in [*teachers, *configs]:
            what = "teacher" if config in teachers else "run"
            print(f"{what} {config.run_id}: {config.teacher_net} ({config.teacher}) -> {config.student}, "
                  f"lam={config.lam:g} T_t={config.t_teacher:g} T_s={config.t_student:g} S={config.samples} "
                  f"beta={config.beta:g} epochs={config.epochs} seed={config.seed}")
        if args.joint_samples:
            from sgdbound.kd.sweep import sample_groups

            print(f"--joint-samples: {len(sample_groups(configs))} job(s)")
        print(f"dry run: {len(teachers)} teacher(s) and {len(configs)} run(s) valid; nothing trained")
        return 0
    started = time.perf_counter()
    if teachers and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("teacher presets train one network per process: run them without torchrun, then distil "
                         "with torchrun (the students find the teachers under <out>/teachers)")
    if teachers:
        paths = train_teachers(teachers, out, backend=args.backend, workers=args.workers,
                               gpus_per_run=args.gpus_per_run, ray_address=args.ray_address)
        print(f"{len(paths)} teacher(s) under {Path(out) / 'teachers'}")
    lead = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 speaks for all
    results = sweep(configs, out, resume=args.resume, progress=_progress if lead else None, backend=args.backend,
                    workers=args.workers, gpus_per_run=args.gpus_per_run, ray_address=args.ray_address,
                    joint_samples=args.joint_samples)
    if results and lead:
        table = atomic_write_text(Path(out) / "results.csv", runs_csv(run_rows(results)))
        print(f"{len(results)} run(s) in {time.perf_counter() - started:.1f} s; results under {out} ({table})")
    return 0


def _preset_runs(args: argparse.Namespace, settings: dict) -> tuple[list, list]:
    """``(student runs, teacher runs)`` of ``--preset``: flags override the preset's fields; swept flags take one
    value each here."""
    from sgdbound.cifar.presets import preset_configs

    overrides = {}
    for key, value in settings.items():
        if key == "seed":
            continue
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError(f"with --preset, {key} takes one value (got {value}); sweep presets instead")
            value = value[0]
        overrides[key] = value
    data_root = overrides.pop("data_root", None)
    seeds = settings.get("seed") or ([0] if args.command == "distill" else None)
    teachers, students = preset_configs(args.preset, data_root=data_root, seeds=seeds, **overrides)
    return students, teachers


def report_command(args: argparse.Namespace) -> int:
    from sgdbound.kd.report import write_report

    report = write_report(args.folder, args.out, figures=args.figures, prefix=args.prefix)
    print(report.table)
    print("wrote " + ", ".join(str(p) for p in report.files))
    return 0


def synthetic_command(args: argparse.Namespace) -> int:
    from sgdbound.io import provenance, write_json
    from sgdbound.kd.synthetic import fidelity_table, teacher_fidelity
    from sgdbound.kd.teachers import TEACHERS, check_teacher_name

    set_threads(args)
    kinds = args.teacher or list(TEACHERS)
    for kind in kinds:
        check_teacher_name(kind)
    if args.samples < 1:
        raise ValueError(f"samples (S) must be an integer >= 1, got {args.samples}")
    rows = [teacher_fidelity(kind, n_train=args.n_train, n_eval=args.n_eval, epochs=args.epochs, samples=args.samples,
                             seed=args.seed, **({"members": args.members} if kind == "ensemble" else {}))
            for kind in kinds]
    print(fidelity_table(rows), end="")
    if args.out is not None:
        settings = {k: v for k, v in vars(args).items() if k != "func"}
        write_json(args.out, {"rows": rows, "settings": settings, "provenance": provenance(args.seed)})
    return 0
