"""``sgdbound distill`` and ``sgdbound report`` on tiny settings, config files, bad input, the study path."""

from __future__ import annotations

import json

import pytest

from sgdbound.cli import main
from sgdbound.kd.study import small_data_study

TINY_FLAGS = ["--dataset", "mixture", "--teacher-net", "mlp", "--student", "mlp", "--epochs", "2",
              "--teacher-epochs", "1", "--batch-size", "100", "--last", "2"]


@pytest.mark.slow
def test_distill_sweep_then_report(tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["distill", *TINY_FLAGS, "--teacher", "deterministic", "mc_dropout", "--lam", "0", "0.5", "--seeds", "0",
            "1", "--beta", "1", "0.1", "--samples", "1", "4", "--out", str(out)]
    assert main(argv) == 0
    runs = sorted(out.glob("*/result.json"))
    assert len(runs) == 2 * 2 * (1 + 2 * 2)  # seeds × β × (λ=0 once + teachers × S)
    assert main(argv + ["--resume"]) == 0  # finished runs are skipped
    assert "[20/20]" in capsys.readouterr().out
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    printed = capsys.readouterr().out
    assert "| mixture | 0.1 |" in printed and "mc_dropout" in printed and " ± " in printed
    for name in ("results.csv", "summary.md", "kd_accuracy_by_teacher.png", "kd_convergence_noise.png",
                 "kd_few_shot.png", "kd_accuracy_vs_samples.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
    header = (tmp_path / "rep" / "results.csv").read_text().splitlines()[0]
    assert "git_commit" in header and "convergence_noise" in header


def test_config_file_with_flag_override(tmp_path):
    config = tmp_path / "kd.toml"
    config.write_text('dataset = "mixture"\nteacher_net = "mlp"\nstudent = "mlp"\nepochs = 1\nteacher_epochs = 1\n'
                      'teacher = ["ensemble"]\nlam = [0.5]\nseed = [3]\nt_teacher = [2.0]\nt_student = [2.0]\n'
                      f'convention = "hinton"\nout = "{tmp_path / "from_file"}"\n'
                      '[teacher_options.ensemble]\nmembers = 2\n')
    assert main(["distill", "--config", str(config), "--samples", "2"]) == 0
    (result,) = (tmp_path / "from_file").glob("*/result.json")
    payload = json.loads(result.read_text())["config"]
    assert payload["seed"] == 3 and payload["samples"] == 2 and payload["teacher_options"] == {"members": 2}
    assert payload["convention"] == "hinton"


@pytest.mark.parametrize("argv,message", [
    (["--teacher", "gp"], "unknown teacher 'gp'; valid: deterministic, vi, laplace, mc_dropout, ensemble"),
    (["--dataset", "cifar100"], "dataset 'cifar100' needs data_root"),
    (["--lam", "1.5"], "lam must lie in [0, 1]"),
    (["--lam", "-0.1"], "lam must lie in [0, 1]"),
    (["--t-teacher", "0"], "t_teacher must be a positive"),
    (["--t-student", "-1"], "t_student must be a positive"),
    (["--samples", "0"], "samples (S) must be an integer >= 1"),
    (["--beta", "2"], "beta"),
    (["--convention", "hinton", "--t-teacher", "2", "--t-student", "1"], "one temperature"),
    (["--config", "/nonexistent/kd.toml"], "does not exist"),
    (["--threads", "0"], "--threads must be >= 1"),
])
def test_bad_input_is_refused_before_any_run(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    assert main(["distill", *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_report_finds_runs_at_any_depth_once(tmp_path, capsys):
    # `distill --out runs/a` then `report runs/`: the README's quickstart; a copied run folder counts once
    import shutil

    from sgdbound.kd.report import load_results

    for name, lam in (("a", "0.5"), ("b", "1")):
        assert main(["distill", *TINY_FLAGS, "--teacher", "deterministic", "--lam", lam, "--seeds", "0",
                     "--out", str(tmp_path / "runs" / name)]) == 0
    (run,) = (tmp_path / "runs" / "a").glob("*/result.json")
    shutil.copytree(run.parent, tmp_path / "runs" / "copies" / run.parent.name)
    results = load_results(tmp_path / "runs")
    assert sorted(r.config["lam"] for r in results) == [0.5, 1.0]
    capsys.readouterr()
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    assert len((tmp_path / "rep" / "results.csv").read_text().splitlines()) == 1 + 2


def test_report_on_missing_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_small_study_path_on_tiny_settings(tmp_path):
    result = small_data_study(tmp_path / "study", seeds=2, figures=tmp_path / "fig", doc=tmp_path / "doc.md",
                              dataset="mixture", teacher_net="mlp", epochs=2, min_steps=0, teacher_epochs=1,
                              teacher_min_steps=0, samples=2, axes={"beta": [1.0, 0.1]})
    assert result.runs == 2 * 2 * 6
    text = (tmp_path / "doc.md").read_text()
    assert "wall time" in text and "| mixture | 0.1 |" in text and "ensemble" in text
    assert (tmp_path / "fig" / "kd_few_shot.png").exists() and not (tmp_path / "fig" / "results.csv").exists()
    assert (tmp_path / "study" / "results.csv").exists()


def test_teachers_synthetic_command(tmp_path, capsys):
    out = tmp_path / "synthetic.json"
    argv = ["teachers-synthetic", "--teacher", "deterministic", "mc_dropout", "--n-train", "300", "--n-eval", "100",
            "--epochs", "2", "-S", "3", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| mc_dropout |" in printed and "measured σ² at θ*" in printed
    assert json.loads(out.read_text())["rows"][0]["teacher"] == "deterministic"
    assert main(["teachers-synthetic", "--teacher", "gp"]) == 2
    assert "unknown teacher 'gp'" in capsys.readouterr().err
    assert main(["teachers-synthetic", "--threads", "-1"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err


def test_sweep_is_its_own_command_with_the_distill_flags_and_help(capsys):
    from sgdbound.cli import build_parser

    parser = build_parser()
    for name in ("distill", "sweep"):
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
        out = capsys.readouterr().out
        assert out.startswith(f"usage: sgdbound {name} ")
        assert "--dataset DATASET" in out and "cifar100" in " ".join(out.split())


def test_report_filters_by_run_id_and_marks_subset_teachers(tmp_path):
    """A study reports its own runs only (its folder may hold runs of an older grid); a few-shot run whose
    teacher saw only the subset (``teacher_data="subset"``, or a result written before the field) is labelled
    apart, so it never averages with the full-data teacher's runs."""
    import json

    from sgdbound.kd.report import load_results, run_rows, write_report

    for data in ("full", "subset"):
        assert main(["distill", *TINY_FLAGS, "--teacher", "deterministic", "--lam", "0.5", "--seeds", "0",
                     "--beta", "0.5", "--teacher-data", data, "--out", str(tmp_path / "runs")]) == 0
    results = load_results(tmp_path / "runs")
    labels = sorted(row["teacher"] for row in run_rows(results))
    assert labels == ["deterministic", "deterministic (subset)"]
    old = json.loads(next((tmp_path / "runs").glob("*/result.json")).read_text())["config"]
    old.pop("teacher_data")
    from sgdbound.kd.report import _label

    assert _label(old) == "deterministic (subset)"
    keep = {results[0].run_id}
    report = write_report(tmp_path / "runs", tmp_path / "rep", run_ids=keep)
    assert len((tmp_path / "rep" / "results.csv").read_text().splitlines()) == 1 + 1
    assert report.table.count("| deterministic") == 1
