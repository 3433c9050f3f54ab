"""Sweeps: the product of teachers × λ × temperatures × seeds × β × S over one base configuration.

Every configuration is validated before the first run starts, so a typo fails in a second, not an hour in.
Finished runs (``<out>/<run_id>/result.json``) are skipped on restart; ``resume=True`` also continues runs that
were killed half-way from their last checkpoint. Runs that share a teacher (same data subset, seed and teacher
settings, different λ, temperatures or S) fit it once. With ``joint_samples``, CIFAR-100 runs that differ only in
S train together, one teacher draw of the largest S per batch serving all (``sgdbound.kd.distill.distill_group``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from enum import Enum
from pathlib import Path

from sgdbound.kd.distill import IMAGE_DATASETS, DistillConfig, DistillResult, distill, distill_group
from sgdbound.kd.teachers import TEACHERS

__all__ = ["SWEEP_AXES", "Backend", "expand_grid", "sweep", "run_one", "run_group", "sample_groups", "init_ray",
           "preflight_all", "train_teachers"]

log = logging.getLogger(__name__)

SWEEP_AXES = ("teacher", "lam", "t_teacher", "t_student", "seed", "beta", "samples")
"""The ``DistillConfig`` fields a sweep may vary (each given as a sequence of values)."""


def expand_grid(base: dict | None = None, **axes: Sequence) -> list[DistillConfig]:
    """All configurations of the product of ``axes`` (names from ``SWEEP_AXES``) over ``base`` (other
    ``DistillConfig`` fields). ``base["teacher_options"]`` is either one options dict or a dict by teacher name
    (``{"ensemble": {"members": 3}}``), each teacher getting its own. A ``lam = 0`` run does not use its
    teacher, so it is kept once per remaining setting (with the first teacher) rather than once per teacher.
    Raises ``ValueError`` on any bad value."""
    base = dict(base or {})
    unknown = sorted(set(axes) - set(SWEEP_AXES))
    if unknown:
        raise ValueError(f"cannot sweep over {unknown}; sweepable: {', '.join(SWEEP_AXES)}")
    fields = {f.name for f in dataclasses.fields(DistillConfig)}
    bad = sorted(set(base) - fields)
    if bad:
        raise ValueError(f"unknown config field(s) {bad}; valid: {', '.join(sorted(fields))}")
    names = [name for name in SWEEP_AXES if name in axes]
    values = []
    for name in names:
        vals = list(axes[name]) if isinstance(axes[name], (list, tuple)) else [axes[name]]
        if not vals:
            raise ValueError(f"{name}: give at least one value")
        values.append(vals)
    options = base.pop("teacher_options", None) or {}
    per_teacher = bool(options) and set(options) <= set(TEACHERS)
    configs, seen = [], set()
    for combo in itertools.product(*values):
        settings = {**base, **dict(zip(names, combo))}
        teacher = settings.get("teacher", DistillConfig.teacher)
        settings["teacher_options"] = dict(options.get(teacher, {}) if per_teacher else options)
        config = DistillConfig(**settings)
        if config.lam == 0:
            first = values[names.index("teacher")][0] if "teacher" in names else config.teacher
            config = dataclasses.replace(config, teacher=first, t_teacher=1.0, t_student=1.0, samples=1,
                                         teacher_options={})
        if config.run_id not in seen:
            seen.add(config.run_id)
            configs.append(config)
    return configs


class Backend(str, Enum):
    """Where the runs of a sweep execute."""

    LOCAL = "local"
    """One after another in this process (teachers shared in memory)."""
    PROCESS = "process"
    """A pool of ``workers`` local processes (spawned), one run per task."""
    RAY = "ray"
    """One Ray task per run on a Ray cluster (``ray_address``; default: a local instance or ``RAY_ADDRESS``), each
    asking for ``gpus_per_run`` GPUs (default: 1 for CUDA runs, 0 otherwise). Needs the ``dist`` extra."""


def _finished(config: DistillConfig, out: str | Path) -> Path | None:
    path = Path(out) / config.run_id / "result.json"
    return path if path.exists() else None


def run_one(config: DistillConfig, out: str | Path, resume: bool = True) -> DistillResult:
    """One run of a sweep (what a worker process or a Ray task executes); finished runs are loaded."""
    import torch

    if torch.get_num_threads() > 1 and config.device == "cpu":
        torch.set_num_threads(1)  # several runs share the machine
    finished = _finished(config, out)
    return DistillResult.load(finished) if finished else distill(config, out, resume=resume)


def run_group(configs: list[DistillConfig], out: str | Path, resume: bool = True) -> list[DistillResult]:
    """A group of runs (one, or several differing only in S: trained jointly) as a worker executes it; results in
    the order of ``configs``."""
    if len(configs) == 1:
        return [run_one(configs[0], out, resume)]
    import torch

    if torch.get_num_threads() > 1 and configs[0].device == "cpu":
        torch.set_num_threads(1)
    by_samples = {r.config["samples"]: r for r in distill_group(configs, out, resume=resume)}
    return [by_samples[c.samples] for c in configs]


def sample_groups(configs: list[DistillConfig]) -> list[list[int]]:
    """Indices of ``configs`` grouped for joint training: CIFAR-100 runs that use a teacher and differ only in S
    share a group (one per S value; a repeated S starts another group); every other run is alone."""
    groups: dict[str, list[list[int]]] = {}
    order: list[tuple[str, int]] = []
    for i, config in enumerate(configs):
        if config.dataset in IMAGE_DATASETS and config.lam > 0:
            key = json.dumps(dataclasses.replace(config, samples=1).identity(), sort_keys=True, default=str)
        else:
            key = f"alone-{i}"
        slots = groups.setdefault(key, [])
        slot = next((g for g in slots if all(configs[j].samples != config.samples for j in g)), None)
        if slot is None:
            slot = []
            slots.append(slot)
            order.append((key, len(slots) - 1))
        slot.append(i)
    return [groups[key][k] for key, k in order]


def _teacher_job(config: DistillConfig, out: str | Path) -> str:
    from sgdbound.cifar.kd import ensure_teacher

    return str(ensure_teacher(config, out))


def _teacher_jobs(configs: list[DistillConfig], out: str | Path) -> list[DistillConfig]:
    """One config per CIFAR teacher that is needed and not trained yet (trained first, so that parallel runs do
    not train the same teacher twice)."""
    from sgdbound.kd.distill import IMAGE_DATASETS

    jobs: dict[Path, DistillConfig] = {}
    for config in configs:
        if config.dataset in IMAGE_DATASETS and config.lam > 0 and config.teacher_checkpoint is None \
                and _finished(config, out) is None:
            from sgdbound.cifar.kd import teacher_path

            path = teacher_path(config, out)
            if not path.exists():
                jobs.setdefault(path, config)
    return list(jobs.values())


def _ray_remote(fn, config: DistillConfig | list[DistillConfig], gpus_per_run: float | None):
    config = config[0] if isinstance(config, list) else config  # a group of runs asks for what one run does
    gpus = (1.0 if config.device.startswith("cuda") else 0.0) if gpus_per_run is None else float(gpus_per_run)
    import ray

    return ray.remote(num_cpus=1, num_gpus=gpus)(fn)


def _execute(fn, jobs: list[tuple], backend: Backend, workers: int, gpus_per_run: float | None,
             done: Callable[[int, object], None]) -> None:
    """Run ``fn(*args)`` for every ``(index, config, *args)`` job on ``backend``; ``done(index, value)`` as each
    ends."""
    if backend is Backend.PROCESS:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(fn, *job[1:]): job[0] for job in jobs}
            for future in as_completed(futures):
                done(futures[future], future.result())
    elif backend is Backend.RAY:
        import ray

        refs = {_ray_remote(fn, job[1], gpus_per_run).remote(*job[1:]): job[0] for job in jobs}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            done(refs[ready[0]], ray.get(ready[0]))
    else:
        for job in jobs:
            done(job[0], fn(*job[1:]))


def init_ray(address: str | None = None, **kwargs) -> None:
    """``ray.init`` unless Ray is already initialised; ``ValueError`` naming the extra when Ray is missing."""
    try:
        import ray
    except ImportError:
        raise ValueError("the ray backend needs Ray: pip install 'sgdbound[dist]' (or pip install ray)") from None
    if not ray.is_initialized():
        ray.init(address=address, **kwargs)


def preflight_all(configs: Iterable[DistillConfig]) -> None:
    """Check, before any training, what a CIFAR run reads: its data files load, its teacher checkpoint fits."""
    from sgdbound.kd.distill import IMAGE_DATASETS

    seen = set()
    for config in configs:
        key = (config.data_root, config.teacher_checkpoint if config.lam > 0 else None, config.teacher,
               config.teacher_net)
        if config.dataset in IMAGE_DATASETS and key not in seen:
            from sgdbound.cifar.kd import preflight

            preflight(config)
            seen.add(key)


def train_teachers(configs: Iterable[DistillConfig], out: str | Path, *, backend: str = "local", workers: int = 2,
                   gpus_per_run: float | None = None, ray_address: str | None = None) -> list[str]:
    """Train (or find) the CIFAR teacher network of each config under ``<out>/teachers/``; returns the paths."""
    from sgdbound.kd.loss import _enum

    backend = _enum(Backend, "backend", backend)
    configs = list(configs)
    if backend is Backend.RAY:
        init_ray(ray_address)
    paths: list[str] = [""] * len(configs)
    _execute(_teacher_job, [(k, c, str(out)) for k, c in enumerate(configs)], backend, workers, gpus_per_run,
             paths.__setitem__)
    return paths


def sweep(configs: Iterable[DistillConfig], out: str | Path, *, resume: bool = True,
          progress: Callable[[int, int, DistillConfig, DistillResult], None] | None = None,
          backend: str = "local", workers: int = 2, gpus_per_run: float | None = None,
          ray_address: str | None = None, joint_samples: bool = False) -> list[DistillResult]:
    """Run ``configs`` into ``out`` (one folder per run) and return their results, in the given order.

    A run whose ``result.json`` exists is loaded, not rerun (on every backend, before anything is submitted).
    ``resume`` continues partial runs from their checkpoint (otherwise they restart). ``progress(i, total, config,
    result)`` is called after each run. ``backend`` (a ``Backend`` name): ``local`` runs in this process, sharing
    teachers with equal ``teacher_key()`` (the cache is dropped whenever the data subset (β, seed) changes, so
    memory stays bounded); ``process`` (``workers`` processes) and ``ray`` run one task per run, CIFAR teachers
    being trained first, one task each, and shared through ``<out>/teachers/``. ``joint_samples``: runs that differ
    only in S (CIFAR-100) train as one job (:func:`sample_groups`), each result equal to its separate run.
    """
    from sgdbound.kd.loss import _enum

    backend = _enum(Backend, "backend", backend)
    configs = list(configs)
    preflight_all(configs)
    order = sorted(range(len(configs)), key=lambda i: (configs[i].dataset, configs[i].beta, configs[i].seed,
                                                       configs[i].teacher))
    results: list[DistillResult | None] = [None] * len(configs)
    count = [0]

    def done(i: int, result: DistillResult) -> None:
        results[i] = result
        count[0] += 1
        if progress is not None:
            progress(count[0], len(configs), configs[i], result)

    todo = []
    for i in order:
        finished = _finished(configs[i], out)
        if finished:
            log.info("skip %s (finished)", configs[i].run_id)
            done(i, DistillResult.load(finished))
        else:
            todo.append(i)
    groups = [[todo[k] for k in group] for group in sample_groups([configs[i] for i in todo])] if joint_samples \
        else [[i] for i in todo]

    def group_done(g: int, group_results: list[DistillResult]) -> None:
        for i, result in zip(groups[g], group_results):
            done(i, result)

    if backend is Backend.LOCAL:
        cache: dict = {}
        subset = None
        for g, group in enumerate(groups):
            config = configs[group[0]]
            if (config.dataset, config.beta, config.seed) != subset:
                cache.clear()
                subset = (config.dataset, config.beta, config.seed)
            if len(group) == 1:
                group_done(g, [distill(config, out, resume=resume, cache=cache)])
            else:
                group_done(g, run_group([configs[i] for i in group], out, resume))
        return results
    if backend is Backend.RAY:
        init_ray(ray_address)
    teachers = _teacher_jobs([configs[i] for i in todo], out)
    _execute(_teacher_job, [(k, c, str(out)) for k, c in enumerate(teachers)], backend, workers, gpus_per_run,
             lambda k, path: log.info("teacher ready: %s", path))
    jobs = [(g, [configs[i] for i in group], str(out), resume) for g, group in enumerate(groups)]
    _execute(run_group, jobs, backend, workers, gpus_per_run, group_done)
    return results
