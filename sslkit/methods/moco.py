"""MoCo v2: contrast each query with a queue of keys from earlier batches.

SimCLR's negatives are the other images of the batch, so their number is tied to the batch size,
and a CPU cannot afford big batches. MoCo keeps the encodings ("keys") of the last K images in a
queue and uses them as negatives: K no longer depends on the batch. To keep old keys comparable
with new ones, the keys come from a *momentum encoder*, an exponential moving average of the
query encoder that changes slowly (the same EMA as BYOL's target, :mod:`sslkit.methods.ema`).
For each image, one view is the query, the other view's key is its positive, and InfoNCE picks
the positive out of the K queued negatives.

He, Fan, Wu, Xie, Girshick. "Momentum Contrast for Unsupervised Visual Representation Learning."
CVPR 2020. https://arxiv.org/abs/1911.05722
Chen, Fan, Girshick, He. "Improved Baselines with Momentum Contrastive Learning." 2020
(MoCo v2: an MLP projection head and more data augmentation, SimCLR's blur added to MoCo's; its
abstract and section 3). https://arxiv.org/abs/2003.04297
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from sslkit.augment import AugmentConfig, two_views
from sslkit.backbones import Encoder
from sslkit.distributed import all_gather_no_grad
from sslkit.losses import info_nce
from sslkit.methods.base import MethodOutput, ReferenceRecipe, Settings, SSLMethod
from sslkit.methods.ema import ema_update
from sslkit.methods.heads import projection_head


@dataclass
class MoCoConfig:
    """MoCo v2's settings; the defaults are the paper's ImageNet ones (K 65536, m 0.999, T 0.2).
    The profiles set small-data values (the authors' CIFAR-10 demo: K 4096, m 0.99)."""

    queue_size: int = 65536         # K: negatives per query
    momentum: float = 0.999         # m: key encoder <- m * key encoder + (1 - m) * query encoder
    temperature: float = 0.2
    projection_dim: int = 128
    hidden_dim: int | None = None   # hidden width of the head; None = the encoder's width
    # Shuffled BatchNorm, simulated on one device: BatchNorm computes its statistics over the
    # samples it sees together, so a query and its key computed in the same batch could "talk"
    # through those statistics and the positive would be found by its batch signature instead of
    # its content (the paper, sec. 3.3). The paper shuffles the keys across GPUs; with one device
    # we do what the authors' CIFAR-10 demo does: split each batch into bn_splits groups that get
    # their own statistics, the keys' groups drawn after a random shuffle, so a key never shares
    # its group's statistics with exactly its query's group. 1 switches it off. One cost: BatchNorm's
    # running statistics (used at evaluation) take one update per group, so they average over the
    # last ~10 groups rather than the last ~10 batches.
    bn_splits: int = 4
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        if not _whole(self.queue_size) or self.queue_size < 1:
            raise ValueError(f"queue_size must be a whole number of at least 1, got {self.queue_size!r}.")
        # written "not a <= x" so that NaN (which compares False with everything) is refused too
        if not _real(self.momentum) or not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {self.momentum!r}.")
        if not _real(self.temperature) or not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature!r}.")
        if not _whole(self.bn_splits) or self.bn_splits < 1:
            raise ValueError(f"bn_splits must be a whole number of at least 1, got {self.bn_splits!r}.")


