"""Checks for the notebooks' coding exercises: one sentence that says right, or what is wrong.

Each exercise asks a student to write one piece the notebook has just explained (the rotation
batch, NT-Xent, BYOL's EMA update, MAE's masking, ...). ``check(name, fn)`` runs the student's
``fn`` beside the package's own function on seeded random inputs, edge cases included (a batch of
two, identical views, an odd number of hidden patches), and prints one sentence: on success that it
is right and what was compared; on failure the *first* thing that is wrong, said concretely and
with the likely cause. A wrong answer never shows a traceback: an exception raised by the student's
code is described in one sentence, and a function that still raises ``NotImplementedError`` (the
student notebooks' placeholder) is "not done yet", so the notebook runs on (its later cells use the
package's functions, never the student's).

The diagnoses come before the plain value comparison on purpose: "yours approaches log 2, so each
view is counted as its own negative" teaches more than "the values differ".
"""

from __future__ import annotations

from typing import Callable

import torch

from sslkit.exercises import byol, comparison, dino, jigsaw, mae, moco, redundancy, rotation, simclr
from sslkit.exercises._core import Exercise, Result, _NotDone, _Wrong, _one_line


# every exercise by name, in course order; each notebook's module holds its own checks and entries
EXERCISES: dict[str, Exercise] = {**rotation.EXERCISES, **jigsaw.EXERCISES, **simclr.EXERCISES, **moco.EXERCISES,
                                  **byol.EXERCISES, **mae.EXERCISES, **comparison.EXERCISES,
                                  **redundancy.EXERCISES, **dino.EXERCISES}


def run_check(name: str, fn: Callable, seed: int = 0) -> Result:
    """Check ``fn`` for exercise ``name`` on seeded inputs; the notebook's random state is left as it was."""
    if name not in EXERCISES:
        raise ValueError(f"unknown exercise '{name}': use one of {', '.join(EXERCISES)}.")
    ex = EXERCISES[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return Result(name, "passed", f"Right: {ex.checker(fn)}")
        except _NotDone:
            return Result(name, "not done", f"Not done yet: {ex.title} still raises NotImplementedError; write your "
                                            "code in place of the placeholder and run both cells again (the "
                                            "notebook goes on with the package's own version).")
        except _Wrong as wrong:
            return Result(name, "failed", f"Not yet: {wrong}")
        except Exception as err:   # what the student returned broke the check itself: still one sentence
            return Result(name, "failed", f"Not yet: the check could not use what your function returned "
                                          f"({_one_line(err)}); compare its shapes and types with the task above.")


def check(name: str, fn: Callable) -> None:
    """Print one sentence: right, not done yet, or the first thing that is wrong."""
    print(run_check(name, fn).message)
