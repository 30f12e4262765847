"""MAE: hide most of an image's patches and learn to paint them back.

The image is cut into patches and 75% of them, chosen at random per image, are dropped; a ViT
encoder sees only the visible quarter (so pre-training is cheap), and a light decoder, given
the encoded visible patches plus a learned mask token at every hidden position, predicts the
pixels of the hidden patches. The loss is the mean squared error on the hidden patches only,
against targets normalised per patch. The encoder is kept; the decoder is thrown away.

He, Chen, Xie, Li, Dollár, Girshick. "Masked Autoencoders Are Scalable Vision Learners."
CVPR 2022 (arXiv 2021). https://arxiv.org/abs/2111.06377 (reference code: facebookresearch/mae, models_mae.py)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from sslkit.augment import random_resized_crop
from sslkit.backbones import Encoder, ViT, sincos_position_embedding
from sslkit.methods.base import MethodOutput, ReferenceRecipe, Settings, SSLMethod


# how figures draw per-patch normalised values: 0 is mid-grey and one unit (one standard deviation of
# the patch) is 0.2 of the [0, 1] range, so +-2.5 units fill it; a fixed number, taken from no image
NORMALISED_UNIT = 0.2


@dataclass
class MAEConfig:
    """MAE's settings: the paper's masking, loss and augmentation; a decoder scaled down.

    The paper's decoder (512 wide, 8 blocks; models_mae.py uses it for ViT-B/L/H, 768-1280 wide) is
    for the kit's small ViTs 64 wide with 2 blocks, keeping the paper's point that the decoder is
    much lighter per token than the encoder (section 3: "<10% computation per token").
    """

    mask_ratio: float = 0.75
    norm_pix_loss: bool = True     # targets normalised per patch: the paper's best (Table 1d), PRETRAIN.md's command
    decoder_dim: int = 64
    decoder_depth: int = 2
    decoder_heads: int = 4
    crop_scale_min: float = 0.2    # the only augmentation: RandomResizedCrop(0.2, 1) + flip, main_pretrain.py

    def __post_init__(self):
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask ratio must be in (0, 1), got {self.mask_ratio}.")
        if self.decoder_dim % 4 or self.decoder_dim % self.decoder_heads:
            raise ValueError(f"decoder_dim must be divisible by 4 and by decoder_heads, got {self.decoder_dim} "
                             f"and {self.decoder_heads} heads.")
        if not 0.0 < self.crop_scale_min <= 1.0:
            raise ValueError(f"crop_scale_min must be in (0, 1], got {self.crop_scale_min}.")


class MAE(SSLMethod):
    title = "MAE"
    family = "vit"
    judged_by_finetuning = True      # the paper's protocol: fine-tuning, beside the linear probe
    # quick: the paper's AdamW weight decay 0.05 and 5% warm-up (40 of 800 epochs), but lr 1.5e-3, ten
    # times its 1.5e-4 * B/256: a run of a few hundred steps needs the faster start (loss lower after
    # the same steps here). Batch 64, not 256: an image costs the same at either size here, so in the
    # same time four times the steps. 2-minute runs, seed 0 (masked MSE; kNN / linear / fine-tuned;
    # random-init ViT 27.5 / 44.8 / 36.7%): batch 256, 204 steps: 0.738; 28.8 / 43.3 / 37.5%. 128, 419
    # steps: 0.670; 32.7 / 48.9 / 41.4%. 64, 850 steps: 0.615; 34.6 / 50.4 / 46.0%. 200 steps of 64
    # (notebook 06's run, about 40 s): fewer images than the former 60 of 256, so that the notebook keeps its time.
    quick = Settings(train={"lr": 1.5e-3, "weight_decay": 0.05, "warmup": 0.05, "batch_size": 64, "steps": 200})
    # full: the paper's rule lr = 1.5e-4 * B / 256 at the full profile's batch of 512, weight decay 0.05
    full = Settings(train={"lr": 1.5e-4 * 512 / 256, "weight_decay": 0.05, "warmup": 0.05})
    reference = ReferenceRecipe(train={"batch_size": 256, "lr": 1.5e-3, "weight_decay": 0.05},
                                heads=("decoder", "mask_token"), about="MAE, 75% of the patches masked, the quick profile's ViT")

    def __init__(self, encoder: Encoder, cfg: MAEConfig | None = None):
        super().__init__()
        self.cfg = cfg or MAEConfig()
        c = self.cfg
        if not isinstance(encoder.backbone, ViT):
            raise ValueError(f"MAE needs a ViT backbone (--backbone vit_mini or vit_tiny), got "
                             f"{type(encoder.backbone).__name__}.")
        self.encoder = encoder
        vit = encoder.backbone
        self.patch_size, self.grid = vit.patch_size, vit.grid
        self.channels = vit.patch_embed.in_channels
        self.decoder_embed = nn.Linear(vit.dim, c.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("decoder_pos_embed", sincos_position_embedding(vit.grid, c.decoder_dim))
        self.decoder_blocks = nn.ModuleList([
            nn.TransformerEncoderLayer(c.decoder_dim, c.decoder_heads, 4 * c.decoder_dim, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(c.decoder_depth)])
        self.decoder_norm = nn.LayerNorm(c.decoder_dim)
        self.decoder_pred = nn.Linear(c.decoder_dim, self.patch_size ** 2 * self.channels)

    # ------------------------------------------------------------------ patches
    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, L, p*p*C), patches in row-major order, pixels (row, col, channel)."""
        B, C, H, W = imgs.shape
        p, g = self.patch_size, H // self.patch_size
        x = imgs.reshape(B, C, g, p, g, p)
        return torch.einsum("bchpwq->bhwpqc", x).reshape(B, g * g, p * p * C)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, p*p*C) -> (B, C, H, W), the inverse of :meth:`patchify`."""
        B, p, g, C = x.shape[0], self.patch_size, self.grid, self.channels
        x = x.reshape(B, g, g, p, p, C)
        return torch.einsum("bhwpqc->bchpwq", x).reshape(B, C, g * p, g * p)

    # ------------------------------------------------------------------ masking
    def random_masking(self, x: torch.Tensor, mask_ratio: float):
        """Keep a random ``round(L * (1 - mask_ratio))`` of the tokens of each image.

        Per image, sort random noise: the first indices of the shuffle are kept.
        x: (B, L, D) -> kept (B, L_vis, D), mask (B, L) with 1 = hidden, ids_restore (B, L)
        (the position of each original token in the shuffle, to undo it).
        """
        B, L, D = x.shape
        keep = round(L * (1 - mask_ratio))
        if not 0 < keep < L:
            raise ValueError(f"mask ratio {mask_ratio} leaves {keep} of the {L} patches visible: "
                             "choose a ratio that keeps at least one patch visible and hides at least one.")
        noise = torch.rand(B, L, device=x.device)
        ids_shuffle = noise.argsort(dim=1)              # ascending: small noise is kept
        ids_restore = ids_shuffle.argsort(dim=1)
        ids_keep = ids_shuffle[:, :keep]
        kept = x.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, D))
        mask = torch.ones(B, L, device=x.device)
        mask[:, :keep] = 0
        mask = mask.gather(1, ids_restore)              # back to the original patch order
        return kept, mask, ids_restore

    # ------------------------------------------------------------------ the model
    def forward_encoder(self, imgs: torch.Tensor, mask_ratio: float):
        """[0, 1] images (B, C, H, W) -> latent (B, L_vis, D) of the visible patches only, mask, ids_restore."""
        vit = self.encoder.backbone
        t = vit.tokens((imgs - self.encoder.mean) / self.encoder.std)   # (B, L, D), positions added
        t, mask, ids_restore = self.random_masking(t, mask_ratio)
        return vit.encode_tokens(t), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent (B, L_vis, D) -> predicted pixels of every patch (B, L, p*p*C)."""
        x = self.decoder_embed(latent)                                   # (B, L_vis, Dd)
        B, keep, Dd = x.shape
        L = ids_restore.shape[1]
        x = torch.cat([x, self.mask_token.expand(B, L - keep, Dd)], 1)   # the hidden ones go last ...
        x = x.gather(1, ids_restore.unsqueeze(-1).expand(-1, -1, Dd))    # ... then everyone back in place
        x = x + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))

    def targets(self, imgs: torch.Tensor) -> torch.Tensor:
        """What the decoder should predict: (B, L, p*p*C) patches of the encoder's normalised
        input, each patch normalised to mean 0, variance 1 when ``norm_pix_loss``."""
        target = self.patchify((imgs - self.encoder.mean) / self.encoder.std)
        if self.cfg.norm_pix_loss:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        return target

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error per patch, averaged over the hidden patches only."""
        per_patch = ((pred.float() - self.targets(imgs)) ** 2).mean(-1)  # (B, L)
        return (per_patch * mask).sum() / mask.sum()

    def forward(self, images: torch.Tensor, mask_ratio: float | None = None) -> MethodOutput:
        """images: (B, C, H, W) in [0, 1]. extras: ``pred`` (B, L, p*p*C), ``mask`` (B, L), ``images``."""
        ratio = self.cfg.mask_ratio if mask_ratio is None else mask_ratio
        if self.training:
            images = random_resized_crop(images, scale=(self.cfg.crop_scale_min, 1.0), flip_p=0.5)
        latent, mask, ids_restore = self.forward_encoder(images, ratio)
        pred = self.forward_decoder(latent, ids_restore)
        loss = self.forward_loss(images, pred, mask)
        return MethodOutput(loss, features=latent.mean(1).detach(),
                            extras={"pred": pred.detach(), "mask": mask, "images": images})

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, mask_ratio: float | None = None) -> dict[str, torch.Tensor]:
        """For figures, drawn from what the model computes and from the visible patches only.

        Returns, all (B, C, H, W) in [0, 1]: ``original``; ``masked`` (hidden patches grey); ``mask``
        (1 = hidden); ``target``, what the decoder is trained to output; ``reconstruction``, the
        visible patches as in ``target`` and the hidden ones as the model predicts them; and ``loss``,
        the mean squared error on the hidden patches in the loss's own units (a 0-d tensor).

        With pixel targets (``norm_pix_loss=False``, the variant the paper's authors trained for their
        figures: facebookresearch/mae, PRETRAIN.md and demo/mae_visualize.ipynb) the prediction is
        pixels, ``target`` is the original image and ``reconstruction`` the prediction pasted into it.
        With per-patch normalised targets the prediction has no mean or spread of its own: drawing
        it as pixels would take each hidden patch's true mean and std, which the model never saw.
        Both ``target`` and ``reconstruction`` are then drawn in per-patch normalised units with one
        fixed mapping (0 is mid-grey, one unit is :data:`NORMALISED_UNIT` of the [0, 1] range), the
        target's patches each normalised by its own statistics exactly as the loss does.
        """
        x = images
        latent, mask, ids_restore = self.forward_encoder(x, self.cfg.mask_ratio if mask_ratio is None else mask_ratio)
        pred = self.forward_decoder(latent, ids_restore).float()          # (B, L, p*p*C), the loss's units
        target = self.targets(x)                                           # (B, L, p*p*C), the same units
        hidden = mask.bool().unsqueeze(-1)
        loss = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
        shown = torch.where(hidden, pred, target)                          # hidden patches: the prediction alone
        if self.cfg.norm_pix_loss:
            to_image = lambda patches: (self.unpatchify(patches) * NORMALISED_UNIT + 0.5).clamp(0, 1)
        else:
            to_image = lambda patches: (self.unpatchify(patches) * self.encoder.std + self.encoder.mean).clamp(0, 1)
        pixel_mask = self.unpatchify(mask.unsqueeze(-1).expand_as(target)).bool()
        return {"original": x, "masked": torch.where(pixel_mask, torch.full_like(x, 0.5), x),
                "target": to_image(target), "reconstruction": to_image(shown), "mask": pixel_mask.float(),
                "loss": loss}
