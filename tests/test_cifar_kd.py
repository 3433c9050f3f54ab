"""CIFAR-100 distillation through the ``sgdbound.kd`` pipeline, on tiny fake data in the official format: every
teacher kind, zoo students, resume, bad data roots, teacher checkpoints that do not fit, presets through the CLI,
the paper's table, and the closed-form Kronecker predictive against laplace-torch's."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
import torch

from sgdbound.cifar import write_fake_cifar100
from sgdbound.cifar.report import paper_table
from sgdbound.cifar.teachers import kron_glm, save_teacher_checkpoint
from sgdbound.cli import main
from sgdbound.kd.distill import DistillConfig, distill


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(write_fake_cifar100(tmp_path_factory.mktemp("cifar"), n_train=100, n_test=100, seed=0))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Untrained wrn_16_1 teachers saved as checkpoints (deterministic and VI), so most tests train no teacher."""
    from sgdbound.cifar.models import build_model
    from sgdbound.cifar.teachers import bayesianize

    folder = tmp_path_factory.mktemp("teachers")
    torch.manual_seed(0)
    for kind, net in (("deterministic", build_model("wrn_16_1")), ("vi", bayesianize(build_model("wrn_16_1")))):
        save_teacher_checkpoint(folder / f"{kind}.pt", net, arch="wrn_16_1", num_classes=100, kind=kind)
    return {"deterministic": str(folder / "deterministic.pt"), "laplace": str(folder / "deterministic.pt"),
            "vi": str(folder / "vi.pt")}


def tiny(root: str, **extra) -> DistillConfig:
    """A wrn_16_1 teacher (one epoch) and a small MLP student on 100 fake images."""
    fields = dict(dataset="cifar100", data_root=root, teacher="deterministic", teacher_net="wrn_16_1", student="mlp",
                  student_options={"hidden": [32]}, epochs=2, teacher_epochs=1, batch_size=50, samples=2, last=2,
                  lam=0.5, lr=3e-3)
    return DistillConfig(**{**fields, **extra})


def test_teacher_is_trained_cached_and_distilled(root, tmp_path):
    result = distill(tiny(root), tmp_path)
    assert result.epochs_run == 2 and len(result.test_acc) == 2 and result.train_size == 100
    assert result.best_acc == max(result.test_acc) and result.final_acc == result.test_acc[-1]
    assert all(torch.isfinite(torch.tensor(result.train_loss)))
    assert 0 <= result.teacher["accuracy"] <= 1 and result.teacher["nll"] > 0
    assert len(list((tmp_path / "teachers").glob("wrn_16_1-deterministic-seed0-*.pt"))) == 1


@pytest.mark.parametrize("kind,extra", [
    ("vi", {"t_teacher": 4.0, "samples": 3}),
    ("laplace", {"temper": "mean", "t_teacher": 2.0, "t_student": 2.0}),
    ("laplace", {"teacher_options": {"link": "mc", "prior": 1.0}, "samples": 4}),
])
def test_each_bayesian_teacher_kind_distils(root, checkpoints, tmp_path, kind, extra):
    result = distill(tiny(root, teacher=kind, teacher_checkpoint=checkpoints[kind], epochs=1, **extra), tmp_path)
    assert len(result.test_acc) == 1 and torch.isfinite(torch.tensor(result.train_loss)).all()
    assert 0 <= result.teacher["accuracy"] <= 1 and result.teacher["nll"] > 0
    assert not (tmp_path / "teachers").exists()  # nothing trained: the checkpoint was used


def test_resume_after_kill(root, checkpoints, tmp_path):
    config = tiny(root, epochs=3, teacher_checkpoint=checkpoints["deterministic"])
    assert distill(config, tmp_path / "a", stop_after=1) is None
    assert (tmp_path / "a" / config.run_id / "checkpoint.pt").exists()
    resumed = distill(config, tmp_path / "a", resume=True)
    straight = distill(config, tmp_path / "b")
    assert resumed.test_acc == straight.test_acc and resumed.train_loss == straight.train_loss
    assert resumed.teacher == straight.teacher


