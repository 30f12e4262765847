"""VICReg: variance, invariance and covariance, three terms that each do one job.

Two augmented views of a batch go through the same encoder and expander (projector); the loss is
a weighted sum of an invariance term (the mean squared distance between the two views'
embeddings), a variance term (a hinge that keeps every embedding unit's standard deviation over
the batch above 1: no collapse to a constant) and a covariance term (the squared off-diagonal
covariances, borrowed from Barlow Twins: no two units carrying the same information). The variance
and covariance terms act on each view's embeddings separately; no normalisation of the
embeddings, no negatives, no predictor, no stop-gradient (the paper's abstract and section 2).

Bardes, Ponce, LeCun. "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised
Learning." ICLR 2022. https://arxiv.org/abs/2105.04906 ; code: facebookresearch/vicreg
(``main_vicreg.py``), whose conventions are followed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from sslkit.augment import AugmentConfig, simclr_augment
from sslkit.backbones import Encoder
from sslkit.distributed import all_gather_with_grad
from sslkit.methods.barlowtwins import off_diagonal
from sslkit.methods.base import MethodOutput, ReferenceRecipe, Settings, SSLMethod


# augmentations.py's TrainTransform: BYOL's two asymmetric views, blur p 1.0 / 0.1, solarization
# p 0 / 0.2 (appendix C.1 describes a symmetrised version; the code is followed). As for the kit's
# BYOL and Barlow Twins on 32x32 images, no blur; the solarization stays asymmetric.
def _view1() -> AugmentConfig:
    return AugmentConfig(blur_p=0.0, solarize_p=0.0)


def _view2() -> AugmentConfig:
    return AugmentConfig(blur_p=0.0, solarize_p=0.2)


@dataclass
class VICRegConfig:
    """VICReg's settings; defaults are main_vicreg.py's (section 4.2: lambda = mu = 25, nu = 1).

    A weight of 0 drops its term: the teaching switches of the paper's Table 7 (appendix D.4),
    where without the variance term the embeddings collapse and without the invariance term
    nothing good is learned.
    """

    projection_dim: int = 8192          # main_vicreg.py --mlp 8192-8192-8192: the expander's three layers
    invariance_weight: float = 25.0     # lambda, --sim-coeff
    variance_weight: float = 25.0       # mu, --std-coeff
    covariance_weight: float = 1.0      # nu, --cov-coeff
    augment1: AugmentConfig = field(default_factory=_view1)
    augment2: AugmentConfig = field(default_factory=_view2)

    def __post_init__(self):
        if isinstance(self.augment1, dict):
            self.augment1 = AugmentConfig(**self.augment1)
        if isinstance(self.augment2, dict):
            self.augment2 = AugmentConfig(**self.augment2)
        if self.projection_dim < 1:
            raise ValueError(f"projection_dim must be positive, got {self.projection_dim}.")
        for name in ("invariance_weight", "variance_weight", "covariance_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 drops the term), got {getattr(self, name)}.")


def expander(in_dim: int, dim: int) -> nn.Sequential:
    """main_vicreg.py's ``Projector``: (Linear, BatchNorm, ReLU) x 2, then a Linear without bias and
    no normalisation of its output. ``(B, in_dim) -> (B, dim)``."""
    return nn.Sequential(nn.Linear(in_dim, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
                         nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True),
                         nn.Linear(dim, dim, bias=False))


def invariance_term(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The mean squared difference of the two views' embeddings ``(N, D)``, over every entry
    (main_vicreg.py's ``F.mse_loss(x, y)``)."""
    return F.mse_loss(z1.float(), z2.float())


