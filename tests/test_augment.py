import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from sslkit import augment as A
from sslkit.augment import AugmentConfig, simclr_augment


def batch(b=64, c=3, h=32, w=32):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(b + c))


def test_crop_area_and_ratio_follow_torchvision_semantics():
    torch.manual_seed(1)
    boxes = A.sample_crop_boxes(5000, 32, 32, scale=(0.2, 0.6), ratio=(3 / 4, 4 / 3))
    top, left, h, w = boxes.unbind(1)
    area = h * w / (32 * 32)
    # rounding h and w to whole pixels moves the area by at most about a side's worth
    assert area.min() >= 0.2 - 2 * 6 / 1024 - 0.02 and area.max() <= 0.6 + 2 * 20 / 1024 + 0.02
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all()
    ratio = w / h
    assert ratio.min() >= 3 / 4 * 0.8 and ratio.max() <= 4 / 3 * 1.25
    # area uniform in scale: its mean is the midpoint
    assert float(area.mean()) == pytest.approx(0.4, abs=0.02)


def test_every_image_gets_its_own_crop():
    torch.manual_seed(0)
    boxes = A.sample_crop_boxes(256, 32, 32)
    assert len({tuple(b.tolist()) for b in boxes}) > 200


def test_full_box_is_identity_and_flip_mirrors():
    x = batch(4)
    full = torch.tensor([[0.0, 0.0, 32.0, 32.0]]).repeat(4, 1)
    same = A.crop_resize_flip(x, full, torch.zeros(4, dtype=torch.bool))
    assert torch.allclose(same, x, atol=1e-5)
    mirrored = A.crop_resize_flip(x, full, torch.tensor([True, False, True, False]))
    assert torch.allclose(mirrored[0], x[0].flip(-1), atol=1e-5)
    assert torch.allclose(mirrored[1], x[1], atol=1e-5)


def test_crop_takes_the_box_content():
    x = torch.zeros(1, 1, 32, 32)
    x[..., 8:16, 8:16] = 1.0   # a white square exactly where the box is
    out = A.crop_resize_flip(x, torch.tensor([[8.0, 8.0, 8.0, 8.0]]), torch.zeros(1, dtype=torch.bool))
    assert out.mean() > 0.9 and out[..., 4:28, 4:28].min() == 1.0


@pytest.mark.parametrize("fn,tv", [(A.adjust_brightness, TF.adjust_brightness),
                                   (A.adjust_contrast, TF.adjust_contrast),
                                   (A.adjust_saturation, TF.adjust_saturation)])
def test_colour_adjustments_match_torchvision_per_image(fn, tv):
    x = batch(6)
    factors = torch.tensor([0.0, 0.5, 0.9, 1.0, 1.3, 1.8])
    ours = fn(x, factors)
    for i, f in enumerate(factors.tolist()):
        assert torch.allclose(ours[i], tv(x[i], f), atol=1e-5)


def test_hue_matches_torchvision_per_image():
    x = batch(5)
    shifts = torch.tensor([-0.5, -0.2, 0.0, 0.1, 0.4])
    ours = A.adjust_hue(x, shifts)
    for i, s in enumerate(shifts.tolist()):
        assert torch.allclose(ours[i], TF.adjust_hue(x[i], s), atol=1e-4)


def test_grayscale_rate_is_close_to_p():
    torch.manual_seed(0)
    x = batch(4000, h=4, w=4)
    out = A.random_grayscale(x, p=0.3)
    grey = (out[:, 0] == out[:, 1]).all(-1).all(-1) & (out[:, 1] == out[:, 2]).all(-1).all(-1)
    assert float(grey.float().mean()) == pytest.approx(0.3, abs=0.03)


def test_jitter_factors_are_per_image_and_within_range():
    torch.manual_seed(0)
    x = torch.full((500, 3, 4, 4), 0.5)
    out = A.color_jitter(x, brightness=0.4, contrast=0, saturation=0, hue=0, p=1.0)
    factors = out.mean(dim=(1, 2, 3)) / 0.5
    assert factors.min() >= 0.6 - 1e-5 and factors.max() <= 1.4 + 1e-5
    assert factors.std() > 0.15   # uniform on [0.6, 1.4] has std 0.23


def test_jitter_probability_leaves_the_rest_untouched():
    torch.manual_seed(0)
    x = batch(2000, h=4, w=4)
    out = A.color_jitter(x, 0.4, 0.4, 0.4, 0.1, p=0.25)
    changed = (out - x).abs().amax(dim=(1, 2, 3)) > 1e-4
    assert float(changed.float().mean()) == pytest.approx(0.25, abs=0.04)


def test_blur_preserves_constant_images_and_smooths_noise():
    x = torch.full((3, 3, 16, 16), 0.3)
    assert torch.allclose(A.gaussian_blur(x, torch.tensor([0.5, 1.0, 2.0]), 5), x, atol=1e-6)
    noise = batch(3, h=16, w=16)
    blurred = A.gaussian_blur(noise, torch.tensor([0.1, 1.0, 2.0]), 7)
    stds = blurred.std(dim=(1, 2, 3))
    assert torch.allclose(blurred[0], noise[0], atol=1e-3)   # sigma 0.1 is almost no blur
    assert stds[2] < stds[1] < stds[0]


def test_solarize_inverts_bright_pixels_only():
    x = torch.tensor([0.1, 0.49, 0.5, 0.9]).view(1, 1, 1, 4)
    out = A.random_solarize(x, p=1.0)
    assert torch.allclose(out.flatten(), torch.tensor([0.1, 0.49, 0.5, 0.1]))


def test_simclr_views_are_valid_images_and_differ():
    torch.manual_seed(0)
    x = batch(32)
    v1, v2 = simclr_augment(x, AugmentConfig()), simclr_augment(x, AugmentConfig())
    assert v1.shape == x.shape and v1.min() >= 0 and v1.max() <= 1
    assert (v1 - v2).abs().mean() > 0.05


def test_grey_images_are_supported():
    out = simclr_augment(batch(8, c=1), AugmentConfig(blur_p=0.5, solarize_p=0.5))
    assert out.shape == (8, 1, 32, 32)


def test_no_augmentation_is_identity():
    cfg = AugmentConfig(crop_scale_min=1.0, flip_p=0.0, jitter_strength=0.0, gray_p=0.0)
    x = batch(8)
    # scale 1 with ratio (3/4, 4/3) is the whole image
    assert torch.allclose(simclr_augment(x, cfg), x, atol=1e-5)


@pytest.mark.parametrize("kw", [{"gray_p": 1.5}, {"crop_scale_min": 0.0}, {"jitter_strength": -1}])
def test_bad_strengths_are_refused(kw):
    with pytest.raises(ValueError):
        AugmentConfig(**kw)


def test_runs_on_the_batch_device_without_a_loop_over_images():
    # 1024 images take about as long per image as 64: no per-image Python work
    import time

    x_small, x_big = batch(64), batch(1024)
    simclr_augment(x_small, AugmentConfig())
    t0 = time.perf_counter(); simclr_augment(x_small, AugmentConfig()); small = time.perf_counter() - t0
    t0 = time.perf_counter(); simclr_augment(x_big, AugmentConfig()); big = time.perf_counter() - t0
    assert big < 16 * small * 4 + 0.5 and math.isfinite(big)
