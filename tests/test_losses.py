import math

import pytest
import torch
import torch.nn.functional as F

from sslkit.losses import nt_xent


def nt_xent_reference(z1, z2, t):
    """Eq. 1 of the SimCLR paper, written out pair by pair."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n2 = len(z)
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        num = math.exp(float(z[i] @ z[j]) / t)
        den = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n2) if k != i)
        total += -math.log(num / den)
    return total / n2


@pytest.mark.parametrize("n", [2, 3, 8, 17])
@pytest.mark.parametrize("t", [0.05, 0.1, 0.5, 1.0, 2.0])
def test_matches_the_formula(n, t):
    g = torch.Generator().manual_seed(n * 100 + int(t * 100))
    z1, z2 = torch.randn(n, 6, generator=g), torch.randn(n, 6, generator=g)
    assert float(nt_xent(z1, z2, t)) == pytest.approx(nt_xent_reference(z1, z2, t), rel=1e-4, abs=1e-5)


def test_random_embeddings_give_about_log_2n_minus_1():
    n = 256
    z1, z2 = torch.randn(n, 512), torch.randn(n, 512)
    assert float(nt_xent(z1, z2, 1.0)) == pytest.approx(math.log(2 * n - 1), rel=0.02)


def test_identical_views_at_low_temperature_give_about_zero():
    z = F.normalize(torch.randn(64, 128), dim=1)
    assert float(nt_xent(z, z.clone(), 0.02)) < 1e-3


def test_scale_of_embeddings_does_not_matter():
    z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    assert torch.allclose(nt_xent(z1, z2, 0.3), nt_xent(5 * z1, 0.1 * z2, 0.3), atol=1e-5)


def test_gradient_flows_to_both_views():
    z1, z2 = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    nt_xent(z1, z2, 0.5).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0


@pytest.mark.parametrize("t", [0.0, -0.1])
def test_temperature_must_be_positive(t):
    with pytest.raises(ValueError, match="temperature must be positive"):
        nt_xent(torch.randn(4, 8), torch.randn(4, 8), t)


def test_batch_of_one_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        nt_xent(torch.randn(1, 8), torch.randn(1, 8), 0.5)
