"""BYOL: predict a slowly moving copy of yourself, with no negatives at all.

Two augmented views of an image go through an online network (encoder, projector, predictor)
and a target network (encoder, projector) whose weights are an exponential moving average of
the online ones; the online prediction of one view regresses the target projection of the
other. Nothing pushes different images apart: what keeps the embeddings from collapsing to a
constant is the predictor and the slow, gradient-free target (switch either off to see it).

Grill, Strub, Altché, Tallec, Richemond, Buchatskaya, Doersch, Pires, Guo, Azar, Piot,
Kavukcuoglu, Munos, Valko. "Bootstrap Your Own Latent: A New Approach to Self-Supervised
Learning." NeurIPS 2020. https://arxiv.org/abs/2006.07733
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from sslkit.augment import AugmentConfig, simclr_augment
from sslkit.backbones import Encoder
from sslkit.methods.base import MethodOutput, ReferenceRecipe, Settings, SSLMethod
from sslkit.methods.ema import ema_update
from sslkit.methods.heads import projection_head


# The paper's two views (Table 6, appendix B) differ in blur (p 1.0 and 0.1) and solarization
# (p 0 and 0.2).
# The kit's images are 32x32 or smaller, where a blur of sigma up to 2 pixels wipes out most of the
# object: like SimCLR's CIFAR-10 recipe (and solo-learn's BYOL CIFAR configuration) we drop blur
# and keep the asymmetric solarization. Measured on the quick profile (2-minute runs, CIFAR-10,
# other settings equal): kNN 38.2% / linear 50.6% without blur, 37.0% / 50.2% with the paper's
# blur; a small difference, in the same direction as SimCLR's. Colour jitter strength
# 0.5 gives brightness = contrast = saturation = 0.4 and hue 0.1 (the paper has saturation 0.2).
def _view1() -> AugmentConfig:
    return AugmentConfig(blur_p=0.0, solarize_p=0.0)


def _view2() -> AugmentConfig:
    return AugmentConfig(blur_p=0.0, solarize_p=0.2)


@dataclass
class BYOLConfig:
    """BYOL's settings; defaults are the paper's (section 3.3) except where noted.

    ``base_momentum`` 0.99 rather than the paper's 0.996: the paper's value is for 1000 epochs
    of ImageNet; a run of minutes on small data needs a target that moves faster (0.99 is the best
    decay rate in the paper's own ablation at 300 epochs, Table 5a: 72.5% top-1). ``base_momentum = 0``
    is the teaching switch "no EMA": the target is then the online network itself at every step (the
    cosine schedule is not applied, since it would turn it back into an EMA by the end).
    """

    base_momentum: float = 0.99
    use_predictor: bool = True          # False: the teaching switch that lets BYOL collapse
    hidden_dim: int = 4096              # MLP hidden width of projector and predictor
    projection_dim: int = 256
    augment1: AugmentConfig = field(default_factory=_view1)
    augment2: AugmentConfig = field(default_factory=_view2)

    def __post_init__(self):
        if isinstance(self.augment1, dict):
            self.augment1 = AugmentConfig(**self.augment1)
        if isinstance(self.augment2, dict):
            self.augment2 = AugmentConfig(**self.augment2)
        if not 0.0 <= self.base_momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {self.base_momentum}.")
        if self.hidden_dim < 1 or self.projection_dim < 1:
            raise ValueError(f"hidden_dim and projection_dim must be positive, got {self.hidden_dim} "
                             f"and {self.projection_dim}.")


def momentum_at(progress: float, base_momentum: float) -> float:
    """The paper's schedule (section 3.3; ``target_ema`` in the authors' byol/utils/schedules.py):
    tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2, from base to 1."""
    if base_momentum == 0.0:
        return 0.0
    return 1.0 - (1.0 - base_momentum) * (math.cos(math.pi * min(1.0, progress)) + 1.0) / 2.0


def regression_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """2 - 2 cos(p, z) per row, the squared distance of the L2-normalised vectors (eq. 2).

    p, z: (B, D) -> (B,).
    """
    return 2.0 - 2.0 * F.cosine_similarity(p.float(), z.float(), dim=-1)


class BYOL(SSLMethod):
    title = "BYOL"
    # quick: batch 64. No negatives, so small batches cost it little, and in minutes it needs steps.
    # 2-minute runs: kNN 36.6-38.2% / linear 49.6-51.6% at batch 64 (five runs, 550-650 steps), 34-38% /
    # 49.5-51% at 128, 34.1% / 49.4% at 256; random init 35.2% / 48.7%. Three seeds on a slower day
    # (441-467 steps): +0.3 kNN / +0.6 linear over random init on average, within noise (RESULTS.md).
    # 100 steps (about 25 s) so that notebook 05's three runs fit its time. Base momentum 0.9 (0.99 on
    # the full profile): a run of a few hundred steps needs a target that keeps up (at 0.99 it averages
    # over the last ~100 steps, most of the run; batch 128: kNN 38.2% at 0.9, 36.8% at 0.97); projector
    # and predictor 1024 wide, not 4096: 10% more steps in the same time and within noise (kNN 38.2 /
    # linear 50.6 against 35.7 / 51.7 for 4096, 2-minute runs)
    quick = Settings(train={"batch_size": 64, "steps": 100}, config={"base_momentum": 0.9, "hidden_dim": 1024})
    reference = ReferenceRecipe(config={"base_momentum": 0.99, "hidden_dim": 1024}, train={"batch_size": 256, "lr": 2e-3},
                                about="BYOL, EMA target from 0.99 to 1")

    def __init__(self, encoder: Encoder, cfg: BYOLConfig | None = None):
        super().__init__()
        self.cfg = cfg or BYOLConfig()
        c = self.cfg
        self.encoder = encoder
        self.projector = projection_head(encoder.dim, c.hidden_dim, c.projection_dim)
        self.predictor = projection_head(c.projection_dim, c.hidden_dim, c.projection_dim) if c.use_predictor \
            else nn.Identity()
        # the target network: a copy of encoder and projector that no gradient ever reaches;
        # it only moves through update_target
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        # the momentum of the next target update; a buffer, so a checkpoint carries it and a resumed
        # or reloaded run continues from the scheduled value, not from the base one (float64: the
        # update uses exactly the scheduled number)
        self.register_buffer("_momentum", torch.tensor(momentum_at(0.0, c.base_momentum), dtype=torch.float64))

    @property
    def momentum(self) -> float:
        return float(self._momentum)

    @momentum.setter
    def momentum(self, value: float) -> None:
        self._momentum.fill_(value)

    def views(self, images: torch.Tensor) -> torch.Tensor:
        """The two asymmetric views of every image, stacked: (B, C, H, W) -> (2B, C, H, W)."""
        return torch.cat([simclr_augment(images, self.cfg.augment1), simclr_augment(images, self.cfg.augment2)])

    @torch.no_grad()
    def target_projections(self, views: torch.Tensor) -> torch.Tensor:
        """(2B, C, H, W) -> (2B, projection_dim), under stop-gradient."""
        if self.cfg.base_momentum == 0.0:
            # "no EMA": the target is the online network itself, still without gradient
            return self.projector(self.encoder(views))
        return self.target_projector(self.target_encoder(views))

    def forward(self, images: torch.Tensor) -> MethodOutput:
        """images: (B, C, H, W) in [0, 1]."""
        B = images.shape[0]
        v = self.views(images)
        h = self.encoder(v)                        # (2B, D): one pass over both views
        y = self.projector(h)                      # (2B, projection_dim)
        p = self.predictor(y)
        z = self.target_projections(v)             # (2B, projection_dim), no gradient
        # symmetric: view 1's prediction regresses view 2's target, and the other way round
        loss = (regression_loss(p[:B], z[B:]) + regression_loss(p[B:], z[:B])).mean()
        # the collapse signal is taken on the online projections, the embeddings the loss acts
        # on: that is where collapse shows first (measured: with both switches off the projections
        # collapse within a few dozen steps while the encoder's features have not moved yet)
        return MethodOutput(loss, features=y[:B].detach(),
                            extras={"encoder_features": h.detach(), "predictions": p.detach(), "targets": z,
                                    "momentum": self.momentum})

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """target <- m * target + (1 - m) * online, for every weight of encoder and projector.

        Buffers (BatchNorm's running statistics) are the target's own: it computes them in its
        own forward passes, as in the authors' code (byol_experiment.py keeps a separate
        ``target_state`` that only the target's forward pass updates).
        """
        online = list(self.encoder.parameters()) + list(self.projector.parameters())
        target = list(self.target_encoder.parameters()) + list(self.target_projector.parameters())
        ema_update(target, online, momentum)

    def on_step_end(self, progress: float) -> None:
        """After every optimizer step: move the target, then schedule the next momentum."""
        if self.cfg.base_momentum > 0.0:
            self.update_target(self.momentum)
        self.momentum = momentum_at(progress, self.cfg.base_momentum)
