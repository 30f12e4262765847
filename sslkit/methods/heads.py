"""Heads that several methods share (SimCLR, MoCo, BYOL and SimSiam's projectors and predictors)."""

from __future__ import annotations

import torch.nn as nn


def projection_head(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear-BN-ReLU-Linear, ``(B, in_dim) -> (B, out_dim)``: the projector of the kit's SimCLR, MoCo,
    BYOL and SimSiam, and BYOL's and SimSiam's predictor."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )
