"""Encoders: a small CNN for the CPU profile and ResNet-18 adapted to small images.

An encoder maps float images ``(B, C, H, W)`` in [0, 1] to features ``(B, D)``. It holds its
own input normalisation (the dataset's per-channel mean and std, as buffers), so evaluation and
every method feed it the same [0, 1] images and a checkpoint carries everything it needs.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn


class Encoder(nn.Module):
    """Input normalisation followed by a backbone that ends in a global feature vector.

    Attributes:
        dim: the feature width D.
    """

    def __init__(self, backbone: nn.Module, dim: int, mean: list[float], std: list[float]):
        super().__init__()
        self.backbone = backbone
        self.dim = dim
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) in [0, 1] -> (B, D)."""
        return self.backbone((x - self.mean) / self.std)


def _conv_block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class SmallCNN(nn.Sequential):
    """Four 3x3 conv blocks (32-64-128-256 channels), max-pool after the first three, global
    average pool: about 0.4M parameters, fast enough to pre-train on a laptop CPU.

    ``stages`` (the four blocks) are exposed so a layer-wise probe can read each one.
    """

    widths = (32, 64, 128, 256)

    def __init__(self, in_channels: int = 3, image_size: int = 32):
        w = self.widths
        super().__init__(
            _conv_block(in_channels, w[0], pool=True),
            _conv_block(w[0], w[1], pool=True),
            _conv_block(w[1], w[2], pool=True),
            _conv_block(w[2], w[3], pool=False),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    @property
    def stages(self) -> list[nn.Module]:
        return list(self)[:4]


def resnet18_small(in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """torchvision's ResNet-18 with the usual CIFAR stem (SimCLR appendix B.9): a 3x3 stride-1
    first convolution and no max-pool, so 32x32 images are not shrunk to 8x8 in the stem; the
    classifier is removed, leaving the 512-d average-pooled features."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net


# name -> (constructor taking in_channels and image_size, feature width)
BACKBONES: dict[str, tuple[Callable[[int, int], nn.Module], int]] = {
    "small_cnn": (SmallCNN, SmallCNN.widths[-1]),
    "resnet18": (resnet18_small, 512),
}


def build_encoder(name: str, in_channels: int, mean: list[float], std: list[float],
                  image_size: int = 32) -> Encoder:
    """An :class:`Encoder` with the named backbone (see :data:`BACKBONES`)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}': use one of {', '.join(BACKBONES)}.")
    make, dim = BACKBONES[name]
    return Encoder(make(in_channels, image_size), dim, mean, std)
