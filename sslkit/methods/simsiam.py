"""SimSiam: BYOL without the momentum encoder; a predictor and a stop-gradient are enough.

Two augmented views of an image go through the same encoder and projector; a small predictor
maps one view's projection to the other's, and the other side gets no gradient (stop-gradient).
There is no target network, no EMA, no negatives: the paper's point is that the predictor and
the stop-gradient alone keep the embeddings from collapsing (switch either off to see it).

Chen, He. "Exploring Simple Siamese Representation Learning." CVPR 2021.
https://arxiv.org/abs/2011.10566 ; code: facebookresearch/simsiam (``simsiam/builder.py``,
``main_simsiam.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from sslkit.augment import AugmentConfig, two_views
from sslkit.backbones import Encoder
from sslkit.methods.base import MethodOutput, ReferenceRecipe, Settings, SSLMethod
from sslkit.methods.heads import projection_head


@dataclass
class SimSiamConfig:
    """SimSiam's settings; the widths are ``builder.py``'s defaults (dim 2048, pred_dim 512).

    ``stop_gradient`` and ``use_predictor`` are the teaching switches: without either, the
    embeddings collapse (the paper's section 4.1, stop-gradient, and 4.2, predictor).
    """

    projection_dim: int = 2048        # the projector's width and output (builder.py's dim)
    predictor_dim: int = 512          # the predictor's bottleneck (builder.py's pred_dim)
    stop_gradient: bool = True
    use_predictor: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        if self.projection_dim < 1 or self.predictor_dim < 1:
            raise ValueError(f"projection_dim and predictor_dim must be positive, got {self.projection_dim} "
                             f"and {self.predictor_dim}.")


def projector(in_dim: int, dim: int) -> nn.Sequential:
    """builder.py's 3-layer projector: (Linear-BN-ReLU) x 2, then Linear and a BatchNorm without
    affine parameters on the output. ``(B, in_dim) -> (B, dim)``."""
    return nn.Sequential(nn.Linear(in_dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
                         nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
                         nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim, affine=False))


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """D(p, z) = -cos(p, z), averaged over the batch (the paper's section 3); ``p, z: (B, D)``. The
    caller decides whether ``z`` carries a gradient: SimSiam passes ``z.detach()``."""
    return -F.cosine_similarity(p.float(), z.float(), dim=-1).mean()


class SimSiam(SSLMethod):
    title = "SimSiam"
    # quick: BYOL's quick settings (batch 64, 100 steps: no negatives, so small batches cost little,
    # and in seconds it needs steps); widths a quarter of builder.py's for the small CNN's 256
    # features. Not tuned yet: 300 steps of 128 on CIFAR-10 left kNN at random init's level (lr 1e-3)
    # or below it (5e-3), without collapse (RESULTS.md, "SimSiam").
    quick = Settings(train={"batch_size": 64, "steps": 100}, config={"projection_dim": 512, "predictor_dim": 128})
    # the reference: BYOL's recipe (batch 256, AdamW 2e-3), the quick widths; a short run shows the
    # mechanics, not a gain (as for BYOL), so the reference is where SimSiam's result is seen. Shipped:
    # 30 minutes on the shared 2-core CPU, 9.9 epochs, kNN +9.4 / linear +8.5 (RESULTS.md, "Reference runs")
    reference = ReferenceRecipe(config={"projection_dim": 512, "predictor_dim": 128},
                                train={"batch_size": 256, "lr": 2e-3}, about="SimSiam, stop-gradient and predictor")

    def __init__(self, encoder: Encoder, cfg: SimSiamConfig | None = None):
        super().__init__()
        self.cfg = cfg or SimSiamConfig()
        c = self.cfg
        self.encoder = encoder
        self.projector = projector(encoder.dim, c.projection_dim)
        # the bottleneck predictor, dim -> pred_dim -> dim (builder.py: no BatchNorm on its output)
        self.predictor = projection_head(c.projection_dim, c.predictor_dim, c.projection_dim) if c.use_predictor \
            else nn.Identity()

    def views(self, images: torch.Tensor) -> torch.Tensor:
        """Two augmented views of every image, stacked: (B, C, H, W) -> (2B, C, H, W)."""
        return two_views(images, self.cfg.augment)

    def forward(self, images: torch.Tensor) -> MethodOutput:
        """images: (B, C, H, W) in [0, 1]."""
        B = images.shape[0]
        h = self.encoder(self.views(images))       # (2B, D): one pass over both views
        z = self.projector(h)                      # (2B, projection_dim)
        p = self.predictor(z)
        target = z.detach() if self.cfg.stop_gradient else z
        # symmetric (section 3): each view's prediction regresses the other view's projection
        loss = 0.5 * negative_cosine(p[:B], target[B:]) + 0.5 * negative_cosine(p[B:], target[:B])
        # the collapse signal on the projections, the outputs whose spread the paper plots (fig. 2)
        return MethodOutput(loss, features=z[:B].detach(),
                            extras={"encoder_features": h.detach(), "predictions": p.detach(), "projections": z.detach()})
