"""ipywidgets controls for the notebooks: each returns a widget that redraws a figure live."""

from __future__ import annotations

import math

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import display

from sslkit.augment import AugmentConfig, simclr_augment
from sslkit.losses import nt_xent
from sslkit.viz import image_grid, to_display


# labels as wide as their text: ipywidgets' default label width cuts longer ones short
# ("1 - mome..." in JupyterLab)
_FIT_LABEL = {"description_width": "initial"}


class Explorer(W.VBox):
    """An explorer's controls and figure. Where no widget front end is there (a hosted notebook whose
    widget manager failed, a static page) the cell still shows the figure drawn at the start (the
    Output widget's first draw reaches the cell's output then) and, instead of ``VBox(children=...)``,
    this one-line note."""

    NOTE = ("(Interactive controls need a widget front end, such as JupyterLab or Colab with widgets on: "
            "the figure above shows the first setting.)")

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, tuple):
            bundle = bundle[0]
        return {**bundle, "text/plain": self.NOTE}


def _slider(description: str, value: float, lo: float, hi: float, step: float = 0.05,
            label_width: str = "120px", width: str = "380px") -> W.FloatSlider:
    return W.FloatSlider(value=value, min=lo, max=hi, step=step, description=description,
                         continuous_update=False, style={"description_width": label_width},
                         layout=W.Layout(width=width))


def _on_change(controls: dict[str, W.ValueWidget], draw) -> None:
    """Call ``draw(**values)`` now and whenever a control changes."""
    def redraw(_=None):
        draw(**{name: c.value for name, c in controls.items()})
    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()


def augmentation_explorer(images: torch.Tensor, n_views: int = 16, cfg: AugmentConfig | None = None,
                          seed: int = 0) -> W.Widget:
    """A slider per augmentation strength; many random views of one image, redrawn live.

    Args:
        images: uint8 ``(N, C, H, W)``; the image index slider picks one of them.
    """
    cfg = cfg or AugmentConfig()
    controls = {
        "index": W.IntSlider(value=0, min=0, max=len(images) - 1, description="image",
                             continuous_update=False, layout=W.Layout(width="380px")),
        "crop_scale_min": _slider("crop scale min", cfg.crop_scale_min, 0.05, 1.0),
        "flip_p": _slider("flip p", cfg.flip_p, 0.0, 1.0),
        "jitter_strength": _slider("jitter strength", cfg.jitter_strength, 0.0, 1.5),
        "jitter_p": _slider("jitter p", cfg.jitter_p, 0.0, 1.0),
        "gray_p": _slider("grayscale p", cfg.gray_p, 0.0, 1.0),
        "blur_p": _slider("blur p", cfg.blur_p, 0.0, 1.0),
        "solarize_p": _slider("solarize p", cfg.solarize_p, 0.0, 1.0),
    }
    out = W.Output()

    def draw(**values):
        index = values.pop("index")
        torch.manual_seed(seed)  # the same draws for every setting, so only the strength changes
        x = images[index: index + 1].float().div(255).expand(n_views, -1, -1, -1)
        views = simclr_augment(x, AugmentConfig(**values))
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, 2, figsize=(11, 3.2), gridspec_kw={"width_ratios": [1, 4]})
            axes[0].imshow(to_display(images[index: index + 1])[0], interpolation="nearest")
            axes[0].set_title("original")
            axes[0].axis("off")
            image_grid(views, nrow=n_views // 2, ax=axes[1], title=f"{n_views} random views")
            plt.show()

    _on_change(controls, draw)
    return Explorer([W.HBox([W.VBox(list(controls.values())[:4]), W.VBox(list(controls.values())[4:])]), out])


def temperature_explorer(z1: torch.Tensor, z2: torch.Tensor, anchor: int = 0) -> W.Widget:
    """How the temperature shapes NT-Xent for one anchor: the softmax over its 2N - 1
    candidates (the positive in red), and the batch's loss at that temperature.

    Args:
        z1, z2: ``(N, D)`` embeddings of two views of the same N images.
    """
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = len(z1)
    sims = z[anchor] @ z.T
    keep = torch.arange(2 * n) != anchor
    cand = sims[keep]
    positive = (anchor + n) - 1                     # the positive's index once the anchor is removed
    slider = W.FloatLogSlider(value=0.5, base=10, min=-2, max=1, step=0.05, description="temperature",
                              continuous_update=False, style=_FIT_LABEL, layout=W.Layout(width="420px"))
    out = W.Output()

    def draw(t):
        p = torch.softmax(cand / t, 0)
        order = torch.argsort(p, descending=True)
        rank = int((order == positive).nonzero())
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(9, 3))
            colors = ["tab:red" if int(i) == positive else "tab:blue" for i in order]
            ax.bar(range(len(p)), p[order].numpy(), color=colors, width=1.0)
            ax.set_xlabel("candidates, sorted by probability (red: the other view of the anchor)")
            ax.set_ylabel("softmax probability")
            ax.set_title(f"T = {t:.3f}: positive gets p = {float(p[positive]):.3f} (rank {rank + 1} of {len(p)}); "
                         f"batch NT-Xent = {float(nt_xent(z1, z2, t)):.3f}, chance level log(2N-1) = "
                         f"{torch.log(torch.tensor(2.0 * n - 1)):.3f}", fontsize=9)
            plt.show()

    _on_change({"t": slider}, draw)
    return Explorer([slider, out])


