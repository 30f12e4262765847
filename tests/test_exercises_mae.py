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


WRONG = [
    # (exercise, wrong function, a phrase of the sentence it must get)
    ("random_masking", _mask_inverted, "1 = hidden"),
    ("random_masking", _mask_shuffle_as_restore, "ids_restore = ids_shuffle.argsort"),
    ("random_masking", lambda x, r: (x[:, :round(x.shape[1] * (1 - r))], torch.cat([
        torch.zeros(x.shape[0], round(x.shape[1] * (1 - r))), torch.ones(x.shape[0], x.shape[1] - round(x.shape[1] * (1 - r)))], 1),
        torch.arange(x.shape[1]).expand(x.shape[0], -1)), "same mask"),
    ("patch_targets", lambda p: (p - p.mean(-1, keepdim=True)) / (p.var(-1, keepdim=True, unbiased=False) + 1e-6) ** 0.5,
     "unbiased variance"),
    ("patch_targets", lambda p: (p - p.mean(1, keepdim=True)) / (p.var(1, keepdim=True) + 1e-6) ** 0.5, "across the patches"),
    ("patch_targets", lambda p: (p - p.mean(-1, keepdim=True)) / p.std(-1, keepdim=True), "add 1e-6"),
]


@pytest.mark.parametrize("name, fn, phrase", WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_a_wrong_answer_gets_its_own_sentence(name, fn, phrase):
    assert_own_sentence(name, fn, phrase)
