import math

import pytest
import torch

from sslkit.backbones import BACKBONES, ViT, build_encoder
from sslkit.methods import METHODS
from sslkit.methods.mae import MAE, MAEConfig
from sslkit.train import RunSpec, pretrain


def make_mae(image_size: int = 16, channels: int = 3, **cfg) -> MAE:
    torch.manual_seed(0)
    encoder = build_encoder("vit_mini", channels, [0.5] * channels, [0.25] * channels, image_size=image_size)
    return MAE(encoder, MAEConfig(**cfg))


def test_registered_with_a_vit_backbone():
    assert METHODS["mae"] == (MAEConfig, MAE)
    assert "vit_mini" in BACKBONES and "vit_tiny" in BACKBONES


def test_vit_gives_one_feature_vector_per_image():
    enc = build_encoder("vit_mini", 3, [0.5] * 3, [0.25] * 3, image_size=32)
    assert enc(torch.rand(5, 3, 32, 32)).shape == (5, 128)
    assert enc.backbone.num_patches == 64


@pytest.mark.parametrize("image_size", [8, 16, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_unpatchify_inverts_patchify(image_size, channels):
    m = make_mae(image_size, channels)
    x = torch.rand(2, channels, image_size, image_size)
    patches = m.patchify(x)
    assert patches.shape == (2, (image_size // 4) ** 2, 16 * channels)
    assert torch.equal(m.unpatchify(patches), x)
    # patch 1 is the second 4x4 block of the first row of blocks
    assert torch.equal(patches[0, 1].view(4, 4, channels), x[0, :, :4, 4:8].permute(1, 2, 0))


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.6, 0.75, 0.9])
def test_number_of_visible_patches_is_round_of_l_times_one_minus_ratio(ratio):
    m = make_mae(32)
    L = 64
    tokens = torch.randn(3, L, 8)
    kept, mask, _ = m.random_masking(tokens, ratio)
    assert kept.shape == (3, round(L * (1 - ratio)), 8)
    assert torch.equal(mask.sum(1), torch.full((3,), float(L - round(L * (1 - ratio)))))
    latent, mask2, _ = m.forward_encoder(torch.rand(3, 3, 32, 32), ratio)
    assert latent.shape[1] == round(L * (1 - ratio))


def test_kept_tokens_are_the_unmasked_ones_and_unshuffle_restores_order():
    m = make_mae(32)
    B, L, D = 4, 64, 5
    tokens = torch.arange(L, dtype=torch.float).view(1, L, 1).expand(B, L, D).contiguous()
    kept, mask, ids_restore = m.random_masking(tokens, 0.75)
    for b in range(B):
        assert sorted(kept[b, :, 0].long().tolist()) == torch.nonzero(mask[b] == 0).flatten().tolist()
    # as the decoder does: append placeholders for the hidden ones, then unshuffle
    full = torch.cat([kept, torch.full((B, L - kept.shape[1], D), -1.0)], 1)
    restored = full.gather(1, ids_restore.unsqueeze(-1).expand(-1, -1, D))
    assert torch.equal(restored[mask == 0], tokens[mask == 0])
    assert bool((restored[mask == 1] == -1).all())
    assert not torch.equal(mask[0], mask[1])     # each image has its own mask


def test_loss_ignores_visible_patches():
    m = make_mae(16)
    imgs = torch.rand(4, 3, 16, 16)
    _, mask, _ = m.forward_encoder(imgs, 0.75)
    pred = torch.randn(4, 16, 48)
    changed = pred.clone()
    changed[mask == 0] += 100 * torch.randn_like(changed[mask == 0])
    assert torch.equal(m.forward_loss(imgs, pred, mask), m.forward_loss(imgs, changed, mask))
    changed[mask == 1] += 1.0
    assert not torch.equal(m.forward_loss(imgs, pred, mask), m.forward_loss(imgs, changed, mask))


def test_norm_pix_targets_are_normalised_per_patch():
    m = make_mae(16)
    t = m.targets(torch.rand(3, 3, 16, 16))
    assert torch.allclose(t.mean(-1), torch.zeros(3, 16), atol=1e-5)
    assert torch.allclose(t.var(-1), torch.ones(3, 16), atol=1e-3)
    raw = make_mae(16, norm_pix_loss=False)
    x = torch.rand(3, 3, 16, 16)
    assert torch.allclose(raw.unpatchify(raw.targets(x)) * 0.25 + 0.5, x, atol=1e-6)


def test_forward_returns_loss_pred_mask():
    m = make_mae(16)
    out = m(torch.rand(4, 3, 16, 16))
    assert out.loss.ndim == 0 and math.isfinite(float(out.loss.detach()))
    assert out.extras["pred"].shape == (4, 16, 48) and out.extras["mask"].shape == (4, 16)
    assert out.features.shape == (4, 128)


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_reconstruction_keeps_the_visible_patches(norm_pix_loss):
    m = make_mae(16, norm_pix_loss=norm_pix_loss).eval()
    x = torch.rand(2, 3, 16, 16)
    r = m.reconstruct(x, 0.5)
    visible = r["mask"] == 0
    # the visible patches are drawn as the target is: the pixels, or each patch in its own normalised units
    assert torch.allclose(r["reconstruction"][visible], r["target"][visible], atol=1e-5)
    assert torch.equal(r["masked"][visible], x[visible])
    assert 0.4 < float(r["mask"].mean()) < 0.6
    if norm_pix_loss:
        from sslkit.methods.mae import NORMALISED_UNIT
        want = (m.unpatchify(m.targets(x)) * NORMALISED_UNIT + 0.5).clamp(0, 1)
    else:
        want = x
    assert torch.allclose(r["target"], want, atol=1e-5)


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_reconstruction_uses_nothing_of_the_hidden_patches(norm_pix_loss):
    """The figure's hidden patches are the prediction alone: changing what is under the mask (its mean,
    its contrast, its content) changes the target row, never the reconstruction."""
    m = make_mae(16, norm_pix_loss=norm_pix_loss).eval()
    x = torch.rand(2, 3, 16, 16)
    torch.manual_seed(3)
    r = m.reconstruct(x, 0.75)
    hidden = r["mask"].bool()
    other = torch.where(hidden, (x * 3 + 0.2).clamp(0, 1).flip(-1), x)   # new hidden content, brighter and stronger
    torch.manual_seed(3)                                                  # the same mask
    r2 = m.reconstruct(other, 0.75)
    assert torch.equal(r2["mask"], r["mask"])
    assert torch.allclose(r2["reconstruction"], r["reconstruction"], atol=1e-6)
    assert not torch.allclose(r2["target"][hidden], r["target"][hidden], atol=1e-3)
    # the error it reports is the loss on those patches, in the loss's units
    torch.manual_seed(3)
    assert torch.allclose(r["loss"], m(x, 0.75).loss, atol=1e-5)


def test_loss_falls_below_predicting_each_patch_mean_on_a_small_batch(fit):
    m = make_mae(16)
    g = torch.Generator().manual_seed(1)
    # smooth images, so a hidden patch can be inferred from its neighbours
    x = torch.nn.functional.interpolate(torch.rand(16, 3, 3, 3, generator=g), size=16, mode="bilinear",
                                        align_corners=True)
    m.eval()                                     # no random crops: the same images every step
    losses = fit(m, x, steps=30, lr=1e-3)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    # with per-patch normalised targets, predicting each patch's mean (all zeros) scores 1.0
    assert last < 0.9 * first and last < 0.95


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.5, 1.2])
def test_mask_ratio_outside_open_unit_interval_is_refused(ratio):
    with pytest.raises(ValueError, match=r"mask ratio must be in \(0, 1\)"):
        MAEConfig(mask_ratio=ratio)


