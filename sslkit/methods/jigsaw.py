"""Jigsaw puzzles: cut an image into a 3x3 grid of tiles, shuffle them, predict the shuffle.

To put the tiles back a network has to recognise the object parts they show (a wheel goes
under a car, an eye above a nose). One shared encoder (the "context-free network") sees each
tile alone; the tile features are concatenated and an MLP predicts which permutation of a
fixed set was applied. Gaps and jitter between tiles and per-tile normalisation take away the
low-level shortcuts (continuing edges and lines, matching colour statistics).

Noroozi, Favaro. "Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles."
ECCV 2016. https://arxiv.org/abs/1603.09246. The authors' code (Caffe): MehdiNoroozi/JigsawPuzzleSolver,
as released for the paper in 2016 (caffe-master-jps/, commit 2fba1c6) and replaced in 2018 by their
Jigsaw++ code (caffe-master-jps++/); a third party's PyTorch code: bbrattoli/JigsawPuzzlePytorch.
Comments below cite their files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sslkit.augment import random_grayscale
from sslkit.backbones import Encoder
from sslkit.methods.base import MethodOutput, ReferenceRecipe, Settings, SSLMethod

MIN_TILE = 8   # px: the small CNN halves a tile three times; below 8 px nothing is left to pool


@dataclass
class JigsawConfig:
    """The jigsaw task's settings; the comments say which values come from the two codes (module docstring)."""

    grid: int = 3                       # tiles per side: 3x3 = 9 tiles
    # size of the permutation set: 1000 is the PyTorch code's default (select_permutations.py --classes 1000);
    # the authors' repository ships a set of 100 (permutations_100_max.bin; permutations_701.bin came with Jigsaw++)
    num_permutations: int = 1000
    # The set takes, again and again, the candidate with the largest mean distance to those chosen, as
    # select_permutations.py does; its minimum distance is not optimised, only measured. min_hamming
    # refuses a set whose minimum falls below it; None = any.
    min_hamming: int | None = None
    # Images are resized to image_size before cutting. Both codes cut 64-px tiles at random places in
    # the 85-px cells of a 255-px crop of ImageNet (train_val_cfn_jps.prototxt: crop_size 255, patch_size
    # 64, jitter_size 21; JigsawImageLoader.py: CenterCrop(255), RandomCrop(64)); a 32-px CIFAR image
    # gives 9-px tiles. Upsampling to 64 px gives 18-px tiles, more for a deep encoder to see, but 2x
    # enlarged while the encoder is evaluated
    # on whole images at 1x. On the CPU with the small CNN the scale mattered more (2-minute runs,
    # linear probe 49.2% at 32 px against 44.7% at 64 px), so the quick profile sets 32; the
    # default, used by the full profile's ResNet-18, stays 64 until measured on a GPU.
    image_size: int = 64
    # tile side / cell side, the rest being the random gap and jitter: 64/75 is the kit's choice (the
    # codes above cut 64 of 85 px, a wider gap)
    tile_fraction: float = 64 / 75
    # normalise each tile by its own mean and std per channel, as JigsawImageLoader.py does ("Normalize the
    # patches indipendently"); the authors' 2016 data_transformer.cpp subtracts each tile's own mean only
    per_tile_norm: bool = True
    # grey images against colour shortcuts: 0.3 as JigsawImageLoader.py (np.random.rand() < 0.30 turns an
    # image grey; it also shifts each channel's values by randint(-2, 2), which the kit does not). The
    # authors' 2016 code turns nothing grey; their Jigsaw++ data_transformer.cpp greys half the puzzles
    # and offsets each colour channel of a tile by 0-2 px (rand()%3).
    gray_p: float = 0.3
    tile_dim: int = 512                 # fc6: per-tile features, shared weights (1024 in both codes)
    hidden_dim: int = 1024              # fc7 (4096 in both codes; smaller here for CPU budgets)
    permutation_seed: int = 0
    # A variant, not the paper's design: the shuffled (and normalised) tiles are laid back into one
    # picture of image_size, gaps grey, and the encoder sees the whole puzzle at the scale it is
    # evaluated at; the head reads its last feature map (positions kept) instead of T tile features
    # seen one at a time. Measured against the context-free design in benchmarks/RESULTS.md.
    whole_image: bool = False

    def __post_init__(self):
        if self.grid < 2:
            raise ValueError(f"grid must be at least 2 tiles per side, got {self.grid}.")
        if not 0.0 < self.tile_fraction <= 1.0:
            raise ValueError(f"tile_fraction must be in (0, 1], got {self.tile_fraction}.")
        if self.tile_size < MIN_TILE:
            raise ValueError(f"a {self.grid}x{self.grid} grid on {self.image_size}-px images gives "
                             f"{self.tile_size}-px tiles, below the {MIN_TILE} px the encoder needs: "
                             f"use a smaller grid or a larger image_size.")
        n_tiles = self.grid ** 2
        if n_tiles <= 20 and self.num_permutations > math.factorial(n_tiles):
            raise ValueError(f"num_permutations={self.num_permutations} is more than the "
                             f"{math.factorial(n_tiles)} permutations of {n_tiles} tiles.")
        if self.num_permutations < 2:
            raise ValueError(f"num_permutations must be at least 2, got {self.num_permutations}.")
        if self.min_hamming is not None and not 1 <= self.min_hamming <= n_tiles:
            raise ValueError(f"min_hamming must be in [1, {n_tiles}], got {self.min_hamming}.")
        if not 0.0 <= self.gray_p <= 1.0:
            raise ValueError(f"gray_p must be a probability in [0, 1], got {self.gray_p}.")

    @property
    def cell_size(self) -> int:
        return self.image_size // self.grid

    @property
    def tile_size(self) -> int:
        return int(round(self.cell_size * self.tile_fraction))


