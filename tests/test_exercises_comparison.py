"""Notebook 07 comparison's exercises: each typical mistake gets its own sentence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from exercise_helpers import assert_own_sentence


WRONG = [
    # (exercise, wrong function, a phrase of the sentence it must get)
    ("alignment", lambda z1, z2: (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).norm(dim=1).mean(), "squared"),
    ("alignment", lambda z1, z2: (z1 - z2).pow(2).sum(1).mean(), "normalise"),
    ("uniformity", lambda z, t=2.0: torch.cdist(F.normalize(z, dim=1), F.normalize(z, dim=1)).pow(2).mul(-t).exp().mean().log(),
     "itself"),
    ("uniformity", lambda z, t=2.0: torch.pdist(F.normalize(z, dim=1)).pow(2).mul(-t).exp().mean(), "logarithm"),
]


@pytest.mark.parametrize("name, fn, phrase", WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_a_wrong_answer_gets_its_own_sentence(name, fn, phrase):
    assert_own_sentence(name, fn, phrase)
