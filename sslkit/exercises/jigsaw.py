"""The checks of notebook 02 jigsaw."""

from __future__ import annotations

import itertools
from typing import Callable

import torch
import torch.nn.functional as F

from sslkit.exercises._core import _Wrong, _call, _scalar, _tensor, Exercise
from sslkit.methods.jigsaw import (JigsawConfig, cut_tiles, min_hamming_distance, seam_solve, shuffle_tiles,
                                   unshuffle_tiles)


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


# ------------------------------------------ the permutation set (largest mean distance)

def _pools() -> list[tuple[str, torch.Tensor, int]]:
    g = torch.Generator().manual_seed(0)
    four = torch.tensor(list(itertools.permutations(range(4))))[torch.randperm(24, generator=g)]
    nine = torch.unique(torch.rand(3000, 9, generator=g).argsort(1), dim=0)
    nine = nine[torch.randperm(len(nine), generator=g)]
    return [("all 24 permutations of 4 tiles", four, 24), (f"{len(nine)} random permutations of 9 tiles", nine, 40)]


def check_permutation_set(fn: Callable) -> str:
    for what, cand, size in _pools():
        out = _call(fn, cand.clone(), size, on=f"{what} with size = {size}")
        if isinstance(out, (list, tuple)):
            out = torch.as_tensor(out)
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (size,):
            raise _Wrong("your function returns indices into the candidates; return the chosen rows themselves, "
                         "candidates[chosen], a (size, T) tensor.")
        rows = _tensor(out, (size, cand.shape[1]), f"your set of {size} from {what}").long()
        match = (rows[:, None, :] == cand[None, :, :]).all(-1)          # (size, N)
        if not match.any(1).all():
            i = int((~match.any(1)).nonzero()[0])
            raise _Wrong(f"row {i} of your set, {rows[i].tolist()}, is not one of the candidates; pick every "
                         "member from the candidates you were given.")
        idx = match.float().argmax(1)
        if len(set(idx.tolist())) < size:
            raise _Wrong("your set holds the same permutation twice; leave the ones already chosen out of each "
                         "new pick.")
        if idx[0] != 0:
            raise _Wrong(f"your set starts with {rows[0].tolist()}; start from the first candidate, candidates[0].")
        dist = (cand[:, None, :] != cand[None, idx, :]).sum(-1)     # (N, size): every candidate to every member
        for i in range(1, size):
            free = torch.ones(len(cand), dtype=torch.bool)
            free[idx[:i]] = False
            total = dist[:, :i].sum(1)                                # the mean's argmax, in integers
            if total[idx[i]] == total[free].max():
                continue
            nearest = dist[:, :i].min(1).values
            mean = lambda j: total[j].item() / i
            if i >= 2 and nearest[idx[i]] == nearest[free].max():
                raise _Wrong(f"pick {i} of your set (from {what}) is the candidate farthest from its *nearest* chosen "
                             "permutation (the largest minimum distance); the selection takes the one with the largest "
                             f"*mean* distance to all of those chosen ({mean(idx[i]):.2f} for yours, "
                             f"{total[free].max().item() / i:.2f} for the best).")
            if i >= 2 and dist[idx[i], i - 1] == dist[free, i - 1].max():
                raise _Wrong(f"pick {i} of your set (from {what}) is the candidate farthest from the newest member "
                             "alone; add up each candidate's distance to every permutation chosen so far and take "
                             "the largest total (the largest mean).")
            if total[idx[i]] == total[free].min():
                raise _Wrong(f"pick {i} of your set (from {what}) is the candidate *closest* on average to those "
                             "chosen; the selection takes the farthest (argmax, not argmin).")
            raise _Wrong(f"pick {i} of your set (from {what}) has a mean Hamming distance of {mean(idx[i]):.2f} to "
                         f"the {i} chosen before it, but a candidate not yet chosen has {total[free].max().item() / i:.2f}; "
                         "each pick must be the largest mean distance to all chosen so far.")
    return ("every pick of your set has the largest mean Hamming distance to those chosen before it (select_permutations.py's rule), "
            "on all 24 permutations of 4 tiles and on a pool of 9-tile permutations.")


# ---------------------------------------------------------------- the seam matcher

def _puzzles(grid: int, fraction: float, n: int, n_perms: int, g: torch.Generator):
    """Smooth synthetic images (so seams carry information), cut and shuffled by a random set."""
    cfg = JigsawConfig(grid=grid, image_size=32, tile_fraction=fraction, num_permutations=2)
    x = F.interpolate(torch.rand(n, 3, 5, 5, generator=g), size=(32, 32), mode="bicubic", align_corners=False)
    tiles = cut_tiles(x, cfg, jitter=False)                             # (n, T, C, t, t)
    T = grid * grid
    perms = torch.stack([torch.randperm(T, generator=g) for _ in range(n_perms)])
    perms = perms[(perms.argsort(1) != perms).any(1)]                     # no self-inverse ones: un-shuffling shows
    labels = torch.randint(len(perms), (n,), generator=g)
    return shuffle_tiles(tiles, perms[labels]), perms, labels


