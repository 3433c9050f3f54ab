"""Turn a results folder into tables (mean ± std over seeds) and figures.

``load_results(folder)`` reads every ``result.json`` below ``folder``; ``summarize`` groups runs that differ only in
the seed and gives the mean and the sample standard deviation (``ddof=1``; 0 for a single seed) of the student's final
and best test accuracy, its convergence noise, and the teacher's accuracy, NLL, Brier score and ECE.
Plot functions take a matplotlib ``Axes`` and return it; ``write_report`` saves tables and PNGs.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sgdbound.io import atomic_write_bytes, atomic_write_text
from sgdbound.kd.distill import DistillResult

__all__ = ["load_results", "run_rows", "runs_csv", "summarize", "markdown_table", "write_report", "Report",
           "GROUP_KEYS", "plot_accuracy_by_teacher", "plot_convergence_noise", "plot_few_shot",
           "plot_accuracy_vs_samples"]

GROUP_KEYS = ("dataset", "teacher", "lam", "t_teacher", "t_student", "samples", "beta", "teacher_net", "student")
METRICS = ("final_acc", "best_acc", "convergence_noise", "teacher_accuracy", "teacher_nll", "teacher_brier",
           "teacher_ece")
TEACHER_ORDER = ("none", "deterministic", "vi", "laplace", "mc_dropout", "ensemble")


def load_results(folder: str | Path) -> list[DistillResult]:
    """Every finished run at any depth under ``folder`` (``…/<run_id>/result.json``: one sweep's ``--out`` or a
    folder of several), sorted by run id; a run found twice (a copied folder) counts once."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"results folder {str(folder)!r} does not exist")
    runs: dict[str, DistillResult] = {}
    for path in sorted(folder.rglob("result.json")):
        result = DistillResult.load(path)
        runs.setdefault(result.run_id, result)
    return [runs[key] for key in sorted(runs)]


def _label(config: dict) -> str:
    """``none`` for λ = 0; a few-shot run whose teacher saw only the student's subset is marked ``(subset)``
    (results written before ``teacher_data`` existed all fitted it so)."""
    if config["lam"] == 0:
        return "none"
    subset = config.get("beta", 1.0) < 1 and config.get("teacher_data", "subset") == "subset"
    return f"{config['teacher']} (subset)" if subset else config["teacher"]


def run_rows(results: list[DistillResult]) -> list[dict]:
    """One flat row per run: the grouping keys (teacher ``none`` for λ = 0), the seed and the metrics."""
    rows = []
    for r in results:
        row = {key: r.config.get(key) for key in GROUP_KEYS}
        row["teacher"] = _label(r.config)
        row.update(seed=r.config["seed"], train_size=r.train_size, epochs=r.epochs_run, last=r.last,
                   final_acc=r.final_acc, best_acc=r.best_acc, convergence_noise=r.convergence_noise,
                   seconds=r.seconds, git_commit=r.provenance.get("git_commit"),
                   sgdbound_version=r.provenance.get("sgdbound_version"))
        for name in ("accuracy", "nll", "brier", "ece"):
            row[f"teacher_{name}"] = None if r.teacher is None else r.teacher[name]
        rows.append(row)
    return rows


@dataclass
class Group:
    """Runs that share ``key`` (``GROUP_KEYS`` values); ``stats[metric] = (mean, std, n)``."""

    key: dict
    seeds: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    last: int = 0
    train_size: int = 0


def summarize(rows: list[dict]) -> list[Group]:
    """Groups of ``run_rows`` differing only in the seed, ordered by dataset, β, teacher, λ, T, S."""
    buckets: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        buckets[tuple(row[k] for k in GROUP_KEYS)].append(row)
    groups = []
    for key, members in buckets.items():
        group = Group(dict(zip(GROUP_KEYS, key)), sorted(m["seed"] for m in members), last=members[0]["last"],
                      train_size=members[0]["train_size"])
        for metric in METRICS:
            values = np.array([m[metric] for m in members if m[metric] is not None], dtype=float)
            values = values[np.isfinite(values)]
            if values.size:
                std = float(values.std(ddof=1)) if values.size > 1 else 0.0
                group.stats[metric] = (float(values.mean()), std, int(values.size))
        groups.append(group)

    def order(g: Group):
        teacher = g.key["teacher"]
        rank = TEACHER_ORDER.index(teacher) if teacher in TEACHER_ORDER else len(TEACHER_ORDER)
        return (g.key["dataset"], -g.key["beta"], rank, g.key["lam"], g.key["t_teacher"], g.key["t_student"],
                g.key["samples"])

    return sorted(groups, key=order)


