"""The method diagrams: what they show, that their shapes are the model's, and that they are readable."""

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from sslkit.data import ImageData  # noqa: E402
from sslkit.diagrams import method_diagram  # noqa: E402
from sslkit.profiles import get_profile  # noqa: E402
from sslkit.train import build_method  # noqa: E402

METHODS = ["rotation", "jigsaw", "simclr", "moco", "byol", "barlowtwins", "vicreg", "mae", "dino"]
OUT = Path(os.environ.get("SSLKIT_DIAGRAMS_DIR", "/tmp/diagrams"))

# the components each figure must name (lower case, matched against all its text)
REQUIRED = {
    "rotation": ["rotate", "k = 4 angles", "encoder", "4-way", "cross-entropy", "rotation index", "0°, 90°, 180°, 270°"],
    "jigsaw": ["3×3 tiles", "gap & jitter", "p = 100", "one tile encoder", "shared", "concatenate", "100-way",
               "cross-entropy", "permutation's index"],
    "simclr": ["augment t", "augment t'", "encoder f", "projection head g", "nt-xent", "τ = 0.2",
               "2n−2 = 510 negatives", "kept for downstream", "discarded after training"],
    "moco": ["query encoder", "key encoder", "momentum", "ema, m = 0.99", "queue of k = 4096 keys", "enqueue",
             "dequeue", "infonce", "1 positive + k negatives", "no gradient"],
    "byol": ["online encoder", "projector", "predictor", "target encoder", "target projector",
             "τ from 0.9 to 1 (cosine)", "stop-gradient", "symmetric", "p(v) ↔ sg z'(v')", "p(v') ↔ sg z'(v)"],
    "barlowtwins": ["encoder f", "same weights", "projector", "3 linear, 1024 wide", "standardise each",
                    "cross-correlation c", "to the identity", "λ = 0.0051", "target", "discarded after training"],
    "vicreg": ["encoder f", "same weights", "expander", "3 linear, 1024 wide", "variance v(z)", "covariance c(z)",
               "variance v(z')", "covariance c(z')", "invariance", "λ = 25, μ = 25, ν = 1", "no normalisation"],
    "mae": ["patchify", "l = 64", "4×4", "hide 75%", "l_keep = 16", "vit encoder", "visible", "mask tokens",
            "unshuffle", "decoder", "mse", "masked patches", "normalised to its own mean and std"],
    "dino": ["multi-crop", "2 global 32×32", "n = 2 local 16×16", "student vit", "class token", "teacher vit",
             "teacher head", "dino head", "ℓ2 bottleneck, k = 1024", "τ_s = 0.1", "τ_t = 0.04", "centre & sharpen",
             "ema of the student", "λ 0.96 → 1 (cosine)", "cross-entropy", "the same crop skipped", "2 global only",
             "no gradient", "c ← 0.9 c + 0.1 mean(t)"],
}


def texts(fig) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_text()]


def shape_labels(fig) -> dict[str, str]:
    """gid shape:<name> -> the numeric label; a name drawn twice must say the same both times."""
    out: dict[str, str] = {}
    for t in texts(fig):
        gid = t.get_gid() or ""
        if gid.startswith("shape:"):
            name = gid.split(":", 1)[1]
            assert out.setdefault(name, t.get_text()) == t.get_text(), name
    return out


def model_and_batch(method: str, image_shape):
    spec = get_profile("quick").spec(method)
    x = torch.randint(0, 256, (4, *image_shape), dtype=torch.uint8)
    y = torch.tensor([0, 1, 0, 1])
    model = build_method(spec, ImageData("t", x, y, x, y, ["a", "b"])).train()
    return spec, model, torch.rand(2, *image_shape)


