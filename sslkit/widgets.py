"""ipywidgets controls for the notebooks: each returns a widget that redraws a figure live."""

from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import display

from sslkit.augment import AugmentConfig, simclr_augment
from sslkit.losses import nt_xent
from sslkit.viz import image_grid, to_display


def _slider(description: str, value: float, lo: float, hi: float, step: float = 0.05) -> W.FloatSlider:
    return W.FloatSlider(value=value, min=lo, max=hi, step=step, description=description,
                         continuous_update=False, style={"description_width": "120px"},
                         layout=W.Layout(width="380px"))


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
    return W.VBox([W.HBox([W.VBox(list(controls.values())[:4]), W.VBox(list(controls.values())[4:])]), out])


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
                              continuous_update=False, layout=W.Layout(width="420px"))
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
    return W.VBox([slider, out])


def show(widget: W.Widget) -> None:
    """Display a widget (a thin wrapper so notebooks read the same everywhere)."""
    display(widget)