def show(widget: W.Widget) -> None:
    """Display a widget (a thin wrapper so notebooks read the same everywhere)."""
    display(widget)


# ------------------------------------------------------------------------ rotation and jigsaw

def _int_slider(description: str, value: int, lo: int, hi: int) -> W.IntSlider:
    return W.IntSlider(value=value, min=lo, max=hi, description=description, continuous_update=False,
                       style={"description_width": "120px"}, layout=W.Layout(width="380px"))


def rotation_explorer(method, images: torch.Tensor, labels: torch.Tensor | None = None,
                      classes: list[str] | None = None) -> W.Widget:
    """Pick an image and an angle; see the rotated image and the model's probability for each angle.

    Args:
        method: a trained :class:`sslkit.methods.rotation.Rotation`.
        images: uint8 ``(N, C, H, W)``; labels and classes only name the images.
    """
    angles = method.cfg.angles
    controls = {"index": _int_slider("image", 0, 0, len(images) - 1),
                "k": W.Dropdown(options=[(f"{a:g}°", k) for k, a in enumerate(angles)], value=0,
                                description="rotate by", style={"description_width": "120px"})}
    out = W.Output()

    def draw(index, k):
        probs = method.rotation_probs(images[index: index + 1])[0, k]          # (K,)
        views, _ = method.rotations(images[index: index + 1].float().div(255).to(next(method.parameters()).device))
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, 2, figsize=(9, 3), gridspec_kw={"width_ratios": [1, 2.2]})
            axes[0].imshow(to_display(views[k: k + 1])[0], interpolation="nearest")
            name = f" ({classes[int(labels[index])]})" if labels is not None and classes is not None else ""
            axes[0].set_title(f"image {index}{name}, rotated {angles[k]:g}°", fontsize=9)
            axes[0].axis("off")
            colors = ["tab:green" if j == k else "tab:blue" for j in range(len(angles))]
            axes[1].bar([f"{a:g}°" for a in angles], probs.numpy(), color=colors)
            axes[1].set_ylim(0, 1)
            axes[1].set_ylabel("predicted probability")
            guess = int(probs.argmax())
            axes[1].set_title(f"model says {angles[guess]:g}° with p = {float(probs[guess]):.2f} "
                              f"({'right' if guess == k else 'wrong'}; green: the true angle)", fontsize=9)
            fig.tight_layout()
            plt.show()

    _on_change(controls, draw)
    return Explorer([W.HBox(list(controls.values())), out])


