"""Axes-level drawing: each function takes a matplotlib ``Axes``, draws on it and returns it.

Nothing here creates a window; ``sgdbound.plots.figures`` assembles these into the
figures of ``sgdbound reproduce``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter

from sgdbound.experiments._common import Band, fit_loglog

__all__ = ["target_style", "target_label", "trajectory", "style_legend", "plateau_scatter", "plateau_vs_step",
           "plateau_vs_noise", "lambda_curve", "notebook_metric", "METRIC_LABELS"]

_COLORS = {"exact": "tab:green", "onehot": "tab:red", "dirichlet": "tab:blue", "gaussian": "tab:orange",
           "temperature": "tab:brown", "mix": "tab:purple"}

METRIC_LABELS = {
    "dist_sq": "E‖θ − θ*‖²  (squared distance to the optima)",
    "excess_risk": "excess risk  E KL(P ‖ q)  (nats)",
    "ce": "validation cross-entropy  (nats)",
    "accuracy": "validation accuracy",
    "l2_bcp": "mean ‖q − P‖₂  to the BCPs",
    "ece": "expected calibration error",
}


def target_label(spec: str) -> str:
    """A reader's name for a target spec: ``"dirichlet:5"`` → ``"Dirichlet teacher, α = 5"``."""
    name, _, value = spec.partition(":")
    if name == "exact":
        return "exact BCP"
    if name == "onehot":
        return "one-hot labels"
    if name == "dirichlet":
        return f"Dirichlet teacher, α = {float(value):g}"
    if name == "gaussian":
        return f"noisy BCP, ν = {float(value):g}"
    if name == "temperature":
        return f"temperature T = {float(value):g}"
    return spec


def target_style(spec: str, index: int = 0) -> dict:
    """Colour (by target family) and line style (by index within the family) for a target spec."""
    name = spec.split(":")[0].split("/")[-1]
    styles = ("-", "--", "-.", ":")
    return {"color": _COLORS.get(name, f"C{index % 10}"), "linestyle": styles[index % len(styles)]}


def trajectory(ax: Axes, band: Band, *, label: str, color: str | None = None, linestyle: str = "-",
               bound: Sequence[float] | None = None, prediction: float | None = None, floor: float | None = None,
               log: bool = True, first: int = 0) -> Axes:
    """Median across replicas with its 10–90% band against steps; optionally the bound curve (dashed, same
    colour) and the predicted stationary value (dotted horizontal line).

    ``floor``: values below it are drawn at the floor (log axes cannot show zero) and a note on the axes says
    so; ``first``: the first record drawn (1 skips ``t = 0``, e.g. a distance that starts at exactly zero).
    """
    steps = np.asarray(band.steps, dtype=float)[first:]
    median, low, high = (np.asarray(v, dtype=float)[first:] for v in (band.median, band.low, band.high))
    if floor is not None:
        if np.nanmax(high) < floor:
            ax.annotate(f"{label}: every replica below {floor:.0e} at every step (drawn at {floor:.0e})",
                        xy=(0.5, floor), xycoords=("axes fraction", "data"), xytext=(0, 6),
                        textcoords="offset points", ha="center", va="bottom", fontsize=8, color=color)
        median, low, high = (np.maximum(v, floor) for v in (median, low, high))
    (line,) = ax.plot(steps, median, color=color, linestyle=linestyle, lw=1.6, label=f"{label}: median")
    ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.18, lw=0, label=f"{label}: 10–90% of replicas")
    if bound is not None:
        curve = np.asarray(bound, dtype=float)
        ax.plot(steps, curve[first:], color=line.get_color(), linestyle=(0, (6, 3)), lw=1.0, alpha=0.9,
                label=f"{label}: bound (T1/T3)")
    if prediction is not None and np.isfinite(prediction) and prediction > 0:
        ax.axhline(prediction, color=line.get_color(), linestyle=":", lw=1.4, label=f"{label}: Lyapunov prediction")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("SGD step t")
    ax.grid(True, which="major", alpha=0.3)
    return ax


