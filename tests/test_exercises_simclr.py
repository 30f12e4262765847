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
    ("cosine_similarity", lambda z: z @ z.T, "normalise each row"),
    ("cosine_similarity", lambda z: F.normalize(z, dim=0) @ F.normalize(z, dim=0).T, "normalised the columns"),
]


@pytest.mark.parametrize("name, fn, phrase", WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_a_wrong_answer_gets_its_own_sentence(name, fn, phrase):
    assert_own_sentence(name, fn, phrase)