def jigsaw_viewer(images: torch.Tensor, method=None, cfg=None, seed: int = 0) -> W.Widget:
    """The puzzle viewer: pick an image, grid size, gap and permutation; see the tiles, the
    shuffled puzzle and its label, and (with a trained ``method`` and its grid) the model's
    solution put back together.

    Args:
        images: uint8 ``(N, C, H, W)``.
        method: a trained :class:`sslkit.methods.jigsaw.Jigsaw`, or None for the puzzle alone.
        cfg: the :class:`~sslkit.methods.jigsaw.JigsawConfig` to start from (default: the method's).
    """
    import math
    from dataclasses import replace

    from sslkit.methods.jigsaw import (JigsawConfig, assemble, cut_tiles, greedy_permutations, min_hamming_distance,
                                       shuffle_tiles, unshuffle_tiles)

    cfg = cfg or (method.cfg if method is not None else JigsawConfig(num_permutations=100))
    n_perms = cfg.num_permutations

    def puzzle(grid: int, tile_fraction: float) -> JigsawConfig | None:
        """The config for these settings, or None where the image size does not allow them."""
        try:
            return replace(cfg, grid=grid, tile_fraction=tile_fraction, num_permutations=min(n_perms, math.factorial(grid ** 2)))
        except ValueError:
            return None

    # the sliders offer only puzzles the image size allows (tiles of at least MIN_TILE px): a grid
    # is left out when its cells leave no room for a gap (one tile size only), and a finer grid
    # raises the smallest tile / cell
    fractions = [round(0.5 + 0.05 * i, 2) for i in range(11)]
    grids = [g for g in range(2, 6) if len({c.tile_size for f in fractions if (c := puzzle(g, f))}) > 1]
    if cfg.grid not in grids:
        grids = sorted({*grids, cfg.grid})

    def smallest_fraction(grid: int) -> float:
        return next(f for f in fractions if puzzle(grid, f))

    controls = {"index": _int_slider("image", 0, 0, len(images) - 1),
                "grid": _int_slider("grid", cfg.grid, grids[0], grids[-1]),
                "tile_fraction": _slider("tile / cell", cfg.tile_fraction, smallest_fraction(cfg.grid), 1.0),
                "label": _int_slider("permutation", 0, 0, n_perms - 1)}
    # registered before the redraw, so the gap is valid for the new grid when the picture is drawn
    controls["grid"].observe(lambda change: setattr(controls["tile_fraction"], "min", smallest_fraction(change.new)),
                             names="value")
    out = W.Output()

    def draw(index, grid, tile_fraction, label):
        try:
            c = replace(cfg, grid=grid, tile_fraction=tile_fraction, num_permutations=min(n_perms, math.factorial(grid ** 2)))
        except ValueError as e:               # tiles too small for this image size: say so, draw nothing
            with out:
                out.clear_output(wait=True)
                print(e)
            return
        own = method is not None and grid == method.cfg.grid and c.num_permutations == len(method.perms)
        # a trained model's puzzles come from its own set (a reference keeps the set it was trained with)
        perms = method.perms.cpu() if own else greedy_permutations(grid ** 2, c.num_permutations, c.permutation_seed)[0]
        label = min(label, len(perms) - 1)
        torch.manual_seed(seed + index)          # the same jitter while only the permutation changes
        tiles = cut_tiles(images[index: index + 1].float().div(255), c)        # (1, T, C, t, t)
        shuffled = shuffle_tiles(tiles, perms[label: label + 1])
        panels = [("the tiles, in place (gaps and jitter)", assemble(tiles, grid, gap=2)),
                  (f"shuffled: permutation {label} of {len(perms)}\n{perms[label].tolist()}", assemble(shuffled, grid, gap=2))]
        if method is not None and grid == method.cfg.grid and abs(tile_fraction - method.cfg.tile_fraction) < 1e-6:
            probs = method.solve(shuffled)[0]
            guess = int(probs.argmax())
            solved = unshuffle_tiles(shuffled, method.perms[guess: guess + 1].cpu())
            verdict = "right" if guess == label else "wrong"
            panels.append((f"model's solution: permutation {guess}\n(p = {float(probs[guess]):.2f}, {verdict})",
                           assemble(solved, grid, gap=2)))
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.2 * (len(panels) + 1), 3.4))
            axes[0].imshow(to_display(images[index: index + 1])[0], interpolation="nearest")
            axes[0].set_title(f"image {index}", fontsize=9)
            for ax, (title, img) in zip(axes[1:], panels):
                ax.imshow(to_display(img)[0], interpolation="nearest")
                ax.set_title(title, fontsize=8)
            for ax in axes:
                ax.axis("off")
            fig.suptitle(f"{grid}x{grid} grid, {c.tile_size}-px tiles in {c.cell_size}-px cells of the image resized "
                         f"to {c.image_size} px; the set's minimum Hamming distance is {min_hamming_distance(perms)}",
                         fontsize=9)
            fig.tight_layout()
            plt.show()

    _on_change(controls, draw)
    return Explorer([W.HBox([W.VBox(list(controls.values())[:2]), W.VBox(list(controls.values())[2:])]), out])