def check_seam_solver(fn: Callable) -> str:
    g = torch.Generator().manual_seed(0)
    right = total = 0
    for grid, fraction, n_perms, what in [(3, 1.0, 12, "3x3 puzzles of touching tiles"),
                                          (2, 0.75, 24, "2x2 puzzles with gaps"), (3, 0.8, 30, "3x3 puzzles with gaps")]:
        shuffled, perms, labels = _puzzles(grid, fraction, 16, n_perms, g)
        B, P = len(shuffled), len(perms)
        got = _call(fn, shuffled.clone(), perms.clone(), grid, on=f"{B} {what} and a set of {P} permutations")
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (B, grid * grid):
            raise _Wrong("your solver returns the permutations themselves; return each puzzle's index into perms, "
                         "a (B,) long tensor.")
        got = _tensor(got, (B,), f"the tensor of your answers for {B} puzzles").long()
        if ((got < 0) | (got >= P)).any():
            raise _Wrong(f"your answers hold {int(got.max() if (got >= P).any() else got.min())}, not an index into "
                         f"the {P} permutations of the set.")
        want = seam_solve(shuffled, perms, grid)
        back = [unshuffle_tiles(shuffled, p.expand(B, -1)).view(B, grid, grid, *shuffled.shape[2:]) for p in perms]
        across = torch.stack([(v[:, :, :-1, :, :, -1] - v[:, :, 1:, :, :, 0]).abs().mean((1, 2, 3, 4)) for v in back], 1)
        down = torch.stack([(v[:, :-1, :, :, -1, :] - v[:, 1:, :, :, 0, :]).abs().mean((1, 2, 3, 4)) for v in back], 1)
        cost = across + down                                                # (B, P): seam_cost of each un-shuffling
        ok = cost.gather(1, got[:, None])[:, 0] <= cost.min(1).values + 1e-6    # an exact tie either way is fine
        if ok.all():
            right += int((want == labels).sum())
            total += B
            continue
        if torch.equal(got, seam_solve(shuffled, perms.argsort(1), grid)):
            raise _Wrong(f"on {what} your solver shuffles the tiles by each permutation again instead of putting them "
                         "back: position i shows tile perms[i], so the tile at position i goes back to position "
                         "perms[i] (use the inverse, perms.argsort()).")
        if torch.equal(got, cost.argmax(1)):
            raise _Wrong(f"on {what} your solver picks the permutation whose seams match *worst*; take the lowest "
                         "cost (argmin).")
        only = {"across": across.argmin(1), "down": down.argmin(1)}
        if torch.equal(got, only["across"]):
            raise _Wrong(f"on {what} your solver only compares left and right neighbours; add the cuts between a tile "
                         "and the one below it (its last row against the next tile's first row).")
        if torch.equal(got, only["down"]):
            raise _Wrong(f"on {what} your solver only compares a tile with the one below it; add the cuts between left "
                         "and right neighbours (a tile's last column against the next tile's first column).")
        squared = torch.stack([(v[:, :, :-1, :, :, -1] - v[:, :, 1:, :, :, 0]).pow(2).mean((1, 2, 3, 4))
                               + (v[:, :-1, :, :, -1, :] - v[:, 1:, :, :, 0, :]).pow(2).mean((1, 2, 3, 4)) for v in back], 1)
        if torch.equal(got, squared.argmin(1)):
            raise _Wrong(f"on {what} your solver squares the differences across the seams; the cost here is their "
                         "mean *absolute* difference (.abs(), not .pow(2)), which picks another permutation for some puzzles.")
        b = int((~ok).nonzero()[0])
        raise _Wrong(f"on {what}, for puzzle {b} your solver picks permutation {int(got[b])}, whose un-shuffled seams "
                     f"differ by {cost[b, got[b]]:.3f} on average, but permutation {int(cost[b].argmin())} gives "
                     f"{cost[b].min():.3f}: check which edges you compare (a tile's last column with its right "
                     "neighbour's first, its last row with the first row of the tile below).")
    return (f"your seam matcher picks the lowest-cost permutation for every puzzle (3x3 and 2x2, with and without gaps); "
            f"on these smooth images that is the true shuffle for {right} of {total} puzzles, no learning involved.")


EXERCISES = {
    "min_hamming": Exercise("the minimum Hamming distance of a permutation set", "02_jigsaw", check_min_hamming),
    "permutation_set": Exercise("the permutation set of largest mean Hamming distance", "02_jigsaw", check_permutation_set),
    "seam_solver": Exercise("a seam matcher that solves puzzles without learning", "02_jigsaw", check_seam_solver),
}