# ------------------------------------------------------------------------ the permutation set

def mean_distance_selection(candidates: np.ndarray, size: int, first: int = 0) -> np.ndarray:
    """Noroozi & Favaro's permutation set, chosen from a pool of candidates: indices of the chosen rows.

    Start from ``candidates[first]``; then, again and again, add the candidate whose *mean*
    Hamming distance to the permutations chosen so far is largest (the first one on a tie; the
    chosen never again). As the selection script of the PyTorch reference code does
    (bbrattoli/JigsawPuzzlePytorch, select_permutations.py, ``--selection max``:
    ``D = cdist(P,P_hat, metric='hamming').mean(axis=0)``, then ``j = D.argmax()``); the sets in the
    authors' repository fit it (permutations_100_max.bin: mean distance 8.08, minimum 2).
    Each candidate's summed distance to the set is kept up to date, one comparison with the newest
    member per pick (the sum has the mean's argmax).

    Args:
        candidates: ``(N, T)`` permutations of ``range(T)``.
    Returns:
        ``(size,)`` indices into ``candidates``, in the order chosen.
    """
    n, T = candidates.shape
    if size > n:
        raise ValueError(f"a permutation set of {size} was asked for, but only {n} candidates exist.")
    cand_t = np.ascontiguousarray(candidates.T.astype(np.int8))   # (T, N): one contiguous row per position, 20x faster

    def distance_to(j: int) -> np.ndarray:     # (N,) Hamming distance of every candidate to candidate j
        d = np.zeros(n, dtype=np.int32)
        for pos in range(T):
            d += cand_t[pos] != cand_t[pos, j]
        return d

    chosen = [first]
    total = distance_to(first)                 # each candidate's summed distance to the set so far
    total[first] = -1                          # never chosen twice
    for _ in range(size - 1):
        j = int(total.argmax())
        chosen.append(j)
        total += distance_to(j)
        total[chosen] = -1
    return np.array(chosen)


