"""Distillation with Bayesian teachers (DESIGN.md §2, ``sgdbound/kd``): the scale-up of the theory.

* ``loss``: ``distillation_loss`` in the official (``λ T_t T_s KL``) and Hinton (``λ T² KL``) conventions;
* ``teachers``: ``TEACHERS`` registry (deterministic, vi, laplace, mc_dropout, ensemble), one interface;
* ``data``, ``nets``: mnist1d, digits and a Gaussian mixture; few-shot subsets; MLP and 1-D/2-D CNNs;
* ``train``, ``metrics``, ``distill``: training with per-epoch checkpoints and exact resume; accuracy, ECE,
  NLL, Brier, convergence noise;
* ``sweep``, ``report``, ``study``: grids of runs, tables and figures, the small-data study;
* ``synthetic``: teachers on a Gaussian mixture, their distance to the exact BCPs and the gradient noise it
  predicts for a student at the Bayes-optimal parameters.
"""

from sgdbound.kd.data import DATASETS, Dataset, few_shot_count, few_shot_indices, load_dataset
from sgdbound.kd.distill import DistillConfig, DistillResult, distill
from sgdbound.kd.loss import Convention, distillation_loss, tempered_probs
from sgdbound.kd.metrics import brier, convergence_noise, ece, nll, prob_metrics
from sgdbound.kd.nets import NETS, make_net
from sgdbound.kd.sweep import expand_grid, sweep
from sgdbound.kd.teachers import TEACHERS, Teacher, make_teacher

__all__ = ["DATASETS", "Dataset", "few_shot_count", "few_shot_indices", "load_dataset", "DistillConfig",
           "DistillResult", "distill", "Convention", "distillation_loss", "tempered_probs", "brier",
           "convergence_noise", "ece", "nll", "prob_metrics", "NETS", "make_net", "expand_grid", "sweep", "TEACHERS",
           "Teacher", "make_teacher"]
