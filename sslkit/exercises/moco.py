"""The checks of notebook 04 MoCo: InfoNCE over a queue, the enqueue, and shuffled BatchNorm."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

import torch
import torch.nn.functional as F

from sslkit.exercises._core import _call, _close, Exercise, _scalar, _Wrong
from sslkit.losses import info_nce
from sslkit.methods.moco import MoCo


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




class _Recorder(torch.nn.Module):
    """A key network that notes every batch it is called on, so the check sees the groups BatchNorm saw."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net
        self.calls: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.detach().clone())
        return self.net(x)


def _key_net() -> torch.nn.Module:
    """A small key encoder and head with BatchNorm, in training mode: each group gets its own statistics."""
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 6)).train()


def _rows_in(rows: torch.Tensor, x: torch.Tensor) -> list[int] | None:
    """For every row of ``rows`` the index of the equal row of ``x`` (None when one has none)."""
    flat, ref = rows.flatten(1), x.flatten(1)
    found = []
    for r in flat:
        hit = (ref == r).all(1).nonzero()
        if len(hit) != 1:
            return None
        found.append(int(hit[0]))
    return found


def check_shuffled_keys(fn: Callable) -> str:
    orders = []
    for B, groups in [(12, 3), (10, 4), (12, 3)]:
        where = f"on a batch of {B} key views in {groups} BatchNorm groups"
        x = torch.randn(B, 3, 6, 6)
        net = _Recorder(_key_net())
        k = _call(fn, net, x.clone(), groups, on=where)
        if not isinstance(k, torch.Tensor):
            raise _Wrong(f"{where} your function returned a {type(k).__name__}; it should return the keys, "
                         f"a tensor of shape ({B}, 6).")
        if not net.calls:
            raise _Wrong(f"{where} your function never called key_net: the keys are key_net's outputs, one call "
                         "per group.")
        if k.shape != (B, 6):
            raise _Wrong(f"{where} your keys have shape {tuple(k.shape)}; they should have shape ({B}, 6), one "
                         "row per image (concatenate the groups' outputs with torch.cat).")
        seen = torch.cat(net.calls)
        where_from = _rows_in(seen, x) if seen.shape[1:] == x.shape[1:] else None
        if where_from is None or sorted(where_from) != list(range(B)):
            raise _Wrong(f"{where} key_net was not given each of the {B} images exactly once: index the batch with "
                         "a permutation (x[perm]), then split it; do not change the images themselves.")
        if len(net.calls) == 1 and groups > 1:
            raise _Wrong(f"{where} you called key_net once on the whole batch, so BatchNorm computed one set of "
                         f"statistics over all {B} keys: split the shuffled batch into {groups} groups "
                         "(x[perm].tensor_split(groups)) and call key_net on each.")
        sizes = [len(c) for c in net.calls]
        want = [len(part) for part in torch.arange(B).tensor_split(groups)]
        if sizes != want:
            raise _Wrong(f"{where} key_net saw groups of {sizes} images; it should see {groups} groups whose sizes "
                         f"differ by at most one, {want}, as x.tensor_split(groups) makes them (x.chunk can "
                         "make fewer or a group of one).")
        if where_from == list(range(B)):
            raise _Wrong(f"{where} the images reached key_net in their own order, so each group of keys is the "
                         "same images as the queries' group and shares their statistics: shuffle first, "
                         "x[torch.randperm(B)].")
        same_groups = [sorted(p.tolist()) for p in torch.arange(B).tensor_split(groups)]
        got_groups, at = [], 0
        for n in sizes:
            got_groups.append(sorted(where_from[at:at + n]))
            at += n
        if got_groups == same_groups:
            raise _Wrong(f"{where} each group holds the same images as the queries' group (you shuffled inside "
                         "each group, after splitting), so a key still shares its query's statistics: shuffle the "
                         "whole batch, then split it.")
        if sorted(got_groups) == sorted(same_groups):
            raise _Wrong(f"{where} your order moves whole groups (each group of keys is one of the queries' groups, "
                         "in another place), so a key still shares its query's statistics: shuffle the images "
                         "with torch.randperm(B), then split.")
        orders.append(where_from)
        # what each image's key should be: key_net on the group it went through, in the images' own order
        with torch.no_grad():
            raw = torch.cat([net.net(c) for c in net.calls])
        by_image = torch.empty_like(raw)
        by_image[torch.tensor(where_from)] = raw
        want_k = F.normalize(by_image, dim=1)
        got = k.detach().float()
        if not _close(got, want_k, 1e-4, 1e-5):
            if _close(got, by_image, 1e-4, 1e-5):
                raise _Wrong(f"{where} your keys are right but not unit length: normalise them (F.normalize(k, "
                             "dim=1)), InfoNCE compares cosines.")
            if _close(got, F.normalize(raw, dim=1), 1e-4, 1e-5) or _close(got, raw, 1e-4, 1e-5):
                raise _Wrong(f"{where} your keys come back in the shuffled order: row i must be the key of x[i], "
                             "the positive of query i; undo the shuffle with k[perm.argsort()].")
            rows = _rows_in(got.round(decimals=4), want_k.round(decimals=4))
            if rows is not None and sorted(rows) == list(range(B)):
                raise _Wrong(f"{where} your keys are the right ones in the wrong order: to undo x[perm], index "
                             "with the inverse permutation perm.argsort(), not with perm again.")
            raise _Wrong(f"{where} the key of x[0] should be {[round(v, 3) for v in want_k[0].tolist()]} (key_net "
                         f"on its group, normalised); yours is {[round(v, 3) for v in got[0].tolist()]}.")
        if k.requires_grad:
            raise _Wrong(f"{where} your keys carry a gradient: compute them under torch.no_grad(), since no "
                         "gradient reaches the key encoder (it moves only by the momentum update).")
    if orders[0] == orders[2]:
        raise _Wrong("two calls on the same batch size shuffled the same way: draw a new torch.randperm on every "
                     "call (no fixed order, no torch.manual_seed inside).")
    return ("your keys match shuffled BatchNorm: the whole batch shuffled, encoded in groups of equal size, "
            "unshuffled so row i is the key of x[i], normalised, without a gradient.")


EXERCISES = {
    "info_nce": Exercise("InfoNCE with a queue", "04_moco", check_info_nce),
    "enqueue": Exercise("MoCo's enqueue and dequeue", "04_moco", check_enqueue),
    "shuffled_keys": Exercise("MoCo's shuffled BatchNorm", "04_moco", check_shuffled_keys),
}