def test_image_size_not_divisible_by_patch_size_is_refused():
    with pytest.raises(ValueError, match="not divisible by the ViT's patch size 4"):
        ViT(3, 30)


def test_mae_refuses_a_cnn_backbone():
    with pytest.raises(ValueError, match="MAE needs a ViT backbone"):
        MAE(build_encoder("small_cnn", 3, [0.5] * 3, [0.25] * 3), MAEConfig())


def test_ratio_leaving_no_visible_patch_is_refused():
    m = make_mae(8)                              # 8x8 images: only 4 patches
    with pytest.raises(ValueError, match="leaves 0 of the 4 patches visible"):
        m(torch.rand(2, 3, 8, 8), mask_ratio=0.9)


@pytest.mark.parametrize("config", [{"mask_ratio": 1.0}, {}])
def test_bad_input_writes_nothing(tmp_path, config):
    out = tmp_path / "run"
    backbone = "small_cnn" if not config else "vit_mini"   # {} + CNN: the backbone is the bad input
    with pytest.raises(ValueError):
        pretrain(RunSpec("mae", "digits", backbone=backbone, method_config=config,
                         train={"epochs": 1, "batch_size": 32}), out)
    assert not out.exists()


def test_pretrain_on_digits():
    run = pretrain(RunSpec("mae", "digits", backbone="vit_mini", train={"epochs": 0.3, "batch_size": 64}),
                   progress_bar=False)
    assert run.history and math.isfinite(run.history[-1]["loss"])


def test_image_size_not_divisible_writes_nothing(tmp_path):
    from sslkit.data import ImageData

    x = torch.randint(0, 255, (40, 3, 30, 30), dtype=torch.uint8)
    y = torch.arange(40) % 2
    data = ImageData("odd", x, y, x[:8], y[:8], ["a", "b"])
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="image size 30 is not divisible"):
        pretrain(RunSpec("mae", "odd", backbone="vit_mini", train={"epochs": 1, "batch_size": 8}), out, data=data)
    assert not out.exists()