def test_sparse_checkpoints_resume_exactly(root, checkpoints, tmp_path):
    config = tiny(root, epochs=3, teacher_checkpoint=checkpoints["deterministic"], checkpoint_every=2)
    assert distill(config, tmp_path / "a", stop_after=1) is None
    assert not (tmp_path / "a" / config.run_id / "checkpoint.pt").exists()  # none due after epoch 1
    assert distill(config, tmp_path / "a", stop_after=2) is None
    assert torch.load(tmp_path / "a" / config.run_id / "checkpoint.pt", weights_only=False)["epoch"] == 2
    resumed, straight = distill(config, tmp_path / "a", resume=True), distill(config, tmp_path / "b")
    assert resumed.test_acc == straight.test_acc and resumed.train_loss == straight.train_loss


def test_zoo_student_and_few_shot(root, tmp_path):
    result = distill(tiny(root, student="wrn_16_1", student_options={}, lam=0.0, epochs=1, beta=0.5), tmp_path)
    # official few-shot rule on 1 image per class: k = max(1, int(500 * 0.5 + 0.5)) caps at the one available
    assert result.train_size == 100 and result.teacher is None and len(result.test_acc) == 1


def test_bad_data_root_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="cifar-100-python/train"):
        tiny(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="needs data_root"):
        DistillConfig(dataset="cifar100", teacher_net="wrn_16_1", student="mlp")
    broken = write_fake_cifar100(tmp_path / "broken", n_train=10, n_test=10)
    with open(broken / "cifar-100-python" / "train", "wb") as handle:
        pickle.dump({b"data": b"nonsense"}, handle)
    with pytest.raises(ValueError, match="fine_labels"):
        distill(tiny(str(broken)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad,expected", [
    (("wrn_16_2", 100, "deterministic"), "holds a deterministic 'wrn_16_2' network with 100 classes"),
    (("wrn_16_1", 10, "deterministic"), "with 10 classes"),
    (("wrn_16_1", 100, "vi"), "holds a vi 'wrn_16_1'"),
])
def test_teacher_checkpoint_that_does_not_fit_is_refused(root, tmp_path, capsys, bad, expected):
    from sgdbound.cifar.models import build_model

    arch, classes, kind = bad
    path = tmp_path / "teacher.pt"
    save_teacher_checkpoint(path, build_model(arch, classes), arch=arch, num_classes=classes, kind=kind)
    out = tmp_path / "never"
    argv = ["distill", "--dataset", "cifar100", "--data-root", root, "--teacher-net", "wrn_16_1", "--student", "mlp",
            "--teacher", "laplace", "--teacher-checkpoint", str(path), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "expected a deterministic 'wrn_16_1' network with 100 classes" in err
    assert not out.exists()


def test_raw_state_dict_checkpoint(root, tmp_path):
    from sgdbound.cifar.models import build_model
    from sgdbound.cifar.teachers import check_teacher_checkpoint

    good, bad = tmp_path / "good.pt", tmp_path / "bad.pt"
    torch.save(build_model("wrn_16_1").state_dict(), good)  # as an official snapshot_sd.pt
    torch.save(build_model("wrn_16_1", 10).state_dict(), bad)
    assert check_teacher_checkpoint(good, "wrn_16_1", 100, "laplace")["kind"] == "deterministic"
    with pytest.raises(ValueError, match="10-class head; expected a deterministic 'wrn_16_1'"):
        check_teacher_checkpoint(bad, "wrn_16_1", 100, "deterministic")
    with pytest.raises(ValueError, match="does not fit 'resnet18'"):
        check_teacher_checkpoint(good, "resnet18", 100, "deterministic")


def test_presets_through_the_cli(root, tmp_path, capsys):
    assert main(["sweep", "--preset", "kd-resnet50-*", "--data-root", root, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "0 teacher(s) and 60 run(s) valid" in printed  # 4 students x 3 kinds x 5 seeds
    assert "resnet50 (vi) -> vgg8, lam=0.7 T_t=4 T_s=1 S=1 beta=1 epochs=200 seed=4" in printed
    assert main(["distill", "--preset", "fewshot10-resnet50-resnet18-laplace", "--data-root", root, "--dry-run"]) == 0
    assert "lam=1 T_t=2 T_s=2 S=1 beta=0.1 epochs=200 seed=0" in capsys.readouterr().out
    assert main(["sweep", "--preset", "kd-resnet50-vgg9-vi", "--data-root", root]) == 2
    assert "valid presets: teacher-resnet50-deterministic" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_preset_runs_teacher_then_students_then_report(root, tmp_path, capsys):
    out = tmp_path / "runs"
    small = ["--data-root", root, "--teacher-net", "wrn_16_1", "--student", "mlp", "--epochs", "2",
             "--teacher-epochs", "1", "--out", str(out)]
    assert main(["distill", "--preset", "teacher-vgg13-vi", *small]) == 0
    assert main(["sweep", "--preset", "kd-vgg13-wrn_40_1-vi", "--seeds", "0", "1", *small]) == 0
    assert len(list((out / "teachers").glob("*.pt"))) == 1  # the students used the teacher preset's network
    assert len(list(out.glob("cifar100_*/result.json"))) == 2
    assert main(["sweep", "--preset", "kd-vgg13-wrn_40_1-vi", "--seeds", "0", "1", *small]) == 0
    assert "[2/2]" in capsys.readouterr().out  # finished runs are loaded, not redone
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| vgg13 → wrn_40_1 | 67.90 | – | 71.37 |" in printed and "cifar100 wrn_16_1→mlp" in printed


def test_paper_table_puts_our_runs_beside_the_paper():
    base = dict(dataset="cifar100", teacher_net="resnet50", student="wrn_16_2", teacher="vi", lam=0.7, t_teacher=4.0,
                t_student=1.0, samples=1, beta=1.0, best_acc=0.74, convergence_noise=0.002)
    rows = [dict(base, final_acc=0.73), dict(base, final_acc=0.735)]
    table = paper_table(rows)
    assert "| resnet50 → wrn_16_2 | 69.36 | – | 73.63 | 73.25 ± 0.35 (best 74.00, noise 0.20 pp, n=2) | 72.52 | – |" \
        in table
    assert "| resnet50 → vgg8 | 75.66 | – | 77.27 | – | 76.11 | – |" in table


def test_kron_closed_form_equals_laplace_torch():
    from laplace import Laplace

    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 4)).double()
    x, y = torch.randn(60, 6, dtype=torch.float64), torch.randint(0, 4, (60,))
    la = Laplace(head, "classification", subset_of_weights="last_layer", hessian_structure="kron")
    la.fit(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=20))
    la.prior_precision = 0.7
    f_mu, f_var = la._glm_predictive_distribution(x[:7])
    ours_mu, ours_var = kron_glm(la.posterior_precision, head(x[:7]), x[:7])
    torch.testing.assert_close(ours_mu, f_mu)
    torch.testing.assert_close(ours_var, f_var)


