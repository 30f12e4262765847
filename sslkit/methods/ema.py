"""The exponential moving average that BYOL's target and MoCo's key encoder both are."""

from __future__ import annotations

from typing import Iterable

import torch


@torch.no_grad()
def ema_update(target: Iterable[torch.Tensor], online: Iterable[torch.Tensor], momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online``, in place, tensor by tensor."""
    for t, o in zip(target, online):
        t.mul_(momentum).add_((1.0 - momentum) * o)
