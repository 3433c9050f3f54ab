"""The small-data study: Bayesian versus deterministic teachers on mnist1d, sized for a 2-core CPU.

A 1-D CNN teacher of each kind (deterministic, VI, Laplace, MC-dropout, deep ensemble) is distilled into an MLP
student with ``λ = 0.5`` and ``T_t = T_s = 1`` (the theory's setting: the teacher's own probabilities), ``S = 10``
teacher samples, on the full training set and on per-class fractions ``β = 10%`` and ``5%``, five seeds; a
student trained on labels alone (``λ = 0``) is the baseline. As in the official few-shot protocol, the teacher is
fitted on the whole training set and the student sees the subset (``teacher_data="full"``).
Few-shot runs are given at least ``min_steps`` optimiser steps so that they are trained, not merely shown,
the data. To fit the CPU budget, teachers and students use Adam with learning rate 3e-3 (the official scripts
use 1e-3 over 200 CIFAR epochs) and the ensemble has three members.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from sgdbound.io import atomic_write_text, provenance
from sgdbound.kd.report import write_report
from sgdbound.kd.sweep import expand_grid, sweep

__all__ = ["SMALL_STUDY", "SMALL_STUDY_AXES", "StudyResult", "small_data_study"]

SMALL_STUDY: dict = {
    "dataset": "mnist1d",
    "teacher_net": "cnn",
    "student": "mlp",
    "t_teacher": 1.0,
    "t_student": 1.0,
    "samples": 10,
    "epochs": 15,
    "min_steps": 200,
    "teacher_epochs": 8,
    "teacher_min_steps": 150,
    "teacher_lr": 3e-3,
    "lr": 3e-3,
    "batch_size": 100,
    "last": 5,
    "teacher_options": {"ensemble": {"members": 3}, "mc_dropout": {"p": 0.2}, "laplace": {"link": "probit"}},
}
"""The base configuration (``DistillConfig`` fields)."""

SMALL_STUDY_AXES: dict = {
    "teacher": ["deterministic", "vi", "laplace", "mc_dropout", "ensemble"],
    "lam": [0.0, 0.5],
    "beta": [1.0, 0.1, 0.05],
}
"""The swept axes (seeds are added from ``seeds``)."""


@dataclass(frozen=True)
class StudyResult:
    """The study's markdown table, wall time (s), the files written and the number of runs."""

    table: str
    seconds: float
    files: tuple
    runs: int


def small_data_study(out: str | Path = "runs/small_study", *, seeds: int = 5, threads: int | None = 1,
                     figures: str | Path | None = None, doc: str | Path | None = None, command: str | None = None,
                     progress: Callable | None = None, axes: dict | None = None, **overrides) -> StudyResult:
    """Run (or finish: finished runs are skipped) the study into ``out`` and report it.

    ``figures``: folder for the PNGs (default ``out``); ``doc``: a markdown file to write the table to, with the
    configuration, the wall time and ``command``; ``threads``: torch intra-op threads during the study
    (restored afterwards; 1 suits a shared 2-core machine); ``axes``/``overrides``: change the swept axes or
    base fields (tests use tiny settings).
    """
    started = time.perf_counter()
    base = {**SMALL_STUDY, **overrides}
    grid = {**SMALL_STUDY_AXES, **(axes or {}), "seed": list(range(seeds))}
    configs = expand_grid(base, **grid)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        sweep(configs, out, resume=True, progress=progress)
    finally:
        torch.set_num_threads(previous)
    report = write_report(out, figures=figures, run_ids={c.run_id for c in configs})
    seconds = time.perf_counter() - started
    files = report.files
    if doc is not None:
        text = _doc(report.table, base, grid, seconds, len(configs), command)
        files = (*files, atomic_write_text(doc, text))
    return StudyResult(report.table, seconds, files, len(configs))


def _doc(table: str, base: dict, grid: dict, seconds: float, runs: int, command: str | None) -> str:
    prov = provenance()
    settings = ", ".join(f"{k}={v}" for k, v in base.items() if k != "teacher_options")
    return (
        "# Small-data study: Bayesian teachers on mnist1d\n\n"
        f"{__doc__.split(chr(10), 1)[1].strip()}\n\n"
        f"* command: `{command or 'sgdbound.kd.study.small_data_study()'}`\n"
        f"* wall time: {seconds:.0f} s for {runs} runs (CPU, torch {prov['torch']}, sgdbound "
        f"{prov['sgdbound_version']}, commit {prov['git_commit']})\n"
        f"* base settings: {settings}\n"
        f"* teacher options: {base.get('teacher_options')}\n"
        f"* swept: {', '.join(f'{k} = {v}' for k, v in grid.items())}\n"
        "* mean ± sample std over seeds; convergence noise = std of the student's test accuracy over its last E "
        "epochs, in percentage points; teacher metrics on the 1,000 test sequences with S samples at T = 1; "
        "teacher `none` is the λ = 0 student (labels only).\n\n"
        f"{table}"
    )