def test_config_identity_is_stable_and_runtime_free(root):
    config = tiny(root)
    assert dataclasses.replace(config, device="cpu", data_root=root + "/").run_id == config.run_id
    assert dataclasses.replace(config, teacher_seed=0).run_id != config.run_id
    small = DistillConfig(dataset="mixture", teacher_net="mlp", student="mlp")
    # fields added for CIFAR leave the run ids of earlier results (e.g. runs/small_study) unchanged
    assert not {"teacher_seed", "milestones", "teacher_checkpoint", "device", "data_root"} & set(small.identity())


# ------------------------------------------------------------------ the fast path's code, exercised on the CPU


def test_precision_settings_mean_what_they_say():
    from sgdbound.cifar.precision import Precision

    assert Precision.of("auto", "cpu").bf16 is False and Precision.of("auto", "cuda").bf16 is True
    assert Precision.of("bf16", "cpu").bf16 and not Precision.of("fp32", "cuda").bf16
    fast = Precision.of("bf16", "cpu")
    x = fast.images(torch.randn(2, 3, 8, 8))
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)
    conv = fast.prepare(torch.nn.Conv2d(3, 4, 3))
    assert conv.weight.dtype == torch.float32 and conv.weight.is_contiguous(memory_format=torch.channels_last)
    with fast.autocast():
        assert conv(x).dtype == torch.bfloat16
    with Precision.of("fp32", "cpu").autocast():
        assert conv(x.float()).dtype == torch.float32
    with pytest.raises(ValueError, match="precision"):
        Precision.of("fp16", "cpu")


