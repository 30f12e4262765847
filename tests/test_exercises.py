"""The exercise checks: a right answer passes, a placeholder is "not done yet", and each typical
mistake gets its own sentence, never a traceback."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from sslkit import course
from sslkit.compare import alignment, uniformity
from sslkit.exercises import EXERCISES, check, run_check
from sslkit.losses import info_nce, nt_xent
from sslkit.methods.ema import ema_update
from sslkit.methods.jigsaw import min_hamming_distance

SOLUTIONS = course.solutions()


def solution(name: str):
    """The function the notebook's solution cell defines."""
    ns: dict = {"torch": torch, "F": F}
    exec(SOLUTIONS[name], ns)
    return next(v for k, v in ns.items() if k.startswith("my_") and callable(v))


# the comparison notebook is still to come: its solutions live here until then
EXTRA = {
    "alignment": lambda z1, z2: (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).pow(2).sum(1).mean(),
    "uniformity": lambda z, t=2.0: torch.pdist(F.normalize(z, dim=1)).pow(2).mul(-t).exp().mean().log(),
}
# where the package's own function has the exercise's signature, it must pass too
PACKAGE = {"nt_xent": nt_xent, "info_nce": info_nce, "ema_update": ema_update, "min_hamming": min_hamming_distance,
           "alignment": alignment, "uniformity": uniformity,
           "quarter_turn": lambda x: torch.rot90(x, 1, dims=(2, 3))}


def test_every_exercise_has_a_solution_in_a_notebook_or_here():
    assert sorted(set(SOLUTIONS) | set(EXTRA)) == sorted(EXERCISES)
    for name, ex in EXERCISES.items():
        if name in SOLUTIONS:
            assert ex.notebook in {p.stem for p in course.source_dir().glob("*.ipynb")}


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_a_right_answer_passes(name):
    fn = EXTRA[name] if name in EXTRA else solution(name)
    result = run_check(name, fn)
    assert result.passed, result.message
    assert result.message.startswith("Right: ") and "\n" not in result.message
    if name in PACKAGE:
        assert run_check(name, PACKAGE[name]).passed


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_a_placeholder_is_not_done_yet(name, capsys):
    def stub(*args):
        raise NotImplementedError()
    result = run_check(name, stub)
    assert result.status == "not done" and result.message.startswith("Not done yet")
    check(name, stub)                      # what the notebook cell prints: one line
    assert capsys.readouterr().out.count("\n") == 1


def test_the_check_leaves_the_random_state_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    run_check("random_masking", solution("random_masking"))
    assert torch.equal(torch.rand(3), expected)


def _nt_xent_with_diagonal(z1, z2, t=0.5):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    return F.cross_entropy(z @ z.T / t, torch.arange(2 * n).roll(n))


def _rot_image_major(x, k=4):
    v, l = solution("rotation_batch")(x, k)
    B = len(x)
    return v.view(k, B, *x.shape[1:]).transpose(0, 1).flatten(0, 1), l


def _mask_inverted(x, r):
    kept, mask, ids = solution("random_masking")(x, r)
    return kept, 1 - mask, ids


def _mask_shuffle_as_restore(x, r):
    kept, mask, ids = solution("random_masking")(x, r)
    return kept, mask, ids.argsort(1)


