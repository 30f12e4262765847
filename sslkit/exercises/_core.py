"""What every exercise check shares: the result, the one-sentence failure, safe calls and shape checks.

A check raises :class:`_Wrong` with the sentence to print; :func:`_call` turns an exception of the
student's code into such a sentence, and ``NotImplementedError`` (the student version's placeholder)
into "not done yet". Each notebook's checks live in a module of their own beside this one.
"""


from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class Result:
    """What a check found: ``status`` is ``"passed"``, ``"failed"`` or ``"not done"``."""

    exercise: str
    status: str
    message: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class _Wrong(Exception):
    """The first thing wrong with the student's answer, as the sentence to print."""


class _NotDone(Exception):
    pass


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()).rstrip(".")
    if len(text) > 160:
        text = text[:157] + "..."
    return f'{type(err).__name__} ("{text}")' if text else type(err).__name__


def _call(fn: Callable, *args, on: str):
    """Run the student's function; its exceptions become one sentence (no traceback)."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise _NotDone() from None
    except Exception as err:   # any error in student code is reported, not raised
        raise _Wrong(f"your function raised {_one_line(err)} when called on {on}; "
                     "read the message, fix the line it points to and run the check again.") from None


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    return a.shape == b.shape and torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol)


def _scalar(value, name: str = "your function") -> torch.Tensor:
    """A number the student returned, as a 0-d tensor (a float is fine where no gradient is needed)."""
    if isinstance(value, (int, float)):
        return torch.tensor(float(value))
    if not isinstance(value, torch.Tensor):
        raise _Wrong(f"{name} returned a {type(value).__name__}; it should return a single number (a scalar tensor).")
    if value.numel() != 1:
        raise _Wrong(f"{name} returned a tensor of shape {tuple(value.shape)}; it should return one number "
                     "(did you forget to average over the batch?).")
    return value.reshape(())


def _tensor(value, shape: tuple, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise _Wrong(f"{what} should be a tensor of shape {shape}, but it is a {type(value).__name__}.")
    if tuple(value.shape) != tuple(shape):
        raise _Wrong(f"{what} has shape {tuple(value.shape)}; it should have shape {tuple(shape)}.")
    return value


def _tuple(value, n: int, names: str) -> tuple:
    if not isinstance(value, (tuple, list)) or len(value) != n:
        raise _Wrong(f"your function should return {n} things ({names}), but it returned "
                     f"{'a ' + type(value).__name__ if not isinstance(value, (tuple, list)) else f'{len(value)} things'}.")
    return tuple(value)


@dataclass(frozen=True)
class Exercise:
    title: str
    notebook: str
    checker: Callable[[Callable], str]
