"""``simulate``: many SGD replicas, several configurations, one batched tensor program.

Every replica of every configuration is a slice of the leading axis ``N = configs × replicas`` of the
parameters; one step draws a ``(N, b)`` block of examples, forms targets with each configuration's supervision
model, and updates all students with batched matrix products. Streaming draws fresh examples every step (the
population objective); the finite sum draws a training set once and walks it in epochs. On the CPU, MLP replicas
are stepped in cache-sized groups, each running a block of steps while its parameters stay in cache (the block's
draws are made first, in step order, so the grouping does not change the result).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from tqdm.auto import tqdm

from sgdbound._checks import (
    check_count,
    check_finite,
    check_float_dtype,
    check_nonnegative,
    check_positive,
    check_seed,
    describe,
)
from sgdbound.models import hidden_widths
from sgdbound.sim.optim import OPTIMIZERS
from sgdbound.sim.optimum import LinearTheory, fit_linear, flat_distance_sq, linear_theory
from sgdbound.sim.sampling import make_sampler
from sgdbound.sim.students import ACTIVATION_GRADS, BatchedLinear, BatchedMLP
from sgdbound.sim.trajectory import Trajectory
from sgdbound.targets import Mix, OneHot, SupervisionModel
from sgdbound.theory import decreasing_steps

__all__ = ["simulate", "resolve_device"]

log = logging.getLogger(__name__)

STUDENTS = ("linear", "mlp")
SAMPLING = ("reshuffle", "replacement")
_EVAL_ELEMENTS = 2**24  # activations per evaluation chunk
_STEP_CACHE_BYTES = 4 * 2**20  # CPU: parameters and optimiser state of one group of MLP replicas stepped together
_BLOCK_STEPS = 64  # CPU, several groups: steps a group runs before the next one (its parameters stay in cache)
_BLOCK_BYTES = 16 * 2**20  # and at most this many bytes of drawn examples and targets per block
DEFAULT_TRAIN_SIZE = 1000  # finite sum without an explicit train_size


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; ``ValueError`` for a device torch does not know or lacks."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or a torch.device, got {device!r} ({error})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine (use 'auto' or 'cpu')")
    return dev


def _as_list(value, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name} must not be empty")
        return list(value)
    return [value]


def _given_label_mean(noise: SupervisionModel, bcp: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``E[t | x, y]`` for a fixed label ``y`` (what redrawn targets average to on a finite training set)."""
    if isinstance(noise, OneHot):
        return torch.nn.functional.one_hot(y, bcp.shape[1]).to(bcp.dtype)
    if isinstance(noise, Mix):
        hard = torch.nn.functional.one_hot(y, bcp.shape[1]).to(bcp.dtype)
        return (1 - noise.lam) * hard + noise.lam * noise.teacher.mean(bcp)
    return noise.mean(bcp)


