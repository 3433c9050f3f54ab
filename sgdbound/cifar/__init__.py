"""CIFAR-100 scale-up (issue 5): the official data format and augmentation, a device-resident loader, the
official few-shot subsets, the CIFAR networks of the official code, and presets for the paper's runs.

* ``data``: :func:`load_cifar100`, :class:`DeviceLoader`, :func:`augment_batch` (and its slow twin
  :func:`reference_augment`), :func:`fewshot_indices`, :func:`write_fake_cifar100`;
* ``models``: :data:`MODELS`, :func:`build_model`;
* ``presets``: :data:`PRESETS`, :func:`get_preset`, the paper's reported accuracies, :func:`preset_configs`;
* ``teachers``, ``kd``, ``report`` (imported on use): CIFAR teachers behind the ``sgdbound.kd`` interface, the
  distillation run ``sgdbound.kd.distill`` dispatches to for ``dataset="cifar100"`` (GPU options, DDP), and the
  paper's table beside ours.
"""

from sgdbound.cifar.data import (
    CIFAR100_MEAN,
    CIFAR100_STD,
    CifarSplit,
    DeviceLoader,
    augment_batch,
    check_data_root,
    fewshot_count,
    fewshot_indices,
    load_cifar100,
    reference_augment,
    write_fake_cifar100,
)
from sgdbound.cifar.models import MODELS, build_model, count_parameters
from sgdbound.cifar.presets import PAPER_ACCURACY, PRESETS, get_preset

__all__ = ["CIFAR100_MEAN", "CIFAR100_STD", "CifarSplit", "DeviceLoader", "augment_batch", "check_data_root",
           "fewshot_count", "fewshot_indices", "load_cifar100", "reference_augment", "write_fake_cifar100",
           "MODELS", "build_model", "count_parameters", "PAPER_ACCURACY", "PRESETS", "get_preset"]
