"""Notebook 06 MAE's exercises: each typical mistake gets its own sentence."""

from __future__ import annotations

import pytest
import torch

from exercise_helpers import assert_own_sentence, solution


def _mask_inverted(x, r):
    kept, mask, ids = solution("random_masking")(x, r)
    return kept, 1 - mask, ids


def _mask_shuffle_as_restore(x, r):
    kept, mask, ids = solution("random_masking")(x, r)
    return kept, mask, ids.argsort(1)


def _patches(imgs, p, order):
    B, C, H, W = imgs.shape
    x = imgs.reshape(B, C, H // p, p, W // p, p)
    return x.permute(*order).reshape(B, (H // p) * (W // p), -1)


def _unpatchify(order):
    """An unpatchify that inverts the patch layout ``order`` (a permutation of (B, C, h, p, w, q))."""
    def fn(x, p, C):
        B, L, _ = x.shape
        h = int(round(L ** 0.5))
        dims = {0: B, 1: C, 2: h, 3: p, 4: h, 5: p}
        y = x.reshape(*[dims[d] for d in order])
        return y.permute(*[order.index(d) for d in range(6)]).reshape(B, C, h * p, h * p)
    return fn


WRONG = [
    # (exercise, wrong function, a phrase of the sentence it must get)
    ("random_masking", _mask_inverted, "1 = hidden"),
    ("random_masking", _mask_shuffle_as_restore, "ids_restore = ids_shuffle.argsort"),
    ("random_masking", lambda x, r: (x[:, :round(x.shape[1] * (1 - r))], torch.cat([
        torch.zeros(x.shape[0], round(x.shape[1] * (1 - r))), torch.ones(x.shape[0], x.shape[1] - round(x.shape[1] * (1 - r)))], 1),
        torch.arange(x.shape[1]).expand(x.shape[0], -1)), "same mask"),
    ("patchify", lambda imgs, p: _patches(imgs, p, (0, 2, 4, 1, 3, 5)), "(channel, row, column)"),
    ("patchify", lambda imgs, p: _patches(imgs, p, (0, 4, 2, 3, 5, 1)), "down the columns first"),
    ("patchify", lambda imgs, p: _patches(imgs, p, (0, 2, 4, 5, 3, 1)), "column by column"),
    ("patchify", lambda imgs, p: imgs.reshape(imgs.shape[0], -1, p * p * imgs.shape[1]), "not a p x p square"),
    ("patchify", lambda imgs, p: imgs.flatten(2).transpose(1, 2), "should have shape"),
    ("unpatchify", _unpatchify((0, 2, 4, 1, 3, 5)), "(channel, row, column)"),
    ("unpatchify", _unpatchify((0, 4, 2, 3, 5, 1)), "down the columns first"),
    ("unpatchify", _unpatchify((0, 2, 4, 5, 3, 1)), "column by column"),
    ("unpatchify", lambda x, p, C: x.reshape(x.shape[0], C, int(round((x.shape[1] * p * p) ** 0.5)), -1),
     "straight into the image"),
    ("patch_targets", lambda p: (p - p.mean(-1, keepdim=True)) / (p.var(-1, keepdim=True, unbiased=False) + 1e-6) ** 0.5,
     "unbiased variance"),
    ("patch_targets", lambda p: (p - p.mean(1, keepdim=True)) / (p.var(1, keepdim=True) + 1e-6) ** 0.5, "across the patches"),
    ("patch_targets", lambda p: (p - p.mean(-1, keepdim=True)) / p.std(-1, keepdim=True), "add 1e-6"),
]


@pytest.mark.parametrize("name, fn, phrase", WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_a_wrong_answer_gets_its_own_sentence(name, fn, phrase):
    assert_own_sentence(name, fn, phrase)
