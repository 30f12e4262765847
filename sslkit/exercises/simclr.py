"""The checks of notebook 03 SimCLR: cosine similarity, NT-Xent, and NT-Xent with V views."""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from sslkit.exercises._core import _call, _close, Exercise, _scalar, _tensor, _Wrong
from sslkit.losses import nt_xent


def check_cosine_similarity(fn: Callable) -> str:
    z = torch.randn(6, 5) * 3
    sim = _tensor(_call(fn, z, on="6 embeddings of width 5"), (6, 6), "the similarity matrix of 6 embeddings")
    ref = F.normalize(z, dim=1) @ F.normalize(z, dim=1).T
    if _close(sim, z @ z.T):
        raise _Wrong("your matrix holds plain dot products (some are far above 1); cosine similarity divides by "
                     "both lengths: normalise each row of z to unit length first.")
    if _close(sim, F.normalize(z, dim=0) @ F.normalize(z, dim=0).T):
        raise _Wrong("you normalised the columns of z; normalise each embedding (each row, dim=1) to unit length.")
    if not _close(sim, ref):
        raise _Wrong(f"entry [0, 1] should be the cosine of embeddings 0 and 1, {ref[0, 1].item():.4f}; "
                     f"yours is {sim[0, 1].item():.4f}.")
    return "your similarity matrix matches F.normalize(z) @ F.normalize(z).T: ones on the diagonal, cosines elsewhere."


def _nt_xent_call(fn, z1, z2, t, on):
    return _scalar(_call(fn, z1, z2, t, on=on), "your NT-Xent")


def check_nt_xent(fn: Callable) -> str:
    # identical views at a falling temperature: the positive is the best candidate, so the loss goes to 0;
    # with the diagonal left in, the anchor itself ties with the positive and the loss goes to log 2
    z = F.normalize(torch.randn(2, 16), dim=1)
    cold = _nt_xent_call(fn, z, z.clone(), 0.05, "two images whose two views are identical, temperature 0.05")
    if not torch.isfinite(cold):
        raise _Wrong(f"on two images with identical views at temperature 0.05 your loss is {cold.item()}; it should "
                     "approach 0: exp(similarity / temperature) overflows, so let F.cross_entropy or torch.logsumexp "
                     "do the exponentials (and mask the diagonal with -inf before them, not after).")
    for fixed in (1.0, 0.5):      # before the diagonal test: such a loss can land near log 2 by chance
        if _close(cold, nt_xent(z, z.clone(), fixed), rtol=1e-3):
            raise _Wrong(f"on two images with identical views your loss at temperature 0.05 equals the right loss at "
                         f"temperature {fixed}, so it ignores the temperature it is given: divide the cosine "
                         "similarities by the temperature argument.")
    if abs(cold.item() - math.log(2)) < 0.05:
        raise _Wrong("on two images whose two views are identical, the loss should approach 0 as the temperature "
                     f"falls; yours approaches log 2 = 0.69 ({cold.item():.2f} at 0.05), so each view is probably "
                     "counted as its own negative: exclude the diagonal of the similarity matrix.")
    z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    on = "8 pairs of random embeddings of width 16 at temperature 0.5"
    got, want = _nt_xent_call(fn, z1, z2, 0.5, on), nt_xent(z1, z2, 0.5)
    scaled = _nt_xent_call(fn, 10 * z1, 3 * z2, 0.5, on.replace("random", "rescaled random"))
    if not _close(scaled, got, rtol=1e-3):
        raise _Wrong(f"your loss changes when the embeddings are made longer ({got.item():.3f} -> {scaled.item():.3f}); "
                     "NT-Xent uses cosine similarity, which ignores length: normalise z first.")
    swapped = _nt_xent_call(fn, z2, z1, 0.5, on)
    if not _close(swapped, got, rtol=1e-3):
        raise _Wrong(f"your loss changes when the two views swap roles ({got.item():.3f} -> {swapped.item():.3f}); "
                     "every one of the 2N views is an anchor, so concatenate both views and average over all 2N.")
    if _close(got, want * 16, rtol=1e-3) or _close(got, want * 8, rtol=1e-3):
        raise _Wrong(f"your loss is {got.item() / want.item():.0f} times the right value {want.item():.4f}: "
                     "take the mean over the anchors, not the sum.")
    if _close(got, nt_xent(z1, z2, 2.0), rtol=1e-3):
        raise _Wrong("your loss at temperature 0.5 equals the right loss at temperature 2: divide the "
                     "similarities by the temperature, do not multiply.")
    if _close(got, nt_xent(z1, z2, 1.0), rtol=1e-3) and not _close(want, nt_xent(z1, z2, 1.0), rtol=1e-3):
        raise _Wrong("your loss at temperature 0.5 equals the right loss at temperature 1, so it ignores the "
                     "temperature: divide the cosine similarities by the temperature argument.")
    if not _close(got, want, rtol=1e-4):
        raise _Wrong(f"on {on} the loss should be {want.item():.4f}; yours is {got.item():.4f} (check which index "
                     "is each anchor's positive: view i pairs with view i + N).")
    for t in (0.1, 1.0):
        a, b = _nt_xent_call(fn, z1, z2, t, on), nt_xent(z1, z2, t)
        if _close(a, got, rtol=1e-4) and not _close(b, want, rtol=1e-3):
            raise _Wrong(f"your loss is the same at temperature {t} as at 0.5, so it uses a fixed temperature: "
                         "divide by the temperature argument the function is given.")
        if not _close(a, b, rtol=1e-4):
            raise _Wrong(f"at temperature {t} the loss should be {b.item():.4f}; yours is {a.item():.4f}.")
    # gradients, on a batch of two as well
    for n in (8, 2):
        y1, y2 = torch.randn(n, 16, requires_grad=True), torch.randn(n, 16, requires_grad=True)
        loss = _call(fn, y1, y2, 0.5, on=f"a batch of {n}")
        if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
            raise _Wrong("your loss carries no gradient, so nothing could be trained with it: keep it a torch "
                         "tensor (no .item(), .detach() or NumPy inside).")
        g1, g2 = torch.autograd.grad(loss.sum(), (y1, y2))
        r1, r2 = torch.autograd.grad(nt_xent(y1, y2, 0.5), (y1, y2))
        if not (_close(g1, r1, 1e-3, 1e-6) and _close(g2, r2, 1e-3, 1e-6)):
            raise _Wrong(f"on a batch of {n} your loss has the right value but the wrong gradient: something is "
                         "computed outside autograd's view (an in-place edit or a detached piece).")
    return ("your NT-Xent matches sslkit.losses.nt_xent in value and gradient at three temperatures, on a batch "
            "of two, and goes to 0 on identical views as it should.")


