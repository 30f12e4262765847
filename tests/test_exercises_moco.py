"""Notebook 04 MoCo's exercises: each typical mistake gets its own sentence."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from exercise_helpers import assert_own_sentence
from sslkit.exercises import run_check
from sslkit.methods.moco import MoCo


def _enqueue_no_wrap(queue, ptr, keys):
    n = min(len(keys), len(queue) - ptr)
    queue[ptr:ptr + n] = keys[:n]
    return (ptr + len(keys)) % len(queue)


def _keys(key_net, x, groups, *, order=None, split="tensor_split", unshuffle="argsort", normalise=True, no_grad=True):
    """Shuffled-BatchNorm keys with one thing changed (by default the right answer)."""
    with torch.set_grad_enabled(not no_grad):
        perm = torch.randperm(len(x)) if order is None else order(len(x))
        parts = x[perm].tensor_split(groups) if split == "tensor_split" else \
            (x[perm].chunk(groups) if split == "chunk" else [x[perm]])
        k = torch.cat([key_net(part) for part in parts])
        k = {"argsort": k[perm.argsort()], "perm": k[perm], "none": k}[unshuffle]
        return F.normalize(k, dim=1) if normalise else k


def _shuffle_inside_groups(key_net, x, groups):
    with torch.no_grad():
        keys = []
        for part in x.tensor_split(groups):
            perm = torch.randperm(len(part))
            keys.append(key_net(part[perm])[perm.argsort()])
        return F.normalize(torch.cat(keys), dim=1)


def _seeded(key_net, x, groups):
    torch.manual_seed(0)
    return _keys(key_net, x, groups)


WRONG = [
    # (exercise, wrong function, a phrase of the sentence it must get)
    ("enqueue", _enqueue_no_wrap, "wrap round"),
    ("enqueue", lambda q, p, k: (q.__setitem__((p + torch.arange(len(k))) % len(q), k), p)[1], "returned pointer"),
    ("enqueue", lambda q, p, k: (p + len(k)) % len(q), "did not change"),
    ("info_nce", lambda q, k, n, t=0.2: F.cross_entropy(torch.cat([(q * k).sum(1, keepdim=True), q @ n.T], 1) / t,
                                                       torch.zeros(len(q), dtype=torch.long)), "normalise"),
    ("shuffled_keys", lambda n, x, g: _keys(n, x, g, order=torch.arange), "in their own order"),
    ("shuffled_keys", lambda n, x, g: _keys(n, x, g, order=lambda b: torch.arange(b).flip(0)), "moves whole groups"),
    ("shuffled_keys", _shuffle_inside_groups, "shuffled inside each group"),
    ("shuffled_keys", lambda n, x, g: _keys(n, x, g, split="whole"), "once on the whole batch"),
    ("shuffled_keys", lambda n, x, g: _keys(n, x, g, split="chunk"), "x.chunk"),
    ("shuffled_keys", lambda n, x, g: _keys(n, x, g, unshuffle="none"), "shuffled order"),
    ("shuffled_keys", lambda n, x, g: _keys(n, x, g, unshuffle="perm"), "inverse permutation"),
    ("shuffled_keys", lambda n, x, g: _keys(n, x, g, normalise=False), "not unit length"),
    ("shuffled_keys", lambda n, x, g: _keys(n, x, g, no_grad=False), "torch.no_grad()"),
    ("shuffled_keys", _seeded, "new torch.randperm on every call"),
    ("shuffled_keys", lambda n, x, g: _keys(n, x + 1, g), "exactly once"),
    ("shuffled_keys", lambda n, x, g: torch.zeros(len(x), 6), "never called key_net"),
]


@pytest.mark.parametrize("name, fn, phrase", WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_a_wrong_answer_gets_its_own_sentence(name, fn, phrase):
    assert_own_sentence(name, fn, phrase)


def test_the_package_s_shuffled_keys_pass_the_check():
    """MoCo.keys (the key encoder and head, shuffled, in bn_splits groups, unshuffled) is what the exercise rebuilds."""
    def package(key_net, x, groups):
        owner = SimpleNamespace(key_encoder=key_net, key_projector=torch.nn.Identity(), _splits=lambda n: groups)
        return MoCo.keys(owner, x)
    result = run_check("shuffled_keys", package)
    assert result.passed, result.message
