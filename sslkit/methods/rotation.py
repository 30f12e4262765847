"""Rotation prediction: rotate every image by each of K angles and ask which one was applied.

Telling which way is up needs to know what the object is (a cat's ears go on top, a ship sits
on the water), so a network that solves the task has to learn semantic features. Every image
of a batch is shown at all K rotations in the same batch, and an encoder plus a K-way head
predicts the rotation index.

Gidaris, Singh, Komodakis. "Unsupervised Representation Learning by Predicting Image
Rotations." ICLR 2018. https://arxiv.org/abs/1803.07728. The authors' code:
gidariss/FeatureLearningRotNet (comments below cite its files).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from sslkit.augment import crop_resize_flip
from sslkit.backbones import Encoder, eval_batch_size
from sslkit.methods.base import MethodOutput, ReferenceRecipe, Settings, SSLMethod

ROTATION_COUNTS = (2, 4, 8)


@dataclass
class RotationConfig:
    """RotNet's settings; K = 4 (0, 90, 180, 270 degrees) and the crop as the authors' dataloader.py."""

    num_rotations: int = 4          # K: 2 (0/180), 4 (0/90/180/270) or 8 (45-degree steps, the paper's ablation)
    hidden_dim: int | None = None   # hidden width of the rotation head; None = the encoder's width, 0 = linear head
    crop_padding: int = 4           # dataloader.py, CIFAR-10: RandomCrop(32, padding=4), RandomHorizontalFlip()

    def __post_init__(self):
        if self.num_rotations not in ROTATION_COUNTS:
            raise ValueError(f"num_rotations must be 2, 4 or 8, got {self.num_rotations}.")
        if self.hidden_dim is not None and self.hidden_dim < 0:
            raise ValueError(f"hidden_dim must be >= 0 (0 = a linear head), got {self.hidden_dim}.")
        if self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {self.crop_padding}.")

    @property
    def angles(self) -> list[float]:
        """The K angles in degrees, counter-clockwise; the label of a view is its index here."""
        return [360.0 * k / self.num_rotations for k in range(self.num_rotations)]


def rotate(images: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate ``(B, C, H, W)`` images counter-clockwise by ``angle`` degrees.

    Multiples of 90 degrees are exact (``torch.rot90``: no interpolation, nothing cut off);
    other angles resample bilinearly and leave the corners empty (zeros).
    """
    if angle % 90 == 0:
        return torch.rot90(images, int(angle // 90) % 4, dims=(2, 3))
    B, C, H, W = images.shape
    a = math.radians(angle)
    # affine_grid maps output to input coordinates (x right, y down): the inverse rotation
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]],
                         dtype=images.dtype, device=images.device).expand(B, 2, 3)
    grid = F.affine_grid(theta, [B, C, H, W], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def disc_mask(height: int, width: int, device=None) -> torch.Tensor:
    """``(1, 1, H, W)`` 1 inside the inscribed disc, 0 in the corners."""
    y = (torch.arange(height, device=device) + 0.5) / height * 2 - 1
    x = (torch.arange(width, device=device) + 0.5) / width * 2 - 1
    return ((y.view(-1, 1) ** 2 + x.view(1, -1) ** 2) <= 1.0).float().view(1, 1, height, width)


class Rotation(SSLMethod):
    title = "rotation"
    # quick: batch 64 (x 4 rotations = 256 views), 100 steps, not the paper's 128: a view costs a
    # quarter less in a batch of 256 than of 512 here (cache), and more steps learn more. 5k / 1k
    # evaluation, kNN / linear / 10-shot gain over random init, two seeds: +6.7 / +1.1 / +4.0 and
    # +6.2 / +4.0 / +3.5 in 34 s; batch 128 x 60 steps +4.9 / +2.0 / +4.2 and +3.5 / +1.4 / +2.5 in 41-51 s
    quick = Settings(train={"batch_size": 64, "steps": 100})
    reference = ReferenceRecipe(train={"batch_size": 128, "lr": 2e-3}, heads=("head.",),
                                about="RotNet, K = 4, every rotation of every image in the batch")

    def __init__(self, encoder: Encoder, cfg: RotationConfig | None = None):
        super().__init__()
        self.cfg = cfg or RotationConfig()
        self.encoder = encoder
        K, D = self.cfg.num_rotations, encoder.dim
        hidden = D if self.cfg.hidden_dim is None else self.cfg.hidden_dim
        # Deviation: in the authors' code the rotation classifier is a global average pool and one linear
        # layer after the last conv block (architectures/NetworkInNetwork.py), and the features evaluated
        # are the 2nd block's (config/..._Conv2_feats.py: out_feat_keys ['conv2']), so they sit a few
        # layers below the rotation classifier. Our encoder
        # ends in pooled features, so a small MLP plays the role of those extra layers (the most
        # task-specific part is then the head, not the features kept for downstream use).
        self.head = (nn.Linear(D, K) if hidden == 0 else
                     nn.Sequential(nn.Linear(D, hidden, bias=False), nn.BatchNorm1d(hidden),
                                   nn.ReLU(inplace=True), nn.Linear(hidden, K)))

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """The authors' light CIFAR-10 augmentation, per image: a random crop of the image padded
        by ``crop_padding`` px and a horizontal flip (dataloader.py: ``RandomCrop(32, padding=4)``,
        ``RandomHorizontalFlip()``). (B, C, H, W) -> (B, C, H, W).

        Deviation: the padding reflects the image (one ``grid_sample``) instead of zeros.
        """
        B, _, H, W = images.shape
        p = self.cfg.crop_padding
        shift = torch.randint(-p, p + 1, (B, 2), device=images.device).float()
        boxes = torch.stack([shift[:, 0], shift[:, 1], torch.full_like(shift[:, 0], H), torch.full_like(shift[:, 0], W)], 1)
        return crop_resize_flip(images, boxes, torch.rand(B, device=images.device) < 0.5)

    def rotations(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All K rotations of every image, stacked rotation-major, and their labels.

        (B, C, H, W) -> views (K*B, C, H, W), labels (K*B,): views[k*B + i] is image i rotated
        by ``cfg.angles[k]`` and has label k.
        """
        B, _, H, W = images.shape
        views = torch.cat([rotate(images, a) for a in self.cfg.angles])
        if self.cfg.num_rotations == 8:
            # Deviation (the authors' code has no 45-degree turn, its rotate_img takes multiples of 90
            # only, so it does not show how the paper handled corners): a 45-degree rotation
            # leaves empty corners, which would give the odd angles away without looking at the
            # object, so every view, also the exact multiples of 90, is cut to the central disc.
            views = views * disc_mask(H, W, images.device)
        labels = torch.arange(self.cfg.num_rotations, device=images.device).repeat_interleave(B)
        return views, labels

    def forward(self, images: torch.Tensor) -> MethodOutput:
        """images: (B, C, H, W) in [0, 1]."""
        B = images.shape[0]
        views, labels = self.rotations(self.augment(images))
        h = self.encoder(views)                       # (K*B, D): one pass over every rotation
        logits = self.head(h)                         # (K*B, K)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(1) == labels).float().mean().detach()
        return MethodOutput(loss, features=h[:B].detach(),   # the upright views
                            extras={"logits": logits.detach(), "labels": labels, "accuracy": accuracy})

    @torch.no_grad()
    def rotation_probs(self, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """The head's probabilities for every rotation of every image, in eval mode.

        Args:
            images: uint8 or [0, 1] float ``(N, C, H, W)``, not augmented.
        Returns:
            ``(N, K, K)``: ``[i, k]`` is the predicted distribution over angles for image i
            rotated by ``cfg.angles[k]`` (a perfect model puts 1 at ``[i, k, k]``).
        """
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        batch_size = batch_size or max(1, eval_batch_size(device) // self.cfg.num_rotations)   # images, x K views
        out = []
        try:
            for i in range(0, len(images), batch_size):
                x = images[i: i + batch_size].to(device)
                x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
                views, _ = self.rotations(x)
                p = self.head(self.encoder(views)).softmax(1)        # (K*b, K)
                out.append(p.view(self.cfg.num_rotations, len(x), -1).transpose(0, 1).cpu())
        finally:
            self.train(was_training)
        return torch.cat(out)
