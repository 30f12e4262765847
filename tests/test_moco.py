"""MoCo v2: the loss, the queue, the momentum encoder, resume."""

import copy
import math
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from sslkit.backbones import build_encoder
from sslkit.losses import info_nce
from sslkit.methods.moco import MoCo, MoCoConfig
from sslkit.train import TrainConfig, train


def make_moco(**cfg) -> MoCo:
    torch.manual_seed(0)
    enc = build_encoder("small_cnn", 3, [0.5] * 3, [0.25] * 3, image_size=16)
    return MoCo(enc, MoCoConfig(**{"queue_size": 64, "momentum": 0.9, "projection_dim": 16, **cfg}))


def direct_info_nce(q, k, queue, t):
    """The formula term by term: -log exp(q.k+/t) / (exp(q.k+/t) + sum_n exp(q.n/t))."""
    total = 0.0
    for i in range(len(q)):
        qi = q[i] / q[i].norm()
        pos = math.exp(float(qi @ (k[i] / k[i].norm())) / t)
        neg = sum(math.exp(float(qi @ (n / n.norm())) / t) for n in queue)
        total += -math.log(pos / (pos + neg))
    return total / len(q)


@pytest.mark.parametrize("b,K,t", [(2, 1, 0.2), (5, 7, 0.07), (8, 32, 0.5), (16, 3, 1.0)])
def test_loss_equals_the_formula(b, K, t):
    g = torch.Generator().manual_seed(b * K)
    q, k, queue = torch.randn(b, 8, generator=g), torch.randn(b, 8, generator=g), torch.randn(K, 8, generator=g)
    assert float(info_nce(q, k, queue, t)) == pytest.approx(direct_info_nce(q, k, queue, t), rel=1e-5)


def test_queue_is_first_in_first_out_across_steps_with_wraparound():
    m = make_moco(queue_size=10)
    written = []
    for step in range(5):                       # batches of 4 into a queue of 10: not a multiple
        keys = F.normalize(torch.randn(4, 16), dim=1)
        m.enqueue(keys)
        written.append(keys)
    newest10 = torch.cat(written)[-10:]         # 20 keys went in; the queue holds the last 10
    ptr = int(m.queue_ptr)                      # the next slot to overwrite is the oldest
    assert ptr == 20 % 10
    ring = torch.cat([m.queue[ptr:], m.queue[:ptr]])   # oldest to newest
    assert torch.equal(ring, newest10)


def test_a_batch_larger_than_the_queue_keeps_its_last_keys():
    m = make_moco(queue_size=3)
    keys = F.normalize(torch.randn(5, 16), dim=1)
    m.enqueue(keys)
    ptr = int(m.queue_ptr)
    assert torch.equal(torch.cat([m.queue[ptr:], m.queue[:ptr]]), keys[-3:])


def test_no_gradient_reaches_the_key_encoder_and_the_step_is_an_ema():
    m = make_moco(momentum=0.9, bn_splits=2)
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    x = torch.rand(8, 3, 16, 16)
    key_before = [p.clone() for p in list(m.key_encoder.parameters()) + list(m.key_projector.parameters())]
    out = m(x)
    out.loss.backward()
    assert all(p.grad is None for p in list(m.key_encoder.parameters()) + list(m.key_projector.parameters()))
    assert all(not p.requires_grad for p in m.key_encoder.parameters())
    opt.step()
    queue_before = m.queue.clone()
    m.on_step_end(0.5)
    query_after = list(m.encoder.parameters()) + list(m.projector.parameters())
    key_after = list(m.key_encoder.parameters()) + list(m.key_projector.parameters())
    for k0, q1, k1 in zip(key_before, query_after, key_after):
        assert torch.equal(k1, 0.9 * k0 + (1 - 0.9) * q1)
    assert torch.equal(m.queue[:8], out.extras["keys"])        # this step's keys went in after the step
    assert torch.equal(m.queue[8:], queue_before[8:])