def _enqueue_no_wrap(queue, ptr, keys):
    n = min(len(keys), len(queue) - ptr)
    queue[ptr:ptr + n] = keys[:n]
    return (ptr + len(keys)) % len(queue)


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
    ("nt_xent", _nt_xent_with_diagonal, "yours approaches log 2 = 0.69"),
    ("nt_xent", lambda z1, z2, t=0.5: nt_xent(z1, z2, t) * 16, "not the sum"),
    ("nt_xent", lambda z1, z2, t=0.5: F.cross_entropy(
        (lambda z: (z @ z.T / t).fill_diagonal_(-math.inf))(torch.cat([z1, z2])), torch.arange(2 * len(z1)).roll(len(z1))),
     "normalise z first"),
    ("nt_xent", lambda z1, z2, t=0.5: nt_xent(z1, z2, 1 / t), "do not multiply"),
    ("nt_xent", lambda z1, z2, t=0.5: nt_xent(z1, z2, t).item(), "carries no gradient"),
    ("nt_xent", lambda z1, z2, t=0.5: nt_xent(z1[:, :3], z2, t), "RuntimeError"),
    ("cosine_similarity", lambda z: z @ z.T, "normalise each row"),
    ("cosine_similarity", lambda z: F.normalize(z, dim=0) @ F.normalize(z, dim=0).T, "normalised the columns"),
    ("quarter_turn", lambda x: x.transpose(2, 3).flip(3), "clockwise"),
    ("quarter_turn", lambda x: x.transpose(2, 3), "only transposes"),
    ("rotation_batch", _rot_image_major, "grouped image by image"),
    ("rotation_batch", lambda x, k=4: (solution("rotation_batch")(x, k)[0], torch.arange(k).repeat(len(x))),
     "the labels are not"),
    ("rotation_batch", lambda x, k=4: (solution("rotation_batch")(x, k)[0], solution("rotation_batch")(x, k)[1].float()),
     "torch.long"),
    ("min_hamming", lambda p: int((p[:, None] != p[None]).sum(-1).min()), "leave out the diagonal"),
    ("permutation_set", lambda n, s: torch.stack([torch.randperm(n) for _ in range(s)]), "farthest"),
    ("permutation_set", lambda n, s: torch.arange(n).expand(s, -1), "same permutation twice"),
    ("enqueue", _enqueue_no_wrap, "wrap round"),
    ("enqueue", lambda q, p, k: (q.__setitem__((p + torch.arange(len(k))) % len(q), k), p)[1], "returned pointer"),
    ("enqueue", lambda q, p, k: (p + len(k)) % len(q), "did not change"),
    ("info_nce", lambda q, k, n, t=0.2: F.cross_entropy(torch.cat([(q * k).sum(1, keepdim=True), q @ n.T], 1) / t,
                                                       torch.zeros(len(q), dtype=torch.long)), "normalise"),
    ("ema_update", _ema_swapped, "swapped"),
    ("ema_update", _ema_with_grad, "torch.no_grad()"),
    ("ema_update", _ema_not_in_place, "in place"),
    ("byol_loss", lambda p1, p2, z1, z2: (2 - 2 * F.cosine_similarity(p1, z1.detach()) +
                                          2 - 2 * F.cosine_similarity(p2, z2.detach())).mean(), "other view"),
    ("byol_loss", lambda p1, p2, z1, z2: (2 - 2 * F.cosine_similarity(p1, z2) + 2 - 2 * F.cosine_similarity(p2, z1)).mean(),
     "stop-gradient"),
    ("byol_loss", lambda p1, p2, z1, z2: ((p1 - z2).pow(2).sum(1) + (p2 - z1).pow(2).sum(1)).mean(), "normalise both"),
    ("byol_loss", lambda p1, p2, z1, z2: (2 - 2 * F.cosine_similarity(p1, z2.detach())).mean(), "symmetric"),
    ("random_masking", _mask_inverted, "1 = hidden"),
    ("random_masking", _mask_shuffle_as_restore, "ids_restore = ids_shuffle.argsort"),
    ("random_masking", lambda x, r: (x[:, :round(x.shape[1] * (1 - r))], torch.cat([
        torch.zeros(x.shape[0], round(x.shape[1] * (1 - r))), torch.ones(x.shape[0], x.shape[1] - round(x.shape[1] * (1 - r)))], 1),
        torch.arange(x.shape[1]).expand(x.shape[0], -1)), "same mask"),
    ("patch_targets", lambda p: (p - p.mean(-1, keepdim=True)) / (p.var(-1, keepdim=True, unbiased=False) + 1e-6) ** 0.5,
     "unbiased variance"),
    ("patch_targets", lambda p: (p - p.mean(1, keepdim=True)) / (p.var(1, keepdim=True) + 1e-6) ** 0.5, "across the patches"),
    ("patch_targets", lambda p: (p - p.mean(-1, keepdim=True)) / p.std(-1, keepdim=True), "add 1e-6"),
    ("alignment", lambda z1, z2: (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).norm(dim=1).mean(), "squared"),
    ("alignment", lambda z1, z2: (z1 - z2).pow(2).sum(1).mean(), "normalise"),
    ("uniformity", lambda z, t=2.0: torch.cdist(F.normalize(z, dim=1), F.normalize(z, dim=1)).pow(2).mul(-t).exp().mean().log(),
     "itself"),
    ("uniformity", lambda z, t=2.0: torch.pdist(F.normalize(z, dim=1)).pow(2).mul(-t).exp().mean(), "logarithm"),
]


@pytest.mark.parametrize("name, fn, phrase", WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_a_wrong_answer_gets_its_own_sentence(name, fn, phrase):
    result = run_check(name, fn)
    assert result.status == "failed"
    assert phrase in result.message, result.message
    assert result.message.startswith("Not yet: ") and "\n" not in result.message
    assert "Traceback" not in result.message
    # one sentence: no full stop that starts a new one (the student's own error message is quoted)
    assert not re.search(r"\.\s+[A-Z]", re.sub(r'"[^"]*"', "", result.message)), result.message


def test_a_function_that_returns_nonsense_gets_a_sentence_not_a_traceback():
    for name in EXERCISES:
        result = run_check(name, lambda *args: "nonsense")
        assert result.status == "failed" and "\n" not in result.message, (name, result.message)


def test_an_unknown_exercise_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown exercise 'simclr'"):
        run_check("simclr", nt_xent)
