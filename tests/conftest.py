"""Shared test set-up: one BLAS thread per test process (``make test`` runs two processes on small matrices,
where thread hand-offs cost more than they save)."""

import torch

torch.set_num_threads(1)

from hypothesis import settings  # noqa: E402

# Property tests draw the same examples on every run (CI must not flake on a new random draw).
settings.register_profile("sgdbound", derandomize=True, deadline=None)
settings.load_profile("sgdbound")
