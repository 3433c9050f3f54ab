"""The batched VI sampler against its slow twin, bayesian-torch's own forward (one weight draw per call).

Each batched result is compared with the ``S``-pass loop: with the noise bayesian-torch itself drew (read back from
its eps buffers), with the default draws (the same generator stream), under bf16 autocast (to bf16 precision),
and through the two teachers' ``probs``; the Monte Carlo mean of the batched samples converges to the loop's.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from sgdbound.cifar.models import build_model
from sgdbound.cifar.teachers import VICifarTeacher, bayesianize
from sgdbound.kd import vi_batch
from sgdbound.kd.bayes_teachers import VITeacher
from sgdbound.kd.nets import make_net
from sgdbound.kd.train import seeded
from sgdbound.kd.vi_batch import _TWINS, vi_eps_names, vi_logit_samples, vi_logit_samples_loop

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _vi_teacher(net: str, dim: int, **net_options) -> VITeacher:
    """A VITeacher (so bayesianised as it does it, Conv1d quirk included), one epoch on random data."""
    x, y = torch.randn(40, dim, generator=torch.Generator().manual_seed(0)), torch.arange(40) % 3
    with torch.enable_grad():
        return VITeacher(lambda: make_net(net, dim, 3, **net_options), epochs=1, seed=0, rho_init=-2.0).fit(x, y)


def _wrn() -> nn.Module:
    """A bayesianised ``wrn_16_1`` with BatchNorm statistics that are not the identity, in eval mode."""
    with seeded(0):
        net = bayesianize(build_model("wrn_16_1", 10), rho_init=-3.0)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


class _Geometry(nn.Module):
    """The layer settings the twin must copy: a Conv3d, a strided, dilated, grouped Conv2d with bias, bias-free and
    biased Linears; ``head`` registered before ``fc`` but called after it (draws follow the calls)."""

    def __init__(self):
        super().__init__()
        self.c3 = nn.Conv3d(1, 4, 3, stride=(1, 2, 1), padding=1, bias=False)
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2)
        self.head = nn.Linear(5, 3)
        self.fc = nn.Linear(6 * 4 * 2, 5, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.c3(x.view(-1, 1, 4, 4, 4))).flatten(2, 3)  # (n, 4, 8, 4)
        h = torch.relu(self.c2(h))  # (n, 6, 4, 2)
        return self.head(torch.relu(self.fc(h.flatten(1))))


def _inputs(*shape: int) -> torch.Tensor:
    """Fixed inputs (torch's global seed is random per process: unseeded inputs made tolerances flaky)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


CASES = {  # name -> (bayesianised net in eval mode, inputs)
    "mlp": lambda: (_vi_teacher("mlp", 6, hidden=[8, 8]).net, _inputs(5, 6)),
    "cnn1d": lambda: (_vi_teacher("cnn1d", 16, channels=4, hidden=8).net, _inputs(5, 16)),
    "wrn_16_1": lambda: (_wrn(), _inputs(3, 3, 32, 32)),
    "geometry": lambda: (bayesianize(_Geometry(), rho_init=-2.0).eval(), _inputs(5, 64)),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    with seeded(1):
        return CASES[request.param]()


def _own_forward(net: nn.Module, x: torch.Tensor, samples: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``samples`` calls of the net, and the noise bayesian-torch drew for them (its eps buffers after each call)."""
    buffers = dict(net.named_buffers())
    outs, eps = [], {name: [] for name in vi_eps_names(net)}
    for _ in range(samples):
        outs.append(net(x))
        for name in eps:
            eps[name].append(buffers[name].clone())
    return torch.stack(outs), {name: torch.stack(values) for name, values in eps.items()}


@pytest.mark.parametrize("samples", [1, 3])
@torch.no_grad()
def test_equals_bayesian_torch_forward_with_its_noise(case, samples):
    net, x = case
    expected, eps = _own_forward(net, x, samples)
    assert expected.std(0).max() > 1e-3 if samples > 1 else True  # the draws differ: the test can fail
    assert_close(vi_logit_samples(net, x, samples, eps=eps), expected, **TOL)


@torch.no_grad()
def test_default_draws_are_the_loops_and_grouping_changes_nothing(case):
    net, x = case
    with seeded(5):
        loop = vi_logit_samples_loop(net, x, 5)
    for group in (None, 1, 2, 5):
        with seeded(5):
            batched = vi_logit_samples(net, x, 5, max_batch_samples=group, method="batched")
        assert_close(batched, loop, **TOL)


@torch.no_grad()
def test_grouping_with_given_noise_is_identical():
    net, x = CASES["wrn_16_1"]()
    _, eps = _own_forward(net, x, 4)
    whole = vi_logit_samples(net, x, 4, eps=eps)
    for group in (1, 3):
        assert_close(vi_logit_samples(net, x, 4, eps=eps, max_batch_samples=group), whole, rtol=1e-6, atol=1e-6)


@torch.no_grad()
def test_under_bf16_autocast_matches_the_loop_to_bf16_precision():
    net, x = CASES["wrn_16_1"]()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with seeded(2):
            loop = vi_logit_samples_loop(net, x, 3)
        with seeded(2):
            batched = vi_logit_samples(net, x, 3, method="batched")
    assert batched.dtype == loop.dtype == torch.bfloat16
    scale = loop.float().abs().max()
    assert (batched.float() - loop.float()).abs().max() <= 0.02 * scale  # bf16: 2^-8 per op, a few ops deep


def test_vi_teacher_probs_reproducible_and_equal_to_batched_draws():
    teacher = _vi_teacher("mlp", 6, hidden=[8])
    x = torch.randn(7, 6)
    mean = teacher.probs(x, samples=6, seed=3)
    assert torch.equal(teacher.probs(x, samples=6, seed=3), mean)
    with torch.no_grad(), seeded(3):
        batched = torch.softmax(vi_logit_samples(teacher.net, x, 6, method="batched"), -1).mean(0)
    assert_close(batched, mean, **TOL)
    one = teacher.probs(x, samples=1, seed=3)
    assert one.shape == (7, 3) and not torch.allclose(one, mean)


@torch.no_grad()
def test_batched_mean_converges_to_the_loops():
    """Batched draws (seed 2) against a loop of 4000 passes (seed 1): the Monte Carlo error of the batched mean
    falls as S grows and ends within 5 standard errors of the difference of the two means."""
    teacher = _vi_teacher("mlp", 6, hidden=[8])
    net, x = teacher.net, torch.randn(10, 6)
    with seeded(1):
        truth = torch.softmax(vi_logit_samples_loop(net, x, 4000), -1)
    errors = []
    for samples in (10, 160, 2560):
        with seeded(2):
            probs = torch.softmax(vi_logit_samples(net, x, samples, method="batched"), -1)
        errors.append((probs.mean(0) - truth.mean(0)).abs().max().item())
    stderr = (probs.var(0) / 2560 + truth.var(0) / 4000).sqrt()
    assert errors[0] > errors[1] > errors[2]
    assert ((probs.mean(0) - truth.mean(0)).abs() <= 5 * stderr + 1e-7).all()
    assert truth.std(0).max() > 1e-3  # the teacher is stochastic: the comparison can fail


def test_cifar_teacher_batched_in_bf16_reproducible_and_matches_the_loop():
    net, x = CASES["wrn_16_1"]()
    teacher = VICifarTeacher(net, seed=4, precision="bf16")  # the CUDA path (bf16, batched) on the CPU
    mean, per = teacher.probs(x, samples=3, return_samples=True)
    assert per.shape == (3, 3, 10) and mean.dtype == torch.float32
    assert torch.equal(teacher.probs(x, samples=3), mean)
    with torch.no_grad(), seeded(teacher.seed + 7919):  # what sample_logits did before: S passes
        loop = torch.softmax(torch.stack([teacher._logits(x) for _ in range(3)]), -1)
    assert_close(per, loop, rtol=0, atol=0.02)  # bf16
    assert teacher.probs(x, samples=1).shape == (3, 10)


def test_cifar_teacher_fp32_on_cpu_is_the_loop():
    net, x = CASES["wrn_16_1"]()
    teacher = VICifarTeacher(net, seed=4, precision="fp32")
    _, per = teacher.probs(x, samples=2, return_samples=True)
    with torch.no_grad(), seeded(teacher.seed + 7919):
        loop = torch.softmax(torch.stack([net(x) for _ in range(2)]), -1)
    assert_close(per, loop, rtol=0, atol=0)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # the loop, and the batched path
def test_fewer_samples_are_a_prefix_of_more(precision):
    """From one seed, S samples are the first S of 12: the S = 1…12 students of a Monte Carlo sweep with one seed see
    shared teacher draws, student S the mean of the first S (the official ``train_bnn_samples_exp_students.py``)."""
    net, x = CASES["wrn_16_1"]()
    teacher = VICifarTeacher(net, seed=4, precision=precision)
    _, twelve = teacher.probs(x, samples=12, return_samples=True, seed=11)
    for samples in (1, 3, 7):
        _, first = teacher.probs(x, samples=samples, return_samples=True, seed=11)
        assert_close(first, twelve[:samples], rtol=0, atol=1e-6)
    assert (twelve[1] - twelve[0]).abs().max() > 1e-3  # the draws differ: the comparison can fail


def test_training_mode_is_refused():
    net, x = CASES["mlp"]()
    with pytest.raises(ValueError, match=r"eval mode \(net.eval\(\)\)"):
        vi_logit_samples(net.train(), x, 2)


@torch.no_grad()
def test_unsupported_and_plain_nets(monkeypatch):
    from bayesian_torch.models.dnn_to_bnn import dnn_to_bnn

    flipout = make_net("mlp", 4, 3, hidden=[5])
    dnn_to_bnn(flipout, {"prior_mu": 0.0, "prior_sigma": 1.0, "posterior_mu_init": 0.0, "posterior_rho_init": -3.0,
                         "type": "Flipout", "moped_enable": False, "moped_delta": 0.1})
    flipout.eval()
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match="is a LinearFlipout"):
        vi_logit_samples(flipout, x, 2, method="batched")
    assert vi_logit_samples(flipout, x, 3).shape == (3, 2, 3)  # auto on the CPU: the loop
    monkeypatch.setattr(vi_batch, "LOOP_DEVICES", ())  # auto as on CUDA: batched where possible
    with pytest.warns(UserWarning, match="by 3 forward passes: layer 'body.0' is a LinearFlipout"):
        assert vi_logit_samples(flipout, x, 3).shape == (3, 2, 3)
    plain = make_net("mlp", 4, 3, hidden=[5]).eval()
    with pytest.raises(ValueError, match="no bayesian-torch layer"):
        vi_logit_samples(plain, x, 2, method="batched")
    assert_close(vi_logit_samples(plain, x, 2), plain(x).expand(2, -1, -1))  # no warning: nothing to sample


@torch.no_grad()
def test_bad_noise_is_refused():
    net, x = CASES["mlp"]()
    _, eps = _own_forward(net, x, 2)
    missing = dict(list(eps.items())[1:])
    with pytest.raises(ValueError, match=r"missing: \['body.0.eps_weight'\]"):
        vi_logit_samples(net, x, 2, eps=missing)
    with pytest.raises(ValueError, match=r"eps\['body.0.eps_bias'\] must have shape \(S, \*noise shape\)"):
        vi_logit_samples(net, x, 3, eps=eps)
    with pytest.raises(ValueError, match="eps cannot be given with method='loop'"):
        vi_logit_samples(net, x, 2, eps=eps, method="loop")
    with pytest.raises(ValueError, match="samples"):
        vi_logit_samples(net, x, 0)


@torch.no_grad()
def test_twin_is_cached_and_follows_the_parameters():
    net, x = CASES["mlp"]()
    vi_logit_samples(net, x, 2, method="batched")
    twin = _TWINS[net]
    vi_logit_samples(net, x, 2, method="batched")
    assert _TWINS[net] is twin
    net.head.mu_weight.add_(1.0)  # in place: same twin, new values
    net.body[0] = make_net("mlp", 6, 3, hidden=[8, 8]).body[0]  # a plain layer now: a new twin
    bayes = _own_forward(net, x, 2)
    assert_close(vi_logit_samples(net, x, 2, eps=bayes[1]), bayes[0], **TOL)
    assert _TWINS[net] is not twin and math.isfinite(bayes[0].sum().item())