def style_legend(ax: Axes, entries: Sequence[tuple[str, str, str]], *, band: bool = True, bound: bool = False,
                 prediction: bool = False, **kwargs) -> Axes:
    """A compact legend: one line per curve (``entries``: ``(label, colour, linestyle)``), then grey keys for what
    every curve carries (the replica band, the bound, the prediction, each drawn in its curve's colour)."""
    handles = [Line2D([], [], color=c, linestyle=ls, lw=2, label=lab) for lab, c, ls in entries]
    if band:
        handles.append(Patch(color="gray", alpha=0.25, label="shaded: 10–90% of replicas (line: median)"))
    if bound:
        handles.append(Line2D([], [], color="gray", linestyle=(0, (6, 3)), lw=1, label="dashed: bound (T1/T3)"))
    if prediction:
        handles.append(Line2D([], [], color="gray", linestyle=":", lw=1.4, label="dotted: Lyapunov prediction"))
    ax.legend(handles=handles, **{"fontsize": 8, **kwargs})
    return ax


def plateau_scatter(ax: Axes, x: Sequence[float], plateau: Sequence[float], sem: Sequence[float] | None = None, *,
                    prediction: Sequence[float | None] | None = None, bound: Sequence[float | None] | None = None,
                    color: str = "tab:blue", label: str = "measured plateau", fit: bool = True,
                    slope_claim: float = 1.0) -> Axes:
    """Plateaus against a control on log-log axes: measured points (± standard error), the fitted power law
    with its slope, the Lyapunov predictions and the T3 bounds."""
    x = np.asarray(x, dtype=float)
    plateau = np.asarray(plateau, dtype=float)
    yerr = None if sem is None else np.nan_to_num(np.asarray(sem, dtype=float))
    ax.errorbar(x, plateau, yerr=yerr, fmt="o", color=color, ms=6, capsize=3, label=label, zorder=3)
    if fit and len(x) >= 2:
        line = fit_loglog(x, plateau)
        grid = np.geomspace(x.min(), x.max(), 50)
        ax.plot(grid, line.predict(grid), color=color, lw=1.2,
                label=f"fit: slope {line.slope:.2f} (theory {slope_claim:g})")
    if prediction is not None:
        pred = np.array([np.nan if p is None else p for p in prediction], dtype=float)
        ax.plot(x, pred, marker="x", color="black", linestyle=":", ms=7, lw=1.0, label="Lyapunov prediction")
    if bound is not None:
        bnd = np.array([np.nan if b is None else b for b in bound], dtype=float)
        if np.isfinite(bnd).any():
            ax.plot(x, bnd, marker="v", color="tab:gray", linestyle="--", ms=6, lw=1.0,
                    label="T3 bound 2γσ²/μ (admissible steps)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{v:.3g}" for v in x])  # label the measured controls themselves
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels on a short log axis collide
    ax.margins(x=0.08)
    ax.grid(True, which="both", alpha=0.25)
    return ax


def plateau_vs_step(ax: Axes, measured, theory) -> Axes:
    """``step_size`` result: plateau against γ with its fitted slope, predictions and T3 bounds."""
    plateau_scatter(ax, measured.lrs, measured.plateau, measured.sem, prediction=theory.prediction,
                    bound=theory.neighborhood, label="measured plateau (± s.e.)")
    ax.set_xlabel("step size γ")
    ax.set_ylabel("stationary E‖θ − θ*‖²")
    ax.set_title("Plateau against the step size (one-hot labels)")
    ax.legend(fontsize=8, loc="upper left")
    return ax


