"""One annotated schematic per method, as the kit builds it, with the true tensor shapes.

``method_diagram("simclr", data.image_shape)`` builds the profile's model of the method on a
tiny synthetic dataset of that image shape, passes a batch of 2 through its named submodules,
writes the profile's batch size in place of 2, and draws the pipeline with plain matplotlib
(boxes, arrows, text), so the figure is the same in JupyterLab, on the static site and on Colab.

Conventions, the same in every figure: blue boxes are the encoder (kept for downstream use),
orange ones heads (thrown away after training), yellow ones operations without weights, red the
loss, dashed boxes and arrows carry no gradient, and a green arrow is an EMA update. Every
tensor is labelled twice: in the kit's shape vocabulary (B batch, C, H, W, L tokens, D width)
and in numbers. The numeric labels are Text artists with gid ``shape:<name>`` (tests read them).
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

METHOD_NAMES = ("rotation", "jigsaw", "simclr", "moco", "byol", "barlowtwins", "vicreg", "mae", "dino")

_KINDS = {   # box kind -> face colour, edge colour, line style, legend text
    "data": ("#eeeeee", "#666666", "-", "data"),
    "op": ("#fff2bf", "#a88400", "-", "operation (no weights)"),
    "encoder": ("#cfe0ff", "#1f4e9c", "-", "encoder (kept)"),
    "head": ("#ffdcbc", "#c05a00", "-", "head (discarded after training)"),
    "target": ("#eef3fb", "#1f4e9c", "--", "EMA copy (no gradient)"),
    "memory": ("#dcefd2", "#3b7a1e", "-", "memory (no gradient)"),
    "loss": ("#f7cccc", "#a31515", "-", "loss"),
}
_ARROWS = {   # arrow kind -> colour, line style, legend text
    "grad": ("#222222", "-", "forward (gradient flows back)"),
    "nograd": ("#888888", "--", "no gradient / stop-gradient"),
    "ema": ("#2e8b2e", ":", "EMA update"),
}
_W, _H = 11.0, 3.5   # inches; the axes are in inches too, so sizes below read as inches


@dataclass
class _Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def left(self): return (self.x, self.y + self.h / 2)
    @property
    def right(self): return (self.x + self.w, self.y + self.h / 2)
    @property
    def top(self): return (self.x + self.w / 2, self.y + self.h)
    @property
    def bottom(self): return (self.x + self.w / 2, self.y)
    @property
    def cx(self): return self.x + self.w / 2


def _fmt(shape) -> str:
    """As torch prints a shape: (64, 3, 32, 32), and (256,) for one dimension."""
    return str(tuple(int(s) for s in shape))


class _Canvas:
    """A figure-sized axes in inches, remembering which box and arrow kinds it used (legend)."""

    def __init__(self, title: str):
        self.fig = plt.figure(figsize=(_W, _H))
        self.ax = self.fig.add_axes([0, 0, 1, 1])
        self.ax.set_xlim(0, _W)
        self.ax.set_ylim(0, _H)
        self.ax.axis("off")
        self.used_boxes: list[str] = []
        self.used_arrows: list[str] = []
        self.ax.text(0.15, _H - 0.22, title, fontsize=11, fontweight="bold", va="center")

    def box(self, x: float, y: float, w: float, h: float, text: str, kind: str, size: float = 8.5) -> _Box:
        fc, ec, ls, _ = _KINDS[kind]
        self.ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.06",
                                         fc=fc, ec=ec, ls=ls, lw=1.3))
        self.ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, gid="box")
        if kind not in self.used_boxes:
            self.used_boxes.append(kind)
        return _Box(x, y, w, h)

    def arrow(self, a, b, kind: str = "grad", rad: float = 0.0, label: str | None = None,
              label_at: tuple[float, float] | None = None, label_kw: dict | None = None) -> None:
        color, ls, _ = _ARROWS[kind]
        self.ax.annotate("", xy=b, xytext=a, arrowprops=dict(
            arrowstyle="-|>", color=color, lw=1.4 if kind != "ema" else 2.0, ls=ls, shrinkA=1, shrinkB=1,
            mutation_scale=11, connectionstyle=f"arc3,rad={rad}"))
        if label:
            at = label_at or ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 0.09)
            kw = dict(ha="center", va="bottom", fontsize=7.5, color=color if kind != "grad" else "#333333")
            kw.update(label_kw or {})
            self.ax.text(*at, label, **kw)
        if kind not in self.used_arrows:
            self.used_arrows.append(kind)

    def shape(self, x: float, y: float, name: str, symbol: str, shape, ha: str = "center") -> None:
        """A tensor's label: its name and shape in the kit's vocabulary, the numbers below."""
        self.ax.text(x, y, symbol, ha=ha, va="top", fontsize=7.5, color="#333333", gid=f"sym:{name}")
        self.ax.text(x, y - 0.15, _fmt(shape), ha=ha, va="top", fontsize=7.5, color="#1a1a1a",
                     family="monospace", gid=f"shape:{name}")

    def note(self, x: float, y: float, text: str, **kw) -> None:
        self.ax.text(x, y, text, fontsize=kw.pop("fontsize", 7.5), style=kw.pop("style", "italic"),
                     color=kw.pop("color", "#444444"), **kw)

    def legend(self, sizes: str) -> Figure:
        """The legend strip at the bottom (only the kinds this figure uses) and the sizes line."""
        renderer = self.fig.canvas.get_renderer()
        items = [("box", k, _KINDS[k][3]) for k in self.used_boxes] + [("line", k, _ARROWS[k][2]) for k in self.used_arrows]
        widths = []
        for _, _, text in items:   # measured, so that a long legend wraps instead of running off the figure
            t = self.ax.text(0, 0, text, fontsize=7.5)
            widths.append(t.get_window_extent(renderer).width / self.fig.dpi)
            t.remove()
        x, y = 0.15, 0.2 if sum(widths) + 0.6 * len(items) < _W - 0.3 else 0.3
        for (what, kind, text), w in zip(items, widths):
            mark = 0.26 if what == "box" else 0.36
            if x + mark + w > _W - 0.1:
                x, y = 0.15, y - 0.19
            if what == "box":
                fc, ec, ls, _ = _KINDS[kind]
                self.ax.add_patch(FancyBboxPatch((x, y - 0.06), 0.2, 0.13, boxstyle="round,pad=0,rounding_size=0.03",
                                                 fc=fc, ec=ec, ls=ls, lw=1.0))
            else:
                color, ls, _ = _ARROWS[kind]
                self.ax.plot([x, x + 0.3], [y, y], color=color, ls=ls, lw=1.4 if kind != "ema" else 2.0)
            self.ax.text(x + mark, y, text, fontsize=7.5, va="center", gid="legend")
            x += mark + w + 0.22
        self.ax.text(0.15, _H - 0.46, sizes, fontsize=8, color="#333333", va="center")
        return self.fig


# ---------------------------------------------------------------- the model and its true shapes

def _synthetic_data(image_shape):
    """Four random images of ``image_shape``: enough to build a method (channel statistics)."""
    from sslkit.data import ImageData

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, *image_shape), dtype=torch.uint8, generator=g)
    y = torch.tensor([0, 1, 0, 1])
    return ImageData("diagram", x, y, x, y, ["a", "b"])


def _probe(method: str, model, x: torch.Tensor) -> dict[str, tuple]:
    """Shapes of the named tensors for a batch ``x`` of 2, through the model's own submodules."""
    if method == "rotation":
        views, labels = model.rotations(model.augment(x))
        h = model.encoder(views)
        return {"x": x.shape, "views": views.shape, "labels": labels.shape, "h": h.shape,
                "logits": model.head(h).shape}
    if method == "jigsaw":
        shuffled, labels = model.puzzles(x)
        h = model.encoder(model.normalise_tiles(shuffled).flatten(0, 1))
        f = model.tile_fc(h)
        cat = f.view(len(x), -1)
        return {"x": x.shape, "tiles": shuffled.shape, "h": h.shape, "cat": cat.shape,
                "logits": model.classifier(cat).shape, "labels": labels.shape}
    if method == "simclr":
        v = model.views(x)
        h = model.encoder(v)
        z = model.projector(h)
        return {"x": x.shape, "views": v.shape, "h": h.shape, "z": z.shape, "sim": (len(z), len(z))}
    if method == "moco":
        v = model.views(x)
        B = len(x)
        h, q = model.query(v[:B])
        k = model.keys(v[B:])
        return {"x": x.shape, "view": v[:B].shape, "h": h.shape, "q": q.shape, "k": k.shape,
                "queue": model.queue.shape, "logits": (len(q), 1 + len(model.queue))}
    if method == "byol":
        v = model.views(x)
        h = model.encoder(v)
        y = model.projector(h)
        p = model.predictor(y)
        z = model.target_projections(v)
        return {"x": x.shape, "views": v.shape, "h": h.shape, "y": y.shape, "p": p.shape, "z": z.shape}
    if method in ("barlowtwins", "vicreg"):
        from sslkit.methods.barlowtwins import cross_correlation
        from sslkit.methods.vicreg import covariance

        v = model.views(x)
        h = model.encoder(v)
        z = model.projector(h)
        n = len(x)
        square = cross_correlation(z[:n], z[n:]) if method == "barlowtwins" else covariance(z[:n])
        return {"x": x.shape, "views": v.shape, "h": h.shape, "z": z.shape, "matrix": square.shape}
    if method == "mae":
        vit = model.encoder.backbone
        patches = model.patchify(x)
        tokens = vit.tokens((x - model.encoder.mean) / model.encoder.std)
        latent, mask, ids_restore = model.forward_encoder(x, model.cfg.mask_ratio)
        pred = model.forward_decoder(latent, ids_restore)
        return {"x": x.shape, "patches": patches.shape, "tokens": tokens.shape, "latent": latent.shape,
                "full": (len(x), *model.decoder_pos_embed.shape), "pred": pred.shape, "mask": mask.shape}
    if method == "dino":
        g, l = model.global_views(x), model.local_views(x)
        h = model.encoder(g)
        s = model.student(g, l)
        t = model.teacher(g)
        return {"x": x.shape, "global": g.shape, "local": l.shape, "h": (len(s), h.shape[1]), "s": s.shape,
                "t": t.shape, "center": model.center.shape}
    raise AssertionError(method)


