import itertools
import math

import numpy as np
import pytest
import torch

from sslkit.backbones import build_encoder
from sslkit.methods import METHODS
from sslkit.methods.jigsaw import (Jigsaw, JigsawConfig, assemble, cut_tiles, greedy_permutations,
                                   mean_distance_selection, mean_hamming_distance, min_hamming_distance,
                                   shuffle_tiles, unshuffle_tiles)


def make(channels=3, **kw):
    torch.manual_seed(0)
    enc = build_encoder("small_cnn", channels, [0.5] * channels, [0.25] * channels)
    return Jigsaw(enc, JigsawConfig(**kw))


def test_registered():
    assert METHODS["jigsaw"] == (JigsawConfig, Jigsaw)


def test_a_permutation_then_its_inverse_gives_the_original_tiles():
    tiles = torch.rand(5, 9, 3, 4, 4)
    perms = torch.stack([torch.randperm(9) for _ in range(5)])
    shuffled = shuffle_tiles(tiles, perms)
    assert not torch.equal(shuffled, tiles)
    for b in range(5):
        for i in range(9):   # position i shows the tile from position perms[b, i]
            assert torch.equal(shuffled[b, i], tiles[b, perms[b, i]])
    assert torch.equal(unshuffle_tiles(shuffled, perms), tiles)


def test_tiles_are_cut_from_their_cells_and_tile_the_image_without_jitter():
    cfg = JigsawConfig(image_size=30, tile_fraction=1.0)          # 10-px cells, tiles fill them
    x = torch.rand(2, 3, 30, 30)
    tiles = cut_tiles(x, cfg, jitter=False)
    assert tiles.shape == (2, 9, 3, 10, 10)
    assert torch.equal(assemble(tiles, 3, gap=0), x)


def test_jittered_tiles_stay_inside_their_cells():
    cfg = JigsawConfig(image_size=64)                            # 21-px cells, 18-px tiles
    ramp = torch.arange(64.0)
    x = torch.stack([ramp.view(64, 1).expand(64, 64), ramp.view(1, 64).expand(64, 64), torch.zeros(64, 64)])[None]
    tiles = cut_tiles(x.expand(4, -1, -1, -1), cfg)              # channel 0 = row, channel 1 = column
    t = cfg.tile_size
    for i in range(9):
        r, c = divmod(i, 3)
        top, left = tiles[:, i, 0, 0, 0], tiles[:, i, 1, 0, 0]
        assert ((top >= r * 21) & (top + t <= (r + 1) * 21 + 1)).all()
        assert ((left >= c * 21) & (left + t <= (c + 1) * 21 + 1)).all()


