"""Losses shared by the methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sslkit.distributed import all_gather_with_grad, context


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent, the normalised-temperature cross entropy of SimCLR (Chen et al. 2020, eq. 1).

    For each of the 2N embeddings the positive is the other view of the same image and the
    2N - 2 embeddings of the other images are the negatives; similarity is the cosine divided
    by the temperature. The loss is the mean over all 2N anchors.

    Args:
        z1, z2: ``(N, D)`` embeddings of the two views; row i of each comes from image i.
        temperature: tau > 0.
    Returns:
        a scalar tensor.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    n = z1.shape[0]
    if n < 2:
        raise ValueError(f"NT-Xent needs a batch of at least 2 images (for negatives), got {n}.")
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)                 # (2N, D)
    ctx = context()
    if ctx.world > 1:
        return _nt_xent_global(z, n, ctx.rank, ctx.world, temperature)
    sim = z @ z.T / temperature                                          # (2N, 2N)
    sim.fill_diagonal_(float("-inf"))                                    # an anchor is not its own negative
    positive = torch.arange(2 * n, device=z.device).roll(n)              # i <-> i + N
    return F.cross_entropy(sim, positive)


def _nt_xent_global(z: torch.Tensor, n: int, rank: int, world: int, temperature: float) -> torch.Tensor:
    """NT-Xent of this process's 2N anchors against the global batch (DDP, :mod:`sslkit.distributed`):
    the candidates are every process's embeddings, gathered with their gradients, so an anchor has
    2NW - 2 negatives as in one process with the global batch; the mean of the processes' losses
    is that process's loss, and DDP's averaged gradient its gradient."""
    cand = torch.cat([all_gather_with_grad(z[:n]), all_gather_with_grad(z[n:])])   # (2NW, D): first views, then second
    i = torch.arange(n, device=z.device) + rank * n
    own = torch.cat([i, i + n * world])                                  # where each anchor sits among the candidates
    sim = z @ cand.T / temperature                                       # (2N, 2NW)
    sim[torch.arange(2 * n, device=z.device), own] = float("-inf")       # an anchor is not its own negative
    return F.cross_entropy(sim, own.roll(n))                             # the positive: the other view of the image


def info_nce(query: torch.Tensor, key: torch.Tensor, negatives: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """InfoNCE with one positive and a shared set of negatives (MoCo, He et al. 2020, eq. 1).

    Each query's logits are its cosine similarity with its own key followed by those with every
    negative, divided by the temperature; the loss is the cross-entropy with the positive at
    index 0, averaged over the queries.

    Args:
        query, key: ``(B, D)``; row i of ``key`` is the positive of row i of ``query``.
        negatives: ``(K, D)`` (MoCo's queue), shared by every query.
        temperature: tau > 0.
    """
    if not temperature > 0:   # NaN too
        raise ValueError(f"temperature must be positive, got {temperature}.")
    q = F.normalize(query.float(), dim=1)
    k = F.normalize(key.float(), dim=1)
    n = F.normalize(negatives.float(), dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ n.T], dim=1) / temperature   # (B, 1 + K)
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
