"""Figures the notebooks and the demo share: image grids, training curves (also live),
2-D projections of embeddings coloured by class, nearest-neighbour galleries."""

from __future__ import annotations

import math
import time
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F


def to_display(images: torch.Tensor) -> np.ndarray:
    """uint8 or [0, 1] float ``(B, C, H, W)`` -> float ``(B, H, W, 3)`` in [0, 1] for imshow."""
    x = images.detach().cpu()
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float().clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).numpy()


def image_grid(images: torch.Tensor, nrow: int = 8, ax=None, title: str | None = None,
               labels: Sequence[str] | None = None, scale: float = 1.0, row_labels: Sequence[str] | None = None):
    """Show a batch of images as a grid (one subplot per image when ``labels`` are given;
    ``row_labels`` name each row on the left)."""
    imgs = to_display(images)
    n = len(imgs)
    ncol = min(nrow, n)
    rows = math.ceil(n / ncol)
    if labels is not None:
        fig, axes = plt.subplots(rows, ncol, figsize=(scale * 1.3 * ncol, scale * 1.5 * rows), squeeze=False)
        for a in axes.flat:
            a.axis("off")
        for a, img, lab in zip(axes.flat, imgs, labels):
            a.imshow(img, interpolation="nearest")
            a.set_title(lab, fontsize=8)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return fig
    H, W = imgs.shape[1:3]
    pad = 1
    canvas = np.ones((rows * (H + pad) + pad, ncol * (W + pad) + pad, 3))
    for i, img in enumerate(imgs):
        r, c = divmod(i, ncol)
        canvas[pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (W + pad): pad + c * (W + pad) + W] = img
    if ax is None:
        _, ax = plt.subplots(figsize=(scale * 0.45 * ncol * max(1, W / 32) + 1, scale * 0.45 * rows * max(1, H / 32) + 0.5))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([pad + r * (H + pad) + H / 2 for r in range(len(row_labels))] if row_labels else [])
    if row_labels:
        ax.set_yticklabels(row_labels)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)
    return ax.figure


def plot_history(history: list[dict], axes=None, label: str | None = None,
                 keys: Sequence[str] = ("loss", "embedding_spread", "lr")):
    """Training curves against the step: one panel per key."""
    if axes is None:
        _, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3))
    axes = np.atleast_1d(axes)
    steps = [r["step"] for r in history]
    titles = {"loss": "training loss", "embedding_spread": "embedding spread (1 = healthy, 0 = collapsed)",
              "lr": "learning rate", "images_per_s": "images / s"}
    for ax, key in zip(axes, keys):
        values = [r.get(key) if r.get(key) is not None else np.nan for r in history]
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=label)
        ax.set_title(titles.get(key, key), fontsize=10)
        ax.set_xlabel("step")
        if label:
            ax.legend(fontsize=8)
    axes[0].figure.tight_layout()
    return axes[0].figure


class LivePlot:
    """A training callback that redraws the loss curve in a notebook as rows arrive.

    Pass it in ``callbacks=[LivePlot()]``; outside IPython it does nothing. A redraw costs about a
    third of a second on a laptop CPU, so it redraws at most every ``min_interval`` seconds, and
    once more with every row when training ends (the loop calls :meth:`close`).
    """

    def __init__(self, keys: Sequence[str] = ("loss", "embedding_spread"), min_interval: float = 2.0):
        self.keys, self.min_interval, self.rows, self.handle = tuple(keys), min_interval, [], None
        self._last_draw, self._drawn = float("-inf"), 0
        try:
            from IPython import get_ipython
            from IPython.display import display
            self._display = display if get_ipython() is not None else None
        except ImportError:
            self._display = None

    def __call__(self, row: dict) -> None:
        self.rows.append(row)
        if time.perf_counter() - self._last_draw >= self.min_interval:
            self._draw()

    def close(self) -> None:
        """Draw the rows not drawn yet (called by the training loop at the end)."""
        if self._drawn < len(self.rows):
            self._draw()

    def _draw(self) -> None:
        if self._display is None:
            return
        fig = plot_history(self.rows, keys=self.keys)
        if self.handle is None:
            self.handle = self._display(fig, display_id=True)
        else:
            self.handle.update(fig)
        plt.close(fig)
        self._last_draw, self._drawn = time.perf_counter(), len(self.rows)