def permutation_set_explorer(n_tiles: int = 9, max_size: int = 2000, seed: int = 0) -> W.Widget:
    """The permutation set of the jigsaw code (select_permutations.py: each new permutation the one with the largest mean
    Hamming distance to those chosen) as it grows: set size against its mean and its minimum
    distance, and the pairwise distances of the chosen set beside those of random permutations."""
    import numpy as np

    from sslkit.methods.jigsaw import greedy_permutations

    perms, min_distance = greedy_permutations(n_tiles, max_size, seed)
    p_t = perms.numpy().T
    sums = np.array([0] + [(p_t[:, :i] != p_t[:, i:i + 1]).sum() for i in range(1, max_size)]).cumsum()
    sizes = np.arange(1, max_size + 1)
    mean_distance = np.where(sizes > 1, sums / np.maximum(1, sizes * (sizes - 1) / 2), np.nan)   # over the pairs
    size = W.IntSlider(value=min(100, max_size), min=2, max=max_size, description="set size",
                       continuous_update=False, style=_FIT_LABEL, layout=W.Layout(width="420px"))
    out = W.Output()

    def pairwise(p: torch.Tensor) -> torch.Tensor:
        d = (p[:, None, :] != p[None, :, :]).sum(-1)
        return d[torch.triu(torch.ones_like(d, dtype=torch.bool), 1)]

    def draw(size):
        g = torch.Generator().manual_seed(seed)
        n = min(size, 1000)     # the histograms use at most 1000 permutations (500k pairs)
        random_set = torch.stack([torch.randperm(n_tiles, generator=g) for _ in range(n)])
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
            axes[0].plot(sizes, mean_distance, label="mean distance (what the selection maximises)")
            axes[0].plot(sizes, min_distance, label="minimum distance (measured)")
            axes[0].axhline(n_tiles - 1, color="gray", ls=":", lw=1, label=f"random permutations' mean ({n_tiles - 1})")
            axes[0].axvline(size, color="tab:red", ls="--")
            axes[0].set_xscale("log")
            axes[0].set_ylim(0, n_tiles + 0.5)
            axes[0].set_xlabel("set size")
            axes[0].set_ylabel("Hamming distance")
            axes[0].legend(fontsize=7, loc="lower left")
            axes[0].set_title(f"{size} permutations of {n_tiles} tiles: mean distance {mean_distance[size - 1]:.2f}, "
                              f"any two differ in at least {int(min_distance[size - 1])} positions", fontsize=9)
            bins = torch.arange(n_tiles + 2) - 0.5
            axes[1].hist(pairwise(perms[:n]).numpy(), bins=bins.numpy(), alpha=0.7, density=True,
                         label="largest mean distance")
            axes[1].hist(pairwise(random_set).numpy(), bins=bins.numpy(), alpha=0.5, density=True, label="random")
            axes[1].set_xlabel("Hamming distance between two permutations of the set")
            axes[1].set_title(f"pairwise distances of {n}: closest pair {int(pairwise(perms[:n]).min())} "
                              f"(largest mean), {int(pairwise(random_set).min())} (random)", fontsize=9)
            axes[1].legend(fontsize=8)
            fig.tight_layout()
            plt.show()

    _on_change({"size": size}, draw)
    return Explorer([size, out])


