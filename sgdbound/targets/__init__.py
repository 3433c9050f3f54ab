"""Supervision models: what a student is trained on, as a random target ``t`` around the BCPs.

Each model states its first two moments given the Bayes class probabilities ``P = bcp``: ``mean(bcp)``
``(n, K)`` and ``covariance(bcp)`` ``(n, K, K)`` (of ``t`` given ``x``), and draws targets with
``sample(bcp, y, generator)``. The gradient noise a model puts into SGD at the optimum is
``E tr(C(x) G(x))`` (see ``sgdbound.theory.predicted_noise``).
"""

from sgdbound.targets.models import (
    TARGETS,
    Dirichlet,
    Exact,
    Gaussian,
    Mix,
    OneHot,
    SupervisionModel,
    Temperature,
    get_target,
)

__all__ = ["TARGETS", "Dirichlet", "Exact", "Gaussian", "Mix", "OneHot", "SupervisionModel", "Temperature",
           "get_target"]
