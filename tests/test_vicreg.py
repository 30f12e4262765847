import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from sslkit.backbones import build_encoder
from sslkit.methods import METHODS
from sslkit.methods.vicreg import (VICReg, VICRegConfig, covariance, covariance_term, invariance_term, variance_term,
                                   vicreg_loss, vicreg_terms)
from sslkit.train import RunSpec, pretrain


def make_vicreg(**cfg) -> VICReg:
    torch.manual_seed(0)
    encoder = build_encoder("small_cnn", 3, [0.5] * 3, [0.25] * 3, image_size=16)
    return VICReg(encoder, VICRegConfig(**{"projection_dim": 64, **cfg}))


def pair(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two correlated views of n embeddings of width d; some units spread less than 1, some more."""
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g) * torch.linspace(0.2, 2, d) + torch.randn(d, generator=g)
    return z1, z1 + 0.3 * torch.randn(n, d, generator=g)


def off_diagonal(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    return x[~torch.eye(n, dtype=torch.bool)]


def algorithm_1(z_a: torch.Tensor, z_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The paper's Algorithm 1 (appendix A, VICReg pytorch pseudocode), written out: its three losses."""
    N, D = z_a.shape
    # invariance loss
    sim_loss = F.mse_loss(z_a, z_b)
    # variance loss
    std_z_a = torch.sqrt(z_a.var(dim=0) + 1e-04)
    std_z_b = torch.sqrt(z_b.var(dim=0) + 1e-04)
    std_loss = torch.mean(F.relu(1 - std_z_a)) + torch.mean(F.relu(1 - std_z_b))
    # covariance loss
    z_a = z_a - z_a.mean(dim=0)
    z_b = z_b - z_b.mean(dim=0)
    cov_z_a = (z_a.T @ z_a) / (N - 1)
    cov_z_b = (z_b.T @ z_b) / (N - 1)
    cov_loss = off_diagonal(cov_z_a).pow_(2).sum() / D + off_diagonal(cov_z_b).pow_(2).sum() / D
    return sim_loss, std_loss, cov_loss


def test_registered():
    assert METHODS["vicreg"] == (VICRegConfig, VICReg)
    assert list(METHODS).index("vicreg") == list(METHODS).index("barlowtwins") + 1


@pytest.mark.parametrize("n,d", [(8, 3), (64, 16), (256, 128)])
def test_the_terms_are_algorithm_1s(n, d):
    """Algorithm 1 adds the two views' variance terms; main_vicreg.py (and the kit) averages them,
    so the paper's std_loss is twice the kit's variance term. The other two are the same."""
    z1, z2 = pair(n, d, seed=n + d)
    sim, std, cov = algorithm_1(z1, z2)
    t = vicreg_terms(z1, z2)
    assert float(t["invariance"]) == pytest.approx(float(sim), rel=1e-5)
    assert float(t["variance"]) == pytest.approx(float(std) / 2, rel=1e-5)
    assert float(t["covariance"]) == pytest.approx(float(cov), rel=1e-5)
    assert float(t["variance"]) > 0.01        # the case exercises the hinge (some units spread less than 1)


@pytest.mark.parametrize("n,d", [(8, 3), (64, 16), (256, 128), (32, 512)])
@pytest.mark.parametrize("weights", [(25.0, 25.0, 1.0), (1.0, 0.0, 0.0), (0.0, 25.0, 1.0), (5.0, 10.0, 0.5)])
def test_the_loss_equals_lightlys(n, d, weights):
    """lightly's VICRegLoss follows main_vicreg.py: mean of the variance terms, sum of the covariance terms."""
    from lightly.loss import VICRegLoss

    lam, mu, nu = weights
    z1, z2 = pair(n, d, seed=3 * n + d)
    want = VICRegLoss(lambda_param=lam, mu_param=mu, nu_param=nu)(z1, z2)
    assert float(vicreg_loss(z1, z2, lam, mu, nu)) == pytest.approx(float(want), rel=1e-5, abs=1e-6)


def test_each_term_objects_to_its_own_failure():
    """A constant embedding: only the variance term objects (1 - sqrt(eps) per unit). Units that all
    copy one feature: only the covariance term. Two views that ignore each other: only the
    invariance term. Each term prevents what the others let through."""
    g = torch.Generator().manual_seed(0)
    const = torch.full((64, 8), 3.0)
    t = vicreg_terms(const, const)
    assert float(t["variance"]) == pytest.approx(1 - math.sqrt(1e-4))
    assert float(t["invariance"]) == 0 and float(t["covariance"]) == 0
    copies = 2 * torch.randn(64, 1, generator=g).repeat(1, 8)
    t = vicreg_terms(copies, copies)
    assert float(t["variance"]) < 0.05 and float(t["invariance"]) == 0 and float(t["covariance"]) > 10
    a, b = 2 * torch.randn(4096, 8, generator=g), 2 * torch.randn(4096, 8, generator=g)
    t = vicreg_terms(a, b)
    assert float(t["variance"]) == 0 and float(t["covariance"]) < 0.2 and float(t["invariance"]) > 7


def test_the_hinge_on_the_std_still_pulls_near_a_collapse_where_one_on_the_variance_does_not():
    """Section 4.1: with S = Var the gradient is close to 0 when the embeddings are close to their mean."""
    z = (1e-3 * torch.randn(64, 4)).requires_grad_()
    variance_term(z).backward()
    on_std = z.grad.norm()
    z.grad = None
    F.relu(1 - z.var(0)).mean().backward()
    on_var = z.grad.norm()
    assert on_std > 20 * on_var       # about 1 / (2 sqrt(Var + eps)) = 50 times here


def test_covariance_is_the_unbiased_covariance_and_stays_fp32_under_autocast():
    z, _ = pair(50, 6)
    assert torch.allclose(covariance(z), torch.cov(z.T), atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c = covariance(z.bfloat16())
    assert c.dtype == torch.float32
    assert float(covariance_term(z)) == pytest.approx(float((torch.cov(z.T).pow(2).sum() - torch.cov(z.T).diag().pow(2).sum()) / 6), rel=1e-5)
    assert float(invariance_term(z, z)) == 0


def test_the_expander_is_main_vicregs():
    m = make_vicreg()
    linears = [l for l in m.projector if isinstance(l, torch.nn.Linear)]
    norms = [l for l in m.projector if isinstance(l, torch.nn.BatchNorm1d)]
    assert len(linears) == 3 and len(norms) == 2 and isinstance(m.projector[-1], torch.nn.Linear)
    assert linears[0].bias is not None and linears[1].bias is not None and linears[2].bias is None
    assert linears[0].in_features == 256 and all(l.out_features == 64 for l in linears)
    cfg = VICRegConfig()
    assert (cfg.invariance_weight, cfg.variance_weight, cfg.covariance_weight, cfg.projection_dim) == (25, 25, 1, 8192)


@pytest.mark.parametrize("setting", [{}, {"variance_weight": 0.0}, {"covariance_weight": 0.0}, {"invariance_weight": 0.0}])
def test_the_loss_is_the_weighted_terms_it_reports(setting):
    m = make_vicreg(**setting)
    torch.manual_seed(1)
    out = m(torch.rand(16, 3, 16, 16))
    e, c = out.extras, m.cfg
    want = c.invariance_weight * e["invariance"] + c.variance_weight * e["variance"] + c.covariance_weight * e["covariance"]
    assert torch.allclose(out.loss.detach(), want)
    z = e["embeddings"]
    assert all(torch.allclose(e[k], v) for k, v in vicreg_terms(z[:16], z[16:]).items())


GENTLE = {"crop_scale_min": 0.5, "jitter_p": 0.0, "gray_p": 0.0, "solarize_p": 0.0}


def test_loss_falls_on_a_small_batch(fit):
    torch.manual_seed(0)
    x = F.interpolate(torch.rand(32, 3, 4, 4), size=16, mode="bilinear")   # structure two crops can share
    losses = fit(make_vicreg(augment1=GENTLE, augment2=GENTLE), x, steps=30, lr=3e-3)
    assert all(math.isfinite(v) for v in losses)
    # measured: about 18 -> 11; 32 images cannot estimate 64 x 64 covariances better than ~1/sqrt(32)
    assert sum(losses[-5:]) / 5 < 0.75 * sum(losses[:5]) / 5


@pytest.mark.parametrize("setting,says", [({"projection_dim": 0}, "must be positive"),
                                          ({"variance_weight": -1.0}, "variance_weight must be >= 0"),
                                          ({"covariance_weight": -0.5}, "covariance_weight must be >= 0")])
def test_bad_settings_are_refused_and_write_nothing(setting, says, tmp_path):
    with pytest.raises(ValueError, match=says):
        VICRegConfig(**setting)
    with pytest.raises(ValueError, match=says):
        pretrain(RunSpec("vicreg", "digits", method_config=setting, train={"steps": 2, "batch_size": 16}), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_pretrain_on_digits_writes_a_run_with_the_spread():
    run = pretrain(RunSpec("vicreg", "digits", method_config={"projection_dim": 32},
                           train={"steps": 4, "batch_size": 32, "log_every": 2}), progress_bar=False)
    assert len(run.history) == 2 and all(r["embedding_spread"] is not None for r in run.history)
    assert all(math.isfinite(r["loss"]) for r in run.history)
    assert (run.out_dir / "checkpoint.pt").exists()


def test_collapse_signal_is_the_embedding_of_one_view():
    out = make_vicreg()(torch.rand(8, 3, 16, 16))
    assert out.features.shape == (8, 64) and not out.features.requires_grad
    assert out.extras["encoder_features"].shape == (16, 256)


def test_the_profiles_know_it_from_its_class():
    from sslkit.profiles import get_profile

    spec = get_profile("quick").spec("vicreg")
    assert spec.backbone == "small_cnn" and spec.method_config["projection_dim"] == 1024
    assert "vicreg" in get_profile("quick").settings_table()
    assert get_profile("full").spec("vicreg").backbone == "resnet18"


def test_cli_pretrains_vicreg(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "sslkit", "pretrain", "vicreg", "--dataset", "digits", "--steps", "3",
                        "--batch-size", "32", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (out / "checkpoint.pt").exists() and (out / "history.json").exists()


def test_the_explorer_shows_what_each_weight_prevents():
    """redundancy_explorer's VICReg row on its toy data: mu = 0 lets every unit stop varying, nu = 0
    leaves one direction, lambda = 0 loses the views' agreement; Barlow Twins' lambda near 0 fills
    the matrix's off-diagonal."""
    import re

    import matplotlib.pyplot as plt

    from sslkit.widgets import redundancy_explorer

    def numbers(row):
        titles = [ax.get_title() for ax in plt.gcf().axes[3 * row: 3 * row + 3]]
        off = float(re.search(r"off-diag\.\| ([\d.]+)", titles[0]).group(1))
        rank = float(re.search(r"effective rank ([\d.]+)", titles[1]).group(1))
        std, agree = map(float, re.search(r"mean std ([\d.]+), mean agreement (-?[\d.]+)", titles[2]).groups())
        return off, rank, std, agree

    w = redundancy_explorer()
    lambd, (inv, var, cov) = w.children[0].children[0].children[0], w.children[0].children[1].children
    _, rank, std, agree = numbers(1)
    off_bt = numbers(0)[0]
    var.value = 0
    assert numbers(1)[2] < 0.1 * std                    # no variance term: a constant
    var.value = 25
    cov.value = 0
    assert numbers(1)[1] < 0.5 * rank                   # no covariance term: one direction
    cov.value = 1
    inv.value = 0
    assert numbers(1)[3] < agree - 0.2                  # no invariance term: the views disagree
    lambd.value = 1e-4
    assert numbers(0)[0] > off_bt + 0.1                 # Barlow Twins without redundancy reduction
    plt.close("all")