def test_bad_precision_and_compile_settings_are_refused(root):
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp32"):
        tiny(root, precision="fp16")
    with pytest.raises(ValueError, match="compile must be True, False or a torch.compile mode"):
        tiny(root, compile="fastest")
    with pytest.raises(ValueError, match="apply to the image datasets"):
        DistillConfig(dataset="mixture", teacher_net="mlp", student="mlp", precision="bf16")
    assert tiny(root, precision="bf16", compile="reduce-overhead").run_id == tiny(root).run_id  # runtime only


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["deterministic", "laplace", "vi"])
def test_bf16_channels_last_path_runs_on_the_cpu_and_agrees_with_fp32(root, checkpoints, tmp_path, kind):
    """The CUDA fast path's code (bf16 autocast for teacher and student, channels_last, bf16 batches) on the CPU:
    the same run in fp32 and bf16 gives the same first-epoch loss to bf16's precision (a learning rate of 1e-7
    keeps the student where it starts, so the loss compares the forward passes, not Adam's sign-like steps)."""
    runs = {p: distill(tiny(root, teacher=kind, teacher_checkpoint=checkpoints[kind], student="wrn_16_1",
                            student_options={}, epochs=1, lr=1e-7, precision=p), tmp_path / p)
            for p in ("fp32", "bf16")}
    fp32, bf16 = runs["fp32"], runs["bf16"]
    # the untrained VI net's logits are ~3x larger (std 4: bayesian-torch's initial means), so bf16's rounding
    # through 16 layers moves its probabilities more: 2.5% on the loss measured, 5% allowed; its test NLL (~17,
    # true classes at ~1e-8) is all rounding and is not compared
    rel = 5e-2 if kind == "vi" else 2e-2
    assert torch.isfinite(torch.tensor(bf16.train_loss)).all() and 0 <= bf16.final_acc <= 1
    assert bf16.train_loss[0] == pytest.approx(fp32.train_loss[0], rel=rel)
    assert bf16.train_loss[0] != fp32.train_loss[0]  # it did run in another precision
    if kind != "vi":
        assert bf16.teacher["nll"] == pytest.approx(fp32.teacher["nll"], rel=rel)
    assert len(bf16.epoch_seconds) == 1 and bf16.epoch_seconds[0] > 0


@pytest.mark.slow
def test_compiled_student_matches_eager(root, checkpoints, tmp_path):
    """``compile=True`` (inductor, on the CPU here) trains the same student as the eager run."""
    config = tiny(root, teacher_checkpoint=checkpoints["deterministic"], epochs=2)
    from torch._dynamo.utils import counters

    eager = distill(config, tmp_path / "eager")
    counters.clear()
    compiled = distill(dataclasses.replace(config, compile=True), tmp_path / "compiled")
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo did capture the student
    assert compiled.run_id == eager.run_id
    assert compiled.train_loss == pytest.approx(eager.train_loss, rel=1e-4)
    assert compiled.test_acc == pytest.approx(eager.test_acc, abs=0.011)  # one image of 100 may flip


# ------------------------------------------------------------------------- the Monte Carlo sweep, trained jointly


def _vi_teacher(checkpoints, cls_name="vi"):
    from sgdbound.cifar.teachers import CIFAR_TEACHERS, check_teacher_checkpoint, load_teacher_net

    payload = check_teacher_checkpoint(checkpoints[cls_name], "wrn_16_1", 100, cls_name)
    return CIFAR_TEACHERS[cls_name](load_teacher_net(payload), seed=3)


@pytest.mark.parametrize("kind", ["vi", "deterministic"])
def test_probs_prefixes_equal_separate_calls(checkpoints, kind):
    teacher = _vi_teacher(checkpoints, kind)
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    got = teacher.probs_prefixes(x, [1, 3, 5], 2.0, seed=9)
    for samples, probs in zip([1, 3, 5], got):
        assert torch.equal(probs, teacher.probs(x, samples, 2.0, seed=9))
    if kind == "vi":
        assert not torch.equal(got[0], got[2])  # the samples differ: the comparison can fail
    with pytest.raises(ValueError, match="counts"):
        teacher.probs_prefixes(x, [0, 2])


