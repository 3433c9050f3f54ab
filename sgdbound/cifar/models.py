"""CIFAR networks (3×3 stem, stride 1, no max-pool) as the official Bayesian-KD code builds them.

The official scripts build every net with ``bnn.nn.nets.make_network(name, kernel_size=3, remove_maxpool=True,
out_features=100)``: torchvision ResNets with ``conv1`` replaced by a 3×3 stride-1 convolution and the
max-pool removed; a pre-activation WideResNet with 1×1 convolution shortcuts; ``vgg_c8`` / ``vgg_c13``, VGGs
with BN, two convolutions per stage, no first pool and global average pooling. The classes here keep the
official module names, so an official ``snapshot_sd.pt`` loads with ``strict=True``. Beside them:
RepDistiller's ``vgg8_bn`` / ``vgg13_bn`` (one BN-VGG per stage list, the common KD-benchmark VGGs) and cheap
CIFAR variants of torchvision's MobileNetV2 and ShuffleNetV2 (stride-1 stem, no max-pool).

Every model maps ``(n, 3, 32, 32)`` to logits ``(n, num_classes)`` and exposes ``features(x)`` ``(n, h)`` (the
input of the last linear layer) and ``head`` (that layer, registered last, as last-layer Laplace wants).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

__all__ = ["MODELS", "OFFICIAL_NAMES", "build_model", "count_parameters", "CifarResNet", "WideResNet", "VGGC",
           "RepDistillerVGG", "CifarMobileNetV2", "CifarShuffleNetV2"]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars (BN running statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ------------------------------------------------------------------------------------------------------- ResNet


class CifarResNet(torchvision.models.ResNet):
    """torchvision ResNet with the official CIFAR stem: ``conv1`` 3×3 stride 1 (replaced after torchvision's
    initialisation, as the official code does, so it keeps PyTorch's default init) and no max-pool."""

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: list[int], num_classes: int = 100):
        super().__init__(block, layers, num_classes=num_classes)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.maxpool = nn.Identity()

    @property
    def head(self) -> nn.Linear:
        return self.fc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


# -------------------------------------------------------------------------------------------------- WideResNet


class _WideBlock(nn.Module):
    """Pre-activation basic block ``BN-ReLU-conv3×3-BN-ReLU-(dropout)-conv3×3``; when the width or stride
    changes the shortcut is a 1×1 convolution of the block's raw input."""

    def __init__(self, c_in: int, c_out: int, stride: int, drop_rate: float = 0.0):
        super().__init__()
        self.equal_in_out = c_in == c_out
        self.bn1 = nn.BatchNorm2d(c_in)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.shortcut = None if self.equal_in_out else nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(pre)))
        if self.drop_rate > 0:
            out = nn.functional.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        return (x if self.shortcut is None else self.shortcut(x)) + out


