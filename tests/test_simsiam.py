import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from sslkit.backbones import build_encoder
from sslkit.methods import METHODS
from sslkit.methods.simsiam import SimSiam, SimSiamConfig, negative_cosine
from sslkit.train import RunSpec, pretrain


def make_simsiam(**cfg) -> SimSiam:
    torch.manual_seed(0)
    encoder = build_encoder("small_cnn", 3, [0.5] * 3, [0.25] * 3, image_size=16)
    return SimSiam(encoder, SimSiamConfig(**{"projection_dim": 64, "predictor_dim": 16, **cfg}))


def test_registered():
    assert METHODS["simsiam"] == (SimSiamConfig, SimSiam)


@pytest.mark.parametrize("b,d", [(2, 3), (16, 64), (5, 2048)])
def test_the_loss_is_the_negative_cosine(b, d):
    g = torch.Generator().manual_seed(b)
    p, z = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    by_hand = -sum(float(p[i] @ z[i] / (p[i].norm() * z[i].norm())) for i in range(b)) / b
    assert float(negative_cosine(p, z)) == pytest.approx(by_hand, abs=1e-5)
    assert float(negative_cosine(p, 3 * p)) == pytest.approx(-1.0, abs=1e-6)       # the minimum


def test_the_projector_and_predictor_are_the_authors_shapes():
    m = make_simsiam()
    linears = [l for l in m.projector if isinstance(l, torch.nn.Linear)]
    assert len(linears) == 3 and all(l.bias is None for l in linears)            # builder.py: 3 layers, BN after each
    assert isinstance(m.projector[-1], torch.nn.BatchNorm1d) and not m.projector[-1].affine
    assert m.predictor[0].out_features == 16 and m.predictor[-1].out_features == 64   # the bottleneck


def test_the_stop_gradient_keeps_the_targets_out_of_the_gradient():
    """With the stop-gradient, the loss's gradient is what the prediction side alone gives: the
    same as computing the loss with the projections recomputed and detached by hand."""
    x = torch.rand(8, 3, 16, 16)
    grads = {}
    for stop in (True, False):
        m = make_simsiam(stop_gradient=stop)
        torch.manual_seed(1)
        m(x).loss.backward()
        grads[stop] = m.projector[0].weight.grad.clone()
    assert not torch.allclose(grads[True], grads[False])       # the target side's gradient is gone
    m = make_simsiam()
    torch.manual_seed(1)
    v = m.views(x)
    z = m.projector(m.encoder(v))
    p, t = m.predictor(z), z.detach()
    manual = 0.5 * (-F.cosine_similarity(p[:8], t[8:]).mean()) + 0.5 * (-F.cosine_similarity(p[8:], t[:8]).mean())
    manual.backward()
    assert torch.allclose(m.projector[0].weight.grad, grads[True], atol=1e-6)


def test_without_predictor_the_predictor_is_the_identity():
    m = make_simsiam(use_predictor=False)
    assert isinstance(m.predictor, torch.nn.Identity) and not list(m.predictor.parameters())


def test_loss_falls_on_a_small_batch(fit):
    torch.manual_seed(0)
    losses = fit(make_simsiam(), torch.rand(32, 3, 16, 16), steps=30, lr=1e-2)
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2          # from about 0 towards -1


@pytest.mark.parametrize("setting", [{"projection_dim": 0}, {"predictor_dim": -1}])
def test_bad_widths_are_refused_and_write_nothing(setting, tmp_path):
    with pytest.raises(ValueError, match="must be positive"):
        SimSiamConfig(**setting)
    with pytest.raises(ValueError, match="must be positive"):
        pretrain(RunSpec("simsiam", "digits", method_config=setting, train={"steps": 2, "batch_size": 16}), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_collapse_signal_is_the_projection_of_one_view():
    out = make_simsiam()(torch.rand(8, 3, 16, 16))
    assert out.features.shape == (8, 64) and not out.features.requires_grad
    assert out.extras["encoder_features"].shape == (16, 256)


def test_the_profiles_know_it_from_its_class():
    from sslkit.profiles import get_profile

    spec = get_profile("quick").spec("simsiam")
    assert spec.backbone == "small_cnn" and spec.train.batch_size == 64 and spec.method_config["projection_dim"] == 512
    assert "simsiam" in get_profile("quick").settings_table() and get_profile("full").spec("simsiam").backbone == "resnet18"


def test_cli_pretrains_simsiam(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "sslkit", "pretrain", "simsiam", "--dataset", "digits", "--steps", "3",
                        "--batch-size", "32", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (out / "checkpoint.pt").exists() and (out / "history.json").exists()