@lru_cache(maxsize=16)
def greedy_permutations(n_tiles: int, size: int, seed: int = 0, pool: int = 100_000) -> tuple[torch.Tensor, np.ndarray]:
    """Noroozi & Favaro's permutation set, largest mean distance first (:func:`mean_distance_selection`),
    with its minimum Hamming distance measured as it grows.

    The candidates are every permutation of ``n_tiles`` in lexicographic order when there are at
    most ``pool`` of them (4 tiles: 24), else the distinct ones among ``pool`` random permutations,
    sorted. Deviation: for 9 tiles that script takes all 9! = 362,880; a pool of 100,000 gave a
    1000-set the same mean distance (8.008) in a fifth of the time. The first member is a random
    candidate, as in the script.

    Returns:
        perms: ``(size, n_tiles)`` long, each row a permutation of ``range(n_tiles)``.
        min_distance: ``(size,)``; ``min_distance[i]`` is the minimum Hamming distance within
            the first ``i + 1`` permutations (``n_tiles`` for a single one): a property the
            algorithm does not optimise, measured so the curve of set size against it comes for free.
    """
    rng = np.random.default_rng(seed)
    n_all = math.factorial(n_tiles)
    if n_all <= pool:
        import itertools

        cand = np.array(list(itertools.permutations(range(n_tiles))), dtype=np.int8)
    else:
        cand = np.unique(np.argsort(rng.random((pool, n_tiles)), axis=1).astype(np.int8), axis=0)   # sorted, no repeats
    if size > len(cand):
        raise ValueError(f"a permutation set of {size} was asked for, but only {len(cand)} candidates exist.")
    perms = cand[mean_distance_selection(cand, size, first=int(rng.integers(len(cand))))]
    # the prefix minimum: row i's distance to the rows before it, then a running minimum
    p_t = np.ascontiguousarray(perms.T)
    nearest = np.full(size, n_tiles, dtype=np.int64)
    for i in range(1, size):
        nearest[i] = (p_t[:, :i] != p_t[:, i:i + 1]).sum(0).min()
    return torch.from_numpy(perms.astype(np.int64)), np.minimum.accumulate(nearest)


def min_hamming_distance(perms: torch.Tensor) -> int:
    """The smallest Hamming distance between two different rows of ``perms (P, T)``."""
    d = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    d.fill_diagonal_(perms.shape[1] + 1)
    return int(d.min())


def mean_hamming_distance(perms: torch.Tensor) -> float:
    """The mean Hamming distance over all pairs of different rows of ``perms (P, T)``: the set's
    average distance, which the selection keeps large and the paper's comparison of sets varies."""
    P = len(perms)
    d = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    return float(d.sum()) / (P * (P - 1))


# ------------------------------------------------------------------------ tiles

