"""sgdbound: check the SGD theory of knowledge distillation with Bayesian teachers, numerically.

Parts (DESIGN.md §2): ``data`` (problems with exact Bayes class probabilities), ``targets`` (supervision
models), ``models`` (students), ``theory`` (gradient noise, constants, bounds, stationary prediction),
``sim`` (the vectorised SGD simulator), ``kd`` (distillation pipeline), ``experiments``, ``plots``, ``cli``.
"""

__version__ = "0.1.0"