def project_2d(features: torch.Tensor, how: str = "umap", seed: int = 0, cache: bool = True) -> np.ndarray:
    """2-D projection of ``(N, D)`` features: ``umap`` (umap-learn), ``tsne`` or ``pca``.

    ``cache``: the projection is seeded, so it is kept in the feature cache under the features'
    sha256, the method, the seed and the library's version; a notebook run again draws its maps at once.
    """
    if how not in ("umap", "tsne", "pca"):
        raise ValueError(f"unknown projection '{how}': use umap, tsne or pca.")
    if not cache:
        return _project_2d(features, how, seed)
    from importlib.metadata import version

    from sslkit.cache import load_cached, result_key, store_cached

    key = result_key("project_2d", torch.as_tensor(features), how=how, seed=seed,
                     library=version("umap-learn" if how == "umap" else "scikit-learn"))
    hit = load_cached(key)
    if isinstance(hit, torch.Tensor) and hit.shape == (len(features), 2):
        return hit.numpy()
    xy = _project_2d(features, how, seed)
    store_cached(key, torch.as_tensor(np.asarray(xy)))
    return xy


def _project_2d(features: torch.Tensor, how: str, seed: int) -> np.ndarray:
    x = F.normalize(torch.as_tensor(features).float(), dim=1).numpy()
    if how == "umap":
        import warnings

        import umap
        from sklearn.neighbors import NearestNeighbors

        # The neighbour graph is computed exactly by scikit-learn and handed to UMAP, which would
        # otherwise JIT-compile its own neighbour search with numba in every new process: measured
        # here on 1,000 x 256 features, the first projection of a kernel takes 9.5 s instead of 20-23 s,
        # with the same exact neighbours (UMAP searches exhaustively below 4,096 points too).
        k = min(15, len(x) - 1)
        dists, idx = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x)
        with warnings.catch_warnings():
            # "transform will be unavailable": we never transform new points
            warnings.filterwarnings("ignore", message=".*knn_search_index.*")
            return umap.UMAP(n_neighbors=k, min_dist=0.1, metric="euclidean", random_state=seed, n_jobs=1,
                             precomputed_knn=(idx, dists, None)).fit_transform(x)
    if how == "tsne":
        import inspect

        from sklearn.manifold import TSNE

        # 500 iterations, not scikit-learn's 1,000: on 1,000 SimCLR features the map is as faithful
        # (trustworthiness at 10 neighbours 0.957 against 0.958) in a third of the time (6 s against
        # 19 s here), and the comparison explorer runs one per encoder (RESULTS.md, "t-SNE")
        iters = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"   # scikit-learn < 1.5
        return TSNE(n_components=2, init="pca", random_state=seed, n_jobs=1, **{iters: 500}).fit_transform(x)
    if how == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    raise ValueError(f"unknown projection '{how}': use umap, tsne or pca.")


def plot_embedding(xy: np.ndarray, labels: torch.Tensor, classes: Sequence[str], ax=None, title: str = ""):
    """Scatter of a 2-D projection, one colour per class."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    labels = np.asarray(labels)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for c, name in enumerate(classes):
        sel = labels == c
        ax.scatter(xy[sel, 0], xy[sel, 1], s=4, color=cmap(c % cmap.N), label=name, alpha=0.7)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    return ax.figure


def nearest_neighbours(query: torch.Tensor, database: torch.Tensor, k: int = 8) -> torch.Tensor:
    """Indices ``(Q, k)`` of the k most cosine-similar database features to each query."""
    sim = F.normalize(query.float(), dim=1) @ F.normalize(database.float(), dim=1).T
    return sim.topk(k, dim=1).indices


def retrieval_gallery(query_images: torch.Tensor, db_images: torch.Tensor, neighbours: torch.Tensor,
                      query_labels=None, db_labels=None, title: str = ""):
    """One row per query: the query, then its nearest neighbours (green title = same class)."""
    Q, k = neighbours.shape
    fig, axes = plt.subplots(Q, k + 1, figsize=(1.1 * (k + 1), 1.2 * Q), squeeze=False)
    q_disp, db_disp = to_display(query_images), to_display(db_images[neighbours.flatten()]).reshape(Q, k, *to_display(db_images[:1]).shape[1:])
    for i in range(Q):
        axes[i, 0].imshow(q_disp[i], interpolation="nearest")
        axes[i, 0].set_title("query", fontsize=7)
        for j in range(k):
            axes[i, j + 1].imshow(db_disp[i, j], interpolation="nearest")
            if query_labels is not None and db_labels is not None:
                same = int(db_labels[neighbours[i, j]]) == int(query_labels[i])
                axes[i, j + 1].set_title("same" if same else "other", fontsize=7, color="green" if same else "red")
    for a in axes.flat:
        a.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def embedding_panels(encoders: dict, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str],
                     how: str = "umap", seed: int = 0):
    """One 2-D projection per encoder, side by side, coloured by class: ``encoders`` maps a panel
    title to an encoder; ``images`` are uint8 ``(N, C, H, W)``. Each panel's title also gives the
    kNN accuracy of its features on these images (leave-one-out, 20 neighbours), so the eye can be
    checked against a number."""
    from sslkit.evaluate import extract_features

    fig, axes = plt.subplots(1, len(encoders), figsize=(4.6 * len(encoders), 4.4), squeeze=False)
    for ax, (name, enc) in zip(axes[0], encoders.items()):
        feats = extract_features(enc, images)
        plot_embedding(project_2d(feats, how, seed), labels, classes, ax=ax,
                       title=f"{name}\nneighbours of the same class: {100 * _same_class_share(feats, labels):.0f}%")
    axes[0, 0].legend(markerscale=3, fontsize=7, ncol=2, loc="best")
    fig.suptitle(f"{how.upper() if how != 'tsne' else 't-SNE'} of {len(images)} test images' features "
                 "(colour: the class, never seen in pre-training)", fontsize=10)
    fig.tight_layout()
    return fig


def _same_class_share(features: torch.Tensor, labels: torch.Tensor, k: int = 20) -> float:
    """Share of each point's k nearest neighbours (cosine, itself left out) that have its class."""
    f = F.normalize(features.float(), dim=1)
    sim = f @ f.T
    sim.fill_diagonal_(-2.0)
    idx = sim.topk(min(k, len(f) - 1), dim=1).indices
    labels = torch.as_tensor(labels)
    return float((labels[idx] == labels[:, None]).float().mean())


