"""Figures a reader understands without the code.

Axes-level functions (``trajectory``, ``plateau_vs_step``, ``plateau_vs_noise``, ``lambda_curve``,
``notebook_metric``) take a matplotlib ``Axes`` and return it; ``FIGURES[name](measured, theory)`` builds the
figure of an experiment and ``save_figure`` writes it as PNG and PDF. Library code never shows a window.
"""

from sgdbound.plots.axes import (
    METRIC_LABELS,
    lambda_curve,
    notebook_metric,
    plateau_scatter,
    plateau_vs_noise,
    plateau_vs_step,
    style_legend,
    target_label,
    target_style,
    trajectory,
)
from sgdbound.plots.figures import FIGURES, save_figure

__all__ = ["FIGURES", "METRIC_LABELS", "lambda_curve", "notebook_metric", "plateau_scatter", "plateau_vs_noise",
           "plateau_vs_step", "save_figure", "style_legend", "target_label", "target_style", "trajectory"]
