"""Sweeps: the product of teachers × λ × temperatures × seeds × β × S over one base configuration.

Every configuration is validated before the first run starts, so a typo fails in a second, not an hour in.
Finished runs (``<out>/<run_id>/result.json``) are skipped on restart; ``resume=True`` also continues runs that
were killed half-way from their last checkpoint. Runs that share a teacher (same data subset, seed and teacher
settings, different λ, temperatures or S) fit it once.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from sgdbound.kd.distill import DistillConfig, DistillResult, distill
from sgdbound.kd.teachers import TEACHERS

__all__ = ["SWEEP_AXES", "expand_grid", "sweep"]

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


def sweep(configs: Iterable[DistillConfig], out: str | Path, *, resume: bool = True,
          progress: Callable[[int, int, DistillConfig, DistillResult], None] | None = None) -> list[DistillResult]:
    """Run ``configs`` into ``out`` (one folder per run) and return their results, in the given order.

    A run whose ``result.json`` exists is loaded, not rerun. ``resume`` continues partial runs from their
    checkpoint (otherwise they restart). ``progress(i, total, config, result)`` is called after each run.
    Teachers are shared between runs with equal ``teacher_key()``; the cache is dropped whenever the data
    subset (β, seed) changes, so memory stays bounded.
    """
    configs = list(configs)
    order = sorted(range(len(configs)), key=lambda i: (configs[i].dataset, configs[i].beta, configs[i].seed,
                                                       configs[i].teacher))
    results: list[DistillResult | None] = [None] * len(configs)
    cache: dict = {}
    subset = None
    for done, i in enumerate(order, 1):
        config = configs[i]
        if (config.dataset, config.beta, config.seed) != subset:
            cache.clear()
            subset = (config.dataset, config.beta, config.seed)
        finished = Path(out) / config.run_id / "result.json"
        if finished.exists():
            result = DistillResult.load(finished)
            log.info("skip %s (finished)", config.run_id)
        else:
            result = distill(config, out, resume=resume, cache=cache)
        results[i] = result
        if progress is not None:
            progress(done, len(configs), config, result)
    return results
