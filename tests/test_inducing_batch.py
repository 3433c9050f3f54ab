"""Batched sampling of inducing-weight networks against its slow twin, the layers' own forward (one draw per call).

Each batched result is compared with the ``S``-pass loop from the same generator state (float64 to 1e-10, float32
to 1e-5, bf16 autocast to bf16 precision, the VI teacher's probabilities in bf16), with the noise the forward
itself drew (recorded), across ``max_batch_samples``, as a prefix of more samples, and on a net mixing inducing and
bayesian-torch layers. The hyperparameters make the draws differ by far more than the tolerances (every
comparison can fail), and a tiny net keeps the float64 checks fast.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from sgdbound.cifar.inducing import InducingConv2d, InducingLinear, inducing_bayesianize
from sgdbound.cifar.models import build_model
from sgdbound.cifar.teachers import VICifarTeacher
from sgdbound.kd import vi_batch
from sgdbound.kd.train import seeded
from sgdbound.kd.vi_batch import _TWINS, SampledLayer, vi_eps_names, vi_logit_samples, vi_logit_samples_loop

#: Broad posteriors (λ = 0.5, s_U = 0.5; the official λ ≤ 0.03 barely moves the logits) and D well away from 0
#: (well-conditioned Gram matrices for the 1e-10 checks).
HYPER = {"init_lamda": 0.5, "max_lamda": 1.0, "init_sd_u": 0.5, "max_sd_u": 1.0, "init_d": 0.5}
TOL = {torch.float64: {"rtol": 0, "atol": 1e-10}, torch.float32: {"rtol": 1e-5, "atol": 1e-5}}


class _Tiny(nn.Module):
    """Two convs (the second strided, dilated and bias-free) with a BatchNorm between, and a linear head; ``head``
    is registered before ``conv2`` but called after it (the draws follow the calls)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(5 * 3 * 3, 3)
        self.conv2 = nn.Conv2d(4, 5, 3, stride=2, padding=1, dilation=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv2(F.relu(self.bn(self.conv1(x)))))  # (n, 5, 3, 3) from (n, 3, 8, 8)
        return self.head(h.flatten(1))


def _randomise_batchnorm(net: nn.Module) -> nn.Module:
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return net


def _tiny(dtype: torch.dtype = torch.float64, conv: tuple[int, int] = (3, 6), linear: tuple[int, int] = (2, 4),
          **hyper) -> tuple[nn.Module, torch.Tensor]:
    with seeded(0):
        net = _randomise_batchnorm(inducing_bayesianize(_Tiny(), conv=conv, linear=linear, **{**HYPER, **hyper}))
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=dtype)
    return net.to(dtype).eval(), x


def _wrn(dtype: torch.dtype = torch.float32) -> tuple[nn.Module, torch.Tensor]:
    """``wrn_16_1`` with small inducing matrices (16 × 16 per conv) and non-trivial BatchNorm statistics."""
    with seeded(0):
        net = inducing_bayesianize(build_model("wrn_16_1", 10), conv=(16, 16), linear=(10, 16), **HYPER)
        _randomise_batchnorm(net)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=dtype)
    return net.to(dtype).eval(), x


CASES = {"tiny-f64": lambda: _tiny(), "tiny-f32": lambda: _tiny(torch.float32),
         "wrn_16_1-f64": lambda: _wrn(torch.float64), "wrn_16_1-f32": lambda: _wrn()}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    return CASES[request.param]()


@torch.no_grad()
def test_batched_draws_are_the_loops_for_any_grouping(case):
    """From one generator state: the loop's samples, the generator left in the same state (the stream consumed
    identically), whatever ``max_batch_samples``."""
    net, x = case
    with seeded(5):
        loop = vi_logit_samples_loop(net, x, 5)
        after = torch.get_rng_state()
    assert loop.std(0).max() > 0.05  # the draws differ: the comparison can fail
    for group in (None, 1, 2, 5):
        with seeded(5):
            batched = vi_logit_samples(net, x, 5, max_batch_samples=group, method="batched")
            assert torch.equal(torch.get_rng_state(), after)
        assert batched.dtype == x.dtype
        assert_close(batched, loop, **TOL[x.dtype])


@torch.no_grad()
def test_fewer_samples_are_a_prefix_of_more():
    net, x = _tiny()
    with seeded(3):
        seven = vi_logit_samples(net, x, 7, method="batched", max_batch_samples=3)
    for samples in (1, 3, 6):
        with seeded(3):
            assert_close(vi_logit_samples(net, x, samples, method="batched"), seven[:samples], **TOL[x.dtype])
    assert (seven[1] - seven[0]).abs().max() > 0.05


