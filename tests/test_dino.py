import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from sslkit.backbones import Encoder, ViT, attention_maps, build_encoder, sincos_position_embedding
from sslkit.methods import METHODS
from sslkit.methods.dino import DINO, DINOConfig, dino_loss, teacher_temp_at
from sslkit.train import RunSpec, pretrain

SMALL = {"out_dim": 64, "hidden_dim": 64, "bottleneck_dim": 32, "local_crops": 2}


def tiny_encoder(image_size: int = 16, channels: int = 3) -> Encoder:
    """A 2-block ViT 32 wide: the tests' CPU budget, the same code as vit_mini."""
    return Encoder(ViT(channels, image_size, patch_size=4, dim=32, depth=2, heads=2), 32, [0.5] * channels,
                   [0.25] * channels)


def make_dino(image_size: int = 16, **cfg) -> DINO:
    torch.manual_seed(0)
    return DINO(tiny_encoder(image_size), DINOConfig(**{**SMALL, **cfg}))


def test_registered():
    assert METHODS["dino"] == (DINOConfig, DINO)
    names = list(METHODS)
    assert names.index("dino") == names.index("supervised") - 1


# ------------------------------------------------------------------------------------------ the loss

def algorithm_1_loss(s1, s2, t1, t2, C, tps, tpt):
    """The paper's Algorithm 1, as printed (two views, no multi-crop)."""
    def H(t, s):
        t = t.detach()                                   # stop gradient
        s = torch.softmax(s / tps, dim=1)
        t = torch.softmax((t - C) / tpt, dim=1)          # center + sharpen
        return - (t * torch.log(s)).sum(dim=1).mean()
    return H(t1, s2) / 2 + H(t2, s1) / 2


@pytest.mark.parametrize("B,K,tps,tpt", [(2, 3, 0.1, 0.04), (16, 64, 0.1, 0.07), (5, 1024, 0.2, 0.1)])
def test_the_loss_is_the_papers_algorithm_1(B, K, tps, tpt):
    g = torch.Generator().manual_seed(B)
    s, t = torch.randn(2 * B, K, generator=g), torch.randn(2 * B, K, generator=g)
    C = 0.3 * torch.randn(1, K, generator=g)
    ours = dino_loss(s, t, C, tps, tpt)
    assert torch.allclose(ours, algorithm_1_loss(s[:B], s[B:], t[:B], t[B:], C, tps, tpt), atol=1e-5)


@pytest.mark.parametrize("B,K,local,tpt", [(4, 16, 0, 0.04), (8, 64, 2, 0.04), (3, 256, 6, 0.07)])
def test_the_loss_and_centre_update_match_lightlys(B, K, local, tpt):
    from lightly.loss import DINOLoss

    g = torch.Generator().manual_seed(K)
    V = 2 + local
    s, t = torch.randn(V * B, K, generator=g), torch.randn(2 * B, K, generator=g)
    center = 0.5 * torch.randn(1, K, generator=g)
    theirs = DINOLoss(output_dim=K, warmup_teacher_temp=tpt, teacher_temp=tpt, warmup_teacher_temp_epochs=0,
                      student_temp=0.1, center_momentum=0.9)
    theirs.center.copy_(center.view(1, 1, K))
    want = theirs(list(t.chunk(2)), list(s.chunk(V)), teacher_temp=tpt)
    m = DINO(tiny_encoder(), DINOConfig(**{**SMALL, "out_dim": K, "local_crops": local, "teacher_temp": tpt,
                                           "warmup_teacher_temp": tpt}))
    m.center.copy_(center)
    assert torch.allclose(dino_loss(s, t, m.center, 0.1, tpt), want, atol=1e-5)
    m.update_center(t)
    assert torch.allclose(m.center, theirs.center.view(1, K), atol=1e-6)


def test_no_gradient_reaches_the_teacher_and_same_crop_pairs_are_skipped():
    s = torch.randn(8, 10, requires_grad=True)            # 4 crops of 2 images
    t = torch.randn(4, 10, requires_grad=True)
    loss = dino_loss(s, t, torch.zeros(1, 10), 0.1, 0.04)
    loss.backward()
    assert t.grad is None and s.grad.abs().sum() > 0
    # by hand: teacher crop 0 against student crops 1, 2, 3; teacher crop 1 against 0, 2, 3
    q = F.softmax(t.detach() / 0.04, -1).chunk(2)
    lp = F.log_softmax(s.detach() / 0.1, -1).chunk(4)
    pairs = [(0, 1), (0, 2), (0, 3), (1, 0), (1, 2), (1, 3)]
    by_hand = sum(float(-(q[i] * lp[v]).sum(-1).mean()) for i, v in pairs) / len(pairs)
    assert loss.item() == pytest.approx(by_hand, rel=1e-5)