class WideResNet(nn.Module):
    """WRN-``depth``-``widen`` for 32×32 inputs (Zagoruyko & Komodakis 2016): stem 3×3 to 16 channels, three
    groups of ``(depth − 4) / 6`` blocks at widths ``16k, 32k, 64k`` (stride 2 at groups 2 and 3), BN-ReLU,
    global average pool, linear head."""

    def __init__(self, depth: int, widen: int, num_classes: int = 100, drop_rate: float = 0.0):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4 with n >= 1, got {depth}")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False)
        self.group1 = self._group(n, widths[0], widths[1], 1, drop_rate)
        self.group2 = self._group(n, widths[1], widths[2], 2, drop_rate)
        self.group3 = self._group(n, widths[2], widths[3], 2, drop_rate)
        self.bn = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    @staticmethod
    def _group(n: int, c_in: int, c_out: int, stride: int, drop_rate: float) -> nn.Sequential:
        return nn.Sequential(*[_WideBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1, drop_rate)
                               for i in range(n)])

    @property
    def head(self) -> nn.Linear:
        return self.fc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.group3(self.group2(self.group1(self.conv1(x))))
        return self.pool(self.relu(self.bn(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


# ---------------------------------------------------------------------------------------------------------- VGG


def _he_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class VGGC(nn.Module):
    """The official ``vgg_c8`` / ``vgg_c13``: stages of two ``conv3×3(no bias)-BN-ReLU`` at widths
    ``64, 128, 256, 512[, 512]``; no pool after stage 1, 2×2 max-pool after the middle stages, global average
    pool after the last, one linear head. 4 stages: VGG-8 (8 convolutions); 5 stages: VGG-13 (10 convolutions,
    the 13 of ImageNet VGG-13 counting its three FC layers)."""

    def __init__(self, widths: tuple[int, ...], num_classes: int = 100):
        super().__init__()
        c_in = 3
        for i, width in enumerate(widths, start=1):
            layers: list[nn.Module] = []
            for j in range(2):
                layers += [nn.Conv2d(c_in if j == 0 else width, width, 3, padding=1, bias=False),
                           nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            self.add_module(f"stage{i}", nn.Sequential(*layers))
            last = i == len(widths)
            self.add_module(f"pool{i}", nn.AdaptiveAvgPool2d(1) if last else nn.Identity() if i == 1
                            else nn.MaxPool2d(2))
            c_in = width
        self.num_stages = len(widths)
        self.classifier = nn.Linear(widths[-1], num_classes)
        _he_init(self)  # the head keeps PyTorch's default init, as in the official code

    @property
    def head(self) -> nn.Linear:
        return self.classifier

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"pool{i}")(getattr(self, f"stage{i}")(x))
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class RepDistillerVGG(nn.Module):
    """RepDistiller's CIFAR ``vgg*_bn`` (``models/vgg.py`` of HobbitLong/RepDistiller): five blocks of
    ``conv3×3(bias)-BN-ReLU`` (the last ReLU of each block applied in ``forward``), 2×2 max-pools after blocks
    0–2 (block 3's pool only for 64×64 inputs), global average pool, linear head. ``cfg`` lists the widths per
    block: ``vgg8`` ``[[64], [128], [256], [512], [512]]``, ``vgg13`` two of each."""

    def __init__(self, cfg: list[list[int]], num_classes: int = 100):
        super().__init__()
        c_in = 3
        for i, widths in enumerate(cfg):
            layers: list[nn.Module] = []
            for width in widths:
                layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                c_in = width
            self.add_module(f"block{i}", nn.Sequential(*layers[:-1]))
        for i in range(4):
            self.add_module(f"pool{i}", nn.MaxPool2d(2))
        self.pool4 = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, (2.0 / fan) ** 0.5)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    @property
    def head(self) -> nn.Linear:
        return self.classifier

    def features(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2]
        relu = nn.functional.relu
        x = self.pool0(relu(self.block0(x)))
        x = self.pool1(relu(self.block1(x)))
        x = self.pool2(relu(self.block2(x)))
        x = relu(self.block3(x))
        if size == 64:
            x = self.pool3(x)
        return self.pool4(relu(self.block4(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# --------------------------------------------------------------------------------------------- mobile networks


class CifarMobileNetV2(nn.Module):
    """torchvision MobileNetV2 (width 1.0) with a stride-1 stem, so 32×32 inputs end at 2×2 instead of 1×1:
    ``body`` is torchvision's ``features``, then global average pool, dropout 0.2 and the linear head."""

    def __init__(self, num_classes: int = 100):
        super().__init__()
        net = torchvision.models.mobilenet_v2(num_classes=num_classes)
        stem = net.features[0][0]
        net.features[0][0] = nn.Conv2d(3, stem.out_channels, 3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.features[0][0].weight, mode="fan_out")
        self.body = net.features
        self.drop = net.classifier[0]
        self.fc = net.classifier[1]

    @property
    def head(self) -> nn.Linear:
        return self.fc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(self.body(x), 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.features(x)))


class CifarShuffleNetV2(torchvision.models.ShuffleNetV2):
    """torchvision ShuffleNetV2 1.0× with a stride-1 stem and no max-pool: 32×32 inputs end at 4×4."""

    def __init__(self, num_classes: int = 100):
        super().__init__([4, 8, 4], [24, 116, 232, 464, 1024], num_classes=num_classes)
        self.conv1[0] = nn.Conv2d(3, 24, 3, stride=1, padding=1, bias=False)
        self.maxpool = nn.Identity()

    @property
    def head(self) -> nn.Linear:
        return self.fc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return x.mean([2, 3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


# ----------------------------------------------------------------------------------------------------- registry

MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": lambda num_classes=100: CifarResNet(BasicBlock, [2, 2, 2, 2], num_classes),
    "resnet34": lambda num_classes=100: CifarResNet(BasicBlock, [3, 4, 6, 3], num_classes),
    "resnet50": lambda num_classes=100: CifarResNet(Bottleneck, [3, 4, 6, 3], num_classes),
    "resnet101": lambda num_classes=100: CifarResNet(Bottleneck, [3, 4, 23, 3], num_classes),
    "vgg8": lambda num_classes=100: VGGC((64, 128, 256, 512), num_classes),
    "vgg13": lambda num_classes=100: VGGC((64, 128, 256, 512, 512), num_classes),
    "vgg8_rd": lambda num_classes=100: RepDistillerVGG([[64], [128], [256], [512], [512]], num_classes),
    "vgg13_rd": lambda num_classes=100: RepDistillerVGG([[64, 64], [128, 128], [256, 256], [512, 512],
                                                         [512, 512]], num_classes),
    "wrn_16_1": lambda num_classes=100: WideResNet(16, 1, num_classes),
    "wrn_16_2": lambda num_classes=100: WideResNet(16, 2, num_classes),
    "wrn_40_1": lambda num_classes=100: WideResNet(40, 1, num_classes),
    "wrn_40_2": lambda num_classes=100: WideResNet(40, 2, num_classes),
    "mobilenetv2": CifarMobileNetV2,
    "shufflenetv2": CifarShuffleNetV2,
}

#: Our name → the ``--model`` / teacher-folder name the official scripts use for the same network.
OFFICIAL_NAMES = {"resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50", "resnet101": "resnet101",
                  "vgg8": "vgg_c8", "vgg13": "vgg_c13", "wrn_16_1": "wrn_16_1", "wrn_16_2": "wrn_16_2",
                  "wrn_40_1": "wrn_40_1", "wrn_40_2": "wrn_40_2"}


def build_model(name: str, num_classes: int = 100) -> nn.Module:
    """A freshly initialised CIFAR network from :data:`MODELS`; ``ValueError`` listing the valid names."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {', '.join(sorted(MODELS))}; got {name!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return MODELS[name](num_classes=num_classes)
