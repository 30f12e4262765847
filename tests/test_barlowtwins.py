import math
import subprocess
import sys

import pytest
import torch

from sslkit.backbones import build_encoder
from sslkit.methods import METHODS
from sslkit.methods.barlowtwins import (BarlowTwins, BarlowTwinsConfig, barlow_twins_loss, barlow_twins_terms,
                                        cross_correlation, off_diagonal)
from sslkit.train import RunSpec, pretrain


def make_bt(**cfg) -> BarlowTwins:
    torch.manual_seed(0)
    encoder = build_encoder("small_cnn", 3, [0.5] * 3, [0.25] * 3, image_size=16)
    return BarlowTwins(encoder, BarlowTwinsConfig(**{"projection_dim": 64, **cfg}))


def pair(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two correlated views of n embeddings of width d, with units of different scales and means."""
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g) * torch.linspace(0.5, 3, d) + torch.randn(d, generator=g)
    return z1, z1 + 0.5 * torch.randn(n, d, generator=g)


def algorithm_1(z_a: torch.Tensor, z_b: torch.Tensor, lambd: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's Algorithm 1 (PyTorch-style pseudocode), written out: its matrix and its loss."""
    N, D = z_a.shape
    # normalize repr. along the batch dimension
    z_a_norm = (z_a - z_a.mean(0)) / z_a.std(0)    # NxD
    z_b_norm = (z_b - z_b.mean(0)) / z_b.std(0)    # NxD
    # cross-correlation matrix
    c = torch.mm(z_a_norm.T, z_b_norm) / N         # DxD
    return c, pseudocode_loss(c, lambd)


def pseudocode_loss(c: torch.Tensor, lambd: float) -> torch.Tensor:
    """Algorithm 1's loss on a matrix c: c_diff = (c - eye(D)).pow(2), off-diagonal elements times lambda, sum."""
    D = c.shape[0]
    c_diff = (c - torch.eye(D)).pow(2)             # DxD
    c_diff[~torch.eye(D, dtype=torch.bool)] *= lambd   # multiply off-diagonal elems of c_diff by lambda
    return c_diff.sum()


def test_registered():
    assert METHODS["barlowtwins"] == (BarlowTwinsConfig, BarlowTwins)
    assert list(METHODS).index("barlowtwins") == list(METHODS).index("simsiam") + 1


@pytest.mark.parametrize("n,d", [(8, 3), (64, 16), (256, 128)])
def test_the_matrix_is_algorithm_1s_up_to_its_unbiased_std(n, d):
    """Algorithm 1 divides by the unbiased std, main.py's BatchNorm by the biased one: the paper's
    matrix is (N-1)/N times the kit's (main.py's), entry by entry."""
    z1, z2 = pair(n, d)
    paper, _ = algorithm_1(z1, z2, 0.0051)
    c = cross_correlation(z1, z2)
    assert c.shape == (d, d)
    assert torch.allclose(paper, c * (n - 1) / n, rtol=1e-4, atol=1e-6)   # eps 1e-5 on variances >= 0.25


@pytest.mark.parametrize("n,d", [(8, 3), (64, 16), (256, 128)])
@pytest.mark.parametrize("lambd", [0.0, 0.0051, 0.1, 1.0])
def test_the_loss_is_algorithm_1s_on_that_matrix(n, d, lambd):
    z1, z2 = pair(n, d, seed=n + d)
    want = pseudocode_loss(cross_correlation(z1, z2), lambd)
    assert float(barlow_twins_loss(z1, z2, lambd)) == pytest.approx(float(want), rel=1e-5)


@pytest.mark.parametrize("n,d", [(8, 3), (64, 16), (256, 128), (32, 512)])
@pytest.mark.parametrize("lambd", [0.0051, 0.005, 0.1])
def test_the_loss_equals_lightlys(n, d, lambd):
    """lightly's BarlowTwinsLoss standardises with F.batch_norm (biased variance, eps 1e-5), as main.py."""
    from lightly.loss import BarlowTwinsLoss

    z1, z2 = pair(n, d, seed=3 * n + d)
    want = BarlowTwinsLoss(lambda_param=lambd)(z1, z2)
    assert float(barlow_twins_loss(z1, z2, lambd)) == pytest.approx(float(want), rel=1e-5)


def test_off_diagonal_lists_the_off_diagonal_entries_row_by_row():
    m = torch.arange(16.0).view(4, 4)
    assert off_diagonal(m).tolist() == [1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14]
    with pytest.raises(ValueError, match="square"):
        off_diagonal(torch.zeros(2, 3))


def test_the_perfect_embedding_costs_nothing():
    """Views that agree and units that are decorrelated: c is the identity and the loss is 0."""
    x = torch.randn(256, 16)
    z = 10 * torch.linalg.qr(x - x.mean(0))[0]     # zero-mean, orthogonal columns
    assert float(barlow_twins_loss(z, z, 0.0051)) < 1e-3
    assert torch.allclose(cross_correlation(z, z), torch.eye(16), atol=2e-3)


def test_each_term_alone_allows_its_own_collapse():
    """A constant embedding (complete collapse) makes c zero: only the invariance term objects
    (loss D). Units that all copy one feature (dimensional collapse) make c all ones: only the
    redundancy term objects. So dropping a term lets the collapse it prevented through."""
    D = 8
    const = torch.ones(64, D) * 3.0
    on, off = barlow_twins_terms(cross_correlation(const, const))
    assert float(on) == pytest.approx(D) and float(off) == pytest.approx(0.0)
    feature = torch.randn(64, 1)
    copies = feature.repeat(1, D) * torch.linspace(1, 2, D)
    on, off = barlow_twins_terms(cross_correlation(copies, copies))
    assert float(on) == pytest.approx(0.0, abs=1e-4) and float(off) == pytest.approx(D * (D - 1), rel=1e-4)


def test_the_projector_is_main_pys():
    m = make_bt()
    linears = [l for l in m.projector if isinstance(l, torch.nn.Linear)]
    norms = [l for l in m.projector if isinstance(l, torch.nn.BatchNorm1d)]
    assert len(linears) == 3 and all(l.bias is None for l in linears) and len(norms) == 2
    assert isinstance(m.projector[-1], torch.nn.Linear)          # the loss standardises the output
    assert linears[0].in_features == 256 and all(l.out_features == 64 for l in linears)
    assert BarlowTwinsConfig().lambd == 0.0051 and BarlowTwinsConfig().projection_dim == 8192


@pytest.mark.parametrize("setting", [{"lambd": 0.0}, {"invariance_weight": 0.0}, {}])
def test_the_loss_is_the_weighted_terms_it_reports(setting):
    m = make_bt(**setting)
    torch.manual_seed(1)
    out = m(torch.rand(16, 3, 16, 16))
    e = out.extras
    assert e["cross_correlation"].shape == (64, 64) and e["cross_correlation"].dtype == torch.float32
    on, off = barlow_twins_terms(e["cross_correlation"])
    assert torch.allclose(e["invariance"], on) and torch.allclose(e["redundancy"], off)
    want = m.cfg.invariance_weight * on + m.cfg.lambd * off
    assert torch.allclose(out.loss.detach(), want)
    # and the matrix is that of the embeddings' two halves
    z = e["embeddings"]
    assert torch.allclose(e["cross_correlation"], cross_correlation(z[:16], z[16:]), atol=1e-5)


def test_the_matrix_stays_fp32_under_bf16_autocast():
    z1, z2 = pair(64, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c = cross_correlation(z1.bfloat16(), z2.bfloat16())
    assert c.dtype == torch.float32
    assert torch.allclose(c, cross_correlation(z1.bfloat16().float(), z2.bfloat16().float()), atol=1e-6)


GENTLE = {"crop_scale_min": 0.5, "jitter_p": 0.0, "gray_p": 0.0, "solarize_p": 0.0}


def smooth_images(n: int = 32) -> torch.Tensor:
    """Images with structure at the scale of a crop, so that two gentle views of one can agree (two
    crops of pixel noise share nothing to agree on: there the loss stays near D)."""
    return torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4), size=16, mode="bilinear")


