"""The CIFAR-10-C style corruptions: shapes, determinism, and harm that grows with severity."""

import pytest
import torch

from sslkit.corruptions import CORRUPTIONS, SEVERITIES, corrupt


@pytest.fixture(scope="module")
def images():
    # smooth images with structure (gradients and a bright square), so every corruption has something to change
    g = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    base = torch.stack([x, y, (x + y) / 2])[None].repeat(16, 1, 1, 1) * 0.6 + 0.2
    base[:, :, 8:20, 10:22] += 0.15 * torch.rand(16, 3, 1, 1, generator=g)
    base += 0.08 * torch.rand(base.shape, generator=g)           # fine texture, as real photos have
    return (base.clamp(0, 1) * 255).round().to(torch.uint8)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_shape_dtype_and_determinism(images, name):
    out = corrupt(images, name, 3)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert torch.equal(out, corrupt(images, name, 3))          # seeded: the same images every call
    assert not torch.equal(out, images)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_harm_grows_with_severity(images, name):
    err = [float((corrupt(images, name, s).float() - images.float()).abs().mean()) for s in SEVERITIES]
    assert all(b >= a - 0.05 for a, b in zip(err, err[1:])), err     # never less harm at a higher severity
    assert err[-1] > err[0], err


def test_what_each_corruption_does(images):
    x = images.float()
    contrast = corrupt(images, "contrast", 5).float()
    assert contrast.std((1, 2, 3)).mean() < 0.25 * x.std((1, 2, 3)).mean()      # severity 5 keeps 15% of the contrast
    # each channel keeps its own mean (make_cifar_c.py: np.mean(x, axis=(0, 1)) of an HxWxC image), so the
    # image's colour cast stays: a single mean over the channels would pull every channel to one grey
    assert torch.allclose(contrast.mean((2, 3)), x.mean((2, 3)), atol=1.0)
    red = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    red[:, 0] = 200
    red[:, 0, :4] = 120
    assert corrupt(red, "contrast", 5)[0, :, 0, 0].tolist() == [154, 0, 0]   # 160 + (120 - 160) * 0.15
    assert corrupt(images, "brightness", 5).float().mean() > x.mean() + 20
    noise = corrupt(images, "gaussian_noise", 5).float() - x
    assert 18 < float(noise.std()) < 30                                           # sigma 0.10 of 255, clipped
    blurred = corrupt(images, "gaussian_blur", 5).float()
    assert (blurred[..., 1:] - blurred[..., :-1]).abs().mean() <= (x[..., 1:] - x[..., :-1]).abs().mean()
    pix = corrupt(images, "pixelate", 5)                                          # 20-px blocks blown up: repeats
    assert (pix[..., 1:] == pix[..., :-1]).float().mean() > (images[..., 1:] == images[..., :-1]).float().mean()


def test_pixelate_truncates_the_size_as_make_cifar_c():
    from PIL import Image
    import numpy as np

    x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    im = Image.fromarray(x[0].permute(1, 2, 0).numpy())
    for severity, c in zip(SEVERITIES, CORRUPTIONS["pixelate"][1]):        # int(32 * 0.85) = 27, round would give 28
        expected = np.asarray(im.resize((int(32 * c), int(32 * c)), Image.BOX).resize((32, 32), Image.BOX))
        assert torch.equal(corrupt(x, "pixelate", severity)[0].permute(1, 2, 0), torch.from_numpy(expected.copy()))


def test_bad_input_is_one_sentence(images):
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        corrupt(images, "fog", 1)
    with pytest.raises(ValueError, match="severity must be 1, 2, 3, 4 or 5"):
        corrupt(images, "jpeg", 6)
    with pytest.raises(ValueError, match="uint8 images"):
        corrupt(images.float(), "jpeg", 1)