def variance_term(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """mean_j max(0, gamma - sqrt(Var(z_j) + eps)) over the D units of one view's ``z (N, D)``.

    A hinge on the standard deviation over the batch, not on the variance: near a collapse the
    variance's gradient vanishes (section 4.1). eps keeps the square root's gradient finite when
    a unit is constant (main_vicreg.py: 1e-4); the variance is the unbiased one, as there.
    """
    std = torch.sqrt(z.float().var(0) + eps)
    return F.relu(gamma - std).mean()


def covariance(z: torch.Tensor) -> torch.Tensor:
    """The covariance matrix of one view's embeddings over the batch, ``(N, D) -> (D, D)``."""
    z = z.float()
    z = z - z.mean(0)
    with torch.autocast(z.device.type, enabled=False):   # fp32 under autocast, as the loss
        return z.T @ z / (z.shape[0] - 1)


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """The sum of the squared off-diagonal covariances of one view's ``z (N, D)``, divided by D
    (section 4.1: the 1/D scales the term with the width; main_vicreg.py's ``cov_loss``)."""
    return off_diagonal(covariance(z)).pow(2).sum() / z.shape[1]


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three terms as main_vicreg.py sums them: the invariance between the views, the two
    views' variance terms averaged, their covariance terms added."""
    return {"invariance": invariance_term(z1, z2),
            "variance": (variance_term(z1) + variance_term(z2)) / 2,
            "covariance": covariance_term(z1) + covariance_term(z2)}


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, invariance_weight: float = 25.0, variance_weight: float = 25.0,
                covariance_weight: float = 1.0) -> torch.Tensor:
    """lambda s(Z, Z') + mu v + nu c for two views' embeddings ``z1, z2 (N, D)`` (main_vicreg.py's loss)."""
    t = vicreg_terms(z1, z2)
    return invariance_weight * t["invariance"] + variance_weight * t["variance"] + covariance_weight * t["covariance"]


class VICReg(SSLMethod):
    title = "VICReg"
    # The expander 1024 wide, not the paper's 8192 (section 4.2, on ResNet-50's 2048 features): 4x the
    # small CNN's 256 features, as 8192 is 4x 2048. A wider one kept helping in Table 12 (appendix
    # D.6), but its D x D layers and covariances cost ~D^2 an image; Barlow Twins' measurement at
    # 1024 and 2048 is the reason (benchmarks/RESULTS.md, "Barlow Twins and VICReg").
    # quick: 60 steps of 64 images: notebook 09 trains each method several times (a short run, a watched
    # loop, VICReg's four ablations), and half of a batch of 128 halves each (RESULTS.md, "notebooks 09 and 10")
    quick = Settings(train={"batch_size": 64, "steps": 60}, config={"projection_dim": 1024})
    # the reference: Barlow Twins' recipe (batch 256, AdamW 2e-3, 25 epochs unless given a budget)
    reference = ReferenceRecipe(config={"projection_dim": 1024}, train={"batch_size": 256, "lr": 2e-3}, epochs=25,
                                about="VICReg, variance-invariance-covariance at 25 / 25 / 1")

    def __init__(self, encoder: Encoder, cfg: VICRegConfig | None = None):
        super().__init__()
        self.cfg = cfg or VICRegConfig()
        self.encoder = encoder
        self.projector = expander(encoder.dim, self.cfg.projection_dim)

    def views(self, images: torch.Tensor) -> torch.Tensor:
        """The two asymmetric views of every image, stacked: (B, C, H, W) -> (2B, C, H, W)."""
        return torch.cat([simclr_augment(images, self.cfg.augment1), simclr_augment(images, self.cfg.augment2)])

    def forward(self, images: torch.Tensor) -> MethodOutput:
        """images: (B, C, H, W) in [0, 1]."""
        B = images.shape[0]
        c = self.cfg
        h = self.encoder(self.views(images))       # (2B, D): one pass over both views
        z = self.projector(h)                      # (2B, projection_dim)
        # with several processes the statistics are over the global batch (main_vicreg.py gathers)
        terms = vicreg_terms(all_gather_with_grad(z[:B]), all_gather_with_grad(z[B:]))
        loss = (c.invariance_weight * terms["invariance"] + c.variance_weight * terms["variance"]
                + c.covariance_weight * terms["covariance"])
        return MethodOutput(loss, features=z[:B].detach(),
                            extras={"encoder_features": h.detach(), "embeddings": z.detach(),
                                    **{name: t.detach() for name, t in terms.items()}})
