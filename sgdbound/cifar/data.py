"""CIFAR-100 in its official python-pickle format, the official augmentation, a device-resident loader, and the
official few-shot subsets.

Layout read (nothing is ever downloaded)::

    <data_root>/cifar-100-python/train   pickle: b"data" (50000, 3072) uint8 (R, G, B planes of 32×32),
                                                 b"fine_labels" list[int] in 0..99 (also b"filenames", …)
    <data_root>/cifar-100-python/test    the same with 10000 rows
    <data_root>/cifar-100-python/meta    pickle: b"fine_label_names" list of 100 names

Augmentation (official scripts ``train_student.py``, ``train_teacher_*.py``): ``RandomCrop(32, padding=4,
padding_mode="reflect")`` then ``RandomHorizontalFlip()``, then ``ToTensor()`` and ``Normalize`` with the
CIFAR-100 statistics below. Here a crop is the pair of offsets ``(top, left)`` ∈ {0..8}² into the 40×40
reflect-padded image and a flip is a boolean, so the fast path and its slow twin can be fed the same draws:

* :func:`augment_batch` gathers the crop (with the reflection folded into the source indices) and the flip (a
  ``torch.where`` on the column indices) for a whole batch in one indexing op, on any device, any dtype;
* :func:`reference_augment` is the per-image twin (``F.pad(mode="reflect")``, a slice, ``torch.flip``);
* :class:`DeviceLoader` keeps a whole split on the device as uint8 and yields normalised float32 / bf16
  batches, optionally channels_last, seeded per epoch (so a resumed run redraws the same epochs).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "FOLDER",
    "FEWSHOT_PERCENTS",
    "FEWSHOT_SEED",
    "CifarSplit",
    "DeviceLoader",
    "OfficialStyleDataset",
    "augment_batch",
    "check_data_root",
    "draw_augmentation",
    "fewshot_count",
    "fewshot_indices",
    "load_cifar100",
    "normalize",
    "official_transform",
    "reference_augment",
    "write_fake_cifar100",
]

#: Channel statistics of the CIFAR-100 training set, as in the official scripts' ``STATS["CIFAR100"]``.
CIFAR100_MEAN = (0.50707516, 0.48654887, 0.44091784)
CIFAR100_STD = (0.26733429, 0.25643846, 0.27615047)
FOLDER = "cifar-100-python"
NUM_CLASSES = 100
IMAGE_SIZE = 32
PADDING = 4
#: The official few-shot percentages, in the order ``create_cifar_subsets.py`` draws them from one generator.
FEWSHOT_PERCENTS = (5, 10, 15, 25, 35, 50)
FEWSHOT_SEED = 1234
IMAGES_PER_CLASS = 500


# ---------------------------------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class CifarSplit:
    """One split in memory: ``images`` ``(n, 3, 32, 32)`` uint8, ``labels`` ``(n,)`` int64 in ``0..99``,
    ``classes`` the 100 fine label names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.numel())

    def subset(self, indices: torch.Tensor) -> CifarSplit:
        """The rows ``indices`` (any order), as a new split."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        return CifarSplit(self.images[indices], self.labels[indices], self.classes)


def _expected() -> str:
    return f"{FOLDER}/train, {FOLDER}/test and {FOLDER}/meta (the official CIFAR-100 python version)"


def check_data_root(data_root: str | Path) -> Path:
    """The ``cifar-100-python`` folder under ``data_root``; ``ValueError`` naming the expected files if any is
    missing (nothing is downloaded)."""
    root = Path(data_root).expanduser()
    folder = root / FOLDER
    missing = [name for name in ("train", "test", "meta") if not (folder / name).is_file()]
    if missing:
        where = f"{folder}" if folder.is_dir() else f"{root} (no {FOLDER}/ folder)"
        raise ValueError(f"data_root {str(data_root)!r}: missing {', '.join(missing)} in {where}; expected "
                         f"{_expected()}; nothing is downloaded, unpack cifar-100-python.tar.gz there")
    return folder


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            obj = pickle.load(handle, encoding="bytes")
    except Exception as error:  # any unpickling failure means the file is not the official one
        raise ValueError(f"{path} is not a readable CIFAR-100 pickle ({type(error).__name__}: {error}); "
                         f"expected {_expected()}") from error
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, expected a dict; expected {_expected()}")
    # keys are bytes in the official files; accept str too (files re-pickled by Python 3 code)
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in obj.items()}


def _read_split(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    obj = _unpickle(path)
    for key in ("data", "fine_labels"):
        if key not in obj:
            raise ValueError(f"{path} lacks the key b{key!r} (has {sorted(obj)}); expected {_expected()}")
    data = np.asarray(obj["data"])
    labels = np.asarray(obj["fine_labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * IMAGE_SIZE * IMAGE_SIZE:
        raise ValueError(f"{path}: b'data' must be (n, 3072) uint8, got {data.shape} {data.dtype}")
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{path}: b'fine_labels' must hold one label per image ({data.shape[0]}), "
                         f"got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"{path}: b'fine_labels' must lie in 0..{NUM_CLASSES - 1}, "
                         f"got {labels.min()}..{labels.max()}")
    images = torch.from_numpy(data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).copy())
    return images, torch.from_numpy(labels.astype(np.int64))


def load_cifar100(data_root: str | Path, split: str = "train") -> CifarSplit:
    """Read ``split`` (``"train"`` or ``"test"``) from ``<data_root>/cifar-100-python``.

    Returns a :class:`CifarSplit` with images ``(n, 3, 32, 32)`` uint8 in CHW order (the official rows are the R,
    G and B planes one after the other, so a reshape suffices). Raises ``ValueError`` naming the expected files
    when the folder is missing, and naming the key or shape at fault when a file is malformed.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = check_data_root(data_root)
    meta = _unpickle(folder / "meta")
    names = meta.get("fine_label_names")
    if names is None or len(names) != NUM_CLASSES:
        raise ValueError(f"{folder / 'meta'}: b'fine_label_names' must list {NUM_CLASSES} names; "
                         f"expected {_expected()}")
    classes = tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)
    images, labels = _read_split(folder / split)
    return CifarSplit(images, labels, classes)


