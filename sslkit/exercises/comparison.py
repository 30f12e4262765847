"""The checks of notebook 07 comparison (alignment and uniformity)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from sslkit.compare import alignment as _alignment, uniformity as _uniformity
from sslkit.exercises._core import _Wrong, _call, _close, _scalar, Exercise


def check_alignment(fn: Callable) -> str:
    z1, z2 = torch.randn(10, 6), torch.randn(10, 6)
    got, want = _scalar(_call(fn, z1, z2, on="10 random pairs of width 6")), _alignment(z1, z2)
    same = _scalar(_call(fn, z1, z1.clone(), on="pairs whose two views are identical"))
    if abs(same.item()) > 1e-5:
        raise _Wrong(f"when the two views of every image coincide, alignment should be 0; yours is {same.item():.4f}.")
    if not _close(_scalar(_call(fn, 3 * z1, 7 * z2, on="rescaled pairs")), got, rtol=1e-3):
        raise _Wrong("your alignment changes when the embeddings get longer; normalise them to unit length first.")
    norm = (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).norm(dim=1).mean()
    if _close(got, norm, rtol=1e-4):
        raise _Wrong("you average the distances; Wang & Isola's alignment averages the *squared* distances.")
    if not _close(got, torch.tensor(want), rtol=1e-4):
        raise _Wrong(f"on 10 random pairs the alignment should be {want:.4f}; yours is {got.item():.4f}.")
    return "your alignment matches sslkit.compare.alignment: 0 for identical views, blind to length."


def check_uniformity(fn: Callable) -> str:
    z = torch.randn(12, 5)
    got, want = _scalar(_call(fn, z, 2.0, on="12 random embeddings, t = 2")), _uniformity(z, 2.0)
    zn = F.normalize(z, dim=1)
    sq = torch.cdist(zn, zn).pow(2)
    with_self = torch.log(torch.exp(-2 * sq).mean())
    if _close(got, with_self, rtol=1e-4):
        raise _Wrong("your average includes each point paired with itself (distance 0, so exp(0) = 1), which "
                     "pulls the value towards 0: use distinct pairs only (torch.pdist).")
    if _close(got, torch.exp(-2 * torch.pdist(zn).pow(2)).mean(), rtol=1e-4):
        raise _Wrong("you return the mean of exp(-t d^2); uniformity is its logarithm.")
    if not _close(_scalar(_call(fn, 4 * z, 2.0, on="rescaled embeddings")), got, rtol=1e-3):
        raise _Wrong("your uniformity changes when the embeddings get longer; normalise them to unit length first.")
    if not _close(got, torch.tensor(want), rtol=1e-4):
        raise _Wrong(f"for 12 random embeddings at t = 2 uniformity should be {want:.4f}; yours is {got.item():.4f}.")
    same = _scalar(_call(fn, z[:1].expand(4, -1).clone(), 2.0, on="four identical embeddings"))
    if abs(same.item()) > 1e-5:
        raise _Wrong(f"four identical embeddings (total collapse) should give uniformity 0; yours gives {same.item():.4f}.")
    return "your uniformity matches sslkit.compare.uniformity: distinct pairs, log of the mean, 0 at collapse."


EXERCISES = {
    "alignment": Exercise("alignment", "comparison", check_alignment),
    "uniformity": Exercise("uniformity", "comparison", check_uniformity),
}