@torch.no_grad()
def test_given_noise_is_the_noise_the_forward_draws(monkeypatch):
    """``eps=`` with the normals each forward call drew (recorded from ``draw_standard_normals``) gives that
    call's logits; the recorded names are :func:`vi_eps_names`, in call order."""
    net, x = _tiny()
    drawn: dict[str, list[torch.Tensor]] = {}
    for path, layer in net.named_modules():
        if isinstance(layer, (InducingConv2d, InducingLinear)):
            def spy(*args, layer=layer, path=path, **kwargs):
                normals = type(layer).draw_standard_normals(layer, *args, **kwargs)
                for name, t in zip(layer.vi_noise_shapes(), normals):
                    drawn.setdefault(f"{path}.{name}", []).append(t)
                return normals
            monkeypatch.setattr(layer, "draw_standard_normals", spy)
    loop = vi_logit_samples_loop(net, x, 3)
    eps = {name: torch.stack(values) for name, values in drawn.items()}
    assert list(eps) == ["conv1.eps_u", "conv1.e1", "conv1.e2", "conv1.e3", "conv1.e4", "conv2.eps_u", "conv2.e1",
                         "conv2.e2", "conv2.e3", "conv2.e4", "head.eps_u", "head.e1", "head.e2", "head.e3", "head.e4"]
    assert sorted(vi_eps_names(net)) == sorted(eps)  # vi_eps_names: registration order (head before conv2)
    assert_close(vi_logit_samples(net, x, 3, eps=eps), loop, **TOL[x.dtype])
    assert_close(vi_logit_samples(net, x, 3, eps=eps, max_batch_samples=2), loop, **TOL[x.dtype])


@torch.no_grad()
def test_in_place_parameter_updates_are_seen():
    """The twin shares the net's tensors and the layers' cached factors follow their parameters: after in-place
    updates (as an optimiser makes) batched still equals the loop."""
    net, x = _tiny()
    with seeded(1):
        before = vi_logit_samples(net, x, 2, method="batched")
    net.conv1.z_row.mul_(1.5)  # the row factors (cached in eval mode)
    net.head.mu_u.add_(1.0)
    with seeded(1):
        loop = vi_logit_samples_loop(net, x, 2)
    with seeded(1):
        batched = vi_logit_samples(net, x, 2, method="batched")
    assert_close(batched, loop, **TOL[x.dtype])
    assert (batched - before).abs().max() > 0.05


@torch.no_grad()
def test_under_bf16_autocast_matches_the_loop_to_bf16_precision():
    net, x = _wrn()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with seeded(2):
            loop = vi_logit_samples_loop(net, x, 3)
        with seeded(2):
            batched = vi_logit_samples(net, x, 3, method="batched", max_batch_samples=2)
    with seeded(2):
        fp32 = vi_logit_samples_loop(net, x, 3)
    assert batched.dtype == loop.dtype == torch.bfloat16
    scale = loop.float().abs().max()
    assert (batched.float() - loop.float()).abs().max() <= 0.02 * scale  # bf16: 2^-8 per op, a few ops deep
    assert (fp32[1] - fp32[0]).abs().max() > 0.2 * scale  # the samples differ by far more than that
    assert (batched.float() - fp32).abs().max() <= 0.05 * scale  # and both are the fp32 draws, rounded


@torch.no_grad()
def test_under_bf16_autocast_the_weights_are_computed_in_float32():
    """With D ≈ 1e-6 (as training leaves it) a Gram matrix rounded to bf16 is not positive definite: the batched
    path computes the factors (no cache: each call) and weights in float32, as the layers' forward does. More
    inducing rows than rows (as the official 128 × 128 on 16-channel convs) make ``Z Zᵀ`` singular."""
    net, x = _tiny(torch.float32, conv=(8, 6), linear=(6, 4), cache_cholesky=False)
    for m in net.modules():
        if isinstance(m, SampledLayer):
            m.d_row.fill_(-14.0)  # softplus ≈ 1e-6
            m.d_col.fill_(-14.0)
    with seeded(2), torch.autocast("cpu", dtype=torch.bfloat16):
        batched = vi_logit_samples(net, x, 3, method="batched")
    with seeded(2):
        fp32 = vi_logit_samples_loop(net, x, 3)
    assert batched.dtype == torch.bfloat16
    scale = fp32.abs().max()
    assert (batched.float() - fp32).abs().max() <= 0.02 * scale
    assert (fp32[1] - fp32[0]).abs().max() > 0.2 * scale