def cut_tiles(images: torch.Tensor, cfg: JigsawConfig, jitter: bool = True) -> torch.Tensor:
    """Resize to ``cfg.image_size`` and cut a grid of tiles, each at a random place in its cell.

    (B, C, H, W) -> (B, T, C, t, t) with T = grid**2 in row-major order and t = cfg.tile_size.
    With ``jitter=False`` every tile is centred in its cell (for figures).
    """
    B, C, H, W = images.shape
    S, g, cell, t = cfg.image_size, cfg.grid, cfg.cell_size, cfg.tile_size
    if (H, W) != (S, S):
        images = F.interpolate(images, size=(S, S), mode="bilinear", align_corners=False, antialias=S < min(H, W))
    slack_img, slack_cell = S - g * cell, cell - t        # where the grid sits; where a tile sits in its cell
    dev = images.device
    if jitter:
        origin = torch.randint(0, slack_img + 1, (B, 1, 2), device=dev)
        offset = torch.randint(0, slack_cell + 1, (B, g * g, 2), device=dev)
    else:
        origin = torch.full((B, 1, 2), slack_img // 2, device=dev)
        offset = torch.full((B, g * g, 2), slack_cell // 2, device=dev)
    cells = torch.stack(torch.meshgrid(torch.arange(g, device=dev), torch.arange(g, device=dev), indexing="ij"), -1)
    top_left = origin + cells.view(1, g * g, 2) * cell + offset          # (B, T, 2) as (row, col)
    r = top_left[..., 0].view(B, -1, 1, 1) + torch.arange(t, device=dev).view(1, 1, t, 1)
    c = top_left[..., 1].view(B, -1, 1, 1) + torch.arange(t, device=dev).view(1, 1, 1, t)
    b = torch.arange(B, device=dev).view(B, 1, 1, 1)
    return images.permute(0, 2, 3, 1)[b, r, c].permute(0, 1, 4, 2, 3)   # (B, T, C, t, t)


def place_tiles(tiles: torch.Tensor, cfg: JigsawConfig, fill: torch.Tensor | float = 0.5,
                jitter: bool = True) -> torch.Tensor:
    """Lay (B, T, C, t, t) tiles, in position order, into (B, C, S, S) pictures of ``cfg.image_size``:
    tile i at a random place in grid cell i (centred with ``jitter=False``), everything else
    ``fill`` (a float, or a (1, C, 1, 1) tensor). The whole-image puzzle's input."""
    B, T, C, t, _ = tiles.shape
    S, g, cell = cfg.image_size, cfg.grid, cfg.cell_size
    slack_img, slack_cell = S - g * cell, cell - t
    dev = tiles.device
    if jitter:
        origin = torch.randint(0, slack_img + 1, (B, 1, 2), device=dev)
        offset = torch.randint(0, slack_cell + 1, (B, T, 2), device=dev)
    else:
        origin = torch.full((B, 1, 2), slack_img // 2, device=dev)
        offset = torch.full((B, T, 2), slack_cell // 2, device=dev)
    cells = torch.stack(torch.meshgrid(torch.arange(g, device=dev), torch.arange(g, device=dev), indexing="ij"), -1)
    top_left = origin + cells.view(1, T, 2) * cell + offset
    r = top_left[..., 0].view(B, -1, 1, 1) + torch.arange(t, device=dev).view(1, 1, t, 1)
    c = top_left[..., 1].view(B, -1, 1, 1) + torch.arange(t, device=dev).view(1, 1, 1, t)
    b = torch.arange(B, device=dev).view(B, 1, 1, 1)
    canvas = torch.empty(B, S, S, C, dtype=tiles.dtype, device=dev)
    canvas[:] = fill.view(1, 1, 1, C).to(tiles.dtype) if torch.is_tensor(fill) else fill
    canvas[b, r, c] = tiles.permute(0, 1, 3, 4, 2)                   # (B, T, t, t, C) into (B, S, S, C)
    return canvas.permute(0, 3, 1, 2)


def shuffle_tiles(tiles: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """Place tile ``perms[b, i]`` at position i: (B, T, ...) with perms (B, T) -> (B, T, ...)."""
    idx = perms.view(*perms.shape, *([1] * (tiles.dim() - 2))).expand_as(tiles)
    return tiles.gather(1, idx)


def unshuffle_tiles(shuffled: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`shuffle_tiles`: put every tile back where it came from."""
    return shuffle_tiles(shuffled, perms.argsort(1))


def assemble(tiles: torch.Tensor, grid: int, gap: int = 1) -> torch.Tensor:
    """Lay out (B, T, C, t, t) tiles as (B, C, H, W) images with ``gap`` px of white between."""
    B, T, C, t, _ = tiles.shape
    side = grid * t + (grid - 1) * gap
    out = torch.ones(B, C, side, side, dtype=tiles.dtype, device=tiles.device)
    out = out * (255 if tiles.dtype == torch.uint8 else 1)
    for i in range(T):
        r, c = divmod(i, grid)
        out[:, :, r * (t + gap): r * (t + gap) + t, c * (t + gap): c * (t + gap) + t] = tiles[:, i]
    return out


def seam_cost(tiles: torch.Tensor, grid: int) -> torch.Tensor:
    """How badly the seams of a laid-out puzzle match: (B, T, C, t, t) tiles in position order -> (B,).

    The mean absolute difference across every vertical cut (a tile's last column against its right
    neighbour's first) plus the same across every horizontal cut (last row against the first row of
    the tile below). No learning: the low-level shortcut that gaps and jitter are there to break.
    """
    B, T, C, t, _ = tiles.shape
    g = tiles.view(B, grid, grid, C, t, t)
    across = (g[:, :, :-1, :, :, -1] - g[:, :, 1:, :, :, 0]).abs().mean((1, 2, 3, 4))   # right edge | next left edge
    down = (g[:, :-1, :, :, -1, :] - g[:, 1:, :, :, 0, :]).abs().mean((1, 2, 3, 4))     # bottom edge | next top edge
    return across + down


def seam_solve(shuffled: torch.Tensor, perms: torch.Tensor, grid: int) -> torch.Tensor:
    """The seam matcher: for shuffled tiles (B, T, C, t, t), the index into ``perms (P, T)`` of the
    permutation whose un-shuffled puzzle has the lowest :func:`seam_cost`, (B,) long."""
    B = shuffled.shape[0]
    cost = torch.stack([seam_cost(unshuffle_tiles(shuffled, p.expand(B, -1)), grid) for p in perms], 1)   # (B, P)
    return cost.argmin(1)


# ------------------------------------------------------------------------ the model

class Jigsaw(SSLMethod):
    title = "jigsaw"
    # quick: 100 permutations (the PyTorch jigsaw code's default: 1000), a task a half-minute run can
    # start to learn; batch 64 (9 small tiles each) and 150 steps: more steps, about the same time.
    # Tiles cut from the 32-px images as they are (9-px tiles), not upsampled to 64 px (18-px tiles):
    # the encoder then learns at the scale it is evaluated at. 2-minute runs (kNN / linear, random init 35.2% / 48.7%): 32 px
    # 36.1% / 49.2%, 48 px 34.5% / 45.1%, 64 px 30.0% / 44.7%; 32 px with 1000 permutations 36.6% /
    # 50.1%. Three seeds at 32 px: -0.2 / -0.2 against random init on average (RESULTS.md)
    quick = Settings(train={"batch_size": 64, "steps": 150}, config={"num_permutations": 100, "image_size": 32})
    reference = ReferenceRecipe(config={"image_size": 32, "grid": 2, "num_permutations": 24, "whole_image": True,
                                        "hidden_dim": 512},
                                train={"batch_size": 256, "lr": 2e-3}, heads=("tile_fc.", "classifier.", "perms"),
                                about="whole-image 2x2 puzzles (the variant that learns at 32 px; see notebook 02)")

    def __init__(self, encoder: Encoder, cfg: JigsawConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or JigsawConfig()
        self.encoder = encoder
        T = cfg.grid ** 2
        perms, min_distance = greedy_permutations(T, cfg.num_permutations, cfg.permutation_seed)
        if cfg.min_hamming is not None and min_distance[-1] < cfg.min_hamming:
            n_ok = int((min_distance >= cfg.min_hamming).sum())
            raise ValueError(f"only the first {n_ok} permutations of the paper's set for {T} tiles (largest mean "
                             f"distance) keep a minimum Hamming distance of {cfg.min_hamming}, fewer than "
                             f"num_permutations={cfg.num_permutations}: ask for at most {n_ok} or a smaller min_hamming.")
        # (P, T); a state-dict buffer, so a trained model keeps the set it learned with (a reference
        # built before the set followed the largest-mean rule loads its own)
        self.register_buffer("perms", perms)
        if cfg.whole_image:
            # the variant: one pass over the whole puzzle, an MLP on the flattened last feature map
            was_training = encoder.training
            with torch.no_grad():
                fmap = encoder.eval().feature_map(torch.zeros(1, encoder.mean.shape[1], cfg.image_size, cfg.image_size))
            encoder.train(was_training)
            self.tile_fc = None
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(fmap[0].numel(), cfg.hidden_dim),
                                            nn.ReLU(inplace=True), nn.Linear(cfg.hidden_dim, cfg.num_permutations))
            return
        # fc6 on each tile with shared weights, then fc7 and fc8 on the concatenation, as both codes
        # (train_val_cfn_jps.prototxt: fc6_s1..fc6_s9 into a Concat, fc7, fc8; JigsawNetwork.py)
        self.tile_fc = nn.Sequential(nn.Linear(encoder.dim, cfg.tile_dim), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(nn.Linear(T * cfg.tile_dim, cfg.hidden_dim), nn.ReLU(inplace=True),
                                        nn.Linear(cfg.hidden_dim, cfg.num_permutations))

    @property
    def min_distance(self) -> int:
        """The minimum Hamming distance between two permutations of the set the model holds."""
        return min_hamming_distance(self.perms)

    def normalise_tiles(self, tiles: torch.Tensor) -> torch.Tensor:
        """Per-tile normalisation (B, T, C, t, t): each tile gets zero mean and unit std per
        channel, written in the encoder's input space (its own dataset normalisation then gives
        exactly that), so no tile can be placed by its brightness or contrast alone."""
        if not self.cfg.per_tile_norm:
            return tiles
        mean = tiles.mean((-2, -1), keepdim=True)
        std = tiles.std((-2, -1), keepdim=True)
        return (tiles - mean) / (std + 1e-3) * self.encoder.std + self.encoder.mean

    def puzzles(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Random puzzles: (B, C, H, W) -> shuffled tiles (B, T, C, t, t), labels (B,) into ``perms``."""
        images = random_grayscale(images, self.cfg.gray_p)
        labels = torch.randint(len(self.perms), (images.shape[0],), device=images.device)
        return shuffle_tiles(cut_tiles(images, self.cfg), self.perms[labels]), labels

    def classify(self, shuffled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shuffled tiles (B, T, C, t, t) -> permutation logits (B, P) and tile features (B, T, D)."""
        B, T = shuffled.shape[:2]
        if self.cfg.whole_image:
            puzzle = place_tiles(self.normalise_tiles(shuffled), self.cfg, fill=self.encoder.mean)
            fmap = self.encoder.feature_map(puzzle)                        # (B, D, h, w)
            return self.classifier(fmap), fmap.mean((2, 3)).unsqueeze(1)  # features: (B, 1, D)
        h = self.encoder(self.normalise_tiles(shuffled).flatten(0, 1))   # (B*T, D): one pass over all tiles
        z = self.tile_fc(h).view(B, -1)                                  # (B, T * tile_dim), in position order
        return self.classifier(z), h.view(B, T, -1)

    def forward(self, images: torch.Tensor) -> MethodOutput:
        """images: (B, C, H, W) in [0, 1]."""
        shuffled, labels = self.puzzles(images)
        logits, h = self.classify(shuffled)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(1) == labels).float().mean().detach()
        # the collapse signal reads the mean tile feature of each image (no extra whole-image pass)
        return MethodOutput(loss, features=h.mean(1).detach(),
                            extras={"logits": logits.detach(), "labels": labels, "accuracy": accuracy})

    @torch.no_grad()
    def solve(self, shuffled: torch.Tensor) -> torch.Tensor:
        """Probabilities over the permutation set (B, P) for shuffled tiles (B, T, C, t, t), eval mode."""
        was_training = self.training
        self.eval()
        try:
            return self.classify(shuffled.to(self.perms.device).float())[0].softmax(1).cpu()
        finally:
            self.train(was_training)

    @torch.no_grad()
    def puzzle_accuracy(self, images: torch.Tensor, cfg: JigsawConfig | None = None, seed: int = 0,
                        batch_size: int = 256) -> float:
        """Share of puzzles solved: uint8 ``images (N, C, H, W)``, each cut with ``cfg`` (default:
        the method's own; the grid must match) and shuffled by a random permutation of the set."""
        cfg = cfg or self.cfg
        g = torch.Generator().manual_seed(seed)
        labels = torch.randint(len(self.perms), (len(images),), generator=g)
        device = self.perms.device
        right = 0
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):   # leave the caller's RNG alone
            torch.manual_seed(seed)                       # the same jitter every call
            for i in range(0, len(images), batch_size):
                x = images[i: i + batch_size].to(device).float().div(255)
                y = labels[i: i + batch_size].to(device)
                shuffled = shuffle_tiles(cut_tiles(x, cfg), self.perms[y])
                right += int((self.solve(shuffled).argmax(1) == y.cpu()).sum())
        return right / len(images)
