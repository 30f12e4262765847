"""Notebook 05 BYOL's exercises: each typical mistake gets its own sentence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from exercise_helpers import assert_own_sentence


def _ema_swapped(target, online, m):
    with torch.no_grad():
        for t, o in zip(target, online):
            t.mul_(1 - m).add_(o, alpha=m)


def _ema_with_grad(target, online, m):
    for t, o in zip(target, online):
        t.mul_(m).add_((1 - m) * o)


def _ema_not_in_place(target, online, m):
    for t, o in zip(target, online):
        t = m * t + (1 - m) * o


WRONG = [
    # (exercise, wrong function, a phrase of the sentence it must get)
    ("ema_update", _ema_swapped, "swapped"),
    ("ema_update", _ema_with_grad, "torch.no_grad()"),
    ("ema_update", _ema_not_in_place, "in place"),
    ("byol_loss", lambda p1, p2, z1, z2: (2 - 2 * F.cosine_similarity(p1, z1.detach()) +
                                          2 - 2 * F.cosine_similarity(p2, z2.detach())).mean(), "other view"),
    ("byol_loss", lambda p1, p2, z1, z2: (2 - 2 * F.cosine_similarity(p1, z2) + 2 - 2 * F.cosine_similarity(p2, z1)).mean(),
     "stop-gradient"),
    ("byol_loss", lambda p1, p2, z1, z2: ((p1 - z2).pow(2).sum(1) + (p2 - z1).pow(2).sum(1)).mean(), "normalise both"),
    ("byol_loss", lambda p1, p2, z1, z2: (2 - 2 * F.cosine_similarity(p1, z2.detach())).mean(), "symmetric"),
]


@pytest.mark.parametrize("name, fn, phrase", WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_a_wrong_answer_gets_its_own_sentence(name, fn, phrase):
    assert_own_sentence(name, fn, phrase)
