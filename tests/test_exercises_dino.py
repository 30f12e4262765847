"""Notebook 10 DINO's exercises: each typical mistake gets its own sentence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from exercise_helpers import assert_own_sentence


def _center(rule):
    def update(center, t, m):
        with torch.no_grad():
            return rule(center, t, m)
    return update


def _loss(pairs="others", centre=True, tps=None, average=True, student_crops=None, log=True, detach=True):
    """A DINO loss with one thing changed."""
    def loss(s, t, c, student_temp, teacher_temp):
        B = len(t) // 2
        q = F.softmax(((t.detach() if detach else t) - (c if centre else 0)) / teacher_temp, dim=-1).chunk(2)
        crops = s.chunk(len(s) // B)[:student_crops]
        temp = tps or student_temp
        p = [(F.log_softmax if log else F.softmax)(x / temp, dim=-1) for x in crops]
        terms = [(-qi * pv).sum(-1).mean() for i, qi in enumerate(q) for v, pv in enumerate(p)
                 if pairs == "all" or v != i]
        return sum(terms) / len(terms) if average else sum(terms)
    return loss


WRONG = [
    # (exercise, wrong function, a phrase of the sentence it must get)
    ("teacher_probs", lambda t, c, temp: F.softmax((t - c) / temp, dim=0), "over the last dimension"),
    ("teacher_probs", lambda t, c, temp: F.softmax(t / temp, dim=-1), "ignore the centre"),
    ("teacher_probs", lambda t, c, temp: F.softmax((t + c) / temp, dim=-1), "add the centre"),
    ("teacher_probs", lambda t, c, temp: F.softmax((t - c) * temp, dim=-1), "multiply by the temperature"),
    ("teacher_probs", lambda t, c, temp: F.softmax(t / temp - c, dim=-1), "after dividing by the temperature"),
    ("teacher_probs", lambda t, c, temp: F.softmax((t - c) / 0.5, dim=-1), "very high temperature"),
    ("center_update", _center(lambda c, t, m: (1 - m) * c + m * t.mean(0, keepdim=True)), "swapped"),
    ("center_update", _center(lambda c, t, m: m * c + (1 - m) * t.sum(0, keepdim=True)), "takes the mean"),
    ("center_update", _center(lambda c, t, m: m * c + (1 - m) * (t - c).mean(0, keepdim=True)), "centred logits"),
    ("center_update", _center(lambda c, t, m: m * c + (1 - m) * t[: len(t) // 2].mean(0, keepdim=True)), "first half"),
    ("center_update", _center(lambda c, t, m: t.mean(0, keepdim=True)), "moving average"),
    ("center_update", _center(lambda c, t, m: (m * c.view(-1) + (1 - m) * t.mean(0))), "keep it (1, K)"),
    ("center_update", _center(lambda c, t, m: m * c.mean() + (1 - m) * t.mean(1, keepdim=True)), "over the batch (dim 0)"),
    ("center_update", lambda c, t, m: m * c + (1 - m) * t.mean(0, keepdim=True), "torch.no_grad()"),
    ("center_update", _center(lambda c, t, m: (c.mul_(m).add_((1 - m) * t.mean(0, keepdim=True)), None)[1]), "returned nothing"),
    ("dino_loss", _loss(pairs="all"), "with itself"),
    ("dino_loss", _loss(student_crops=2), "global crops only"),
    ("dino_loss", _loss(centre=False), "does not centre"),
    ("dino_loss", _loss(tps=1.0), "no temperature"),
    ("dino_loss", _loss(average=False), "averages over them"),
    ("dino_loss", _loss(log=False), "F.log_softmax"),
    ("dino_loss", _loss(detach=False), "stop-gradient"),
    ("dino_loss", lambda s, t, c, tps, tpt: _loss()(s, t, c, tps, tpt).item(), "no gradient to the student"),
]


@pytest.mark.parametrize("name, fn, phrase", WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_a_wrong_answer_gets_its_own_sentence(name, fn, phrase):
    assert_own_sentence(name, fn, phrase)


def test_the_package_passes_its_own_checks():
    from sslkit.exercises import run_check
    from sslkit.methods.dino import dino_loss

    assert run_check("dino_loss", dino_loss).passed
    assert run_check("teacher_probs", lambda t, c, temp: F.softmax((t - c) / temp, dim=-1)).passed
    assert run_check("center_update", lambda c, t, m: m * c + (1 - m) * t.detach().mean(0, keepdim=True)).passed
