"""Encoders: a small CNN for the CPU profile and ResNet-18 adapted to small images.

An encoder maps float images ``(B, C, H, W)`` in [0, 1] to features ``(B, D)``. It holds its
own input normalisation (the dataset's per-channel mean and std, as buffers), so evaluation and
every method feed it the same [0, 1] images and a checkpoint carries everything it needs.
"""

from __future__ import annotations

import math
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


def sincos_position_embedding(grid: int, dim: int, image_grid: int | None = None) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding ``(grid * grid, dim)``, row-major over the
    patch grid: half the channels encode the row, half the column (MAE's ``get_2d_sincos_pos_embed``).

    ``image_grid``: the grid of a full-size image, when ``grid`` patches cover the same extent more
    coarsely (a small crop resized to fewer patches, DINO's local crops). Patch ``i`` then sits at
    ``(i + 0.5) * image_grid / grid - 0.5`` in units of the full grid: the centres at which DINO's
    ``interpolate_pos_encoding`` (vision_transformer.py; bicubic, align_corners=False) reads its
    learned table. A fixed embedding can be evaluated there exactly instead of interpolated.
    """
    if dim % 4:
        raise ValueError(f"the ViT width must be divisible by 4 for a 2-D sine-cosine embedding, got {dim}.")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))   # (D/4,)
    pos = torch.arange(grid, dtype=torch.float64)
    if image_grid is not None and image_grid != grid:
        pos = (pos + 0.5) * (image_grid / grid) - 0.5
    rows, cols = torch.meshgrid(pos, pos, indexing="ij")

    def encode(pos):  # (L,) -> (L, D/2)
        angle = pos.flatten()[:, None] * omega[None]
        return torch.cat([angle.sin(), angle.cos()], 1)

    return torch.cat([encode(rows), encode(cols)], 1).float()


class ViT(nn.Module):
    """A small Vision Transformer for small images: non-overlapping ``patch_size`` patches, a
    fixed sine-cosine position embedding, pre-norm blocks from torch's ``TransformerEncoderLayer``,
    a final LayerNorm and the mean of the patch tokens as the feature (B, D).

    There is no class token by default: the mean-pooled tokens are what MAE's fine-tuning and its
    ablation use (MAE, section A.1), and they serve kNN and linear probes as well. DINO switches one
    on (:meth:`add_class_token`): a learned token put before the patches, whose output is then the
    feature (DINO, section 3.2, "Vision Transformer"). The pieces are exposed so that MAE's encoder
    can run them on the visible patches only: ``patch_embed``, ``pos_embed`` (L, D), ``blocks``,
    ``norm``; ``tokens`` and ``encode_tokens`` are the two halves of ``forward``.

    Images of another size than ``image_size`` (DINO's local crops) are cut into a coarser or finer
    grid of the same patches, positioned over the whole image extent (:func:`sincos_position_embedding`).
    """

    def __init__(self, in_channels: int = 3, image_size: int = 32, patch_size: int = 4, dim: int = 128,
                 depth: int = 4, heads: int = 4, mlp_ratio: int = 4, class_token: bool = False):
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
        self.register_parameter("cls_token", None)       # none by default: the state dict has no entry
        if class_token:
            self.add_class_token()

    def add_class_token(self) -> None:
        """Put a learned class token before the patch tokens; ``forward`` then returns its output.

        Initialised as DINO's (trunc_normal_, std 0.02; vision_transformer.py). Its position
        embedding is zero, as MAE's ``get_2d_sincos_pos_embed(..., cls_token=True)``: the token is
        learned, so a position of its own would add nothing.
        """
        if self.cls_token is None:
            token = torch.zeros(1, 1, self.dim, device=self.patch_embed.weight.device)
            self.cls_token = nn.Parameter(nn.init.trunc_normal_(token, std=0.02))

    def position_embedding(self, grid: int) -> torch.Tensor:
        """(grid * grid, D): the fixed embedding for a ``grid`` x ``grid`` image, placed over the full image."""
        if grid == self.grid:
            return self.pos_embed
        return sincos_position_embedding(grid, self.dim, self.grid).to(self.pos_embed)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, C, H, W) -> patch tokens with positions (B, L, D)."""
        H, W = x.shape[-2:]
        if H != W or H % self.patch_size:
            raise ValueError(f"the ViT takes square images whose side is a multiple of its patch size "
                             f"{self.patch_size}, got {H}x{W}: crop or resize them to such a size.")
        return self.patch_embed(x).flatten(2).transpose(1, 2) + self.position_embedding(H // self.patch_size)

    def input_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images -> what the blocks see: (B, 1 + L, D) with the class token first, else (B, L, D)."""
        t = self.tokens(x)
        if self.cls_token is None:
            return t
        return torch.cat([self.cls_token.expand(len(t), -1, -1), t], 1)

    def encode_tokens(self, t: torch.Tensor) -> torch.Tensor:
        """(B, L', D) tokens, any subset of the patches -> (B, L', D) after the blocks and norm."""
        for block in self.blocks:
            t = block(t)
        return self.norm(t)

    def pool(self, t: torch.Tensor) -> torch.Tensor:
        """Encoded tokens -> the feature (B, D): the class token's output, else the mean of the patches."""
        return t.mean(1) if self.cls_token is None else t[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, D): the class token's output, or the mean of the encoded patch tokens."""
        return self.pool(self.encode_tokens(self.input_tokens(x)))

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As ``forward``, also returning every block's attention weights.

        x: normalised images (B, C, H, W) -> (features (B, D), attention (depth, B, heads, T, T)),
        T = 1 + L with a class token (index 0), else L; row i holds what token i attends to. Each
        block is run as ``TransformerEncoderLayer`` runs it with ``norm_first=True`` (pre-norm
        self-attention, then pre-norm MLP, each with its residual), through the block's own
        ``self_attn`` asked for the weights of every head.
        """
        t, maps = self.input_tokens(x), []
        for block in self.blocks:
            h = block.norm1(t)
            a, w = block.self_attn(h, h, h, need_weights=True, average_attn_weights=False)   # w: (B, heads, T, T)
            t = t + block.dropout1(a)
            h = block.norm2(t)
            t = t + block.dropout2(block.linear2(block.dropout(block.activation(block.linear1(h)))))
            maps.append(w)
        return self.pool(self.norm(t)), torch.stack(maps)


def attention_maps(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Attention weights of every block and head: ``(depth, B, heads, T, T)``.

    ``model``: a :class:`ViT` (``x`` normalised images) or an :class:`Encoder` holding one (``x`` in
    [0, 1], normalised here). T = 1 + L with a class token at index 0, else L patch tokens.
    """
    if isinstance(model, Encoder):
        x, model = (x - model.mean) / model.std, model.backbone
    if not isinstance(model, ViT):
        raise ValueError(f"attention maps need a ViT (vit_mini or vit_tiny), got {type(model).__name__}.")
    return model.forward_with_attention(x)[1]


@torch.no_grad()
def class_token_attention(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """What the class token attends to, in every block and head: ``(depth, B, heads, g, g)`` over the
    g x g patches, and whether the ViT has a class token (the maps of DINO's Figure 1 and
    visualize_attention.py: the [CLS] query's row, its patch columns).

    A ViT without one (MAE's, mean-pooled) has no such row: the mean of the patch queries' rows
    stands in, how much attention each patch receives on average, which is another quantity.
    ``model`` and ``x`` as in :func:`attention_maps`.
    """
    maps = attention_maps(model, x)                         # (depth, B, heads, T, T)
    vit = model.backbone if isinstance(model, Encoder) else model
    has_cls = vit.cls_token is not None
    rows = maps[..., 0, 1:] if has_cls else maps.mean(-2)   # (depth, B, heads, L)
    g = math.isqrt(rows.shape[-1])
    return rows.reshape(*rows.shape[:-1], g, g), has_cls


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
