"""The exercise checks: a right answer passes and a placeholder is "not done yet", for every exercise;
each notebook's typical mistakes, each with its own sentence, are in tests/test_exercises_<notebook>.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from exercise_helpers import SOLUTIONS, solution
from sslkit import course
from sslkit.compare import alignment, uniformity
from sslkit.exercises import EXERCISES, check, run_check
from sslkit.losses import info_nce, nt_xent
from sslkit.methods.ema import ema_update
from sslkit.methods.jigsaw import min_hamming_distance



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


def test_a_function_that_returns_nonsense_gets_a_sentence_not_a_traceback():
    for name in EXERCISES:
        result = run_check(name, lambda *args: "nonsense")
        assert result.status == "failed" and "\n" not in result.message, (name, result.message)


def test_an_unknown_exercise_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown exercise 'simclr'"):
        run_check("simclr", nt_xent)
