"""The checks of notebook 01 rotation."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

import torch

from sslkit.exercises._core import _Wrong, _call, _tensor, _tuple, Exercise
from sslkit.methods.rotation import Rotation, RotationConfig


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


EXERCISES = {
    "quarter_turn": Exercise("a quarter turn by hand", "01_rotation", check_quarter_turn),
    "rotation_batch": Exercise("the rotation batch and its labels", "01_rotation", check_rotation_batch),
}
