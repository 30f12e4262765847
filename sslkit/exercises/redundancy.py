"""The checks of notebook 09 redundancy reduction (Barlow Twins and VICReg)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from sslkit.exercises._core import Exercise, _call, _close, _scalar, _tensor, _Wrong
from sslkit.methods.barlowtwins import barlow_twins_terms, cross_correlation, off_diagonal
from sslkit.methods.vicreg import variance_term


def _views(n: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two correlated views, every unit with its own scale and offset (so that skipping the
    standardisation, or doing it along the wrong axis, shows)."""
    z1 = torch.randn(n, d) * torch.linspace(0.5, 3.0, d) + 2 * torch.randn(d)
    z2 = 0.8 * z1 + 0.6 * torch.randn(n, d) * torch.linspace(0.5, 3.0, d) - torch.randn(d)
    return z1, z2


def check_cross_correlation(fn: Callable) -> str:
    N, D = 64, 6
    z1, z2 = _views(N, D)
    on = f"two views of {N} images, {D} units each"
    got = _call(fn, z1, z2, on=on)
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (N, N):
        raise _Wrong(f"your matrix is ({N}, {N}), one entry per pair of images, a similarity matrix; the "
                     f"cross-correlation pairs *units* over the batch, ({D}, {D}): z1_norm.T @ z2_norm / N.")
    got = _tensor(got, (D, D), "your matrix")
    want = cross_correlation(z1, z2)
    if not torch.isfinite(got).all():
        raise _Wrong("your matrix holds nan or inf on ordinary embeddings: check the division by the standard "
                     "deviation.")
    if _close(got, want.T, rtol=1e-3) and not _close(got, want, rtol=1e-3):
        raise _Wrong("your matrix is the transpose of the right one: entry (i, j) pairs unit i of view 1 with unit "
                     "j of view 2, so it is z1_norm.T @ z2_norm, not z2_norm.T @ z1_norm.")
    if _close(got, want * N, rtol=1e-3):
        raise _Wrong(f"your matrix is {N} times too large: sum over the batch, then divide by the batch size N "
                     "(a correlation lies between -1 and 1).")
    if _close(got, (z1 - z1.mean(0)).T @ (z2 - z2.mean(0)) / N, rtol=1e-3) or _close(got, z1.T @ z2 / N, rtol=1e-3):
        raise _Wrong("your matrix is not standardised: divide each unit by its standard deviation over the batch "
                     "too, so that every entry is a correlation between -1 and 1 (the diagonal can then aim at 1).")
    if _close(got, (z1 / z1.std(0)).T @ (z2 / z2.std(0)) / N, rtol=1e-3) or \
            _close(got, (z1 / z1.std(0, unbiased=False)).T @ (z2 / z2.std(0, unbiased=False)) / N, rtol=1e-3):
        raise _Wrong("you divided each unit by its standard deviation but did not subtract its mean over the batch "
                     "first: standardise with (z - z.mean(0)) / z.std(0).")
    rows = lambda z: (z - z.mean(1, keepdim=True)) / z.std(1, keepdim=True)
    if _close(got, rows(z1).T @ rows(z2) / N, rtol=1e-3) or _close(got, F.normalize(z1, dim=1).T @ F.normalize(z2, dim=1) / N,
                                                                      rtol=1e-3):
        raise _Wrong("you normalised each image (along dim=1, over its units) instead of each unit over the batch "
                     "(along dim=0): Barlow Twins standardises every unit with the batch's mean and std.")
    unbiased = _close(got, want * (N - 1) / N, rtol=1e-3)
    if not (unbiased or _close(got, want, rtol=1e-3)):
        raise _Wrong(f"on {on} the matrix should be, in its first row, {[round(v, 3) for v in want[0].tolist()]}; "
                     f"yours is {[round(v, 3) for v in got[0].tolist()]}.")
    # a unit that is constant over the batch (the start of a collapse) must not break the matrix
    z1c = z1.clone()
    z1c[:, 0] = 3.0
    flat = _call(fn, z1c, z2, on="views where one unit is constant over the batch")
    if not torch.isfinite(torch.as_tensor(flat)).all():
        raise _Wrong("when one unit is constant over the batch (its std is 0), your matrix holds nan: add a small "
                     "eps to the variance under the square root, as BatchNorm does (1e-5), so the unit counts as 0.")
    how = ("with the unbiased std of the paper's Algorithm 1 (the package uses main.py's BatchNorm, the biased one: "
           "a factor (N-1)/N)" if unbiased else "with the biased std of main.py's BatchNorm, as the package")
    return f"your cross-correlation matrix matches the package's, {how}, and stays finite for a constant unit."


