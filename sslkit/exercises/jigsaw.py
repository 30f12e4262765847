"""The checks of notebook 02 jigsaw."""

from __future__ import annotations

from typing import Callable

import torch

from sslkit.exercises._core import _Wrong, _call, _scalar, _tensor, Exercise
from sslkit.methods.jigsaw import greedy_permutations, min_hamming_distance


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


EXERCISES = {
    "min_hamming": Exercise("the minimum Hamming distance of a permutation set", "02_jigsaw", check_min_hamming),
    "permutation_set": Exercise("a permutation set with a large minimum Hamming distance", "02_jigsaw",
                                check_permutation_set),
}
