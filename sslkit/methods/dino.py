"""DINO: a student learns to predict the output of its own slowly moving teacher, with no labels.

Both networks are a ViT with a head that ends in K "prototypes"; their outputs are turned into
probabilities over the K dimensions by a softmax with a temperature. The student sees every crop of
an image (two global crops and several small local ones), the teacher only the two global ones, and
the student's distribution for each crop is trained by cross-entropy to match the teacher's for the
other crops. The teacher is an exponential moving average of the student. Collapse is kept away by
two operations on the teacher's output only: centring (subtract a running mean) and sharpening (a
low temperature); switch either off to see the two collapses the paper describes.

Caron, Touvron, Misra, Jégou, Mairal, Bojanowski, Joulin. "Emerging Properties in Self-Supervised
Vision Transformers." ICCV 2021. https://arxiv.org/abs/2104.14294 ; code: facebookresearch/dino
(``main_dino.py``: DINOLoss, DataAugmentationDINO; ``vision_transformer.py``: DINOHead; ``utils.py``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from sslkit.augment import color_jitter, random_gaussian_blur, random_grayscale, random_resized_crop, random_solarize
from sslkit.backbones import Encoder, ViT
from sslkit.distributed import mean_over_processes
from sslkit.methods.base import MethodOutput, ReferenceRecipe, Settings, SSLMethod
from sslkit.methods.byol import momentum_at      # the same cosine from base to 1 as dino's utils.cosine_scheduler
from sslkit.methods.ema import ema_update


@dataclass
class DINOConfig:
    """DINO's settings: main_dino.py's defaults except the head's widths, scaled to a 128-wide ViT.

    The head (paper, section 3.1 and appendix C) is a 3-layer MLP, an L2-normalised bottleneck and a
    weight-normalised layer of K prototypes; the paper's is 2048 wide with a 256 bottleneck and
    K = 65536 for a 384-wide ViT-S. Here 512, 128 and K = 1024: appendix C's table of K has 1024 at
    67.8% k-NN against 69.7% for 65536 on ImageNet's 1000 classes, a small loss for a large saving, and
    CIFAR-10 has 10 classes. ``sharpening=False`` gives the teacher the student's temperature: the
    paper's appendix D finds that a fixed teacher temperature above 0.06 collapses ("the training loss
    consistently converges to ln(K)"). ``centering=False`` leaves the centre at zero.
    """

    out_dim: int = 1024                  # K prototypes
    hidden_dim: int = 512                # the MLP's hidden width (DINOHead: 2048)
    bottleneck_dim: int = 128            # the L2-normalised bottleneck (DINOHead: 256)
    student_temp: float = 0.1            # tau_s (section 3.2)
    teacher_temp: float = 0.04           # tau_t after its warm-up (main_dino.py --teacher_temp)
    warmup_teacher_temp: float = 0.04    # tau_t at the start (--warmup_teacher_temp)
    teacher_temp_warmup: float = 0.0     # fraction of training for the linear warm-up (--warmup_teacher_temp_epochs 0)
    center_momentum: float = 0.9         # m of the centre's EMA (eq. 4; appendix D's best)
    base_momentum: float = 0.996         # lambda: the teacher's EMA, cosine from this to 1 (section 3.1)
    centering: bool = True               # teaching switch: False -> the one-hot collapse
    sharpening: bool = True              # teaching switch: False -> tau_t = tau_s, the uniform collapse
    local_crops: int = 8                 # --local_crops_number
    local_crop_size: float = 0.5         # side of a local crop, a fraction of the image's (96 / 224 in the paper)
    global_crop_scale_min: float = 0.4   # --global_crops_scale (0.4, 1)
    local_crop_scale_min: float = 0.05   # --local_crops_scale (0.05, 0.4)
    local_crop_scale_max: float = 0.4
    solarize_p: float = 0.2              # the second global crop's solarization (DataAugmentationDINO)

    def __post_init__(self):
        for name in ("out_dim", "hidden_dim", "bottleneck_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        for name in ("student_temp", "teacher_temp", "warmup_teacher_temp"):
            if not getattr(self, name) > 0:
                raise ValueError(f"temperature {name} must be positive, got {getattr(self, name)}.")
        for name in ("center_momentum", "base_momentum", "teacher_temp_warmup", "solarize_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}.")
        if self.local_crops < 0:
            raise ValueError(f"local_crops must be 0 or more, got {self.local_crops}.")
        if not 0.0 < self.local_crop_size <= 1.0:
            raise ValueError(f"local_crop_size (a fraction of the image side) must be in (0, 1], got {self.local_crop_size}.")
        if not 0.0 < self.local_crop_scale_min <= self.local_crop_scale_max <= 1.0 or \
                not 0.0 < self.global_crop_scale_min <= 1.0:
            raise ValueError("crop scales must satisfy 0 < local_crop_scale_min <= local_crop_scale_max <= 1 and "
                             f"0 < global_crop_scale_min <= 1, got {self.local_crop_scale_min}, "
                             f"{self.local_crop_scale_max} and {self.global_crop_scale_min}.")


class DINOHead(nn.Module):
    """vision_transformer.py's DINOHead without BatchNorm: (B, in_dim) -> (B, out_dim) logits.

    A 3-layer MLP with GELU, L2 normalisation of its bottleneck output, then K prototypes. The paper's
    last layer is ``weight_norm(Linear(bottleneck, K, bias=False))`` with its norm fixed at 1
    (``norm_last_layer=True``, the default): the same as normalising each prototype row, written out
    here. The logits are therefore cosine similarities in [-1, 1].
    """

    def __init__(self, in_dim: int, hidden_dim: int, bottleneck_dim: int, out_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim))
        for m in self.mlp:
            if isinstance(m, nn.Linear):                  # DINOHead._init_weights
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        # the prototypes get nn.Linear's default initialisation, as DINOHead's last layer does
        self.prototypes = nn.Parameter(nn.Linear(bottleneck_dim, out_dim, bias=False).weight.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)                              # (B, bottleneck), unit length
        return F.linear(x, F.normalize(self.prototypes, dim=-1))          # (B, K), cosine similarities


def dino_loss(student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, student_temp: float,
              teacher_temp: float) -> torch.Tensor:
    """main_dino.py's DINOLoss: the mean cross-entropy over every (teacher crop, other student crop) pair.

    student: (V * B, K) logits of all V crops, the 2 global crops first; teacher: (2B, K) logits of
    the 2 global crops; center: (1, K). Each teacher crop is centred and sharpened, each student crop
    softened with its own temperature; the pairs in which student and teacher see the same crop are
    skipped (eq. 3). The teacher side carries no gradient.
    """
    B = len(teacher) // 2
    student_logp = F.log_softmax(student.float() / student_temp, dim=-1).chunk(len(student) // B)
    teacher_p = F.softmax((teacher.float() - center) / teacher_temp, dim=-1).detach().chunk(2)
    total, terms = 0.0, 0
    for i, q in enumerate(teacher_p):
        for v, logp in enumerate(student_logp):
            if v == i:
                continue                        # the same crop on both sides
            total = total + (-q * logp).sum(-1).mean()
            terms += 1
    return total / terms


def teacher_temp_at(progress: float, cfg: DINOConfig) -> float:
    """The teacher's temperature: linear from ``warmup_teacher_temp`` to ``teacher_temp`` over the first
    ``teacher_temp_warmup`` of training (DINOLoss's schedule, per epoch there), then constant; the
    student's temperature when sharpening is off."""
    if not cfg.sharpening:
        return cfg.student_temp
    if progress >= cfg.teacher_temp_warmup:
        return cfg.teacher_temp
    return cfg.warmup_teacher_temp + (cfg.teacher_temp - cfg.warmup_teacher_temp) * progress / cfg.teacher_temp_warmup


class DINO(SSLMethod):
    title = "DINO"
    family = "vit"
    sync_batchnorm = False          # BN-free (section 3.1): nothing to sync
    # Cost (benchmarks/RESULTS.md, "DINO"): per image, the student runs forward and backward on both
    # global crops (65 tokens each) and the teacher forward on them; a 16x16 local crop (17 tokens)
    # adds about a tenth of that. Measured on the shared 2-core CPU against MAE's quick step in the
    # same process: 2 global crops alone about 0.36 of MAE's images/s, + 2 local 0.18, + 4 local
    # 0.15, + 6 local 0.12; with MAE at ~365 images/s on the idle CPU (notebook 06) that is ~130,
    # ~65, ~55 and ~45 images/s, close to what counting tokens predicts.
    # quick: 30 steps of 64 with 2 local crops, about half a minute: notebook 10's run shows the
    # mechanics (entropy and KL), not a gain. Warm-up over the first 30% and teacher momentum 0.96:
    # with the loop's 5% (a step and a half) and 0.9, the student's outputs became the same for every
    # image within 5 steps (embedding spread 0.01-0.02 from step 5 on), before the centre, which
    # starts at zero, had caught up with the teacher; with these two the spread stayed at 0.08-0.21
    # (RESULTS.md, "DINO"). Weight decay 0.04, main_dino.py's starting value (its cosine to 0.4 is not
    # in the kit's loop, nor its gradient clipping at 3.0 or its frozen last layer in the first epoch).
    quick = Settings(train={"batch_size": 64, "steps": 30, "warmup": 0.3, "weight_decay": 0.04},
                     config={"base_momentum": 0.96, "local_crops": 2})
    # full: the paper's rule lr = 0.0005 * B / 256 (section 3.2) at the full profile's batch of 512;
    # momentum 0.99, since 5 epochs are ~500 steps (main_dino.py advises a higher base for small
    # batches over long runs; here the run is short). Not measured: no GPU has been lent.
    full = Settings(train={"lr": 5e-4 * 512 / 256, "weight_decay": 0.04}, config={"base_momentum": 0.99})
    # reference: 6 epochs (2,340 steps of 128), about an hour of the 2-core CPU at 55-90 images/s with
    # 4 local crops; 30 minutes (1.6 epochs) had not left the near-uniform start (RESULTS.md, "The four
    # later references"). Momentum 0.99 averages the teacher over ~100 steps, where the paper's 0.996
    # would average over ~250, a ninth of the run; 4 local crops add a quarter to the cost of the two global
    # ones for four more views of every image (the paper's Table 8: multi-crop gives more accuracy per
    # hour). The teacher's encoder ships beside the student's: "this teacher has
    # better performance than the student throughout the training" (section 3.1), and the authors'
    # eval_knn.py and visualize_attention.py read the teacher by default; the kit evaluates,
    # fine-tunes and checks ``encoder``, the student, as for every method.
    reference = ReferenceRecipe(config={"base_momentum": 0.99, "local_crops": 4},
                                train={"batch_size": 128, "lr": 1e-3, "weight_decay": 0.04},
                                epochs=6, heads=("teacher_encoder",),
                                about="DINO, 2 global + 4 local crops, the quick profile's ViT")

    def __init__(self, encoder: Encoder, cfg: DINOConfig | None = None):
        super().__init__()
        self.cfg = cfg or DINOConfig()
        c = self.cfg
        vit = encoder.backbone
        if not isinstance(vit, ViT):
            raise ValueError(f"DINO needs a ViT backbone (--backbone vit_mini or vit_tiny), got {type(vit).__name__}.")
        vit.add_class_token()             # the head sits on the class token, whose attention the notebook shows
        self.encoder = encoder
        self.head = DINOHead(encoder.dim, c.hidden_dim, c.bottleneck_dim, c.out_dim)
        # the teacher: the same architecture, a copy that no gradient reaches; it moves only by update_teacher
        self.teacher_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.teacher_head = copy.deepcopy(self.head).requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, c.out_dim))
        # the scheduled values, as buffers so that a checkpoint carries them (float64: used as computed)
        self.register_buffer("_momentum", torch.tensor(momentum_at(0.0, c.base_momentum), dtype=torch.float64))
        self.register_buffer("_teacher_temp", torch.tensor(teacher_temp_at(0.0, c), dtype=torch.float64))
        side = vit.grid * vit.patch_size
        # a local crop's side: the fraction of the image's, in whole patches, at least one
        self.global_size = side
        self.local_size = max(1, round(c.local_crop_size * side / vit.patch_size)) * vit.patch_size

    @property
    def momentum(self) -> float:
        return float(self._momentum)

    @property
    def teacher_temp(self) -> float:
        return float(self._teacher_temp)

    # ------------------------------------------------------------------ multi-crop
    def _crop(self, x: torch.Tensor, size: int, scale: tuple[float, float], solarize_p: float) -> torch.Tensor:
        """DataAugmentationDINO's recipe, batched: crop and resize, flip, colour jitter (0.4, 0.4, 0.2,
        0.1 with p 0.8), grey (p 0.2), solarize. No blur: on 32x32 images it wipes the object out, as
        the kit's BYOL measured (sslkit/methods/byol.py); bilinear resizing where dino's is bicubic."""
        x = random_resized_crop(x, size=(size, size), scale=scale, flip_p=0.5)
        x = color_jitter(x, 0.4, 0.4, 0.2, 0.1, p=0.8)
        x = random_grayscale(x, 0.2)
        x = random_gaussian_blur(x, 0.0)
        return random_solarize(x, solarize_p)

    def global_views(self, images: torch.Tensor) -> torch.Tensor:
        """The two global crops at full size, stacked: (B, C, H, W) -> (2B, C, H, W); only the second solarized."""
        scale = (self.cfg.global_crop_scale_min, 1.0)
        return torch.cat([self._crop(images, self.global_size, scale, 0.0),
                          self._crop(images, self.global_size, scale, self.cfg.solarize_p)])

    def local_views(self, images: torch.Tensor) -> torch.Tensor:
        """``local_crops`` small crops of every image: (B, C, H, W) -> (n B, C, h, h), crop k of image i at row k B + i."""
        n = self.cfg.local_crops
        if n == 0:                        # no multi-crop: the paper's 2 x 224^2 setting (Table 8)
            return images.new_zeros(0, images.shape[1], self.local_size, self.local_size)
        scale = (self.cfg.local_crop_scale_min, self.cfg.local_crop_scale_max)
        return self._crop(images.repeat(n, 1, 1, 1), self.local_size, scale, 0.0)

    # ------------------------------------------------------------------ the model
    def student(self, global_views: torch.Tensor, local_views: torch.Tensor) -> torch.Tensor:
        """Logits of every crop, (2B + n B, K): one pass per resolution, as dino's MultiCropWrapper."""
        out = self.head(self.encoder(global_views))
        if len(local_views):
            out = torch.cat([out, self.head(self.encoder(local_views))])
        return out

    @torch.no_grad()
    def teacher(self, global_views: torch.Tensor) -> torch.Tensor:
        """Logits of the global crops only, (2B, K), without gradient."""
        return self.teacher_head(self.teacher_encoder(global_views))

    def teacher_probabilities(self, teacher_logits: torch.Tensor) -> torch.Tensor:
        """The teacher's targets (2B, K): centred (when centring is on) and sharpened."""
        return F.softmax((teacher_logits.float() - self.center) / self.teacher_temp, dim=-1)

    def forward(self, images: torch.Tensor) -> MethodOutput:
        """images: (B, C, H, W) in [0, 1].

        extras: ``teacher_entropy`` h(P_t) and ``kl`` D_KL(P_t | P_s), the two parts of the loss
        (section 5.3: H = h + KL), ``teacher_probs`` (2B, K), ``teacher_temp``, ``momentum``; the
        first two are also written into the history (``logs``).
        """
        g, l = self.global_views(images), self.local_views(images)
        s = self.student(g, l)                                       # (V B, K), V = 2 + local_crops
        t = self.teacher(g)                                          # (2B, K), no gradient
        loss = dino_loss(s, t, self.center, self.cfg.student_temp, self.teacher_temp)
        with torch.no_grad():
            p = self.teacher_probabilities(t)
            # every teacher crop is paired with the same number of student crops, so the mean
            # cross-entropy splits exactly into the mean entropy and the mean KL
            entropy = torch.special.entr(p).sum(-1).mean()
            kl = loss.detach() - entropy
        if self.training and self.cfg.centering:
            self.update_center(t)
        B = len(images)
        return MethodOutput(loss, features=s[:B].detach(),
                            extras={"teacher_entropy": entropy, "kl": kl, "teacher_probs": p,
                                    "teacher_temp": self.teacher_temp, "momentum": self.momentum},
                            logs={"teacher_entropy": entropy, "kl": kl})

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """c <- m c + (1 - m) mean of the teacher's logits over the batch (eq. 4), the batch mean taken
        over every process as DINOLoss.update_center's all_reduce."""
        m = self.cfg.center_momentum
        batch_center = mean_over_processes(teacher_logits.float().mean(0, keepdim=True))
        self.center.mul_(m).add_(batch_center, alpha=1.0 - m)

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """teacher <- momentum * teacher + (1 - momentum) * student, every weight of encoder and head."""
        student = list(self.encoder.parameters()) + list(self.head.parameters())
        teacher = list(self.teacher_encoder.parameters()) + list(self.teacher_head.parameters())
        ema_update(teacher, student, momentum)

    def on_step_end(self, progress: float) -> None:
        """After every optimizer step: move the teacher, then schedule the next momentum and temperature."""
        self.update_teacher(self.momentum)
        self._momentum.fill_(momentum_at(progress, self.cfg.base_momentum))
        self._teacher_temp.fill_(teacher_temp_at(progress, self.cfg))
