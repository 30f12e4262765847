"""Notebook 05 BYOL's exercises: each typical mistake gets its own sentence."""

from __future__ import annotations

import math

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


def _ema_rebinds_the_list(target, online, m):
    with torch.no_grad():
        for i, (t, o) in enumerate(zip(target, online)):
            target[i] = m * t + (1 - m) * o          # the list gets new tensors; the network's own stay put


def _ema_new_values_elsewhere(target, online, m):
    with torch.no_grad():
        for t, o in zip(target, online):
            t.mul_(m).add_(o, alpha=m)               # the rule itself wrong


def _schedule(decay):
    return lambda k, K, base: 1 - (1 - base) * decay(k, K)


WRONG = [
    # (exercise, wrong function, a phrase of the sentence it must get)
    ("ema_update", _ema_swapped, "swapped"),
    ("ema_update", _ema_with_grad, "torch.no_grad()"),
    ("ema_update", _ema_not_in_place, "in place"),
    ("ema_update", _ema_rebinds_the_list, "put new tensors into the list"),
    ("ema_update", _ema_new_values_elsewhere, "not to m * target + (1 - m) * online"),
    ("momentum_schedule", _schedule(lambda k, K: (1 - math.cos(math.pi * k / K)) / 2), "runs backwards"),
    ("momentum_schedule", _schedule(lambda k, K: math.cos(math.pi * k / K)), "(the + 1 and the / 2)"),
    ("momentum_schedule", _schedule(lambda k, K: (math.cos(k / K) + 1) / 2), "pi * k / K"),
    ("momentum_schedule", _schedule(lambda k, K: (math.cos(180 * k / K) + 1) / 2), "in radians"),
    ("momentum_schedule", _schedule(lambda k, K: 1 - k / K), "straight line"),
    ("momentum_schedule", lambda k, K, base: 1 - (1 - 0.99) * (math.cos(math.pi * k / K) + 1) / 2, "base_momentum argument"),
    ("momentum_schedule", lambda k, K, base: torch.tensor([1.0, 2.0]), "one number"),
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
