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

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) in [0, 1] -> the last feature map before global pooling (B, D, h, w),
        for heads that need to know where things are (the whole-image jigsaw). A small CNN's
        stages, or a ResNet's stem and layer1..layer4."""
        x = (x - self.mean) / self.std
        b = self.backbone
        if hasattr(b, "stages"):
            for stage in b.stages:
                x = stage(x)
            return x
        if all(hasattr(b, f"layer{i}") for i in range(1, 5)):
            x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
            return b.layer4(b.layer3(b.layer2(b.layer1(x))))
        raise ValueError(f"a {type(b).__name__} backbone has no feature map before pooling: use small_cnn or resnet18.")


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


def sincos_position_embedding(grid: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding ``(grid * grid, dim)``, row-major over the
    patch grid: half the channels encode the row, half the column (MAE's ``get_2d_sincos_pos_embed``)."""
    if dim % 4:
        raise ValueError(f"the ViT width must be divisible by 4 for a 2-D sine-cosine embedding, got {dim}.")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))   # (D/4,)
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                                indexing="ij")

    def encode(pos):  # (L,) -> (L, D/2)
        angle = pos.flatten()[:, None] * omega[None]
        return torch.cat([angle.sin(), angle.cos()], 1)

    return torch.cat([encode(rows), encode(cols)], 1).float()


class ViT(nn.Module):
    """A small Vision Transformer for small images: non-overlapping ``patch_size`` patches, a
    fixed sine-cosine position embedding, pre-norm blocks from torch's ``TransformerEncoderLayer``,
    a final LayerNorm and the mean of the patch tokens as the feature (B, D).

    There is no class token: the mean-pooled tokens are what MAE's fine-tuning and its ablation
    use (MAE, section A.1), and they serve kNN and linear probes as well. The pieces are exposed
    so that MAE's encoder can run them on the visible patches only: ``patch_embed``,
    ``pos_embed`` (L, D), ``blocks``, ``norm``; ``tokens`` and ``encode_tokens`` are the two halves
    of ``forward``.
    """

    def __init__(self, in_channels: int = 3, image_size: int = 32, patch_size: int = 4, dim: int = 128,
                 depth: int = 4, heads: int = 4, mlp_ratio: int = 4):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"the image size {image_size} is not divisible by the ViT's patch size {patch_size}: "
                             f"use images whose side is a multiple of {patch_size}.")
        self.patch_size, self.dim, self.grid = patch_size, dim, image_size // patch_size
        self.num_patches = self.grid ** 2                                            # L
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)  # a linear map per patch
        self.register_buffer("pos_embed", sincos_position_embedding(self.grid, dim))   # (L, D), fixed as in MAE
        self.blocks = nn.ModuleList([
            nn.TransformerEncoderLayer(dim, heads, dim * mlp_ratio, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, C, H, W) -> patch tokens with positions (B, L, D)."""
        return self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed

    def encode_tokens(self, t: torch.Tensor) -> torch.Tensor:
        """(B, L', D) tokens, any subset of the patches -> (B, L', D) after the blocks and norm."""
        for block in self.blocks:
            t = block(t)
        return self.norm(t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, D): the mean of all the encoded patch tokens."""
        return self.encode_tokens(self.tokens(x)).mean(1)


def vit_mini(in_channels: int = 3, image_size: int = 32) -> ViT:
    """Patch 4, width 128, 4 blocks of 4 heads (0.8M parameters): the CPU profile's ViT."""
    return ViT(in_channels, image_size, patch_size=4, dim=128, depth=4, heads=4)


def vit_tiny(in_channels: int = 3, image_size: int = 32) -> ViT:
    """ViT-Tiny's width and depth (192, 12 blocks of 3 heads; 5.4M parameters) with patch 4 for 32x32 images."""
    return ViT(in_channels, image_size, patch_size=4, dim=192, depth=12, heads=3)


BACKBONES["vit_mini"] = (vit_mini, 128)
BACKBONES["vit_tiny"] = (vit_tiny, 192)


def eval_batch_size(device: torch.device) -> int:
    """Images per forward pass when only running an encoder (features, predictions): 1024 on a
    GPU; 128 on a CPU, where small batches stay in the cache (measured here on 2 cores: the small
    CNN 15-35% and the ViT 60-80% more images/s at 128 than at 512)."""
    return 1024 if device.type == "cuda" else 128