def plateau_vs_noise(ax: Axes, measured, theory, family: str) -> Axes:
    """``teacher_noise`` result for ``family`` (``"gaussian"`` against ν, ``"dirichlet"`` against 1/(1+α))."""
    color = _COLORS[family]
    plateau_scatter(ax, measured.x[family], measured.plateau[family], measured.sem[family],
                    prediction=theory.prediction[family], bound=theory.neighborhood[family], color=color,
                    label="measured plateau (± s.e.)")
    if family == "dirichlet":
        for x, y in zip(measured.x[family], measured.plateau[family]):
            ax.annotate(f"α = {1 / x - 1:g}", (x, y), xytext=(0, 9), textcoords="offset points", ha="center",
                        fontsize=8)
    onehot = measured.reference.get("onehot")
    if onehot:
        ax.axhline(onehot, color=_COLORS["onehot"], lw=1.0, linestyle="-.", label="one-hot labels")
    if family == "gaussian":
        ax.set_xlabel("teacher noise variance ν  (t = P + ε, ε ~ N(0, νI))")
        ax.set_title("Noisy BCPs: plateau ∝ ν")
    else:
        ax.set_xlabel("1 / (1 + α)  (Dirichlet teacher t ~ Dir(αP))")
        ax.set_title("Dirichlet teacher: plateau ∝ 1/(1+α)")
    ax.set_ylabel("stationary E‖θ − θ*‖²")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def lambda_curve(ax: Axes, measured, theory) -> Axes:
    """``lambda_sweep`` result: plateau against λ, the predicted curve, the fitted quadratic and λ* marked."""
    lams = np.asarray(measured.lams, dtype=float)
    ax.errorbar(lams, measured.plateau, yerr=np.nan_to_num(np.asarray(measured.sem, dtype=float)), fmt="o",
                color="tab:purple", capsize=3, label="measured plateau (± s.e.)", zorder=3)
    grid = np.linspace(0, 1, 201)
    a, b = measured.fit
    ax.plot(grid, (1 - grid) ** 2 * a + grid**2 * b, color="tab:purple", lw=1.2,
            label=f"fitted (1−λ)²a + λ²b, minimum at λ = {measured.best:.2f}")
    pred = np.array([np.nan if p is None else p for p in theory.prediction], dtype=float)
    ax.plot(lams, pred, "x:", color="black", ms=7, lw=1.0, label="Lyapunov prediction")
    ax.axvline(theory.lam_noise, color="tab:green", lw=1.3, linestyle="--",
               label=f"λ* = A/(A+B) minimising σ² (optimal_lambda): {theory.lam_noise:.2f}")
    if np.isfinite(theory.lam_plateau):
        ax.axvline(theory.lam_plateau, color="tab:gray", lw=1.0, linestyle=":",
                   label=f"λ minimising the predicted plateau: {theory.lam_plateau:.2f}")
    ax.set_yscale("log")
    ax.set_xlabel("distillation weight λ  (t = (1−λ) one-hot + λ teacher)")
    ax.set_ylabel("stationary E‖θ − θ*‖²")
    ax.set_xlim(-0.03, 1.03)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="upper center")
    return ax


def notebook_metric(ax: Axes, measured, theory, metric: str) -> Axes:
    """One panel of the notebook replica: ``metric`` against steps for each target, with the Bayes value."""
    for i, target in enumerate(measured.targets):
        style = target_style(target, i)
        band = measured.curves[target][metric]
        keep = np.asarray(band.steps) > 0  # log-scaled steps: the start is off the axis
        steps = np.asarray(band.steps)[keep]
        (line,) = ax.plot(steps, np.asarray(band.median)[keep], color=style["color"], linestyle=style["linestyle"],
                          lw=1.5, label=target_label(target))
        ax.fill_between(steps, np.asarray(band.low)[keep], np.asarray(band.high)[keep], color=line.get_color(),
                        alpha=0.15, lw=0)
    bayes = theory.bayes.get(metric)
    if bayes is not None and (metric != "l2_bcp"):
        ax.axhline(bayes, color="0.35", lw=0.9, linestyle="-", label="Bayes classifier")
    ax.set_xscale("log")
    ax.set_xlabel("SGD step (batch 1, log scale)")
    ax.set_ylabel(METRIC_LABELS[metric])
    ax.grid(True, alpha=0.3)
    if metric in ("ce", "l2_bcp"):
        ax.set_yscale("log")
    return ax