def test_vi_teacher_batched_in_bf16_matches_the_loop():
    """``VICifarTeacher(layers="inducing")``: batched in bf16 (the CUDA path, on the CPU), the loop in fp32 on the
    CPU; the bf16 probabilities are the per-pass loop's to bf16 precision, S samples the first S of more."""
    net, x = _wrn()
    fast = VICifarTeacher(net, seed=4, precision="bf16", layers="inducing")
    mean, per = fast.probs(x, samples=3, return_samples=True)
    assert fast.net in _TWINS  # the batched path ran (the loop builds no twin)
    assert per.shape == (3, 3, 10) and mean.dtype == torch.float32
    assert torch.equal(fast.probs(x, samples=3), mean)
    with torch.no_grad(), seeded(fast.seed + 7919):  # S passes of the bf16 network
        loop = torch.softmax(torch.stack([fast._logits(x) for _ in range(3)]), -1)
    # the untrained net's logits are ~0.25: bf16's 2^-8 relative rounding moves the probabilities by ~1e-4
    assert_close(per, loop, rtol=0, atol=1e-3)
    assert (per[1] - per[0]).abs().max() > 0.02  # the samples differ 20x more: the comparison can fail
    _, first = fast.probs(x, samples=2, return_samples=True)
    assert_close(first, per[:2], rtol=0, atol=1e-6)

    net32, _ = _wrn()
    slow = VICifarTeacher(net32, seed=4, precision="fp32", layers="inducing")
    _, per32 = slow.probs(x, samples=3, return_samples=True)
    assert slow.net not in _TWINS  # fp32 on the CPU: the loop
    with torch.no_grad(), seeded(slow.seed + 7919):
        assert torch.equal(per32, torch.softmax(torch.stack([net32(x) for _ in range(3)]), -1))
    assert_close(per, per32, rtol=0, atol=1e-3)  # bf16 against fp32: the same draws


@torch.no_grad()
def test_net_mixing_inducing_and_mean_field_layers():
    from bayesian_torch.models.dnn_to_bnn import dnn_to_bnn

    with seeded(0):
        net = _Tiny()
        dnn_to_bnn(net, {"prior_mu": 0.0, "prior_sigma": 1.0, "posterior_mu_init": 0.0, "posterior_rho_init": -2.0,
                         "type": "Reparameterization", "moped_enable": False, "moped_delta": 0.1})
        net.head = inducing_bayesianize(nn.Linear(5 * 3 * 3, 3), linear=(2, 4), **HYPER)
    net = _randomise_batchnorm(net).double().eval()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert isinstance(net.head, SampledLayer) and not isinstance(net.conv1, SampledLayer)
    assert vi_eps_names(net) == ["conv1.eps_kernel", "conv1.eps_bias", "head.eps_u", "head.e1", "head.e2",
                                 "head.e3", "head.e4", "conv2.eps_kernel"]
    with seeded(4):
        loop = vi_logit_samples_loop(net, x, 4)
    with seeded(4):
        batched = vi_logit_samples(net, x, 4, method="batched", max_batch_samples=3)
    assert loop.std(0).max() > 0.05
    assert_close(batched, loop, **TOL[torch.float64])


@torch.no_grad()
def test_auto_loops_on_the_cpu_and_batches_elsewhere(monkeypatch):
    net, x = _tiny()
    with seeded(0):
        auto = vi_logit_samples(net, x, 3)
    assert net not in _TWINS  # the loop
    monkeypatch.setattr(vi_batch, "LOOP_DEVICES", ())  # auto as on CUDA
    with seeded(0):
        assert_close(vi_logit_samples(net, x, 3), auto, **TOL[x.dtype])
    assert net in _TWINS


class _Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = inducing_bayesianize(nn.Linear(4, 4), linear=(2, 2))

    def forward(self, x):
        return self.fc(self.fc(x))


@torch.no_grad()
def test_bad_input_is_refused(monkeypatch):
    net, x = _tiny()
    with pytest.raises(ValueError, match="samples"):
        vi_logit_samples(net, x, 0)
    with pytest.raises(ValueError, match="max_batch_samples"):
        vi_logit_samples(net, x, 2, max_batch_samples=0, method="batched")
    with pytest.raises(ValueError, match="method must be one of auto, batched, loop, got 'vmap'"):
        vi_logit_samples(net, x, 2, method="vmap")
    with pytest.raises(ValueError, match=r"eval mode \(net.eval\(\)\)"):
        vi_logit_samples(net.train(), x, 2)
    net.eval()
    eps = {name: torch.zeros(2, *shape, dtype=x.dtype) for name, shape in
           [(n, s) for p, m in net.named_modules() if isinstance(m, SampledLayer)
            for n, s in ((f"{p}.{k}", v) for k, v in m.vi_noise_shapes().items())]}
    with pytest.raises(ValueError, match=r"eps\['conv1.e1'\] must have shape \(S, \*noise shape\) = \(3, 4, 28\)"):
        vi_logit_samples(net, x, 3, eps=eps)
    with pytest.raises(ValueError, match=r"missing: \['head.e4'\]"):
        vi_logit_samples(net, x, 2, eps={k: v for k, v in eps.items() if k != "head.e4"})
    twice = _Twice().eval()
    with pytest.raises(ValueError, match=r"\['fc'\] are called more than once"):
        vi_logit_samples(twice, torch.randn(2, 4), 2, method="batched")
    monkeypatch.setattr(vi_batch, "LOOP_DEVICES", ())
    with pytest.warns(UserWarning, match="by 2 forward passes"):
        assert vi_logit_samples(twice, torch.randn(2, 4), 2).shape == (2, 2, 4)
