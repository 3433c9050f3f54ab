"""Shared test set-up: one BLAS thread per test process (``make test`` runs two processes on small matrices,
where thread hand-offs cost more than they save)."""

import torch

torch.set_num_threads(1)