def check_barlow_twins_loss(fn: Callable) -> str:
    torch.manual_seed(0)
    D, lambd = 5, 0.05
    c = torch.tanh(torch.randn(D, D)) * 0.8 + 0.1 * torch.eye(D)
    on = f"a {D} x {D} matrix, lambda {lambd}"
    got = _scalar(_call(fn, c, lambd, on=on), "your loss")
    on_diag, off_diag = barlow_twins_terms(c)
    want = on_diag + lambd * off_diag
    diag_sq = torch.diagonal(c).pow(2).sum()
    if _close(got, on_diag + off_diag, rtol=1e-4):
        raise _Wrong("your loss forgets the off-diagonal weight: the redundancy-reduction term (the off-diagonal "
                     "squares) is multiplied by lambda, the invariance term is not.")
    if _close(got, lambd * (on_diag + off_diag), rtol=1e-4):
        raise _Wrong("your loss multiplies the diagonal by lambda too: only the off-diagonal squares get lambda, "
                     "the invariance term sum_i (1 - C_ii)^2 has weight 1.")
    if _close(got, lambd * on_diag + off_diag, rtol=1e-4):
        raise _Wrong("your lambda weighs the diagonal instead of the off-diagonal entries: swap them, "
                     "sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2.")
    if _close(got, on_diag + lambd * (off_diag + diag_sq), rtol=1e-4):
        raise _Wrong("your redundancy term also counts the diagonal entries: sum only the squares of C_ij with "
                     "i != j (the off-diagonal ones).")
    if _close(got, diag_sq + lambd * off_diag, rtol=1e-4):
        raise _Wrong("your invariance term pulls the diagonal to 0: it should pull each C_ii to 1, "
                     "sum_i (1 - C_ii)^2.")
    if _close(got, (torch.diagonal(c) - 1).pow(2).mean() + lambd * off_diagonal(c).pow(2).mean(), rtol=1e-4) or \
            _close(got, want / D ** 2, rtol=1e-4) or _close(got, want / D, rtol=1e-4):
        raise _Wrong("your loss averages where it should sum: both terms are sums over the entries (the paper's "
                     "Algorithm 1 ends in c_diff.sum()), so the loss grows with the width D.")
    if not _close(got, want, rtol=1e-4):
        raise _Wrong(f"on {on} the loss should be {want.item():.4f}; yours is {got.item():.4f}.")
    if not _close(_scalar(_call(fn, torch.eye(D), lambd, on="the identity")), torch.tensor(0.0)):
        raise _Wrong("on the identity matrix the loss should be 0, the perfect embedding; yours is not.")
    c = c.clone().requires_grad_()
    loss = _call(fn, c, lambd, on="a matrix that needs a gradient")
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise _Wrong("your loss carries no gradient to the matrix; keep it a torch tensor (no .item(), no numpy).")
    (g,) = torch.autograd.grad(loss, c)
    cw = c.detach().clone().requires_grad_()
    on_w, off_w = barlow_twins_terms(cw)
    (gw,) = torch.autograd.grad(on_w + lambd * off_w, cw)
    if not _close(g, gw, rtol=1e-4, atol=1e-6):
        raise _Wrong("your loss has the right value but the wrong gradient (an in-place change of c, or a detach?).")
    return (f"your loss matches the package's sum_i (1 - C_ii)^2 + lambda sum_(i != j) C_ij^2, values and gradients, "
            f"and is 0 on the identity.")


