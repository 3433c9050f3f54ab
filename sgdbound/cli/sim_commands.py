"""``sgdbound reproduce``, ``sgdbound simulate`` and ``sgdbound bound``: the simulator's side of the command.

* ``reproduce`` runs the named experiments (``sgdbound.experiments``) with their embedded defaults, writes one
  results JSON per experiment (resumable: a result computed with the same configuration is reused unless
  ``--force``), draws each experiment's figure as PNG and PDF, and prints the summary table (measured against
  theory). ``--quick`` uses the small settings and writes under ``results/quick`` and ``figures/quick``.
* ``simulate --config FILE.toml`` runs one ``sgdbound.sim.simulate`` call described in TOML.
* ``bound`` evaluates the T1–T4 bounds from constants given as flags (or computed for a built-in problem).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from sgdbound._checks import check_nonnegative, check_positive
from sgdbound.cli import add_threads_option, set_threads

__all__ = ["register", "format_table"]

_EXAMPLE_TOML = """\
# sgdbound simulate --config run.toml
problem = "teacher"            # a name from sgdbound.experiments.PROBLEMS
problem_seed = 0
out = "results/simulate.json"  # optional

[simulate]                     # keyword arguments of sgdbound.sim.simulate
noise = ["onehot", "dirichlet:5", "exact"]
lr = 0.008
steps = 5000
replicas = 128
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``reproduce``, ``simulate`` and ``bound`` parsers."""
    from sgdbound.experiments import SPECS

    p = sub.add_parser("reproduce", help="run the experiments, write results, figures and a summary table",
                       description="Run the named experiments with their embedded defaults; write results/NAME.json "
                       "and figures/NAME.{png,pdf}; print measured against theory.")
    p.add_argument("--quick", action="store_true", help="small settings (under 3 minutes on 2 CPU cores); "
                   "results and figures go to quick/ subfolders unless --out/--figures are given")
    p.add_argument("--out", type=Path, default=None, help="results folder (default results/, or results/quick)")
    p.add_argument("--figures", type=Path, default=None, help="figures folder (default figures/, or figures/quick)")
    p.add_argument("--only", action="append", default=None, metavar="NAME",
                   help=f"run only this experiment (repeatable, or comma-separated); one of: {', '.join(SPECS)}")
    p.add_argument("--force", action="store_true", help="rerun experiments whose results already exist")
    p.add_argument("--seed", type=int, default=None, help="seed for every experiment (default: each one's own)")
    p.add_argument("--device", default=None, help="'cpu', 'cuda' or 'auto' (default: each experiment's own)")
    add_threads_option(p)
    p.add_argument("--no-figures", action="store_true", help="skip drawing figures")
    p.set_defaults(func=_reproduce)

    s = sub.add_parser("simulate", help="one simulation described in a TOML file",
                       description="Run sgdbound.sim.simulate with the settings of a TOML file.",
                       epilog="Example file:\n\n" + _EXAMPLE_TOML, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--config", type=Path, required=True, help="TOML file (see the example below)")
    s.add_argument("--out", type=Path, default=None, help="write the trajectories' summaries here (JSON)")
    add_threads_option(s)
    s.set_defaults(func=_simulate)

    b = sub.add_parser("bound", help="evaluate the T1–T4 bounds from constants",
                       description="Rate, neighbourhood, largest admissible step and iterations to an accuracy for "
                       "T1/T3 (strong quasi-convexity) and T2/T4 (PL). Constants come from the flags or, with "
                       "--problem, are computed at the optimum of a built-in problem (flags then override).")
    b.add_argument("--problem", default=None, help="compute constants for this built-in problem (linear student)")
    b.add_argument("--target", default="onehot", help="supervision for --problem: onehot, exact, dirichlet:5, ...")
    b.add_argument("--mu", type=float, help="μ: strong quasi-convexity / PL constant")
    b.add_argument("--lipschitz", type=float, help="L: smoothness of f")
    b.add_argument("--lipschitz-max", type=float, help="L_max: largest per-sample smoothness")
    b.add_argument("--smoothness", type=float, help="ℒ: expected smoothness (default from L, L_max, n, batch)")
    b.add_argument("--n", type=float, default=math.inf, help="training-set size (default: streaming, inf)")
    b.add_argument("--batch", type=int, default=1, help="minibatch size b")
    b.add_argument("--sigma2", type=float, help="σ² = E‖∇ℓ(θ*)‖² for one sample (0: exact BCPs)")
    b.add_argument("--step", type=float, default=None, help="step γ (default: each theorem's largest)")
    b.add_argument("--dist0", type=float, default=1.0, help="‖θ_0 − θ*‖² (T1/T3)")
    b.add_argument("--gap0", type=float, default=1.0, help="f(θ_0) − f* (T2/T4)")
    b.add_argument("--accuracy", type=float, default=None,
                   help="target accuracy for the iteration count (default: twice the larger neighbourhood, or 1e-6)")
    b.add_argument("--theorem", choices=("both", "quasi-convex", "pl"), default="both")
    b.set_defaults(func=_bound)


# -- reproduce ---------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value == 0:
            return "0"
        return f"{value:.3g}" if 1e-3 <= abs(value) < 1e4 else f"{value:.2e}"
    return str(value)


def format_table(rows, markdown: bool = False) -> str:
    """The summary rows as an aligned text table (or a Markdown table)."""
    header = ("experiment", "quantity", "measured", "theory", "relation", "holds")
    body = [(r.experiment, r.quantity, _fmt(r.measured), _fmt(r.theory), r.relation or "–", _fmt(r.holds))
            for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(c[i]) for c in body)) if body else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths)) for cells in body]
    return "\n".join(out)


def _selected(only: list[str] | None) -> list[str]:
    from sgdbound.experiments import SPECS

    if not only:
        return list(SPECS)
    names = [n.strip() for item in only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in SPECS]
    if unknown:
        raise ValueError(f"--only: unknown experiment(s) {unknown}; valid: {', '.join(SPECS)}")
    return names


def _reproduce(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from sgdbound.experiments import experiment_config, load_result, result_matches, run_experiment, save_result
    from sgdbound.io import atomic_write_text

    names = _selected(args.only)
    set_threads(args)
    out = args.out or Path("results/quick" if args.quick else "results")
    figures = args.figures or Path("figures/quick" if args.quick else "figures")
    overrides = {k: v for k, v in (("seed", args.seed), ("device", args.device)) if v is not None}
    rows, timings = [], {}
    started = time.perf_counter()
    bar = tqdm(names, desc="reproduce", unit="experiment", file=sys.stderr)
    for name in bar:
        bar.set_postfix_str(name)
        config = experiment_config(name, args.quick, **overrides)
        path = out / f"{name}.json"
        if not args.force and path.exists() and result_matches(path, config):
            result = load_result(path)
            status = f"{name}: reused {path} ({result.seconds:.1f} s when computed)"
        else:
            result = run_experiment(name, args.quick, **overrides)
            save_result(result, path)
            status = f"{name}: {result.seconds:.1f} s → {path}"
        timings[name] = result.seconds
        if not args.no_figures:
            _draw(name, result, figures)
            status += f", {figures / name}.png/.pdf"
        tqdm.write(status, file=sys.stderr)
        rows.extend(result.summary)
    total = time.perf_counter() - started
    table = format_table(rows)
    print(table)
    failed = [r for r in rows if r.holds is False]
    print(f"\n{len(names)} experiment(s) in {total:.1f} s wall time; {len(failed)} claim(s) not met"
          + ("" if not failed else ": " + "; ".join(f"{r.experiment}: {r.quantity}" for r in failed)))
    summary = {"quick": args.quick, "seconds": total, "experiment_seconds": timings,
               "rows": [r.__dict__ for r in rows]}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    atomic_write_text(out / "summary.md", format_table(rows, markdown=True) + "\n")
    return 0


def _draw(name: str, result, folder: Path) -> None:
    from sgdbound.plots import FIGURES, save_figure

    fig = FIGURES[name](result.measured, result.theory)
    save_figure(fig, folder, name)


# -- simulate ----------------------------------------------------------------------------------------------


def _simulate(args: argparse.Namespace) -> int:
    from sgdbound.experiments import make_problem, parse_target
    from sgdbound.experiments._common import as_dtype
    from sgdbound.io import provenance, write_json
    from sgdbound.sim import simulate

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    set_threads(args)
    try:
        with open(args.config, "rb") as handle:
            spec = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"--config {args.config}: not valid TOML ({error})") from None
    except OSError as error:
        raise ValueError(f"--config {args.config}: {error.strerror}") from None
    unknown = sorted(set(spec) - {"problem", "problem_seed", "out", "simulate"})
    if unknown:
        raise ValueError(f"--config: unknown top-level key(s) {unknown}; valid: problem, problem_seed, out, "
                         "[simulate]")
    kwargs = dict(spec.get("simulate", {}))
    problem = make_problem(spec.get("problem", "teacher"), int(spec.get("problem_seed", 0)))
    noise = kwargs.pop("noise", "onehot")
    kwargs["noise"] = [parse_target(n) for n in noise] if isinstance(noise, list) else parse_target(noise)
    if "dtype" in kwargs:
        kwargs["dtype"] = as_dtype(kwargs["dtype"])
    if "hidden" in kwargs and isinstance(kwargs["hidden"], list):
        kwargs["hidden"] = tuple(kwargs["hidden"])
    if "init" in kwargs and not isinstance(kwargs["init"], str):
        raise ValueError("--config: init must be 'optimum' or 'random' in a TOML file")
    try:
        trajs = simulate(problem, **kwargs)
    except TypeError as error:
        raise ValueError(f"--config [simulate]: {error}") from None
    trajs = trajs if isinstance(trajs, list) else [trajs]
    header = f"{'noise':<28} {'lr':>8} {'plateau ‖θ−θ*‖²':>17} {'± s.e.':>9} {'prediction':>11} {'bound':>10}"
    print(header)
    print("-" * len(header))
    for traj in trajs:
        bound = traj.bound.neighborhood if traj.bound is not None else None
        print(f"{traj.config['noise']:<28} {traj.config['lr']:>8.3g} {_fmt(traj.plateau()):>17} "
              f"{_fmt(traj.plateau_sem()):>9} {_fmt(traj.predicted_stationary):>11} {_fmt(bound):>10}")
        if math.isnan(traj.plateau()):
            print(f"{'':<28} {'':>8} excess risk plateau {_fmt(traj.plateau(metric='excess_risk'))}")
    out = args.out or spec.get("out")
    if out:
        write_json(out, {"config_file": str(args.config), "config": spec, **provenance(kwargs.get("seed", 0)),
                         "trajectories": [t.to_dict() for t in trajs]})
        print(f"wrote {out}")
    return 0


# -- bound -------------------------------------------------------------------------------------------------


def _problem_constants(name: str, target: str) -> dict[str, float]:
    from sgdbound.experiments import make_problem, parse_target
    from sgdbound.sim import simulate

    traj = simulate(make_problem(name), noise=parse_target(target), lr=1e-4, steps=1, replicas=1, device="cpu",
                    record_every=1, eval_size=16)
    return dict(traj.constants)


def _try_bound(function, **kwargs):
    """The bound, or the reason it does not apply (a step beyond the theorem's limit)."""
    try:
        return function(**kwargs)
    except ValueError as error:
        return str(error)


def _bound(args: argparse.Namespace) -> int:
    from sgdbound.theory import expected_smoothness, pl_bound, quasi_convex_bound

    constants: dict[str, float] = {}
    if args.problem:
        constants = _problem_constants(args.problem, args.target)
        print(f"constants of problem {args.problem!r} with {args.target} targets at θ* (linear student, batch 1, "
              f"streaming): " + ", ".join(f"{k}={v:.4g}" for k, v in constants.items()))
    mu = args.mu if args.mu is not None else constants.get("mu")
    lipschitz = args.lipschitz if args.lipschitz is not None else constants.get("lipschitz")
    lipschitz_max = args.lipschitz_max if args.lipschitz_max is not None else constants.get("lipschitz_max")
    sigma2 = args.sigma2 if args.sigma2 is not None else constants.get("sigma2")
    missing = [n for n, v in (("--mu", mu), ("--sigma2", sigma2)) if v is None]
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (give them, or --problem NAME)")
    mu, sigma2 = check_positive("--mu", mu), check_nonnegative("--sigma2", sigma2)
    for flag, value in (("--lipschitz", lipschitz), ("--lipschitz-max", lipschitz_max), ("--smoothness",
                                                                                        args.smoothness),
                        ("--step", args.step), ("--accuracy", args.accuracy)):
        if value is not None:
            check_positive(flag, value)
    check_nonnegative("--dist0", args.dist0), check_nonnegative("--gap0", args.gap0)
    if args.smoothness is not None:
        smoothness = args.smoothness
    elif lipschitz is not None and lipschitz_max is not None:
        smoothness = expected_smoothness(lipschitz=lipschitz, lipschitz_max=lipschitz_max, n=args.n,
                                         batch=args.batch)
    else:
        raise ValueError("give --smoothness, or both --lipschitz and --lipschitz-max")
    if mu > smoothness:
        raise ValueError(f"--mu ({mu:g}) cannot exceed the expected smoothness ℒ ({smoothness:g})")
    if args.batch > 1 and sigma2 and args.sigma2 is None:
        from sgdbound.theory import batch_noise

        sigma2 = batch_noise(sigma2=sigma2, n=args.n, batch=args.batch)
    print(f"μ = {mu:.4g}, ℒ = {smoothness:.4g}" + (f", L = {lipschitz:.4g}" if lipschitz else "")
          + f", σ² = {sigma2:.4g}, batch {args.batch}, n = {args.n:g}")
    rows: list[tuple[str, str, float, Any]] = []  # (theorem, quantity, limit, Bound or error text)
    if args.theorem in ("both", "quasi-convex"):
        limit = 1 / smoothness if sigma2 == 0 else 1 / (2 * smoothness)
        rows.append(("T1" if sigma2 == 0 else "T3", "E‖θ_t − θ*‖²", limit,
                     _try_bound(quasi_convex_bound, mu=mu, smoothness=smoothness, sigma2=sigma2,
                                step=limit if args.step is None else args.step, dist0=args.dist0)))
    if args.theorem in ("both", "pl"):
        if lipschitz is None:
            if args.theorem == "pl":
                raise ValueError("T2/T4 need --lipschitz (L)")
        else:
            limit = mu / (lipschitz * smoothness) * (1 if sigma2 == 0 else 0.5)
            rows.append(("T2" if sigma2 == 0 else "T4", "E[f(θ_t) − f*]", limit,
                         _try_bound(pl_bound, mu=mu, lipschitz=lipschitz, smoothness=smoothness, sigma2=sigma2,
                                    step=limit if args.step is None else args.step, gap0=args.gap0)))
    accuracy = args.accuracy
    if accuracy is None:
        largest = max([b.neighborhood for *_, b in rows if not isinstance(b, str)], default=0.0)
        accuracy = 2 * largest if largest > 0 else 1e-6
    header = f"{'theorem':<8} {'quantity':<15} {'step':>10} {'max step':>10} {'rate 1−γμ':>12} " \
             f"{'neighbourhood':>14} {'iterations to ' + format(accuracy, '.3g'):>22}"
    print(header)
    print("-" * len(header))
    for theorem, quantity, limit, bound in rows:
        if isinstance(bound, str):
            step = limit if args.step is None else args.step
            print(f"{theorem:<8} {quantity:<15} {step:>10.4g} {limit:>10.4g}  not admissible: {bound}")
            continue
        iterations = bound.iterations(accuracy)
        shown = "never (below the neighbourhood)" if iterations == math.inf else f"{int(iterations):,}"
        print(f"{bound.theorem:<8} {quantity:<15} {bound.step:>10.4g} {bound.max_step:>10.4g} {bound.rate:>12.8f} "
              f"{_fmt(bound.neighborhood):>14} {shown:>22}")
    return 0
