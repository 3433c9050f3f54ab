"""VI teacher sampling: ``S`` forward passes of a variational network against one batched (vmapped) pass.

For each architecture and each kind of VI layer (``--layers``: bayesian-torch's mean field, the paper's inducing
weights with the official ``ffg_u_cifar100`` settings), a CIFAR zoo network bayesianised as the VI teacher is
(``sgdbound.cifar.teachers.bayesianize``), in eval mode, under ``no_grad``, on ``n`` random images: the time of
``vi_logit_samples_loop`` (the network's own forward, ``S`` times) and of ``vi_logit_samples(...,
method="batched")``, both drawing from the same seed, so the two results agree up to rounding (the largest logit
difference, relative to the largest logit, is printed as a check; untrained networks have large logits). One
process, one torch thread unless ``--threads``; bf16 autocast on CUDA as the teacher runs it (``--precision``).
Each time is the median of ``--repeats`` runs after a warm-up call (full size on CUDA, for cudnn's autotuning;
tiny on the CPU, where it only builds the twin and, for inducing weights, caches the Cholesky factors, as a
teacher's first batch does). The JSON has one result per architecture and kind of layer (key ``layers``).

    python benchmarks/bench_vi.py [--device cuda] [--archs wrn_16_2 resnet18] [--layers inducing] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time

import torch

from sgdbound.cifar.models import build_model
from sgdbound.cifar.teachers import VI_LAYERS, bayesianize
from sgdbound.kd.vi_batch import vi_logit_samples, vi_logit_samples_loop


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int) -> tuple[float, torch.Tensor]:
    times, out = [], None
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def bench(arch: str, samples: int, n: int, device: torch.device, bf16: bool, repeats: int,
          layers: str = "mean_field") -> dict:
    """Loop and batched seconds for one architecture with ``layers`` VI layers, and the largest logit difference
    between the two."""
    torch.manual_seed(0)
    net = bayesianize(build_model(arch, 100), layers=layers).to(device).eval()
    x = torch.randn(n, 3, 32, 32, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def run(method: str, size: int, count: int) -> torch.Tensor:
        torch.manual_seed(1)
        if device.type == "cuda":
            torch.cuda.manual_seed(1)
        with torch.no_grad(), autocast:
            if method == "loop":
                return vi_logit_samples_loop(net, x[:size], count)
            return vi_logit_samples(net, x[:size], count, method="batched")

    warm = (n, samples) if device.type == "cuda" else (2, 2)
    run("loop", *warm)
    run("batched", *warm)
    loop_s, loop = _timed(lambda: run("loop", n, samples), device, repeats)
    batched_s, batched = _timed(lambda: run("batched", n, samples), device, repeats)
    return {"arch": arch, "layers": layers, "samples": samples, "n": n, "device": str(device), "bf16": bf16,
            "repeats": repeats,
            "loop_s": loop_s, "batched_s": batched_s, "ratio": loop_s / batched_s,
            "max_abs_diff": (loop.float() - batched.float()).abs().max().item(),
            "max_abs_logit": loop.float().abs().max().item()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--archs", nargs="+", default=None, help="default: wrn_16_2 (CPU), wrn_16_2 resnet18 (CUDA)")
    parser.add_argument("--layers", nargs="+", choices=VI_LAYERS, default=list(VI_LAYERS),
                        help="kinds of VI layer (default: both)")
    parser.add_argument("--samples", type=int, default=10, help="S (default 10)")
    parser.add_argument("--n", type=int, default=100, help="images per batch (default 100)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="auto: bf16 autocast on CUDA, fp32 on the CPU (as the CIFAR teacher)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs, median reported (default 5 CUDA, 1 CPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--json", metavar="PATH", help="write the results there")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bf16 = args.precision == "bf16" or (args.precision == "auto" and device.type == "cuda")
    archs = args.archs or (["wrn_16_2", "resnet18"] if device.type == "cuda" else ["wrn_16_2"])
    repeats = args.repeats or (5 if device.type == "cuda" else 1)
    results = []
    for arch in archs:
        for layers in args.layers:
            r = bench(arch, args.samples, args.n, device, bf16, repeats, layers)
            results.append(r)
            print(f"vi_samples {arch} {layers} S={r['samples']} n={r['n']} ({r['device']}, "
                  f"{'bf16' if bf16 else 'fp32'}): "
                  f"loop {r['loop_s']:.3f} s, batched {r['batched_s']:.3f} s, ratio {r['ratio']:.2f} x "
                  f"(max |loop - batched| / max |logit| = {r['max_abs_diff'] / r['max_abs_logit']:.1e})", flush=True)
    if args.json:
        meta = {"torch": torch.__version__, "python": platform.python_version(), "threads": args.threads,
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
