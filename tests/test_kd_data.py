"""Datasets built offline, the official few-shot rule, nets and metrics against hand formulas."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from sgdbound.kd.data import few_shot_count, few_shot_indices, load_dataset
from sgdbound.kd.metrics import brier, convergence_noise, ece, nll, prob_metrics
from sgdbound.kd.nets import make_net


@pytest.mark.parametrize("n,beta,k", [(500, 0.05, 25), (500, 0.01, 5), (500, 0.001, 1), (10, 0.25, 3), (10, 0.15, 2),
                                      (7, 0.5, 4), (3, 0.01, 1), (400, 1.0, 400)])
def test_official_count(n, beta, k):
    """k = max(1, int(n·β + 0.5)), as create_cifar_subsets.py computes it (halves round up)."""
    assert few_shot_count(n, beta) == k == max(1, int(n * beta + 0.5))


@settings(max_examples=25, deadline=None)
@given(beta=st.floats(0.01, 1.0), seed=st.integers(0, 10_000))
def test_few_shot_subset(beta, seed):
    y = torch.tensor([0] * 37 + [1] * 50 + [2] * 13)[torch.randperm(100, generator=torch.Generator().manual_seed(3))]
    idx = few_shot_indices(y, beta, seed)
    assert len(set(idx.tolist())) == len(idx)
    for cls, n_class in ((0, 37), (1, 50), (2, 13)):
        assert (y[idx] == cls).sum().item() == few_shot_count(n_class, beta)
    assert torch.equal(idx, few_shot_indices(y, beta, seed))


def test_few_shot_seeds_differ_and_bad_beta():
    y = torch.arange(10).repeat(50)
    assert not torch.equal(few_shot_indices(y, 0.1, 0), few_shot_indices(y, 0.1, 1))
    assert torch.equal(few_shot_indices(y, 1.0, 0), torch.arange(500))
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="beta"):
            few_shot_indices(y, bad, 0)


def test_digits_and_mixture():
    digits = load_dataset("digits")
    assert digits.x_train.shape == (1437, 64) and digits.x_test.shape == (360, 64) and digits.input_shape == (8, 8)
    assert torch.bincount(digits.y_train).min() >= 135
    mix = load_dataset("mixture")
    assert mix.bcp_train.shape == (2000, 5) and mix.x_train.dtype == torch.float32
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; valid: digits, mixture, mnist1d"):
        load_dataset("cifar")


@pytest.mark.slow
def test_mnist1d_is_generated_offline_and_leaves_global_rng_alone():
    np.random.seed(5)  # noqa: NPY002
    random.seed(5)
    before_np, before_py = np.random.get_state()[1].copy(), random.getstate()  # noqa: NPY002
    data = load_dataset("mnist1d")
    assert data.x_train.shape == (4000, 40) and data.x_test.shape == (1000, 40) and data.num_classes == 10
    assert abs(data.x_train.mean().item()) < 1e-5
    assert np.array_equal(np.random.get_state()[1], before_np)  # noqa: NPY002
    assert random.getstate() == before_py


@pytest.mark.parametrize("name,dataset", [("mlp", "digits"), ("cnn", "digits"), ("cnn", "mixture")])
def test_nets_shapes(name, dataset):
    data = load_dataset(dataset)
    net = make_net(name, data.dim, data.num_classes, data.input_shape)
    assert net(data.x_test[:7]).shape == (7, data.num_classes)
    assert net.features(data.x_test[:7]).shape[0] == 7
    assert list(net.modules())[-1] is net.head


def test_metrics_against_hand_formulas():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    y = torch.tensor([0, 2, 2])
    assert nll(p, y) == pytest.approx(-(np.log(0.7) + np.log(0.3) + np.log(0.4)) / 3)
    hand = ((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.6**2 + 0.7**2) + (0.3**2 + 0.3**2 + 0.6**2)) / 3
    assert brier(p, y) == pytest.approx(hand)
    # one bin holding everything: |mean confidence − accuracy|
    assert ece(p, y, n_bins=1) == pytest.approx(abs((0.7 + 0.6 + 0.4) / 3 - 2 / 3), abs=1e-6)
    assert prob_metrics(p, y).accuracy == pytest.approx(2 / 3)


def test_convergence_noise():
    assert convergence_noise([0.1, 0.5, 0.6, 0.7], 3) == pytest.approx(np.std([0.5, 0.6, 0.7]))
    assert convergence_noise([0.5, 0.5], 5) == 0.0
    assert np.isnan(convergence_noise([0.5], 5))
    with pytest.raises(ValueError, match="last"):
        convergence_noise([0.5], 0)
    assert_close(torch.tensor(convergence_noise([1.0, 3.0], 2)), torch.tensor(1.0))
