"""The simulator against its slow twins (plain autograd and torch.optim) and against the theory."""


import importlib

import numpy as np
import pytest
import torch

from sgdbound.data import GaussianMixture, LogisticTeacher, QuadraticMixture
from sgdbound.models import MLP, LinearSoftmax
from sgdbound.sim import fit_linear, flat_distance_sq, linear_theory, simulate
from sgdbound.sim.optim import BatchedAdam, BatchedSGD
from sgdbound.sim.students import BatchedLinear, BatchedMLP
from sgdbound.targets import Dirichlet, Exact, Gaussian, Mix, OneHot, Temperature
from sgdbound.theory import loss_hessian, predicted_gradient_covariance

F64 = torch.float64


def _linear_layout(num_classes: int, dim: int) -> torch.Tensor:
    """Permutation from the augmented (k, j) layout to LinearSoftmax's (weight rows, then bias) layout."""
    aug = torch.arange(num_classes * (dim + 1)).reshape(num_classes, dim + 1)
    return torch.cat([aug[:, :dim].reshape(-1), aug[:, dim]])


# -- slow twins of the batched step ---------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 3])
def test_batched_linear_sgd_momentum_matches_torch_optim(batch):
    gen = torch.Generator().manual_seed(0)
    n, dim, k = 4, 3, 3
    weight = torch.randn(n, k, dim, generator=gen, dtype=F64)
    bias = torch.randn(n, k, generator=gen, dtype=F64)
    lrs = torch.tensor([0.1, 0.05, 0.2, 0.01], dtype=F64)
    student = BatchedLinear(weight.clone(), bias.clone())
    opt = BatchedSGD(student.params, momentum=0.9)
    models = [LinearSoftmax.from_params(weight[i], bias[i]) for i in range(n)]
    opts = [torch.optim.SGD(m.parameters(), lr=float(lrs[i]), momentum=0.9) for i, m in enumerate(models)]
    for _ in range(5):
        x = torch.randn(n, batch, dim, generator=gen, dtype=F64)
        t = torch.randn(n, batch, k, generator=gen, dtype=F64)  # targets off the simplex: the full formula
        q = torch.softmax(student.logits(x), -1)
        opt.step(student.gradients(x, t.sum(-1, keepdim=True) * q - t), lrs)
        for i, (m, o) in enumerate(zip(models, opts)):
            o.zero_grad()
            (-(t[i] * torch.log_softmax(m(x[i]), -1)).sum(-1).mean()).backward()
            o.step()
    for i, m in enumerate(models):
        torch.testing.assert_close(student.weight[i], m.weight.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(student.bias[i], m.bias.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation,batch,optimizer", [("relu", 2, "adam"), ("tanh", 2, "adam"),
                                                        ("softplus", 1, "adam"), ("relu", 1, "sgd")])