def _whole(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _real(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class MoCo(SSLMethod):
    title = "MoCo"
    # quick: batch 64, its lesson (4096 negatives whatever the batch), 100 steps (about as long as
    # SimCLR's 60 of 256 here); notebook 04 compares SimCLR at the same batch and steps. The authors'
    # CIFAR-10 demo values (K 4096, m 0.99) but T 0.2 as SimCLR here. At batch 64 the queue holds real
    # keys only after 64 of the 100 steps; kept at 4096 because 4096 negatives at batch 64 is notebook
    # 04's lesson, and its sweep shows what smaller queues give in 100 steps. m 0.99 lets the keys follow
    quick = Settings(train={"batch_size": 64, "steps": 100},
                     config={"queue_size": 4096, "momentum": 0.99, "temperature": 0.2})
    # full: the authors' CIFAR-10 demo (K 4096, m 0.99, T 0.1)
    full = Settings(config={"queue_size": 4096, "momentum": 0.99, "temperature": 0.1})
    reference = ReferenceRecipe(config={"queue_size": 4096, "momentum": 0.99, "temperature": 0.2},
                                train={"batch_size": 256, "lr": 2e-3},
                                about="MoCo v2, a queue of 4096 keys from a momentum encoder")

    # With DDP (sslkit.distributed) BatchNorm stays per process: synced statistics would be over
    # the same images for queries and keys, the leak that the split BatchNorm above prevents.
    sync_batchnorm = False

    def __init__(self, encoder: Encoder, cfg: MoCoConfig | None = None):
        super().__init__()
        self.cfg = c = cfg or MoCoConfig()
        self.encoder = encoder
        # SimCLR's Linear-BN-ReLU-Linear head; MoCo v2's own (--mlp in facebookresearch/moco, moco/builder.py)
        # is Linear-ReLU-Linear, without BatchNorm. Its BatchNorm is split into groups like the encoder's.
        self.projector = projection_head(encoder.dim, c.hidden_dim or encoder.dim, c.projection_dim)
        # the key (momentum) encoder and head: copies that no gradient reaches
        self.key_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.key_projector = copy.deepcopy(self.projector).requires_grad_(False)
        # the queue: buffers, so that a checkpoint carries them and a resumed run is exact
        self.register_buffer("queue", F.normalize(torch.randn(c.queue_size, c.projection_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._pending: torch.Tensor | None = None      # this step's keys, enqueued after the step

    def views(self, images: torch.Tensor) -> torch.Tensor:
        """Two random views of every image, stacked: (B, C, H, W) -> (2B, C, H, W)."""
        return two_views(images, self.cfg.augment)

    def _splits(self, n: int) -> int:
        """Groups for the split BatchNorm while training: bn_splits, fewer when the batch is too
        small for two samples a group (BatchNorm needs two). Sizes may differ by one (tensor_split),
        so a batch size that bn_splits does not divide keeps its split. In eval mode BatchNorm uses
        its running statistics and a split changes nothing: 1."""
        return max(1, min(self.cfg.bn_splits, n // 2)) if self.training else 1

    def query(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> encoder features h (B, D) and normalised queries q (B, projection_dim).
        Encoder and head run group by group, so every BatchNorm (the head has one too) sees one
        group, as it would see one GPU's share of the batch in the paper."""
        h = [self.encoder(part) for part in x.tensor_split(self._splits(len(x)))]
        z = [self.projector(part) for part in h]
        return torch.cat(h), F.normalize(torch.cat(z), dim=1)

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> normalised keys (B, projection_dim) from the momentum encoder; the batch
        is shuffled before it is split into BatchNorm groups and unshuffled after."""
        s = self._splits(len(x))
        if s == 1:
            return F.normalize(self.key_projector(self.key_encoder(x)), dim=1)
        order = torch.randperm(len(x), device=x.device)
        k = torch.cat([self.key_projector(self.key_encoder(part)) for part in x[order].tensor_split(s)])
        return F.normalize(k[order.argsort()], dim=1)

    def forward(self, images: torch.Tensor) -> MethodOutput:
        """images: (B, C, H, W) in [0, 1]. The keys of this batch join the queue after the
        optimiser step (:meth:`on_step_end`), so the loss of a step never sees its own keys as
        negatives, and a forward pass outside training leaves the queue alone."""
        B = images.shape[0]
        v = self.views(images)
        h, q = self.query(v[:B])
        k = self.keys(v[B:])
        loss = info_nce(q, k, self.queue.clone(), self.cfg.temperature)
        if self.training:   # with DDP, every process's keys, in rank order, so that the queues stay equal
            self._pending = all_gather_no_grad(k.detach().float())
        return MethodOutput(loss, features=h.detach(), extras={"queries": q.detach(), "keys": k})

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """First in, first out: the B newest keys overwrite the B oldest, wrapping around the end
        of the queue (K need not be a multiple of B; with B > K only the last K keys stay)."""
        K, B = self.cfg.queue_size, len(keys)
        ptr = int(self.queue_ptr)
        if B > K:
            keys, ptr = keys[B - K:], (ptr + B - K) % K
        idx = (ptr + torch.arange(len(keys), device=keys.device)) % K
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.fill_((int(self.queue_ptr) + B) % K)

    @torch.no_grad()
    def update_key_encoder(self) -> None:
        """key <- m * key + (1 - m) * query, for every weight of encoder and head. BatchNorm's
        running statistics are the key encoder's own, from its own forward passes."""
        ema_update(list(self.key_encoder.parameters()) + list(self.key_projector.parameters()),
                   list(self.encoder.parameters()) + list(self.projector.parameters()), self.cfg.momentum)

    def on_step_end(self, progress: float) -> None:
        """After every optimiser step: enqueue this step's keys, then move the key encoder."""
        if self._pending is not None:
            self.enqueue(self._pending)
            self._pending = None
        self.update_key_encoder()
