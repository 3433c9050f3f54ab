"""The teacher registry and the non-variational teachers.

``TEACHERS`` maps a name to a ``Teacher`` class (``sgdbound.kd.teacher_base``); ``make_teacher`` builds one for a
dataset. Every teacher answers ``probs(x, samples=S, temperature=T)`` with ``(n, K)`` probabilities, the
temperature applied to each sample's logits before averaging.

* ``deterministic``: one net trained with cross-entropy; its ``S`` samples are identical.
* ``mc_dropout``: the same net with dropout ``p`` on the last hidden layer, kept on at prediction time
  (Gal & Ghahramani 2016, last-layer variant): features computed once, ``S`` masks applied to them.
* ``ensemble``: ``members`` nets from different seeds (Lakshminarayanan et al. 2017); its samples are the
  members, so ``S`` is capped at ``members`` (the first ``S`` members are used).
* ``vi``, ``laplace``: see ``sgdbound.kd.bayes_teachers``.
"""

from __future__ import annotations

import torch

from sgdbound.kd.bayes_teachers import LaplaceTeacher, VITeacher
from sgdbound.kd.data import Dataset
from sgdbound.kd.nets import make_net
from sgdbound.kd.teacher_base import Teacher
from sgdbound.kd.train import OptimConfig

__all__ = ["Teacher", "DeterministicTeacher", "MCDropoutTeacher", "EnsembleTeacher", "VITeacher", "LaplaceTeacher",
           "TEACHERS", "make_teacher", "check_teacher_name"]


class DeterministicTeacher(Teacher):
    """No options: a net trained by cross-entropy (the official ``Deterministic`` teacher)."""

    kind = "deterministic"

    def _fit(self, x, y):
        self.net = self._train_net(x, y, self.seed)

    def sample_logits(self, x, samples):
        return self.net(x)[None].expand(samples, -1, -1)


class MCDropoutTeacher(Teacher):
    """Options: ``p``, the dropout probability on the last hidden layer (training and prediction)."""

    kind = "mc_dropout"
    defaults = {"p": 0.2}

    def _fit(self, x, y):
        p = float(self.options["p"])
        if not 0 < p < 1:
            raise ValueError(f"dropout p must lie in (0, 1), got {p}")
        self.net = self._train_net(x, y, self.seed, dropout=p)

    def sample_logits(self, x, samples):
        p = float(self.options["p"])
        feats = self.net.features(x)  # once for all S samples
        keep = torch.bernoulli(torch.full((samples, *feats.shape), 1 - p, dtype=feats.dtype)) / (1 - p)
        return self.net.head(feats[None] * keep)


class EnsembleTeacher(Teacher):
    """Options: ``members`` (default 5), each trained from its own seed on the same data."""

    kind = "ensemble"
    defaults = {"members": 5}

    def _fit(self, x, y):
        members = int(self.options["members"])
        if members < 1:
            raise ValueError(f"members must be >= 1, got {members}")
        self.nets = [self._train_net(x, y, self.seed + 101 * m) for m in range(members)]

    def sample_logits(self, x, samples):
        return torch.stack([net(x) for net in self.nets[: min(samples, len(self.nets))]])


TEACHERS: dict[str, type[Teacher]] = {
    "deterministic": DeterministicTeacher,
    "vi": VITeacher,
    "laplace": LaplaceTeacher,
    "mc_dropout": MCDropoutTeacher,
    "ensemble": EnsembleTeacher,
}


def check_teacher_name(name: str) -> None:
    if name not in TEACHERS:
        raise ValueError(f"unknown teacher {name!r}; valid: {', '.join(TEACHERS)}")


def make_teacher(name: str, data: Dataset, *, net: str = "cnn", net_options: dict | None = None, epochs: int = 30,
                 optim: OptimConfig | None = None, seed: int = 0, cache: dict | None = None,
                 cache_key: str | None = None, **options) -> Teacher:
    """An unfitted teacher of kind ``name`` whose nets (``net``: a ``sgdbound.kd.nets`` name) fit ``data``.
    ``cache``/``cache_key``: share trained nets between teachers (see ``Teacher._train_net``)."""
    check_teacher_name(name)
    net_options = dict(net_options or {})

    def factory(**extra):
        return make_net(net, data.dim, data.num_classes, data.input_shape, **{**net_options, **extra})

    key = None if cache_key is None else f"{cache_key}|{net}|{sorted(net_options.items())}"
    return TEACHERS[name](factory, epochs=epochs, optim=optim, seed=seed, cache=cache, cache_key=key, **options)