# ---------------------------------------------------------------------------------- centre, schedules

def test_the_centre_is_a_moving_average_of_the_teacher_logits():
    m = make_dino()
    t = torch.randn(6, 64)
    m.center.fill_(1.0)
    m.update_center(t)
    assert torch.allclose(m.center, 0.9 * torch.ones(1, 64) + 0.1 * t.mean(0, keepdim=True), atol=1e-6)


def test_forward_updates_the_centre_in_training_only_and_never_without_centring():
    x = torch.rand(4, 3, 16, 16)
    m = make_dino()
    m(x)
    assert m.center.abs().sum() > 0
    m.eval()
    before = m.center.clone()
    m(x)
    assert torch.equal(m.center, before)
    off = make_dino(centering=False)
    off(x)
    assert torch.equal(off.center, torch.zeros(1, 64))


def dino_cosine_scheduler(base_value, final_value, iters):
    """dino's utils.cosine_scheduler without warm-up, written out."""
    return [final_value + 0.5 * (base_value - final_value) * (1 + math.cos(math.pi * i / iters)) for i in range(iters)]


def test_the_momentum_follows_dinos_cosine_schedule_and_moves_the_teacher():
    m = make_dino(base_momentum=0.9)
    schedule = dino_cosine_scheduler(0.9, 1.0, 10)
    x = torch.rand(4, 3, 16, 16)
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    for it in range(10):
        assert m.momentum == pytest.approx(schedule[it])
        m(x).loss.backward()
        opt.step()
        opt.zero_grad()
        student = list(m.encoder.parameters()) + list(m.head.parameters())
        teacher = list(m.teacher_encoder.parameters()) + list(m.teacher_head.parameters())
        before = [p.clone() for p in teacher]
        m.on_step_end((it + 1) / 10)
        for new, old, s in zip(teacher, before, student):
            assert torch.allclose(new, schedule[it] * old + (1 - schedule[it]) * s, atol=1e-6)
    assert m.momentum == pytest.approx(1.0)


def test_the_teacher_temperature_warms_up_linearly_and_equals_the_students_without_sharpening():
    cfg = DINOConfig(warmup_teacher_temp=0.04, teacher_temp=0.07, teacher_temp_warmup=0.1)
    assert teacher_temp_at(0.0, cfg) == pytest.approx(0.04)
    assert teacher_temp_at(0.05, cfg) == pytest.approx(0.055)
    assert teacher_temp_at(0.5, cfg) == pytest.approx(0.07)
    off = DINOConfig(sharpening=False)
    assert teacher_temp_at(0.0, off) == teacher_temp_at(1.0, off) == off.student_temp
    m = make_dino(warmup_teacher_temp=0.04, teacher_temp=0.07, teacher_temp_warmup=0.5)
    m.on_step_end(0.25)
    assert m.teacher_temp == pytest.approx(0.055)


def test_the_schedules_survive_a_checkpoint():
    m = make_dino(base_momentum=0.9, teacher_temp=0.07, teacher_temp_warmup=0.5)
    m(torch.rand(4, 3, 16, 16))
    m.on_step_end(0.3)
    again = make_dino(base_momentum=0.9, teacher_temp=0.07, teacher_temp_warmup=0.5)
    again.load_state_dict(m.state_dict())
    assert again.momentum == m.momentum and again.teacher_temp == m.teacher_temp
    assert torch.equal(again.center, m.center)


# ---------------------------------------------------------------------------------------- multi-crop

@pytest.mark.parametrize("size,local", [(32, 16), (16, 8), (8, 4)])
def test_multi_crop_shapes(size, local):
    m = make_dino(size, local_crops=3)
    x = torch.rand(5, 3, size, size)
    g, l = m.global_views(x), m.local_views(x)
    assert g.shape == (10, 3, size, size) and l.shape == (15, 3, local, local)
    assert m.student(g, l).shape == (25, 64) and m.teacher(g).shape == (10, 64)
    assert g.min() >= 0 and g.max() <= 1 and l.min() >= 0 and l.max() <= 1
    assert m.local_views(x).shape == l.shape and not torch.equal(m.local_views(x), l)   # fresh draws


def test_no_local_crops_is_the_two_global_crops_alone():
    m = make_dino(local_crops=0)
    x = torch.rand(4, 3, 16, 16)
    assert m.local_views(x).shape[0] == 0
    out = m(x)
    assert torch.isfinite(out.loss)