@pytest.mark.parametrize("batch", [8, 10])     # 10: groups of 3, 3, 2, 2
def test_split_batchnorm_keeps_each_group_to_its_own_statistics(batch):
    """Changing one image changes the queries and keys of its BatchNorm group only (encoder and
    head), and the keys' groups are not the queries' (they are drawn after a shuffle)."""
    m = make_moco(bn_splits=4).train()
    x = torch.rand(batch, 3, 16, 16)
    y = x.clone()
    y[0] = torch.rand(3, 16, 16)
    group = len(x.tensor_split(4)[0])           # image 0's query group: the first rows
    _, q_x = m.query(x)
    _, q_y = m.query(y)
    changed = (q_x - q_y).abs().amax(1) > 1e-6
    assert changed[:group].all() and not changed[group:].any()
    torch.manual_seed(0)
    k_x = m.keys(x)
    torch.manual_seed(0)                        # the same shuffle for both
    k_y = m.keys(y)
    changed = (k_x - k_y).abs().amax(1) > 1e-6
    torch.manual_seed(0)                        # that shuffle again: the key group holding image 0
    key_group = next(g for g in torch.randperm(batch).tensor_split(4) if 0 in g)
    assert set(changed.nonzero().flatten().tolist()) == set(key_group.tolist())
    assert set(key_group.tolist()) != set(range(group))       # not the query's group
    m.eval()                                   # evaluation: running statistics, no groups
    assert torch.allclose(m.query(x)[1][1:], m.query(y)[1][1:])


@pytest.mark.parametrize("setting,message", [
    ({"queue_size": 0}, "queue_size must be a whole number of at least 1"),
    ({"queue_size": 4.5}, "queue_size must be a whole number of at least 1"),
    ({"momentum": 1.5}, "momentum must be in [0, 1]"),
    ({"momentum": float("nan")}, "momentum must be in [0, 1]"),
    ({"momentum": "abc"}, "momentum must be in [0, 1]"),
    ({"temperature": 0}, "temperature must be positive"),
    ({"temperature": float("nan")}, "temperature must be positive"),
    ({"bn_splits": 2.5}, "bn_splits must be a whole number of at least 1"),
])
def test_config_rejects_bad_settings(setting, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        MoCoConfig(**setting)


def test_a_forward_pass_outside_training_leaves_the_queue_alone():
    m = make_moco().eval()
    before = m.queue.clone()
    m(torch.rand(4, 3, 16, 16))
    m.on_step_end(1.0)
    assert torch.equal(m.queue, before)


def test_resume_gives_the_same_weights_and_queue(tmp_path):
    images = (torch.rand(64, 3, 16, 16) * 255).to(torch.uint8)
    cfg = TrainConfig(steps=12, batch_size=8, checkpoint_every=5, log_every=3, seed=1)
    straight = make_moco(queue_size=20)
    train(straight, images, cfg, device="cpu", progress_bar=False)

    ckpt = tmp_path / "checkpoint.pt"
    interrupted = make_moco(queue_size=20)
    # interrupted after the checkpoint at step 5 (a callback raises at step 9), then resumed from the file
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, images, cfg, device="cpu", checkpoint_path=ckpt, progress_bar=False, callbacks=[_stop_at(9)])
    resumed = make_moco(queue_size=20)
    train(resumed, images, cfg, device="cpu", checkpoint_path=ckpt, progress_bar=False)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(straight.queue, resumed.queue) and int(straight.queue_ptr) == int(resumed.queue_ptr)


def _stop_at(step):
    def callback(row):
        if row["step"] >= step:
            raise KeyboardInterrupt
    return callback


def test_loss_falls_on_a_small_batch():
    # 64 images in batches of 8 and a queue of two batches: the queued negatives are other images
    m = make_moco(queue_size=16, momentum=0.5, bn_splits=1)
    a = m.cfg.augment                          # an easy task: the two views of an image are the same
    a.crop_scale_min, a.flip_p, a.jitter_p, a.gray_p = 1.0, 0.0, 0.0, 0.0
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=3e-3)
    torch.manual_seed(0)
    images = torch.rand(64, 3, 16, 16)
    losses = []
    for step in range(64):
        out = m(images[(step % 8) * 8: (step % 8 + 1) * 8])
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        m.on_step_end(step / 64)
        losses.append(out.loss.item())
    first, last = sum(losses[2:10]) / 8, sum(losses[-8:]) / 8     # from the first full queue on
    assert last < first - 0.3, (first, last)


@pytest.mark.parametrize("args,message", [
    (["--config", "queue_size=0"], "queue_size must be a whole number of at least 1"),
    (["--config", "momentum=1.5"], "momentum must be in [0, 1]"),
    (["--temperature", "0"], "temperature must be positive"),
    (["--temperature", "nan"], "setting 'temperature' must be a finite number"),
])
def test_cli_rejects_bad_settings_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "sslkit", "pretrain", "moco", "--dataset", "digits", "--steps", "2",
                        "--out", str(out), *args], capture_output=True, text=True)
    assert r.returncode == 2
    assert message in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not out.exists()


def test_cli_pretrains_moco(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "sslkit", "pretrain", "moco", "--dataset", "digits", "--steps", "3",
                        "--batch-size", "16", "--config", "queue_size=40", "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (out / "checkpoint.pt").exists() and (out / "history.json").exists()