def _pm(stat, scale: float = 100.0, digits: int = 1) -> str:
    if stat is None:
        return "–"
    mean, std, _ = stat
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def markdown_table(groups: list[Group]) -> str:
    """A markdown table: accuracies and convergence noise in percentage points, NLL in nats."""
    head = ("| dataset | β | n train | teacher | λ | T_t | T_s | S | seeds | student final acc (%) | best acc (%) "
            "| conv. noise (pp, last E) | teacher acc (%) | teacher NLL | teacher ECE (%) | teacher Brier |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for g in groups:
        k, s = g.key, g.stats
        dataset = k["dataset"] if k["dataset"] != "cifar100" else f"cifar100 {k['teacher_net']}→{k['student']}"
        lines.append(
            f"| {dataset} | {k['beta']:g} | {g.train_size} | {k['teacher']} | {k['lam']:g} | {k['t_teacher']:g} "
            f"| {k['t_student']:g} | {k['samples']} | {len(g.seeds)} | {_pm(s.get('final_acc'))} "
            f"| {_pm(s.get('best_acc'))} | {_pm(s.get('convergence_noise'), digits=2)} (E={g.last}) "
            f"| {_pm(s.get('teacher_accuracy'))} | {_pm(s.get('teacher_nll'), 1.0, 3)} "
            f"| {_pm(s.get('teacher_ece'))} | {_pm(s.get('teacher_brier'), 1.0, 3)} |")
    return "\n".join(lines) + "\n"


def runs_csv(rows: list[dict]) -> str:
    """``run_rows`` as CSV text (header from the first row)."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def _teachers(groups):
    present = {g.key["teacher"] for g in groups}
    return [t for t in TEACHER_ORDER if t in present] + sorted(present - set(TEACHER_ORDER))


def _bars(ax, groups, metric, scale, ylabel):
    betas = sorted({g.key["beta"] for g in groups}, reverse=True)
    teachers = _teachers(groups)
    width = 0.8 / max(1, len(betas))
    for j, beta in enumerate(betas):
        means, stds = [], []
        for t in teachers:
            stats = [g.stats.get(metric) for g in groups if g.key["teacher"] == t and g.key["beta"] == beta]
            stat = next((s for s in stats if s is not None), None)
            means.append(math.nan if stat is None else stat[0] * scale)
            stds.append(0.0 if stat is None else stat[1] * scale)
        ax.bar(np.arange(len(teachers)) + (j - (len(betas) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
               label=f"β = {beta:g}")
    ax.set_xticks(np.arange(len(teachers)), teachers, rotation=20)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    return ax


def plot_accuracy_by_teacher(ax, groups: list[Group]):
    """Student final test accuracy (mean ± std over seeds) for each teacher, one bar per β."""
    _bars(ax, groups, "final_acc", 100.0, "student final test accuracy (%)")
    finite = [g.stats["final_acc"][0] * 100 for g in groups if "final_acc" in g.stats]
    if finite:
        ax.set_ylim(max(0.0, min(finite) - 10), min(100.0, max(finite) + 5))
    ax.set_title("Accuracy by teacher")
    return ax


def plot_convergence_noise(ax, groups: list[Group]):
    """Convergence noise (std of test accuracy over the last E epochs, pp) for each teacher and β."""
    _bars(ax, groups, "convergence_noise", 100.0, "convergence noise (pp)")
    ax.set_title(f"Convergence noise (last E = {groups[0].last if groups else '?'} epochs)")
    return ax


def _curve(ax, groups, axis, xlabel, log=False):
    for t in _teachers(groups):
        points = sorted((g.key[axis], g.stats["final_acc"]) for g in groups
                        if g.key["teacher"] == t and "final_acc" in g.stats)
        if not points:
            continue
        xs = [p[0] for p in points]
        ax.errorbar(xs, [p[1][0] * 100 for p in points], yerr=[p[1][1] * 100 for p in points], marker="o",
                    capsize=3, label=t)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("student final test accuracy (%)")
    ax.legend(fontsize="small")
    return ax


def plot_few_shot(ax, groups: list[Group]):
    """Student accuracy against the per-class training fraction β, one curve per teacher."""
    _curve(ax, groups, "beta", "per-class training fraction β", log=True)
    ax.set_title("Few-shot")
    return ax


def plot_accuracy_vs_samples(ax, groups: list[Group]):
    """Student accuracy against the number S of teacher Monte Carlo samples, one curve per teacher."""
    _curve(ax, groups, "samples", "teacher samples S", log=True)
    ax.set_title("Accuracy against S")
    return ax


@dataclass(frozen=True)
class Report:
    """What ``write_report`` wrote: the markdown table's text and the files."""

    table: str
    files: tuple


def write_report(folder: str | Path, out: str | Path | None = None, *, figures: str | Path | None = None,
                 prefix: str = "kd_", run_ids: set | None = None) -> Report:
    """Tables and figures for the runs under ``folder``: ``results.csv`` (one row per run) and ``summary.md`` in
    ``out`` (default: ``folder``); PNGs in ``figures`` (default: ``out``): ``<prefix>accuracy_by_teacher``,
    ``<prefix>convergence_noise`` and, where the runs vary β or S, ``<prefix>few_shot`` and
    ``<prefix>accuracy_vs_samples``. ``run_ids``: report only these runs (a study's own, when the folder also
    holds others)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = load_results(folder)
    if run_ids is not None:
        results = [r for r in results if r.run_id in run_ids]
    if not results:
        raise ValueError(f"no finished runs (*/result.json) under {str(folder)!r}")
    out = Path(folder if out is None else out)
    figures = out if figures is None else Path(figures)
    rows = run_rows(results)
    groups = summarize(rows)
    table = markdown_table(groups)
    files = [atomic_write_text(out / "results.csv", runs_csv(rows)), atomic_write_text(out / "summary.md", table)]
    if any(row["dataset"] == "cifar100" for row in rows):
        from sgdbound.cifar.report import paper_table

        paper = paper_table(rows)
        files.append(atomic_write_text(out / "paper_table.md", paper))
        table = f"{table}\n{paper}"
    plots = [("accuracy_by_teacher", plot_accuracy_by_teacher), ("convergence_noise", plot_convergence_noise)]
    if len({g.key["beta"] for g in groups}) > 1:
        plots.append(("few_shot", plot_few_shot))
    if len({g.key["samples"] for g in groups if g.key["teacher"] != "none"}) > 1:
        plots.append(("accuracy_vs_samples", plot_accuracy_vs_samples))
    for name, plot in plots:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
        plot(ax, groups)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120)
        plt.close(fig)
        files.append(atomic_write_bytes(figures / f"{prefix}{name}.png", buffer.getvalue()))
    return Report(table, tuple(files))
