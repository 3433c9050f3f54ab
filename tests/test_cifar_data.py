"""CIFAR-100 data: official-format loading, errors on a bad root, the official augmentation (fast gather against
its per-image twin and against torchvision's PIL path), the device loader, and the official few-shot rule."""

import pickle

import numpy as np
import pytest
import torch

from sgdbound.cifar.data import (
    FOLDER,
    DeviceLoader,
    augment_batch,
    check_data_root,
    draw_augmentation,
    fewshot_count,
    fewshot_indices,
    load_cifar100,
    normalize,
    official_transform,
    reference_augment,
    write_fake_cifar100,
)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_fake_cifar100(tmp_path_factory.mktemp("cifar"), n_train=200, n_test=50, seed=3)


def test_load_reads_the_official_layout(root):
    train, test = load_cifar100(root, "train"), load_cifar100(root, "test")
    assert train.images.shape == (200, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (50, 3, 32, 32) and len(test) == 50
    assert train.labels.dtype == torch.int64 and train.labels.tolist() == [i % 100 for i in range(200)]
    assert len(train.classes) == 100 and train.classes[7] == "class_07"
    with open(root / FOLDER / "train", "rb") as handle:
        raw = pickle.load(handle, encoding="bytes")
    # row layout: 1024 red, then 1024 green, then 1024 blue values, each row-major
    i, c, h, w = 17, 2, 5, 30
    assert train.images[i, c, h, w].item() == raw[b"data"][i, c * 1024 + h * 32 + w]


def test_fake_files_hold_every_official_key(root):
    with open(root / FOLDER / "test", "rb") as handle:
        raw = pickle.load(handle, encoding="bytes")
    assert set(raw) == {b"filenames", b"batch_label", b"fine_labels", b"coarse_labels", b"data"}
    assert raw[b"data"].dtype == np.uint8 and raw[b"data"].shape == (50, 3072)
    with open(root / FOLDER / "meta", "rb") as handle:
        meta = pickle.load(handle, encoding="bytes")
    assert len(meta[b"fine_label_names"]) == 100 and len(meta[b"coarse_label_names"]) == 20


def test_missing_root_names_the_expected_files(tmp_path):
    with pytest.raises(ValueError, match=r"cifar-100-python/train.*cifar-100-python/meta"):
        load_cifar100(tmp_path / "nowhere")
    write_fake_cifar100(tmp_path, n_train=10, n_test=10)
    (tmp_path / FOLDER / "test").unlink()
    with pytest.raises(ValueError, match=r"missing test"):
        check_data_root(tmp_path)


def test_malformed_files_are_refused(tmp_path):
    folder = write_fake_cifar100(tmp_path, n_train=10, n_test=10) / FOLDER
    (folder / "train").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a readable CIFAR-100 pickle"):
        load_cifar100(tmp_path, "train")
    with open(folder / "train", "wb") as handle:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"fine_labels": [0] * 4}, handle)
    with pytest.raises(ValueError, match=r"\(n, 3072\) uint8"):
        load_cifar100(tmp_path, "train")
    with open(folder / "train", "wb") as handle:
        pickle.dump({b"data": np.zeros((4, 3072), np.uint8)}, handle)
    with pytest.raises(ValueError, match="fine_labels"):
        load_cifar100(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        load_cifar100(tmp_path, "valid")


def _images(n, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_batched_augmentation_equals_per_image_twin_for_every_offset():
    images = _images(2 * 81)
    grid = torch.arange(81)
    top, left = (grid // 9).repeat(2), (grid % 9).repeat(2)
    flip = torch.arange(2 * 81) >= 81
    out = augment_batch(images, top, left, flip)
    assert out.shape == images.shape and out.dtype == torch.uint8
    for i in range(len(images)):
        expected = reference_augment(images[i], int(top[i]), int(left[i]), bool(flip[i]))
        torch.testing.assert_close(out[i], expected, rtol=0, atol=0)


def test_twin_equals_torchvision_pil_path():
    """The official transforms act on PIL images: reflect pad 4, crop, mirror; same pixels as ours."""
    import torchvision.transforms.functional as TF
    from PIL import Image

    images = _images(6, seed=1)
    for i, (top, left, flip) in enumerate([(0, 0, False), (8, 8, True), (3, 5, True), (0, 8, False),
                                           (8, 0, True), (4, 4, False)]):
        pil = Image.fromarray(images[i].permute(1, 2, 0).numpy())
        pil = TF.crop(TF.pad(pil, 4, padding_mode="reflect"), top, left, 32, 32)
        if flip:
            pil = TF.hflip(pil)
        torch.testing.assert_close(reference_augment(images[i], top, left, flip), TF.pil_to_tensor(pil),
                                   rtol=0, atol=0)


def test_padding_is_reflect_and_flip_is_an_exact_mirror():
    image = _images(1, seed=2)
    no = torch.tensor([False])
    corner = augment_batch(image, torch.tensor([0]), torch.tensor([4]), no)[0]
    # rows -4..-1 of the padded image are rows 4..1 (reflection without repeating the edge row)
    torch.testing.assert_close(corner[:, :4], image[0, :, [4, 3, 2, 1]], rtol=0, atol=0)
    torch.testing.assert_close(corner[:, 4:], image[0, :, :28], rtol=0, atol=0)
    centre = torch.tensor([4])
    mirrored = augment_batch(image, centre, centre, torch.tensor([True]))
    torch.testing.assert_close(mirrored, image.flip(-1), rtol=0, atol=0)
    torch.testing.assert_close(augment_batch(image, centre, centre, no), image, rtol=0, atol=0)


def test_draws_cover_the_official_distribution():
    top, left, flip = draw_augmentation(18_000, torch.Generator().manual_seed(0))
    assert set(top.tolist()) == set(range(9)) and set(left.tolist()) == set(range(9))
    assert abs(flip.float().mean().item() - 0.5) < 0.02


def test_normalisation_matches_totensor_normalize():
    from PIL import Image

    images = _images(3, seed=4)
    ours = normalize(images)
    transform = official_transform(train=False)
    for i in range(3):
        expected = transform(Image.fromarray(images[i].permute(1, 2, 0).numpy()))
        torch.testing.assert_close(ours[i], expected, rtol=1e-6, atol=1e-6)


def test_device_loader_is_seeded_and_equals_the_twin(root):
    split = load_cifar100(root, "train")
    loader = DeviceLoader(split, batch_size=64, seed=5)
    first, again = list(loader), list(DeviceLoader(split, batch_size=64, seed=5))
    assert len(first) == len(loader) == 4 and first[-1][0].shape == (200 - 192, 3, 32, 32)
    for (x1, y1), (x2, y2) in zip(first, again):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    second = list(loader)  # the next epoch draws anew, and equals epoch_iter(1) on a fresh loader
    assert not torch.equal(first[0][0], second[0][0])
    assert torch.equal(next(iter(DeviceLoader(split, 64, seed=5).epoch_iter(1)))[0], second[0][0])
    assert not torch.equal(next(iter(DeviceLoader(split, 64, seed=6)))[0], first[0][0])
    # rebuild epoch 0 from the same draws with the per-image twin
    gen = loader.generator(0)
    order = torch.randperm(200, generator=gen)
    top, left, flip = draw_augmentation(200, gen)
    for j in (0, 63, 64, 199):
        b, r = divmod(j, 64)
        i = order[j]
        expected = normalize(reference_augment(split.images[i], int(top[j]), int(left[j]), bool(flip[j]))[None])[0]
        torch.testing.assert_close(first[b][0][r], expected, rtol=0, atol=0)
        assert first[b][1][r] == split.labels[i]


def test_device_loader_bf16_channels_last_and_plain(root):
    split = load_cifar100(root, "test")
    x, y = next(iter(DeviceLoader(split, 16, dtype=torch.bfloat16, channels_last=True)))
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)
    plain = DeviceLoader(split, 50, augment=False, shuffle=False)
    x, y = next(iter(plain))
    torch.testing.assert_close(x, normalize(split.images), rtol=0, atol=0)
    assert torch.equal(y, split.labels)
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(split, 0)


@pytest.mark.parametrize(("percent", "k"), [(5, 25), (10, 50), (15, 75), (25, 125), (35, 175), (50, 250), (0.1, 1)])
def test_fewshot_count_is_the_official_rule(percent, k):
    assert fewshot_count(percent) == k


def _official_twin(labels, percent, seed=1234, percents=(5, 10, 15, 25, 35, 50)):
    """create_cifar_subsets.py's selection, written out as plain loops over Python lists."""
    buckets = {c: [] for c in range(100)}
    for i, t in enumerate(labels.tolist()):
        buckets[t].append(i)
    rng = torch.Generator().manual_seed(seed)
    for p in percents:
        k = max(1, int(500 * (p / 100.0) + 0.5))
        chosen = []
        for c in range(100):
            idx = torch.tensor(buckets[c], dtype=torch.long)
            chosen += idx[torch.randperm(len(idx), generator=rng)][:k].tolist()
        if p == percent:
            return chosen


def test_fewshot_subset_follows_the_official_draw():
    labels = torch.randperm(30_000, generator=torch.Generator().manual_seed(0)) % 100  # 300 images per class
    for percent in (5, 10, 50):
        rows = fewshot_indices(labels, percent)
        k = fewshot_count(percent)
        assert rows.tolist() == _official_twin(labels, percent)
        assert len(set(rows.tolist())) == 100 * k
        assert torch.bincount(labels[rows], minlength=100).tolist() == [k] * 100
    assert not torch.equal(fewshot_indices(labels, 5, seed=1), fewshot_indices(labels, 5))
    small = torch.arange(300) % 100  # 3 per class: every class keeps all it has
    assert torch.bincount(small[fewshot_indices(small, 5)], minlength=100).tolist() == [3] * 100
    with pytest.raises(ValueError, match="percent"):
        fewshot_count(0)
