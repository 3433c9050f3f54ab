"""Write the walkthrough notebooks of ``notebooks/`` as JSON (nbformat v4), from the cells below.

    python notebooks/make_notebooks.py            # write the four notebooks (without outputs)
    python notebooks/make_notebooks.py --execute  # write and execute them in place (SGDBOUND_QUICK=1: small)

Each notebook reads ``SGDBOUND_QUICK=1`` from the environment to run small settings (CI runs them that way,
see ``tests/test_notebooks.py``). Edit the cells here, not the ``.ipynb`` files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP_BASE = """\
import io
import os

import torch
from IPython.display import Image, display
{imports}
QUICK = os.environ.get("SGDBOUND_QUICK") == "1"
torch.set_num_threads(1)  # tiny batched ops: one thread is faster on a shared CPU
print("quick mode" if QUICK else "full settings")


def show(fig, dpi=100):
    \"\"\"Display a matplotlib Figure (sgdbound builds them without pyplot) as a PNG.\"\"\"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    display(Image(buffer.getvalue()))"""

SETUP = SETUP_BASE.format(imports="""
from sgdbound.cli.sim_commands import format_table
from sgdbound.experiments import run_experiment
from sgdbound.plots import FIGURES
""")


def _run(name: str, small: str) -> str:
    return f"""\
small = {small}  # quick mode only
result = run_experiment("{name}", **(small if QUICK else {{}}))
print(f"{{result.seconds:.1f}} s")
print(format_table(result.summary))
show(FIGURES["{name}"](result.measured, result.theory))"""


SMALL_ARGS = ('\n    steps=1000, replicas=16, theory_samples=2048, eval_size=64, record_every=100, device="cpu", '
              'lr=0.032,\n    ')
LINEAR_SMALL = f"dict({SMALL_ARGS})"

