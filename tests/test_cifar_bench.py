"""The GPU benchmark's CPU smoke path runs end to end and reports both loops and the pipeline (tiny nets)."""

import importlib.util
import json
from pathlib import Path

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
