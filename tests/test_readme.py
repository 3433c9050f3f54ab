"""The README's Python quickstart runs as written, and what its comments claim holds (numbers included)."""

import ast
import re
from pathlib import Path

import pytest
import torch

from sgdbound import theory
from sgdbound.targets import Dirichlet, OneHot

README = Path(__file__).resolve().parents[1] / "README.md"


def _quickstart() -> str:
    text = README.read_text()
    section = text[text.index("## Quickstart (Python)"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _claimed(pattern: str, code: str) -> float:
    return float(re.search(pattern, code).group(1))


@pytest.mark.slow
def test_python_quickstart_runs_and_its_comments_hold():
    code = _quickstart()
    namespace: dict = {}
    threads = torch.get_num_threads()
    try:
        exec(compile(code, str(README), "exec"), namespace)  # the block sets one thread: restored below
    finally:
        torch.set_num_threads(threads)
    student, sample, traj = namespace["student"], namespace["sample"], namespace["traj"]
    x, bcp = sample.x, sample.bcp

    assert theory.interpolation_gap(student, x, bcp) < 1e-20
    onehot = theory.predicted_noise(student, x, bcp, OneHot())
    dirichlet = theory.predicted_noise(student, x, bcp, Dirichlet(5.0))
    assert dirichlet == pytest.approx(onehot / 6, rel=1e-6)  # Dir(αP) scales the one-hot noise by 1/(1+α)
    assert round(onehot, 2) == _claimed(r"σ² = ([0-9.]+) with one-hot", code)
    assert round(dirichlet, 3) == _claimed(r"σ² = ([0-9.]+) = ", code)
    assert theory.optimal_lambda(student, x, bcp, Dirichlet(5.0)).lam == pytest.approx(6 / 7, rel=1e-9)

    hot, dir5, exact = traj
    for t in (hot, dir5):
        assert t.plateau() == pytest.approx(t.predicted_plateau(), rel=0.10)  # Lyapunov transient
        assert t.predicted_plateau() < t.predicted_stationary  # not yet stationary: said in the README
        assert t.plateau() < t.bound.neighborhood and t.config["lr"] <= t.bound.max_step  # Theorem 3
    assert dir5.plateau() / hot.plateau() == pytest.approx(1 / 6, rel=0.10)
    assert exact.plateau() < 1e-10 and exact.predicted_plateau() == 0.0

    # the printed result in the comment: three significant figures (1% here, bit-exact on one CPU build)
    printed = ast.literal_eval(re.search(r"# (\[\(.*?\)\])", code).group(1))
    measured = [(t.plateau(), t.predicted_plateau(), t.bound.neighborhood) for t in traj]
    for row, values in zip(printed, measured, strict=True):
        assert values == pytest.approx(row, rel=0.01, abs=1e-12)
    stationary = _claimed(r"`predicted_stationary`, its limit,\s+is ([0-9.]+)", README.read_text())
    assert round(hot.predicted_stationary, 3) == stationary
    assert round(hot.bound.max_step, 4) == _claimed(r"`bound.max_step`,\s+([0-9.]+) here", README.read_text())


def test_cli_quickstart_bound_line_prints_what_its_comment_says(capsys):
    """The command-line quickstart's ``bound`` line, run as written; its comment's step count is the closed form
    ``⌈ln(1/(acc − nbhd) · dist0⁻¹) / ln(1 − γμ)⌉`` = ⌈ln 0.05 / ln 0.995⌉ = 598."""
    import math
    import shlex

    from sgdbound.cli import main

    text = README.read_text()
    section = text[text.index("## Quickstart (command line)"):]
    line = next(l for l in section.splitlines() if l.startswith("sgdbound bound "))
    command, comment = line.split("#", 1)
    claimed = int(re.search(r"T3: ([\d,]+) steps", comment).group(1).replace(",", ""))
    assert claimed == math.ceil(math.log((1 - 0.5) / 10) / math.log(1 - 0.05 * 0.1))
    assert main(shlex.split(command)[1:]) == 0
    row = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("T3"))
    assert row.split()[-1].replace(",", "") == str(claimed)
