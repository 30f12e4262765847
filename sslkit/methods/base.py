"""What every method shares: the output of a training step and the base class."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from sslkit.backbones import Encoder


@dataclass
class MethodOutput:
    """What a method's ``forward`` returns.

    Attributes:
        loss: the scalar to minimise.
        features: ``(B, D)`` encoder features of one view, detached; the training loop uses
            them for the collapse signal (the spread of the normalised embeddings).
        extras: whatever a notebook may want to plot (predictions, masks, logits...).
    """

    loss: torch.Tensor
    features: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)


class SSLMethod(nn.Module):
    """A self-supervised method: an encoder plus whatever heads its pretext task needs.

    Subclasses set ``encoder`` (the part kept for downstream use) and implement ``forward``,
    which takes a batch of float images ``(B, C, H, W)`` in [0, 1] (un-augmented: each method
    draws its own views) and returns a :class:`MethodOutput`.
    """

    encoder: Encoder
    sync_batchnorm: bool = True     # with DDP, BatchNorm statistics over the global batch (sslkit.distributed)

    def forward(self, images: torch.Tensor) -> MethodOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_step_end(self, progress: float) -> None:
        """Called after every optimizer step with the fraction of training done (BYOL's EMA)."""
