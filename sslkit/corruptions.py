"""Common image corruptions at five severities, in the spirit of CIFAR-10-C, made on the fly.

Hendrycks and Dietterich (ICLR 2019, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations", section 4.1) define 15 corruption types, each at five severities,
plus extra corruptions kept apart for validation. The authors' CIFAR script
(hendrycks/robustness, ImageNet-C/create_c/make_cifar_c.py) applies the 15 and four extra ones
(speckle noise, Gaussian blur, spatter, saturate) to the CIFAR-10 test set; the repository's
README links the result, CIFAR-10-C. The kit makes six of them itself, with the CIFAR parameters
of that script, so no download is needed and any image set can be corrupted. Five are among the
15 benchmark corruptions; ``gaussian_blur`` is one of the four extra (validation) ones:

    gaussian_noise   add N(0, sigma), sigma 0.04 ... 0.10 (pixel range 0-1)
    gaussian_blur    blur with sigma 0.4 ... 1.0 px
    contrast         pull every pixel towards its channel's mean in the image, keeping 0.75 ... 0.15 of the contrast
    brightness       add 0.05 ... 0.3 to the value channel in HSV
    jpeg             JPEG at quality 80 ... 40 (Pillow's encoder and decoder)
    pixelate         shrink to 0.95 ... 0.65 of the side (truncated to whole pixels) and blow back up
                     (box filter both ways)

Every corruption takes uint8 ``(N, C, H, W)`` images and returns uint8 images of the same shape;
the random ones (noise) are seeded, so the same call gives the same images. Deviations from
`make_cifar_c.py`: the result is rounded to uint8, where its `np.uint8(...)` truncates (at most one
grey level lower there); and the blur is the kit's own Gaussian kernel (cut at 3 sigma), where
the script calls scikit-image's ``gaussian`` with its default settings.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from sslkit.augment import _hsv_to_rgb, _rgb_to_hsv, gaussian_blur

SEVERITIES = (1, 2, 3, 4, 5)


def _noise(x: torch.Tensor, sigma: float, g: torch.Generator) -> torch.Tensor:
    return x + sigma * torch.randn(x.shape, generator=g)


def _blur(x: torch.Tensor, sigma: float, g: torch.Generator) -> torch.Tensor:
    return gaussian_blur(x, torch.full((len(x),), sigma), kernel_size=2 * round(3 * sigma) + 1)


def _contrast(x: torch.Tensor, c: float, g: torch.Generator) -> torch.Tensor:
    mean = x.mean((2, 3), keepdim=True)    # per image and channel: make_cifar_c.py's np.mean(x, axis=(0, 1))
    return (x - mean) * c + mean


def _brightness(x: torch.Tensor, c: float, g: torch.Generator) -> torch.Tensor:
    if x.shape[1] == 1:                       # grey images: the value is the pixel
        return x + c
    hsv = _rgb_to_hsv(x)
    hsv[:, 2] = (hsv[:, 2] + c).clamp(0, 1)
    return _hsv_to_rgb(hsv)


def _jpeg(x: torch.Tensor, quality: float, g: torch.Generator) -> torch.Tensor:
    import io

    from PIL import Image

    def compress(im):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=int(quality))
        return Image.open(buf)

    return _with_pil(x, compress)


def _pixelate(x: torch.Tensor, c: float, g: torch.Generator) -> torch.Tensor:
    # int(), as make_cifar_c.py's int(32 * c): 0.85 of 32 px is 27 px, not 28
    return _with_pil(x, lambda im: im.resize((max(1, int(im.width * c)), max(1, int(im.height * c))), 4)   # BOX
                     .resize((im.width, im.height), 4))


def _with_pil(x: torch.Tensor, fn) -> torch.Tensor:
    """Apply ``fn`` (PIL image -> PIL image) to every image of float ``x`` (N, C, H, W) in [0, 1]:
    the JPEG codec and the box resampling of make_cifar_c.py are Pillow's."""
    import numpy as np
    from PIL import Image

    u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = [np.asarray(fn(Image.fromarray(im.squeeze(-1) if im.shape[-1] == 1 else im))).reshape(im.shape) for im in u8]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255


# name -> (function, the parameter at severities 1..5), CIFAR-10-C's values
CORRUPTIONS: dict[str, tuple[Callable, tuple[float, ...]]] = {
    "gaussian_noise": (_noise, (0.04, 0.06, 0.08, 0.09, 0.10)),
    "gaussian_blur": (_blur, (0.4, 0.6, 0.7, 0.8, 1.0)),
    "contrast": (_contrast, (0.75, 0.5, 0.4, 0.3, 0.15)),
    "brightness": (_brightness, (0.05, 0.1, 0.15, 0.2, 0.3)),
    "jpeg": (_jpeg, (80, 65, 58, 50, 40)),
    "pixelate": (_pixelate, (0.95, 0.9, 0.85, 0.75, 0.65)),
}


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """``images`` (uint8 ``(N, C, H, W)``) with corruption ``name`` at ``severity`` 1-5, as uint8."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption '{name}': use one of {', '.join(CORRUPTIONS)}.")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1, 2, 3, 4 or 5, got {severity}.")
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"corrupt takes uint8 images (N, C, H, W), got {images.dtype} of shape {tuple(images.shape)}.")
    fn, params = CORRUPTIONS[name]
    g = torch.Generator().manual_seed(seed)
    out = fn(images.float() / 255, params[severity - 1], g)
    return (out.clamp(0, 1) * 255).round().to(torch.uint8)


def robustness(encoders: dict, data, n_test: int | None = None, names: tuple[str, ...] | None = None,
               severities: tuple[int, ...] = SEVERITIES, device=None) -> dict:
    """Linear probes trained on clean features, tested on corrupted test images.

    For every encoder (``{name: encoder}``): a logistic-regression probe on the frozen features of
    ``data``'s clean train images, then its accuracy on the first ``n_test`` test images, clean and
    under each corruption at each severity (the same corrupted images for every encoder).
    Returns ``{name: {"clean": acc, corruption: [acc at each severity]}}``.
    """
    from sslkit.evaluate import extract_features, fit_linear_probe

    names = names or tuple(CORRUPTIONS)
    test_x, test_y = data.test_x[:n_test], data.test_y[:n_test].numpy()
    corrupted = {(c, s): corrupt(test_x, c, s) for c in names for s in severities}
    out = {}
    for name, enc in encoders.items():
        probe = fit_linear_probe(extract_features(enc, data.train_x, device=device), data.train_y)
        score = lambda x: float(probe.score(extract_features(enc, x, device=device).numpy(), test_y))
        out[name] = {"clean": score(test_x), **{c: [score(corrupted[c, s]) for s in severities] for c in names}}
    return out
