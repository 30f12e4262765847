"""The checks of notebook 05 BYOL."""

from __future__ import annotations

from typing import Callable

import torch

from sslkit.exercises._core import _Wrong, _call, _close, _scalar, Exercise
from sslkit.methods.byol import regression_loss
from sslkit.methods.ema import ema_update


def check_ema_update(fn: Callable) -> str:
    online = [torch.randn(4, 3, requires_grad=True), torch.randn(5, requires_grad=True)]
    target = [torch.zeros(4, 3), torch.zeros(5)]
    mine = [t.clone() for t in target]
    m = 0.99
    _call(fn, mine, online, m, on="a target of zeros, random online weights and momentum 0.99")
    ref = [t.clone() for t in target]
    ema_update(ref, online, m)
    if all(torch.equal(a, b) for a, b in zip(mine, target)):
        raise _Wrong("your target weights did not change: update them in place (t.mul_(m).add_(...) or "
                     "t.copy_(...)) instead of making new tensors.")
    if any(t.requires_grad for t in mine):
        raise _Wrong("your update recorded gradient history in the target weights (they now require grad): "
                     "wrap it in torch.no_grad(), the target is never trained by gradients.")
    moved = (mine[0] / online[0].detach()).mean().item()
    if abs(moved - 0.99) < 1e-3:
        raise _Wrong("with momentum 0.99 the target should move only 1% of the way towards the online weights; "
                     "yours moves 99%, so momentum and 1 - momentum are swapped.")
    if not all(_close(a, b) for a, b in zip(mine, ref)):
        raise _Wrong(f"starting from zeros, one step at momentum 0.99 should give 0.01 x the online weights; yours "
                     f"gives {moved:.3f} x: the rule is target = m * target + (1 - m) * online.")
    for m in (0.0, 1.0):
        mine, ref = [torch.randn(3)], [torch.zeros(3)]
        ref[0].copy_(mine[0])
        o = [torch.randn(3)]
        _call(fn, mine, o, m, on=f"momentum {m}")
        ema_update(ref, o, m)
        if not _close(mine[0], ref[0]):
            raise _Wrong(f"at momentum {m} the target should {'become a copy of the online weights' if m == 0 else 'not move at all'}; "
                         "yours does something else.")
    return "your EMA update matches the package's ema_update, in place and without gradient history, at momentum 0, 0.99 and 1."


def _byol_reference(p1, p2, z1, z2):
    # the targets come from a network without gradient: constants for the loss
    return (regression_loss(p1, z2.detach()) + regression_loss(p2, z1.detach())).mean()


def check_byol_loss(fn: Callable) -> str:
    p1, p2, z1, z2 = (torch.randn(6, 8) for _ in range(4))
    on = "predictions and targets of 6 images, width 8"
    got = _scalar(_call(fn, p1, p2, z1, z2, on=on), "your BYOL loss")
    want = _byol_reference(p1, p2, z1, z2)
    same_view = (regression_loss(p1, z1) + regression_loss(p2, z2)).mean()
    if _close(got, same_view, rtol=1e-4) and not _close(got, want, rtol=1e-4):
        raise _Wrong("your loss compares each view's prediction with the target of the *same* view; it should "
                     "predict the other view's target (p1 with z2, p2 with z1): that is what makes it learn invariance.")
    if not _close(_scalar(_call(fn, 4 * p1, 4 * p2, 0.5 * z1, 0.5 * z2, on=on)), got, rtol=1e-3):
        raise _Wrong("your loss changes when the vectors get longer; BYOL's loss is 2 - 2 cos(p, z), the squared "
                     "distance of the L2-normalised vectors: normalise both first.")
    if _close(got, regression_loss(p1, z2).mean(), rtol=1e-4):
        raise _Wrong("your loss only uses view 1's prediction; BYOL's loss is symmetric: add the same term with the "
                     "views swapped (p2 against z1).")
    if _close(got, want / 2, rtol=1e-4):
        raise _Wrong("your loss is half the right value: BYOL adds the two directions (p1 with z2 plus p2 with z1), "
                     "it does not average them.")
    if not _close(got, want, rtol=1e-4):
        raise _Wrong(f"on {on} the loss should be {want.item():.4f}; yours is {got.item():.4f}.")
    p1, p2, z1, z2 = (torch.randn(2, 8, requires_grad=True) for _ in range(4))
    loss = _call(fn, p1, p2, z1, z2, on="a batch of two")
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise _Wrong("your loss carries no gradient to the predictions; keep it a torch tensor (no .item()).")
    loss.sum().backward()
    if z1.grad is not None and z1.grad.abs().sum() > 0:
        raise _Wrong("gradient flows into the targets z; they are constants for the loss (stop-gradient): use "
                     "z.detach(), or BYOL can cheat by moving the targets.")
    (g1,) = torch.autograd.grad(_byol_reference(p1, p2, z1, z2), (p1,))
    if not _close(p1.grad, g1, 1e-3, 1e-6):
        raise _Wrong("on a batch of two your loss has the right value but the wrong gradient for the predictions.")
    return "your symmetric BYOL loss matches the package's, values and gradients, with no gradient into the targets."


EXERCISES = {
    "ema_update": Exercise("BYOL's EMA update", "05_byol", check_ema_update),
    "byol_loss": Exercise("BYOL's symmetric loss", "05_byol", check_byol_loss),
}
