#!/usr/bin/env bash
# Prepared GPU check for issue 5 (one GPU, under 8 minutes): simulator throughput with 4096 replicas, then
# CIFAR-format student-training throughput (ResNet-50 teacher -> ResNet-18 student) of the official loop against
# the fast path and against sgdbound's own training run (the pipeline: deterministic, VI and Laplace teachers),
# eager and under torch.compile, then a short real-shape distillation run through the CLI
# (`sgdbound distill --preset kd-resnet50-resnet18-{deterministic,laplace,vi}` on fake CIFAR-format data: 1 teacher
# epoch, 2 student epochs). Every number ends up in one file, $OUT/gpu_check.json (the pieces stay beside it:
# sim.json, cifar.json, cifar_compiled.json, vi.json, distill.json, and a log per step).
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh        # OUT defaults to results/gpu_check
#   On the lent GPU machine (torch there, laplace-torch / bayesian-torch not): first, here,
#   `bash benchmarks/gpu_wheels.sh`, then run the check with `carry: [".whl"]`; the wheels go to /tmp/site.
#   DEVICE=cpu SMOKE=1 bash benchmarks/gpu_check.sh    # dry run of the script itself on a CPU (no simulator step)
#
# Each step has its own time limit and a failed or timed-out step is recorded, not fatal. Limits add up to 575 s;
# expected on one H200: well under 8 (each distillation step is process start-up plus seconds of GPU work).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-results/gpu_check}"
mkdir -p "$OUT"
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then  # wheels carried by benchmarks/gpu_wheels.sh
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)"
START=$(date +%s)
DEVICE="${DEVICE:-cuda}"
EXTRA=()
if [ -n "${SMOKE:-}" ]; then EXTRA=(--smoke --teacher wrn_16_2 --student wrn_16_1); fi

step() {  # step NAME LIMIT_SECONDS command...
  local name=$1 limit=$2; shift 2
  local t0; t0=$(date +%s)
  timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$(( $(date +%s) - t0 ))" | tee -a "$OUT/steps.txt"
  tail -n 3 "$OUT/$name.log"
}

: >"$OUT/steps.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$OUT/gpu.txt" 2>&1 || true
if [ -z "${SMOKE:-}" ]; then
  step sim 100 "$PY" benchmarks/bench_sim.py --device "$DEVICE" --json "$OUT/sim.json"
  STEPS=(--steps 100 --warmup 10)
else
  STEPS=()
fi
step cifar 140 "$PY" benchmarks/bench_gpu.py --device "$DEVICE" "${STEPS[@]}" "${EXTRA[@]}" \
  --pipeline-teachers deterministic vi laplace --json "$OUT/cifar.json"
# compiled with mode reduce-overhead: inductor plus CUDA graphs (where inductor finds the graph safe to capture;
# otherwise it falls back to plain compiled kernels and says so in the log)
step cifar_compiled 150 "$PY" benchmarks/bench_gpu.py --device "$DEVICE" "${STEPS[@]}" "${EXTRA[@]}" --compile reduce-overhead \
  --json "$OUT/cifar_compiled.json"
# VI teachers (mean-field and the paper's inducing-weight layers): S = 10 weight draws as 10 passes against one
# batched (vmapped) pass, and their agreement
VI_ARGS=(); if [ -n "${SMOKE:-}" ]; then VI_ARGS=(--archs wrn_16_1 --n 10 --samples 3); fi
step vi 50 "$PY" benchmarks/bench_vi.py --device "$DEVICE" "${VI_ARGS[@]}" --json "$OUT/vi.json"

# short real-shape distillation through the CLI: the paper's pair on 5,000 fake training images (SMOKE: tiny nets)
if [ -z "${SMOKE:-}" ]; then
  N_TRAIN=5000; N_TEST=1000; NETS=()
else
  N_TRAIN=200; N_TEST=100; NETS=(--teacher-net wrn_16_1 --student wrn_16_1)
fi
"$PY" -c "from sgdbound.cifar import write_fake_cifar100 as w; w('$OUT/fake_cifar', $N_TRAIN, $N_TEST)"
rm -rf "$OUT/distill"
for KIND in deterministic laplace vi; do
  step "distill_$KIND" 45 "$PY" -c 'import sys; from sgdbound.cli import main; sys.exit(main(sys.argv[1:]))' distill --preset "kd-resnet50-resnet18-$KIND" \
    --data-root "$OUT/fake_cifar" --device "$DEVICE" --epochs 2 --teacher-epochs 1 "${NETS[@]}" --out "$OUT/distill"
done
"$PY" - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
runs = []
for path in sorted((out / "distill").glob("*/result.json")):
    r = json.loads(path.read_text())
    images = r["train_size"] * r["epochs_run"]
    runs.append({"run": r["run_id"], "teacher": r["config"]["teacher"], "teacher_net": r["config"]["teacher_net"],
                 "student": r["config"]["student"], "seconds": r["seconds"], "student_images": images,
                 "student_images_per_s_incl_teacher_and_eval": images / r["seconds"], "test_acc": r["test_acc"]})
(out / "distill.json").write_text(json.dumps(runs, indent=2))
PY

"$PY" - "$OUT" "$START" <<'PY'
import json, pathlib, sys, time
out, start = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def load(name):
    path = out / name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return {"missing": f"{name}: {error}"}
steps = {}
for line in (out / "steps.txt").read_text().splitlines():
    name, rc, seconds = line.split()
    steps[name] = {"rc": int(rc.split("=")[1]), "seconds": int(seconds.split("=")[1])}
summary = {"gpu": (out / "gpu.txt").read_text().strip() if (out / "gpu.txt").exists() else None,
           "steps": steps, "total_seconds": int(time.time()) - start,
           "sim": load("sim.json"), "cifar": load("cifar.json"), "cifar_compiled": load("cifar_compiled.json"),
           "vi": load("vi.json"),
           "distill": load("distill.json")}
(out / "gpu_check.json").write_text(json.dumps(summary, indent=2))
for key in ("cifar", "cifar_compiled"):
    r = summary[key]
    if "baseline" in r:
        best = r.get("fast_compiled", r["fast"])["images_per_s"]
        print(f"{key}: baseline {r['baseline']['images_per_s']:.0f} img/s, fast {r['fast']['images_per_s']:.0f}, "
              f"best {best:.0f} img/s ({best / r['baseline']['images_per_s']:.2f}x)")
        for run in r.get("pipeline", []):
            print(f"{key}: pipeline, {run['teacher_kind']} teacher: {run['images_per_s']:.0f} img/s "
                  f"({run['speedup']:.2f}x)")
for r in summary["vi"].get("results", []):
    print(f"vi samples {r['arch']} {r.get('layers', 'mean_field')} S={r['samples']} n={r['n']}: loop {r['loop_s']:.3f} s, batched "
          f"{r['batched_s']:.3f} s ({r['ratio']:.2f}x)")
for r in summary["sim"] if isinstance(summary["sim"], list) else []:
    print(f"{r['name']}: ratio {r['ratio']:.1f}x (goal {r['goal']}x)")
for r in summary["distill"] if isinstance(summary["distill"], list) else []:
    print(f"distill {r['teacher']} {r['teacher_net']}->{r['student']}: {r['seconds']:.1f} s "
          f"({r['student_images_per_s_incl_teacher_and_eval']:.0f} student img/s incl. teacher fit, eval)")
print(f"wrote {out / 'gpu_check.json'} after {summary['total_seconds']} s")
PY
