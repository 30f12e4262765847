"""The comparison: every method's reference, the random-init encoders and the supervised ceiling,
side by side, with the same protocols on the same images.

Encoders come from the shipped references (:mod:`sslkit.reference`) or from run folders given by
path. Rows of different backbones (MAE's ViT) are reported beside their own random init. Each
encoder gets: kNN, the linear probe, k-shot probes (1, 10, 100 labels per class, several draws:
mean and spread), fine-tuning at one fixed budget, and two representation diagnostics of Wang and
Isola (ICML 2020, section 4.1; code: SsnL/align_uniform, align_uniform/__init__.py): *alignment*
(how close the two views of an image land) and *uniformity* (how evenly the embeddings cover the
sphere), beside the embedding spread used as a collapse signal in
training. ``python -m sslkit compare`` writes the table (Markdown, JSON) and the figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from sslkit.augment import AugmentConfig, simclr_augment
from sslkit.data import ImageData
from sslkit.evaluate import extract_features, few_shot, fine_tune, knn_accuracy, linear_probe
from sslkit.methods import METHODS
from sslkit.reference import RECIPES, card_path, load_reference
from sslkit.train import build_method, embedding_spread, load_run

# the rows: every method with a reference in the registry's (the course's) order, those trained with
# labels (the ceiling) last; each under its class's title
ORDER = tuple(sorted(RECIPES, key=lambda m: METHODS[m][1].uses_labels))
NAMES = {m: METHODS[m][1].title or m for m in METHODS}
SHOTS = (1, 10, 100)


@dataclass
class Entry:
    """One encoder in the comparison."""

    name: str
    encoder: torch.nn.Module
    backbone: str
    kind: str          # "random", "self-supervised" or "supervised"
    source: str        # where it came from: the reference's budget, or a run folder


def _has_class_token(encoder) -> bool:
    return getattr(encoder.backbone, "cls_token", None) is not None


def _architecture(backbone: str, encoder) -> tuple[str, bool]:
    """What makes two encoders the same network: the backbone, and whether its ViT reads a class
    token (DINO's does, MAE's pools the patches): each gets a random init of its own."""
    return backbone, _has_class_token(encoder)


def _random_name(family: str, encoder) -> str:
    return f"random init ({family}{', class token' if _has_class_token(encoder) else ''})"


def load_entries(methods: list[str] | None = None, runs: list[str | Path] = (), device: str = "cpu",
                 data: ImageData | None = None) -> list[Entry]:
    """The shipped references of ``methods`` (default: all), the runs in ``runs``, and one
    random-init encoder per architecture among them (the seeded start of its first reference)."""
    # by default every reference that is shipped (a method whose reference is not built yet is left out)
    methods = list([m for m in ORDER if card_path(m).exists()] if methods is None else methods)
    for m in methods:
        if m not in RECIPES:
            raise ValueError(f"unknown method '{m}' for the comparison: use some of {', '.join(ORDER)}.")
    entries, randoms = [], {}
    for m in sorted(methods, key=ORDER.index):
        ref = load_reference(m, device=device)
        backbone, key = ref.spec.backbone, _architecture(ref.spec.backbone, ref.encoder)
        if key not in randoms:
            randoms[key] = Entry(_random_name({"vit": "ViT", "cnn": "CNN"}[METHODS[m][1].family], ref.encoder),
                                 ref.random_init_encoder(), backbone, "random", "seed 0, no training")
        epochs = ref.card["training"].get("epochs", 0)
        entries.append(Entry(NAMES[m], ref.encoder, backbone, "supervised" if METHODS[m][1].uses_labels else "self-supervised",
                             f"reference, {epochs:.0f} epochs on {ref.card['device']}"))
    for path in runs:
        run = load_run(path, device=device, data=data)
        key = _architecture(run.spec.backbone, run.encoder)
        if key not in randoms:           # the run's own seeded start
            randoms[key] = Entry(_random_name(run.spec.backbone, run.encoder),
                                 build_method(run.spec, run.data).encoder.to(device).eval(),
                                 run.spec.backbone, "random", f"seed {run.spec.train.seed}, no training")
        entries.append(Entry(f"{NAMES.get(run.spec.method, run.spec.method)} ({Path(path).name})", run.encoder.eval(),
                             run.spec.backbone, "supervised" if METHODS[run.spec.method][1].uses_labels else "self-supervised",
                             f"run folder {path}"))
    cnn_first = sorted(randoms.values(), key=lambda e: e.backbone.startswith("vit"))
    return cnn_first + entries


# --------------------------------------------------------------------- representation diagnostics

def alignment(z1: torch.Tensor, z2: torch.Tensor) -> float:
    """Wang & Isola's alignment, E ||f(x) - f(x+)||^2 over positive pairs of L2-normalised
    embeddings: 0 when the two views of every image coincide (lower is better).

    Their L_align with alpha = 2 (paper section 4.1.1; ``align_loss(x, y, alpha=2)`` in
    SsnL/align_uniform, align_uniform/__init__.py)."""
    z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    return float((z1 - z2).pow(2).sum(1).mean())


def uniformity(z: torch.Tensor, t: float = 2.0) -> float:
    """Wang & Isola's uniformity, log E exp(-t ||f(x) - f(y)||^2) over distinct pairs of L2-normalised
    embeddings: about -4 for points spread evenly over a high-dimensional sphere (t = 2; there two
    random points are about sqrt(2) apart, so each term is about exp(-4)), 0 when they all coincide
    (lower is better).

    Their L_uniform with t = 2 (paper section 4.1.2; ``uniform_loss(x, t=2)`` in SsnL/align_uniform,
    which likewise averages over the distinct pairs of ``torch.pdist``)."""
    z = F.normalize(z.float(), dim=1)
    sq = torch.pdist(z).pow(2)
    return float(torch.logsumexp(-t * sq, 0) - math.log(len(sq)))


@torch.no_grad()
def view_pairs(images: torch.Tensor, seed: int = 0, cfg: AugmentConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two SimCLR-augmented views of uint8 ``images``, drawn with a fixed seed, as uint8: the same
    positive pairs for every encoder."""
    cfg = cfg or AugmentConfig()
    x = images.float() / 255
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        v1, v2 = simclr_augment(x, cfg), simclr_augment(x, cfg)
    to_u8 = lambda v: (v.clamp(0, 1) * 255).round().to(torch.uint8)
    return to_u8(v1), to_u8(v2)


