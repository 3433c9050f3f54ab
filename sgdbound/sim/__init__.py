"""The vectorised SGD simulator: R replicas × configurations in one batched program on CPU or GPU."""

from sgdbound.sim.optimum import LinearTheory, fit_linear, flat_distance_sq, linear_theory
from sgdbound.sim.simulate import resolve_device, simulate
from sgdbound.sim.trajectory import METRICS, Trajectory

__all__ = ["METRICS", "LinearTheory", "Trajectory", "fit_linear", "flat_distance_sq", "linear_theory",
           "resolve_device", "simulate"]
