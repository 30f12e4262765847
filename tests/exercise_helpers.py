"""What the exercise tests share: the notebooks' own solutions, and the test that a wrong answer gets
its own sentence. Each notebook's wrong answers live in tests/test_exercises_<notebook>.py."""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from sslkit import course
from sslkit.exercises import run_check

SOLUTIONS = course.solutions()


def solution(name: str):
    """The function the notebook's solution cell defines."""
    ns: dict = {"torch": torch, "F": F}
    exec(SOLUTIONS[name], ns)
    return next(v for k, v in ns.items() if k.startswith("my_") and callable(v))


def assert_own_sentence(name: str, fn, phrase: str) -> None:
    """A wrong answer fails with one sentence that holds ``phrase`` (the mistake it made), no traceback."""
    result = run_check(name, fn)
    assert result.status == "failed"
    assert phrase in result.message, result.message
    assert result.message.startswith("Not yet: ") and "\n" not in result.message
    assert "Traceback" not in result.message
    # one sentence: no full stop that starts a new one (the student's own error message is quoted)
    assert not re.search(r"\.\s+[A-Z]", re.sub(r'"[^"]*"', "", result.message)), result.message
