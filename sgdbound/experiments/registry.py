"""The registry of named experiments, their quick settings, and their results on disk.

``EXPERIMENTS[name]`` is the experiment function (``(**config) -> (measured, theory)``); ``SPECS[name]`` adds
its quick overrides, result types and summary. ``run_experiment`` resolves a configuration (signature defaults,
then the quick overrides, then yours), runs it and returns an ``ExperimentResult`` that ``save_result`` writes
as JSON (config, seed, package version, git commit, measured, theory, summary) and ``load_result`` reads back
into the same dataclasses.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import time
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sgdbound.experiments import official as _nb
from sgdbound.experiments import plateaus as _plat
from sgdbound.experiments import realizability as _interp
from sgdbound.experiments import students as _stud
from sgdbound.experiments._common import SummaryRow
from sgdbound.io import provenance, read_json, to_jsonable, write_json

__all__ = ["ExperimentSpec", "SPECS", "EXPERIMENTS", "ExperimentResult", "experiment_config", "run_experiment",
           "save_result", "load_result", "result_matches"]


@dataclass(frozen=True)
class ExperimentSpec:
    """An experiment: its function, the result dataclasses it returns, its summary and its quick overrides."""

    function: Callable[..., tuple[Any, Any]]
    measured_type: type
    theory_type: type
    summarize: Callable[[Any, Any], list[SummaryRow]]
    quick: Mapping[str, Any]
    title: str


_QUICK_LINEAR = {"replicas": 64, "theory_samples": 8192, "record_every": 100, "eval_size": 256}

SPECS: dict[str, ExperimentSpec] = {
    "interpolation": ExperimentSpec(_interp.interpolation, _interp.InterpolationMeasured,
                                    _interp.InterpolationTheory, _interp.summarize_interpolation,
                                    {**_QUICK_LINEAR, "steps": 4000, "lr": 0.016},
                                    "Exact vs one-hot vs noisy BCPs"),
    "step_size": ExperimentSpec(_plat.step_size, _plat.StepSizeMeasured, _plat.StepSizeTheory,
                                _plat.summarize_step_size,
                                {**_QUICK_LINEAR, "steps": 6000, "lrs": (0.008, 0.016, 0.032)},
                                "Plateau against the step size"),
    "teacher_noise": ExperimentSpec(_plat.teacher_noise, _plat.TeacherNoiseMeasured, _plat.TeacherNoiseTheory,
                                    _plat.summarize_teacher_noise,
                                    {**_QUICK_LINEAR, "steps": 4000, "lr": 0.016, "nus": (0.001, 0.004),
                                     "alphas": (1.0, 9.0)},
                                    "Plateau against the teacher's noise"),
    "lambda_sweep": ExperimentSpec(_plat.lambda_sweep, _plat.LambdaMeasured, _plat.LambdaTheory,
                                   _plat.summarize_lambda_sweep,
                                   {**_QUICK_LINEAR, "steps": 4000, "lr": 0.016, "lams": (0.0, 0.25, 0.5, 0.75, 1.0)},
                                   "Distillation weight λ"),
    "capacity": ExperimentSpec(_interp.capacity, _interp.CapacityMeasured, _interp.CapacityTheory,
                               _interp.summarize_capacity, {**_QUICK_LINEAR, "steps": 4000, "lr": 0.016},
                               "Capacity: a non-realizable problem"),
    "adam": ExperimentSpec(_stud.adam, _stud.AdamMeasured, _stud.AdamTheory, _stud.summarize_adam,
                           {**_QUICK_LINEAR, "replicas": 48, "steps": 4000},
                           "Adam against SGD"),
    "mlp_students": ExperimentSpec(_stud.mlp_students, _stud.MLPMeasured, _stud.MLPTheory,
                                   _stud.summarize_mlp_students,
                                   {"replicas": 8, "steps": 4000, "record_every": 200, "eval_size": 1024},
                                   "MLP students"),
    "notebook": ExperimentSpec(_nb.notebook, _nb.NotebookMeasured, _nb.NotebookTheory, _nb.summarize_notebook,
                               {"points": 4000, "replicas": 2, "record_every": 100},
                               "Official notebook replica"),
}
"""Every experiment, by name, in the order ``sgdbound reproduce`` runs them."""

EXPERIMENTS: dict[str, Callable[..., tuple[Any, Any]]] = {name: spec.function for name, spec in SPECS.items()}
"""``{name: function}``; each function returns ``(measured, theory)`` dataclasses."""


def _spec(name: str) -> ExperimentSpec:
    if name not in SPECS:
        raise ValueError(f"unknown experiment {name!r}; valid: {', '.join(SPECS)}")
    return SPECS[name]


def _plain(value: Any) -> Any:
    """Tuples to lists, so a configuration compares equal to its JSON round trip."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def experiment_config(name: str, quick: bool = False, **overrides) -> dict[str, Any]:
    """The full keyword configuration of an experiment: its defaults, the quick overrides when ``quick``, then
    ``overrides`` (unknown keys raise ``ValueError``)."""
    spec = _spec(name)
    params = inspect.signature(spec.function).parameters
    config = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(f"experiment {name!r} has no parameter(s) {unknown}; valid: {sorted(config)}")
    if quick:
        config.update(spec.quick)
    config.update(overrides)
    return {k: _plain(v) for k, v in config.items()}