@pytest.mark.slow
@pytest.mark.parametrize("temper", ["sample", "mean"])
def test_joint_samples_runs_equal_separate_runs(root, checkpoints, tmp_path, temper):
    """S = 1, 2, 3 trained together (one teacher draw of 3 per batch) give each separate run's numbers exactly,
    dropout in the student included (each run keeps its own generator)."""
    from sgdbound.kd.distill import distill_group

    base = tiny(root, teacher="vi", teacher_checkpoint=checkpoints["vi"], lam=0.7, t_teacher=2.0, temper=temper,
                student_options={"hidden": [32], "dropout": 0.2})
    joint = distill_group([dataclasses.replace(base, samples=s) for s in (3, 1, 2)], tmp_path / "joint")
    assert [r.config["samples"] for r in joint] == [1, 2, 3]
    for result in joint:
        alone = distill(dataclasses.replace(base, samples=result.config["samples"]), tmp_path / "alone")
        assert result.run_id == alone.run_id and result.teacher == alone.teacher
        assert result.train_loss == alone.train_loss and result.test_acc == alone.test_acc
    assert joint[0].train_loss != joint[2].train_loss  # S changes the targets: the comparison can fail
    assert (tmp_path / "joint" / joint[1].run_id / "result.json").exists()


@pytest.mark.slow
def test_joint_run_resumes_after_kill_and_skips_finished_runs(root, checkpoints, tmp_path):
    from sgdbound.kd.distill import distill_group

    configs = [tiny(root, teacher="vi", teacher_checkpoint=checkpoints["vi"], samples=s, epochs=3) for s in (1, 2)]
    straight = distill_group(configs, tmp_path / "b")
    assert distill_group(configs, tmp_path / "a", stop_after=1) is None
    resumed = distill_group(configs, tmp_path / "a", resume=True)
    assert [r.train_loss for r in resumed] == [r.train_loss for r in straight]
    assert [r.test_acc for r in resumed] == [r.test_acc for r in straight]
    distill(configs[1], tmp_path / "c")  # S = 2 finished on its own: the joint run only trains S = 1
    mixed = distill_group(configs, tmp_path / "c", resume=True)
    assert [r.test_acc for r in mixed] == [r.test_acc for r in straight]


def test_joint_runs_must_differ_only_in_samples(root, checkpoints):
    from sgdbound.cifar.kd import check_group
    from sgdbound.kd.distill import distill_group
    from sgdbound.kd.sweep import sample_groups

    base = tiny(root, teacher="vi", teacher_checkpoint=checkpoints["vi"])
    with pytest.raises(ValueError, match="differs in lam"):
        check_group([base, dataclasses.replace(base, samples=3, lam=0.9)])
    with pytest.raises(ValueError, match="distinct samples"):
        check_group([base, dataclasses.replace(base, epochs=2)])
    with pytest.raises(ValueError, match="joint runs are for cifar100"):
        distill_group([DistillConfig(dataset="mixture", teacher_net="mlp", student="mlp")])
    configs = [dataclasses.replace(base, samples=s) for s in (1, 2, 3)] + [
        dataclasses.replace(base, samples=2, seed=1), dataclasses.replace(base, lam=0.0, samples=1),
        dataclasses.replace(base, samples=2, device="cpu")]
    # one group per seed; the λ = 0 run alone; a second S = 2 of the same run starts another group
    assert sample_groups(configs) == [[0, 1, 2], [3], [4], [5]]


