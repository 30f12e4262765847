"""Notebook 04 MoCo's exercises: each typical mistake gets its own sentence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from exercise_helpers import assert_own_sentence


def _enqueue_no_wrap(queue, ptr, keys):
    n = min(len(keys), len(queue) - ptr)
    queue[ptr:ptr + n] = keys[:n]
    return (ptr + len(keys)) % len(queue)


WRONG = [
    # (exercise, wrong function, a phrase of the sentence it must get)
    ("enqueue", _enqueue_no_wrap, "wrap round"),
    ("enqueue", lambda q, p, k: (q.__setitem__((p + torch.arange(len(k))) % len(q), k), p)[1], "returned pointer"),
    ("enqueue", lambda q, p, k: (p + len(k)) % len(q), "did not change"),
    ("info_nce", lambda q, k, n, t=0.2: F.cross_entropy(torch.cat([(q * k).sum(1, keepdim=True), q @ n.T], 1) / t,
                                                       torch.zeros(len(q), dtype=torch.long)), "normalise"),
]


@pytest.mark.parametrize("name, fn, phrase", WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_a_wrong_answer_gets_its_own_sentence(name, fn, phrase):
    assert_own_sentence(name, fn, phrase)