@pytest.mark.parametrize("size", [10, 100, 1000])
def test_permutation_set_has_the_size_and_minimum_distance_reported(size):
    perms, min_distance = greedy_permutations(9, size, 0)
    assert perms.shape == (size, 9)
    assert all(sorted(p) == list(range(9)) for p in perms.tolist())
    assert len({tuple(p) for p in perms.tolist()}) == size
    assert min_hamming_distance(perms) == min_distance[-1]
    for n in (2, size // 2, size):     # the curve is right for every prefix, too
        assert min_hamming_distance(perms[:n]) == min_distance[n - 1]


def _authors_selection(candidates: np.ndarray, size: int, first: int) -> np.ndarray:
    """bbrattoli/JigsawPuzzlePytorch, select_permutations.py (--selection max), written out: the chosen
    rows leave the pool, and the next is the argmax of the mean normalised Hamming distance to all chosen."""
    pool = candidates.copy()
    chosen = pool[first][None]
    pool = np.delete(pool, first, axis=0)
    for _ in range(size - 1):
        # cdist(P, P_hat, 'hamming').mean(0), counted in integers (the same argmax: the script's float
        # mean only breaks some exact ties by rounding error)
        d = (chosen[:, None, :] != pool[None, :, :]).sum(-1).sum(0)
        j = d.argmax()
        chosen = np.concatenate([chosen, pool[j][None]])
        pool = np.delete(pool, j, axis=0)
    return chosen


@pytest.mark.parametrize("n_tiles, size, first", [(4, 24, 7), (5, 40, 0), (6, 60, 100)])
def test_the_set_is_the_authors_algorithm_1(n_tiles, size, first):
    cand = np.array(list(itertools.permutations(range(n_tiles))))
    ours = cand[mean_distance_selection(cand, size, first)]
    assert np.array_equal(ours, _authors_selection(cand, size, first))


def test_the_package_set_picks_the_largest_mean_distance_and_reports_its_minimum():
    perms, min_distance = greedy_permutations(5, 60, 0)      # all 120 permutations of 5 tiles are candidates
    cand = torch.tensor(list(itertools.permutations(range(5))))
    for i in range(1, 60):
        to_set = (cand[:, None, :] != perms[None, :i, :]).sum(-1).float().mean(1)     # (120,) mean distance
        taken = (cand[:, None, :] == perms[None, :i, :]).all(-1).any(1)
        assert to_set[(cand == perms[i]).all(1)].item() == to_set[~taken].max().item()
    # the mean criterion keeps the set spread on average; its minimum distance is only measured
    assert mean_hamming_distance(perms) > 4 - 1e-9
    assert min_distance[-1] == min_hamming_distance(perms)


def test_all_permutations_of_four_tiles():
    perms, min_distance = greedy_permutations(4, 24, 0)
    assert len({tuple(p) for p in perms.tolist()}) == math.factorial(4)
    assert min_distance[0] == 4 and min_distance[-1] == 2


def test_the_shipped_reference_keeps_the_permutation_set_it_was_trained_with():
    """The jigsaw reference was trained before the set followed the largest-mean-distance rule: its own order of the 24
    permutations travels in its weights (the ``perms`` buffer) and is what the loaded model uses."""
    from safetensors.torch import load_file

    from sslkit.reference import REFERENCE_DIR, load_reference

    stored = load_file(str(REFERENCE_DIR / "jigsaw.safetensors"))["perms"].long()
    loaded = load_reference("jigsaw").method
    assert torch.equal(loaded.perms.cpu(), stored)
    assert len({tuple(p) for p in stored.tolist()}) == 24 and loaded.min_distance == min_hamming_distance(stored)


def test_forward_shapes_and_finite_loss():
    m = make(num_permutations=50)
    out = m(torch.rand(4, 3, 32, 32))
    assert torch.isfinite(out.loss)
    assert out.features.shape == (4, 256)
    assert out.extras["logits"].shape == (4, 50)


def test_per_tile_normalisation_gives_zero_mean_unit_std_after_the_encoder_norm():
    m = make(num_permutations=10)
    tiles = torch.rand(2, 9, 3, 8, 8) * 0.3 + 0.5
    z = (m.normalise_tiles(tiles) - m.encoder.mean) / m.encoder.std     # (1, C, 1, 1) broadcasts over (B, T)
    assert torch.allclose(z.mean((-2, -1)), torch.zeros(2, 9, 3), atol=1e-5)
    assert torch.allclose(z.std((-2, -1)), torch.ones(2, 9, 3), atol=0.02)   # up to the 1e-3 guard


def test_loss_falls_on_a_small_batch(fit):
    m = make(channels=1, num_permutations=10, gray_p=0.0, hidden_dim=64, tile_dim=32)
    # smooth images with structure, so tiles can be told apart
    x = torch.nn.functional.interpolate(torch.rand(8, 1, 4, 4), size=(32, 32), mode="bilinear")
    losses = fit(m, x, steps=40, lr=1e-3)
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_solve_gives_a_distribution_over_the_set():
    m = make(num_permutations=20)
    shuffled, labels = m.puzzles(torch.rand(3, 3, 32, 32))
    p = m.solve(shuffled)
    assert p.shape == (3, 20) and torch.allclose(p.sum(1), torch.ones(3), atol=1e-5)
    assert m.training


def test_a_grid_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match="8x8 grid on 64-px images gives 7-px tiles"):
        JigsawConfig(grid=8)
    JigsawConfig(grid=8, image_size=96)     # fits once the images are resized larger