def retrieval_comparison(encoders: dict, queries: torch.Tensor, query_labels, database: torch.Tensor,
                         db_labels, k: int = 8, title: str = "", score_images: torch.Tensor | None = None,
                         score_labels=None):
    """The same query images, their k nearest database images under each encoder: one row per
    (query, encoder), the encoder named above its row, green / red titles for same / other class.
    The title gives each encoder's share of neighbours of the query's class, over ``score_images``
    when given (a handful of shown queries is too few to compare encoders by)."""
    from sslkit.evaluate import extract_features

    rows, shares = [], []
    db_labels = torch.as_tensor(db_labels)
    for name, enc in encoders.items():
        db_f = extract_features(enc, database)
        nn_idx = nearest_neighbours(extract_features(enc, queries), db_f, k)
        rows.append((name, nn_idx))
        if score_images is not None:
            nn_s = nearest_neighbours(extract_features(enc, score_images), db_f, k)
            shares.append(float((db_labels[nn_s] == torch.as_tensor(score_labels)[:, None]).float().mean()))
        else:
            shares.append(float((db_labels[nn_idx] == torch.as_tensor(query_labels)[:, None]).float().mean()))
    Q, E = len(queries), len(rows)
    fig, axes = plt.subplots(Q * E, k + 1, figsize=(1.05 * (k + 1), 1.15 * Q * E), squeeze=False)
    q_disp = to_display(queries)
    for i in range(Q):
        for e, (name, nn_idx) in enumerate(rows):
            r = i * E + e
            axes[r, 0].imshow(q_disp[i], interpolation="nearest")
            axes[r, 0].set_title(name, fontsize=7, loc="left")
            db_disp = to_display(database[nn_idx[i]])
            for j in range(k):
                axes[r, j + 1].imshow(db_disp[j], interpolation="nearest")
                same = int(db_labels[nn_idx[i, j]]) == int(query_labels[i])
                axes[r, j + 1].set_title("same" if same else "other", fontsize=7, color="green" if same else "red")
    for a in axes.flat:
        a.axis("off")
    over = f"over {len(score_images)} test queries" if score_images is not None else "over these queries"
    text = ", ".join(f"{name} {100 * share:.0f}%" for (name, _), share in zip(rows, shares))
    fig.suptitle((title + "\n" if title else "") + f"neighbours of the query's class ({over}): {text}", fontsize=9)
    fig.tight_layout()
    fig.subplots_adjust(top=1 - 0.95 / fig.get_figheight())     # room for the two-line title above the rows
    return fig


def singular_spectrum(z: torch.Tensor) -> torch.Tensor:
    """The singular values of embeddings ``z (N, D)`` centred over the batch, largest first, divided
    by their sum: how the batch's spread is shared among directions (one value near 1: every unit
    varies along the same direction, a dimensional collapse)."""
    z = z.float()
    s = torch.linalg.svdvals(z - z.mean(0))
    return s / s.sum().clamp_min(1e-12)


def effective_rank(z: torch.Tensor) -> float:
    """exp of the entropy of :func:`singular_spectrum`: D when the spread is shared equally by D
    directions, 1 when it lies along one."""
    p = singular_spectrum(z)
    return float(torch.exp(-(p * p.clamp_min(1e-12).log()).sum()))
