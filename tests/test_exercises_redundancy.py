"""Notebook 09 redundancy reduction's exercises: each typical mistake gets its own sentence."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import pytest

from exercise_helpers import assert_own_sentence, solution
from sslkit.exercises import run_check


def _std(z):                      # main.py's BatchNorm: the biased variance, eps 1e-5
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5)


def _paper(z):                    # Algorithm 1: the unbiased std, no eps
    return (z - z.mean(0)) / z.std(0)


WRONG = [
    # (exercise, wrong function, a phrase of the sentence it must get)
    ("cross_correlation", lambda z1, z2: _std(z1) @ _std(z2).T / len(z1), "similarity matrix"),
    ("cross_correlation", lambda z1, z2: _std(z2).T @ _std(z1) / len(z1), "transpose"),
    ("cross_correlation", lambda z1, z2: _std(z1).T @ _std(z2), "divide by the batch size"),
    ("cross_correlation", lambda z1, z2: (z1 - z1.mean(0)).T @ (z2 - z2.mean(0)) / len(z1), "not standardised"),
    ("cross_correlation", lambda z1, z2: z1.T @ z2 / len(z1), "not standardised"),
    ("cross_correlation", lambda z1, z2: (z1 / z1.std(0)).T @ (z2 / z2.std(0)) / len(z1), "did not subtract its mean"),
    ("cross_correlation", lambda z1, z2: F.normalize(z1, dim=1).T @ F.normalize(z2, dim=1) / len(z1), "along dim=1"),
    ("cross_correlation", lambda z1, z2: ((z1 - z1.mean(1, keepdim=True)) / z1.std(1, keepdim=True)).T
     @ ((z2 - z2.mean(1, keepdim=True)) / z2.std(1, keepdim=True)) / len(z1), "instead of each unit over the batch"),
    ("cross_correlation", lambda z1, z2: _paper(z1).T @ _paper(z2) / len(z1), "add a small eps"),
    ("cross_correlation", lambda z1, z2: _std(z1).T @ _std(z1) / len(z1), "should be, in its first row"),
    ("barlow_twins_loss", lambda c, lambd: (c - torch.eye(len(c))).pow(2).sum(), "forgets the off-diagonal weight"),
    ("barlow_twins_loss", lambda c, lambd: lambd * (c - torch.eye(len(c))).pow(2).sum(), "multiplies the diagonal"),
    ("barlow_twins_loss", lambda c, lambd: lambd * (1 - c.diagonal()).pow(2).sum() + (c - torch.diag(c.diagonal())).pow(2).sum(),
     "instead of the off-diagonal"),
    ("barlow_twins_loss", lambda c, lambd: (1 - c.diagonal()).pow(2).sum() + lambd * c.pow(2).sum(), "also counts the diagonal"),
    ("barlow_twins_loss", lambda c, lambd: c.diagonal().pow(2).sum() + lambd * (c - torch.diag(c.diagonal())).pow(2).sum(),
     "pulls the diagonal to 0"),
    ("barlow_twins_loss", lambda c, lambd: (1 - c.diagonal()).pow(2).mean() + lambd * (c - torch.diag(c.diagonal())).pow(2).sum()
     / (len(c) * (len(c) - 1)), "averages where it should sum"),
    ("barlow_twins_loss", lambda c, lambd: float((1 - c.diagonal()).pow(2).sum() + lambd * (c - torch.diag(c.diagonal())).pow(2).sum()),
     "no gradient"),
    ("barlow_twins_loss", lambda c, lambd: (1 - c.diagonal()).abs().sum() + lambd * (c - torch.diag(c.diagonal())).pow(2).sum(),
     "the loss should be"),
    ("variance_term", lambda z, gamma, eps: F.relu(gamma - z.var(0)).mean(), "hinge is on the variance"),
    ("variance_term", lambda z, gamma, eps: F.relu(gamma - torch.sqrt(z.var(1) + eps)).mean(), "(dim=1)"),
    ("variance_term", lambda z, gamma, eps: (gamma - torch.sqrt(z.var(0) + eps)).mean(), "no hinge"),
    ("variance_term", lambda z, gamma, eps: F.relu(gamma - torch.sqrt(z.var(0) + eps)).sum(), "sums over the units"),
    ("variance_term", lambda z, gamma, eps: F.relu(gamma - torch.sqrt(z.var(0, unbiased=False) + eps)).mean(), "biased variance"),
    ("variance_term", lambda z, gamma, eps: F.relu(1.0 - torch.sqrt(z.var(0) + eps)).mean(), "use the gamma argument"),
    ("variance_term", lambda z, gamma, eps: F.relu(gamma - z.std(0)).mean(), "has no eps"),
    ("variance_term", lambda z, gamma, eps: F.relu(gamma - torch.sqrt(z.var(0) + eps * (z.var(0) > 0))).mean(),
     "needs eps under the square root"),
    ("variance_term", lambda z, gamma, eps: F.relu(gamma - torch.sqrt(z.var(0)) + eps).mean(), "should be"),
]


@pytest.mark.parametrize("name, fn, phrase", WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_a_wrong_answer_gets_its_own_sentence(name, fn, phrase):
    assert_own_sentence(name, fn, phrase)


def test_the_papers_unbiased_std_with_eps_is_right_too():
    """Algorithm 1 divides by z.std(0): with an eps it is accepted, and the sentence says so."""
    result = run_check("cross_correlation", lambda z1, z2: ((z1 - z1.mean(0)) / torch.sqrt(z1.var(0) + 1e-5)).T
                       @ ((z2 - z2.mean(0)) / torch.sqrt(z2.var(0) + 1e-5)) / len(z1))
    assert result.passed and "unbiased std of the paper's Algorithm 1" in result.message, result.message


def test_the_notebooks_solutions_compose_into_the_packages_loss():
    from sslkit.methods.barlowtwins import barlow_twins_loss

    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(32, 8, generator=g), torch.randn(32, 8, generator=g)
    mine = solution("barlow_twins_loss")(solution("cross_correlation")(z1, z2), 0.0051)
    assert float(mine) == pytest.approx(float(barlow_twins_loss(z1, z2, 0.0051)), rel=1e-5)