def test_more_permutations_than_exist_is_refused():
    with pytest.raises(ValueError, match="more than the 24 permutations of 4 tiles"):
        JigsawConfig(grid=2, num_permutations=25)


def test_more_permutations_than_the_distance_allows_is_refused():
    _, min_distance = greedy_permutations(9, 1000, 0)
    n_ok = int((min_distance >= 7).sum())
    with pytest.raises(ValueError, match=f"only the first {n_ok} permutations .* keep a minimum Hamming distance of 7"):
        make(num_permutations=1000, min_hamming=7)
    m = make(num_permutations=n_ok, min_hamming=7)          # exactly as many as exist is fine
    assert min_hamming_distance(m.perms) >= 7


def run_cli(*args):
    import os
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "sslkit", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=600)


@pytest.mark.parametrize("config,says", [
    (["grid=8"], "8x8 grid on 32-px images gives 3-px tiles"),   # the quick profile cuts 32-px images
    (["num_permutations=1000", "min_hamming=7"], "keep a minimum Hamming distance of 7"),
    (["grid=2", "num_permutations=100"], "more than the 24 permutations of 4 tiles"),
])
def test_cli_bad_jigsaw_settings_give_one_line_and_write_nothing(tmp_path, config, says):
    args = [a for c in config for a in ("--config", c)]
    r = run_cli("pretrain", "jigsaw", "--dataset", "digits", *args, "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], r.stderr
    assert not (tmp_path / "out").exists()


def test_puzzle_viewer_and_permutation_explorer_draw():
    import matplotlib.pyplot as plt

    from sslkit.widgets import jigsaw_viewer, permutation_set_explorer

    m = make(num_permutations=30)
    w = jigsaw_viewer((torch.rand(3, 3, 32, 32) * 255).to(torch.uint8), m)
    assert len(plt.gcf().axes) == 4                 # image, tiles, puzzle, the model's solution
    w.children[0].children[0].children[1].value = 2  # a 2x2 grid: no solution from a 3x3 model
    assert len(plt.gcf().axes) == 3
    plt.close("all")
    permutation_set_explorer(max_size=50)
    assert "any two differ in at least" in plt.gcf().axes[0].get_title()
    plt.close("all")


def test_puzzle_viewer_offers_only_puzzles_the_image_size_allows():
    """On 32-px images a 4x4 grid leaves 8-px cells, no room for a gap: the grid slider stops at 3,
    and the 3x3 grid's smallest tile / cell is the one that still gives 8-px tiles."""
    import matplotlib.pyplot as plt

    from sslkit.methods.jigsaw import JigsawConfig
    from sslkit.widgets import jigsaw_viewer

    w = jigsaw_viewer((torch.rand(2, 3, 32, 32) * 255).to(torch.uint8),
                      cfg=JigsawConfig(image_size=32, grid=2, num_permutations=24))
    _, grid, fraction, _ = [c for box in w.children[0].children for c in box.children]
    assert (grid.min, grid.max, fraction.min) == (2, 3, 0.5)
    grid.value = 3                                    # a finer grid raises the smallest gap's bound
    assert fraction.min == 0.75 and fraction.value >= 0.75
    assert len(plt.gcf().axes) == 3                   # image, tiles, puzzle: drawn, not an error message
    plt.close("all")


def test_puzzle_accuracy_is_repeatable_and_leaves_the_global_rng_alone():
    m = make(num_permutations=10)
    x = (torch.rand(40, 3, 32, 32) * 255).to(torch.uint8)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = m.puzzle_accuracy(x)
    assert torch.equal(torch.get_rng_state(), state)
    assert a == m.puzzle_accuracy(x) and 0.0 <= a <= 1.0