@pytest.mark.slow
def test_sweep_with_joint_samples_through_the_cli(root, checkpoints, tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["sweep", "--dataset", "cifar100", "--data-root", root, "--teacher", "vi", "--teacher-net", "wrn_16_1",
            "--student", "mlp", "--teacher-checkpoint", checkpoints["vi"], "--samples", "1", "2", "--epochs", "1",
            "--batch-size", "50", "--lam", "0.7", "--out", str(out), "--joint-samples"]
    assert main([*argv, "--dry-run"]) == 0
    assert "--joint-samples: 1 job(s)" in capsys.readouterr().out
    assert main(argv) == 0
    assert len(list(out.glob("cifar100_vi_*S1*/result.json"))) == 1
    assert len(list(out.glob("cifar100_vi_*S2*/result.json"))) == 1


@pytest.mark.slow
def test_joint_group_runs_as_one_process_task(root, checkpoints, tmp_path):
    """``--backend process`` with ``joint_samples``: the group is one task, its results those of the local runs."""
    from sgdbound.kd.sweep import sweep

    configs = [tiny(root, teacher="vi", teacher_checkpoint=checkpoints["vi"], samples=s, epochs=1) for s in (2, 1)]
    pooled = sweep(configs, tmp_path / "pool", backend="process", workers=1, joint_samples=True)
    local = sweep(configs, tmp_path / "local")
    assert [r.config["samples"] for r in pooled] == [2, 1]  # the order of the configs given
    assert [r.train_loss for r in pooled] == [r.train_loss for r in local]


# ------------------------------------------------------------------------- the paper's VI: inducing weights


def test_inducing_vi_teacher_trains_caches_and_distils(root, tmp_path):
    """``layers="inducing"`` (the official ffg_u_cifar100 VI): the teacher trains with its KL (ramped in within one
    epoch here), is cached, read back by a second run, and its S samples are a prefix of more, as for mean field."""
    from sgdbound.cifar.kd import teacher_path
    from sgdbound.cifar.teachers import VICifarTeacher, check_teacher_checkpoint, load_teacher_net

    config = tiny(root, teacher="vi", epochs=1, samples=3, teacher_options={"layers": "inducing", "anneal_epochs": 1})
    first = distill(config, tmp_path)
    path = teacher_path(config, tmp_path)
    assert path.exists() and torch.isfinite(torch.tensor(first.train_loss)).all()
    second = distill(dataclasses.replace(config, seed=1, teacher_seed=0), tmp_path)
    assert second.teacher == first.teacher  # the cached network, the same test draws
    with pytest.raises(ValueError, match="holds a VI network with inducing layers, but the run asks for mean_field"):
        check_teacher_checkpoint(path, "wrn_16_1", 100, "vi")
    payload = check_teacher_checkpoint(path, "wrn_16_1", 100, "vi", vi_layers="inducing")
    net = load_teacher_net(payload, {"layers": "inducing"})
    assert any(type(m).__name__ == "InducingConv2d" for m in net.modules())
    teacher = VICifarTeacher(net, seed=2, layers="inducing")
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    got = teacher.probs_prefixes(x, [1, 3], seed=5)
    assert torch.equal(got[1], teacher.probs(x, 3, seed=5)) and torch.equal(got[0], teacher.probs(x, 1, seed=5))
    with pytest.raises(ValueError, match="with mean_field VI layers"):
        load_teacher_net(payload, {"layers": "mean_field"})
    with pytest.raises(ValueError, match="layers must be one of mean_field, inducing"):
        tiny(root, teacher="vi", teacher_options={"layers": "ffg"})


class _TeacherTrainedOn(Exception):
    """Raised by a stand-in for ``train_teacher_net`` with the size of the split it was given."""


@pytest.mark.parametrize("teacher_data,expected", [("full", 1000), ("subset", 500)])
def test_few_shot_teacher_is_trained_on_the_full_set_as_the_official_script(tmp_path, monkeypatch, teacher_data,
                                                                             expected):
    """The official few-shot students load the full-data teacher (``train_fewshot_exp_students.py
    --teacher_path``): β = 1 % of 10 images per class gives the student 5 per class (500), the teacher all 1000;
    ``teacher_data="subset"`` fits it on the student's subset instead. The Laplace fit sees the same split."""
    import sgdbound.cifar.kd as cifar_kd

    def stand_in(config, train, device="cpu"):
        raise _TeacherTrainedOn(len(train))

    monkeypatch.setattr(cifar_kd, "train_teacher_net", stand_in)
    big = str(write_fake_cifar100(tmp_path / "data", n_train=1000, n_test=100, seed=1))
    config = tiny(big, beta=0.01, teacher_data=teacher_data)
    with pytest.raises(_TeacherTrainedOn) as seen:
        distill(config, tmp_path / "runs")
    assert seen.value.args == (expected,)
    with pytest.raises(_TeacherTrainedOn) as seen:
        cifar_kd.ensure_teacher(config, tmp_path / "runs")
    assert seen.value.args == (expected,)
    full = tiny(big)
    same_file = cifar_kd.teacher_path(config, tmp_path) == cifar_kd.teacher_path(full, tmp_path)
    assert same_file == (teacher_data == "full")  # the few-shot runs share the full-data teacher's cache file
