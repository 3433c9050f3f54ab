"""The ``reproduce``, ``simulate`` and ``bound`` commands on tiny settings, through ``sgdbound.cli.main``."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from sgdbound.cli import main
from sgdbound.experiments import SPECS


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_step_size(monkeypatch):
    """Shrink the quick settings of ``step_size`` so a CLI run takes about a second."""
    tiny = {"lrs": (0.016, 0.032), "steps": 400, "replicas": 8, "theory_samples": 2048, "eval_size": 32,
            "record_every": 100, "device": "cpu"}
    monkeypatch.setitem(SPECS, "step_size", dataclasses.replace(SPECS["step_size"], quick=tiny))


def test_bound_from_flags_prints_rate_neighbourhood_step_and_iterations(capsys):
    code = main(["bound", "--mu", "0.1", "--lipschitz", "1", "--lipschitz-max", "2", "--sigma2", "0.5",
                 "--step", "0.25", "--dist0", "1", "--accuracy", "3"])
    out = capsys.readouterr().out
    assert code == 0
    # T3: rate 1 − γμ = 0.975, neighbourhood 2γσ²/μ = 2.5, limit 1/(2ℒ) = 0.25 with ℒ = L_max = 2 (batch 1).
    assert "T3" in out and "0.97500000" in out and "2.5" in out and "0.25" in out
    t3 = next(line for line in out.splitlines() if line.startswith("T3"))
    assert t3.split()[-1] == "28"  # smallest t with 0.975^t + 2.5 <= 3: ln 0.5 / ln 0.975 = 27.4
    t4 = next(line for line in out.splitlines() if line.startswith("T4"))
    assert "not admissible" in t4  # γ = 0.25 exceeds μ/(2Lℒ) = 0.025


def test_bound_exact_bcps_use_t1_and_the_doubled_step(capsys):
    assert main(["bound", "--mu", "0.1", "--smoothness", "2", "--sigma2", "0", "--theorem", "quasi-convex"]) == 0
    t1 = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("T1"))
    assert t1.split().count("0.5") == 2  # step and max step: 1/ℒ


def test_bound_reports_missing_constants(capsys):
    assert main(["bound", "--mu", "0.1", "--smoothness", "2"]) == 2
    assert "--sigma2" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("flags,message", [
    (["--sigma2", "-0.5"], "--sigma2 must be non-negative"),  # was a TypeError traceback
    (["--smoothness", "0"], "--smoothness must be positive"),  # was a ZeroDivisionError
    (["--step", "0"], "--step must be positive"),  # was silently the largest step
    (["--step", "-0.25"], "--step must be positive"),
    (["--mu", "-1"], "--mu must be positive"),
    (["--dist0", "-1"], "--dist0 must be non-negative"),
    (["--mu", "3"], "cannot exceed the expected smoothness"),
])
def test_bound_refuses_bad_constants_in_one_line(flags, message, capsys):
    base = {"--mu": "0.1", "--smoothness": "2", "--sigma2": "0.5"}
    argv = ["bound"] + [part for key, value in (base | dict(zip(flags[::2], flags[1::2]))).items()
                        for part in (key, value)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bound_computes_constants_for_a_builtin_problem(capsys):
    assert main(["bound", "--problem", "teacher", "--target", "onehot"]) == 0
    out = capsys.readouterr().out
    assert "mu=" in out and "T3" in out and "T4" in out


def test_simulate_runs_a_toml_config_and_writes_json(tmp_path, capsys):
    config = tmp_path / "run.toml"
    out = tmp_path / "sim.json"
    config.write_text('problem = "teacher"\n[simulate]\nnoise = ["onehot", "exact"]\nlr = 0.02\nsteps = 200\n'
                      'replicas = 8\nrecord_every = 50\neval_size = 32\ntheory_samples = 2048\ndevice = "cpu"\n'
                      'dtype = "float64"\n')
    assert main(["simulate", "--config", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "OneHot()" in printed and "Exact()" in printed
    payload = json.loads(out.read_text())
    assert len(payload["trajectories"]) == 2 and payload["sgdbound_version"]
    assert payload["trajectories"][1]["plateau"]["dist_sq"] < 1e-20


def test_simulate_rejects_bad_configs(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("problem = [unclosed\n")
    assert main(["simulate", "--config", str(bad)]) == 2
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('problem = "teacher"\nsteps = 3\n')
    assert main(["simulate", "--config", str(unknown)]) == 2
    assert "unknown top-level key" in capsys.readouterr().err
    good = tmp_path / "good.toml"
    good.write_text('problem = "teacher"\n')
    assert main(["simulate", "--config", str(good), "--threads", "0"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err


def test_reproduce_writes_results_figures_and_summary_then_resumes(tiny_step_size, tmp_path, capsys):
    args = ["reproduce", "--quick", "--only", "step_size", "--out", str(tmp_path / "res"), "--figures",
            str(tmp_path / "fig")]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "log-log slope of plateau vs γ" in captured.out and "experiment" in captured.out
    result = json.loads((tmp_path / "res" / "step_size.json").read_text())
    assert result["config"]["steps"] == 400 and result["quick"] is True
    assert {"measured", "theory", "summary", "git_commit", "sgdbound_version", "seed"} <= set(result)
    assert (tmp_path / "fig" / "step_size.png").stat().st_size > 0
    assert (tmp_path / "fig" / "step_size.pdf").stat().st_size > 0
    assert (tmp_path / "res" / "summary.md").read_text().startswith("| experiment")
    # Same configuration: reused, not recomputed.
    assert main([*args, "--no-figures"]) == 0
    assert "reused" in capsys.readouterr().err
    # --force recomputes; a changed configuration (--seed) recomputes too.
    assert main([*args, "--no-figures", "--force"]) == 0
    assert "reused" not in capsys.readouterr().err
    assert main([*args, "--no-figures", "--seed", "1"]) == 0
    assert "reused" not in capsys.readouterr().err
    assert json.loads((tmp_path / "res" / "step_size.json").read_text())["config"]["seed"] == 1


def test_reproduce_rejects_unknown_experiments(capsys):
    assert main(["reproduce", "--only", "nope"]) == 2
    assert "unknown experiment" in capsys.readouterr().err


def test_the_shipped_example_config_is_the_help_example():
    from pathlib import Path

    import tomllib

    from sgdbound.cli.sim_commands import _EXAMPLE_TOML

    shipped = Path(__file__).resolve().parents[1] / "examples" / "run.toml"
    assert tomllib.loads(shipped.read_text()) == tomllib.loads(_EXAMPLE_TOML)