@dataclass
class ExperimentResult:
    """One experiment's run: ``config`` (all keyword arguments), ``measured`` and ``theory`` dataclasses,
    the ``summary`` rows, the wall time in seconds and the provenance stamp."""

    name: str
    config: dict[str, Any]
    measured: Any
    theory: Any
    summary: list[SummaryRow]
    seconds: float
    provenance: dict[str, Any] = field(default_factory=dict)
    quick: bool = False


def run_experiment(name: str, quick: bool = False, **overrides) -> ExperimentResult:
    """Run experiment ``name`` with its resolved configuration (see ``experiment_config``)."""
    spec = _spec(name)
    config = experiment_config(name, quick, **overrides)
    start = time.perf_counter()
    measured, theory = spec.function(**config)
    seconds = time.perf_counter() - start
    return ExperimentResult(name, config, measured, theory, spec.summarize(measured, theory), seconds,
                            provenance(config.get("seed")), quick)


def save_result(result: ExperimentResult, path: str | os.PathLike) -> None:
    """Write ``result`` as JSON (atomically)."""
    write_json(path, {"experiment": result.name, "quick": result.quick, "config": result.config,
                      "seed": result.config.get("seed"), **result.provenance, "seconds": result.seconds,
                      "measured": result.measured, "theory": result.theory,
                      "summary": [dataclasses.asdict(r) for r in result.summary]})


def _float(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, str):
        return float(value)  # "inf" / "-inf"
    return float(value)


def _build(kind: Any, value: Any) -> Any:
    """Rebuild a value of annotated type ``kind`` from its JSON form."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        return _build(options[0], value)
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        return kind(**{f.name: _build(hints[f.name], value[f.name]) for f in dataclasses.fields(kind)
                       if f.name in value})
    if kind is np.ndarray:
        return np.asarray([math.nan if v is None else float(v) for v in np.ravel(value)], dtype=float).reshape(
            np.shape(value)) if value else np.asarray([], dtype=float)
    if origin is dict:
        _, item = typing.get_args(kind)
        return {k: _build(item, v) for k, v in value.items()}
    if origin is list:
        (item,) = typing.get_args(kind)
        return [_build(item, v) for v in value]
    if kind is float:
        return _float(value)
    return value


def load_result(path: str | os.PathLike) -> ExperimentResult:
    """Read a results JSON written by ``save_result`` back into its dataclasses."""
    payload = read_json(path)
    spec = _spec(payload["experiment"])
    summary = [_build(SummaryRow, row) for row in payload.get("summary", [])]
    prov = {k: payload.get(k) for k in ("sgdbound_version", "git_commit", "torch", "seed")}
    return ExperimentResult(payload["experiment"], payload["config"], _build(spec.measured_type, payload["measured"]),
                            _build(spec.theory_type, payload["theory"]), summary, payload.get("seconds", math.nan),
                            prov, bool(payload.get("quick", False)))


def result_matches(path: str | os.PathLike, config: Mapping[str, Any]) -> bool:
    """True when ``path`` holds a result computed with exactly ``config``."""
    try:
        payload = read_json(path)
    except (OSError, ValueError):
        return False
    return payload.get("config") == to_jsonable(dict(config))
