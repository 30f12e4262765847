"""The checks of notebook 01 rotation."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Callable

import torch
import torch.nn.functional as F

from sslkit.exercises._core import _Wrong, _call, _tensor, _tuple, _close, Exercise
from sslkit.methods.rotation import Rotation, RotationConfig, rotate


def _rotation_reference(images: torch.Tensor, num_rotations: int):
    # the package's own method; it only reads self.cfg
    return Rotation.rotations(SimpleNamespace(cfg=RotationConfig(num_rotations=num_rotations)), images)


def check_quarter_turn(fn: Callable) -> str:
    x = torch.rand(3, 3, 5, 7)        # not square, so a transpose alone shows in the shape
    out = _tensor(_call(fn, x, on="3 images of 5x7 pixels"), (3, 3, 7, 5), "the turned batch of 3 images of 5x7")
    if torch.equal(out, torch.rot90(x, -1, dims=(2, 3))):
        raise _Wrong("your images turn clockwise; a counter-clockwise quarter turn takes the top row to the left "
                     "column: flip the rows (dim 2) after the transpose, not the columns.")
    if torch.equal(out, x.transpose(2, 3)):
        raise _Wrong("your function only transposes the images (a mirror image along the diagonal); "
                     "a rotation also flips the rows after the transpose.")
    if not torch.equal(out, torch.rot90(x, 1, dims=(2, 3))):
        raise _Wrong("your images are not the counter-clockwise quarter turn that torch.rot90(x, 1, dims=(2, 3)) gives; "
                     "transpose the last two dims, then flip dim 2.")
    return "your quarter turn matches torch.rot90 exactly, on non-square images too."


def check_rotation_batch(fn: Callable) -> str:
    for B, K in [(5, 4), (2, 4), (3, 2)]:
        x = torch.rand(B, 3, 8, 8)
        views, labels = _tuple(_call(fn, x, K, on=f"a batch of {B} images with K = {K}"), 2, "views, labels")
        ref_views, ref_labels = _rotation_reference(x, K)
        _tensor(views, (K * B, 3, 8, 8), f"with B = {B} and K = {K} the views")
        _tensor(labels, (K * B,), f"with B = {B} and K = {K} the labels")
        if labels.dtype != torch.long:
            raise _Wrong(f"your labels have dtype {labels.dtype}; cross-entropy needs class indices as torch.long.")
        if torch.equal(views, ref_views) and not torch.equal(labels, ref_labels):
            raise _Wrong(f"your views are right but the labels are not: view k*B + i is image i rotated k times, "
                         f"so the labels should be {ref_labels.tolist()} for B = {B}, K = {K}; yours are {labels.tolist()}.")
        image_major = torch.stack([ref_views[k * B: (k + 1) * B] for k in range(K)], 1).flatten(0, 1)
        if torch.equal(views, image_major) and B > 1:
            raise _Wrong("your views are grouped image by image; stack them rotation by rotation instead "
                         "(all images at 0°, then all at 90°, ...), so that view k*B + i is image i rotated k times.")
        if K == 4 and torch.equal(views[B:2 * B], torch.rot90(x, -1, dims=(2, 3))):
            raise _Wrong("your 90° views turn clockwise; the kit's angles turn counter-clockwise (torch.rot90 with k > 0).")
        if not torch.equal(views, ref_views):
            k = next(k for k in range(K) if not torch.equal(views[k * B:(k + 1) * B], ref_views[k * B:(k + 1) * B]))
            raise _Wrong(f"with B = {B} and K = {K} your views {k * B} to {(k + 1) * B - 1} should be the images "
                         f"rotated by {360 * k // K}° counter-clockwise, and they are not.")
    return "your rotation batch matches the package's for K = 2 and 4, a batch of two included: views and labels."


def _sampled(images: torch.Tensor, angle: float, sign: float = 1.0, mode: str = "bilinear",
             padding_mode: str = "zeros") -> torch.Tensor:
    """The package's resampled rotation with one setting changed: what a typical slip computes."""
    B, C, H, W = images.shape
    a = sign * math.radians(angle)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]).expand(B, 2, 3)
    grid = F.affine_grid(theta, [B, C, H, W], align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def check_any_angle(fn: Callable) -> str:
    g = torch.Generator().manual_seed(0)
    x = F.interpolate(torch.rand(2, 3, 4, 4, generator=g), size=(16, 16), mode="bilinear", align_corners=False)
    for angle in (45.0, 30.0, 135.0, 90.0):
        out = _tensor(_call(fn, x.clone(), angle, on=f"2 images of 16x16 and angle = {angle:g}"), tuple(x.shape),
                      f"the {angle:g}° rotation of 2 images of 16x16")
        want = rotate(x, angle) if angle % 90 else _sampled(x, angle)
        if _close(out, want, atol=1e-4):
            continue
        slips = [(_sampled(x, angle, sign=-1.0), "your images turn clockwise; with affine_grid the matrix maps each "
                  "*output* pixel to where it samples the input, so a counter-clockwise turn by a uses "
                  "[[cos a, -sin a, 0], [sin a, cos a, 0]] (y points down in image coordinates)"),
                 (_sampled(x, math.degrees(angle)), "your function treats the angle as radians; math.cos and torch.cos "
                  "take radians, so convert the degrees first (math.radians)"),
                 (_sampled(x, angle, mode="nearest"), "your function samples the nearest pixel; interpolate bilinearly "
                  "(mode='bilinear'), as the package does, so the 45° views are not jagged"),
                 (_sampled(x, angle, padding_mode="border"), "your corners repeat the border pixels; fill them with zeros "
                  "(padding_mode='zeros'), the empty corners that the disc mask then hides"),
                 (_sampled(x, angle, padding_mode="reflection"), "your corners mirror the image; fill them with zeros "
                  "(padding_mode='zeros'), the empty corners that the disc mask then hides")]
        for wrong, sentence in slips:
            if _close(out, wrong, atol=1e-4):
                raise _Wrong(sentence + ".")
        for k in range(4):
            if angle % 90 and torch.equal(out, torch.rot90(x, k, dims=(2, 3))):
                raise _Wrong(f"at {angle:g}° your function returns a turn by a multiple of 90° (torch.rot90 only makes "
                             "those); sample the rotated image with F.affine_grid and F.grid_sample.")
        raise _Wrong(f"at {angle:g}° your images differ from the package's rotate(images, {angle:g}) by up to "
                     f"{(out - want).abs().max():.3f}; build theta (B, 2, 3) from the angle in radians, then "
                     "F.affine_grid and F.grid_sample, bilinear, zeros outside, align_corners=False.")
    return ("your rotation matches the package's rotate at 30°, 45° and 135°, and turns a quarter as torch.rot90 "
            "does: the 45° views of the K = 8 ablation.")


EXERCISES = {
    "quarter_turn": Exercise("a quarter turn by hand", "01_rotation", check_quarter_turn),
    "rotation_batch": Exercise("the rotation batch and its labels", "01_rotation", check_rotation_batch),
    "any_angle": Exercise("a rotation by any angle", "01_rotation", check_any_angle),
}