def test_batched_mlp_gradients_and_optimizers_match_autograd(activation, batch, optimizer):
    gen = torch.Generator().manual_seed(1)
    n, dim, k = 3, 4, 3
    student = BatchedMLP.init(n, [dim, 6, 5, k], activation, "random", gen, "cpu", F64)
    models = []
    for i in range(n):
        m = MLP(dim, k, hidden=(6, 5), activation=activation, dtype=F64)
        linears = [layer for layer in m.modules() if isinstance(layer, torch.nn.Linear)]
        with torch.no_grad():
            for j, layer in enumerate(linears):
                layer.weight.copy_(student.params[2 * j][i].T)
                layer.bias.copy_(student.params[2 * j + 1][i])
        models.append(m)
    lrs = torch.tensor([1e-2, 3e-2, 5e-3], dtype=F64)
    if optimizer == "adam":
        opt = BatchedAdam(student.params)
        opts = [torch.optim.Adam(m.parameters(), lr=float(lrs[i])) for i, m in enumerate(models)]
    else:  # batch 1: factored outer-product gradients folded into heavy ball, stepped in two row groups
        opt = BatchedSGD(student.params, momentum=0.9)
        opts = [torch.optim.SGD(m.parameters(), lr=float(lrs[i]), momentum=0.9) for i, m in enumerate(models)]
    for _ in range(4):
        x = torch.randn(n, batch, dim, generator=gen, dtype=F64)
        t = torch.softmax(torch.randn(n, batch, k, generator=gen, dtype=F64), -1)
        for rows in (slice(0, 2), slice(2, 3)):
            part = student.params_for(rows)
            cache = part.forward_with_cache(x[rows])
            q = torch.softmax(cache[0], -1)
            opt.step(part.gradients_from_cache(cache, t[rows].sum(-1, keepdim=True) * q - t[rows]), lrs[rows], rows)
        for i, (m, o) in enumerate(zip(models, opts)):
            o.zero_grad()
            (-(t[i] * torch.log_softmax(m(x[i]), -1)).sum(-1).mean()).backward()
            o.step()
    for i, m in enumerate(models):
        torch.testing.assert_close(student.params[0][i], m.body[0].weight.detach().T, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(student.params[-1][i], m.head.bias.detach(), rtol=1e-10, atol=1e-12)


def _replica_modules(student: BatchedMLP, dim: int, k: int, hidden: int, activation: str) -> list:
    """One float64 ``MLP`` per replica of a one-hidden-layer ``student``, holding that replica's parameters."""
    models = []
    for i in range(student.params[0].shape[0]):
        m = MLP(dim, k, hidden=(hidden,), activation=activation, dtype=F64)
        with torch.no_grad():
            for j, layer in enumerate(layer for layer in m.modules() if isinstance(layer, torch.nn.Linear)):
                layer.weight.copy_(student.params[2 * j][i].T)
                layer.bias.copy_(student.params[2 * j + 1][i])
        models.append(m)
    return models


@pytest.mark.parametrize("activation,batch,momentum", [("tanh", 3, 0.9), ("relu", 3, 0.9), ("tanh", 3, 0.0),
                                                       ("relu", 1, 0.9), ("tanh", 1, 0.0)])
def test_folded_sgd_update_matches_the_plain_update_and_torch_optim(activation, batch, momentum):
    """Folded: the factored gradient goes straight into the flat parameters / momentum (``addcmul_`` for b=1,
    ``baddbmm_`` for b>1), stepped in two row groups. Plain: separate parameter tensors and materialised gradients.
    Both against ``torch.optim.SGD`` on autograd gradients, per replica, in float64 (2-layer MLP, with biases)."""
    gen = torch.Generator().manual_seed(2)
    n, dim, k = 3, 4, 3
    folded = BatchedMLP.init(n, [dim, 6, k], activation, "random", gen, "cpu", F64)
    plain = BatchedMLP([p.clone() for p in folded.params], activation)
    models = _replica_modules(folded, dim, k, 6, activation)
    lrs = torch.tensor([0.1, 0.03, 0.2], dtype=F64)
    opt_folded = BatchedSGD(folded.params, momentum=momentum, flat=folded.flat)
    opt_plain = BatchedSGD(plain.params, momentum=momentum)
    opts = [torch.optim.SGD(m.parameters(), lr=float(lrs[i]), momentum=momentum) for i, m in enumerate(models)]
    for step in range(4):
        x = torch.randn(n, batch, dim, generator=gen, dtype=F64)
        t = torch.randn(n, batch, k, generator=gen, dtype=F64)  # targets off the simplex: the full formula
        for rows in (slice(0, 2), slice(2, 3)):
            part = folded.params_for(rows)
            cache = part.forward_with_cache(x[rows])
            q = torch.softmax(cache[0], -1)
            opt_folded.step(part.gradients_from_cache(cache, t[rows].sum(-1, keepdim=True) * q - t[rows]),
                            lrs[rows], rows, t=step + 1)
        cache = plain.forward_with_cache(x)
        q = torch.softmax(cache[0], -1)
        grads = plain.gradients_from_cache(cache, t.sum(-1, keepdim=True) * q - t)
        opt_plain.step([torch.bmm(*g) if isinstance(g, tuple) else g for g in grads], lrs)
        for i, (m, o) in enumerate(zip(models, opts)):
            o.zero_grad()
            (-(t[i] * torch.log_softmax(m(x[i]), -1)).sum(-1).mean()).backward()
            o.step()
    storage = folded.flat.untyped_storage().data_ptr()
    assert all(p.untyped_storage().data_ptr() == storage for p in folded.params)  # updated in place, still views
    for a, b in zip(folded.params, plain.params):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for i, m in enumerate(models):
        for j, layer in enumerate(layer for layer in m.modules() if isinstance(layer, torch.nn.Linear)):
            torch.testing.assert_close(folded.params[2 * j][i], layer.weight.detach().T, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(folded.params[2 * j + 1][i], layer.bias.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation,batch", [("tanh", 1), ("relu", 2)])
def test_flat_adam_matches_torch_optim(activation, batch):
    """Adam on the flat layout (moments and gradient scratch laid out like the parameters), stepped in two row
    groups with explicit step numbers, against ``torch.optim.Adam`` per replica in float64."""
    gen = torch.Generator().manual_seed(3)
    n, dim, k = 3, 4, 3
    student = BatchedMLP.init(n, [dim, 5, k], activation, "random", gen, "cpu", F64)
    models = _replica_modules(student, dim, k, 5, activation)
    lrs = torch.tensor([1e-2, 3e-2, 5e-3], dtype=F64)
    opt = BatchedAdam(student.params, flat=student.flat)
    opts = [torch.optim.Adam(m.parameters(), lr=float(lrs[i])) for i, m in enumerate(models)]
    for step in range(4):
        x = torch.randn(n, batch, dim, generator=gen, dtype=F64)
        t = torch.softmax(torch.randn(n, batch, k, generator=gen, dtype=F64), -1)
        for rows in (slice(2, 3), slice(0, 2)):  # the group holding row 0 last: the step number is explicit
            part = student.params_for(rows)
            cache = part.forward_with_cache(x[rows])
            q = torch.softmax(cache[0], -1)
            opt.step(part.gradients_from_cache(cache, t[rows].sum(-1, keepdim=True) * q - t[rows]), lrs[rows], rows,
                     t=step + 1)
        for i, (m, o) in enumerate(zip(models, opts)):
            o.zero_grad()
            (-(t[i] * torch.log_softmax(m(x[i]), -1)).sum(-1).mean()).backward()
            o.step()
    for i, m in enumerate(models):
        for j, layer in enumerate(layer for layer in m.modules() if isinstance(layer, torch.nn.Linear)):
            torch.testing.assert_close(student.params[2 * j][i], layer.weight.detach().T, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(student.params[2 * j + 1][i], layer.bias.detach(), rtol=1e-10, atol=1e-12)


def test_flat_optimiser_refuses_parameters_outside_flat():
    student = BatchedMLP.init(2, [3, 4, 2], "relu", "random", torch.Generator().manual_seed(0), "cpu", F64)
    for make in (lambda flat: BatchedSGD(student.params, momentum=0.9, flat=flat),
                 lambda flat: BatchedAdam(student.params, flat=flat)):
        with pytest.raises(ValueError, match="flat"):
            make(student.flat.clone())


@pytest.mark.parametrize("kwargs", [dict(momentum=0.9), dict(batch_size=3, activation="tanh"),
                                    dict(optimizer="adam", batch_size=2),
                                    dict(stream=False, train_size=40, epochs=2, momentum=0.5, lr=[0.05, 0.1])])
def test_mlp_replica_groups_running_blocks_of_steps_give_the_same_run(monkeypatch, kwargs):
    """On the CPU, groups of replicas each run a block of steps while their parameters stay in cache; the draws are
    made in step order first, so the run equals the one-group, step-by-step run, and is reproducible."""
    module = importlib.import_module("sgdbound.sim.simulate")
    problem = GaussianMixture.random(3, 4, separation=2.0, seed=1)
    settings = dict(student="mlp", hidden=(8, 6), lr=0.05, steps=45, replicas=5, init="random", record_every=20,
                    eval_size=64, dtype=F64, device="cpu") | kwargs
    whole = simulate(problem, **settings)
    monkeypatch.setattr(module, "_STEP_CACHE_BYTES", 1)  # one replica per group
    monkeypatch.setattr(module, "_BLOCK_STEPS", 7)  # blocks that do not divide the record interval
    grouped, again = simulate(problem, **settings), simulate(problem, **settings)
    for a, b, c in zip(*(r if isinstance(r, list) else [r] for r in (whole, grouped, again))):
        assert list(b.steps) == list(a.steps)
        for key in ("ce", "excess_risk", "accuracy", "ece"):
            np.testing.assert_allclose(getattr(b, key), getattr(a, key), rtol=1e-12, atol=1e-14)
            assert np.array_equal(getattr(b, key), getattr(c, key))


# -- optimum and closed-form theory -----------------------------------------------------------------------------
def test_fit_linear_recovers_bayes_linear_from_exact_targets():
    gm = GaussianMixture.random(4, 3, separation=1.5, seed=2)
    sample = gm.sample(3000, seed=3)
    weight, bias = fit_linear(sample.x, sample.bcp)
    w_star, b_star = gm.bayes_linear()
    dist = flat_distance_sq(weight[None], bias[None], w_star, b_star).item()
    assert dist < 1e-18


def test_linear_theory_matches_generic_theory():
    gm = GaussianMixture.random(3, 4, separation=1.0, seed=4)
    sample = gm.sample(500, seed=5)
    w, b = gm.bayes_linear()
    noise = Mix(0.3, Dirichlet(2.0))
    theory = linear_theory(sample.x, sample.bcp, noise.mean(sample.bcp), w, b, noise_model=noise, step=0.01)
    model = LinearSoftmax.from_params(w, b)
    perm = _linear_layout(3, 4)
    hess = loss_hessian(model, sample.x, noise.mean(sample.bcp))
    cov = predicted_gradient_covariance(model, sample.x, sample.bcp, noise)
    torch.testing.assert_close(theory.hessian[perm][:, perm], hess, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(theory.noise_cov[perm][:, perm], cov, rtol=1e-9, atol=1e-12)
    assert theory.sigma2 == pytest.approx(cov.trace().item(), rel=1e-9)
    assert 0 < theory.mu <= theory.lipschitz <= theory.lipschitz_max


# -- theory against measurement --------------------------------------------------------------------------------
def test_exact_bcp_started_at_optimum_stays_there():
    gm = GaussianMixture.reference(seed=0).standardized()
    traj = simulate(gm, noise=Exact(), lr=0.01, steps=400, replicas=64, dtype=F64, record_every=100, eval_size=128,
                    theory_samples=2048)
    assert traj.dist_sq.max() < 1e-12
    assert traj.bound.theorem == "T1"
    assert traj.predicted_stationary == 0.0


@pytest.mark.slow
@pytest.mark.parametrize(
    "momentum,batch,steps,replicas", [(0.0, 1, 4000, 512), (0.5, 1, 3000, 512), (0.0, 4, 3000, 256)]
)
def test_stationary_spread_matches_lyapunov_prediction(momentum, batch, steps, replicas):
    """Streaming SGD on a well-conditioned linear problem with γ·L_max ≤ 0.1: the measured plateau lies within
    10% of the Lyapunov prediction and below the T3 bound at every record."""
    problem = LogisticTeacher.random(3, 4, scale=1.0, seed=7)
    probe = simulate(problem, noise=OneHot(), lr=1e-3, steps=1, replicas=2, dtype=F64, eval_size=0,
                     theory_samples=16384)
    lr = 0.1 / probe.constants["lipschitz_max"]
    # 1/(γμ) ≈ 1000 steps here: the second half of the run is stationary
    traj = simulate(problem, noise=OneHot(), lr=lr, steps=steps, replicas=replicas, dtype=F64, record_every=200,
                    momentum=momentum, batch_size=batch, eval_size=0, theory_samples=16384, seed=11)
    measured = traj.plateau(tail=0.5)
    assert abs(measured / traj.predicted_stationary - 1) < 0.10, (measured, traj.predicted_stationary)
    if momentum == 0.0:
        assert traj.bound is not None and traj.bound.theorem == "T3"
        assert (traj.dist_sq.mean(0) <= traj.bound_curve).all()
        assert measured < traj.bound.neighborhood


def test_predicted_plateau_is_the_theory_of_a_run_stopped_before_stationarity():
    # 1500 steps at γ = 0.004 is far from stationarity here (plateau ≈ 0.28 × the stationary value): the measured
    # plateau must match the transient's mean over the same records, not the stationary prediction
    problem = GaussianMixture.random(3, 4, separation=1.5, seed=3)
    traj = simulate(problem, noise=Dirichlet(3.0), lr=0.004, steps=1500, replicas=512, dtype=F64, record_every=100,
                    eval_size=0, theory_samples=8192)
    measured = traj.plateau(tail=0.5)
    assert abs(measured / traj.predicted_plateau(tail=0.5) - 1) < 0.08, (measured, traj.predicted_plateau())
    assert measured < 0.5 * traj.predicted_stationary
    assert traj.predicted_plateau(tail=0.1) > traj.predicted_plateau(tail=0.9)  # the transient still rises
    assert traj.to_dict(curves=False)["predicted_plateau"] == traj.predicted_plateau()


def test_predicted_curve_tracks_transient_from_optimum():
    problem = GaussianMixture.random(3, 4, separation=1.5, seed=3)
    traj = simulate(problem, noise=Dirichlet(3.0), lr=0.02, steps=1500, replicas=512, dtype=F64, record_every=300,
                    eval_size=0, theory_samples=8192)
    measured = traj.dist_sq.mean(0)[1:]
    predicted = traj.predicted_curve[1:]
    assert np.all(np.abs(measured / predicted - 1) < 0.15), (measured, predicted)


def test_plateau_ordering_exact_dirichlet_onehot():
    problem = GaussianMixture.random(3, 4, separation=1.5, seed=3)
    trajs = simulate(problem, noise=[Exact(), Dirichlet(5.0), OneHot()], lr=0.02, steps=600, replicas=128,
                     dtype=F64, record_every=200, eval_size=64, theory_samples=4096)
    exact, dirichlet, onehot = (t.plateau() for t in trajs)
    assert exact < 1e-20 < dirichlet < onehot
    # Dir(αP) noise is one-hot noise scaled by 1/(1+α): plateaus in the same ratio (to first order in γ)
    assert dirichlet / onehot == pytest.approx(1 / 6, rel=0.25)


def test_finite_sum_replacement_prediction():
    problem = LogisticTeacher.random(3, 3, scale=1.0, seed=1)
    traj = simulate(problem, noise=OneHot(), lr=0.02, stream=False, train_size=400, steps=4000, replicas=512,
                    sampling="replacement", dtype=F64, record_every=200, eval_size=0)
    assert traj.predicted_stationary is not None and traj.bound is not None
    assert abs(traj.plateau(0.5) / traj.predicted_stationary - 1) < 0.15
    # reshuffled epochs are not independent draws: no iid prediction, curve or bound is attached
    shuffled = simulate(problem, noise=OneHot(), lr=0.02, stream=False, train_size=400, epochs=1, replicas=4,
                        dtype=F64, record_every=200, eval_size=0)
    assert shuffled.predicted_stationary is None and shuffled.predicted_curve is None and shuffled.bound is None


def test_biased_teacher_moves_the_optimum():
    gm = GaussianMixture.random(3, 3, separation=1.5, seed=8)
    trajs = simulate(gm, noise=[Exact(), Temperature(2.0)], lr=0.01, steps=10, replicas=4, dtype=F64, eval_size=0,
                     theory_samples=4096)
    w0, b0 = trajs[0].optimum
    w1, b1 = trajs[1].optimum
    shift = flat_distance_sq(w1[None], b1[None], w0, b0).item()
    assert shift > 1e-3  # the tempered teacher's optimum is θ*/T, not the BCPs' θ*
    # softmax(log P / T) of a linear-softmax P is linear-softmax again: still interpolation, no noise floor
    assert trajs[1].constants["sigma2"] == 0.0


def test_nonrealizable_problem_keeps_a_floor_with_exact_bcp():
    problem = QuadraticMixture.random(3, 3, separation=1.0, spread=1.0, seed=2)
    traj = simulate(problem, noise=Exact(), lr=0.01, steps=300, replicas=64, dtype=F64, record_every=100,
                    eval_size=256, theory_samples=8192)
    assert traj.constants["sigma2"] > 1e-3
    assert traj.plateau() > 1e-6
    assert traj.excess_risk[:, -1].mean() > 1e-4  # the best linear student stays away from the BCPs


def test_mlp_student_and_adam_run_and_learn():
    problem = GaussianMixture.random(3, 4, separation=2.0, seed=1)
    trajs = simulate(problem, student="mlp", hidden=(8, 8), noise=[OneHot(), Exact()], lr=0.01, steps=300,
                     replicas=8, init="random", optimizer="adam", record_every=100, eval_size=256)
    for traj in trajs:
        assert np.isnan(traj.dist_sq).all() and traj.predicted_stationary is None
        assert traj.excess_risk[:, -1].mean() < traj.excess_risk[:, 0].mean()
        assert traj.accuracy[:, -1].mean() > 0.6


def test_decreasing_schedule_beats_its_bound():
    problem = LogisticTeacher.random(3, 3, scale=1.0, seed=3)
    traj = simulate(problem, noise=Gaussian(0.01), lr=0.01, steps=3000, replicas=64, schedule="decreasing",
                    init="random", dtype=F64, record_every=500, eval_size=0, theory_samples=4096, seed=2)
    assert traj.dist_sq.mean(0)[-1] < 0.2 * traj.dist_sq.mean(0)[0]


def test_reproducible_for_a_seed():
    problem = GaussianMixture.random(3, 3, seed=0)
    kwargs = dict(noise=Dirichlet(1.0), lr=0.05, steps=50, replicas=8, record_every=25, eval_size=32,
                  init="random", theory_samples=1024)
    a, b = simulate(problem, seed=5, **kwargs), simulate(problem, seed=5, **kwargs)
    c = simulate(problem, seed=6, **kwargs)
    assert np.array_equal(a.dist_sq, b.dist_sq) and np.array_equal(a.ece, b.ece)
    assert not np.array_equal(a.dist_sq, c.dist_sq)


def test_records_and_shapes():
    problem = GaussianMixture.random(3, 3, seed=0)
    traj = simulate(problem, lr=0.05, steps=55, replicas=6, record_every=20, eval_size=32, theory_samples=1024)
    assert list(traj.steps) == [0, 20, 40, 55]
    for name in ("dist_sq", "excess_risk", "ce", "accuracy", "l2_bcp", "ece"):
        assert getattr(traj, name).shape == (6, 4)
    assert (traj.excess_risk >= -1e-6).all() and ((0 <= traj.ece) & (traj.ece <= 1)).all()
    assert traj.to_dict()["config"]["lr"] == 0.05


@pytest.mark.parametrize("kwargs,match", [
    (dict(lr=-1.0), "lr"),
    (dict(noise="onehot"), "noise"),
    (dict(student="cnn"), "student"),
    (dict(replicas=0), "replicas"),
    (dict(momentum=1.5), "momentum"),
    (dict(student="mlp", init="optimum"), "optimum"),
    (dict(stream=False, train_size=0), "train_size"),
    (dict(noise=[OneHot(), Exact()], lr=[0.1, 0.2, 0.3]), "broadcast"),
    (dict(optimizer="lbfgs"), "optimizer"),
    (dict(momentum=1.0), "momentum"),
    (dict(stream=False, train_size=10, steps=2.5), "steps"),  # looped forever before
    (dict(stream=False, train_size=10, epochs=2.5), "epochs"),
    (dict(stream=False, train_size=10, steps=None), "epochs"),
    (dict(steps=float("inf")), "steps"),
    (dict(replicas=float("nan")), "replicas"),
    (dict(theory_samples=2.5), "theory_samples"),
    (dict(eval_size=-1), "eval_size"),
    (dict(seed=1.5), "seed"),
    (dict(dtype=torch.int64), "dtype"),
    (dict(device="nonsense"), "device"),
    (dict(init=(torch.full((3, 3), float("nan")), torch.zeros(3))), "init weight"),
    (dict(init=(torch.zeros(3, 2), torch.zeros(3))), "init weight"),
    (dict(init=(torch.zeros(3, 3), torch.zeros(4))), "init bias"),
    (dict(init=LinearSoftmax(4, 3)), "init weight"),
    (dict(init=torch.zeros(3, 3)), "init"),
    (dict(student="mlp", init="random", hidden=0), "hidden"),
    (dict(student="mlp", init="random", hidden=(3, 2.5)), "hidden"),
    (dict(student="mlp", init=MLP(4, 3, hidden=3), hidden=3), "init layer 0 weight"),
    (dict(student="mlp", init=MLP(3, 3, hidden=(3, 3)), hidden=3), "layers"),
])
def test_bad_input_is_refused(kwargs, match, monkeypatch):
    """Refused with a ValueError naming the argument, before any theory is computed or any step is run."""
    module = importlib.import_module("sgdbound.sim.simulate")

    def no_work(*args, **kw):
        raise AssertionError("work started before the input was checked")

    monkeypatch.setattr(module, "_linear_theories", no_work)
    monkeypatch.setattr(module, "make_sampler", lambda problem, *a: problem)
    settings = dict(steps=5, replicas=2) | kwargs
    with pytest.raises(ValueError, match=match):
        simulate(GaussianMixture.random(3, 3, seed=0), **settings)


def test_device_cuda_without_a_gpu_is_refused():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="CUDA is not available"):
        simulate(GaussianMixture.random(3, 3, seed=0), steps=5, replicas=2, device="cuda")


def test_fit_linear_refuses_targets_without_a_minimiser():
    """Every target ``(1.2, −0.2)``: ``−1.2 log q₁ + 0.2 log q₂ → −∞`` as the bias of class 1 grows; no minimiser."""
    x = torch.tensor([[-1.0], [0.0], [1.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="targets: Newton's method finds no minimiser"):
        fit_linear(x, torch.tensor([[1.2, -0.2]] * 3, dtype=torch.float64))


def test_fit_linear_fits_negative_targets_when_a_minimiser_exists():
    """Two inputs, two targets each, one with a negative entry; per input the targets sum to positive weights
    ``(1.6, 0.4)`` and ``(0.5, 1.5)``, so the minimiser fits ``q = (0.8, 0.2)`` and ``(0.25, 0.75)`` exactly."""
    x = torch.tensor([[1.0], [1.0], [-1.0], [-1.0]], dtype=torch.float64)
    t = torch.tensor([[1.1, -0.1], [0.5, 0.5], [0.2, 0.8], [0.3, 0.7]], dtype=torch.float64)
    weight, bias = fit_linear(x, t)
    q = torch.softmax(x @ weight.T + bias, 1)
    expected = torch.tensor([[0.8, 0.2], [0.8, 0.2], [0.25, 0.75], [0.25, 0.75]], dtype=torch.float64)
    torch.testing.assert_close(q, expected, rtol=0, atol=1e-9)


def test_fit_linear_names_rank_deficient_inputs():
    with pytest.raises(ValueError, match="x: the inputs with a column of ones have rank 1 < 2"):
        fit_linear(torch.zeros(3, 1, dtype=torch.float64),
                   torch.tensor([[0.7, 0.3], [0.4, 0.6], [0.2, 0.8]], dtype=torch.float64))


def test_finite_sum_with_fixed_gaussian_targets_says_why_it_cannot_run():
    """The audit's case: ν = 0.05 drawn once per example on the standardised reference problem has no empirical
    minimiser (the objective decreases without bound); the run is refused before it starts, saying what to do."""
    problem = GaussianMixture.reference(seed=0).standardized()
    with pytest.raises(ValueError, match=r"Gaussian\(nu=0.05\) with stream=False.*stream=True"):
        simulate(problem, noise=Gaussian(0.05), stream=False, epochs=1, replicas=2, lr=0.005, eval_size=0, seed=0)




def test_pl_bounds_hold_on_excess_risk():
    """T2 (exact BCPs) and T4 (one-hot) with the local constants bound the recorded excess risk E KL(P‖q)
    (= f − f* for unbiased targets) from a random start, at the T4 step limit μ/(2Lℒ)."""
    problem = LogisticTeacher.random(3, 4, scale=1.0, seed=7)
    probe = simulate(problem, lr=1e-3, steps=1, replicas=2, dtype=F64, eval_size=16, theory_samples=8192)
    c = probe.constants
    lr = c["mu"] / (2 * c["lipschitz"] * c["smoothness"])
    trajs = simulate(problem, noise=[OneHot(), Exact()], lr=lr, steps=2000, replicas=64, dtype=F64,
                     eval_size=1024, init="random", record_every=250, theory_samples=8192)
    for traj, theorem in zip(trajs, ("T4", "T2")):
        assert traj.pl_bound is not None and traj.pl_bound.theorem == theorem
        assert (traj.excess_risk.mean(0) <= traj.pl_bound.at(traj.steps) + 1e-12).all()


def test_init_from_modules_and_state_dicts_and_default_train_size():
    problem = GaussianMixture.random(3, 3, seed=0)
    weight, bias = problem.bayes_linear()
    model = LinearSoftmax.from_params(weight, bias)
    for init in (model, model.state_dict(), (weight, bias)):
        traj = simulate(problem, noise=Exact(), lr=0.05, steps=5, replicas=2, dtype=F64, init=init, eval_size=0,
                        theory_samples=1024, record_every=5)
        assert traj.dist_sq.max() < 1e-20  # the Bayes-linear start is the optimum
    mlp = MLP(3, 3, hidden=(4,), dtype=F64)
    traj = simulate(problem, student="mlp", hidden=(4,), lr=0.05, steps=5, replicas=2, dtype=F64, init=mlp,
                    eval_size=16, record_every=5)
    with torch.no_grad():
        expected = torch.log_softmax(mlp(problem.sample(16, seed=2_000_003).x), 1)
    assert traj.ce[:, 0] == pytest.approx(np.full(2, -expected.gather(1, problem.sample(16, seed=2_000_003).y[:, None])
                                                  .mean().item()), rel=1e-9)
    finite = simulate(problem, stream=False, epochs=1, lr=0.05, replicas=2, eval_size=0, record_every=100)
    assert finite.config["train_size"] == 1000 and finite.steps[-1] == 1000


@pytest.mark.parametrize("redraw,calls", [(False, 0), (True, 12)])
def test_finite_sum_teacher_targets_are_drawn_once_per_example_unless_redraw(monkeypatch, redraw, calls):
    """A teacher is a fixed function: in a finite sum its noisy targets are drawn once per training example and
    reused at every visit (no draw inside the loop); ``redraw=True`` draws them afresh at every step."""
    module = importlib.import_module("sgdbound.sim.simulate")
    seen = []
    original = module._TargetPlan.__call__

    def spy(self, bcp, y, gen):
        seen.append(bcp.shape)
        return original(self, bcp, y, gen)

    monkeypatch.setattr(module._TargetPlan, "__call__", spy)
    simulate(GaussianMixture.random(3, 3, seed=0), noise=Dirichlet(2.0), stream=False, train_size=40, steps=12,
             replicas=2, eval_size=0, theory_samples=512, record_every=6, redraw=redraw)
    assert len(seen) == calls
