"""Simulator throughput against the plain single-run PyTorch loop, in one process.

Baseline: ``nn.Module`` + ``torch.optim.SGD(momentum=0.9)``, batch 1, one fresh example per step (drawn with the
same device sampler), cross-entropy to a one-hot target. Simulator: ``simulate(..., momentum=0.9)`` with R
replicas; steady-state throughput from the difference of two run lengths (set-up excluded). Prints replica-steps
per second and the ratio, plus how the run compares with a machine limit: Gaussian draws for the streaming linear
student; for the MLP, the memory-bandwidth limit of a step that only reads and writes parameters and momentum from
memory once (the simulator's replica groups run blocks of steps in cache instead; what is left is compute and
per-kernel overhead).

    python benchmarks/bench_sim.py [--threads N] [--device cpu|cuda] [--only linear|mlp]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from sgdbound.data import GaussianMixture
from sgdbound.models import MLP, LinearSoftmax
from sgdbound.sim import simulate
from sgdbound.sim.sampling import make_sampler
from sgdbound.targets import OneHot


def baseline_loop(problem, model: torch.nn.Module, steps: int, device: torch.device) -> float:
    """Steps per second of the plain loop."""
    sampler = make_sampler(problem, device, torch.float32)
    gen = torch.Generator(device=device).manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def run(n):
        for _ in range(n):
            x, y, _ = sampler.draw((1,), gen)
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    run(50)
    start = time.perf_counter()
    run(steps)
    return steps / (time.perf_counter() - start)


def simulator_rate(problem, replicas: int, steps: int, device: torch.device, **kwargs) -> float:
    """Replica-steps per second of ``simulate`` in steady state."""

    def timed(n):
        start = time.perf_counter()
        simulate(problem, noise=OneHot(), lr=1e-3, steps=n, replicas=replicas, momentum=0.9, eval_size=0,
                 record_every=n, device=device, theory_samples=2048, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    timed(5)
    short, long = timed(steps), timed(2 * steps)
    return replicas * steps / max(long - short, 1e-9)


def memory_bandwidth(device: torch.device) -> float:
    """Bytes per second of an in-place scale of a 256 MiB tensor (read + write)."""
    a = torch.ones(64 * 2**20, device=device)
    a.mul_(1.0)
    start = time.perf_counter()
    for _ in range(10):
        a.mul_(1.0000001)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 10 * 2 * a.numel() * 4 / (time.perf_counter() - start)


def bench_linear(device: torch.device, replicas: int = 4096) -> dict:
    problem = GaussianMixture.reference(seed=0).standardized()
    base = baseline_loop(problem, LinearSoftmax(problem.dim, problem.num_classes).to(device), 2000, device)
    sim = simulator_rate(problem, replicas, 200 if device.type == "cpu" else 2000, device)
    # the floor: drawing one Gaussian input per replica and step
    gen = torch.Generator(device=device).manual_seed(0)
    start = time.perf_counter()
    for _ in range(100):
        torch.randn(replicas, problem.dim, generator=gen, device=device)
    draw_rate = 100 * replicas / (time.perf_counter() - start)
    return {"name": "sim_linear", "replicas": replicas, "baseline_steps_per_s": base, "sim_replica_steps_per_s": sim,
            "ratio": sim / base, "goal": 200, "gaussian_draw_limit_per_s": draw_rate,
            "fraction_of_draw_limit": sim / draw_rate}


def bench_mlp(device: torch.device, replicas: int = 256) -> dict:
    problem = GaussianMixture.reference(seed=0).standardized()
    model = MLP(problem.dim, problem.num_classes, hidden=(128, 128)).to(device)
    base = baseline_loop(problem, model, 1000, device)
    sim = simulator_rate(problem, replicas, 128 if device.type == "cpu" else 400, device, student="mlp",
                         init="random", hidden=(128, 128))
    params = sum(p.numel() for p in model.parameters())
    # a step that reads and writes parameters and momentum from memory (4-byte floats) every step can do at most
    # bandwidth / (16 params) replica-steps per second; 256 replicas' state (43 MB) exceeds the CPU caches
    streaming_limit = memory_bandwidth(device) / (4 * 4 * params)
    return {"name": "sim_mlp", "replicas": replicas, "baseline_steps_per_s": base, "sim_replica_steps_per_s": sim,
            "ratio": sim / base, "goal": 20, "streaming_limit_replica_steps_per_s": streaming_limit,
            "fraction_of_streaming_limit": sim / streaming_limit}


BENCHMARKS = {"linear": bench_linear, "mlp": bench_mlp}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=sorted(BENCHMARKS))
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = []
    for name, bench in BENCHMARKS.items():
        if args.only and name != args.only:
            continue
        res = bench(device)
        res.update(threads=torch.get_num_threads(), device=str(device))
        results.append(res)
        extra = {k: v for k, v in res.items() if k.startswith("fraction")}
        print(f"{res['name']:<12} R={res['replicas']:<5} baseline {res['baseline_steps_per_s']:>10,.0f} steps/s   "
              f"simulator {res['sim_replica_steps_per_s']:>12,.0f} replica-steps/s   ratio {res['ratio']:>7.1f}x "
              f"(goal {res['goal']}x)   " + "  ".join(f"{k} {v:.2f}" for k, v in extra.items()), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
