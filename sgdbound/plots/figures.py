"""One figure per experiment, assembled from the Axes-level functions of ``sgdbound.plots.axes``.

``FIGURES[name](measured, theory) -> Figure`` builds a ``matplotlib.figure.Figure`` directly (no pyplot, so no
global state and no window); ``save_figure`` writes it as PNG and PDF.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure

from sgdbound.plots.axes import (
    lambda_curve,
    notebook_metric,
    plateau_vs_noise,
    plateau_vs_step,
    style_legend,
    target_label,
    target_style,
    trajectory,
)

__all__ = ["FIGURES", "save_figure", "interpolation_figure", "step_size_figure", "teacher_noise_figure",
           "lambda_figure", "capacity_figure", "adam_figure", "mlp_figure", "notebook_figure"]

_FLOOR = 1e-12


def interpolation_figure(measured, theory) -> Figure:
    """Two panels (started at θ*, started at random): ``‖θ−θ*‖²`` per target with bounds and predictions."""
    fig = Figure(figsize=(12, 5.5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    titles = {"optimum": "Started at the optimum θ* (distance 0 at t = 0)", "random": "Started at a random point"}
    entries = []
    for ax, init in zip(axes, ("optimum", "random")):
        for target in measured.targets:
            key = f"{init}/{target}"
            style = target_style(target, 0)
            trajectory(ax, measured.dist_sq[key], label=target_label(target), color=style["color"],
                       bound=theory.bound_curve[key], prediction=theory.prediction[key], floor=_FLOOR,
                       first=1 if init == "optimum" else 0)
            if init == "optimum":
                entries.append((target_label(target), style["color"], "-"))
        ax.set_title(titles[init])
    axes[0].set_ylabel("E‖θ_t − θ*‖²  (distance to the set of optima)")
    style_legend(axes[1], entries, bound=True, prediction=True, loc="lower left")
    fig.suptitle("Interpolation: exact BCPs remove SGD's noise floor (linear student, streaming SGD, batch 1, "
                 f"γ = {theory.step:g})")
    return fig


def step_size_figure(measured, theory) -> Figure:
    """Left: plateau against γ (slope, predictions, bounds); right: the trajectories behind it."""
    fig = Figure(figsize=(12, 5), layout="constrained")
    left, right = fig.subplots(1, 2)
    plateau_vs_step(left, measured, theory)
    for i, (lr, band, pred) in enumerate(zip(measured.lrs, measured.dist_sq, theory.prediction)):
        trajectory(right, band, label=f"γ = {lr:g}", color=f"C{i}", prediction=pred, first=1)
    right.set_ylabel("E‖θ_t − θ*‖²")
    right.set_title("Trajectories from θ* (dotted: Lyapunov prediction)")
    handles, labels = right.get_legend_handles_labels()
    keep = [(h, lab) for h, lab in zip(handles, labels) if lab.endswith("median")]
    right.legend([h for h, _ in keep], [lab.replace(": median", "") for _, lab in keep], fontsize=8,
                 loc="lower right", title="median, 10–90% band", title_fontsize=8)
    fig.suptitle(f"Plateau ∝ step size: measured log-log slope {measured.slope:.2f}, theory 1 "
                 f"(linear student, one-hot labels; L_max = {theory.lipschitz_max:.3g}, so γ·L_max ≤ 0.1 "
                 f"for γ ≤ {0.1 / theory.lipschitz_max:.2g})")
    return fig


def teacher_noise_figure(measured, theory) -> Figure:
    fig = Figure(figsize=(12, 5), layout="constrained")
    axes = fig.subplots(1, 2)
    plateau_vs_noise(axes[0], measured, theory, "gaussian")
    plateau_vs_noise(axes[1], measured, theory, "dirichlet")
    fig.suptitle("The plateau grows in proportion to the teacher's noise (linear student, started at θ*)")
    return fig


def lambda_figure(measured, theory) -> Figure:
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.subplots()
    lambda_curve(ax, measured, theory)
    ax.set_title("Distillation weight λ: plateau of SGD on t = (1−λ) e_y + λ p̃  (p̃ a noisy teacher)")
    return fig


def capacity_figure(measured, theory) -> Figure:
    fig = Figure(figsize=(8.5, 6), layout="constrained")
    ax = fig.subplots()
    labels = {"exact": "exact BCP", "onehot": "one-hot labels"}
    entries = []
    for i, key in enumerate(measured.keys):
        _, target = key.split("/")
        realizable = "realizable (linear BCPs)" if i == len(measured.keys) - 1 else "non-realizable (quadratic BCPs)"
        label = f"{labels.get(target, target)}, {realizable}"
        trajectory(ax, measured.dist_sq[key], label=label, color=f"C{i}", prediction=theory.prediction[key],
                   floor=_FLOOR, first=1)
        entries.append((label, f"C{i}", "-"))
    ax.set_ylabel("E‖θ_t − θ*‖²  (started at θ*)")
    ax.set_title("Capacity: without a representable optimum, exact BCPs keep a noise floor\n"
                 "(linear student, streaming SGD, batch 1, started at its optimum θ*)")
    style_legend(ax, entries, prediction=True, loc="center right")
    return fig


def adam_figure(measured, theory) -> Figure:
    fig = Figure(figsize=(8.5, 6), layout="constrained")
    ax = fig.subplots()
    entries = []
    for key in measured.keys:
        optimizer, target = key.split("/")
        style = {"color": target_style(target)["color"], "linestyle": "-" if optimizer == "sgd" else "-."}
        label = f"{optimizer.upper() if optimizer == 'sgd' else 'Adam'}, {target_label(target)}"
        trajectory(ax, measured.dist_sq[key], label=label, color=style["color"], linestyle=style["linestyle"],
                   bound=theory.bound_curve.get(key), prediction=theory.prediction.get(key), floor=_FLOOR)
        entries.append((label, style["color"], style["linestyle"]))
    ax.set_ylabel("E‖θ_t − θ*‖²")
    ax.set_title("Adam against SGD from a random start, linear student\n"
                 "(bounds and prediction: SGD only; values below 1e-12 drawn at 1e-12)")
    style_legend(ax, entries, bound=True, prediction=True, loc="lower left")
    return fig


def mlp_figure(measured, theory) -> Figure:
    fig = Figure(figsize=(8.5, 5.5), layout="constrained")
    ax = fig.subplots()
    entries = []
    for target in measured.targets:
        style = target_style(target, 0)
        trajectory(ax, measured.excess_risk[target], label=target_label(target), color=style["color"])
        entries.append((target_label(target), style["color"], "-"))
    ax.set_ylabel("excess risk  E KL(P ‖ q)  (nats)")
    net = "" if not measured.widths else " " + "-".join(str(w) for w in measured.widths) + " (ReLU)"
    step = "" if measured.lr is None else f", γ = {measured.lr:g}"
    ax.set_title(f"MLP students{net} (no PL guarantee): excess risk by supervision\nstreaming SGD, batch 1{step}")
    style_legend(ax, entries, loc="upper right")
    return fig


def notebook_figure(measured, theory) -> Figure:
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, metric in zip(axes, ("ce", "accuracy", "l2_bcp")):
        notebook_metric(ax, measured, theory, metric)
    axes[0].set_title("Validation cross-entropy")
    axes[1].set_title("Validation accuracy")
    axes[2].set_title("Distance of the student to the BCPs")
    axes[0].legend(fontsize=8, loc="upper right")
    epochs = measured.steps / max(measured.train_size, 1)
    fig.suptitle(f"Official notebook replica: MLP 30-128-128-5, {measured.train_size:,} training points, "
                 f"{measured.steps:,} steps ({epochs:g} epochs), SGD γ=5e-4, momentum 0.9, batch 1; "
                 "median and 10–90% band of replicas")
    return fig


FIGURES: dict[str, Callable[..., Figure]] = {
    "interpolation": interpolation_figure,
    "step_size": step_size_figure,
    "teacher_noise": teacher_noise_figure,
    "lambda_sweep": lambda_figure,
    "capacity": capacity_figure,
    "adam": adam_figure,
    "mlp_students": mlp_figure,
    "notebook": notebook_figure,
}
"""``{experiment name: (measured, theory) -> Figure}``."""


def save_figure(fig: Figure, folder: str | os.PathLike, name: str, dpi: int = 150) -> list[Path]:
    """Write ``fig`` as ``folder/name.png`` and ``folder/name.pdf``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=dpi)
    return paths
