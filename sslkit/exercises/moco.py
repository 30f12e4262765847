"""The checks of notebook 04 MoCo."""

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


EXERCISES = {
    "enqueue": Exercise("MoCo's enqueue and dequeue", "04_moco", check_enqueue),
    "info_nce": Exercise("InfoNCE with a queue", "04_moco", check_info_nce),
}
