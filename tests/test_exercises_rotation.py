"""Notebook 01 rotation's exercises: each typical mistake gets its own sentence."""

from __future__ import annotations

import math

import pytest
import torch

from exercise_helpers import assert_own_sentence, solution
from sslkit.exercises.rotation import _sampled


def _rot_image_major(x, k=4):
    v, l = solution("rotation_batch")(x, k)
    B = len(x)
    return v.view(k, B, *x.shape[1:]).transpose(0, 1).flatten(0, 1), l


WRONG = [
    # (exercise, wrong function, a phrase of the sentence it must get)
    ("quarter_turn", lambda x: x.transpose(2, 3).flip(3), "clockwise"),
    ("quarter_turn", lambda x: x.transpose(2, 3), "only transposes"),
    ("rotation_batch", _rot_image_major, "grouped image by image"),
    ("rotation_batch", lambda x, k=4: (solution("rotation_batch")(x, k)[0], torch.arange(k).repeat(len(x))),
     "the labels are not"),
    ("rotation_batch", lambda x, k=4: (solution("rotation_batch")(x, k)[0], solution("rotation_batch")(x, k)[1].float()),
     "torch.long"),
    ("any_angle", lambda x, a: _sampled(x, -a), "turn clockwise"),
    ("any_angle", lambda x, a: _sampled(x, math.degrees(a)), "as radians"),
    ("any_angle", lambda x, a: _sampled(x, a, mode="nearest"), "nearest pixel"),
    ("any_angle", lambda x, a: _sampled(x, a, padding_mode="border"), "repeat the border"),
    ("any_angle", lambda x, a: _sampled(x, a, padding_mode="reflection"), "mirror the image"),
    ("any_angle", lambda x, a: torch.rot90(x, int(a // 90), dims=(2, 3)), "multiple of 90"),
    ("any_angle", lambda x, a: 0.5 * _sampled(x, a), "differ from the package's rotate"),
]


@pytest.mark.parametrize("name, fn, phrase", WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_a_wrong_answer_gets_its_own_sentence(name, fn, phrase):
    assert_own_sentence(name, fn, phrase)
