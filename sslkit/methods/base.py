"""What every method shares: the output of a training step and the base class."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

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
        logs: 0-d tensors (or floats) the training loop writes into each history row as they were
            at its last step, read only then (DINO's teacher entropy and KL, plotted after a cached run).
    """

    loss: torch.Tensor
    features: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)
    logs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """A method's settings on one profile: ``train`` (TrainConfig fields over the profile's common
    ones, a budget included) and ``config`` (fields of the method's own config dataclass)."""

    train: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ReferenceRecipe:
    """How a method's reference run is trained (see :mod:`sslkit.reference`): the method's settings,
    TrainConfig fields except the budget, the budget in epochs, the state-dict prefixes shipped
    beside the encoder (the heads a notebook shows at work) and one line about the recipe."""

    config: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    epochs: float = 20
    heads: tuple[str, ...] = ()
    about: str = ""


class SSLMethod(nn.Module):
    """A self-supervised method: an encoder plus whatever heads its pretext task needs.

    Subclasses set ``encoder`` (the part kept for downstream use) and implement ``forward``,
    which takes a batch of float images ``(B, C, H, W)`` in [0, 1] (un-augmented: each method
    draws its own views) and returns a :class:`MethodOutput`.
    """

    encoder: Encoder
    sync_batchnorm: bool = True     # with DDP, BatchNorm statistics over the global batch (sslkit.distributed)

    # What the rest of the kit reads about a method: the profiles, the references, the comparison and
    # the command line list methods from the registry (sslkit.methods.METHODS) and these attributes,
    # so a new method is its own file and one registry entry.
    title: ClassVar[str] = ""                   # its name in tables and figures ("SimCLR")
    family: ClassVar[str] = "cnn"               # the encoder it trains: "cnn" (small CNN, ResNet-18) or "vit"
    uses_labels: ClassVar[bool] = False         # the loop passes labels=... to forward (the supervised baseline)
    judged_by_finetuning: ClassVar[bool] = False   # its card adds fine-tuning (MAE: the paper's protocol)
    quick: ClassVar[Settings] = Settings()      # the quick profile's settings (CPU, tens of seconds)
    full: ClassVar[Settings] = Settings()       # the full profile's (a GPU, minutes)
    reference: ClassVar[ReferenceRecipe | None] = None  # its reference run; None: none is shipped

    def forward(self, images: torch.Tensor) -> MethodOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_step_end(self, progress: float) -> None:
        """Called after every optimizer step with the fraction of training done (BYOL's EMA)."""
