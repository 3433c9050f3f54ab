"""The paper's CIFAR-100 table with our numbers beside it.

Rows are the teacher → student pairs of :data:`sgdbound.cifar.presets.PAIRS`, columns the teacher kinds
(deterministic, VI, Laplace) as in the paper. A cell gives the paper's student accuracy and, where runs of that
preset exist (full data, the preset's λ, temperatures and S), ours: final-epoch accuracy mean ± sample std over
seeds, best-epoch accuracy, convergence noise (std of the test accuracy over the last E epochs, percentage
points) and the number of seeds.
"""

from __future__ import annotations

import numpy as np

from sgdbound.cifar.presets import KD_DEFAULTS, PAIRS, PAPER_ACCURACY, TeacherKind

__all__ = ["paper_table", "matching_rows"]


def matching_rows(rows: list[dict], teacher_net: str, student: str, kind: TeacherKind) -> list[dict]:
    """The ``run_rows`` of full-data CIFAR-100 runs of this pair and kind with the preset's λ, T_t, T_s and S."""
    kd = KD_DEFAULTS[kind]
    return [r for r in rows if r["dataset"] == "cifar100" and r.get("teacher_net") == teacher_net
            and r.get("student") == student and r["teacher"] == kind.value and r["beta"] == 1.0
            and (r["lam"], r["t_teacher"], r["t_student"], r["samples"]) == (kd.lam, kd.t_teacher, kd.t_student,
                                                                              kd.samples)]


def _ours(rows: list[dict]) -> str:
    if not rows:
        return "–"

    def stat(key):
        values = np.array([r[key] for r in rows if r[key] is not None], dtype=float) * 100
        values = values[np.isfinite(values)]
        if not values.size:
            return float("nan"), 0.0
        return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0

    (final, sd), (best, _), (noise, _) = stat("final_acc"), stat("best_acc"), stat("convergence_noise")
    return f"{final:.2f} ± {sd:.2f} (best {best:.2f}, noise {noise:.2f} pp, n={len(rows)})"


def paper_table(rows: list[dict]) -> str:
    """Markdown: the paper's layout (pairs × teacher kinds), paper's accuracy next to ours where runs exist."""
    kinds = list(TeacherKind)
    head = "| teacher → student | " + " | ".join(f"{k.value}: paper | {k.value}: ours" for k in kinds) + " |"
    lines = ["Student top-1 test accuracy (%) on CIFAR-100: the paper's and ours (final epoch mean ± std over "
             "seeds; best epoch; convergence noise over the last E epochs).", "", head,
             "|" + "---|" * (1 + 2 * len(kinds))]
    for teacher, student in PAIRS:
        cells = []
        for kind in kinds:
            paper = PAPER_ACCURACY.get((teacher, student), {}).get(kind)
            cells += ["–" if paper is None else f"{paper:.2f}", _ours(matching_rows(rows, teacher, student, kind))]
        lines.append(f"| {teacher} → {student} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
