"""Speed and memory benchmarks (``make bench``).

Each benchmark is a function registered in ``BENCHMARKS``; it returns a dict with at least ``value`` (the
measured figure), ``unit``, ``goal`` (a readable target), ``ok`` (whether the goal is met) and ``detail``
(how it was measured). Run all with ``python benchmarks/bench.py``, one with ``--only NAME``; ``--list``
names them; ``--threads N`` fixes torch's thread count (both sides of a ratio run with the same setting).
One line is printed per benchmark; the exit status is 1 when a goal is missed (``--no-fail`` keeps
it 0). To add a benchmark, write a function returning such a dict and append ``("name", function)`` to
``BENCHMARKS``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from sgdbound.data import GaussianMixture
from sgdbound.models import MLP
from sgdbound.targets import OneHot
from sgdbound.theory import predicted_noise

# The settings: the official notebook's network 30-128-128-5 in float32.
DIM, CLASSES, HIDDEN = 30, 5, (128, 128)
FAST_SAMPLES, LOOP_SAMPLES, MEMORY_SAMPLES = 10_000, 500, 100_000
SPEEDUP_GOAL, MEMORY_GOAL_GIB = 50.0, 2.0


def _setting(n: int, seed: int = 0):
    """The MLP student and ``n`` standardised samples of the reference problem (float32)."""
    problem = GaussianMixture.reference(seed=seed).standardized()
    sample = problem.sample(n, seed=seed + 1, dtype=torch.float32)
    torch.manual_seed(seed)
    model = MLP(DIM, CLASSES, hidden=HIDDEN, activation="relu")
    return model, sample


def loop_predicted_noise(model: torch.nn.Module, x: torch.Tensor, bcp: torch.Tensor) -> float:
    """The baseline: one-hot ``(1/n) Σ_i tr(C_i G_i)`` with ``g_k`` from one ``torch.autograd.grad`` per
    sample and class (what one writes without ``torch.func``)."""
    params = list(model.parameters())
    total = 0.0
    for i in range(x.shape[0]):
        log_q = torch.log_softmax(model(x[i:i + 1])[0], dim=0)
        rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(log_q[k], params, retain_graph=True)])
                for k in range(log_q.shape[0])]
        g = torch.stack(rows)
        gram = g @ g.T
        p = bcp[i]
        cov = torch.diag(p) - torch.outer(p, p)
        total += float((cov * gram).sum())
    return total / x.shape[0]


def bench_predicted_noise_speed() -> dict:
    model, sample = _setting(FAST_SAMPLES)
    predicted_noise(model, sample.x[:64], sample.bcp[:64], OneHot())  # warm-up (vmap tracing, allocator)
    start = time.perf_counter()
    fast = predicted_noise(model, sample.x, sample.bcp, OneHot())
    fast_s = time.perf_counter() - start
    loop_predicted_noise(model, sample.x[:5], sample.bcp[:5])  # warm-up
    start = time.perf_counter()
    loop = loop_predicted_noise(model, sample.x[:LOOP_SAMPLES], sample.bcp[:LOOP_SAMPLES])
    loop_s = (time.perf_counter() - start) * FAST_SAMPLES / LOOP_SAMPLES
    # the two must compute the same quantity (on the loop's subset)
    check = predicted_noise(model, sample.x[:LOOP_SAMPLES], sample.bcp[:LOOP_SAMPLES], OneHot())
    agree = abs(check - loop) <= 1e-4 * abs(loop)
    ratio = loop_s / fast_s
    return {
        "value": ratio,
        "unit": "x",
        "goal": f">= {SPEEDUP_GOAL:g}x",
        "ok": ratio >= SPEEDUP_GOAL and agree,
        "detail": (f"predicted_noise {fast_s:.2f} s on {FAST_SAMPLES} samples; per-sample per-class autograd loop "
                   f"timed on {LOOP_SAMPLES} samples and scaled linearly x{FAST_SAMPLES // LOOP_SAMPLES} to "
                   f"{loop_s:.1f} s; MLP {DIM}-{'-'.join(map(str, HIDDEN))}-{CLASSES} float32, "
                   f"{torch.get_num_threads()} threads; values agree: {agree} (sigma2 = {fast:.6g})"),
    }


def _memory_child() -> None:
    """Run in a fresh process: ``predicted_noise`` on MEMORY_SAMPLES samples; print the peak RSS."""
    model, sample = _setting(MEMORY_SAMPLES)
    start = time.perf_counter()
    value = predicted_noise(model, sample.x, sample.bcp, OneHot())
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"peak_gib": peak_kib / 2**20, "seconds": seconds, "sigma2": value}))


def bench_predicted_noise_memory() -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", "memory"], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    peak = result["peak_gib"]
    return {
        "value": peak,
        "unit": "GiB",
        "goal": f"<= {MEMORY_GOAL_GIB:g} GiB",
        "ok": peak <= MEMORY_GOAL_GIB,
        "detail": (f"peak RSS (getrusage ru_maxrss) of a fresh process running predicted_noise on {MEMORY_SAMPLES} "
                   f"samples, whole process including Python and torch; {result['seconds']:.1f} s"),
    }


BENCHMARKS: list[tuple[str, Callable[[], dict]]] = [
    ("predicted_noise_speed", bench_predicted_noise_speed),
    ("predicted_noise_memory", bench_predicted_noise_memory),
]
CHILDREN = {"memory": _memory_child}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=[name for name, _ in BENCHMARKS], help="run one benchmark")
    parser.add_argument("--list", action="store_true", help="name the benchmarks and exit")
    parser.add_argument("--no-fail", action="store_true", help="exit 0 even when a goal is missed")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        CHILDREN[args.child]()
        return 0
    if args.list:
        print("\n".join(name for name, _ in BENCHMARKS))
        return 0
    missed = 0
    for name, fn in BENCHMARKS:
        if args.only and name != args.only:
            continue
        result = fn()
        missed += not result["ok"]
        status = "ok" if result["ok"] else "MISSED"
        print(f"{name}: {result['value']:.3g} {result['unit']} (goal {result['goal']}, {status}) -- {result['detail']}",
              flush=True)
    return 1 if missed and not args.no_fail else 0


if __name__ == "__main__":
    sys.exit(main())
