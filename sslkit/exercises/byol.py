"""The checks of notebook 05 BYOL."""

from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn as nn

from sslkit.exercises._core import _Wrong, _call, _close, _scalar, Exercise
from sslkit.methods.byol import momentum_at, regression_loss


def _nets(seed: int):
    """A small online network and its target (a deepcopy without gradient, as BYOL builds it), the
    target moved away from the online weights so that an update shows."""
    torch.manual_seed(seed)
    online = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))
    target = copy.deepcopy(online).requires_grad_(False)
    with torch.no_grad():
        for t in target.parameters():
            t.copy_(torch.randn_like(t))
    return online, target


def check_ema_update(fn: Callable) -> str:
    m = 0.99
    online, target = _nets(0)
    before = [t.detach().clone() for t in target.parameters()]
    want = [m * t + (1 - m) * o.detach() for t, o in zip(before, online.parameters())]
    target_list, online_list = list(target.parameters()), list(online.parameters())
    passed = list(target_list)
    on = "the parameters of a small network and of its target copy, momentum 0.99"
    _call(fn, target_list, online_list, m, on=on)
    now = [t.detach() for t in target.parameters()]
    if all(torch.equal(a, b) for a, b in zip(now, before)):
        if any(a is not b for a, b in zip(target_list, passed)) and \
                all(_close(a.detach(), w) for a, w in zip(target_list, want)):
            raise _Wrong("your update put new tensors into the list (target[i] = ...), so the list holds the right "
                         "numbers but the target network's own weights did not move: update each tensor in place, "
                         "t.mul_(m).add_(o, alpha=1 - m) or t.copy_(...).")
        raise _Wrong("the target network's weights did not change: update each tensor in place (t.mul_(m).add_(...) "
                     "or t.copy_(...)); assigning t = ... only rebinds a name.")
    if any(t.requires_grad or t.grad_fn is not None for t in target.parameters()):
        raise _Wrong("your update recorded gradient history in the target's weights (they now require grad): "
                     "wrap it in torch.no_grad(), the target is never trained by gradients.")
    swapped = [(1 - m) * t + m * o.detach() for t, o in zip(before, online.parameters())]
    if all(_close(a, s) for a, s in zip(now, swapped)):
        raise _Wrong("with momentum 0.99 the target should move only 1% of the way towards the online weights; "
                     "yours moves 99%, so momentum and 1 - momentum are swapped.")
    if not all(_close(a, w) for a, w in zip(now, want)):
        raise _Wrong("the target's weights moved, but not to m * target + (1 - m) * online: check the rule, "
                     "each target tensor with its own online tensor.")
    for m in (0.0, 1.0):
        online, target = _nets(1)
        before = [t.detach().clone() for t in target.parameters()]
        _call(fn, list(target.parameters()), list(online.parameters()), m, on=f"momentum {m}")
        want = [o.detach() for o in online.parameters()] if m == 0 else before
        if not all(_close(t.detach(), w) for t, w in zip(target.parameters(), want)):
            raise _Wrong(f"at momentum {m:g} the target should {'become a copy of the online weights' if m == 0 else 'not move at all'}; "
                         "yours does something else.")
    return ("your EMA update moves a real target network's weights in place, without gradient history, as the "
            "package's ema_update does, at momentum 0, 0.99 and 1.")


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


def _number(value, what: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise _Wrong(f"{what} should be one number (a float), but your function returned a {type(value).__name__}.")


def check_momentum_schedule(fn: Callable) -> str:
    K = 1000
    ks = (0, 100, 250, 500, 750, 900, 1000)

    def run(base):
        return [_number(_call(fn, k, K, base, on=f"step {k} of {K}, base momentum {base}"),
                        f"at step {k} of {K} the momentum") for k in ks]

    base = 0.99
    got = run(base)
    want = [momentum_at(k / K, base) for k in ks]
    ok = lambda a, b: all(abs(x - y) < 1e-6 for x, y in zip(a, b))
    if ok(got, want):
        for other in (0.9, 0.996):
            if not ok(run(other), [momentum_at(k / K, other) for k in ks]):
                raise _Wrong(f"right at base momentum 0.99 but not at {other}: use the base_momentum argument "
                             "instead of a fixed number.")
        return ("your schedule matches the paper's, 1 - (1 - base) (cos(pi k / K) + 1) / 2, from the base momentum "
                "at step 0 to 1 at the last step, for bases 0.9, 0.99 and 0.996.")
    if abs(got[0] - 1.0) < 1e-6 and abs(got[-1] - base) < 1e-6:
        raise _Wrong("yours runs backwards, from 1 at step 0 down to the base momentum at the end; the target should "
                     "start at the base and slow to a stop: the factor (cos(pi k / K) + 1) / 2 is 1 at k = 0 and 0 at k = K.")
    if abs(got[0] - base) > 1e-6:
        raise _Wrong(f"at step 0 the momentum should be the base momentum {base}; yours gives {got[0]:.4f}: check "
                     "that the factor (cos(pi k / K) + 1) / 2 is 1 at k = 0 (the + 1 and the / 2).")
    if got[-1] > 1.0 + 1e-6:
        raise _Wrong(f"at the last step yours gives {got[-1]:.4f}, above 1, which would push the target away from the "
                     "online network: the factor (cos(pi k / K) + 1) / 2 runs from 1 to 0, cos alone runs to -1 "
                     "(the + 1 and the / 2).")
    if abs(got[-1] - 1.0) > 1e-6:
        raise _Wrong(f"at the last step (k = K) the momentum should reach 1, the target then stops; yours gives "
                     f"{got[-1]:.4f}: the cosine's argument is pi * k / K, in radians (math.pi, math.cos).")
    linear = [1 - (1 - base) * (1 - k / K) for k in ks]
    if ok(got, linear):
        raise _Wrong("yours rises from the base to 1 in a straight line; the paper's rises along a half cosine, "
                     "1 - (1 - base) (cos(pi k / K) + 1) / 2: slowly at first, fastest in the middle, slowly at the end.")
    i = next(i for i, (a, b) in enumerate(zip(got, want)) if abs(a - b) >= 1e-6)
    raise _Wrong(f"it starts at the base and ends at 1, but at step {ks[i]} of {K} (base 0.99) the momentum should be "
                 f"{want[i]:.6f}; yours is {got[i]:.6f}: compare with 1 - (1 - base) (cos(pi k / K) + 1) / 2.")


EXERCISES = {
    "byol_loss": Exercise("BYOL's symmetric loss", "05_byol", check_byol_loss),
    "ema_update": Exercise("BYOL's EMA update", "05_byol", check_ema_update),
    "momentum_schedule": Exercise("BYOL's momentum schedule", "05_byol", check_momentum_schedule),
}