def test_dino_refuses_a_cnn():
    with pytest.raises(ValueError, match="needs a ViT backbone"):
        DINO(build_encoder("small_cnn", 3, [0.5] * 3, [0.25] * 3), DINOConfig(**SMALL))


@pytest.mark.parametrize("setting,says", [({"student_temp": 0.0}, "temperature"), ({"center_momentum": 1.5}, r"\[0, 1\]"),
                                          ({"local_crops": -1}, "local_crops"), ({"out_dim": 0}, "positive"),
                                          ({"local_crop_scale_min": 0.5, "local_crop_scale_max": 0.4}, "crop scales")])
def test_bad_settings_are_refused_and_write_nothing(setting, says, tmp_path):
    with pytest.raises(ValueError, match=says):
        DINOConfig(**setting)
    with pytest.raises(ValueError, match=says):
        pretrain(RunSpec("dino", "digits", backbone="vit_mini", method_config=setting,
                         train={"steps": 2, "batch_size": 16}), tmp_path / "r")
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------- the ViT's class token

def test_the_default_vit_is_unchanged_and_dino_adds_a_class_token():
    plain = build_encoder("vit_mini", 3, [0.5] * 3, [0.25] * 3)
    assert plain.backbone.cls_token is None and not any("cls_token" in k for k in plain.state_dict())
    x = torch.rand(3, 3, 32, 32)
    vit, xn = plain.backbone, (x - plain.mean) / plain.std
    assert torch.allclose(plain(x), vit.encode_tokens(vit.tokens(xn)).mean(1))      # mean of the patches
    m = DINO(plain, DINOConfig(**SMALL))
    assert m.encoder.backbone.cls_token.shape == (1, 1, 128) and "encoder.backbone.cls_token" in m.state_dict()
    assert "teacher_encoder.backbone.cls_token" in m.state_dict()
    t = vit.encode_tokens(vit.input_tokens(xn))
    assert t.shape == (3, 65, 128) and torch.allclose(m.encoder(x), t[:, 0])        # the class token's output


def test_local_crops_get_the_sincos_embedding_where_dinos_interpolation_puts_it():
    full = sincos_position_embedding(8, 128)
    assert torch.equal(sincos_position_embedding(8, 128, 8), full)
    ours = sincos_position_embedding(4, 128, 8)
    # vision_transformer.py's interpolate_pos_encoding on the full table, bicubic
    table = full.reshape(1, 8, 8, 128).permute(0, 3, 1, 2)
    theirs = F.interpolate(table, scale_factor=(4.1 / 8, 4.1 / 8), mode="bicubic").permute(0, 2, 3, 1).reshape(16, 128)
    assert (ours - theirs).abs().mean() < 0.01                       # misplaced by half a patch: 0.026
    vit = ViT(3, 32, 4, dim=128, depth=1, heads=4)
    assert torch.equal(vit.position_embedding(4), ours) and vit.position_embedding(8) is vit.pos_embed
    with pytest.raises(ValueError, match="square images"):
        vit.tokens(torch.rand(1, 3, 16, 12))


