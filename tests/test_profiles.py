"""The two profiles: what each gives every method, and that the full profile's runs (which only a
GPU trains for real) build and take a training step, so a GPU session does not find a broken
configuration after its first minutes."""

import pytest
import torch

from sslkit.data import ImageData
from sslkit.evaluate import extract_features, fine_tune
from sslkit.methods import METHODS
from sslkit.profiles import get_profile
from sslkit.train import build_method


def cifar_like(n: int = 40) -> ImageData:
    g = torch.Generator().manual_seed(0)
    x = lambda: torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = lambda: torch.arange(n) % 10
    return ImageData("cifar-like", x(), y(), x(), y(), [f"class {i}" for i in range(10)])


def test_quick_profile_trains_fixed_steps_and_full_profile_epochs():
    quick, full = get_profile("quick"), get_profile("full")
    for method in METHODS:
        q, f = quick.train_config(method), full.train_config(method)
        assert q.steps and not q.epochs and not q.minutes, method      # the same result on any machine
        assert f.epochs == 5 and not f.steps, method
    assert quick.backbone_for("mae") == "vit_mini" and full.backbone_for("mae") == "vit_tiny"
    assert quick.backbone_for("simclr") == "small_cnn" and full.backbone_for("simclr") == "resnet18"


def test_quick_profile_evaluates_on_a_subset_and_full_on_everything():
    data = cifar_like(200)
    assert len(get_profile("quick").eval_data(data).train_x) == 200      # subsets never grow the data
    big = ImageData("big", data.train_x.repeat(30, 1, 1, 1), data.train_y.repeat(30), data.test_x.repeat(6, 1, 1, 1),
                    data.test_y.repeat(6), data.classes)
    quick = get_profile("quick").eval_data(big)
    assert (len(quick.train_x), len(quick.test_x)) == (5000, 1000)
    full = get_profile("full").eval_data(big)
    assert (len(full.train_x), len(full.test_x)) == (6000, 1200)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_full_profile_run_builds_and_takes_a_training_step(method):
    spec = get_profile("full").spec(method)
    data = cifar_like()
    m = build_method(spec, data)
    x = data.train_x[:8].float() / 255
    out = m(x, labels=data.train_y[:8]) if getattr(m, "uses_labels", False) else m(x)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in m.encoder.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)         # the encoder learns from it
    m.on_step_end(0.5)
    feats = extract_features(m.encoder, data.test_x[:4])
    assert feats.shape == (4, m.encoder.dim) and torch.isfinite(feats).all()


def test_full_profile_vit_fine_tunes():
    spec = get_profile("full").spec("mae")
    data = cifar_like()
    acc = fine_tune(build_method(spec, data).encoder, data, steps=1, batch_size=8)
    assert 0.0 <= acc <= 1.0
