"""Beyond one machine, exercised on the CPU: a sweep on a local Ray instance (finished runs never redone) and a
two-process gloo DDP run against the single-process run.

What must match in the DDP test, and why: both runs see the same global batches in the same order (every rank
draws the whole batch from the same seeded ``DeviceLoader`` and keeps its half), the teacher is a fixed
network in eval mode (its probabilities do not depend on the batch), the student is an MLP (no BatchNorm, whose
statistics would be per rank on the CPU) and the loss is rescaled so that DDP's gradient average equals the
gradient of the global batch's mean loss. So every optimiser step is the same up to the order of floating-point
sums: parameters agree to ~1e-5, training losses to 1e-5 relative, and test accuracies to within one image.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch

from sgdbound.cifar import write_fake_cifar100
from sgdbound.cifar.models import build_model
from sgdbound.cifar.teachers import save_teacher_checkpoint
from sgdbound.kd.distill import DistillConfig, DistillResult, distill
from sgdbound.kd.sweep import sweep


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist")
    root = str(write_fake_cifar100(folder / "data", n_train=100, n_test=100, seed=1))
    torch.manual_seed(0)
    teacher = folder / "teacher.pt"
    save_teacher_checkpoint(teacher, build_model("wrn_16_1"), arch="wrn_16_1", num_classes=100, kind="deterministic")
    base = dict(dataset="cifar100", data_root=root, teacher="deterministic", teacher_net="wrn_16_1", student="mlp",
                student_options={"hidden": [32]}, epochs=2, teacher_epochs=1, batch_size=50, last=2, lam=0.5,
                lr=3e-3)
    return folder, teacher, base


@pytest.mark.slow
def test_ray_sweep_matches_local_and_skips_finished_runs(tmp_path):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'sgdbound[dist]')")
    # the small-data path keeps the workers' imports light (no torchvision): Ray's cost here is starting workers
    base = dict(dataset="mixture", teacher_net="mlp", student="mlp", teacher_net_options={"hidden": [16]},
                student_options={"hidden": [16]}, epochs=2, teacher_epochs=1, samples=2, beta=0.2, batch_size=50)
    configs = [DistillConfig(**base, seed=0), DistillConfig(**base, seed=1, lam=0.0)]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        results = sweep(configs, tmp_path / "ray", backend="ray")
        stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("*/result.json")}
        again = sweep(configs, tmp_path / "ray", backend="ray")
    finally:
        ray.shutdown()
    assert len(stamps) == 2
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing was rerun
    assert [r.test_acc for r in again] == [r.test_acc for r in results]
    local = distill(configs[1], tmp_path / "local")  # a Ray task computes what a local run computes
    assert results[1].test_acc == local.test_acc and results[1].train_loss == local.train_loss


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, config: DistillConfig, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    distill(config, out)


@pytest.mark.slow
def test_two_process_gloo_ddp_matches_single_process(setup, tmp_path):
    import torch.multiprocessing as mp

    _, teacher, base = setup
    config = DistillConfig(**{**base, "epochs": 3}, teacher_checkpoint=str(teacher))
    single = distill(config, tmp_path / "single")
    # fork: the children inherit the imported modules (a spawned child would spend seconds re-importing torch)
    mp.start_processes(_rank, args=(2, _free_port(), config, str(tmp_path / "ddp")), nprocs=2, join=True,
                       start_method="fork")
    ddp = DistillResult.load(tmp_path / "ddp" / config.run_id / "result.json")
    torch.testing.assert_close(torch.tensor(ddp.train_loss), torch.tensor(single.train_loss), rtol=1e-5, atol=0)
    assert all(abs(a - b) <= 1 / 100 + 1e-9 for a, b in zip(ddp.test_acc, single.test_acc))
    assert ddp.epochs_run == single.epochs_run == 3 and ddp.teacher == pytest.approx(single.teacher)
    a = torch.load(tmp_path / "single" / config.run_id / "checkpoint.pt", weights_only=False)["student"]
    b = torch.load(tmp_path / "ddp" / config.run_id / "checkpoint.pt", weights_only=False)["student"]
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-4)
    assert len(list((tmp_path / "ddp").glob("*/result.json"))) == 1  # one writer: rank 0