_NOT_BATCHED = {"queue", "matrix", "center"}   # shapes that do not grow with the batch
_SQUARE = {"sim"}          # batch by batch: both dimensions grow with it


def model_shapes(method: str, image_shape=(3, 32, 32), profile: str = "quick"):
    """The profile's model of ``method`` and its tensors' shapes at the profile's batch size.

    Returns ``(spec, model, shapes)``: a batch of 2 goes through the submodules, and every leading
    dimension that is a multiple of 2 (2, 2B views, 2T tiles) is rescaled to the profile's B.
    """
    from sslkit.profiles import get_profile
    from sslkit.train import build_method

    if method not in METHOD_NAMES:
        raise ValueError(f"there is no diagram for '{method}': use one of {', '.join(METHOD_NAMES)}.")
    spec = get_profile(profile).spec(method)
    B = spec.train.batch_size
    # build_method seeds torch's global generator: the caller's random stream stays as it was
    with torch.random.fork_rng(), torch.no_grad():
        model = build_method(spec, _synthetic_data(tuple(image_shape))).eval()
        raw = _probe(method, model, torch.rand(2, *image_shape))
    shapes = {k: tuple(int(s) for s in v) if k in _NOT_BATCHED else (int(v[0]) // 2 * B, *map(int, v[1:]))
              for k, v in raw.items()}
    for k in _SQUARE & set(shapes):
        shapes[k] = (shapes[k][0], shapes[k][0])
    return spec, model, shapes


# ---------------------------------------------------------------- the figures

def _grid(c: _Canvas, cx: float, top: float, n: int, cell: float, gap: float, labels=None, hidden=None) -> None:
    """A small n x n picture of tiles or patches, centred at cx below top: numbered tiles, or
    patches coloured visible / hidden (grey)."""
    x0 = cx - (n * cell + (n - 1) * gap) / 2
    for i in range(n * n):
        r, col = divmod(i, n)
        x, y = x0 + col * (cell + gap), top - (r + 1) * cell - r * gap
        grey = hidden is not None and bool(hidden[i])
        c.ax.add_patch(FancyBboxPatch((x, y), cell, cell, boxstyle="square,pad=0", lw=0.6, ec="#666666",
                                      fc="#c8c8c8" if grey else ("#4f7fd0" if hidden is not None else "#fff2bf")))
        if labels is not None:
            c.ax.text(x + cell / 2, y + cell / 2, str(labels[i]), ha="center", va="center", fontsize=6.5)


def _row(c: _Canvas, y: float, items, x0: float = 0.15, x1: float = _W - 0.15, h: float = 0.55, gap: float = 0.3):
    """Boxes of equal width side by side from x0 to x1, joined by forward arrows."""
    w = (x1 - x0 - gap * (len(items) - 1)) / len(items)
    boxes = []
    for i, (text, kind) in enumerate(items):
        boxes.append(c.box(x0 + i * (w + gap), y, w, h, text, kind))
        if i:
            c.arrow(boxes[-2].right, boxes[-1].left)
    return boxes


def _rotation(c: _Canvas, spec, model, s) -> None:
    K = model.cfg.num_rotations
    angles = ", ".join(f"{a:g}°" for a in model.cfg.angles)
    b = _row(c, 1.65, [("images\n+ random crop & flip", "data"), (f"rotate each image\nby all K = {K} angles", "op"),
                       ("encoder\n(shared by all views)", "encoder"), (f"rotation head\nMLP, {K}-way", "head"),
                       ("cross-entropy", "loss")])
    for box, (name, sym) in zip(b, [("x", "x (B, C, H, W)"), ("views", "views (B·K, C, H, W)"),
                                    ("h", "h (B·K, D)"), ("logits", "logits (B·K, K)")]):
        c.shape(box.cx, box.y - 0.07, name, sym, s[name])
    c.arrow(b[1].top, b[4].top, kind="nograd", rad=-0.18, label=f"label: rotation index k of {angles}",
            label_at=((b[1].cx + b[4].cx) / 2, 2.86))
    c.shape(b[4].cx, b[4].y - 0.07, "labels", "labels (B·K,)", s["labels"])
    side = min(0.32, (b[1].w - 0.1 * (K - 1)) / K)
    x0 = b[1].cx - (K * side + (K - 1) * 0.1) / 2
    for k, angle in enumerate(model.cfg.angles):   # one image at all K angles: its label is k
        x = x0 + k * (side + 0.1)
        c.ax.add_patch(FancyBboxPatch((x, 0.7), side, side, boxstyle="square,pad=0", fc="white", ec="#666666", lw=0.6))
        c.ax.text(x + side / 2, 0.7 + side / 2, "R", rotation=angle, ha="center", va="center", fontsize=9)
        c.ax.text(x + side / 2, 0.66, str(k), ha="center", va="top", fontsize=6.5, color="#555555")


def _jigsaw(c: _Canvas, spec, model, s) -> None:
    cfg = model.cfg
    T, P, t = cfg.grid ** 2, cfg.num_permutations, cfg.tile_size
    b = _row(c, 1.65, [("images\n(random grey)", "data"),
                       (f"resize to {cfg.image_size} px, cut\n{cfg.grid}×{cfg.grid} tiles of {t} px\nrandom gap & jitter", "op"),
                       (f"permute the tiles by\none of P = {P}\npermutations", "op"),
                       (f"ONE tile encoder\nshared by T = {T}\nnormalised tiles" if cfg.per_tile_norm
                        else f"ONE tile encoder\nshared by all\nT = {T} tiles", "encoder"),
                       (f"fc6 per tile ({cfg.tile_dim})\nconcatenate\nin position order", "head"),
                       (f"classifier MLP\n{P}-way", "head"), ("cross-entropy", "loss")], h=0.62, gap=0.26)
    for box, (name, sym) in zip(b, [("x", "x (B, C, H, W)"), ("tiles", "tiles (B, T, C, t, t)"), ("tiles", "(B, T, C, t, t)"),
                                    ("h", "h (B·T, D)"), ("cat", "(B, T·512)".replace("512", str(cfg.tile_dim))),
                                    ("logits", "logits (B, P)")]):
        c.shape(box.cx, box.y - 0.07, name, sym, s[name])
    c.arrow(b[2].top, b[6].top, kind="nograd", rad=-0.15,
            label=f"label: the permutation's index in the set (min Hamming distance {model.min_distance})",
            label_at=((b[2].cx + b[6].cx) / 2, 2.84))
    c.shape(b[6].cx, b[6].y - 0.07, "labels", "labels (B,)", s["labels"])
    # the tiles in reading order, then the first permutation of the set: position i shows tile perms[0, i]
    _grid(c, b[1].cx, 1.12, cfg.grid, 0.17, 0.05, labels=[i + 1 for i in range(T)])
    _grid(c, b[2].cx, 1.12, cfg.grid, 0.17, 0.05, labels=[int(i) + 1 for i in model.perms[0]])


def _two_rows(c: _Canvas, top, bottom, x0: float, widths, gap: float, y_top: float = 2.3, y_bot: float = 0.95,
              h: float = 0.5, bottom_kind: str = "grad"):
    """Two parallel rows (views, or online and target) of boxes of the given widths."""
    rows = []
    for y, items, kind in ((y_top, top, "grad"), (y_bot, bottom, bottom_kind)):
        x, row = x0, []
        for (text, k), w in zip(items, widths):
            row.append(c.box(x, y, w, h, text, k))
            if len(row) > 1:
                c.arrow(row[-2].right, row[-1].left, kind=kind)
            x += w + gap
        rows.append(row)
    return rows


def _simclr(c: _Canvas, spec, model, s) -> None:
    cfg = model.cfg
    B = s["x"][0]
    img = c.box(0.15, 1.38, 1.05, 0.6, "images", "data")
    c.shape(img.cx, img.y - 0.07, "x", "x (B, C, H, W)", s["x"])
    top, bot = _two_rows(c, [("augment t", "op"), ("encoder f", "encoder"), ("projection head g\nLinear-BN-ReLU-Linear", "head")],
                         [("augment t'", "op"), ("encoder f", "encoder"), ("projection head g\nLinear-BN-ReLU-Linear", "head")],
                         1.55, [1.15, 1.35, 1.9], 0.75)
    c.arrow(img.right, top[0].left)
    c.arrow(img.right, bot[0].left)
    for i, (name, sym) in enumerate([("views", "views (2B, C, H, W)"), ("h", "h (2B, D)"),
                                     ("z", f"z (2B, {cfg.projection_dim})")]):
        c.shape(top[i].cx, 2.2, name, sym, s[name])
    c.note(top[1].cx, 1.5, "same weights", ha="center", va="center")
    c.note(top[1].right[0] + 0.05, top[1].right[1] + 0.28, "h: kept for downstream use", fontsize=7)
    loss = c.box(8.55, 1.3, 2.3, 0.82, f"NT-Xent, τ = {cfg.temperature:g}\neach of 2B = {2 * B} anchors:\n"
                 f"1 positive, 2N−2 = {2 * B - 2} negatives", "loss", size=8)
    c.arrow(top[2].right, (loss.x + 0.3, loss.y + loss.h), rad=-0.2)
    c.arrow(bot[2].right, (loss.x + 0.3, loss.y), rad=0.2)
    c.shape(loss.cx, loss.y - 0.07, "sim", "similarities (2B, 2B)", s["sim"])
    c.note(bot[2].x, bot[2].y - 0.2, "the head is discarded after training", fontsize=7.5)


def _moco(c: _Canvas, spec, model, s) -> None:
    cfg = model.cfg
    K = cfg.queue_size
    img = c.box(0.15, 1.38, 0.95, 0.6, "images", "data")
    c.shape(img.cx, img.y - 0.07, "x", "x (B, C, H, W)", s["x"])
    top, bot = _two_rows(c, [("augment → x_q", "op"), ("query encoder f_q", "encoder"), ("projector g_q", "head")],
                         [("augment → x_k", "op"), ("key encoder f_k\n(momentum)", "target"), ("key projector g_k", "target")],
                         1.4, [1.1, 1.45, 1.3], 0.45, y_top=2.3, y_bot=0.82, bottom_kind="nograd")
    c.arrow(img.right, top[0].left)
    c.arrow(img.right, bot[0].left)
    for i, (name, sym) in enumerate([("view", "x_q, x_k (B, C, H, W)"), ("h", "h (B, D)")]):
        c.shape(top[i].cx, 2.2, name, sym, s[name])
    c.note(bot[1].cx, bot[1].y - 0.08, f"shuffled BatchNorm: {cfg.bn_splits} groups" if cfg.bn_splits > 1
           else "one BatchNorm group (bn_splits = 1)", ha="center", va="top", fontsize=7, color="#666666")
    for i in (1, 2):   # the key encoder and its head both follow the query side
        c.arrow((top[i].cx, top[i].y - 0.5), (top[i].cx, bot[i].y + bot[i].h + 0.02), kind="ema")
    c.ax.text(top[2].cx + 0.1, 1.53, f"EMA, m = {cfg.momentum:g}\nafter each step", fontsize=7.5,
              color=_ARROWS["ema"][0], va="center")
    loss = c.box(7.35, 1.9, 2.0, 0.72, f"InfoNCE, τ = {cfg.temperature:g}\n1 positive + K negatives", "loss", size=8)
    c.arrow(top[2].right, loss.left, label="q", label_kw={"fontsize": 8})
    c.shape(top[2].right[0] + 0.45, top[2].y - 0.07, "q", f"q (B, {cfg.projection_dim})", s["q"])
    queue = c.box(8.95, 0.72, 1.9, 0.7, f"queue of K = {K} keys\n(earlier batches)", "memory", size=8)
    c.arrow(bot[2].right, (loss.x + 0.35, loss.y), kind="nograd", rad=0.15, label="k: the positive",
            label_at=(7.45, 1.28), label_kw={"ha": "left"})
    c.shape(bot[2].right[0] + 0.2, bot[2].y - 0.07, "k", f"k (B, {cfg.projection_dim})", s["k"], ha="left")
    c.arrow(bot[2].right, queue.left, kind="nograd", label="enqueue B newest (after the step)", label_at=(7.7, 0.79))
    c.arrow(queue.top, (loss.x + loss.w - 0.3, loss.y), kind="nograd", label="negatives",
            label_at=(queue.cx + 0.12, 1.6), label_kw={"ha": "left"})
    c.arrow(queue.right, (_W - 0.02, queue.right[1]), kind="nograd")
    c.note(queue.cx, queue.y - 0.1, "dequeue B oldest →", ha="center", va="top", color="#666666")
    c.shape(loss.cx, loss.y + loss.h + 0.37, "logits", "logits (B, 1+K)", s["logits"])
    c.shape(queue.x - 0.1, queue.y - 0.07, "queue", "queue (K, 128)".replace("128", str(cfg.projection_dim)),
            s["queue"], ha="right")


def _byol(c: _Canvas, spec, model, s) -> None:
    cfg = model.cfg
    x = c.box(0.15, 1.38, 0.95, 0.6, "images", "data")
    c.shape(x.cx, x.y - 0.07, "x", "x (B, C, H, W)", s["x"])
    img = c.box(1.4, 1.38, 1.25, 0.6, "2 views v, v'\n(asymmetric aug.)", "op", size=8)
    c.arrow(x.right, img.left)
    c.shape(img.cx, img.y - 0.07, "views", "stacked (2B, C, H, W)", s["views"])
    # each view goes through both networks: the kit stacks them and runs one pass of each
    top, bot = _two_rows(c, [("online encoder f_θ", "encoder"), ("projector g_θ", "head"), ("predictor q_θ", "head")],
                         [("target encoder f_ξ", "target"), ("target projector g_ξ", "target")],
                         3.0, [1.45, 1.4, 1.2], 0.35, y_top=2.3, y_bot=0.82, bottom_kind="nograd")
    c.arrow(img.right, top[0].left)
    c.arrow(img.right, bot[0].left, kind="nograd")
    for i, (name, sym) in enumerate([("h", "h (2B, D)"), ("y", f"y (2B, {cfg.projection_dim})")]):
        c.shape(top[i].cx, 2.2, name, sym, s[name])
    sched = f"EMA of online: τ from {cfg.base_momentum:g} to 1 (cosine)"
    for i in range(2):
        c.arrow((top[i].cx, top[i].y - 0.5), (top[i].cx, bot[i].y + bot[i].h + 0.02), kind="ema")
    c.ax.text(top[1].right[0] + 0.12, 1.5, sched, fontsize=7.5, color=_ARROWS["ema"][0], va="center")
    loss = c.box(8.45, 1.75, 2.4, 0.9, "symmetric loss 2 − 2·cos\np(v) ↔ sg z'(v')\np(v') ↔ sg z'(v)", "loss", size=8)
    c.arrow(top[2].right, (loss.x, loss.y + loss.h - 0.2), label="p")
    c.shape(top[2].right[0] + 0.0, top[2].y - 0.07, "p", f"p (2B, {cfg.projection_dim})", s["p"], ha="left")
    c.arrow(bot[1].right, (loss.x + 0.4, loss.y), kind="nograd", rad=0.2, label="z', stop-gradient (sg)",
            label_at=(bot[1].right[0] + 1.6, 0.98), label_kw={"ha": "left", "va": "top"})
    c.shape(bot[1].right[0] + 0.25, 0.98, "z", f"z' (2B, {cfg.projection_dim})", s["z"], ha="left")


def _siamese_rows(c: _Canvas, model, s, head: str):
    """Images, their two views, and the shared encoder and projector drawn once per view (Barlow
    Twins, VICReg): the rows' boxes, top (view A) and bottom (view B)."""
    x = c.box(0.15, 1.38, 0.95, 0.6, "images", "data")
    c.shape(x.cx, x.y - 0.07, "x", "x (B, C, H, W)", s["x"])
    img = c.box(1.35, 1.38, 1.2, 0.6, "2 views A, B\n(asymmetric aug.)", "op", size=8)
    c.arrow(x.right, img.left)
    c.shape(img.cx, img.y - 0.07, "views", "stacked (2B, C, H, W)", s["views"])
    top, bot = _two_rows(c, [("encoder f", "encoder"), (head, "head")], [("encoder f", "encoder"), (head, "head")],
                         2.85, [1.2, 1.75], 0.3, y_top=2.3, y_bot=0.82)
    c.arrow(img.right, top[0].left)
    c.arrow(img.right, bot[0].left)
    D_z = model.cfg.projection_dim
    for i, (name, sym) in enumerate([("h", "h (2B, D)"), ("z", f"z (2B, {D_z})")]):
        c.shape(top[i].cx, 2.2, name, sym, s[name])
    c.note(top[0].cx, 1.62, "same weights", ha="center", va="center")
    return top, bot


def _barlowtwins(c: _Canvas, spec, model, s) -> None:
    cfg = model.cfg
    D_z = cfg.projection_dim
    top, bot = _siamese_rows(c, model, s, f"projector\n3 Linear, {D_z} wide")
    std = [c.box(6.45, row[1].y, 1.35, 0.5, "standardise each\nunit over the batch", "op", size=7.5) for row in (top, bot)]
    for row, box in zip((top, bot), std):
        c.arrow(row[1].right, box.left)
    loss = c.box(8.3, 1.3, 2.55, 1.0, f"cross-correlation C\nto the identity:\n"
                 f"Σ(1 − C_ii)² + λ Σ_i≠j C_ij²\nλ = {cfg.lambd:g}", "loss", size=8)
    c.arrow(std[0].right, (loss.x + 0.3, loss.y + loss.h), rad=-0.2, label="z_A")
    c.arrow(std[1].right, (loss.x + 0.3, loss.y), rad=0.2, label="z_B", label_at=(8.05, 0.72))
    c.shape(loss.cx, loss.y - 0.07, "matrix", f"C ({D_z}, {D_z})", s["matrix"])
    # the target: the identity, ones on the diagonal (blue), zeros elsewhere (grey)
    n = 6
    _grid(c, 10.45, 2.95, n, 0.07, 0.01, hidden=[i % (n + 1) != 0 for i in range(n * n)])
    c.note(10.1, 2.7, "target", ha="right", va="center")
    c.note(top[1].x, bot[1].y - 0.2, "the projector is discarded after training", fontsize=7.5)


def _vicreg(c: _Canvas, spec, model, s) -> None:
    cfg = model.cfg
    D_z = cfg.projection_dim
    top, bot = _siamese_rows(c, model, s, f"expander\n3 Linear, {D_z} wide")
    regs = [c.box(6.45, row[1].y - 0.05, 2.3, 0.6, f"variance v({z}): std of each\nunit ≥ 1 (hinge)\n"
                  f"covariance c({z}): off-diag. → 0", "loss", size=7.5) for row, z in ((top, "Z"), (bot, "Z'"))]
    for row, box in zip((top, bot), regs):
        c.arrow(row[1].right, box.left)
    inv = c.box(9.2, 1.3, 1.65, 0.8, "invariance\ns(Z, Z'): mean\nsquared distance", "loss", size=8)
    c.arrow(regs[0].right, (inv.cx, inv.y + inv.h), rad=-0.3)
    c.arrow(regs[1].right, (inv.cx, inv.y), rad=0.3)
    c.shape(regs[0].cx, regs[0].y - 0.07, "matrix", f"C(Z) ({D_z}, {D_z})", s["matrix"])
    c.note(_W - 0.15, _H - 0.15, f"loss = λ s + μ v + ν c\nλ = {cfg.invariance_weight:g}, μ = {cfg.variance_weight:g}, "
           f"ν = {cfg.covariance_weight:g}", ha="right", va="top", fontsize=8)
    c.note(top[1].x, bot[1].y - 0.2, "each branch regularised on its own; no normalisation of z", fontsize=7.5)


def _mae(c: _Canvas, spec, model, s) -> None:
    cfg = model.cfg
    L, p = s["patches"][1], model.patch_size
    keep = s["latent"][1]
    pct = f"{cfg.mask_ratio * 100:g}%"
    b = _row(c, 1.55, [("images\n+ crop & flip", "data"), (f"patchify: L = {L}\npatches of {p}×{p},\nlinear embed + pos.", "op"),
                       (f"random masking\nhide {pct}, keep\nL_keep = {keep} visible", "op"),
                       ("ViT encoder\non the visible\ntokens only", "encoder"),
                       (f"linear to {cfg.decoder_dim},\nadd mask tokens,\nunshuffle", "head"),
                       (f"light decoder\n{cfg.decoder_depth} blocks, width {cfg.decoder_dim}", "head"),
                       ("MSE on the\nmasked patches\nonly", "loss")], h=0.66, gap=0.26)
    for box, (name, sym) in zip(b, [("x", "x (B, C, H, W)"), ("tokens", "tokens (B, L, D)"), ("latent", "(B, L_keep, D)"),
                                    ("latent", "latent (B, L_keep, D)"), ("full", "(B, L, D_dec)"),
                                    ("pred", "pred (B, L, p·p·C)")]):
        c.shape(box.cx, box.y - 0.07, name, sym, s[name])
    target = "target: the patches, each normalised to its own mean and std" if cfg.norm_pix_loss \
        else "target: the patches' pixels"
    c.arrow(b[1].top, b[6].top, kind="nograd", rad=-0.13, label=target, label_at=((b[1].cx + b[6].cx) / 2, 2.86))
    c.shape(b[1].cx, 2.68, "patches", "(B, L, p·p·C)", s["patches"])
    g = model.grid   # one random mask of the model's own masking, L patches
    with torch.random.fork_rng():
        torch.manual_seed(0)
        _, mask, _ = model.random_masking(torch.zeros(1, g * g, 1), cfg.mask_ratio)
    _grid(c, b[2].cx, 1.13, g, min(0.07, 0.6 / g), 0.01, hidden=mask[0].tolist())
    low = 0.83      # below the shape labels of the row
    color, ls, _ = _ARROWS["nograd"]
    c.ax.plot([b[2].cx + 0.34, b[6].cx], [low, low], color=color, ls=ls, lw=1.4)
    c.arrow((b[6].cx, low), b[6].bottom, kind="nograd")
    c.ax.text((b[3].cx + b[4].cx) / 2, low - 0.05, "mask (B, L), 1 = hidden (grey):", ha="right", va="top", fontsize=7.5,
              color=color)
    c.ax.text((b[3].cx + b[4].cx) / 2 + 0.05, low - 0.05, _fmt(s["mask"]), ha="left", va="top", fontsize=7.5,
              family="monospace", gid="shape:mask")


def _dino(c: _Canvas, spec, model, s) -> None:
    cfg = model.cfg
    n, H, h = cfg.local_crops, s["global"][2], model.local_size
    x = c.box(0.15, 1.38, 0.85, 0.6, "images", "data")
    c.shape(x.cx, x.y - 0.07, "x", "x (B, C, H, W)", s["x"])
    crops = c.box(1.2, 1.3, 1.45, 0.78, f"multi-crop\n2 global {H}×{H}\n+ n = {n} local {h}×{h}", "op", size=8)
    c.arrow(x.right, crops.left)
    c.shape(crops.cx, crops.y - 0.07, "global", "global (2B, C, H, W)", s["global"])
    c.shape(crops.cx, crops.y - 0.42, "local", "local (nB, C, h, h)", s["local"])
    top, bot = _two_rows(c, [("student ViT\n+ class token", "encoder"), (f"DINO head: MLP,\nℓ2 bottleneck, K = {cfg.out_dim}", "head"),
                             (f"softmax(s / τ_s)\nτ_s = {cfg.student_temp:g}", "op")],
                         [("teacher ViT", "target"), ("teacher head", "target"),
                          ("centre & sharpen\nsoftmax((t − c) / τ_t)", "op")],
                         3.0, [1.3, 1.65, 1.45], 0.3, y_top=2.3, y_bot=0.82, bottom_kind="nograd")
    c.arrow(crops.right, top[0].left, label="all 2 + n crops", label_at=(2.85, 2.62), label_kw={"ha": "center"})
    c.arrow(crops.right, bot[0].left, kind="nograd", label="2 global only", label_at=(2.95, 0.62),
            label_kw={"ha": "center", "va": "top"})
    c.shape(top[0].cx, 2.2, "h", "h ((2+n)B, D)", s["h"])
    c.shape(top[1].cx, 2.2, "s", "s ((2+n)B, K)", s["s"])
    c.shape(bot[1].cx, bot[1].y - 0.07, "t", "t (2B, K)", s["t"])
    c.shape(bot[2].cx, bot[2].y - 0.07, "center", "centre c (1, K)", s["center"])
    for i in range(2):
        c.arrow((top[i].cx, top[i].y - 0.5), (top[i].cx, bot[i].y + bot[i].h + 0.02), kind="ema")
    temp = f"τ_t = {model.teacher_temp:g}" if cfg.sharpening else "τ_t = τ_s (no sharpening)"
    c.ax.text(top[0].cx + 0.1, 1.58, f"EMA of the student:\nλ {cfg.base_momentum:g} → 1 (cosine)", fontsize=7.5,
              color=_ARROWS["ema"][0], va="center")
    c.note(bot[2].x, 1.56, temp, va="center")
    loss = c.box(8.55, 1.45, 2.3, 0.95, "cross-entropy H(P_t, P_s)\nevery teacher crop with\nevery other student crop\n"
                 "(the same crop skipped)", "loss", size=7.5)
    c.arrow(top[2].right, (loss.x, loss.y + loss.h - 0.2), label="P_s")
    c.arrow(bot[2].right, (loss.x + 0.4, loss.y), kind="nograd", label="P_t, no gradient",
            label_at=(bot[2].right[0] + 0.1, 0.98), label_kw={"ha": "left", "va": "top"})
    m = cfg.center_momentum
    c.note(loss.x + 0.2, 0.7, f"after each step: c ← {m:g} c + {1 - m:g} mean(t)" if cfg.centering
           else "no centring: c stays 0", va="top")


_DRAW = {"rotation": _rotation, "jigsaw": _jigsaw, "simclr": _simclr, "moco": _moco, "byol": _byol,
         "barlowtwins": _barlowtwins, "vicreg": _vicreg, "mae": _mae, "dino": _dino}
_TITLES = {"rotation": "Rotation prediction (RotNet)", "jigsaw": "Jigsaw puzzles (context-free network)",
           "simclr": "SimCLR", "moco": "MoCo v2", "byol": "BYOL", "barlowtwins": "Barlow Twins", "vicreg": "VICReg",
           "mae": "Masked autoencoder (MAE)", "dino": "DINO (self-distillation with no labels)"}


def method_diagram(method: str, image_shape=(3, 32, 32), profile: str = "quick") -> Figure:
    """An annotated schematic of ``method`` as the kit builds it, with the true tensor shapes.

    Args:
        method: one of METHOD_NAMES (rotation, jigsaw, simclr, moco, byol, barlowtwins, vicreg, mae, dino).
        image_shape: ``(C, H, W)`` of the dataset (``data.image_shape``).
        profile: whose batch size, backbone and method settings the shapes are for.
    Returns:
        the matplotlib figure (11 x 3.5 inches), created through pyplot so notebooks show it.
    """
    spec, model, shapes = model_shapes(method, image_shape, profile)
    C, H, W = image_shape
    D = model.encoder.dim
    c = _Canvas(f"{_TITLES[method]} as sslkit builds it")
    _DRAW[method](c, spec, model, shapes)
    return c.legend(f"{profile} profile: B = {spec.train.batch_size} images a step, images {C}×{H}×{W}, "
                    f"encoder {spec.backbone} (D = {D})")
