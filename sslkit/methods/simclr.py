"""SimCLR: pull two augmented views of an image together, push the other images away.

Each image is augmented twice; an encoder and an MLP projection head map both views to
embeddings, and NT-Xent makes each view pick out its partner among the 2N - 1 others in the
batch. The representation kept for downstream tasks is the encoder's, before the projector.

Chen, Kornblith, Norouzi, Hinton. "A Simple Framework for Contrastive Learning of Visual
Representations." ICML 2020. https://arxiv.org/abs/2002.05709
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from sslkit.augment import AugmentConfig, two_views
from sslkit.backbones import Encoder
from sslkit.losses import nt_xent
from sslkit.methods.base import MethodOutput, ReferenceRecipe, Settings, SSLMethod
from sslkit.methods.heads import projection_head


@dataclass
class SimCLRConfig:
    """SimCLR's settings; defaults are the paper's CIFAR-10 ones (appendix B.9)."""

    temperature: float = 0.5
    projection_dim: int = 128       # output of the projection head
    hidden_dim: int | None = None   # hidden width of the head; None = the encoder's width
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}.")


class SimCLR(SSLMethod):
    title = "SimCLR"
    # quick: temperature 0.2, not the paper's 0.5: it learns faster in short CPU runs
    quick = Settings(config={"temperature": 0.2})
    reference = ReferenceRecipe(config={"temperature": 0.2}, train={"batch_size": 512, "lr": 2e-3},
                                heads=("projector.",), about="SimCLR, NT-Xent at temperature 0.2")

    def __init__(self, encoder: Encoder, cfg: SimCLRConfig | None = None):
        super().__init__()
        self.cfg = cfg or SimCLRConfig()
        self.encoder = encoder
        self.projector = projection_head(encoder.dim, self.cfg.hidden_dim or encoder.dim, self.cfg.projection_dim)

    def views(self, images: torch.Tensor) -> torch.Tensor:
        """Two random views of every image, stacked: (B, C, H, W) -> (2B, C, H, W)."""
        return two_views(images, self.cfg.augment)

    def forward(self, images: torch.Tensor) -> MethodOutput:
        """images: (B, C, H, W) in [0, 1]."""
        B = images.shape[0]
        h = self.encoder(self.views(images))      # (2B, D): one pass over both views
        z = self.projector(h)                      # (2B, projection_dim)
        loss = nt_xent(z[:B], z[B:], self.cfg.temperature)
        return MethodOutput(loss, features=h[:B].detach(), extras={"embeddings": z.detach()})