NOTEBOOKS = {
    "interpolation.ipynb": [
        new_markdown_cell("""\
# Interpolation: exact BCPs remove SGD's noise floor

A linear-softmax student trained by streaming SGD (batch 1, constant step γ) on a problem whose Bayes class
probabilities (BCPs) are linear-softmax. With the exact BCP as target, θ* minimises *every* per-sample loss
(Prop. 2 of Morad et al.), so the gradient noise at θ* is σ² = 0 and SGD converges linearly (T1). One-hot
labels and noisy teachers put σ² > 0 back: the iterates settle at a plateau ≈ (γ/2) tr(H⁺S) (the Lyapunov
prediction), below the T3 neighbourhood 2γσ²/μ."""),
        new_code_cell(SETUP),
        new_markdown_cell("## Exact vs one-hot vs noisy targets, started at θ* and at random"),
        new_code_cell(_run("interpolation", f'dict({SMALL_ARGS}targets=("exact", "onehot", "dirichlet:4"))')),
        new_markdown_cell("""\
Started at θ*, the exact-BCP distance stays at float64 round-off; from a random start it decays under the
T1 curve. The noisy targets' plateaus sit on their dotted predictions and far below their dashed T3 bounds.

## Capacity: when the student cannot represent the BCPs

With class-specific covariances the BCPs are quadratic in x and a linear student cannot interpolate them:
even exact-BCP supervision leaves σ² > 0 at the best linear student, hence a floor."""),
        new_code_cell(_run("capacity", LINEAR_SMALL)),
    ],
    "noisy_bcps_and_lambda.ipynb": [
        new_markdown_cell("""\
# Noisy BCPs and the distillation weight λ

The plateau of SGD near θ* is linear in the covariance C of the targets: ∝ ν for Gaussian noise on the BCPs
(the paper's model) and ∝ 1/(1+α) for a Dirichlet teacher Dir(αP) (the official notebook's). For the
distillation target t = (1−λ) e_y + λ p̃ the covariance is (1−λ)² C_onehot + λ² C_teacher, so the plateau is a
quadratic in λ; `sgdbound.theory.optimal_lambda` picks the λ* = A/(A+B) that minimises σ²."""),
        new_code_cell(SETUP),
        new_markdown_cell("## Plateau against the teacher's noise"),
        new_code_cell(_run("teacher_noise", f"dict({SMALL_ARGS}nus=(0.001, 0.004), alphas=(1.0, 9.0))")),
        new_markdown_cell("## The λ sweep, with the predicted optimum marked"),
        new_code_cell(_run("lambda_sweep", f"dict({SMALL_ARGS}lams=(0.0, 0.5, 1.0))")),
        new_markdown_cell("""\
λ* from `optimal_lambda` weighs every parameter direction equally (it minimises σ² = tr S); the plateau
weighs them by H⁺, so its minimiser can differ a little when the teacher's noise is not shaped like the
one-hot noise (Gaussian teachers). For a Dirichlet teacher both are (1+α)/(2+α)."""),
        new_code_cell("""\
from sgdbound.experiments import make_problem
from sgdbound.models import LinearSoftmax
from sgdbound.targets import Dirichlet
from sgdbound.theory import optimal_lambda

problem = make_problem("teacher")
sample = problem.sample(4096, seed=1)
student = LinearSoftmax.from_params(*problem.bayes_linear())
for alpha in (0.5, 2.0, 8.0):
    choice = optimal_lambda(student, sample.x, sample.bcp, Dirichlet(alpha))
    print(f"Dirichlet α = {alpha}: λ* = {choice.lam:.4f}  ((1+α)/(2+α) = {(1 + alpha) / (2 + alpha):.4f})")"""),
    ],
    "notebook_replica.ipynb": [
        new_markdown_cell("""\
# A replica of the official synthetic notebook

`Bayesian-KD/Bayesian-KD`, `synthetic_experiment/Synthetic_Experiment.ipynb`: 5 Gaussian classes in 30
dimensions, 50,000 points split 45/45/10, standardised; an MLP 30-128-128-5 trained by SGD (γ = 5e-4, momentum
0.9, batch 1, 2 epochs) on one-hot labels, exact BCPs, or Dirichlet teachers (α = 5, 0.5). Here every setting
runs several replicas in one batched program, which gives bands the original single run lacks."""),
        new_code_cell(SETUP),
        new_code_cell(_run("notebook", 'dict(points=2000, replicas=2, record_every=100, hidden=(64, 64), '
                           'device="cpu")')),
        new_markdown_cell("""\
Exact BCPs and the α = 5 teacher reach a lower validation cross-entropy and a smaller distance to the BCPs
than one-hot labels in the same number of steps; the very noisy α = 0.5 teacher behaves like one-hot labels.
The dotted lines are the Bayes classifier's values (H(Y|X) and the Bayes accuracy)."""),
    ],
    "bounds_explorer.ipynb": [
        new_markdown_cell("""\
# Bounds explorer

The four bounds (T1–T4) as functions of the step γ, from the constants at θ* of a built-in problem: how the
rate 1 − γμ, the neighbourhood 2γσ²/μ and the iterations to a target accuracy trade off, and how they compare
with the Lyapunov prediction of the actual plateau."""),
        new_code_cell(SETUP_BASE.format(imports="")),
        new_code_cell("""\
import numpy as np
from matplotlib.figure import Figure

from sgdbound.experiments import make_problem
from sgdbound.sim import simulate
from sgdbound.targets import OneHot
from sgdbound.theory import quasi_convex_bound

problem = make_problem("teacher")
probe = simulate(problem, noise=OneHot(), lr=0.01, steps=1, replicas=1, device="cpu", eval_size=16,
                 theory_samples=4096 if QUICK else 32768)
c = probe.constants
print({k: round(v, 4) for k, v in c.items()})"""),
        new_code_cell("""\
steps = np.geomspace(1e-3, 1 / (2 * c["smoothness"]), 12)
accuracy = 0.5
rows = []
for gamma in steps:
    b = quasi_convex_bound(mu=c["mu"], smoothness=c["smoothness"], sigma2=c["sigma2"], step=gamma, dist0=10.0)
    rows.append((gamma, b.rate, b.neighborhood, b.iterations(accuracy)))
print(f"{'γ':>10} {'rate':>12} {'neighbourhood':>14} {'iterations to ' + str(accuracy):>20}")
for gamma, rate, hood, its in rows:
    print(f"{gamma:>10.4g} {rate:>12.8f} {hood:>14.4g} {its:>20}")"""),
        new_code_cell("""\
predicted = [simulate(problem, noise=OneHot(), lr=float(g), steps=1, replicas=1, device="cpu", eval_size=16,
                      theory_samples=4096 if QUICK else 32768).predicted_stationary for g in steps[::3]]
fig = Figure(figsize=(7, 4.5), layout="constrained")
ax = fig.subplots()
ax.loglog(steps, [r[2] for r in rows], "v--", color="tab:gray", label="T3 neighbourhood 2γσ²/μ")
ax.loglog(steps[::3], predicted, "x:", color="black", label="Lyapunov prediction of the plateau")
ax.set_xlabel("step size γ")
ax.set_ylabel("E‖θ − θ*‖² at stationarity")
ax.set_title("One-hot labels on the 'teacher' problem: bound against prediction")
ax.legend()
show(fig)"""),
        new_markdown_cell("""\
The same computation from the command line:

    sgdbound bound --problem teacher --target onehot --step 0.01
    sgdbound bound --mu 0.03 --lipschitz 0.28 --lipschitz-max 12 --sigma2 1.9 --step 0.01"""),
    ],
}


def write(folder: Path = HERE) -> list[Path]:
    paths = []
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                "language": "python"}})
        path = folder / name
        nbformat.write(nb, path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", action="store_true", help="execute each notebook in place after writing it")
    args = parser.parse_args()
    for path in write():
        if args.execute:
            from nbclient import NotebookClient

            nb = nbformat.read(path, as_version=4)
            NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
                           ).execute()
            nbformat.write(nb, path)
        print(path)


if __name__ == "__main__":
    main()
