"""Barlow Twins: make the cross-correlation of two views' embeddings the identity matrix.

Two augmented views of a batch go through the same encoder and projector; each embedding unit
is standardised over the batch, and the D x D cross-correlation matrix between the two views is
pulled towards the identity: its diagonal to 1 (each unit agrees across the views: invariance),
its off-diagonal to 0 (different units carry different information: redundancy reduction). No
negatives, no predictor, no stop-gradient, no moving average (the paper's abstract).

Zbontar, Jing, Misra, LeCun, Deny. "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction." ICML 2021. https://arxiv.org/abs/2103.03230 ; code: facebookresearch/barlowtwins
(``main.py``), whose conventions are followed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from sslkit.augment import AugmentConfig, simclr_augment
from sslkit.backbones import Encoder
from sslkit.distributed import all_gather_with_grad
from sslkit.methods.base import MethodOutput, ReferenceRecipe, Settings, SSLMethod


# main.py's Transform: BYOL's two asymmetric views (section 2.2), blur p 1.0 / 0.1 and solarization
# p 0 / 0.2. As the kit's BYOL does for 32x32 images, no blur; the solarization stays asymmetric.
def _view1() -> AugmentConfig:
    return AugmentConfig(blur_p=0.0, solarize_p=0.0)


def _view2() -> AugmentConfig:
    return AugmentConfig(blur_p=0.0, solarize_p=0.2)


@dataclass
class BarlowTwinsConfig:
    """Barlow Twins' settings; defaults are main.py's.

    ``lambd = 0`` drops the redundancy-reduction (off-diagonal) term and ``invariance_weight = 0``
    the invariance (on-diagonal) term: the teaching switches of the paper's Table 5, where either
    term alone does worse (only invariance 57.3% top-1, only redundancy reduction 0.1%).
    """

    projection_dim: int = 8192       # main.py --projector 8192-8192-8192: all three layers this wide
    lambd: float = 0.0051            # main.py --lambd (section 2.2: the search found 5e-3 best)
    invariance_weight: float = 1.0   # 1 in the paper; 0 switches the on-diagonal term off
    augment1: AugmentConfig = field(default_factory=_view1)
    augment2: AugmentConfig = field(default_factory=_view2)

    def __post_init__(self):
        if isinstance(self.augment1, dict):
            self.augment1 = AugmentConfig(**self.augment1)
        if isinstance(self.augment2, dict):
            self.augment2 = AugmentConfig(**self.augment2)
        if self.projection_dim < 1:
            raise ValueError(f"projection_dim must be positive, got {self.projection_dim}.")
        if self.lambd < 0 or self.invariance_weight < 0:
            raise ValueError(f"lambd and invariance_weight must be >= 0 (0 drops a term), got {self.lambd} "
                             f"and {self.invariance_weight}.")


def projector(in_dim: int, dim: int) -> nn.Sequential:
    """main.py's projector: (Linear without bias, BatchNorm, ReLU) x 2, then a Linear without bias
    and nothing after it (the loss standardises the output). ``(B, in_dim) -> (B, dim)``."""
    return nn.Sequential(nn.Linear(in_dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
                         nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
                         nn.Linear(dim, dim, bias=False))


def standardise(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each unit to mean 0 and variance 1 over the batch: ``(N, D) -> (N, D)``.

    What main.py's ``nn.BatchNorm1d(D, affine=False)`` computes in training mode: the biased
    variance, plus BatchNorm's eps so that a constant unit gives 0, not a division by zero. (The
    paper's Algorithm 1 divides by ``z.std(0)``, the unbiased std: its matrix is (N-1)/N times this one.)
    """
    z = z.float()
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The empirical cross-correlation matrix of two views' embeddings, ``(N, D), (N, D) -> (D, D)``:
    entry (i, j) is the correlation over the batch between unit i of view 1 and unit j of view 2.
    Each view is standardised with its own batch statistics (main.py applies ``self.bn`` to each).
    In fp32 even under autocast: a bf16 matrix would round the diagonal's distance to 1 away."""
    with torch.autocast(z1.device.type, enabled=False):
        return standardise(z1).T @ standardise(z2) / z1.shape[0]


