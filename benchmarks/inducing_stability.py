"""Long float32 training of the inducing-weight VI teacher on real data (scikit-learn's digits), on the CPU.

Question. The paper's VI teacher (``sgdbound.cifar.inducing``, official ``ffg_u_cifar100`` settings) has
``M = 128`` inducing rows in every Conv2d (100 in the Linear head), while the layers have ``r = 16…64`` output
channels: ``K = Z Zᵀ + D²`` ``(M, M)`` is rank ``r`` plus ``D² ~ 1e-6``, condition ~1e6 in float32. Is a long
float32 run stable, what do ``λ``, ``D``, ``s_U`` and the KL do, and does the official recipe give a teacher at
least as accurate and better calibrated than the deterministic net?

Setting. Digits (8×8, 1797 images, 10 classes), a fixed stratified split 1297 train / 500 test
(``random_state=0``), pixels scaled by the training mean and sd, no augmentation. A small CNN with BatchNorm (as
the zoo's ResNets): Conv2d 1→16, 16→32, 32→32 (3×3, no bias), Linear 32→10; so ``r`` = 16, 32, 32, 10 < ``M``,
and ``c = 10 < N = 128`` for the first conv's column Gram matrix.

Algorithm. The recipe of ``sgdbound.cifar.kd.train_teacher_net`` (which needs a CIFAR config and a CIFAR split, so
it is mirrored here, line for line, on digits): Adam lr 1e-3 (``make_optimizer``), batch 100, lr × 0.1 at epoch
``E/2``; (a) the deterministic CNN with cross-entropy; (b) the same CNN through ``inducing_bayesianize(net,
**INDUCING_DEFAULTS)`` with ``CE + w_e · KL / N`` (``N = 1297``), ``w_e = kl_weight(e, E/2, E/4)``: NLL only for
the first half, then the KL weight ramps linearly to 1 over a quarter of the epochs. Both nets see the same
batches. Everything is float32.

Diagnostics per epoch. Train CE, ``KL/N`` (end of epoch), the KL weight; per layer ``λ``, ``min softplus(D)`` of
rows and columns, ``min/max s_U``, the mean diagonal and condition number of ``K_r``, ``K_c`` (``eigvalsh`` in
float64 of the float32 ``K`` as the layer forms it, without the jitter; ``inf`` when its smallest eigenvalue is
≤ 0) and of ``K + jitter``; the Cholesky factorisations: how many needed more than the base jitter
(``jittered_cholesky`` then retries with ``JITTER_RETRIES``: 10×, 100×, 1000×; before that fix such a step
raised), with the layer, side and spectrum of each, how many failed at every jitter, how many factors were
non-finite; steps with a non-finite loss or gradient (skipped, and counted). Test accuracy, NLL and ECE (15 bins)
of the deterministic net and of the VI net in eval mode with ``S = 1`` and ``S = 10`` weight draws (``S = 1`` is
the first of the ten draws; the draws use their own seeded stream, so evaluation does not change training).

    python benchmarks/inducing_stability.py --epochs 1000 --eval-every 4 --json inducing_stability.json
    python benchmarks/inducing_stability.py --quick       # ~1 minute smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sgdbound.cifar import inducing
from sgdbound.cifar.inducing import INDUCING_DEFAULTS, JITTER, inducing_bayesianize, inducing_kl
from sgdbound.cifar.presets import OFFICIAL_OPTIM
from sgdbound.io import provenance, write_json
from sgdbound.kd.bayes_teachers import kl_weight
from sgdbound.kd.metrics import prob_metrics
from sgdbound.kd.train import batches, make_optimizer

N_TEST, EVAL_SAMPLES = 500, 10
BATCH, LR = OFFICIAL_OPTIM.batch_size, OFFICIAL_OPTIM.lr  # 100, 1e-3: the official teachers'


# ------------------------------------------------------------------------------------------------------ data
def load_digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits as ``x_train (1297, 1, 8, 8)``, ``y_train (1297,)``, ``x_test (500, 1, 8, 8)``, ``y_test (500,)``:
    a fixed stratified split (``random_state=0``), float32, standardised by the training pixels' mean and sd."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(bunch.data, bunch.target, test_size=N_TEST, random_state=0,
                                              stratify=bunch.target)
    mean, sd = x_tr.mean(), x_tr.std()

    def images(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((x - mean) / sd, dtype=torch.float32).reshape(-1, 1, 8, 8)

    return images(x_tr), torch.as_tensor(y_tr), images(x_te), torch.as_tensor(y_te)


def build_cnn() -> nn.Sequential:
    """Conv(1→16)–BN–ReLU, Conv(16→32)–BN–ReLU–MaxPool, Conv(32→32)–BN–ReLU–GAP, Linear(32→10)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def epoch_batches(n: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """Index batches of epoch ``epoch`` (a seeded permutation, the last batch short), shared by both nets."""
    return batches(n, BATCH, torch.Generator().manual_seed(seed * 1_000_003 + epoch))


# ------------------------------------------------------------------------------------------ Cholesky monitor
class CholeskyMonitor:
    """Stands in for ``inducing.jittered_cholesky`` and counts what the library's own calls do: the library's
    factorisation (:func:`~sgdbound.cifar.inducing.cholesky_jitter_factor`, same result), with each call that needed
    more than the base jitter (before that fix the layer raised instead) counted as an escalation. ``watch(net)``
    names the layer and the side (row / column Gram matrix) of each escalation in ``events``."""

    def __init__(self, max_events: int = 50):
        self.max_events, self.events = max_events, []
        self.where, self.side, self.epoch = "?", 0, 0
        self.reset()

    def reset(self) -> None:
        self.calls = self.escalated = self.failed = self.nonfinite = 0
        self.max_factor = 1.0

    def watch(self, net: nn.Module) -> None:
        for name, m in net.named_modules():
            if isinstance(m, inducing._InducingLayer):
                m.register_forward_pre_hook(lambda _m, _x, name=name: self._enter(name))

    def _enter(self, name: str) -> None:
        self.where, self.side = name, 0

    def __call__(self, k: torch.Tensor, eps: float | None = None,
                 retries: int = len(inducing.JITTER_RETRIES)) -> torch.Tensor:
        self.calls += 1
        side, self.side = ("row", "col")[min(self.side, 1)], self.side + 1
        try:
            lower, factor = inducing.cholesky_jitter_factor(k, eps, retries)
        except torch.linalg.LinAlgError:
            self.escalated, self.failed = self.escalated + 1, self.failed + 1
            self._event(k, eps, side, None)
            raise
        if factor > 1.0:
            self.escalated += 1
            self.max_factor = max(self.max_factor, factor)
            self._event(k, eps, side, factor)
        if not bool(torch.isfinite(lower).all()):
            self.nonfinite += 1
        return lower

    def _event(self, k: torch.Tensor, eps: float | None, side: str, factor: float | None) -> None:
        if len(self.events) >= self.max_events:
            return
        base = JITTER.get(k.dtype, 1e-6) if eps is None else eps
        eig = torch.linalg.eigvalsh(k.detach().double())
        self.events.append({"epoch": self.epoch, "layer": self.where, "side": side, "n": k.shape[-1],
                            "k_mean_diag": k.diagonal().mean().item(), "eig_min": eig[0].item(),
                            "eig_max": eig[-1].item(), "base_jitter": base * k.diagonal().mean().item(),
                            "factor": factor})

    def record(self) -> dict:
        return {"calls": self.calls, "escalated": self.escalated, "failed": self.failed,
                "nonfinite_factor": self.nonfinite, "max_jitter_factor": self.max_factor}


# ------------------------------------------------------------------------------------------------ diagnostics
def _gram_stats(z: torch.Tensor, d_raw: torch.Tensor) -> dict:
    """Condition numbers of the float32 ``K = Z Zᵀ + softplus(d)²`` as the layer forms it, with and without the
    jitter, via float64 ``eigvalsh``; its mean diagonal; ``min softplus(d)``."""
    d = F.softplus(d_raw)
    k = inducing._gram(z, d)
    eig = torch.linalg.eigvalsh(k.double())
    jitter = JITTER[k.dtype] * k.diagonal().mean().double()
    lo, hi = eig[0].item(), eig[-1].item()
    return {"d_min": d.min().item(), "k_mean_diag": k.diagonal().mean().item(), "eig_min": lo, "eig_max": hi,
            "cond": hi / lo if lo > 0 else math.inf,
            "cond_jit": (hi + jitter.item()) / (lo + jitter.item()) if lo + jitter.item() > 0 else math.inf}


@torch.no_grad()
def layer_stats(net: nn.Module) -> dict[str, dict]:
    """Per inducing layer: ``λ``, ``s_U`` range, ``|μ_U|`` rms, and the row / column Gram statistics."""
    out = {}
    for name, m in net.named_modules():
        if isinstance(m, inducing._InducingLayer):
            s = m.sd_u
            out[name] = {"lamda": m.lamda.item(), "sd_u_min": s.min().item(), "sd_u_max": s.max().item(),
                         "mu_u_rms": m.mu_u.pow(2).mean().sqrt().item(),
                         "row": _gram_stats(m.z_row, m.d_row), "col": _gram_stats(m.z_col, m.d_col)}
    return out


def summarise(stats: dict[str, dict]) -> dict:
    lam = [s["lamda"] for s in stats.values()]
    grams = [s[side] for s in stats.values() for side in ("row", "col")]
    return {"lamda_min": min(lam), "lamda_mean": sum(lam) / len(lam), "lamda_max": max(lam),
            "d_min": min(g["d_min"] for g in grams), "sd_u_min": min(s["sd_u_min"] for s in stats.values()),
            "sd_u_max": max(s["sd_u_max"] for s in stats.values()), "cond_max": max(g["cond"] for g in grams),
            "cond_jit_max": max(g["cond_jit"] for g in grams)}


@torch.no_grad()
def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, samples: int, seed: int) -> dict[str, dict]:
    """Test metrics in eval mode: ``{"S=1": ..., "S=<samples>": ...}`` (mean of softmax over the draws) for a VI
    net, ``{"det": ...}`` for ``samples == 0``. The draws come from their own seeded stream."""
    net.eval()
    if samples == 0:
        out = {"det": prob_metrics(F.softmax(net(x), -1), y)}
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            probs = torch.stack([F.softmax(net(x), -1) for _ in range(samples)])
        out = {"S=1": prob_metrics(probs[0], y), f"S={samples}": prob_metrics(probs.mean(0), y)}
    net.train()
    return {k: {"acc": v.accuracy, "nll": v.nll, "ece": v.ece} for k, v in out.items()}


