"""Notebook 02 jigsaw's exercises: each typical mistake gets its own sentence."""

from __future__ import annotations

import pytest
import torch

from exercise_helpers import assert_own_sentence


WRONG = [
    # (exercise, wrong function, a phrase of the sentence it must get)
    ("min_hamming", lambda p: int((p[:, None] != p[None]).sum(-1).min()), "leave out the diagonal"),
    ("permutation_set", lambda c, s: _greedy(c, s, "maximin"), "*nearest* chosen"),
    ("permutation_set", lambda c, s: _greedy(c, s, "newest"), "newest member alone"),
    ("permutation_set", lambda c, s: _greedy(c, s, "closest"), "*closest* on average"),
    ("permutation_set", lambda c, s: c[:s], "each pick must be the largest mean distance"),
    ("permutation_set", lambda c, s: c[torch.arange(s) % 2], "same permutation twice"),
    ("permutation_set", lambda c, s: torch.arange(s), "indices into the candidates"),
    ("permutation_set", lambda c, s: _greedy(c.flip(0), s, "mean"), "start from the first candidate"),
    ("permutation_set", lambda c, s: c[:s] + 1, "is not one of the candidates"),
    ("seam_solver", lambda x, p, g: _seams(x, p.argsort(1), g), "instead of putting them back"),
    ("seam_solver", lambda x, p, g: _seams(x, p, g, "across"), "only compares left and right"),
    ("seam_solver", lambda x, p, g: _seams(x, p, g, "down"), "only compares a tile with the one below"),
    ("seam_solver", lambda x, p, g: _seams(x, p, g, "worst"), "*worst*"),
    ("seam_solver", lambda x, p, g: _seams(x, p, g, "squared"), "squares the differences"),
    ("seam_solver", lambda x, p, g: _seams(x, p, g, "wrong edge"), "check which edges you compare"),
    ("seam_solver", lambda x, p, g: p[torch.zeros(len(x), dtype=torch.long)], "permutations themselves"),
]


def _greedy(cand, size, rule):
    """The largest-mean-distance selection and its typical slips: the largest mean distance, the largest minimum distance, the
    distance to the newest member only, the smallest mean."""
    taken = torch.zeros(len(cand), dtype=torch.bool)
    taken[0] = True
    chosen, total = [0], (cand != cand[0]).sum(1)
    for _ in range(size - 1):
        j = int(total.masked_fill(taken, 10 ** 6).argmin() if rule == "closest" else total.masked_fill(taken, -1).argmax())
        chosen.append(j)
        taken[j] = True
        d = (cand != cand[j]).sum(1)
        total = {"maximin": torch.minimum(total, d), "newest": d}.get(rule, total + d)
    return cand[chosen]


def _seams(shuffled, perms, grid, slip=None):
    """The seam matcher, right or with one typical slip."""
    B = shuffled.shape[0]
    costs = []
    for p in perms:
        back = shuffled.gather(1, p.argsort().view(1, -1, 1, 1, 1).expand_as(shuffled))
        v = back.view(B, grid, grid, *shuffled.shape[2:])
        diff = (lambda a, b: (a - b).pow(2)) if slip == "squared" else (lambda a, b: (a - b).abs())
        across = diff(v[:, :, :-1, :, :, -1], v[:, :, 1:, :, :, 0]).mean((1, 2, 3, 4))
        down = diff(v[:, :-1, :, :, -1, :], v[:, 1:, :, :, 0, :]).mean((1, 2, 3, 4))
        if slip == "wrong edge":                 # a tile's first column against its neighbour's first
            across = diff(v[:, :, :-1, :, :, 0], v[:, :, 1:, :, :, 0]).mean((1, 2, 3, 4))
        costs.append({"across": across, "down": down}.get(slip, across + down))
    cost = torch.stack(costs, 1)
    return cost.argmax(1) if slip == "worst" else cost.argmin(1)


@pytest.mark.parametrize("name, fn, phrase", WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_a_wrong_answer_gets_its_own_sentence(name, fn, phrase):
    assert_own_sentence(name, fn, phrase)