@pytest.mark.parametrize("class_token", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_attention_maps_come_from_the_blocks_own_forward(class_token, training):
    torch.manual_seed(0)
    enc = build_encoder("vit_mini", 3, [0.5] * 3, [0.25] * 3)
    if class_token:
        enc.backbone.add_class_token()
    enc.train(training)
    x = torch.rand(2, 3, 32, 32)
    features, maps = enc.backbone.forward_with_attention((x - enc.mean) / enc.std)
    assert torch.allclose(features, enc(x), atol=1e-5)              # the same computation as forward
    T = 65 if class_token else 64
    assert maps.shape == (4, 2, 4, T, T)
    assert torch.allclose(maps.sum(-1), torch.ones(4, 2, 4, T), atol=1e-5)
    assert torch.allclose(attention_maps(enc, x), maps, atol=1e-6)
    with pytest.raises(ValueError, match="need a ViT"):
        attention_maps(build_encoder("small_cnn", 3, [0.5] * 3, [0.25] * 3), x)


# ---------------------------------------------------------------------------- collapse and training

def test_the_loss_is_the_teachers_entropy_plus_the_kl():
    out = make_dino()(torch.rand(6, 3, 16, 16))
    e = out.extras
    assert out.loss.item() == pytest.approx(float(e["teacher_entropy"] + e["kl"]), rel=1e-6)
    assert 0 <= float(e["teacher_entropy"]) <= math.log(64) and float(e["kl"]) >= -1e-6
    assert e["teacher_probs"].shape == (12, 64) and set(out.logs) == {"teacher_entropy", "kl"}
    assert out.features.shape == (6, 64) and not out.features.requires_grad


def lab(cfg, steps=25):
    """A short run on one fixed batch; the teacher's entropy and the KL at its end."""
    m = make_dino(base_momentum=0.9, local_crops=0, **cfg)
    torch.manual_seed(1)
    x = torch.rand(16, 3, 16, 16)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    for step in range(steps):
        out = m(x)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        m.on_step_end((step + 1) / steps)
    return float(out.extras["teacher_entropy"]), float(out.extras["kl"])


def test_without_centring_the_teacher_collapses_to_one_hot():
    entropy, kl = lab({"centering": False})
    assert entropy < 0.05 * math.log(64) and kl < 0.05                # section 5.3: h -> 0, KL -> 0


def test_without_sharpening_the_teacher_collapses_to_uniform():
    entropy, kl = lab({"sharpening": False}, steps=40)
    assert entropy > 0.95 * math.log(64) and kl < 0.1                 # section 5.3: h -> log K, KL -> 0


def test_the_student_learns_to_match_a_fixed_teacher(fit):
    """With momentum 1 and no centring the teacher's targets stay put: distillation alone, and the
    loss must fall (measured: from 2.45 to 1.77 over the first and last five steps). With the moving
    teacher the loss is no such measure: it falls and rises as the centre and teacher follow."""
    torch.manual_seed(0)
    losses = fit(make_dino(base_momentum=1.0, local_crops=0, centering=False), torch.rand(16, 3, 16, 16), steps=20)
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < 0.85 * sum(losses[:5]) / 5


def test_pretrain_on_digits_records_entropy_and_kl():
    run = pretrain(RunSpec("dino", "digits", backbone="vit_mini", method_config={**SMALL, "base_momentum": 0.9},
                           train={"steps": 4, "batch_size": 16, "log_every": 2}), progress_bar=False)
    rows = run.history
    assert len(rows) == 2 and all(math.isfinite(r["teacher_entropy"]) and math.isfinite(r["kl"]) for r in rows)
    assert run.method.momentum > 0.9 and run.method.local_size == 4                 # digits: 8x8 images
    assert run.encoder(torch.rand(2, 1, 8, 8)).shape == (2, 128)


def test_the_profiles_know_it_from_its_class():
    from sslkit.profiles import get_profile

    spec = get_profile("quick").spec("dino")
    assert spec.backbone == "vit_mini" and get_profile("full").spec("dino").backbone == "vit_tiny"
    assert "| dino |" in get_profile("quick").settings_table()


def test_cli_pretrains_dino(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "sslkit", "pretrain", "dino", "--dataset", "digits", "--steps", "2",
                        "--batch-size", "16", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (out / "checkpoint.pt").exists() and (out / "history.json").exists()
    assert "teacher_entropy" in (out / "history.json").read_text()


def test_class_token_attention_is_the_cls_row_or_the_mean_of_the_patch_queries():
    from sslkit.backbones import class_token_attention

    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    for with_token in (True, False):
        enc = build_encoder("vit_mini", 3, [0.5] * 3, [0.25] * 3).eval()
        if with_token:
            enc.backbone.add_class_token()
        maps, has_cls = class_token_attention(enc, x)
        full = attention_maps(enc, x)
        assert has_cls == with_token and maps.shape == (4, 2, 4, 8, 8)
        want = full[..., 0, 1:] if with_token else full.mean(-2)
        assert torch.allclose(maps.flatten(-2), want)


def test_the_attention_explorer_redraws_for_each_block_and_head(monkeypatch):
    import matplotlib.pyplot as plt

    from sslkit import widgets

    drawn = []
    monkeypatch.setattr(plt, "show", lambda: (drawn.append(plt.gcf().get_suptitle()), plt.close("all")))
    with_token = tiny_encoder(32)
    with_token.backbone.add_class_token()
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    w = widgets.attention_explorer({"DINO": with_token, "MAE-like": tiny_encoder(32)}, images, n=3)
    layer, head = w.children[0].children
    assert (layer.min, layer.max, layer.value, head.min, head.max) == (1, 2, 2, 1, 2)
    head.value = 2
    layer.value = 1
    assert drawn == ["attention over the patches, block 2 of 2, head 1 of 2 (bright: attended; each map scaled to its own range)",
                     "attention over the patches, block 2 of 2, head 2 of 2 (bright: attended; each map scaled to its own range)",
                     "attention over the patches, block 1 of 2, head 2 of 2 (bright: attended; each map scaled to its own range)"]