def check_variance_term(fn: Callable) -> str:
    N, D = 16, 8
    z = torch.randn(N, D) * torch.linspace(0.1, 2.0, D) + 3.0     # some units spread less than 1, some more
    on = f"{N} embeddings of {D} units, spreads from 0.1 to 2"
    got = _scalar(_call(fn, z, 1.0, 1e-4, on=on), "your variance term")
    want = variance_term(z)
    std_b = torch.sqrt(z.var(0, unbiased=False) + 1e-4)
    if _close(got, F.relu(1 - z.var(0)).mean(), rtol=1e-4) or _close(got, F.relu(1 - z.var(0) - 1e-4).mean(), rtol=1e-4):
        raise _Wrong("your hinge is on the variance; VICReg's is on the standard deviation, sqrt(Var + eps): near a "
                     "collapse the variance's gradient vanishes and the embeddings collapse (the paper's section 4.1).")
    if _close(got, F.relu(1 - torch.sqrt(z.var(1) + 1e-4)).mean(), rtol=1e-4):
        raise _Wrong("you took the standard deviation of each embedding over its units (dim=1); the variance term "
                     "wants each unit's spread over the batch (dim=0).")
    if _close(got, (1 - torch.sqrt(z.var(0) + 1e-4)).mean(), rtol=1e-4):
        raise _Wrong("your term has no hinge: it goes negative and rewards spreads above gamma without bound; "
                     "take max(0, gamma - std) per unit (F.relu) before the mean.")
    if _close(got, want * D, rtol=1e-4):
        raise _Wrong("your term sums over the units; it is the mean over the D units (torch.mean), so it does not "
                     "grow with the width.")
    if _close(got, F.relu(1 - std_b).mean(), rtol=1e-4):
        raise _Wrong("you used the biased variance (unbiased=False); main_vicreg.py uses torch's default, the "
                     "unbiased one (divided by N - 1).")
    no_eps = F.relu(1 - z.std(0)).mean()
    if _close(got, no_eps, rtol=1e-6, atol=1e-8) and not _close(got, want, rtol=1e-6, atol=1e-8):
        raise _Wrong("your standard deviation has no eps: VICReg's is sqrt(Var + eps) (eps = 1e-4 in main_vicreg.py), "
                     "which keeps the gradient finite when a unit stops varying (at std 0 the square root's slope is "
                     "infinite).")
    if not _close(got, want, rtol=1e-4):
        raise _Wrong(f"on {on} the term should be {want.item():.4f}; yours is {got.item():.4f}.")
    if not _close(_scalar(_call(fn, z, 0.5, 1e-4, on="gamma 0.5")), variance_term(z, gamma=0.5), rtol=1e-4):
        raise _Wrong("right at gamma 1 but not at gamma 0.5: use the gamma argument, not a fixed 1.")
    flat = torch.full((N, D), 2.0, requires_grad=True)
    value = _call(fn, flat, 1.0, 1e-4, on="a collapsed batch (every embedding the same)")
    if not isinstance(value, torch.Tensor) or not value.requires_grad:
        raise _Wrong("your term carries no gradient; keep it a torch tensor (no .item(), no numpy).")
    if _close(_scalar(value), torch.tensor(1.0), rtol=1e-6, atol=1e-7):
        raise _Wrong("on a collapsed batch your term is exactly 1 and its gradient is nan: the standard deviation "
                     "needs eps under the square root, sqrt(Var + eps), or the square root's slope at 0 is infinite.")
    (g,) = torch.autograd.grad(value, flat)
    if not torch.isfinite(g).all():
        raise _Wrong("on a collapsed batch your term's gradient is nan: put eps under the square root, "
                     "sqrt(Var + eps).")
    if not _close(_scalar(value.detach()), variance_term(flat.detach()), rtol=1e-5):
        raise _Wrong(f"on a collapsed batch the term should be 1 - sqrt(eps) = {variance_term(flat.detach()).item():.4f}; "
                     f"yours is {float(value):.4f}: check where eps goes (under the square root, with the variance).")
    return ("your variance term matches the package's mean_j max(0, gamma - sqrt(Var(z_j) + eps)), at two gammas, "
            "and keeps a finite gradient on a collapsed batch.")


EXERCISES = {
    "cross_correlation": Exercise("Barlow Twins' cross-correlation matrix", "09_redundancy_reduction",
                                  check_cross_correlation),
    "barlow_twins_loss": Exercise("the Barlow Twins loss", "09_redundancy_reduction", check_barlow_twins_loss),
    "variance_term": Exercise("VICReg's variance term", "09_redundancy_reduction", check_variance_term),
}