def off_diagonal(m: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square matrix, flattened: ``(D, D) -> (D * (D - 1),)``
    (main.py's ``off_diagonal``: drop the last entry, and the rows of D + 1 then start on the diagonal)."""
    n, k = m.shape
    if n != k:
        raise ValueError(f"off_diagonal needs a square matrix, got {n}x{k}.")
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def barlow_twins_terms(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two sums of the loss on a cross-correlation matrix ``c (D, D)``: the invariance term
    sum_i (1 - c_ii)^2 and the redundancy-reduction term sum_{i != j} c_ij^2 (section 2.1)."""
    return (torch.diagonal(c) - 1).pow(2).sum(), off_diagonal(c).pow(2).sum()


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 0.0051) -> torch.Tensor:
    """The Barlow Twins loss of two views' embeddings ``z1, z2 (N, D)``: invariance + lambd x
    redundancy reduction, on their cross-correlation matrix (main.py's ``forward``)."""
    on_diag, off_diag = barlow_twins_terms(cross_correlation(z1, z2))
    return on_diag + lambd * off_diag


class BarlowTwins(SSLMethod):
    title = "Barlow Twins"
    # Widths: 8192 in the paper (section 2.2, on ResNet-50's 2048 features), where a wider output kept
    # helping (Figure 4). The projector's D x D layers and the loss's D x D matrix cost ~D^2 an image:
    # at 1024 (4x the small CNN's 256 features, as 8192 is 4x 2048) a step is as fast as SimSiam's,
    # at 2048 it is 0.58x (benchmarks/RESULTS.md, "Barlow Twins and VICReg").
    # quick: 60 steps of 64 images: notebook 09 trains each method several times (a short run, a watched
    # loop, VICReg's four ablations), and half of a batch of 128 halves each (RESULTS.md, "notebooks 09 and 10")
    quick = Settings(train={"batch_size": 64, "steps": 60}, config={"projection_dim": 1024})
    # the reference: SimSiam's and BYOL's recipe (batch 256, AdamW 2e-3), 25 epochs unless the build is
    # given a budget (RESULTS.md); the projector ships so a notebook can show its matrix at work
    reference = ReferenceRecipe(config={"projection_dim": 1024}, train={"batch_size": 256, "lr": 2e-3}, epochs=25,
                                heads=("projector.",), about="Barlow Twins, cross-correlation to the identity")

    def __init__(self, encoder: Encoder, cfg: BarlowTwinsConfig | None = None):
        super().__init__()
        self.cfg = cfg or BarlowTwinsConfig()
        self.encoder = encoder
        self.projector = projector(encoder.dim, self.cfg.projection_dim)

    def views(self, images: torch.Tensor) -> torch.Tensor:
        """The two asymmetric views of every image, stacked: (B, C, H, W) -> (2B, C, H, W)."""
        return torch.cat([simclr_augment(images, self.cfg.augment1), simclr_augment(images, self.cfg.augment2)])

    def forward(self, images: torch.Tensor) -> MethodOutput:
        """images: (B, C, H, W) in [0, 1]."""
        B = images.shape[0]
        h = self.encoder(self.views(images))       # (2B, D): one pass over both views
        z = self.projector(h)                      # (2B, projection_dim)
        # with several processes the matrix is over the global batch (main.py all-reduces it)
        c = cross_correlation(all_gather_with_grad(z[:B]), all_gather_with_grad(z[B:]))   # (projection_dim,) * 2
        on_diag, off_diag = barlow_twins_terms(c)
        loss = self.cfg.invariance_weight * on_diag + self.cfg.lambd * off_diag
        # the collapse signal on the embeddings the loss acts on (before standardisation)
        return MethodOutput(loss, features=z[:B].detach(),
                            extras={"encoder_features": h.detach(), "embeddings": z.detach(),
                                    "cross_correlation": c.detach(), "invariance": on_diag.detach(),
                                    "redundancy": off_diag.detach()})
