"""Bayesian teachers from the two libraries the official code builds on.

* ``VITeacher``: mean-field Gaussian variational inference with bayesian-torch's reparameterisation layers
  (``dnn_to_bnn`` turns every ``Linear``/``Conv`` of the net into a Bayesian layer). The loss is the per-example
  negative ELBO ``CE + β_e · KL(q ‖ prior) / N``, the KL scaled by the training-set size ``N``; the KL weight
  ``β_e`` is 0 for ``ml_epochs`` epochs, then grows by ``1/anneal_epochs`` per epoch to 1 (the official
  ``train_teacher_deterministic_VI.py`` schedule). Every layer is stochastic; bayesian-torch draws one weight
  sample per call, but :func:`sgdbound.kd.vi_batch.vi_logit_samples` runs all ``S`` draws in one vmapped pass
  off the CPU (the same draws as ``S`` passes; on the CPU, where the loop is as fast, it loops).
* ``LaplaceTeacher``: a deterministic net, then laplace-torch's post-hoc Laplace approximation (default:
  last layer, Kronecker-factored GGN, prior precision by marginal likelihood). The predictive is the
  linearised (GLM) one: ``link="probit"`` (closed form) or ``"mc"`` (``S`` logit draws from
  ``N(f_μ, f_Σ)``). Last-layer features are computed once per input, whatever ``S``.
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sgdbound.kd.teacher_base import Teacher
from sgdbound.kd.train import fit_classifier, seeded

__all__ = ["VITeacher", "LaplaceTeacher", "kl_weight"]


def kl_weight(epoch: int, ml_epochs: int, anneal_epochs: int) -> float:
    """The KL factor in epoch ``epoch`` (0-based): 0 before ``ml_epochs``, then ``(epoch − ml_epochs) /
    anneal_epochs`` capped at 1 (1 throughout when both are 0)."""
    if epoch < ml_epochs:
        return 0.0
    if anneal_epochs <= 0:
        return 1.0
    return min(1.0, (epoch - ml_epochs) / anneal_epochs)


class VITeacher(Teacher):
    """Options: ``prior_sigma`` (the prior N(0, σ²)'s σ as bayesian-torch takes it), ``rho_init`` (initial
    posterior ``ρ``, σ = softplus(ρ)), ``ml_epochs``, ``anneal_epochs`` (None: half the epochs),
    ``moped`` (initialise the means from a deterministic net trained first, as MOPED does)."""

    kind = "vi"
    defaults = {"prior_sigma": 1.0, "rho_init": -4.0, "ml_epochs": 0, "anneal_epochs": None, "moped": False}

    def _fit(self, x, y):
        from bayesian_torch.models.dnn_to_bnn import dnn_to_bnn, get_kl_loss

        opts = self.options
        with seeded(self.seed):  # the net's and the Bayesian layers' initialisation
            self._fit_seeded(x, y, opts, dnn_to_bnn, get_kl_loss)

    def _fit_seeded(self, x, y, opts, dnn_to_bnn, get_kl_loss):
        net = self.net_factory()
        if opts["moped"]:
            net = copy.deepcopy(self._train_net(x, y, self.seed))
        for module in net.modules():
            if isinstance(module, nn.Conv1d):
                # bayesian-torch 0.5's Conv1dReparameterization wants ints where nn.Conv1d keeps 1-tuples.
                for attr in ("kernel_size", "stride", "padding", "dilation"):
                    setattr(module, attr, getattr(module, attr)[0])
        dnn_to_bnn(net, {"prior_mu": 0.0, "prior_sigma": float(opts["prior_sigma"]), "posterior_mu_init": 0.0,
                         "posterior_rho_init": float(opts["rho_init"]), "type": "Reparameterization",
                         "moped_enable": bool(opts["moped"]), "moped_delta": 0.1})
        n = x.shape[0]
        anneal = self.epochs // 2 if opts["anneal_epochs"] is None else int(opts["anneal_epochs"])
        ml = int(opts["ml_epochs"])

        def elbo(model, xb, yb, epoch):
            loss = F.cross_entropy(model(xb), yb)
            factor = kl_weight(epoch, ml, anneal)
            return loss + factor * get_kl_loss(model) / n if factor > 0 else loss

        self.net = fit_classifier(net, x, y, epochs=self.epochs, optim=self.optim, seed=self.seed + 1, loss_fn=elbo)

    def sample_logits(self, x, samples):
        """``S`` weight draws ``(S, n, K)``, batched in one vmapped pass off the CPU (see ``sgdbound.kd.vi_batch``)."""
        from sgdbound.kd.vi_batch import vi_logit_samples

        return vi_logit_samples(self.net, x, samples)


class LaplaceTeacher(Teacher):
    """Options: ``subset`` (``last_layer`` or ``all``), ``hessian`` (``kron``, ``diag``, ``full``), ``link``
    (``probit`` or ``mc``), ``prior`` (``marglik``: optimise the prior precision by the marginal likelihood;
    or a number, a fixed prior precision)."""

    kind = "laplace"
    defaults = {"subset": "last_layer", "hessian": "kron", "link": "probit", "prior": "marglik"}

    def _fit(self, x, y):
        from laplace import Laplace

        opts = self.options
        if opts["link"] not in ("probit", "mc"):
            raise ValueError(f"link must be 'probit' or 'mc', got {opts['link']!r}")
        net = copy.deepcopy(self._train_net(x, y, self.seed))  # the deterministic teacher's net (MAP)
        la = Laplace(net, "classification", subset_of_weights=opts["subset"], hessian_structure=opts["hessian"])
        la.fit(DataLoader(TensorDataset(x, y), batch_size=256))
        if opts["prior"] == "marglik":
            with warnings.catch_warnings():  # a reminder about link_approx, which marglik does not use
                warnings.filterwarnings("ignore", message="By default `link_approx`")
                la.optimize_prior_precision(method="marglik", pred_type="glm", link_approx="probit")
        else:
            la.prior_precision = float(opts["prior"])
        self.net, self.la = net, la

    def _glm(self, x):
        # (n, K) mean and (n, K, K) covariance of the linearised logits; one feature pass.
        return self.la._glm_predictive_distribution(x)

    @staticmethod
    def gaussian_logit_samples(f_mu: torch.Tensor, f_var: torch.Tensor, samples: int) -> torch.Tensor:
        """``samples`` draws ``(S, n, K)`` of ``N(f_mu, f_var)``, ``f_mu`` ``(n, K)``, ``f_var`` ``(n, K, K)``."""
        eye = torch.eye(f_var.shape[-1], dtype=f_var.dtype, device=f_var.device)
        chol = torch.linalg.cholesky(f_var + 1e-9 * eye)
        eps = torch.randn(samples, *f_mu.shape, dtype=f_mu.dtype, device=f_mu.device)
        return f_mu + torch.einsum("nkl,snl->snk", chol, eps)

    @staticmethod
    def probit(f_mu: torch.Tensor, f_var: torch.Tensor, temperature: float) -> torch.Tensor:
        """softmax(f / T) with f ~ N(μ, Σ): probit on N(μ/T, Σ/T²), κ = 1/sqrt(1 + π/8 · diag Σ / T²)."""
        kappa = 1 / torch.sqrt(1 + math.pi / 8 * f_var.diagonal(dim1=1, dim2=2) / temperature**2)
        return torch.softmax(kappa * f_mu / temperature, dim=-1)

    def sample_logits(self, x, samples):
        return self.gaussian_logit_samples(*self._glm(x), samples)

    def _mean_probs(self, x, samples, temperature):
        if self.options["link"] != "probit":
            return None
        return self.probit(*self._glm(x), temperature)

    def marginal_likelihood(self) -> float:
        """The Laplace log marginal likelihood at the fitted prior precision."""
        return self.la.log_marginal_likelihood().item()
