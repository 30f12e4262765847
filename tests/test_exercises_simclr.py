"""Notebook 03 SimCLR's exercises: each typical mistake gets its own sentence."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from exercise_helpers import assert_own_sentence
from sslkit.losses import nt_xent


def _nt_xent_with_diagonal(z1, z2, t=0.5):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    return F.cross_entropy(z @ z.T / t, torch.arange(2 * n).roll(n))


def _multiview(z, t=0.5, *, self_in=False, positives="image", reduce="mean", log_inside=False):
    """NT-Xent with V views with one thing changed (by default the right answer)."""
    V, N, _ = z.shape
    x = F.normalize(z.reshape(V * N, -1), dim=1)
    sim = x @ x.T / t
    eye = torch.eye(V * N, dtype=torch.bool)
    log_p = (sim if self_in else sim.masked_fill(eye, -math.inf)).log_softmax(1)
    group = torch.arange(N).repeat(V) if positives == "image" else torch.arange(V).repeat_interleave(N)
    pos = (group[:, None] == group[None, :]) & ~eye
    if log_inside:
        return -(log_p.masked_fill(~pos, -math.inf).logsumexp(1) - math.log(V - 1)).mean()
    per_anchor = log_p.masked_fill(~pos, 0).sum(1)
    return -{"mean": per_anchor / pos.sum(1), "sum": per_anchor}[reduce].mean()


WRONG = [
    # (exercise, wrong function, a phrase of the sentence it must get)
    ("nt_xent", _nt_xent_with_diagonal, "yours approaches log 2 = 0.69"),
    ("nt_xent", lambda z1, z2, t=0.5: nt_xent(z1, z2, t) * 16, "not the sum"),
    ("nt_xent", lambda z1, z2, t=0.5: F.cross_entropy(
        (lambda z: (z @ z.T / t).fill_diagonal_(-math.inf))(torch.cat([z1, z2])), torch.arange(2 * len(z1)).roll(len(z1))),
     "normalise z first"),
    ("nt_xent", lambda z1, z2, t=0.5: nt_xent(z1, z2, 1 / t), "do not multiply"),
    # the temperature ignored (divided by 1) or fixed at the default: its own sentence, not the positive-index hint
    ("nt_xent", lambda z1, z2, t=0.5: nt_xent(z1, z2, 1.0), "ignores the temperature"),
    ("nt_xent", lambda z1, z2, t=0.5: nt_xent(z1, z2, 0.5), "ignores the temperature"),
    ("nt_xent", lambda z1, z2, t=0.5: nt_xent(z1, z2, t).item(), "carries no gradient"),
    ("nt_xent", lambda z1, z2, t=0.5: nt_xent(z1[:, :3], z2, t), "RuntimeError"),
    ("multiview_nt_xent", lambda z, t=0.5: nt_xent(z[0], z[1], t), "only the first two views"),
    ("multiview_nt_xent", lambda z, t=0.5: torch.stack([nt_xent(z[a], z[b], t) for a in range(len(z))
                                                        for b in range(a + 1, len(z))]).mean(), "pairs of views"),
    ("multiview_nt_xent", lambda z, t=0.5: _multiview(z, t, reduce="sum"), "divide by V - 1"),
    ("multiview_nt_xent", lambda z, t=0.5: _multiview(z, t, log_inside=True), "inside the log"),
    ("multiview_nt_xent", lambda z, t=0.5: _multiview(z, t, self_in=True), "counts itself"),
    ("multiview_nt_xent", lambda z, t=0.5: _multiview(z, t, positives="view"), "other images of the same view"),
    ("multiview_nt_xent", lambda z, t=0.5: _multiview(z, 0.5), "ignores the temperature"),
    ("multiview_nt_xent", lambda z, t=0.5: _multiview(z, 1 / t), "do not multiply"),
    ("multiview_nt_xent", lambda z, t=0.5: _multiview(z, t) * z.shape[0] * z.shape[1], "not the sum"),
    ("multiview_nt_xent", lambda z, t=0.5: _multiview(z, t).detach(), "carries no gradient"),
    ("cosine_similarity", lambda z: z @ z.T, "normalise each row"),
    ("cosine_similarity", lambda z: F.normalize(z, dim=0) @ F.normalize(z, dim=0).T, "normalised the columns"),
]


@pytest.mark.parametrize("name, fn, phrase", WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_a_wrong_answer_gets_its_own_sentence(name, fn, phrase):
    assert_own_sentence(name, fn, phrase)


def test_the_v_view_reference_is_nt_xent_for_two_views():
    from sslkit.exercises.simclr import multiview_nt_xent
    z = torch.randn(2, 7, 12)
    for t in (0.1, 0.5, 1.0):
        assert torch.allclose(multiview_nt_xent(z, t).float(), nt_xent(z[0], z[1], t), atol=1e-5)
