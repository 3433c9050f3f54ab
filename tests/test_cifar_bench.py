"""The GPU benchmark's CPU smoke path runs end to end and reports both loops and the pipeline (tiny nets); the
inducing-VI stability script's smoke run records its recipe and diagnostics."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def test_bench_gpu_smoke_runs_on_cpu(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    results = bench.main(["--smoke", "--device", "cpu", "--teacher", "wrn_16_1", "--student", "wrn_16_1",
                          "--batch-size", "2", "--n-train", "8", "--steps", "1", "--warmup", "0",
                          "--pipeline-teachers", "deterministic", "vi", "--json", str(out)])
    assert json.loads(out.read_text())["speedup"] == results["speedup"] > 0
    assert results["baseline"]["images_per_s"] > 0 and results["fast"]["images_per_s"] > 0
    assert [run["teacher_kind"] for run in results["pipeline"]] == ["deterministic", "vi"]
    for run in results["pipeline"]:
        assert len(run["epoch_seconds"]) == 2 and run["images_per_s"] == 8 / run["epoch_seconds"][-1]
        assert run["speedup"] == run["images_per_s"] / results["baseline"]["images_per_s"]
    printed = capsys.readouterr().out
    assert "baseline" in printed and "pipeline (vi teacher)" in printed


@pytest.mark.slow
def test_inducing_stability_smoke_runs_and_records_the_recipe(tmp_path, capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "inducing_stability.py"
    spec = importlib.util.spec_from_file_location("inducing_stability", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "stability.json"
    assert script.main(["--quick", "--epochs", "4", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["complete"] and len(result["vi"]) == len(result["det"]) == 4
    # the official recipe: NLL only for the first half, then the KL weight ramps in
    assert [row["kl_weight"] for row in result["vi"][:2]] == [0.0, 0.0] and result["vi"][-1]["kl_weight"] > 0
    stability = result["stability"]
    assert stability["cholesky_calls"] > 0 and stability["cholesky_failed"] == 0
    assert stability["vi_nonfinite_loss_steps"] == stability["vi_nonfinite_grad_steps"] == 0
    for model in ("det", "S=1", "S=10"):
        assert 0 <= result["final"][model]["ece"] <= 1 and result["final"][model]["acc"] > 0.1  # 10 classes
    assert "VI S=10" in capsys.readouterr().out