def write_fake_cifar100(root: str | Path, n_train: int = 500, n_test: int = 100, seed: int = 0) -> Path:
    """Write tiny random files in exactly the official format under ``<root>/cifar-100-python`` and return
    ``root``. Labels cycle through the 100 classes (``i % 100``) so that every class is present once
    ``n ≥ 100``; images are seeded uniform uint8. For tests and benchmarks."""
    if n_train < 0 or n_test < 0:
        raise ValueError(f"n_train and n_test must be >= 0, got {n_train}, {n_test}")
    rng = np.random.default_rng(seed)
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = [i % NUM_CLASSES for i in range(n)]
        obj = {
            b"filenames": [f"fake_{split}_{i}.png".encode() for i in range(n)],
            b"batch_label": f"{split}ing batch 1 of 1".encode(),
            b"fine_labels": fine,
            b"coarse_labels": [c // 5 for c in fine],
            b"data": rng.integers(0, 256, size=(n, 3 * IMAGE_SIZE * IMAGE_SIZE), dtype=np.uint8),
        }
        with open(folder / split, "wb") as handle:
            pickle.dump(obj, handle, protocol=2)
    meta = {b"fine_label_names": [f"class_{c:02d}".encode() for c in range(NUM_CLASSES)],
            b"coarse_label_names": [f"superclass_{c:02d}".encode() for c in range(NUM_CLASSES // 5)]}
    with open(folder / "meta", "wb") as handle:
        pickle.dump(meta, handle, protocol=2)
    return Path(root)


# ------------------------------------------------------------------------------------------------ augmentation


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map indices in ``[-PADDING, size + PADDING)`` onto ``[0, size)`` as reflect padding does (no edge repeat)."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def augment_batch(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor,
                  channels_last: bool = False) -> torch.Tensor:
    """Official crop-and-flip of a batch in one gather.

    ``images`` ``(b, 3, 32, 32)`` any dtype; ``top``, ``left`` ``(b,)`` integers in ``0..8`` (the crop's corner
    in the 40×40 reflect-padded image); ``flip`` ``(b,)`` bool. Returns ``(b, 3, 32, 32)`` of the input dtype,
    with channels_last strides when asked (the gather produces NHWC directly, so that costs no copy).
    """
    b, _, h, w = images.shape
    device = images.device
    ar_h = torch.arange(h, device=device)
    ar_w = torch.arange(w, device=device)
    # the flip follows the crop: output column j reads crop column w-1-j, a mirror done in index space
    cols = torch.where(flip.to(device)[:, None], (w - 1) - ar_w, ar_w)  # (b, w)
    rows = _reflect(top.to(device)[:, None] + ar_h - PADDING, h)  # (b, h) rows of the unpadded image
    cols = _reflect(left.to(device)[:, None] + cols - PADDING, w)  # (b, w)
    batch = torch.arange(b, device=device)[:, None, None]
    nhwc = images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (b, h, w, 3)
    out = nhwc.permute(0, 3, 1, 2)
    return out if channels_last else out.contiguous()


def reference_augment(image: torch.Tensor, top: int, left: int, flip: bool) -> torch.Tensor:
    """The slow twin of :func:`augment_batch` for one ``(3, 32, 32)`` image: reflect-pad by 4, slice the 32×32
    window at ``(top, left)``, mirror the columns if ``flip``."""
    padded = F.pad(image[None].double(), (PADDING,) * 4, mode="reflect")[0]
    crop = padded[:, top:top + IMAGE_SIZE, left:left + IMAGE_SIZE]
    if flip:
        crop = torch.flip(crop, dims=(2,))
    return crop.to(image.dtype)


def draw_augmentation(n: int, generator: torch.Generator, device: torch.device | str | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(top, left, flip)`` for ``n`` images: offsets uniform on ``0..8``, flips with probability 1/2, drawn from
    ``generator`` (on its device)."""
    device = generator.device if device is None else torch.device(device)
    top = torch.randint(0, 2 * PADDING + 1, (n,), generator=generator, device=device)
    left = torch.randint(0, 2 * PADDING + 1, (n,), generator=generator, device=device)
    flip = torch.rand(n, generator=generator, device=device) < 0.5
    return top, left, flip


def _stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1).to(device)
    std = torch.tensor(CIFAR100_STD).view(1, 3, 1, 1).to(device)
    return mean, std


def normalize(images: torch.Tensor, dtype: torch.dtype = torch.float32,
              stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 ``(b, 3, h, w)`` → ``(x / 255 − mean) / std`` with the CIFAR-100 statistics (``ToTensor`` then
    ``Normalize``), computed in float32 and cast to ``dtype``; keeps the input's memory format. ``stats``: the
    ``(mean, std)`` tensors ``(1, 3, 1, 1)`` already on the device (a loader passes them to avoid a host-to-device
    copy per batch)."""
    mean, std = stats if stats is not None else _stats(images.device)
    out = (images.float() / 255.0 - mean) / std
    return out.to(dtype)


def official_transform(train: bool = True):
    """The official torchvision pipeline (PIL image → normalised tensor), for the plain baseline and tests."""
    import torchvision.transforms as tf

    norm = [tf.ToTensor(), tf.Normalize(CIFAR100_MEAN, CIFAR100_STD)]
    aug = [tf.RandomCrop(IMAGE_SIZE, padding=PADDING, padding_mode="reflect"), tf.RandomHorizontalFlip()]
    return tf.Compose((aug if train else []) + norm)


class OfficialStyleDataset(torch.utils.data.Dataset):
    """What ``torchvision.datasets.CIFAR100`` does per item (HWC uint8 → PIL → ``transform``), over a
    :class:`CifarSplit`; the CPU ``DataLoader`` baseline of the official code."""

    def __init__(self, split: CifarSplit, transform=None):
        self.data = split.images.permute(0, 2, 3, 1).contiguous().numpy()
        self.targets = split.labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image

        img = Image.fromarray(self.data[index])
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]


class DeviceLoader:
    """Batches of a whole split kept on ``device`` as uint8, augmented there.

    Each epoch draws a permutation (if ``shuffle``) and per-image crops and flips (if ``augment``) from a
    generator seeded with ``(seed, epoch)``, so epoch ``e`` is the same whether or not earlier epochs ran.
    Yields ``(x, y)``: ``x`` ``(b, 3, 32, 32)`` normalised, of ``dtype`` (float32 or bfloat16), channels_last if
    asked; ``y`` ``(b,)`` int64.
    """

    def __init__(self, split: CifarSplit, batch_size: int = 100, *, device: torch.device | str = "cpu",
                 augment: bool = True, shuffle: bool = True, drop_last: bool = False, seed: int = 0,
                 dtype: torch.dtype = torch.float32, channels_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype}")
        self.device = torch.device(device)
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.batch_size = int(batch_size)
        self.augment, self.shuffle, self.drop_last = augment, shuffle, drop_last
        self.seed, self.dtype, self.channels_last = int(seed), dtype, channels_last
        self.epoch = 0
        self._stats = _stats(self.device)

    def __len__(self) -> int:
        n = self.labels.numel()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def generator(self, epoch: int) -> torch.Generator:
        """The generator of epoch ``epoch`` (on the loader's device)."""
        return torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + int(epoch))

    def epoch_iter(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of epoch ``epoch``."""
        n = self.labels.numel()
        gen = self.generator(epoch)
        order = (torch.randperm(n, generator=gen, device=self.device) if self.shuffle
                 else torch.arange(n, device=self.device))
        if self.augment:
            top, left, flip = draw_augmentation(n, gen, self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size]
            x = self.images[index]
            if self.augment:
                x = augment_batch(x, top[start:start + self.batch_size], left[start:start + self.batch_size],
                                  flip[start:start + self.batch_size], channels_last=self.channels_last)
            elif self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield normalize(x, self.dtype, self._stats), self.labels[index]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self.epoch_iter(epoch)


# ---------------------------------------------------------------------------------------------------- few-shot


def fewshot_count(percent: float, per_class: int = IMAGES_PER_CLASS) -> int:
    """Images per class of the official few-shot subset: ``k = max(1, int(500 · β/100 + 0.5))``."""
    if not 0 < percent <= 100:
        raise ValueError(f"percent must lie in (0, 100], got {percent}")
    return max(1, int(per_class * (percent / 100.0) + 0.5))


def fewshot_indices(labels: torch.Tensor, percent: int, seed: int = FEWSHOT_SEED,
                    sequence: Sequence[int] = FEWSHOT_PERCENTS, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Training rows of the official few-shot subset with ``percent`` % of each class.

    Follows ``scripts/create_cifar_subsets.py``: one CPU generator seeded with ``seed`` draws the subsets for the
    percentages of ``sequence`` in turn (so the 10 % subset depends on the 5 % draw before it); for each class
    ``0..99``, the class's rows in dataset order are permuted with ``torch.randperm`` and the first ``k`` kept
    (all of them where a class has fewer than ``k``). Rows come back grouped by class, in draw order.
    ``percent`` outside ``sequence`` is drawn first from a fresh generator.
    """
    labels = torch.as_tensor(labels, dtype=torch.long).cpu()
    sequence = tuple(sequence) if percent in sequence else (percent,)
    buckets = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
    rng = torch.Generator().manual_seed(seed)
    for p in sequence:
        k = fewshot_count(p)
        chosen = [bucket[torch.randperm(len(bucket), generator=rng)][:k] for bucket in buckets]
        if p == percent:
            return torch.cat(chosen) if chosen else torch.empty(0, dtype=torch.long)
    raise AssertionError("unreachable")