def test_loss_falls_on_a_small_batch(fit):
    torch.manual_seed(0)
    losses = fit(make_bt(augment1=GENTLE, augment2=GENTLE), smooth_images(), steps=30, lr=3e-3)
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5       # measured: about 15 -> 3


@pytest.mark.parametrize("setting,says", [({"projection_dim": 0}, "must be positive"),
                                          ({"lambd": -1.0}, "must be >= 0"),
                                          ({"invariance_weight": -0.5}, "must be >= 0")])
def test_bad_settings_are_refused_and_write_nothing(setting, says, tmp_path):
    with pytest.raises(ValueError, match=says):
        BarlowTwinsConfig(**setting)
    with pytest.raises(ValueError, match=says):
        pretrain(RunSpec("barlowtwins", "digits", method_config=setting, train={"steps": 2, "batch_size": 16}),
                 tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_pretrain_on_digits_writes_a_run_with_the_spread():
    run = pretrain(RunSpec("barlowtwins", "digits", method_config={"projection_dim": 32},
                           train={"steps": 4, "batch_size": 32, "log_every": 2}), progress_bar=False)
    assert len(run.history) == 2 and all(r["embedding_spread"] is not None for r in run.history)
    assert all(math.isfinite(r["loss"]) for r in run.history)
    assert (run.out_dir / "checkpoint.pt").exists()


def test_collapse_signal_is_the_embedding_of_one_view():
    out = make_bt()(torch.rand(8, 3, 16, 16))
    assert out.features.shape == (8, 64) and not out.features.requires_grad
    assert out.extras["encoder_features"].shape == (16, 256)


def test_the_profiles_know_it_from_its_class():
    from sslkit.profiles import get_profile

    spec = get_profile("quick").spec("barlowtwins")
    assert spec.backbone == "small_cnn" and spec.method_config["projection_dim"] == 1024
    assert "barlowtwins" in get_profile("quick").settings_table()
    assert get_profile("full").spec("barlowtwins").backbone == "resnet18"


def test_cli_pretrains_barlowtwins(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "sslkit", "pretrain", "barlowtwins", "--dataset", "digits", "--steps", "3",
                        "--batch-size", "32", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (out / "checkpoint.pt").exists() and (out / "history.json").exists()