class _Evaluator:
    """Metrics of ``N`` students on one fixed evaluation sample."""

    def __init__(self, x, y, bcp, width: int):
        self.x, self.y, self.bcp = x, y, bcp
        self.neg_entropy = torch.where(bcp > 0, bcp * bcp.clamp_min(1e-300).log(), torch.zeros_like(bcp)).sum(1).mean()
        self.chunk = max(1, _EVAL_ELEMENTS // (x.shape[0] * max(width, bcp.shape[1])))

    @torch.no_grad()
    def __call__(self, student) -> dict[str, torch.Tensor]:
        n = student.params[0].shape[0]
        out: dict[str, list[torch.Tensor]] = {k: [] for k in ("excess_risk", "ce", "accuracy", "l2_bcp", "ece")}
        for start in range(0, n, self.chunk):
            part = student.params_for(slice(start, min(n, start + self.chunk)))
            m = part.params[0].shape[0]
            logits = part.logits(self.x.expand(m, *self.x.shape))
            logq = torch.log_softmax(logits, -1)
            q = logq.exp()
            out["excess_risk"].append(self.neg_entropy - (self.bcp * logq).sum(-1).mean(-1))
            out["ce"].append(-logq.gather(-1, self.y.expand(m, -1)[..., None])[..., 0].mean(-1))
            conf, pred = q.max(-1)
            correct = (pred == self.y).to(q.dtype)
            out["accuracy"].append(correct.mean(-1))
            out["l2_bcp"].append((q - self.bcp).norm(dim=-1).mean(-1))
            bins = (conf * 10).ceil().long().clamp(1, 10) - 1
            gaps = torch.zeros(m, 10, dtype=q.dtype, device=q.device).scatter_add_(1, bins, conf - correct)
            out["ece"].append(gaps.abs().sum(1) / self.x.shape[0])
        return {k: torch.cat(v) for k, v in out.items()}


_ONEHOT = OneHot()


def simulate(problem, student: str = "linear", noise: SupervisionModel | Sequence[SupervisionModel] = _ONEHOT,
             lr: float | Sequence[float] = 0.01, steps: int = 10_000, replicas: int = 256, stream: bool = True,
             init="optimum", seed: int = 0, device: str | torch.device = "auto", dtype: torch.dtype = torch.float32,
             record_every: int = 100, momentum: float = 0.0, batch_size: int = 1, hidden=(128, 128),
             activation: str = "relu", optimizer: str = "sgd", schedule: str = "constant",
             train_size: int | None = None, epochs: int | None = None, redraw: bool = False,
             sampling: str = "reshuffle", eval_size: int = 2048, theory_samples: int = 32768,
             progress: bool = False) -> Trajectory | list[Trajectory]:
    """Run ``replicas`` independent SGD runs of a student on ``problem`` for each configuration.

    Setting: ``problem`` has exact BCPs (``sgdbound.data``); the student is ``"linear"`` (``LinearSoftmax``) or
    ``"mlp"`` (``hidden`` widths, ``activation`` in relu/tanh/softplus); targets come from ``noise`` (a
    supervision model). Configurations: ``noise`` and ``lr`` may be lists (broadcast against each other); the
    result is then a list of ``Trajectory``, one per configuration, all computed in one batched program.

    Algorithm: ``optimizer="sgd"`` (heavy ball when ``momentum > 0``, as ``torch.optim.SGD``) or ``"adam"``;
    ``schedule="constant"`` or ``"decreasing"`` (Gower et al. 2019, Thm 3.2, from the local constants; linear
    students); minibatch ``batch_size``. ``stream=True`` draws fresh examples each step; ``stream=False`` draws a
    training set of ``train_size`` (default 1000) once and runs ``epochs`` epochs (``steps`` is then derived), each
    replica reshuffling per epoch (``sampling="reshuffle"``) or drawing batches independently (``"replacement"``).
    Finite-sum targets are drawn once per training example (a teacher is a fixed function) and shared by the
    replicas; ``redraw=True`` draws them afresh at every visit. Fixed targets with negative entries (``Gaussian``
    noise) can leave the empirical cross-entropy without a minimiser; the run is then refused (``ValueError``)
    before it starts, as is any bad argument.

    Start: ``init="optimum"`` (linear students: the configuration's optimum), ``"random"`` (seeded) or
    parameters ``(weight (K, d), bias (K,))`` (linear) / ``[(weight (out, in), bias (out,)), ...]`` (MLP), or a
    ``LinearSoftmax``/``MLP`` module or state dict to copy them from.

    Records every ``record_every`` steps (and the last): see ``Trajectory``. Distances are to the optimum of the
    objective being run: the Bayes-linear parameters (streaming, realizable, unbiased targets) or the float64
    minimiser of the mean cross-entropy to the mean targets on a large reference sample (streaming otherwise)
    or on the training set (finite sum). For linear students, the theory for the same run
    (``predicted_stationary``, ``bound``) is computed at that optimum.

    Returns ``Trajectory`` (or a list). Reproducible bit for bit on the CPU for a given ``seed``.

    Example::

        >>> gm = GaussianMixture.reference(seed=0).standardized()
        >>> traj = simulate(gm, noise=OneHot(), lr=0.005, steps=2000, replicas=128)
        >>> traj.plateau(), traj.predicted_plateau(), traj.predicted_stationary  # measured, transient, limit
    """
    noises = _as_list(noise, "noise")
    lrs = _as_list(lr, "lr")
    if len(noises) > 1 and len(lrs) > 1 and len(noises) != len(lrs):
        raise ValueError(f"noise ({len(noises)}) and lr ({len(lrs)}) lists must have the same length to broadcast")
    configs = max(len(noises), len(lrs))
    noises = noises * configs if len(noises) == 1 else noises
    lrs = [check_positive("lr", v) for v in (lrs * configs if len(lrs) == 1 else lrs)]
    many = isinstance(noise, (list, tuple)) or isinstance(lr, (list, tuple))
    for item in noises:
        if not isinstance(item, SupervisionModel):
            raise ValueError(f"noise must be a SupervisionModel (sgdbound.targets), got {type(item).__name__}")
    if student not in STUDENTS:
        raise ValueError(f"student must be one of {STUDENTS}, got {student!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    if schedule not in ("constant", "decreasing"):
        raise ValueError(f"schedule must be 'constant' or 'decreasing', got {schedule!r}")
    if schedule == "decreasing" and (student != "linear" or optimizer != "sgd"):
        raise ValueError("schedule='decreasing' needs a linear student and optimizer='sgd'")
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
    momentum = check_nonnegative("momentum", momentum)
    if momentum >= 1:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
    if momentum and optimizer != "sgd":
        raise ValueError("momentum applies to optimizer='sgd' (Adam has its own betas)")
    replicas, batch_size = check_count("replicas", replicas), check_count("batch_size", batch_size)
    record_every = check_count("record_every", record_every)
    eval_size = check_count("eval_size", eval_size, minimum=0)  # 0 skips the evaluation metrics
    theory_samples = check_count("theory_samples", theory_samples)
    seed = check_seed("seed", seed)
    dtype = check_float_dtype("dtype", dtype)
    if student == "mlp" and activation not in ACTIVATION_GRADS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATION_GRADS)}, got {activation!r}")
    if isinstance(init, str) and init not in ("optimum", "random"):
        raise ValueError(f"init must be 'optimum', 'random' or parameters, got {init!r}")
    if student == "mlp" and isinstance(init, str) and init == "optimum":
        raise ValueError("an MLP student has no closed-form optimum: use init='random' or give parameters")
    if stream:
        if train_size is not None or epochs is not None:
            raise ValueError("train_size and epochs are for stream=False (finite sum)")
        steps = check_count("steps", steps)
    else:
        if train_size is None:
            train_size = DEFAULT_TRAIN_SIZE
            log.info("stream=False without train_size: using %d training examples", train_size)
        train_size = check_count("train_size", train_size, minimum=batch_size)
        if epochs is not None:
            steps = check_count("epochs", epochs) * (train_size // batch_size)
        elif steps is None:
            raise ValueError("stream=False needs epochs (or steps)")
        steps = check_count("steps", steps)

    dev = resolve_device(device)
    sampler = make_sampler(problem, dev, dtype)
    num_classes, dim = problem.num_classes, problem.dim
    widths = [dim, *_mlp_hidden(hidden), num_classes] if student == "mlp" else None
    init = _check_init(_normalise_init(init), student, dim, num_classes, widths)
    n_total = configs * replicas
    gen = torch.Generator(device=dev).manual_seed(seed)
    init_gen = torch.Generator(device=dev).manual_seed(seed + 1_000_003)
    config_of = torch.arange(configs, device=dev).repeat_interleave(replicas)
    lr_vec = torch.tensor(lrs, dtype=dtype, device=dev)[config_of]

    # -- data: evaluation sample, and the training set for finite sums (float64 BCPs, then cast) -----------
    evaluation = problem.sample(eval_size, seed=seed + 2_000_003).to(device=dev, dtype=dtype) if eval_size else None
    train = targets_fixed = None
    if not stream:
        train = problem.sample(train_size, seed=seed + 3_000_017)
        target_gen = torch.Generator().manual_seed(seed + 4_000_037)
        targets_fixed = torch.stack([c._sample(train.bcp, train.y, target_gen) for c in noises])  # (C, n, K) f64

    # -- theory and optima (linear students) -----------------------------------------------------------------
    theories: list[LinearTheory | None] = [None] * configs
    if student == "linear":
        theories = _linear_theories(problem, noises, lrs, stream, train, targets_fixed, redraw, sampling,
                                    batch_size, momentum, optimizer, schedule, seed, theory_samples)

    # -- students ---------------------------------------------------------------------------------------------
    if student == "linear":
        if isinstance(init, str) and init == "optimum":
            weight = torch.stack([th.weight for th in theories]).to(device=dev, dtype=dtype)[config_of]
            bias = torch.stack([th.bias for th in theories]).to(device=dev, dtype=dtype)[config_of]
            model = BatchedLinear(weight.contiguous(), bias.contiguous())
        else:
            model = BatchedLinear.init(n_total, dim, num_classes, init, init_gen, dev, dtype)
        width = num_classes
    else:
        model = BatchedMLP.init(n_total, widths, activation, init, init_gen, dev, dtype)
        width = max(widths)
    flat = getattr(model, "flat", None)
    opt = OPTIMIZERS[optimizer](model.params, momentum=momentum, flat=flat) if optimizer == "sgd" else \
        OPTIMIZERS[optimizer](model.params, flat=flat)
    evaluate = _Evaluator(evaluation.x, evaluation.y, evaluation.bcp, width) if evaluation is not None else None
    if student == "linear":
        opt_w = torch.stack([th.weight for th in theories]).to(device=dev, dtype=dtype)[config_of]
        opt_b = torch.stack([th.bias for th in theories]).to(device=dev, dtype=dtype)[config_of]

    # -- step sizes per step ---------------------------------------------------------------------------------
    schedule_table = None
    if schedule == "decreasing":
        table = np.stack([decreasing_steps(mu=th.mu, smoothness=th.smoothness, steps=steps)
                          for th in theories], 1)
        schedule_table = torch.tensor(table, dtype=dtype, device=dev)  # (steps, C)

    # -- the loop --------------------------------------------------------------------------------------------
    draw_targets = _TargetPlan(noises, replicas, dev, dtype)
    if not stream:
        x_train = train.x.to(device=dev, dtype=dtype)
        y_train = train.y.to(dev)
        bcp_train = train.bcp.to(device=dev, dtype=dtype)
        t_train = targets_fixed.to(device=dev, dtype=dtype)
        n_train = x_train.shape[0]
        per_epoch = n_train // batch_size

    chunks, order = [slice(None)], None
    if student == "mlp":
        states = 5 if optimizer == "adam" else 2 if momentum else 1  # parameters and optimiser buffers
        per_replica = sum(p[0].numel() for p in model.params) * torch.finfo(dtype).bits // 8 * states
        size = n_total if dev.type == "cuda" else max(1, _STEP_CACHE_BYTES // per_replica)
        size = -(-n_total // -(-n_total // size))  # groups of (nearly) equal size
        chunks = [slice(i, min(n_total, i + size)) for i in range(0, n_total, size)]
    records: dict[str, list[torch.Tensor]] = {k: [] for k in ("dist_sq", "excess_risk", "ce", "accuracy",
                                                             "l2_bcp", "ece")}
    record_steps: list[int] = []

    def record(t: int) -> None:
        if evaluate is not None:
            metrics = evaluate(model)
        else:
            nan = torch.full((n_total,), float("nan"), dtype=dtype, device=dev)
            metrics = {k: nan for k in ("excess_risk", "ce", "accuracy", "l2_bcp", "ece")}
        if student == "linear":
            metrics["dist_sq"] = flat_distance_sq(model.weight, model.bias, opt_w, opt_b)
        else:
            metrics["dist_sq"] = torch.full((n_total,), float("nan"), dtype=dtype, device=dev)
        for key, value in metrics.items():
            records[key].append(value.double().cpu())
        record_steps.append(t)

    record(0)
    init_cov = None
    if student == "linear":
        delta = torch.cat([model.weight - opt_w, (model.bias - opt_b)[..., None]], -1).double().cpu()
        delta = (delta - delta.mean(1, keepdim=True)).reshape(configs, replicas, -1)
        init_cov = torch.einsum("crp,crq->cpq", delta, delta) / replicas
    bar = tqdm(total=steps, disable=not progress, desc="simulate", unit="step", leave=False)

    def draw(step: int):
        """Step ``step``'s examples ``x`` ``(N, b, d)``, targets ``(N, b, K)`` and step sizes ``(N,)``."""
        nonlocal order
        if stream:
            x, y, bcp = sampler.draw((n_total, batch_size), gen)
            targets = draw_targets(bcp, y, gen)
        else:
            if sampling == "reshuffle":
                within = step % per_epoch
                if within == 0:
                    order = torch.argsort(torch.rand(n_total, n_train, generator=gen, device=dev), dim=1)
                idx = order[:, within * batch_size:(within + 1) * batch_size]
            else:
                idx = torch.randint(n_train, (n_total, batch_size), generator=gen, device=dev)
            x = x_train[idx]
            if redraw:
                targets = draw_targets(bcp_train[idx], y_train[idx], gen)
            else:
                targets = t_train[config_of[:, None], idx]
        return x, targets, lr_vec if schedule_table is None else schedule_table[step][config_of]

    # Several replica groups: each group runs a block of steps while its parameters stay in cache (the draws are
    # made first, in step order, so the result does not depend on the grouping).
    block = 1 if len(chunks) == 1 else max(1, min(_BLOCK_STEPS, _BLOCK_BYTES // (
        n_total * batch_size * (dim + num_classes) * torch.finfo(dtype).bits // 8)))
    t = 0
    while t < steps:
        stop = min(steps, t + block, (t // record_every + 1) * record_every)
        drawn = [draw(s) for s in range(t, stop)]
        if student == "linear":
            for x, targets, step_lr in drawn:
                q = torch.softmax(model.logits(x), -1)
                opt.step(model.gradients(x, targets.sum(-1, keepdim=True) * q - targets), step_lr)
        else:
            drawn = [(x, -targets, targets.sum(-1, keepdim=True), step_lr) for x, targets, step_lr in drawn]
            for rows in chunks:
                part = model.params_for(rows)
                for s, (x, neg_targets, mass, step_lr) in enumerate(drawn, t + 1):
                    cache = part.forward_with_cache(x[rows])
                    residual = torch.addcmul(neg_targets[rows], mass[rows], torch.softmax(cache[0], -1))  # (Σt) q − t
                    opt.step(part.gradients_from_cache(cache, residual), step_lr[rows], rows, t=s)
        t = stop
        if t % record_every == 0 or t == steps:
            record(t)
            bar.update(t - bar.n)
    bar.close()

    stacked = {k: torch.stack(v, 1).numpy() for k, v in records.items()}  # (N, records)
    base_config = {
        "problem": repr(problem), "student": student, "steps": steps, "replicas": replicas, "stream": stream,
        "init": init if isinstance(init, str) else "given", "device": str(dev), "dtype": str(dtype),
        "record_every": record_every, "momentum": momentum, "batch_size": batch_size,
        "hidden": list(hidden) if student == "mlp" and not isinstance(hidden, int) else hidden,
        "activation": activation, "optimizer": optimizer, "schedule": schedule, "train_size": train_size,
        "epochs": epochs, "redraw": redraw, "sampling": sampling, "eval_size": eval_size,
    }
    out = []
    for c in range(configs):
        rows = slice(c * replicas, (c + 1) * replicas)
        theory = theories[c]
        config = dict(base_config, noise=repr(noises[c]), lr=lrs[c])
        traj = Trajectory(steps=np.asarray(record_steps), config=config, seed=seed,
                          **{k: v[rows] for k, v in stacked.items()})
        if theory is not None:
            traj = replace(traj, constants=theory.constants(), optimum=(theory.weight, theory.bias))
            if optimizer == "sgd" and schedule == "constant":
                traj.predicted_stationary = theory.predicted_stationary
                # T1/T3 and the linearised recursion assume independent sampling at every step: streaming, or a
                # finite sum sampled with replacement (not reshuffled epochs, nor redrawn targets)
                iid = stream or (sampling == "replacement" and not redraw)
                if momentum == 0.0 and iid:
                    traj.bound = theory.bound(lrs[c], float(traj.dist_sq[:, 0].mean()))
                    traj.predicted_curve = theory.predicted_curve(traj.steps, lrs[c], init_cov[c])
                    if stream and not noises[c].biased and evaluate is not None:
                        # f − f* = E KL(P ‖ q) for unbiased targets: the recorded excess risk
                        traj.pl_bound = theory.pl(lrs[c], float(traj.excess_risk[:, 0].mean()))
        out.append(traj)
    return out if many else out[0]


def _mlp_hidden(hidden) -> list[int]:
    """An MLP student's hidden widths (``models.hidden_widths``), at least one layer of them."""
    widths = hidden_widths(hidden)
    if not widths:
        raise ValueError("hidden must hold at least one width")
    return widths


def _check_init(init, student: str, dim: int, num_classes: int, widths: list[int] | None):
    """Refuse given start parameters whose shapes do not fit the student, or that are not finite."""
    if isinstance(init, str):
        return init
    if student == "linear":
        if not (isinstance(init, tuple) and len(init) == 2):
            raise ValueError("init for a linear student must be 'optimum', 'random', a (weight, bias) tuple, a "
                             f"LinearSoftmax or its state dict; got {type(init).__name__}")
        pairs, shapes = [init], [((num_classes, dim), (num_classes,))]
    else:
        if not (isinstance(init, (list, tuple)) and init and all(isinstance(p, tuple) and len(p) == 2
                                                                 for p in init)):
            raise ValueError("init for an MLP student must be 'random', a list of (weight, bias) tuples or an MLP; "
                             f"got {type(init).__name__}")
        pairs = list(init)
        shapes = [((w_out, w_in), (w_out,)) for w_in, w_out in zip(widths[:-1], widths[1:])]
        if len(pairs) != len(shapes):
            raise ValueError(f"init has {len(pairs)} layers, the student {len(shapes)} (widths {widths})")
    for i, ((weight, bias), (w_shape, b_shape)) in enumerate(zip(pairs, shapes)):
        for name, value, shape in (("weight", weight, w_shape), ("bias", bias, b_shape)):
            label = f"init {name}" if student == "linear" else f"init layer {i} {name}"
            if not torch.is_tensor(value) or tuple(value.shape) != shape:
                raise ValueError(f"{label} must have shape {shape}, got {describe(value)}")
            check_finite(label, value)
    return init


def _normalise_init(init):
    """Accept a module (``LinearSoftmax``/``MLP``) or a state dict with ``weight``/``bias`` as given parameters."""
    if isinstance(init, torch.nn.Module):
        linears = [m for m in init.modules() if isinstance(m, torch.nn.Linear)]
        if linears:
            return [(m.weight.detach(), m.bias.detach()) for m in linears]
        init = init.state_dict()
    if isinstance(init, dict):
        if set(init) != {"weight", "bias"}:
            raise ValueError(f"init as a state dict must hold 'weight' and 'bias', got {sorted(init)}")
        return init["weight"].detach(), init["bias"].detach()
    return init


class _TargetPlan:
    """Draws every replica's targets with as few sampler calls as possible.

    Configurations sharing one supervision model are drawn together; configurations of one class that differ only
    in its ``ROW_PARAMETER`` (several ν of ``Gaussian``, several α of ``Dirichlet``) are drawn in one call with a
    per-row parameter. Others are drawn per model.
    """

    def __init__(self, noises: list[SupervisionModel], replicas: int, device: torch.device, dtype: torch.dtype):
        self.single = noises[0] if all(item == noises[0] for item in noises) else None
        keyed: dict = {}
        for c, item in enumerate(noises):
            key = type(item) if type(item).ROW_PARAMETER else item
            keyed.setdefault(key, []).append(c)
        self.parts = []
        for key, configs in keyed.items():
            rows = torch.cat([torch.arange(c * replicas, (c + 1) * replicas) for c in configs]).to(device)
            values = None
            if isinstance(key, type):
                values = torch.tensor([getattr(noises[c], key.ROW_PARAMETER) for c in configs], dtype=dtype,
                                      device=device).repeat_interleave(replicas)
            self.parts.append((key, rows, values))

    def __call__(self, bcp: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``bcp`` ``(N, b, K)`` and labels ``y`` ``(N, b)`` → targets ``(N, b, K)``."""
        k = bcp.shape[-1]
        if self.single is not None:
            return self.single._sample(bcp.reshape(-1, k), y.reshape(-1), gen).reshape(bcp.shape)
        out = torch.empty_like(bcp)
        for key, rows, values in self.parts:
            part = bcp[rows]
            if values is None:
                drawn = key._sample(part.reshape(-1, k), y[rows].reshape(-1), gen)
            else:
                per_row = values.repeat_interleave(part.shape[1])[:, None]  # parameters checked at the start
                drawn = key._draw_rows(per_row, part.reshape(-1, k), gen)
            out[rows] = drawn.reshape(part.shape)
        return out


def _linear_theories(problem, noises, lrs, stream, train, targets_fixed, redraw, sampling, batch_size, momentum,
                     optimizer, schedule, seed, theory_samples) -> list[LinearTheory]:
    """The optimum and theory of each configuration (float64, CPU)."""
    try:
        bayes = problem.bayes_linear()
    except ValueError:
        bayes = None
    theories = []
    predict = optimizer == "sgd" and schedule == "constant"
    if stream:
        reference = problem.sample(theory_samples, seed=seed + 5_000_011)
        for noise, lr in zip(noises, lrs):
            mean = noise.mean(reference.bcp)
            if bayes is not None and not noise.biased:
                weight, bias = bayes
                weight, bias = weight - weight.mean(0), bias - bias.mean()
            else:
                weight, bias = fit_linear(reference.x, mean, init=bayes)
            theories.append(linear_theory(reference.x, reference.bcp, mean, weight, bias, noise_model=noise,
                                          batch=batch_size, step=lr, momentum=momentum, predict=predict))
        return theories
    n = train.x.shape[0]
    for c, (noise, lr) in enumerate(zip(noises, lrs)):
        fixed = _given_label_mean(noise, train.bcp, train.y) if redraw else targets_fixed[c]
        try:
            weight, bias = fit_linear(train.x, fixed, init=bayes)
        except ValueError as error:
            raise ValueError(f"noise={noise!r} with stream=False: {error}. The finite sum needs a minimiser: use "
                             f"stream=True (fresh targets each step), redraw=True, or a noise model on the simplex"
                             ) from None
        theories.append(linear_theory(train.x, train.bcp, fixed, weight, bias, fixed_targets=fixed, n=n,
                                      batch=batch_size, step=lr, momentum=momentum,
                                      predict=predict and not redraw and sampling == "replacement"))
    return theories
