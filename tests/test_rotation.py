import pytest
import torch

from sslkit.backbones import build_encoder
from sslkit.methods import METHODS
from sslkit.methods.rotation import Rotation, RotationConfig, disc_mask, rotate


def make(K=4, channels=3, **kw):
    torch.manual_seed(0)
    enc = build_encoder("small_cnn", channels, [0.5] * channels, [0.25] * channels)
    return Rotation(enc, RotationConfig(num_rotations=K, **kw))


def test_registered():
    assert METHODS["rotation"] == (RotationConfig, Rotation)


@pytest.mark.parametrize("K", [2, 4, 8])
def test_each_label_is_the_rotation_applied(K):
    m = make(K)
    x = torch.rand(3, 3, 16, 16)
    views, labels = m.rotations(x)
    assert views.shape == (K * 3, 3, 16, 16) and labels.shape == (K * 3,)
    mask = disc_mask(16, 16) if K == 8 else 1.0
    for j in range(K * 3):
        k, i = divmod(j, 3)
        assert int(labels[j]) == k
        assert torch.allclose(views[j], (rotate(x[i: i + 1], 360 * k / K) * mask)[0])


def test_right_angles_are_exact_and_counter_clockwise():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    r = rotate(x, 90)
    # counter-clockwise: the top row becomes the left column, read bottom to top
    assert torch.equal(r[0, 0, :, 0], x[0, 0, 0].flip(0))
    assert torch.equal(rotate(x, 180), x.flip(2).flip(3))
    assert torch.equal(rotate(r, 270), x)


def test_45_degree_steps_agree_with_right_angles():
    """The interpolating path, used for 45-degree steps, turns the same way as rot90."""
    # a smooth image, so that bilinear resampling barely changes it
    x = torch.nn.functional.interpolate(torch.rand(2, 3, 3, 3), size=(24, 24), mode="bilinear")
    disc = disc_mask(24, 24)
    two_45 = rotate(rotate(x, 45.0), 45.0) * disc
    err = ((two_45 - rotate(x, 90) * disc).abs()).mean()
    wrong = ((two_45 - rotate(x, 270) * disc).abs()).mean()
    assert err < 0.02 < wrong


def test_forward_shapes_and_finite_loss():
    m = make(4)
    out = m(torch.rand(6, 3, 32, 32))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.features.shape == (6, 256)
    assert out.extras["logits"].shape == (24, 4)


@pytest.mark.parametrize("K", [2, 4])
def test_loss_falls_on_a_small_batch(K, fit):
    m = make(K, channels=1)
    # images whose top is brighter than their bottom: the orientation is learnable
    x = (torch.linspace(1, 0, 16).view(1, 1, 16, 1) + 0.3 * torch.rand(16, 1, 16, 16)).clamp(0, 1)
    losses = fit(m, x, steps=40, lr=3e-3)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_rotation_probs_shape_and_normalised():
    m = make(4)
    x = (torch.rand(5, 3, 16, 16) * 255).to(torch.uint8)
    p = m.rotation_probs(x)
    assert p.shape == (5, 4, 4)
    assert torch.allclose(p.sum(-1), torch.ones(5, 4), atol=1e-5)
    assert m.training
    # eval mode (BatchNorm's running statistics): the batching does not change the result
    assert torch.allclose(m.rotation_probs(x, batch_size=2), p, atol=1e-5)


@pytest.mark.parametrize("K", [0, 3, 6, 16])
def test_unsupported_rotation_counts_are_refused(K):
    with pytest.raises(ValueError, match="num_rotations must be 2, 4 or 8"):
        RotationConfig(num_rotations=K)


def run_cli(*args):
    import os
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "sslkit", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=600)


def test_cli_refuses_an_unsupported_rotation_count_and_writes_nothing(tmp_path):
    r = run_cli("pretrain", "rotation", "--dataset", "digits", "--config", "num_rotations=3",
                "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "num_rotations must be 2, 4 or 8, got 3" in lines[0], r.stderr
    assert not (tmp_path / "out").exists()


def test_layerwise_probe_reads_every_stage_and_the_last_one_is_the_encoder_output():
    from sslkit.data import load_dataset
    from sslkit.evaluate import extract_features, extract_stage_features, layerwise_probe

    m = make(4, channels=1)
    data = load_dataset("digits").subset(300, 100)
    stages = extract_stage_features(m.encoder, data.test_x[:20], pool=1)
    assert list(stages) == ["stage1", "stage2", "stage3", "stage4"]
    assert [f.shape[1] for f in stages.values()] == [32, 64, 128, 256]
    assert torch.allclose(stages["stage4"], extract_features(m.encoder, data.test_x[:20]), atol=1e-5)
    acc = layerwise_probe(m.encoder, data)
    assert list(acc) == list(stages) and all(0.3 < a <= 1.0 for a in acc.values())   # 10 classes: chance is 0.1


def test_layerwise_probe_on_resnet18_uses_layer1_to_layer4():
    from sslkit.evaluate import extract_stage_features

    enc = build_encoder("resnet18", 3, [0.5] * 3, [0.25] * 3)
    f = extract_stage_features(enc, (torch.rand(2, 3, 16, 16) * 255).to(torch.uint8), pool=1)
    assert {k: v.shape[1] for k, v in f.items()} == {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}


def test_rotation_explorer_draws():
    import matplotlib.pyplot as plt

    from sslkit.widgets import rotation_explorer

    m = make(8)
    w = rotation_explorer(m, (torch.rand(4, 3, 16, 16) * 255).to(torch.uint8))
    w.children[0].children[1].value = 3           # choose 135 degrees: redraws
    assert "135°" in plt.gcf().axes[0].get_title()
    plt.close("all")
