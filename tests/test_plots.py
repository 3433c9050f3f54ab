"""Plots take and return Axes, draw the expected artists, and every experiment's figure is labelled.

The inputs are hand-made result dataclasses (no simulation), so these tests are fast.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sgdbound.experiments import Band  # noqa: E402
from sgdbound.experiments.official import NotebookMeasured, NotebookTheory  # noqa: E402
from sgdbound.experiments.plateaus import (  # noqa: E402
    LambdaMeasured,
    LambdaTheory,
    StepSizeMeasured,
    StepSizeTheory,
    TeacherNoiseMeasured,
    TeacherNoiseTheory,
)
from sgdbound.experiments.realizability import (  # noqa: E402
    CapacityMeasured,
    CapacityTheory,
    InterpolationMeasured,
    InterpolationTheory,
)
from sgdbound.experiments.students import AdamMeasured, AdamTheory, MLPMeasured, MLPTheory  # noqa: E402
from sgdbound.plots import (  # noqa: E402
    FIGURES,
    lambda_curve,
    plateau_vs_noise,
    plateau_vs_step,
    save_figure,
    style_legend,
    target_label,
    trajectory,
)

STEPS = np.arange(0, 1001, 100)


def band(level: float, decay: float = 0.0) -> Band:
    mean = level + np.exp(-decay * STEPS)
    return Band(STEPS, mean, 0.5 * mean, 1.5 * mean, mean)


def zero_band() -> Band:
    z = np.zeros(STEPS.shape)
    return Band(STEPS, z, z, z, z)


def fake_results() -> dict:
    keys = [f"{i}/{t}" for i in ("optimum", "random") for t in ("exact", "onehot")]
    interp = (InterpolationMeasured(["exact", "onehot"], {k: zero_band() if k == "optimum/exact" else band(0.1, 0.01)
                                                          for k in keys},
                                    {k: 0.1 for k in keys}, {k: 0.1 for k in keys}),
              InterpolationTheory({k: None if k.endswith("exact") else 0.1 for k in keys},
                                  {k: list(1.0 + 0 * STEPS) for k in keys}, {k: 1.0 for k in keys},
                                  {k: 0.0 for k in keys}, {k: "T3" for k in keys}, step=0.01))
    lrs = [0.004, 0.008, 0.016]
    step = (StepSizeMeasured(lrs, [0.01, 0.02, 0.04], [1e-3] * 3, 1.0, np.log(2.5), [band(v) for v in (0.01, 0.02,
                                                                                                     0.04)]),
            StepSizeTheory([0.01, 0.02, 0.04], [0.5, 1.0, None], 1.0, 1.0, 12.0, 0.04))
    noise = (TeacherNoiseMeasured({"gaussian": [1e-3, 4e-3], "dirichlet": [0.5, 0.1]},
                                  {"gaussian": [1e-3, 4e-3], "dirichlet": [0.05, 0.01]},
                                  {"gaussian": [1e-4, 1e-4], "dirichlet": [1e-3, 1e-3]},
                                  {"gaussian": 1.0, "dirichlet": 1.0}, {"gaussian": 0.0, "dirichlet": -2.3},
                                  {"onehot": 0.1, "exact": 0.0}),
             TeacherNoiseTheory({"gaussian": [1e-3, 4e-3], "dirichlet": [0.05, 0.01]},
                                {"gaussian": [0.1, 0.4], "dirichlet": [1.0, 0.2]},
                                {"gaussian": [0.1, 0.4], "dirichlet": [1.0, 0.2]}, {"gaussian": 1.0, "dirichlet": 1.0},
                                {"onehot": 0.1, "exact": 0.0}))
    lams = [0.0, 0.5, 1.0]
    lam = (LambdaMeasured(lams, [0.1, 0.04, 0.07], [1e-3] * 3, [0.1, 0.07], 0.59, 0.5),
           LambdaTheory(0.62, 0.59, [0.1, 0.04, 0.07], [2.0, 0.8, 1.2], 2.0, 1.2))
    cap_keys = ["quadratic/exact", "quadratic/onehot", "teacher/exact"]
    cap = (CapacityMeasured(cap_keys, {k: zero_band() if k == "teacher/exact" else band(0.05) for k in cap_keys},
                            {k: 0.05 for k in cap_keys}, {k: 0.01 for k in cap_keys}),
           CapacityTheory({k: 0.5 for k in cap_keys}, {k: 0.05 for k in cap_keys}, {k: 1.0 for k in cap_keys}))
    adam_keys = ["sgd/exact", "sgd/onehot", "adam/exact", "adam/onehot"]
    adam = (AdamMeasured(adam_keys, {k: band(0.01, 0.005) for k in adam_keys}, {k: 0.01 for k in adam_keys},
                         {k: 0.01 for k in adam_keys}),
            AdamTheory({k: 0.05 if k == "sgd/onehot" else None for k in adam_keys},
                       {k: list(10 * np.exp(-0.001 * STEPS)) if k.startswith("sgd") else None for k in adam_keys}))
    mlp = (MLPMeasured(["onehot", "exact"], {"onehot": band(0.05, 0.01), "exact": band(0.005, 0.01)},
                       {"onehot": 0.05, "exact": 0.005}, {"onehot": 1e-3, "exact": 1e-4},
                       {"onehot": 1.0, "exact": 0.1}),
           MLPTheory({"onehot": 1.0, "exact": 0.0}))
    curves = {t: {m: band(0.3, 0.003) for m in ("ce", "accuracy", "l2_bcp")} for t in ("onehot", "exact")}
    notebook = (NotebookMeasured(["onehot", "exact"], curves, {t: {"ce": 0.35, "accuracy": 0.85, "l2_bcp": 0.1}
                                                               for t in curves}, 450, 1000),
                NotebookTheory({"ce": 0.3, "accuracy": 0.9, "l2_bcp": 0.0}, 1000))
    return {"interpolation": interp, "step_size": step, "teacher_noise": noise, "lambda_sweep": lam,
            "capacity": cap, "adam": adam, "mlp_students": mlp, "notebook": notebook}


def new_axes():
    return Figure().subplots()


def test_trajectory_draws_median_band_bound_and_prediction_on_log_axes():
    ax = new_axes()
    out = trajectory(ax, band(0.1, 0.01), label="one-hot", color="tab:red", bound=list(2 + 0 * STEPS),
                     prediction=0.1)
    assert out is ax
    labels = [line.get_label() for line in ax.get_lines()]
    assert "one-hot: median" in labels and "one-hot: bound (T1/T3)" in labels
    assert "one-hot: Lyapunov prediction" in labels
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 1
    assert ax.get_yscale() == "log" and ax.get_xlabel()


def test_trajectory_floor_draws_zeros_on_log_axes_and_says_so():
    ax = new_axes()
    trajectory(ax, zero_band(), label="exact BCP", color="tab:green", floor=1e-12, first=1)
    median = ax.get_lines()[0].get_ydata()
    assert np.all(median == 1e-12) and len(median) == len(STEPS) - 1
    assert any("below 1e-12" in t.get_text() for t in ax.texts)


def test_style_legend_keys_curves_and_shared_styles():
    ax = new_axes()
    style_legend(ax, [("a", "C0", "-"), ("b", "C1", "--")], bound=True, prediction=True)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[:2] == ["a", "b"] and any("bound" in t for t in texts) and any("Lyapunov" in t for t in texts)


def test_plateau_vs_step_shows_the_fitted_slope_prediction_and_bound():
    measured, theory = fake_results()["step_size"]
    ax = plateau_vs_step(new_axes(), measured, theory)
    labels = [line.get_label() for line in ax.get_lines()]
    assert any(lab.startswith("fit: slope 1.00") for lab in labels)
    assert "Lyapunov prediction" in labels and any(lab.startswith("T3 bound") for lab in labels)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_title() and "step size" in ax.get_xlabel()


@pytest.mark.parametrize("family, word", [("gaussian", "ν"), ("dirichlet", "α")])
def test_plateau_vs_noise_labels_its_axis(family, word):
    measured, theory = fake_results()["teacher_noise"]
    ax = plateau_vs_noise(new_axes(), measured, theory, family)
    assert word in ax.get_xlabel() and ax.get_legend() is not None
    assert any(line.get_label().startswith("fit: slope") for line in ax.get_lines())


def test_lambda_curve_marks_the_predicted_lambda():
    measured, theory = fake_results()["lambda_sweep"]
    ax = lambda_curve(new_axes(), measured, theory)
    vertical = [line for line in ax.get_lines() if "λ*" in line.get_label()]
    assert len(vertical) == 1 and vertical[0].get_xdata()[0] == pytest.approx(theory.lam_noise)
    assert "λ" in ax.get_xlabel()


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_experiment_figure_is_titled_and_labelled(name):
    measured, theory = fake_results()[name]
    fig = FIGURES[name](measured, theory)
    assert isinstance(fig, Figure)
    axes = fig.get_axes()
    assert axes
    assert fig.get_suptitle() or all(ax.get_title() for ax in axes)
    for ax in axes:
        assert ax.get_xlabel(), f"{name}: an axis without an x label"
        assert ax.get_lines() or ax.collections
    assert any(ax.get_ylabel() for ax in axes)
    assert any(ax.get_legend() is not None for ax in axes) or fig.legends


def test_save_figure_writes_png_and_pdf(tmp_path):
    measured, theory = fake_results()["lambda_sweep"]
    paths = save_figure(FIGURES["lambda_sweep"](measured, theory), tmp_path / "figs", "lambda_sweep", dpi=40)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)


def test_target_labels_read_as_words():
    assert target_label("dirichlet:5") == "Dirichlet teacher, α = 5"
    assert target_label("gaussian:0.002") == "noisy BCP, ν = 0.002"
    assert target_label("exact") == "exact BCP"


def test_library_code_never_shows_figures():
    import pathlib

    import sgdbound.plots

    for path in pathlib.Path(sgdbound.plots.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "plt.show(" not in text and "import matplotlib.pyplot" not in text, path
