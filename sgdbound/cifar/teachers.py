"""Teachers at CIFAR scale: CIFAR zoo networks behind the ``sgdbound.kd`` teacher interface.

Every teacher here is a :class:`sgdbound.kd.teacher_base.Teacher` (``probs(x, samples=S, temperature=T)``,
no_grad, tempered per sample) over images ``(n, 3, 32, 32)`` normalised as :func:`sgdbound.cifar.data.normalize`
returns them. They are built around an already trained network (see :func:`train_teacher_net`), so ``fit`` is
not used; :data:`CIFAR_TEACHERS` is the registry:

* ``deterministic``: the network's logits (its ``S`` samples are identical, computed once);
* ``vi``: the network with inducing-weight layers (``layers="inducing"``, the paper's VI) or bayesian-torch's
  mean-field reparameterisation layers (``dnn_to_bnn``), which draw one weight sample per call for the whole
  batch; :func:`sgdbound.kd.vi_batch.vi_logit_samples` draws the ``S`` weight samples itself (the same draws as
  ``S`` calls) and runs them in one vmapped pass (a few for large batches) on CUDA or in bf16; in float32 on the
  CPU, where that is no faster, the samples stay ``S`` passes;
* ``laplace``: last-layer Laplace fitted post hoc on the deterministic network: the training set's features are
  computed once (``features(x)``, no augmentation), laplace-torch fits the head on them (``sgdbound.kd``'s
  ``LaplaceTeacher`` on the head, Kronecker GGN, prior precision by marginal likelihood), and a prediction
  computes ``features(x)`` once and draws all ``S`` logit samples from the linearised Gaussian in one op
  (or uses the closed-form probit predictive).

On CUDA (or with ``precision="bf16"``) the teacher's forward runs under bf16 autocast on channels_last weights;
logits come back float32.

A teacher checkpoint (:func:`save_teacher_checkpoint`) records the architecture, the class count and the kind
it was trained as; :func:`check_teacher_checkpoint` refuses one that does not fit the run, listing what was
expected, before any training starts. Raw state dicts (an official ``snapshot_sd.pt``) are accepted when they load
into the expected architecture with ``strict=True``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from sgdbound.cifar.models import MODELS, build_model
from sgdbound.cifar.precision import Precision
from sgdbound.io import atomic_torch_save
from sgdbound.kd.bayes_teachers import LaplaceTeacher
from sgdbound.kd.teacher_base import Teacher

__all__ = ["CIFAR_TEACHERS", "CifarTeacher", "DeterministicCifarTeacher", "VICifarTeacher", "LaplaceCifarTeacher",
           "FlatNet", "build_net", "bayesianize", "base_kind", "save_teacher_checkpoint", "check_teacher_checkpoint",
           "load_teacher_net", "CHECKPOINT_FORMAT", "STUDENT_EXTRA_NETS", "VI_LAYERS", "vi_kl"]

CHECKPOINT_FORMAT = "sgdbound-cifar-teacher-v1"
#: Students beyond the zoo: ``sgdbound.kd.nets`` MLPs on the flattened image (tests, quick baselines).
STUDENT_EXTRA_NETS = ("mlp",)


class FlatNet(nn.Module):
    """A ``sgdbound.kd.nets`` net on flattened images ``(n, 3·32·32)``, with ``features`` and ``head``."""

    def __init__(self, name: str, num_classes: int, **options):
        super().__init__()
        from sgdbound.kd.nets import make_net

        self.net = make_net(name, 3 * 32 * 32, num_classes, **options)

    @property
    def head(self) -> nn.Linear:
        return self.net.head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def build_net(name: str, num_classes: int = 100, **options) -> nn.Module:
    """A zoo network (:data:`sgdbound.cifar.MODELS`, no options) or a flattened ``mlp`` (options: ``hidden``)."""
    if name in STUDENT_EXTRA_NETS:
        return FlatNet(name, num_classes, **options)
    if options:
        raise ValueError(f"zoo network {name!r} takes no options, got {sorted(options)}")
    return build_model(name, num_classes)


#: The VI teacher's layers: bayesian-torch's mean-field reparameterisation, or inducing weights (Ritter et al.
#: 2021, ``sgdbound.cifar.inducing``: the paper's VI teacher, the official ``ffg_u_cifar100`` configuration).
VI_LAYERS = ("mean_field", "inducing")


def bayesianize(net: nn.Module, prior_sigma: float = 1.0, rho_init: float = -4.0,
                layers: str = "mean_field") -> nn.Module:
    """Turn every ``Linear``/``Conv`` of ``net`` into a Bayesian layer, in place (the architecture stays the same,
    so a VI checkpoint is rebuilt by calling this on a fresh net): bayesian-torch's mean-field reparameterisation
    (prior ``N(0, prior_sigma²)``, ``σ = softplus(rho_init)`` at the start), or with ``layers="inducing"`` the
    inducing-weight layers with the official ``ffg_u_cifar100`` settings (``prior_sigma``/``rho_init`` unused)."""
    if layers not in VI_LAYERS:
        raise ValueError(f"layers must be one of {', '.join(VI_LAYERS)}, got {layers!r}")
    if layers == "inducing":
        from sgdbound.cifar.inducing import inducing_bayesianize

        return inducing_bayesianize(net)
    from bayesian_torch.models.dnn_to_bnn import dnn_to_bnn

    dnn_to_bnn(net, {"prior_mu": 0.0, "prior_sigma": float(prior_sigma), "posterior_mu_init": 0.0,
                     "posterior_rho_init": float(rho_init), "type": "Reparameterization", "moped_enable": False,
                     "moped_delta": 0.1})
    return net


def vi_kl(net: nn.Module) -> torch.Tensor:
    """``KL(q ‖ p)`` of all the Bayesian layers of ``net`` (bayesian-torch's and inducing-weight ones)."""
    from bayesian_torch.models.dnn_to_bnn import get_kl_loss

    from sgdbound.cifar.inducing import inducing_kl

    mean_field = get_kl_loss(net)  # None when the net has no bayesian-torch layer
    return inducing_kl(net) if mean_field is None else mean_field + inducing_kl(net)


def base_kind(kind: str) -> str:
    """The kind of network a teacher kind is built on: ``vi`` for VI, ``deterministic`` otherwise (Laplace is
    post hoc on the deterministic network)."""
    return "vi" if kind == "vi" else "deterministic"


class CifarTeacher(Teacher):
    """Base class: a trained ``net`` on ``device``, run in ``precision`` (see
    :class:`sgdbound.cifar.precision.Precision`: ``auto`` is bf16 autocast on CUDA); ``options`` as the subclass
    documents."""

    def __init__(self, net: nn.Module, *, seed: int = 0, device: torch.device | str = "cpu",
                 precision: str = "auto", **options):
        super().__init__(lambda: net, epochs=0, seed=seed, **options)
        self.device = torch.device(device)
        self.fast = Precision.of(precision, self.device)
        self.net = self.fast.prepare(net).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.fitted = True

    def _fit(self, x, y):
        raise ValueError(f"the CIFAR {self.kind!r} teacher is built from a trained network, not fitted here")

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        with self.fast.autocast():
            return self.net(x).float()


class DeterministicCifarTeacher(CifarTeacher):
    """No options: the trained network's logits."""

    kind = "deterministic"

    def sample_logits(self, x, samples):
        return self._logits(x)[None].expand(samples, -1, -1)


class VICifarTeacher(CifarTeacher):
    """Options (training, see :func:`sgdbound.cifar.kd.train_teacher_net`): ``prior_sigma``, ``rho_init``,
    ``ml_epochs`` (epochs of NLL only), ``anneal_epochs`` (epochs of the linear KL ramp; None: half the epochs),
    ``layers`` (``mean_field``: bayesian-torch; ``inducing``: the paper's inducing-weight VI, :data:`VI_LAYERS`).
    Prediction, for either kind of layer: ``S`` weight draws by :func:`sgdbound.kd.vi_batch.vi_logit_samples`,
    batched on CUDA or in bf16 (at most about 8192 images per vmapped pass), the ``S``-pass loop in float32 on the
    CPU (as fast there); both draw the same noise, so the two give the same samples up to rounding."""

    kind = "vi"
    defaults = {"prior_sigma": 1.0, "rho_init": -4.0, "ml_epochs": 0, "anneal_epochs": None, "layers": "mean_field"}

    def sample_logits(self, x, samples):
        from sgdbound.kd.vi_batch import vi_logit_samples

        # bf16 (CUDA, or precision="bf16" on the CPU for the tests): batched; fp32 on the CPU: the loop is as fast
        method = "batched" if self.fast.bf16 else "auto"
        group = max(1, 8192 // max(1, len(x)))  # samples per vmapped pass: activations of ~8192 images at most

        def draw() -> torch.Tensor:
            with self.fast.autocast():
                return vi_logit_samples(self.net, x, samples, max_batch_samples=group, method=method).float()

        if self.device.type != "cuda":
            return draw()
        # the noise is drawn on the CUDA generator: seed it from the (seeded) CPU one, so draws are reproducible
        seed = int(torch.randint(0, 2**62, ()))
        with torch.random.fork_rng(devices=[self.device]):
            torch.cuda.manual_seed(seed)
            return draw()


class LaplaceCifarTeacher(CifarTeacher):
    """Options: ``hessian`` (``kron``, ``diag``, ``full``), ``link`` (``probit`` or ``mc``), ``prior``
    (``marglik`` or a fixed prior precision). Call :meth:`fit_features` once with the training images."""

    kind = "laplace"
    defaults = {"hessian": "kron", "link": "probit", "prior": "marglik"}

    def __init__(self, net: nn.Module, **kwargs):
        super().__init__(net, **kwargs)
        self.fitted = False

    def features(self, x: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
        """``net.features(x)`` ``(n, h)`` float32, in eval mode, without gradients."""
        with torch.no_grad(), self.fast.autocast():
            return torch.cat([self.net.features(part).float() for part in x.split(chunk)])

    def fit_features(self, x: torch.Tensor, y: torch.Tensor) -> LaplaceCifarTeacher:
        """Fit the last-layer Laplace approximation on the features of ``x`` ``(n, 3, 32, 32)`` (computed once)."""
        feats = self.features(x)
        # the head alone, behind a no-op layer so that laplace-torch's last-layer code (closed-form Jacobians
        # phi ⊗ I, no autograd per sample) sees features as its input
        head = nn.Sequential(nn.Flatten(), copy.deepcopy(self.net.head).float())
        for p in head.parameters():
            p.requires_grad_(True)
        self.head_teacher = LaplaceTeacher(lambda: head, epochs=0, seed=self.seed, subset="last_layer",
                                           **self.options).fit(feats, y.to(feats.device))
        self.fitted = True
        return self

    def glm(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(n, K)`` and covariance ``(n, K, K)`` of the linearised logits, from one feature pass: in closed
        form for the Kronecker posterior (:func:`kron_glm`), else laplace-torch's predictive."""
        feats = self.features(x)
        la = self.head_teacher.la
        if self.options["hessian"] == "kron":
            return kron_glm(la.posterior_precision, la.model.model(feats), feats)
        return self.head_teacher._glm(feats)

    def sample_logits(self, x, samples):
        return LaplaceTeacher.gaussian_logit_samples(*self.glm(x), samples)

    def _mean_probs(self, x, samples, temperature):
        if self.options["link"] != "probit":
            return None
        return LaplaceTeacher.probit(*self.glm(x), temperature)


def kron_glm(precision, f_mu: torch.Tensor, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The linearised predictive of a last-layer Kronecker Laplace posterior, in closed form.

    ``precision``: laplace-torch's ``KronDecomposed`` posterior precision of one ``Linear`` layer ``W`` ``(K, h)``
    (eigenvectors ``Q1`` ``(K, K)``, ``Q2`` ``(h, h)``, eigenvalues ``l1``, ``l2``, prior ``δ``), plus a bias block
    ``(Q3, l3, δ_b)`` when the layer has one. ``f_mu`` ``(n, K)``, features ``phi`` ``(n, h)``. With
    ``J = I_K ⊗ φᵀ`` and ``Σ_W = (Q1 ⊗ Q2) (l1 ⊗ l2 + δ)⁻¹ (Q1 ⊗ Q2)ᵀ``:
    ``J Σ_W Jᵀ = Q1 diag(c) Q1ᵀ`` with ``c_i = Σ_j (Q2ᵀ φ)_j² / (l1_i l2_j + δ)``, and the bias adds
    ``Q3 diag(1 / (l3 + δ_b)) Q3ᵀ``. Cost ``O(n (h² + K h + K²))`` instead of laplace-torch's ``(n, K, K·h)``
    Jacobians; equal to ``la._glm_predictive_distribution`` (tested).
    """
    vectors, values, deltas = precision.eigenvectors, precision.eigenvalues, precision.deltas
    (q1, q2), (l1, l2) = vectors[0], values[0]
    phi = phi.to(q2.dtype)
    c = (phi @ q2).pow(2) @ (1 / (torch.outer(l1, l2) + deltas[0])).T  # (n, K)
    f_var = torch.einsum("ki,ni,li->nkl", q1, c, q1)
    if len(vectors) > 1:
        (q3,), (l3,) = vectors[1], values[1]
        f_var = f_var + (q3 / (l3 + deltas[1])) @ q3.T
    return f_mu, f_var


CIFAR_TEACHERS: dict[str, type[CifarTeacher]] = {
    "deterministic": DeterministicCifarTeacher,
    "vi": VICifarTeacher,
    "laplace": LaplaceCifarTeacher,
}


# ------------------------------------------------------------------------------------------------- checkpoints


def save_teacher_checkpoint(path: str | Path, net: nn.Module, *, arch: str, num_classes: int, kind: str,
                            config: dict | None = None) -> Path:
    """Write a trained teacher network with what it is (``arch``, ``num_classes``, ``kind`` of network)."""
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    return atomic_torch_save({"format": CHECKPOINT_FORMAT, "arch": arch, "num_classes": int(num_classes),
                              "kind": base_kind(kind), "state_dict": state, "config": config or {}}, path)


def _head_classes(state: dict) -> int | None:
    for key in ("fc.weight", "classifier.weight", "head.weight", "net.head.weight"):
        if key in state and hasattr(state[key], "shape"):
            return int(state[key].shape[0])
    return None


def _listing(keys: Sequence[str]) -> str:
    keys = list(keys)
    return ", ".join(keys[:4]) + (f", … ({len(keys)} in all)" if len(keys) > 4 else "")


def _vi_layers_of(state: dict) -> str:
    """Which VI layers a state dict holds: inducing-weight layers have ``z_row``, bayesian-torch's ``rho_*``."""
    return "inducing" if any(k.endswith(".z_row") for k in state) else "mean_field"


def check_teacher_checkpoint(path: str | Path, arch: str, num_classes: int, kind: str,
                             net_options: dict | None = None, vi_layers: str = "mean_field") -> dict:
    """Load ``path`` and make sure it is a ``kind`` teacher (``laplace`` needs a deterministic network) of
    architecture ``arch`` with ``num_classes`` classes, a VI one with ``vi_layers`` layers; ``ValueError`` listing
    what was expected otherwise. Returns ``{"arch", "num_classes", "kind", "state_dict"}``."""
    expected = (f"expected a {base_kind(kind)} {arch!r} network with {num_classes} classes (teacher_net={arch!r}, "
                f"teacher={kind!r}, dataset cifar100; valid architectures: {', '.join(sorted(MODELS))})")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"teacher checkpoint {str(path)!r} does not exist; {expected}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise ValueError(f"teacher checkpoint {str(path)!r} is not a torch file ({type(error).__name__}); "
                         f"{expected}") from error
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        got = (payload["arch"], int(payload["num_classes"]), payload["kind"])
        if got != (arch, int(num_classes), base_kind(kind)):
            raise ValueError(f"teacher checkpoint {str(path)!r} holds a {got[2]} {got[0]!r} network with {got[1]} "
                             f"classes; {expected}")
        state = payload["state_dict"]
        if got[2] == "vi" and _vi_layers_of(state) != vi_layers:
            raise ValueError(f"teacher checkpoint {str(path)!r} holds a VI network with {_vi_layers_of(state)} layers, "
                             f"but the run asks for {vi_layers} (teacher option layers; valid: {', '.join(VI_LAYERS)})")
    elif isinstance(payload, dict) and payload and all(torch.is_tensor(v) for v in payload.values()):
        state = payload  # a raw state dict (official snapshot_sd.pt): it must load into the expected network
        if base_kind(kind) == "vi":
            raise ValueError(f"teacher checkpoint {str(path)!r} is a raw state dict; VI teachers need a checkpoint "
                             f"written by sgdbound; {expected}")
        got_classes = _head_classes(state)
        net = build_net(arch, num_classes, **(net_options or {}))
        missing = sorted(set(net.state_dict()) - set(state))
        unexpected = sorted(set(state) - set(net.state_dict()))
        if got_classes is not None and got_classes != num_classes:
            raise ValueError(f"teacher checkpoint {str(path)!r} has a {got_classes}-class head; {expected}")
        if missing or unexpected:
            raise ValueError(f"teacher checkpoint {str(path)!r} does not fit {arch!r} (missing: "
                             f"{_listing(missing) or 'none'}; unexpected: {_listing(unexpected) or 'none'}); "
                             f"{expected}")
        shapes = [k for k, v in net.state_dict().items() if tuple(v.shape) != tuple(state[k].shape)]
        if shapes:
            raise ValueError(f"teacher checkpoint {str(path)!r} has other shapes than {arch!r} at "
                             f"{_listing(shapes)}; {expected}")
    else:
        raise ValueError(f"teacher checkpoint {str(path)!r} holds a {type(payload).__name__}, not a teacher; "
                         f"{expected}")
    return {"arch": arch, "num_classes": int(num_classes), "kind": base_kind(kind), "state_dict": state}


def load_teacher_net(payload: dict, options: dict | None = None, net_options: dict | None = None) -> nn.Module:
    """The network of a checked checkpoint payload (VI networks are bayesianised before loading)."""
    net = build_net(payload["arch"], payload["num_classes"], **(net_options or {}))
    if payload["kind"] == "vi":
        opts = {**VICifarTeacher.defaults, **(options or {})}
        bayesianize(net, opts["prior_sigma"], opts["rho_init"], opts["layers"])
    try:
        net.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as error:
        what = f" with {opts['layers']} VI layers" if payload["kind"] == "vi" else ""
        raise ValueError(f"the teacher checkpoint does not load into a {payload['arch']!r} network{what} "
                         f"(teacher_options layers: {', '.join(VI_LAYERS)}): {str(error).splitlines()[0]}") from None
    return net