# ------------------------------------------------------------------------------------------------- training
def _finite_grads(net: nn.Module) -> bool:
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def train(kind: str, data: tuple, epochs: int, seed: int, monitor: CholeskyMonitor | None, log_every: int,
          eval_every: int = 1, on_epoch=None) -> list[dict]:
    """Train the deterministic (``kind="det"``) or VI (``"vi"``) CNN; returns one record per epoch (test metrics
    in the first, the last and every ``eval_every``-th epoch, ``None`` in the others)."""
    x_tr, y_tr, x_te, y_te = data
    n = len(y_tr)
    torch.manual_seed(seed)
    net = build_cnn()
    if kind == "vi":
        inducing_bayesianize(net, **INDUCING_DEFAULTS)
        monitor.watch(net)
    ml_epochs, anneal = epochs // 2, max(1, epochs // 4)
    optim = dataclasses.replace(OFFICIAL_OPTIM, milestones=(epochs // 2,))  # Adam 1e-3, batch 100, × 0.1
    opt, sched = make_optimizer(net.parameters(), optim, epochs)
    history, start = [], time.perf_counter()
    torch.manual_seed(seed + 6000)  # the weight draws of training
    for epoch in range(epochs):
        net.train()
        factor = kl_weight(epoch, ml_epochs, anneal) if kind == "vi" else 0.0
        if monitor is not None:
            monitor.reset()
            monitor.epoch = epoch + 1
        ce_sum, bad_loss, bad_grad, chol_error = 0.0, 0, 0, 0
        for idx in epoch_batches(n, seed, epoch):
            try:
                ce = F.cross_entropy(net(x_tr[idx]), y_tr[idx])
                loss = ce + factor * inducing_kl(net) / n if factor > 0 else ce
            except torch.linalg.LinAlgError:
                chol_error += 1
                continue
            opt.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):
                bad_loss += 1
                continue
            loss.backward()
            if not _finite_grads(net):
                bad_grad += 1
                continue
            opt.step()
            ce_sum += ce.item() * len(idx)
        lr = opt.param_groups[0]["lr"]
        if sched is not None:
            sched.step()
        record = {"epoch": epoch + 1, "train_ce": ce_sum / n, "lr": lr, "kl_weight": factor,
                  "nonfinite_loss_steps": bad_loss, "nonfinite_grad_steps": bad_grad,
                  "cholesky_error_steps": chol_error, "seconds": time.perf_counter() - start}
        due = epoch == 0 or (epoch + 1) % eval_every == 0 or epoch + 1 == epochs
        if kind == "vi":
            record["kl_over_n"] = inducing_kl(net).item() / n
            record["layers"] = layer_stats(net)
            record.update(summarise(record["layers"]))
            record["test"] = evaluate(net, x_te, y_te, EVAL_SAMPLES, seed * 7919 + epoch) if due else None
            record["cholesky"] = monitor.record()  # the epoch's training and evaluation forwards
        else:
            record["test"] = evaluate(net, x_te, y_te, 0, 0) if due else None
        history.append(record)
        if log_every and ((epoch + 1) % log_every == 0 or epoch + 1 == epochs):
            print(_progress(kind, record), flush=True)
        if on_epoch is not None:
            on_epoch(kind, history)
    return history


def _progress(kind: str, r: dict) -> str:
    head = f"[{kind:3s}] ep {r['epoch']:5d} {r['seconds']:7.1f}s ce {r['train_ce']:.4f}"
    t = (r["test"] or {}).get("det" if kind == "det" else f"S={EVAL_SAMPLES}")
    tail = f" | test acc {t['acc']:.3f} nll {t['nll']:.4f} ece {t['ece']:.4f}" if t else ""
    if kind == "det":
        return head + tail
    c = r["cholesky"]
    return (f"{head} kl/N {r['kl_over_n']:.4g} w {r['kl_weight']:.3f} λ [{r['lamda_min']:.3g},{r['lamda_max']:.3g}] "
            f"Dmin {r['d_min']:.3g} sU [{r['sd_u_min']:.3g},{r['sd_u_max']:.3g}] cond {r['cond_max']:.3g} "
            f"chol esc/fail {c['escalated']}/{c['failed']}{tail}")


# ------------------------------------------------------------------------------------------------------ CLI
def final_table(det: dict, vi: dict) -> str:
    rows = [("deterministic", det["test"]["det"]), ("VI S=1", vi["test"]["S=1"]),
            (f"VI S={EVAL_SAMPLES}", vi["test"][f"S={EVAL_SAMPLES}"])]
    lines = [f"{'model':<14} {'acc':>7} {'NLL':>8} {'ECE':>8}"]
    lines += [f"{name:<14} {m['acc']:7.4f} {m['nll']:8.4f} {m['ece']:8.4f}" for name, m in rows]
    return "\n".join(lines)


def evolution_table(vi_hist: list[dict], rows: int = 11) -> str:
    """A few evaluated epochs, evenly spread over the run."""
    done = [r for r in vi_hist if r["test"] is not None]
    picks = [done[i] for i in sorted({round(i * (len(done) - 1) / (rows - 1)) for i in range(rows)})]
    lines = [f"{'epoch':>6} {'w_KL':>5} {'train CE':>9} {'KL/N':>9} {'λ min':>9} {'λ max':>9} {'min D':>9} "
             f"{'sU min':>9} {'sU max':>9} {'max cond':>9} {'S=10 acc':>8} {'S=10 NLL':>8}"]
    for r in picks:
        t = r["test"][f"S={EVAL_SAMPLES}"]
        lines.append(f"{r['epoch']:6d} {r['kl_weight']:5.3f} {r['train_ce']:9.4f} {r['kl_over_n']:9.4g} "
                     f"{r['lamda_min']:9.3g} {r['lamda_max']:9.3g} {r['d_min']:9.3g} {r['sd_u_min']:9.3g} "
                     f"{r['sd_u_max']:9.3g} {r['cond_max']:9.3g} {t['acc']:8.4f} {t['nll']:8.4f}")
    return "\n".join(lines)


def stability_summary(vi_hist: list[dict], det_hist: list[dict]) -> dict:
    chol = [r["cholesky"] for r in vi_hist]
    return {"cholesky_calls": sum(c["calls"] for c in chol),
            "cholesky_escalated": sum(c["escalated"] for c in chol),
            "cholesky_failed": sum(c["failed"] for c in chol),
            "cholesky_nonfinite_factor": sum(c["nonfinite_factor"] for c in chol),
            "max_jitter_factor": max(c["max_jitter_factor"] for c in chol),
            "vi_cholesky_error_steps": sum(r["cholesky_error_steps"] for r in vi_hist),
            "vi_nonfinite_loss_steps": sum(r["nonfinite_loss_steps"] for r in vi_hist),
            "vi_nonfinite_grad_steps": sum(r["nonfinite_grad_steps"] for r in vi_hist),
            "det_nonfinite_steps": sum(r["nonfinite_loss_steps"] + r["nonfinite_grad_steps"] for r in det_hist),
            "max_cond_over_run": max(r["cond_max"] for r in vi_hist),
            "max_cond_jit_over_run": max(r["cond_jit_max"] for r in vi_hist)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs for both nets (default 1000; --quick: 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the results here (atomically; also every 25 epochs)")
    parser.add_argument("--quick", action="store_true", help="a ~1-minute smoke run (8 epochs)")
    parser.add_argument("--eval-every", type=int, default=1, help="test metrics every so many epochs (and in the "
                        "first and last); the training does not depend on it")
    parser.add_argument("--log-every", type=int, default=None, help="print a progress line every so many epochs")
    parser.add_argument("--jitter", type=float, default=None,
                        help="relative Cholesky jitter in float32 (default: the library's, 1e-6; bayesianize, the "
                             "official code's library, uses 1e-4)")
    args = parser.parse_args(argv)
    if args.jitter is not None:
        if not args.jitter > 0:
            parser.error(f"--jitter must be > 0, got {args.jitter}")
        JITTER[torch.float32] = args.jitter
    epochs = args.epochs if args.epochs is not None else (8 if args.quick else 1000)
    if epochs < 4:
        parser.error(f"--epochs must be >= 4 (NLL half, KL ramp quarter), got {epochs}")
    for name in ("threads", "eval_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    log_every = args.log_every or args.eval_every * max(1, epochs // (24 * args.eval_every))

    data = load_digits_split()
    n_steps = epochs * len(epoch_batches(len(data[1]), args.seed, 0))
    config = {"dataset": "sklearn digits 8x8, stratified 1297/500 (random_state=0), standardised, no augmentation",
              "net": "Conv(1-16)-BN-ReLU, Conv(16-32)-BN-ReLU-MaxPool, Conv(32-32)-BN-ReLU-GAP, Linear(32-10)",
              "epochs": epochs, "optimizer_steps": n_steps, "batch_size": BATCH, "lr": LR,
              "lr_milestone": epochs // 2, "ml_epochs": epochs // 2, "anneal_epochs": max(1, epochs // 4),
              "kl_divisor": len(data[1]), "dtype": "float32", "eval_samples": EVAL_SAMPLES, "ece_bins": 15,
              "inducing": INDUCING_DEFAULTS, "jitter": JITTER[torch.float32], "threads": args.threads,
              "eval_every": args.eval_every, "quick": args.quick}
    payload = {"config": config, **provenance(args.seed), "python": platform.python_version(),
               "command": " ".join(["python", *sys.argv]), "complete": False}
    print(f"digits {len(data[1])}/{len(data[3])}, {epochs} epochs, {n_steps} optimiser steps per net, "
          f"torch {torch.__version__}, {args.threads} thread(s)", flush=True)

    def checkpoint(kind: str, history: list[dict]) -> None:
        if args.json and (len(history) % 25 == 0):
            write_json(args.json, {**payload, kind: history, "wall_seconds": time.perf_counter() - start})

    start = time.perf_counter()
    det_hist = train("det", data, epochs, args.seed, None, log_every, args.eval_every, checkpoint)
    payload["det"] = det_hist
    monitor, original = CholeskyMonitor(), inducing.jittered_cholesky
    inducing.jittered_cholesky = monitor  # the layers look the name up in their module at each call
    try:
        vi_hist = train("vi", data, epochs, args.seed, monitor, log_every, args.eval_every, checkpoint)
    finally:
        inducing.jittered_cholesky = original
    wall = time.perf_counter() - start

    payload.update({"vi": vi_hist, "wall_seconds": wall, "complete": True, "cholesky_escalations": monitor.events,
                    "final": {"det": det_hist[-1]["test"]["det"], **vi_hist[-1]["test"]},
                    "stability": stability_summary(vi_hist, det_hist)})
    if args.json:
        write_json(args.json, payload)
    print("\nVI evolution (test metrics in eval mode)")
    print(evolution_table(vi_hist))
    for event in monitor.events[:10]:
        print("escalation:", ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in event.items()))
    print("\nstability:", ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                    for k, v in payload["stability"].items()))
    print(f"\nfinal test metrics after {epochs} epochs ({n_steps} steps per net), wall {wall:.0f} s")
    print(final_table(det_hist[-1], vi_hist[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
