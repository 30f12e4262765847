"""The supervised baseline: the same encoder trained with the labels (cross-entropy).

Not a self-supervised method: it is the ceiling every method is read against. It gets the same
data, backbone, training loop, budget and augmentations (one SimCLR view per image), and only
adds a linear classifier on the encoder's features. The training loop hands it the labels
(``uses_labels``); its features are evaluated with the same frozen-encoder protocols.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from sslkit.augment import AugmentConfig, simclr_augment
from sslkit.backbones import Encoder
from sslkit.methods.base import MethodOutput, ReferenceRecipe, SSLMethod


@dataclass
class SupervisedConfig:
    """``num_classes`` None: taken from the dataset when the method is built."""

    num_classes: int | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        if self.num_classes is not None and self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}.")


class Supervised(SSLMethod):
    title = "supervised"
    reference = ReferenceRecipe(config={"num_classes": 10}, train={"batch_size": 512, "lr": 2e-3}, heads=("head.",),
                                about="not self-supervised: the same encoder trained with the labels")

    uses_labels = True          # the training loop passes labels=... to forward

    def __init__(self, encoder: Encoder, cfg: SupervisedConfig | None = None):
        super().__init__()
        self.cfg = cfg or SupervisedConfig()
        if self.cfg.num_classes is None:
            raise ValueError("the supervised baseline needs num_classes (build it with sslkit.train.build_method).")
        self.encoder = encoder
        self.head = nn.Linear(encoder.dim, self.cfg.num_classes)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> MethodOutput:
        """images: (B, C, H, W) in [0, 1]; labels: (B,) class indices."""
        if labels is None:
            raise ValueError("the supervised baseline trains on labels: call it as method(images, labels=y).")
        h = self.encoder(simclr_augment(images, self.cfg.augment))
        logits = self.head(h)
        loss = F.cross_entropy(logits.float(), labels)
        accuracy = (logits.argmax(1) == labels).float().mean().detach()
        return MethodOutput(loss, features=h.detach(), extras={"logits": logits.detach(), "accuracy": accuracy})