# ------------------------------------------------------------------------------------ the table

def compare(entries: list[Entry], data: ImageData, *, shots: tuple[int, ...] = SHOTS, draws: int = 5,
            finetune_steps: int = 300, finetune_batch: int = 128, diagnostics_images: int = 1000,
            device: str | torch.device = "cpu", log=print) -> dict[str, dict]:
    """Every protocol for every entry on ``data``; accuracies in [0, 1]. ``finetune_steps`` 0 skips
    fine-tuning. Returns ``{name: {"knn", "linear", "fewshot1", "fewshot1_std", ..., "finetune",
    "alignment", "uniformity", "spread", "backbone", "kind", "source"}}``."""
    device = torch.device(device)
    pairs = view_pairs(data.test_x[:diagnostics_images])
    out = {}
    for e in entries:
        enc = e.encoder.to(device).eval()
        # extracted once (or read from the feature cache) and shared by every protocol below
        tr, te = extract_features(enc, data.train_x, device=device), extract_features(enc, data.test_x, device=device)
        row = {"backbone": e.backbone, "kind": e.kind, "source": e.source,
               "knn": knn_accuracy(tr, data.train_y, te, data.test_y),
               "linear": linear_probe(tr, data.train_y, te, data.test_y)}
        for k in shots:
            row[f"fewshot{k}"], row[f"fewshot{k}_std"] = few_shot(tr, data.train_y, te, data.test_y, shots=k, seeds=draws)
        if finetune_steps:
            row["finetune"] = fine_tune(enc, data, steps=finetune_steps, batch_size=finetune_batch, device=device)
        z1, z2 = (extract_features(enc, v, device=device) for v in pairs)
        row.update(alignment=alignment(z1, z2), uniformity=uniformity(te[:diagnostics_images]),
                   spread=embedding_spread(te[:diagnostics_images]))
        out[e.name] = row
        log(f"  {e.name:<20} kNN {100 * row['knn']:5.1f}  linear {100 * row['linear']:5.1f}"
            + (f"  fine-tuned {100 * row['finetune']:5.1f}" if finetune_steps else ""))
    return out


