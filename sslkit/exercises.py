"""Checks for the notebooks' coding exercises: one sentence that says right, or what is wrong.

Each exercise asks a student to write one piece the notebook has just explained (the rotation
batch, NT-Xent, BYOL's EMA update, MAE's masking, ...). ``check(name, fn)`` runs the student's
``fn`` beside the package's own function on seeded random inputs, edge cases included (a batch of
two, identical views, an odd number of hidden patches), and prints one sentence: on success that it
is right and what was compared; on failure the *first* thing that is wrong, said concretely and
with the likely cause. A wrong answer never shows a traceback: an exception raised by the student's
code is described in one sentence, and a function that still raises ``NotImplementedError`` (the
student notebooks' placeholder) is "not done yet", so the notebook runs on (its later cells use the
package's functions, never the student's).

The diagnoses come before the plain value comparison on purpose: "yours approaches log 2, so each
view is counted as its own negative" teaches more than "the values differ".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import torch
import torch.nn.functional as F

from sslkit.compare import alignment as _alignment, uniformity as _uniformity
from sslkit.losses import info_nce, nt_xent
from sslkit.methods.byol import regression_loss
from sslkit.methods.ema import ema_update
from sslkit.methods.jigsaw import greedy_permutations, min_hamming_distance
from sslkit.methods.mae import MAE
from sslkit.methods.moco import MoCo
from sslkit.methods.rotation import Rotation, RotationConfig


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


# ------------------------------------------------------------------------------- 01 rotation

def _rotation_reference(images: torch.Tensor, num_rotations: int):
    # the package's own method; it only reads self.cfg
    return Rotation.rotations(SimpleNamespace(cfg=RotationConfig(num_rotations=num_rotations)), images)


def check_quarter_turn(fn: Callable) -> str:
    x = torch.rand(3, 3, 5, 7)        # not square, so a transpose alone shows in the shape
    out = _tensor(_call(fn, x, on="3 images of 5x7 pixels"), (3, 3, 7, 5), "the turned batch of 3 images of 5x7")
    if torch.equal(out, torch.rot90(x, -1, dims=(2, 3))):
        raise _Wrong("your images turn clockwise; a counter-clockwise quarter turn takes the top row to the left "
                     "column: flip the rows (dim 2) after the transpose, not the columns.")
    if torch.equal(out, x.transpose(2, 3)):
        raise _Wrong("your function only transposes the images (a mirror image along the diagonal); "
                     "a rotation also flips the rows after the transpose.")
    if not torch.equal(out, torch.rot90(x, 1, dims=(2, 3))):
        raise _Wrong("your images are not the counter-clockwise quarter turn that torch.rot90(x, 1, dims=(2, 3)) gives; "
                     "transpose the last two dims, then flip dim 2.")
    return "your quarter turn matches torch.rot90 exactly, on non-square images too."


def check_rotation_batch(fn: Callable) -> str:
    for B, K in [(5, 4), (2, 4), (3, 2)]:
        x = torch.rand(B, 3, 8, 8)
        views, labels = _tuple(_call(fn, x, K, on=f"a batch of {B} images with K = {K}"), 2, "views, labels")
        ref_views, ref_labels = _rotation_reference(x, K)
        _tensor(views, (K * B, 3, 8, 8), f"with B = {B} and K = {K} the views")
        _tensor(labels, (K * B,), f"with B = {B} and K = {K} the labels")
        if labels.dtype != torch.long:
            raise _Wrong(f"your labels have dtype {labels.dtype}; cross-entropy needs class indices as torch.long.")
        if torch.equal(views, ref_views) and not torch.equal(labels, ref_labels):
            raise _Wrong(f"your views are right but the labels are not: view k*B + i is image i rotated k times, "
                         f"so the labels should be {ref_labels.tolist()} for B = {B}, K = {K}; yours are {labels.tolist()}.")
        image_major = torch.stack([ref_views[k * B: (k + 1) * B] for k in range(K)], 1).flatten(0, 1)
        if torch.equal(views, image_major) and B > 1:
            raise _Wrong("your views are grouped image by image; stack them rotation by rotation instead "
                         "(all images at 0°, then all at 90°, ...), so that view k*B + i is image i rotated k times.")
        if K == 4 and torch.equal(views[B:2 * B], torch.rot90(x, -1, dims=(2, 3))):
            raise _Wrong("your 90° views turn clockwise; the kit's angles turn counter-clockwise (torch.rot90 with k > 0).")
        if not torch.equal(views, ref_views):
            k = next(k for k in range(K) if not torch.equal(views[k * B:(k + 1) * B], ref_views[k * B:(k + 1) * B]))
            raise _Wrong(f"with B = {B} and K = {K} your views {k * B} to {(k + 1) * B - 1} should be the images "
                         f"rotated by {360 * k // K}° counter-clockwise, and they are not.")
    return "your rotation batch matches the package's for K = 2 and 4, a batch of two included: views and labels."


# ------------------------------------------------------------------------------- 02 jigsaw

def check_min_hamming(fn: Callable) -> str:
    g = torch.Generator().manual_seed(0)
    cases = [torch.stack([torch.randperm(9, generator=g) for _ in range(12)]),
             torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3], [3, 2, 1, 0]]),      # 2: a single swap
             torch.tensor([[0, 1, 2], [1, 2, 0]])]                          # 3: two rows only
    for perms in cases:
        got = _scalar(_call(fn, perms, on=f"{len(perms)} permutations of {perms.shape[1]} tiles"))
        want = min_hamming_distance(perms)
        if int(got) == 0:
            raise _Wrong("your function returns 0: a permutation's distance to itself is 0, so leave out the "
                         "diagonal (compare each permutation only with the others).")
        if int(got) != want:
            raise _Wrong(f"for the {len(perms)} permutations {perms.tolist()[:3]}... the smallest Hamming distance "
                         f"(number of positions that differ) is {want}; yours says {int(got)}.")
    return "your minimum Hamming distance matches the package's, two permutations and a single swap included."


def check_permutation_set(fn: Callable) -> str:
    for n_tiles, size in [(9, 30), (4, 4)]:
        perms = _call(fn, n_tiles, size, on=f"n_tiles = {n_tiles}, size = {size}")
        if isinstance(perms, (list, tuple)):
            perms = torch.as_tensor(perms)
        perms = _tensor(perms, (size, n_tiles), f"your set of {size} permutations of {n_tiles} tiles")
        ok_rows = torch.equal(perms.long().sort(1).values, torch.arange(n_tiles).expand(size, -1))
        if not ok_rows:
            bad = next(i for i in range(size) if sorted(perms[i].tolist()) != list(range(n_tiles)))
            raise _Wrong(f"row {bad} of your set, {perms[bad].tolist()}, is not a permutation of 0..{n_tiles - 1}.")
        if len(torch.unique(perms, dim=0)) < size:
            raise _Wrong("your set holds the same permutation twice; each new one must differ from all chosen so far.")
        got = min_hamming_distance(perms.long())
        want = int(greedy_permutations(n_tiles, size)[1][-1])
        g = torch.Generator().manual_seed(1)
        rand = min_hamming_distance(torch.stack([torch.randperm(n_tiles, generator=g) for _ in range(size)]))
        if got < want - 1:
            raise _Wrong(f"your {size} permutations of {n_tiles} tiles have a minimum Hamming distance of {got}; "
                         f"the greedy choice reaches {want} (random ones give about {rand}): pick each new permutation "
                         "as the candidate farthest from all those chosen so far.")
    return ("your permutation sets reach the minimum Hamming distance of the package's greedy choice (30 of 9 "
            "tiles, 4 of 4), with distinct, valid permutations.")


# ------------------------------------------------------------------------------- 03 SimCLR

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
    if not _close(got, want, rtol=1e-4):
        raise _Wrong(f"on {on} the loss should be {want.item():.4f}; yours is {got.item():.4f} (check which index "
                     "is each anchor's positive: view i pairs with view i + N).")
    for t in (0.1, 1.0):
        a, b = _nt_xent_call(fn, z1, z2, t, on), nt_xent(z1, z2, t)
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


# ------------------------------------------------------------------------------- 04 MoCo

def _enqueue_reference(queue: torch.Tensor, ptr: int, keys: torch.Tensor) -> int:
    # the package's own method; it reads only self.cfg.queue_size, self.queue and self.queue_ptr
    owner = SimpleNamespace(cfg=SimpleNamespace(queue_size=len(queue)), queue=queue,
                            queue_ptr=torch.tensor(ptr))
    MoCo.enqueue(owner, keys)
    return int(owner.queue_ptr)


def check_enqueue(fn: Callable) -> str:
    for K, ptr, B, case in [(12, 0, 4, "an empty queue"), (12, 4, 4, "the middle of the queue"),
                            (10, 8, 4, "a batch that runs past the end of the queue"),
                            (10, 3, 2, "a batch of two"), (4, 1, 6, "a batch larger than the queue")]:
        queue = torch.arange(K * 2, dtype=torch.float).view(K, 2) * -1     # old keys: negative numbers
        keys = torch.arange(1, B * 2 + 1, dtype=torch.float).view(B, 2)     # new keys: 1, 2, ...
        mine, ref = queue.clone(), queue.clone()
        new_ptr = _call(fn, mine, ptr, keys.clone(), on=f"{case} (K = {K}, pointer {ptr}, B = {B})")
        want_ptr = _enqueue_reference(ref, ptr, keys)
        where = f"with K = {K}, the pointer at {ptr} and B = {B} ({case})"
        if torch.equal(mine, queue):
            raise _Wrong(f"{where} your queue did not change: write the keys into the queue tensor in place "
                         "(queue[rows] = keys), do not build a new one.")
        if not torch.equal(mine, ref):
            if B <= K and ptr + B > K and torch.equal(mine[ptr:], ref[ptr:]):
                raise _Wrong(f"{where} the keys that do not fit at the end should wrap round to the start of the "
                             f"queue (rows {list(range(ptr, K))} then {list(range(0, ptr + B - K))}); use (ptr + i) % K.")
            if B > K:
                raise _Wrong(f"{where} only the newest K = {K} keys can stay, each in the row it would have reached "
                             "going round the queue; yours leaves a different queue.")
            raise _Wrong(f"{where} the keys should overwrite the oldest rows, {[(ptr + i) % K for i in range(B)]}, "
                         "and leave every other row as it was; yours does not.")
        if not isinstance(new_ptr, (int, torch.Tensor)) or int(new_ptr) != want_ptr:
            raise _Wrong(f"{where} the returned pointer should be (ptr + B) % K = {want_ptr}, the oldest row now; "
                         f"yours is {new_ptr}.")
    return "your enqueue matches MoCo.enqueue: oldest rows overwritten, wrap-around, a batch of two and one larger than the queue."


def check_info_nce(fn: Callable) -> str:
    q, k, queue = torch.randn(6, 8), torch.randn(6, 8), torch.randn(20, 8)
    on = "6 queries, their keys and a queue of 20 at temperature 0.2"
    got, want = _scalar(_call(fn, q, k, queue, 0.2, on=on), "your InfoNCE"), info_nce(q, k, queue, 0.2)
    if not _close(_scalar(_call(fn, 5 * q, 2 * k, 3 * queue, 0.2, on=on)), got, rtol=1e-3):
        raise _Wrong("your loss changes when the vectors get longer; InfoNCE compares cosines: normalise the "
                     "queries, the keys and the queue first.")
    neg_first = F.cross_entropy(torch.cat([F.normalize(q, dim=1) @ F.normalize(queue, dim=1).T,
                                           (F.normalize(q, dim=1) * F.normalize(k, dim=1)).sum(1, keepdim=True)], 1) / 0.2,
                                torch.zeros(6, dtype=torch.long))
    if _close(got, neg_first, rtol=1e-4):
        raise _Wrong("your logits put the positive last but the target says index 0: put the positive's logit "
                     "first, then the queue's.")
    if not _close(got, want, rtol=1e-4):
        raise _Wrong(f"on {on} the loss should be {want.item():.4f}; yours is {got.item():.4f} (each query's "
                     "positive is its own key, row i of k, not the keys of other images).")
    q1 = q.clone().requires_grad_(True)
    loss = _call(fn, q1, k, queue, 0.2, on=on)
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise _Wrong("your loss carries no gradient to the queries; keep it a torch tensor (no .item() or .detach()).")
    if not _close(torch.autograd.grad(loss.sum(), q1)[0], torch.autograd.grad(info_nce(q1, k, queue, 0.2), q1)[0], 1e-3, 1e-6):
        raise _Wrong("your loss has the right value but the wrong gradient for the queries.")
    return "your InfoNCE matches sslkit.losses.info_nce in value and gradient: the positive first, the queue after it."


# ------------------------------------------------------------------------------- 05 BYOL

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


# ------------------------------------------------------------------------------- 06 MAE

def _mae_keep(L: int, ratio: float) -> int:
    return round(L * (1 - ratio))


def check_random_masking(fn: Callable) -> str:
    for B, L, D, ratio, case in [(4, 64, 6, 0.75, "64 patches, 75% hidden"),
                                 (3, 49, 5, 0.75, "49 patches, an odd number (37) hidden"),
                                 (2, 16, 4, 0.5, "a batch of two")]:
        x = torch.randn(B, L, D)
        out = _tuple(_call(fn, x, ratio, on=f"{B} images of {case}"), 3, "kept, mask, ids_restore")
        kept, mask, ids_restore = out
        keep = _mae_keep(L, ratio)
        where = f"with {case}"
        _tensor(kept, (B, keep, D), f"{where} the kept tokens (round(L * (1 - ratio)) = {keep} per image)")
        _tensor(mask, (B, L), f"{where} the mask")
        _tensor(ids_restore, (B, L), f"{where} ids_restore")
        hidden = mask.float().sum(1)
        if torch.all(hidden == keep) and keep != L - keep:
            raise _Wrong(f"{where} your mask marks the {keep} visible patches with 1; MAE's convention is 1 = hidden "
                         "(the loss averages over mask == 1), so flip it.")
        if not torch.all(hidden == L - keep):
            raise _Wrong(f"{where} every row of the mask should hold {L - keep} ones (hidden patches); yours holds "
                         f"{hidden.tolist()}.")
        if not torch.equal(ids_restore.long().sort(1).values, torch.arange(L).expand(B, -1)):
            raise _Wrong(f"{where} each row of ids_restore should be a permutation of 0..{L - 1}; yours is not.")
        # the contract the decoder relies on: visible tokens, then placeholders, gathered by ids_restore,
        # give back every visible token at its own position
        full = torch.cat([kept, torch.zeros(B, L - keep, D)], 1).gather(1, ids_restore.long().unsqueeze(-1).expand(-1, -1, D))
        visible = (1 - mask.float()).unsqueeze(-1)
        if not torch.allclose(full * visible, x * visible):
            shuffle = ids_restore.long()
            try_inverse = torch.cat([kept, torch.zeros(B, L - keep, D)], 1).gather(
                1, shuffle.argsort(1).unsqueeze(-1).expand(-1, -1, D))
            if torch.allclose(try_inverse * visible, x * visible):
                raise _Wrong(f"{where} your ids_restore is the shuffle itself; it should undo it: ids_restore = "
                             "ids_shuffle.argsort(dim=1).")
            raise _Wrong(f"{where} putting your kept tokens back with ids_restore (as the decoder does) does not give "
                         "the visible patches at their own places: keep x's tokens in the order of ids_shuffle and "
                         "mark as visible exactly those.")
        if B > 1 and all(torch.equal(mask[0], mask[i]) for i in range(1, B)):
            raise _Wrong(f"{where} every image got the same mask; draw the random noise per image, shape (B, L).")
    with torch.random.fork_rng():
        a = _call(fn, torch.randn(2, 16, 4), 0.5, on="the same call twice")[1]
        b = _call(fn, torch.randn(2, 16, 4), 0.5, on="the same call twice")[1]
    if torch.equal(a, b):
        raise _Wrong("two calls gave the same masks; draw new random noise on every call (no fixed seed inside).")
    return ("your masking keeps the right number of patches, marks the hidden ones with 1 and restores every visible "
            "token to its place, an odd number hidden and a batch of two included.")


def _patch_targets_reference(patches: torch.Tensor) -> torch.Tensor:
    # as MAE.targets with norm_pix_loss (the paper's code): unbiased variance, eps inside the root
    mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True)
    return (patches - mean) / (var + 1e-6) ** 0.5


def check_patch_targets(fn: Callable) -> str:
    x = torch.randn(3, 16, 48) * 2 + 1
    on = "3 images of 16 patches of 48 values"
    got = _tensor(_call(fn, x, on=on), (3, 16, 48), "the normalised targets")
    want = _patch_targets_reference(x)
    whole = (x - x.mean((1, 2), keepdim=True)) / (x.var((1, 2), keepdim=True) + 1e-6) ** 0.5
    across = (x - x.mean(1, keepdim=True)) / (x.var(1, keepdim=True) + 1e-6) ** 0.5
    if _close(got, whole, 1e-3, 1e-4):
        raise _Wrong("you normalise each image as a whole; MAE normalises each *patch* by its own mean and "
                     "variance, over the last dim.")
    if _close(got, across, 1e-3, 1e-4):
        raise _Wrong("you normalise across the patches (dim 1); normalise each patch over its own values (dim -1).")
    biased = (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True, unbiased=False) + 1e-6) ** 0.5
    if _close(got, biased, 1e-4, 1e-5) and not _close(got, want, 1e-4, 1e-5):
        raise _Wrong("close, about 1% off: the kit (like the paper's code) divides by the unbiased variance, "
                     "patches.var(-1, keepdim=True), with 1e-6 added inside the square root.")
    if not _close(got, want, 1e-4, 1e-5):
        raise _Wrong(f"on {on} your targets differ from (patch - mean) / sqrt(var + 1e-6) per patch, e.g. "
                     f"{got[0, 0, 0].item():.4f} where {want[0, 0, 0].item():.4f} was expected.")
    flat = torch.full((2, 4, 12), 0.3)
    got = _tensor(_call(fn, flat, on="patches of one flat colour"), (2, 4, 12), "the targets of flat patches")
    if not torch.isfinite(got).all():
        raise _Wrong("a patch of one flat colour has variance 0 and your targets for it are NaN or infinite; "
                     "add 1e-6 to the variance before the square root.")
    return "your per-patch normalised targets match MAE's, flat patches included."


# ------------------------------------------------------------------------------- comparison

def check_alignment(fn: Callable) -> str:
    z1, z2 = torch.randn(10, 6), torch.randn(10, 6)
    got, want = _scalar(_call(fn, z1, z2, on="10 random pairs of width 6")), _alignment(z1, z2)
    same = _scalar(_call(fn, z1, z1.clone(), on="pairs whose two views are identical"))
    if abs(same.item()) > 1e-5:
        raise _Wrong(f"when the two views of every image coincide, alignment should be 0; yours is {same.item():.4f}.")
    if not _close(_scalar(_call(fn, 3 * z1, 7 * z2, on="rescaled pairs")), got, rtol=1e-3):
        raise _Wrong("your alignment changes when the embeddings get longer; normalise them to unit length first.")
    norm = (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).norm(dim=1).mean()
    if _close(got, norm, rtol=1e-4):
        raise _Wrong("you average the distances; Wang & Isola's alignment averages the *squared* distances.")
    if not _close(got, torch.tensor(want), rtol=1e-4):
        raise _Wrong(f"on 10 random pairs the alignment should be {want:.4f}; yours is {got.item():.4f}.")
    return "your alignment matches sslkit.compare.alignment: 0 for identical views, blind to length."


def check_uniformity(fn: Callable) -> str:
    z = torch.randn(12, 5)
    got, want = _scalar(_call(fn, z, 2.0, on="12 random embeddings, t = 2")), _uniformity(z, 2.0)
    zn = F.normalize(z, dim=1)
    sq = torch.cdist(zn, zn).pow(2)
    with_self = torch.log(torch.exp(-2 * sq).mean())
    if _close(got, with_self, rtol=1e-4):
        raise _Wrong("your average includes each point paired with itself (distance 0, so exp(0) = 1), which "
                     "pulls the value towards 0: use distinct pairs only (torch.pdist).")
    if _close(got, torch.exp(-2 * torch.pdist(zn).pow(2)).mean(), rtol=1e-4):
        raise _Wrong("you return the mean of exp(-t d^2); uniformity is its logarithm.")
    if not _close(_scalar(_call(fn, 4 * z, 2.0, on="rescaled embeddings")), got, rtol=1e-3):
        raise _Wrong("your uniformity changes when the embeddings get longer; normalise them to unit length first.")
    if not _close(got, torch.tensor(want), rtol=1e-4):
        raise _Wrong(f"for 12 random embeddings at t = 2 uniformity should be {want:.4f}; yours is {got.item():.4f}.")
    same = _scalar(_call(fn, z[:1].expand(4, -1).clone(), 2.0, on="four identical embeddings"))
    if abs(same.item()) > 1e-5:
        raise _Wrong(f"four identical embeddings (total collapse) should give uniformity 0; yours gives {same.item():.4f}.")
    return "your uniformity matches sslkit.compare.uniformity: distinct pairs, log of the mean, 0 at collapse."


# ------------------------------------------------------------------------------- the registry

@dataclass(frozen=True)
class Exercise:
    title: str
    notebook: str
    checker: Callable[[Callable], str]


EXERCISES: dict[str, Exercise] = {
    "quarter_turn": Exercise("a quarter turn by hand", "01_rotation", check_quarter_turn),
    "rotation_batch": Exercise("the rotation batch and its labels", "01_rotation", check_rotation_batch),
    "min_hamming": Exercise("the minimum Hamming distance of a permutation set", "02_jigsaw", check_min_hamming),
    "permutation_set": Exercise("a permutation set with a large minimum Hamming distance", "02_jigsaw",
                                check_permutation_set),
    "cosine_similarity": Exercise("the cosine-similarity matrix", "03_simclr", check_cosine_similarity),
    "nt_xent": Exercise("NT-Xent", "03_simclr", check_nt_xent),
    "enqueue": Exercise("MoCo's enqueue and dequeue", "04_moco", check_enqueue),
    "info_nce": Exercise("InfoNCE with a queue", "04_moco", check_info_nce),
    "ema_update": Exercise("BYOL's EMA update", "05_byol", check_ema_update),
    "byol_loss": Exercise("BYOL's symmetric loss", "05_byol", check_byol_loss),
    "random_masking": Exercise("MAE's random masking", "06_mae", check_random_masking),
    "patch_targets": Exercise("MAE's per-patch normalised targets", "06_mae", check_patch_targets),
    "alignment": Exercise("alignment", "comparison", check_alignment),
    "uniformity": Exercise("uniformity", "comparison", check_uniformity),
}


def run_check(name: str, fn: Callable, seed: int = 0) -> Result:
    """Check ``fn`` for exercise ``name`` on seeded inputs; the notebook's random state is left as it was."""
    if name not in EXERCISES:
        raise ValueError(f"unknown exercise '{name}': use one of {', '.join(EXERCISES)}.")
    ex = EXERCISES[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return Result(name, "passed", f"Right: {ex.checker(fn)}")
        except _NotDone:
            return Result(name, "not done", f"Not done yet: {ex.title} still raises NotImplementedError; write your "
                                            "code in place of the placeholder and run both cells again (the "
                                            "notebook goes on with the package's own version).")
        except _Wrong as wrong:
            return Result(name, "failed", f"Not yet: {wrong}")
        except Exception as err:   # what the student returned broke the check itself: still one sentence
            return Result(name, "failed", f"Not yet: the check could not use what your function returned "
                                          f"({_one_line(err)}); compare its shapes and types with the task above.")


def check(name: str, fn: Callable) -> None:
    """Print one sentence: right, not done yet, or the first thing that is wrong."""
    print(run_check(name, fn).message)