def _synthetic_weight_path(steps: int, seed: int) -> torch.Tensor:
    """A stand-in for one online weight during training: a slow drift plus step-to-step noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, steps)
    return torch.sin(3 * torch.pi * t) + 0.5 * t + 0.15 * torch.randn(steps, generator=g).cumsum(0) / steps ** 0.5 \
        + 0.1 * torch.randn(steps, generator=g)


def ema_explorer(online: torch.Tensor | None = None, steps: int = 400, seed: int = 0) -> W.Widget:
    """BYOL's target as an exponential moving average: a momentum slider, the online weight's path
    (grey) and the target's (red), target <- m * target + (1 - m) * online after every step.

    Args:
        online: ``(T,)`` values of one online weight over T steps (e.g. recorded in training);
            None draws a synthetic path of ``steps`` steps.
    """
    from sslkit.methods.byol import momentum_at

    path = (online if online is not None else _synthetic_weight_path(steps, seed)).float().flatten()
    T = len(path)
    momentum = W.FloatLogSlider(value=0.01, base=10, min=-3, max=0, step=0.05, description="1 - momentum",
                                continuous_update=False, style=_FIT_LABEL, layout=W.Layout(width="420px"))
    schedule = W.Checkbox(value=False, description="cosine schedule to 1 (as BYOL)", indent=False,
                          style=_FIT_LABEL, layout=W.Layout(width="auto"))
    out = W.Output()

    def draw(one_minus, cosine):
        base = 1.0 - one_minus
        target = torch.empty(T)
        target[0] = path[0]            # the target starts as a copy of the online network
        for k in range(1, T):
            m = momentum_at(k / T, base) if cosine else base
            target[k] = m * target[k - 1] + (1 - m) * path[k]
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(9, 3.2))
            ax.plot(path.numpy(), color="0.6", lw=1, label="online weight")
            ax.plot(target.numpy(), color="tab:red", lw=2, label="target (EMA)")
            ax.set_xlabel("training step")
            ax.set_ylabel("weight value")
            ax.legend(fontsize=8, loc="upper left")
            ax.set_title(f"m = {base:.4f}: the target averages the last ~1/(1-m) = {1 / max(one_minus, 1e-9):.0f} "
                         f"steps{' (then slows to a stop as m -> 1)' if cosine else ''}", fontsize=10)
            fig.tight_layout()
            plt.show()

    _on_change({"one_minus": momentum, "cosine": schedule}, draw)
    return Explorer([W.HBox([momentum, schedule]), out])


def mask_explorer(mae, images: torch.Tensor, n: int = 6, seed: int = 0) -> W.Widget:
    """MAE's mask-ratio slider on a trained model: original, masked input, what the decoder is trained
    to output and the model's reconstruction of ``n`` images, with the masked-patch error at that ratio.

    The reconstruction's hidden patches are the model's prediction alone (:meth:`MAE.reconstruct`):
    with per-patch normalised targets both the target and the reconstruction rows are drawn in those
    units, never with the hidden patches' true mean and spread.

    Args:
        mae: a trained :class:`sslkit.methods.mae.MAE`.
        images: uint8 ``(N, C, H, W)``; the first ``n`` are shown.
    """
    L = mae.grid ** 2
    ratio = W.FloatSlider(value=mae.cfg.mask_ratio, min=0.05, max=round(1 - 1 / L, 2), step=0.05,
                          description="mask ratio", continuous_update=False, style=_FIT_LABEL,
                          layout=W.Layout(width="420px"))
    x = images[:n].float().div(255).to(mae.encoder.mean.device)
    out = W.Output()
    normalised = mae.cfg.norm_pix_loss

    def draw(r):
        r = min(max(r, 0.5 / L + 1e-6), 1 - 0.5 / L - 1e-6)   # keep at least one patch on each side
        was_training = mae.training
        mae.eval()
        torch.manual_seed(seed)          # the same noise for every ratio: masks grow as the ratio does
        rec = mae.reconstruct(x, r)
        mae.train(was_training)
        with out:
            out.clear_output(wait=True)
            if normalised:
                rows = torch.cat([rec["original"], rec["masked"], rec["target"], rec["reconstruction"]]).cpu()
                names = ("rows: original | masked input | target | reconstruction\n"
                         "the last two in per-patch normalised units; hidden patches: the prediction alone")
            else:
                rows = torch.cat([rec["original"], rec["masked"], rec["reconstruction"]]).cpu()
                names = "rows: original | masked input | reconstruction\nhidden patches: the prediction, in pixels"
            fig, ax = plt.subplots(figsize=(1.1 * n + 1, 1.3 * (rows.shape[0] // n) + 0.9))
            image_grid(rows, nrow=n, ax=ax, title=f"{names}\nmask ratio {r:.2f}: {int(round(L * (1 - r)))} of {L} "
                                                 f"patches visible; MSE on the hidden patches {float(rec['loss']):.3f}")
            plt.show()

    _on_change({"r": ratio}, draw)
    return Explorer([ratio, out])


def queue_explorer(batch_size: int = 256) -> W.Widget:
    """MoCo's queue: sliders for the queue size K, the key encoder's momentum m and the batch size B.
    The text says how many negatives each query sees (K, whatever B) and how old, in steps, the
    oldest keys are (K / B); the plot shows how much each past step's query encoder weighs in the
    key encoder today, m^t (1 - m), with the queue's span marked: the keys in the queue were encoded
    by key encoders that old, so with a fast-moving key encoder (small m) the oldest keys were made
    by a network that no longer exists."""
    K = W.IntSlider(value=4096, min=256, max=65536, step=256, description="queue size K", continuous_update=False,
                    style=_FIT_LABEL, layout=W.Layout(width="420px"))
    momentum = W.FloatLogSlider(value=0.01, base=10, min=-4, max=0, step=0.05, description="1 - momentum",
                                continuous_update=False, style=_FIT_LABEL, layout=W.Layout(width="420px"))
    batch = W.IntSlider(value=batch_size, min=8, max=1024, step=8, description="batch size B", continuous_update=False,
                        style=_FIT_LABEL, layout=W.Layout(width="420px"))
    out = W.Output()

    def draw(k, one_minus, b):
        m = 1.0 - one_minus
        span = math.ceil(k / b)                     # steps the queue reaches back
        horizon = max(2 * span, int(3 / max(one_minus, 1e-6)), 10)
        t = torch.arange(horizon + 1, dtype=torch.float64)
        weight = (m ** t) * (1 - m)                 # share of the query encoder of t steps ago in today's key encoder
        kept = m ** span                            # the part of today's key encoder already there for the oldest key
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(9, 3.2))
            ax.plot(t.numpy(), weight.numpy(), color="tab:red", lw=2)
            ax.axvspan(0, span, color="tab:blue", alpha=0.15, label=f"the queue: keys up to {span} steps old")
            ax.set_xlabel("steps ago")
            ax.set_ylabel("weight in today's key encoder")
            ax.legend(fontsize=8, loc="upper right")
            ax.set_title(f"each query sees {k} negatives (SimCLR at batch {b}: {2 * b - 2}); the oldest are {span} steps "
                         f"old;\nthe key encoder averages the last ~{1 / max(one_minus, 1e-9):.0f} steps "
                         f"(m^{span} = {kept:.2f} of it was already there when the oldest key was made)", fontsize=9)
            fig.tight_layout()
            plt.show()

    _on_change({"k": K, "one_minus": momentum, "b": batch}, draw)
    return Explorer([K, momentum, batch, out])


def comparison_explorer(entries, data, n_points: int = 1000, cache: dict | None = None) -> W.Widget:
    """The comparison's embeddings: choose the encoders and the projection (UMAP, t-SNE, PCA); one
    panel per encoder, the same test images coloured by class. Projections are kept in ``cache``,
    so going back to a choice is instant."""
    from sslkit.compare import embedding_grid

    cache = {} if cache is None else cache
    names = [e.name for e in entries]
    pick = W.SelectMultiple(options=names, value=tuple(names), rows=min(10, len(names)), description="encoders",
                            style=_FIT_LABEL, layout=W.Layout(width="320px"))
    how = W.Dropdown(options=[("UMAP", "umap"), ("t-SNE", "tsne"), ("PCA", "pca")], value="umap",
                     description="projection", style=_FIT_LABEL, layout=W.Layout(width="240px"))
    out = W.Output()

    def draw(chosen, projection):
        chosen_entries = [e for e in entries if e.name in chosen] or entries[:1]
        with out:
            out.clear_output(wait=True)
            embedding_grid(chosen_entries, data, n_points, projection, cache=cache)
            plt.show()

    _on_change({"chosen": pick, "projection": how}, draw)
    return Explorer([W.HBox([pick, how]), out])


# ------------------------------------------------------------------------ Barlow Twins and VICReg

def _toy_views(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of n toy inputs of 16 coordinates: 8 carry a signal shared by both views, under
    noise from 0.05 (coordinate 0, the most invariant) to 0.7; 8 are noise alone, different in each view."""
    g = torch.Generator().manual_seed(seed)
    signal = torch.cat([torch.ones(8), torch.zeros(8)])
    noise = torch.cat([torch.tensor([0.05, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7]), torch.ones(8)])
    s = torch.randn(n, 16, generator=g) * signal
    return s + torch.randn(n, 16, generator=g) * noise, s + torch.randn(n, 16, generator=g) * noise


