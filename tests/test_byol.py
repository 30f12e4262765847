import math

import pytest
import torch

from sslkit.backbones import build_encoder
from sslkit.methods import METHODS
from sslkit.methods.byol import BYOL, BYOLConfig, momentum_at, regression_loss
from sslkit.train import RunSpec, pretrain


def make_byol(**cfg) -> BYOL:
    torch.manual_seed(0)
    encoder = build_encoder("small_cnn", 3, [0.5] * 3, [0.25] * 3, image_size=16)
    return BYOL(encoder, BYOLConfig(hidden_dim=64, projection_dim=32, **cfg))


def online_and_target(m: BYOL):
    online = list(m.encoder.parameters()) + list(m.projector.parameters())
    target = list(m.target_encoder.parameters()) + list(m.target_projector.parameters())
    return online, target


def test_registered():
    assert METHODS["byol"] == (BYOLConfig, BYOL)


def test_target_is_a_gradient_free_copy_of_the_online_network():
    m = make_byol()
    online, target = online_and_target(m)
    assert len(online) == len(target)
    assert all(torch.equal(o, t) for o, t in zip(online, target))
    assert all(not t.requires_grad for t in target)
    assert all(o.requires_grad for o in online)


def test_update_is_exactly_the_moving_average():
    m = make_byol()
    online, target = online_and_target(m)
    with torch.no_grad():  # make online and target differ, as after some optimizer steps
        for o in online:
            o.add_(torch.randn_like(o))
    before = [t.clone() for t in target]
    mom = 0.9
    m.update_target(mom)
    for t_new, t_old, o in zip(target, before, online):
        assert torch.equal(t_new, mom * t_old + (1 - mom) * o)
    assert not all(torch.equal(t, o) for t, o in zip(target, online))


def test_on_step_end_uses_the_scheduled_momentum():
    m = make_byol(base_momentum=0.9)
    online, target = online_and_target(m)
    m.on_step_end(0.5)                       # first update with m(0) = 0.9, then schedule m(0.5)
    with torch.no_grad():
        for o in online:
            o.add_(1.0)
    before = [t.clone() for t in target]
    m.on_step_end(0.75)
    mom = momentum_at(0.5, 0.9)
    assert mom == pytest.approx(0.95)
    for t_new, t_old, o in zip(target, before, online):
        assert torch.equal(t_new, mom * t_old + (1 - mom) * o)


def test_momentum_schedule_goes_from_base_to_one():
    assert momentum_at(0.0, 0.99) == pytest.approx(0.99)
    assert momentum_at(1.0, 0.99) == pytest.approx(1.0)
    assert momentum_at(0.5, 0.99) == pytest.approx(0.995)
    assert momentum_at(0.7, 0.0) == 0.0       # the "no EMA" switch stays at 0


def test_no_gradient_reaches_the_target():
    m = make_byol()
    out = m(torch.rand(8, 3, 16, 16))
    out.loss.backward()
    online, target = online_and_target(m)
    assert all(t.grad is None for t in target)
    assert not out.extras["targets"].requires_grad
    assert any(o.grad is not None and o.grad.abs().sum() > 0 for o in m.encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.predictor.parameters())


def test_momentum_zero_makes_the_target_the_online_network_without_gradient():
    m = make_byol(base_momentum=0.0)
    v = torch.rand(6, 3, 16, 16)
    m.eval()
    assert torch.allclose(m.target_projections(v), m.projector(m.encoder(v)))
    assert not m.target_projections(v).requires_grad


def test_loss_of_identical_predictions_and_targets_is_zero():
    p = torch.randn(16, 32)
    assert torch.allclose(regression_loss(p, p.clone()), torch.zeros(16), atol=1e-6)
    assert torch.allclose(regression_loss(p, 3 * p), torch.zeros(16), atol=1e-6)   # scale-free
    assert torch.allclose(regression_loss(p, -p), torch.full((16,), 4.0), atol=1e-5)


def test_loss_is_the_squared_distance_of_normalised_vectors():
    p, z = torch.randn(10, 7), torch.randn(10, 7)
    ref = ((p / p.norm(dim=1, keepdim=True) - z / z.norm(dim=1, keepdim=True)) ** 2).sum(1)
    assert torch.allclose(regression_loss(p, z), ref, atol=1e-5)


def test_without_predictor_the_predictor_is_the_identity():
    m = make_byol(use_predictor=False)
    assert isinstance(m.predictor, torch.nn.Identity)
    assert sum(p.numel() for p in m.predictor.parameters()) == 0


def test_loss_falls_on_a_small_batch(fit):
    torch.manual_seed(0)
    m = make_byol()
    x = torch.rand(32, 3, 16, 16)
    losses = fit(m, x, steps=30, lr=1e-3)
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


@pytest.mark.parametrize("momentum", [-0.1, 1.5])
def test_momentum_outside_unit_interval_is_refused(momentum):
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\]"):
        BYOLConfig(base_momentum=momentum)


def test_bad_momentum_writes_nothing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="momentum"):
        pretrain(RunSpec("byol", "digits", method_config={"base_momentum": 2.0},
                         train={"epochs": 1, "batch_size": 32}), out)
    assert not out.exists()


def test_config_round_trips_through_a_dict():
    from dataclasses import asdict

    cfg = BYOLConfig(base_momentum=0.9, use_predictor=False)
    again = BYOLConfig(**asdict(cfg))
    assert again == cfg and again.augment2.solarize_p == 0.2 and again.augment1.solarize_p == 0.0


def test_pretrain_on_digits_records_the_spread():
    run = pretrain(RunSpec("byol", "digits", method_config={"hidden_dim": 64, "projection_dim": 32},
                           train={"epochs": 0.2, "batch_size": 64, "log_every": 1}), progress_bar=False)
    assert run.history and all(r["embedding_spread"] is not None for r in run.history)
    assert run.method.momentum > run.method.cfg.base_momentum


def test_collapse_signal_is_the_online_projection_of_one_view():
    m = make_byol()
    out = m(torch.rand(8, 3, 16, 16))
    assert out.features.shape == (8, 32) and not out.features.requires_grad
    assert out.extras["encoder_features"].shape == (16, 256)


def test_the_scheduled_momentum_survives_a_checkpoint():
    m = make_byol(base_momentum=0.9)
    m.on_step_end(0.5)
    again = make_byol(base_momentum=0.9)
    assert again.momentum == pytest.approx(0.9)
    again.load_state_dict(m.state_dict())
    assert again.momentum == momentum_at(0.5, 0.9) == m.momentum