def _multiview_log_probs(z: torch.Tensor, temperature: float, keep_self: bool = False) -> tuple:
    """z (V, N, D) -> the (VN, VN) log-softmax over each anchor's candidates (itself left out unless
    ``keep_self``) and the (VN, VN) mask of its positives (the other views of its image)."""
    V, N, _ = z.shape
    flat = F.normalize(z.reshape(V * N, -1).double(), dim=1)
    sim = flat @ flat.T / temperature
    self_mask = torch.eye(V * N, dtype=torch.bool)
    if not keep_self:
        sim = sim.masked_fill(self_mask, float("-inf"))
    image = torch.arange(N).repeat(V)
    return sim.log_softmax(1), (image[:, None] == image[None, :]) & ~self_mask


def multiview_nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent with V views (SupContrast's losses.py, SupConLoss without labels): every one of the VN
    embeddings is an anchor, its positives the V - 1 other views of its image, its candidates the VN - 1
    others; the loss is the mean over anchors and their positives of -log p(positive)."""
    log_p, positive = _multiview_log_probs(z, temperature)
    return -log_p[positive].mean()


def _multiview_variants(z: torch.Tensor, t: float) -> dict[str, torch.Tensor]:
    """The typical wrong answers, each with the sentence that names its mistake."""
    V, N, _ = z.shape
    log_p, positive = _multiview_log_probs(z, t)
    per_anchor = positive.sum(1)
    image = torch.arange(N).repeat(V)
    same_view = (torch.arange(V).repeat_interleave(N)[:, None] == torch.arange(V).repeat_interleave(N)[None, :]) \
        & ~torch.eye(V * N, dtype=torch.bool)
    flat = F.normalize(z.reshape(V * N, -1).double(), dim=1)
    sim = (flat @ flat.T / t).masked_fill(torch.eye(V * N, dtype=torch.bool), float("-inf"))
    # one softmax per positive pair, the anchor's other positives left out of its denominator
    alone = []
    for a in range(V * N):
        for p in positive[a].nonzero().flatten().tolist():
            keep = ~positive[a].clone()
            keep[p] = True
            alone.append(-(sim[a, p] - sim[a][keep].logsumexp(0)))
    keep_self, _ = _multiview_log_probs(z, t, keep_self=True)
    return {
        f"you add up the V - 1 = {V - 1} positives' terms of each anchor; average them (divide by V - 1), so that "
        "the loss stays on the scale of the two-view NT-Xent":
            -(log_p.masked_fill(~positive, 0).sum(1)).mean(),
        f"you add up the {V * N} anchors' losses; take the mean over the anchors, not the sum":
            -(log_p.masked_fill(~positive, 0).sum(1) / per_anchor).sum(),
        "you average the positives' probabilities inside the log (-log of the mean, SupCon's L_in); average the "
        "log-probabilities instead, -log p for each positive, then the mean (L_out, what SupContrast's losses.py "
        "computes)":
            -(log_p.masked_fill(~positive, float("-inf")).logsumexp(1) - per_anchor.double().log()).mean(),
        "each of your positive pairs has its own softmax with the anchor's other positives taken out of the "
        "denominator; keep every one of the VN - 1 other embeddings as a candidate, positives included":
            torch.stack(alone).mean(),
        "your positives are the other images of the same view; they should be the other views of the same "
        "image, z[w, i] for every w != v":
            -log_p[same_view].mean(),
        "each anchor counts itself as a candidate: exclude the diagonal of the (VN, VN) similarity matrix "
        "(fill it with -inf)":
            -keep_self[positive].mean(),
        "you use only the first two views; every one of the V views is an anchor and a positive of the others":
            nt_xent(z[0], z[1], t),
        "you average the two-view NT-Xent over pairs of views, so each softmax sees only the 2N - 1 embeddings of "
        "its pair; put all V views in one (VN, VN) similarity matrix, so that each anchor's candidates are all "
        "VN - 1 others":
            torch.stack([nt_xent(z[a], z[b], t) for a in range(V) for b in range(a + 1, V)]).mean(),
        **({f"your loss equals the right one at temperature {fixed:g}, not at the {t:g} it was given, so it "
            "ignores the temperature: divide the cosine similarities by the temperature argument":
            multiview_nt_xent(z, fixed) for fixed in (0.5, 1.0) if fixed != t}),
    }


def check_multiview_nt_xent(fn: Callable) -> str:
    def call(z, t, on):
        return _scalar(_call(fn, z, t, on=on), "your loss")

    z = torch.randn(2, 8, 16)
    on = "2 views of 8 images, width 16, temperature 0.5"
    got = call(z, 0.5, on)
    if not _close(call(z * torch.tensor([3.0, 0.2]).view(2, 1, 1), 0.5, on), got, rtol=1e-3):
        raise _Wrong("your loss changes when the embeddings are made longer; the similarity is the cosine, which "
                     "ignores length: normalise every embedding first.")
    two = nt_xent(z[0], z[1], 0.5)
    if not _close(got, two, rtol=1e-4):
        if _close(got, nt_xent(z[0], z[1], 2.0), rtol=1e-4):
            raise _Wrong("with two views your loss at temperature 0.5 equals NT-Xent at temperature 2: divide the "
                         "similarities by the temperature, do not multiply.")
        if _close(got, nt_xent(z[0], z[1], 1.0), rtol=1e-4):
            raise _Wrong("with two views your loss at temperature 0.5 equals NT-Xent at temperature 1, so it "
                         "ignores the temperature: divide the cosine similarities by the temperature argument.")
        for sentence, value in _multiview_variants(z, 0.5).items():
            if _close(got, value, rtol=1e-4):
                raise _Wrong(f"with two views, {sentence}.")
        raise _Wrong(f"with two views the loss should equal the two-view NT-Xent, {two.item():.4f}; yours is "
                     f"{got.item():.4f}.")
    for V, N, t in [(3, 6, 0.5), (4, 3, 0.2), (5, 2, 1.0)]:
        z = torch.randn(V, N, 16)
        on = f"{V} views of {N} images at temperature {t}"
        got, want = call(z, t, on), multiview_nt_xent(z, t)
        if _close(got, want, rtol=1e-4):
            continue
        for sentence, value in _multiview_variants(z, t).items():
            if _close(got, value, rtol=1e-4):
                raise _Wrong(f"on {on} {sentence}.")
        raise _Wrong(f"your loss is right for two views but not on {on}: it should be {want.item():.4f}, yours is "
                     f"{got.item():.4f}; each of the {V * N} anchors has {V - 1} positives, each -log p over the "
                     f"{V * N - 1} other embeddings, averaged over positives and anchors.")
    z = torch.randn(3, 4, 8, requires_grad=True)
    loss = _call(fn, z, 0.5, on="3 views of 4 images with a gradient")
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise _Wrong("your loss carries no gradient, so nothing could be trained with it: keep it a torch tensor "
                     "(no .item(), .detach() or NumPy inside).")
    grad = torch.autograd.grad(loss.sum(), z)[0]
    ref = torch.autograd.grad(multiview_nt_xent(z, 0.5), z)[0]
    if not _close(grad, ref, 1e-3, 1e-6):
        raise _Wrong("your loss has the right value but the wrong gradient: something is computed outside "
                     "autograd's view (an in-place edit of z or a detached piece).")
    return ("your loss equals NT-Xent for two views and the V-view loss (every other view of an image a positive, "
            "all VN - 1 others as candidates) for 3, 4 and 5 views, in value and gradient.")


EXERCISES = {
    "cosine_similarity": Exercise("the cosine-similarity matrix", "03_simclr", check_cosine_similarity),
    "nt_xent": Exercise("NT-Xent", "03_simclr", check_nt_xent),
    "multiview_nt_xent": Exercise("NT-Xent with V views", "03_simclr", check_multiview_nt_xent),
}