def format_markdown(results: dict[str, dict], shots: tuple[int, ...] = SHOTS) -> str:
    """The comparison as a Markdown table, accuracies in percent (k-shot: mean ± std over draws)."""
    has_ft = any("finetune" in r for r in results.values())
    head = ["encoder", "backbone", "kNN", "linear"] + [f"{k}-shot" for k in shots] + (["fine-tuned"] if has_ft else []) \
        + ["alignment", "uniformity"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        cells = [name, r["backbone"], f"{100 * r['knn']:.1f}", f"{100 * r['linear']:.1f}"]
        cells += [f"{100 * r[f'fewshot{k}']:.1f} ± {100 * r[f'fewshot{k}_std']:.1f}" for k in shots]
        if has_ft:
            cells.append(f"{100 * r['finetune']:.1f}" if "finetune" in r else "-")
        cells += [f"{r['alignment']:.2f}", f"{r['uniformity']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ figures

def plot_label_efficiency(results: dict[str, dict], shots: tuple[int, ...] = SHOTS, n_train: int | None = None, ax=None):
    """Accuracy against labels per class (k-shot probes, then the linear probe on every label)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    per_class_all = (n_train or 5000) / 10
    xs = list(shots) + [per_class_all]
    for name, r in results.items():
        ys = [100 * r[f"fewshot{k}"] for k in shots] + [100 * r["linear"]]
        style = {"random": dict(color="gray", ls="--"), "supervised": dict(color="black", lw=2)}.get(r["kind"], {})
        ax.plot(xs, ys, marker="o", label=name, **style)
    ax.set_xscale("log")
    ax.set_xticks(xs, [str(k) for k in shots] + [f"all ({per_class_all:.0f})"])
    ax.set_xlabel("labelled images per class (linear probe on frozen features)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("label efficiency", fontsize=10)
    return ax.figure


def plot_alignment_uniformity(results: dict[str, dict], axes=None):
    """Left: alignment against uniformity (lower-left is better: Wang & Isola's section 5 finds "the
    best performing encoders" in "the lower left corners in Figure 5"); right:
    the embedding spread (0 = collapse, 1 = spread over the sphere)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    ax, bx = axes
    for name, r in results.items():
        ax.scatter(r["uniformity"], r["alignment"], s=40, color="gray" if r["kind"] == "random" else None)
        ax.annotate(name, (r["uniformity"], r["alignment"]), fontsize=8, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("uniformity (lower: spread more evenly)")
    ax.set_ylabel("alignment (lower: views closer)")
    ax.set_title("alignment and uniformity of the encoder features (Wang & Isola 2020)", fontsize=9)
    names = list(results)
    bx.barh(names, [results[n]["spread"] for n in names], color=["gray" if results[n]["kind"] == "random" else "tab:blue"
                                                                  for n in names])
    bx.invert_yaxis()
    bx.set_xlabel("embedding spread (0: collapse)")
    bx.tick_params(labelsize=8)
    ax.figure.tight_layout()
    return ax.figure


def write_figures(results: dict[str, dict], entries: list[Entry], data: ImageData, out_dir: str | Path,
                  n_points: int = 1000, how: str = "umap") -> list[Path]:
    """label_efficiency.png, alignment_uniformity.png, embeddings.png and retrieval.png in ``out_dir``."""
    import matplotlib.pyplot as plt

    from sslkit.viz import retrieval_comparison

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    fig = plot_label_efficiency(results, n_train=len(data.train_x))
    paths.append(out / "label_efficiency.png"); fig.savefig(paths[-1], dpi=120, bbox_inches="tight"); plt.close(fig)
    fig = plot_alignment_uniformity(results)
    paths.append(out / "alignment_uniformity.png"); fig.savefig(paths[-1], dpi=120, bbox_inches="tight"); plt.close(fig)
    fig = embedding_grid(entries, data, n_points, how)
    paths.append(out / "embeddings.png"); fig.savefig(paths[-1], dpi=100, bbox_inches="tight"); plt.close(fig)
    queries = torch.arange(0, 3 * 41, 41)
    fig = retrieval_comparison({e.name: e.encoder for e in entries}, data.test_x[queries], data.test_y[queries],
                               data.train_x, data.train_y, k=6, score_images=data.test_x[:500],
                               score_labels=data.test_y[:500])
    paths.append(out / "retrieval.png"); fig.savefig(paths[-1], dpi=100, bbox_inches="tight"); plt.close(fig)
    return paths


def embedding_grid(entries: list[Entry], data: ImageData, n_points: int = 1000, how: str = "umap",
                   cache: dict | None = None):
    """One 2-D projection per encoder of the same ``n_points`` test images, coloured by class.
    ``cache`` (a dict) keeps projections between calls (the notebook's widget)."""
    import matplotlib.pyplot as plt

    from sslkit.viz import plot_embedding, project_2d

    cols = min(4, len(entries))
    rows = math.ceil(len(entries) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.5 * rows), squeeze=False)
    x, y = data.test_x[:n_points], data.test_y[:n_points]
    for ax, e in zip(axes.flat, entries):
        key, fkey = (e.name, how, n_points), (e.name, "features", n_points)
        if cache is None or key not in cache:
            feats = cache[fkey] if cache is not None and fkey in cache else extract_features(e.encoder, x)
            xy = project_2d(feats, how)
            if cache is not None:                    # features too: another projection reuses them
                cache[key], cache[fkey] = xy, feats
        plot_embedding(cache[key] if cache is not None else xy, y, data.classes, ax=ax, title=e.name)
    for ax in list(axes.flat)[len(entries):]:
        ax.axis("off")
    axes[0, 0].legend(markerscale=3, fontsize=6, ncol=2)
    fig.suptitle(f"{'t-SNE' if how == 'tsne' else how.upper()} of {len(x)} test images per encoder (colour: class)", fontsize=10)
    fig.tight_layout()
    return fig
