"""The checks of notebook 06 MAE."""

from __future__ import annotations

from typing import Callable

import torch

from sslkit.exercises._core import _call, _close, Exercise, _tensor, _tuple, _Wrong


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


def _patchify_reference(imgs: torch.Tensor, p: int) -> torch.Tensor:
    # as MAE.patchify and the paper's models_mae.py: patches row by row, values (row, col, channel)
    B, C, H, W = imgs.shape
    x = imgs.reshape(B, C, H // p, p, W // p, p)
    return torch.einsum("bchpwq->bhwpqc", x).reshape(B, (H // p) * (W // p), p * p * C)


def _patch_orders(imgs: torch.Tensor, p: int) -> dict[str, torch.Tensor]:
    """The usual wrong orders, each with the sentence it deserves."""
    B, C, H, W = imgs.shape
    h, w = H // p, W // p
    x = imgs.reshape(B, C, h, p, w, p)
    return {
        "channel first": x.permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, C * p * p),
        "columns first": x.permute(0, 4, 2, 3, 5, 1).reshape(B, h * w, p * p * C),
        "transposed": x.permute(0, 2, 4, 5, 3, 1).reshape(B, h * w, p * p * C),
        "flat": imgs.reshape(B, h * w, p * p * C),
    }


_ORDER_HINTS = {
    "channel first": "the values inside each patch are in (channel, row, column) order; the kit, like the paper's "
                     "models_mae.py, orders them (row, column, channel): einsum('bchpwq->bhwpqc') or "
                     "permute(0, 2, 4, 3, 5, 1)",
    "columns first": "your patches go down the columns first; number them row by row, as a ViT reads them "
                     "(patch 1 is the second patch of the first row)",
    "transposed": "inside each patch your values run column by column; they should run row by row, "
                  "(row, column, channel)",
    "flat": "each of your 'patches' is a run of consecutive values of the flat image, not a p x p square: reshape "
            "to (B, C, H/p, p, W/p, p) first, so that the rows and columns of patches get their own dims",
}


# (B, C, H, p, what to call it): colour and greyscale, patch sizes 3 and 4, both checks use them
_PATCH_CASES = [(2, 3, 8, 4, "2 colour images of 8x8, patches of 4"),
                (3, 1, 12, 3, "3 greyscale images of 12x12, patches of 3"),
                (1, 3, 32, 4, "one 32x32 colour image, patches of 4")]


def check_patchify(fn: Callable) -> str:
    for B, C, H, p, case in _PATCH_CASES:
        imgs = torch.randn(B, C, H, H)
        L, P = (H // p) ** 2, p * p * C
        got = _tensor(_call(fn, imgs, p, on=case), (B, L, P), f"for {case} the patches (B, L = {L}, p*p*C = {P})")
        if _close(got, _patchify_reference(imgs, p)):
            continue
        for name, wrong in _patch_orders(imgs, p).items():
            if _close(got, wrong):
                raise _Wrong(f"for {case} {_ORDER_HINTS[name]}.")
        raise _Wrong(f"for {case} your patches hold the wrong values: patch 0 should be the top-left {p}x{p} square, "
                     "its values ordered (row, column, channel).")
    return "your patchify matches MAE.patchify (patches row by row, values (row, column, channel)), greyscale included."


_UNPATCH_HINTS = {
    "channel first": "your unpatchify reads each patch's values as (channel, row, column); patchify wrote them "
                     "(row, column, channel): reshape to (B, H/p, W/p, p, p, C), then einsum('bhwpqc->bchpwq')",
    "columns first": "your unpatchify lays the patches down the columns first; they come row by row (patch 1 is "
                     "the second patch of the first row)",
    "transposed": "your unpatchify reads each patch's values column by column; they run row by row, "
                  "(row, column, channel)",
    "flat": "your unpatchify reshapes the patches straight into the image, but each patch is a p x p square: reshape "
            "to (B, H/p, W/p, p, p, C) first, then move the axes to (B, C, H/p, p, W/p, p)",
}


def check_unpatchify(fn: Callable) -> str:
    for B, C, H, p, case in _PATCH_CASES:
        imgs = torch.randn(B, C, H, H)
        patches = _patchify_reference(imgs, p)
        got = _tensor(_call(fn, patches, p, C, on=f"the patches of {case}"), (B, C, H, H), f"for {case} the images")
        if _close(got, imgs):
            continue
        for name, wrong in _patch_orders(got, p).items():     # the order your unpatchify inverts
            if _close(wrong, patches):
                raise _Wrong(f"for {case} {_UNPATCH_HINTS[name]}.")
        raise _Wrong(f"for {case} unpatchify(patchify(images)) does not give the images back: reshape the patches to "
                     "(B, H/p, W/p, p, p, C), move the axes back to (B, C, H/p, p, W/p, p) and reshape to (B, C, H, W).")
    return "your unpatchify inverts MAE's patchify exactly, greyscale and other patch sizes included."


EXERCISES = {
    "patchify": Exercise("MAE's patchify", "06_mae", check_patchify),
    "unpatchify": Exercise("MAE's unpatchify", "06_mae", check_unpatchify),
    "random_masking": Exercise("MAE's random masking", "06_mae", check_random_masking),
    "patch_targets": Exercise("MAE's per-patch normalised targets", "06_mae", check_patch_targets),
}