def expected_shapes(method: str, image_shape) -> dict[str, tuple]:
    """What the package's model produces, read from its forward pass (a batch of 2, in train mode,
    as in training), with the profile's batch size written in for 2."""
    spec, model, x = model_and_batch(method, image_shape)
    B, C, H, W = spec.train.batch_size, *image_shape
    out = model(x)
    e = out.extras
    if method == "rotation":
        K = model.cfg.num_rotations
        assert e["logits"].shape == (2 * K, K)
        return {"x": (B, C, H, W), "views": (B * K, C, H, W), "h": (B * K, model.encoder.dim),
                "logits": (B * K, K), "labels": (B * K,)}
    if method == "jigsaw":
        T, t, P = model.cfg.grid ** 2, model.cfg.tile_size, model.cfg.num_permutations
        shuffled, _ = model.puzzles(x)
        assert shuffled.shape == (2, T, C, t, t) and e["logits"].shape == (2, P)
        return {"x": (B, C, H, W), "tiles": (B, T, C, t, t), "h": (B * T, model.encoder.dim),
                "cat": (B, model.classifier[0].in_features), "logits": (B, P), "labels": (B,)}
    if method == "simclr":
        z = e["embeddings"]
        return {"x": (B, C, H, W), "views": (2 * B, C, H, W), "h": (2 * B, out.features.shape[1]),
                "z": (z.shape[0] // 2 * B, z.shape[1]), "sim": (2 * B, 2 * B)}
    if method == "moco":
        q, k, queue = e["queries"], e["keys"], model.queue
        return {"x": (B, C, H, W), "view": (B, C, H, W), "h": (B, out.features.shape[1]), "q": (B, q.shape[1]),
                "k": (B, k.shape[1]), "queue": tuple(queue.shape), "logits": (B, 1 + len(queue))}
    if method == "byol":
        h, p, z = e["encoder_features"], e["predictions"], e["targets"]
        return {"x": (B, C, H, W), "views": (2 * B, C, H, W), "h": (2 * B, h.shape[1]),
                "y": (2 * B, out.features.shape[1]), "p": (2 * B, p.shape[1]), "z": (2 * B, z.shape[1])}
    if method in ("barlowtwins", "vicreg"):
        h, z = e["encoder_features"], e["embeddings"]
        D_z = z.shape[1]
        if method == "barlowtwins":
            assert e["cross_correlation"].shape == (D_z, D_z)
        return {"x": (B, C, H, W), "views": (2 * B, C, H, W), "h": (2 * B, h.shape[1]), "z": (2 * B, D_z),
                "matrix": (D_z, D_z)}
    if method == "mae":
        pred, mask = e["pred"], e["mask"]
        L, keep = mask.shape[1], int((mask[0] == 0).sum())
        D = out.features.shape[1]
        return {"x": (B, C, H, W), "patches": (B, L, pred.shape[2]), "tokens": (B, L, D), "latent": (B, keep, D),
                "full": (B, L, model.cfg.decoder_dim), "pred": (B, L, pred.shape[2]), "mask": (B, L)}
    if method == "dino":
        K, n, h, D = model.cfg.out_dim, model.cfg.local_crops, model.local_size, model.encoder.dim
        assert e["teacher_probs"].shape == (4, K) and out.features.shape == (2, K)
        return {"x": (B, C, H, W), "global": (2 * B, C, H, W), "local": (n * B, C, h, h), "h": ((2 + n) * B, D),
                "s": ((2 + n) * B, K), "t": (2 * B, K), "center": (1, K)}
    raise AssertionError(method)


def assert_readable(fig) -> None:
    """No two texts overlap, every text lies inside the figure, a box's label inside its box."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    fb = fig.bbox
    boxes = [(t.get_text(), t.get_window_extent(r)) for t in texts(fig)]
    for text, b in boxes:
        assert fb.x0 <= b.x0 and b.x1 <= fb.x1 and fb.y0 <= b.y0 and b.y1 <= fb.y1, f"{text!r} is cut off"
    for i, (t1, b1) in enumerate(boxes):
        for t2, b2 in boxes[i + 1:]:
            assert not b1.overlaps(b2), f"{t1!r} overlaps {t2!r}"
    patches = [p.get_window_extent(r) for p in fig.axes[0].patches]
    for t in texts(fig):
        if t.get_gid() == "box":
            b = t.get_window_extent(r)
            assert any(p.x0 <= b.x0 and b.x1 <= p.x1 and p.y0 <= b.y0 and b.y1 <= p.y1 for p in patches), \
                f"the label {t.get_text()!r} sticks out of its box"


@pytest.mark.parametrize("method", METHODS)
def test_diagram_names_its_components_and_shows_the_models_shapes(method):
    fig = method_diagram(method, (3, 32, 32))
    try:
        OUT.mkdir(parents=True, exist_ok=True)
        fig.savefig(OUT / f"{method}.png", dpi=100)
        all_text = " ".join(t.get_text() for t in texts(fig)).lower()
        for part in REQUIRED[method]:
            assert part in all_text, f"the {method} diagram does not mention {part!r}"
        assert tuple(fig.get_size_inches()) == (11.0, 3.5)
        assert shape_labels(fig) == {k: str(v) for k, v in expected_shapes(method, (3, 32, 32)).items()}
        assert_readable(fig)
    finally:
        plt.close(fig)


@pytest.mark.parametrize("method", METHODS)
def test_digits_sized_images_give_their_own_shapes(method):
    fig = method_diagram(method, (1, 8, 8))
    try:
        fig.savefig(OUT / f"{method}_digits.png", dpi=100)
        assert shape_labels(fig) == {k: str(v) for k, v in expected_shapes(method, (1, 8, 8)).items()}
        assert shape_labels(fig)["x"].endswith(", 1, 8, 8)")
        assert_readable(fig)
    finally:
        plt.close(fig)


def test_an_unknown_method_is_one_sentence_naming_the_valid_ones():
    with pytest.raises(ValueError) as err:
        method_diagram("swav")
    message = str(err.value)
    assert message.count(". ") == 0 and message.endswith(".") and "swav" in message
    for m in METHODS:
        assert m in message


def test_drawing_leaves_the_callers_random_stream_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    plt.close(method_diagram("rotation"))
    assert torch.equal(torch.rand(3), expected)
