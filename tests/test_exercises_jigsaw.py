"""Notebook 02 jigsaw's exercises: each typical mistake gets its own sentence."""

from __future__ import annotations

import pytest
import torch

from exercise_helpers import assert_own_sentence


WRONG = [
    # (exercise, wrong function, a phrase of the sentence it must get)
    ("min_hamming", lambda p: int((p[:, None] != p[None]).sum(-1).min()), "leave out the diagonal"),
    ("permutation_set", lambda n, s: torch.stack([torch.randperm(n) for _ in range(s)]), "farthest"),
    ("permutation_set", lambda n, s: torch.arange(n).expand(s, -1), "same permutation twice"),
]


@pytest.mark.parametrize("name, fn, phrase", WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_a_wrong_answer_gets_its_own_sentence(name, fn, phrase):
    assert_own_sentence(name, fn, phrase)
