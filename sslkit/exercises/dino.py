"""The checks of notebook 10 DINO: the teacher's targets, the centre's update (the main one) and the
multi-crop loss (the harder one)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from sslkit.exercises._core import _Wrong, _call, _close, _scalar, _tensor, Exercise
from sslkit.methods.dino import dino_loss


def _logits(rows: int, K: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # a common part plus a per-image part, as a teacher's outputs are: the centre then matters
    return torch.randn(1, K, generator=g) * 2 + 0.5 * torch.randn(rows, K, generator=g)


def _teacher_probs_reference(t, c, temp):
    return F.softmax((t - c) / temp, dim=-1)


def check_teacher_probs(fn: Callable) -> str:
    # a temperature at which no softmax saturates, so that every mistake changes the numbers
    t, c, temp = _logits(6, 10, 0), 0.7 * _logits(1, 10, 1), 0.5
    on = "teacher logits of 6 crops over K = 10 dimensions, a centre and temperature 0.5"
    got = _tensor(_call(fn, t, c, temp, on=on), (6, 10), "your targets")
    want = _teacher_probs_reference(t, c, temp)
    if _close(got.sum(0), torch.ones(10), atol=1e-4) and not _close(got.sum(1), torch.ones(6), atol=1e-4):
        raise _Wrong("your targets sum to 1 over the batch (dim 0); each crop's target is a distribution over the K "
                     "dimensions: take the softmax over the last dimension (dim=-1).")
    if _close(got, F.softmax(t / temp, dim=-1)):
        raise _Wrong("your targets ignore the centre: subtract it from the logits before the softmax, (t - c) / temp.")
    if _close(got, F.softmax((t + c) / temp, dim=-1)):
        raise _Wrong("your targets add the centre; centring subtracts it, (t - c) / temp, so that no dimension the "
                     "teacher always favours can dominate.")
    if _close(got, F.softmax((t - c) * temp, dim=-1)):
        raise _Wrong("your targets multiply by the temperature; sharpening divides by it, (t - c) / temp: a low "
                     "temperature then makes the distribution peakier.")
    if _close(got, F.softmax(t / temp - c, dim=-1)):
        raise _Wrong("your targets subtract the centre after dividing by the temperature; the centre is in the "
                     "logits' units: (t - c) / temp.")
    if not _close(got, want, atol=1e-5):
        raise _Wrong(f"on {on} your targets differ from softmax((t - c) / temp) by up to "
                     f"{(got - want).abs().max().item():.3g}.")
    flat = _call(fn, t, c, 1e4, on="a very high temperature")
    if not _close(flat, torch.full((6, 10), 0.1), atol=1e-3):
        raise _Wrong("at a very high temperature the targets should become uniform (1/K each); yours do not, so the "
                     "temperature is not used as a divisor of the centred logits.")
    return "your targets are softmax((t - c) / temp) over the K dimensions, centred and sharpened as the package's."


def _center_reference(center, t, m):
    return m * center + (1 - m) * t.mean(0, keepdim=True)


def check_center_update(fn: Callable) -> str:
    K, m = 12, 0.9
    center, t = _logits(1, K, 2), _logits(8, K, 3)
    on = "a centre (1, 12), the teacher logits of 8 crops and momentum 0.9"
    c_in = center.clone()
    got = _call(fn, c_in, t.clone(), m, on=on)
    if got is None:
        raise _Wrong("your function returned nothing; return the new centre, a tensor of shape (1, K).")
    if isinstance(got, torch.Tensor) and got.shape == (K,):
        raise _Wrong("your centre has shape (K,); keep it (1, K), a row that broadcasts against the (B, K) logits "
                     "(mean(dim=0, keepdim=True)).")
    if isinstance(got, torch.Tensor) and got.shape == (8, 1):
        raise _Wrong("your centre has shape (8, 1), one number per crop: the mean must run over the batch (dim 0), "
                     "giving one value per output dimension.")
    got = _tensor(got, (1, K), "your new centre")
    want = _center_reference(center, t, m)
    if _close(got, _center_reference(center, t, 1 - m)):
        raise _Wrong("with momentum 0.9 the centre should keep 90% of its old value and take 10% of the batch mean; "
                     "yours does the opposite, so m and 1 - m are swapped.")
    if _close(got, m * center + (1 - m) * t.sum(0, keepdim=True)):
        raise _Wrong("your centre takes the sum of the logits over the batch; the paper's eq. 4 takes the mean, "
                     "(1/B) times the sum, so the centre does not grow with the batch size.")
    if _close(got, m * center + (1 - m) * (t - center).mean(0, keepdim=True)):
        raise _Wrong("your centre averages the centred logits (t - c); it is a running mean of the teacher's raw "
                     "logits t, before centring.")
    if _close(got, _center_reference(center, t[:4], m)):
        raise _Wrong("your centre uses only the first half of the rows; the teacher's logits of both global crops "
                     "(all rows) go into the batch mean.")
    if _close(got, t.mean(0, keepdim=True)):
        raise _Wrong("your centre is the batch mean alone; it is a moving average, m * c + (1 - m) * mean: the old "
                     "centre keeps weight m.")
    if not _close(got, want, atol=1e-5):
        raise _Wrong(f"on {on} the new centre should be m * c + (1 - m) * mean over the batch; yours differs by up to "
                     f"{(got - want).abs().max().item():.3g}.")
    g = t.clone().requires_grad_(True)
    out = _call(fn, center.clone(), g, m, on="teacher logits that carry a gradient")
    if isinstance(out, torch.Tensor) and (out.requires_grad or out.grad_fn is not None):
        raise _Wrong("your centre carries gradient history from the teacher's logits: compute it under "
                     "torch.no_grad() (or from t.detach()), it is a running statistic, never trained.")
    for mm in (0.0, 1.0):
        again = _tensor(_call(fn, center.clone(), t.clone(), mm, on=f"momentum {mm:g}"), (1, K), "your new centre")
        if not _close(again, _center_reference(center, t, mm), atol=1e-5):
            raise _Wrong(f"at momentum {mm:g} the centre should {'be the batch mean' if mm == 0 else 'not move'}; "
                         "yours does something else.")
    return ("your centre update is eq. 4, c <- m c + (1 - m) mean of the teacher's logits over the batch, without "
            "gradient, at momentum 0, 0.9 and 1, as the package's DINO.update_center.")


def check_dino_loss(fn: Callable) -> str:
    B, K, V = 3, 16, 5
    s, t, c = _logits(V * B, K, 4), _logits(2 * B, K, 5), 0.5 * _logits(1, K, 6)
    tps, tpt = 0.1, 0.04
    on = f"{V} crops (2 global + 3 local) of {B} images, K = {K}"
    got = _scalar(_call(fn, s, t, c, tps, tpt, on=on), "your DINO loss")
    want = dino_loss(s, t, c, tps, tpt)

    def variant(skip_same=True, centre=True, tps_=tps, pairs_sum=False, globals_only=False, no_log=False):
        q = F.softmax((t - (c if centre else 0)) / tpt, dim=-1).chunk(2)
        crops = s.chunk(V)[:2] if globals_only else s.chunk(V)
        logp = [F.softmax(x / tps_, -1) if no_log else F.log_softmax(x / tps_, -1) for x in crops]
        terms = [(-qi * lp).sum(-1).mean() for i, qi in enumerate(q) for v, lp in enumerate(logp) if not (skip_same and v == i)]
        return sum(terms) if pairs_sum else sum(terms) / len(terms)

    mistakes = [      # (the variant a common mistake computes, what to say about it), first match wins
        ({"skip_same": False}, "your loss also pairs each global crop with itself; the paper's eq. 3 skips x' = x: a "
                               "teacher crop is compared with every *other* student crop."),
        ({"globals_only": True}, "your loss compares the teacher's crops with the student's two global crops only; "
                                 "the student's local crops (rows 2B onward) are what ask it to match the whole image "
                                 "from a part."),
        ({"centre": False}, "your loss does not centre the teacher: its targets are softmax((t - c) / teacher_temp)."),
        ({"tps_": 1.0}, "your student's softmax has no temperature; it is log_softmax(s / student_temp)."),
        ({"pairs_sum": True}, "your loss adds the pairs up; main_dino.py's DINOLoss averages over them, so the loss "
                              "does not grow with the number of crops."),
        ({"no_log": True}, "your loss multiplies the teacher's targets by the student's probabilities; the "
                           "cross-entropy uses their logarithm, -sum(P_t * log P_s): use F.log_softmax."),
    ]
    for kwargs, why in mistakes:
        if _close(got, variant(**kwargs), rtol=1e-4):
            raise _Wrong(why)
    if not _close(got, want, rtol=1e-4):
        raise _Wrong(f"on {on} the loss should be {want.item():.4f}; yours is {got.item():.4f}.")
    s2, t2 = s.clone().requires_grad_(True), t.clone().requires_grad_(True)
    loss = _call(fn, s2, t2, c, tps, tpt, on="logits that carry a gradient")
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise _Wrong("your loss carries no gradient to the student; keep it a torch tensor (no .item(), no detach of s).")
    loss.sum().backward()
    if t2.grad is not None and t2.grad.abs().sum() > 0:
        raise _Wrong("gradient flows into the teacher's logits; the teacher is trained by the moving average only: "
                     "detach its targets (stop-gradient).")
    return (f"your loss matches the package's dino_loss on {V} crops, every teacher crop with every other student "
            "crop, with no gradient into the teacher.")


EXERCISES = {
    "teacher_probs": Exercise("DINO's centred and sharpened targets", "10_dino", check_teacher_probs),
    "center_update": Exercise("DINO's centre update", "10_dino", check_center_update),
    "dino_loss": Exercise("DINO's multi-crop loss", "10_dino", check_dino_loss),
}