def _fit_toy(loss, steps: int, seed: int, width: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear embedding ``(16 -> width)`` of the toy views trained by ``loss(z_a, z_b)`` (Adam, a few
    hundred steps from a fixed start); its embeddings of fresh views of new inputs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # tiny matrices: one thread is several times faster than two
    try:
        xa, xb = _toy_views(256, seed)
        w = (0.3 * torch.randn(width, 16, generator=torch.Generator().manual_seed(seed + 1))).requires_grad_()
        opt = torch.optim.Adam([w], lr=0.05)
        for _ in range(steps):
            value = loss(xa @ w.T, xb @ w.T)
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
        with torch.no_grad():
            xa, xb = _toy_views(512, seed + 100)
            return xa @ w.T, xb @ w.T
    finally:
        torch.set_num_threads(threads)


def redundancy_explorer(steps: int = 200, seed: int = 0) -> W.Widget:
    """What each term of Barlow Twins and VICReg does, live: a slider for Barlow Twins' lambda and one
    for each VICReg weight; each setting trains a small linear embedding of toy two-view data (8
    coordinates carry a signal both views share, 8 only noise) and shows, per method, the matrix its
    loss acts on, the singular-value spectrum of the embeddings (effective rank) and, per unit, how
    much the two views agree (their correlation) and how much it varies over the batch."""
    from sslkit.methods.barlowtwins import barlow_twins_terms, cross_correlation
    from sslkit.methods.vicreg import covariance, vicreg_terms
    from sslkit.viz import effective_rank, singular_spectrum

    controls = {
        "lambd": W.FloatLogSlider(value=0.0051, base=10, min=-4, max=0, step=0.1, description="BT λ (off-diagonal)",
                                  continuous_update=False, style={"description_width": "150px"},
                                  layout=W.Layout(width="420px")),
        "inv": _slider("VICReg λ (invariance)", 25, 0, 50, step=1, label_width="150px", width="420px"),
        "var": _slider("VICReg μ (variance)", 25, 0, 50, step=1, label_width="150px", width="420px"),
        "cov": _slider("VICReg ν (covariance)", 1, 0, 10, step=0.5, label_width="150px", width="420px"),
    }
    cache: dict = {}
    out = W.Output()

    def bt(lambd):
        key = ("bt", lambd)
        if key not in cache:
            def loss(a, b):
                on, off = barlow_twins_terms(cross_correlation(a, b))
                return on + lambd * off
            cache[key] = _fit_toy(loss, steps, seed)
        return cache[key]

    def vic(inv, var, cov):
        key = ("vicreg", inv, var, cov)
        if key not in cache:
            def loss(a, b):
                t = vicreg_terms(a, b)
                return inv * t["invariance"] + var * t["variance"] + cov * t["covariance"]
            cache[key] = _fit_toy(loss, steps, seed)
        return cache[key]

    def row(axes, za, zb, matrix, name, what):
        D = za.shape[1]
        off = matrix[~torch.eye(D, dtype=torch.bool)].abs().mean()
        axes[0].imshow(matrix.numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
        axes[0].set_title(f"{name}\n{what}, mean |off-diag.| {off:.2f}", fontsize=9)
        axes[0].set_xticks([])
        axes[0].set_yticks([])
        spectrum = singular_spectrum(za)
        axes[1].bar(range(1, D + 1), spectrum.numpy(), color="tab:purple")
        axes[1].set_ylim(0, 1)
        axes[1].set_xlabel("direction", fontsize=8)
        axes[1].set_title(f"singular values (share of the spread)\neffective rank {effective_rank(za):.1f} of {D}",
                          fontsize=9)
        std = za.std(0)
        agree = cross_correlation(za, zb).diagonal()
        axes[2].bar(range(1, D + 1), std.numpy(), color="0.7", label="std over the batch")
        axes[2].plot(range(1, D + 1), agree.numpy(), "o", color="tab:red", label="agreement of the views")
        axes[2].axhline(1.0, color="0.3", lw=0.8, ls=":")
        axes[2].set_ylim(-0.2, max(1.6, float(std.max())) * 1.4)      # room for the legend above the bars
        axes[2].set_xlabel("embedding unit", fontsize=8)
        axes[2].set_title(f"mean std {std.mean():.2f}, mean agreement {agree.mean():.2f}", fontsize=9)
        axes[2].legend(fontsize=7, loc="upper right", ncol=2)
        for ax in axes[1:]:
            ax.tick_params(labelsize=7)

    def draw(lambd, inv, var, cov):
        za, zb = bt(lambd)
        va, vb = vic(inv, var, cov)
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(2, 3, figsize=(11, 6.2), gridspec_kw={"width_ratios": [1, 1.3, 1.3]})
            row(axes[0], za, zb, cross_correlation(za, zb), f"Barlow Twins, λ = {lambd:.4g}", "C")
            row(axes[1], va, vb, covariance(va).clamp(-1, 1), f"VICReg, λ = {inv:g}, μ = {var:g}, ν = {cov:g}",
                "Cov(Z) (to ±1)")
            fig.tight_layout()
            plt.show()

    _on_change(controls, draw)
    return Explorer([W.HBox([W.VBox([controls["lambd"]]), W.VBox([controls["inv"], controls["var"], controls["cov"]])]),
                     out])


def attention_explorer(encoders: dict, images: torch.Tensor, n: int = 6) -> W.Widget:
    """Where each ViT's class token looks: sliders for the block (layer) and the head; one row of
    attention maps per encoder over ``n`` images, each map scaled to its own range.

    A ViT with a class token shows that token's attention over the patches (DINO's Figure 1); one
    without (MAE's) shows the mean of the patch queries' attention instead, said in its row's label
    (:func:`sslkit.backbones.class_token_attention`).

    Args:
        encoders: ``{name: ViT encoder}``, all of the same depth and number of heads.
        images: uint8 ``(N, C, H, W)``; the first ``n`` are shown.
    """
    from sslkit.backbones import class_token_attention

    x = images[:n].float().div(255)
    maps = {}
    for name, enc in encoders.items():
        was_training = enc.training
        enc.eval()
        a, has_cls = class_token_attention(enc, x.to(next(enc.parameters()).device))
        enc.train(was_training)
        maps[name] = (a.float().cpu(), has_cls)
    depth, _, heads = next(iter(maps.values()))[0].shape[:3]
    controls = {"layer": _int_slider("block (layer)", depth, 1, depth), "head": _int_slider("head", 1, 1, heads)}
    shown = to_display(images[:n])
    H, Wd = shown.shape[1:3]
    out = W.Output()

    def draw(layer, head):
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1 + len(maps), n, figsize=(1.45 * n + 1.6, 1.5 * (1 + len(maps)) + 0.5),
                                     squeeze=False)
            for j in range(n):
                axes[0, j].imshow(shown[j], interpolation="nearest")
            for i, (name, (a, has_cls)) in enumerate(maps.items(), start=1):
                for j in range(n):
                    m = a[layer - 1, j, head - 1]
                    m = (m - m.min()) / (m.max() - m.min()).clamp_min(1e-12)
                    axes[i, j].imshow(shown[j].mean(-1), cmap="gray", interpolation="nearest", extent=(0, Wd, H, 0))
                    axes[i, j].imshow(m.numpy(), cmap="inferno", alpha=0.7, interpolation="nearest", extent=(0, Wd, H, 0))
                what = "class token" if has_cls else "mean of the patch\nqueries (no class token)"
                axes[i, 0].set_ylabel(f"{name}\n{what}", fontsize=8, rotation=0, ha="right", va="center")
            axes[0, 0].set_ylabel("images", fontsize=8, rotation=0, ha="right", va="center")
            for ax in axes.flat:
                ax.set_xticks([])
                ax.set_yticks([])
            fig.suptitle(f"attention over the patches, block {layer} of {depth}, head {head} of {heads} "
                         "(bright: attended; each map scaled to its own range)", fontsize=9)
            fig.tight_layout()
            plt.show()

    _on_change(controls, draw)
    return Explorer([W.HBox(list(controls.values())), out])
