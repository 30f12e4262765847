import json
import math
import subprocess
import sys

import pytest
import torch

from sslkit.data import load_dataset
from sslkit.methods.simclr import SimCLR, SimCLRConfig
from sslkit.backbones import build_encoder
from sslkit.train import (RunSpec, TrainConfig, TrainingDiverged, build_method, embedding_spread, load_run, lr_at,
                          pretrain, train)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", use_cache=False)


def small_spec(**train_kw):
    kw = {"epochs": 2, "batch_size": 64, "log_every": 5, "checkpoint_every": 7, **train_kw}
    return RunSpec("simclr", "digits", "small_cnn", {"temperature": 0.2}, TrainConfig(**kw))


def test_simclr_outputs_and_encoder_representation(digits):
    method = build_method(small_spec(), digits)
    x = digits.train_x[:16].float() / 255
    out = method(x)
    assert out.loss.ndim == 0 and math.isfinite(out.loss.item())
    assert out.features.shape == (16, method.encoder.dim)        # the encoder's, not the projector's
    assert out.extras["embeddings"].shape == (32, 128)


def test_simclr_loss_falls_on_a_small_batch(digits, fit):
    torch.manual_seed(0)
    cfg = SimCLRConfig(temperature=0.2, augment={"crop_scale_min": 0.3, "flip_p": 0.0})
    method = SimCLR(build_encoder("small_cnn", 1, [0.3], [0.4]), cfg)
    losses = fit(method, digits.train_x[:32].float() / 255, steps=40, lr=2e-3)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5


def test_lr_warms_up_then_decays_to_zero():
    cfg = TrainConfig(epochs=1, lr=1.0, warmup=0.1)
    assert lr_at(0.0, cfg) < 0.02 and lr_at(0.1, cfg) == pytest.approx(1.0)
    assert lr_at(0.55, cfg) == pytest.approx(0.5, abs=1e-6) and lr_at(1.0, cfg) == pytest.approx(0.0, abs=1e-9)


def test_embedding_spread_detects_collapse():
    assert embedding_spread(torch.randn(512, 64)) == pytest.approx(1.0, abs=0.1)
    assert embedding_spread(torch.ones(512, 64) + 1e-6 * torch.randn(512, 64)) < 0.01


def test_history_and_files(tmp_path, digits):
    run = pretrain(small_spec(), tmp_path / "run", data=digits, progress_bar=False)
    steps = 2 * (len(digits.train_x) // 64)
    assert run.history[-1]["step"] == steps
    row = run.history[-1]
    assert {"loss", "lr", "images_per_s", "embedding_spread", "epoch"} <= set(row)
    assert json.loads((tmp_path / "run" / "history.json").read_text()) == run.history
    assert json.loads((tmp_path / "run" / "config.json").read_text())["method"] == "simclr"
    assert not list((tmp_path / "run").glob("*.tmp"))   # atomic writes leave nothing behind


def test_same_seed_same_weights(tmp_path, digits):
    a = pretrain(small_spec(epochs=1), tmp_path / "a", data=digits, progress_bar=False)
    b = pretrain(small_spec(epochs=1), tmp_path / "b", data=digits, progress_bar=False)
    c = pretrain(small_spec(epochs=1, seed=1), tmp_path / "c", data=digits, progress_bar=False)
    sa, sb, sc = (r.method.state_dict() for r in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_resume_continues_exactly_where_it_stopped(tmp_path, digits):
    """Stop after a mid-epoch checkpoint, resume: the weights equal an uninterrupted run's."""
    full = pretrain(small_spec(), tmp_path / "full", data=digits, progress_bar=False)

    class Stop(Exception):
        pass

    def stop_at_step_15(row):
        if row["step"] >= 15:
            raise Stop
    with pytest.raises(Stop):
        pretrain(small_spec(log_every=15), tmp_path / "cut", data=digits, progress_bar=False,
                 callbacks=[stop_at_step_15])
    ckpt = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 14 and not ckpt["finished"]        # the checkpoint every 7 steps
    # log_every is not part of what is learned; resume with the original spec's other settings
    (tmp_path / "cut" / "config.json").unlink()
    resumed = pretrain(small_spec(), tmp_path / "cut", data=digits, progress_bar=False)
    a, b = full.method.state_dict(), resumed.method.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_a_finished_run_is_loaded_not_trained_again(tmp_path, digits, monkeypatch):
    first = pretrain(small_spec(), data=digits, progress_bar=False)            # into the cache
    import sslkit.train as train_mod
    monkeypatch.setattr(train_mod.torch.optim.AdamW, "step", lambda *a, **k: pytest.fail("trained again"))
    second = pretrain(small_spec(), data=digits, progress_bar=False)
    assert second.out_dir == first.out_dir and second.history == first.history
    loaded = load_run(first.out_dir)
    assert all(torch.equal(v, loaded.method.state_dict()[k]) for k, v in first.method.state_dict().items())


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, digits):
    method = build_method(small_spec(), digits)
    forward = method.forward
    calls = {"n": 0}

    def poisoned(x):
        calls["n"] += 1
        out = forward(x)
        if calls["n"] > 9:
            out.loss = out.loss * float("nan")
        return out
    method.forward = poisoned
    path = tmp_path / "ckpt.pt"
    with pytest.raises(TrainingDiverged, match="last good checkpoint \\(step 7\\)"):
        train(method, digits.train_x, small_spec().train, checkpoint_path=path, progress_bar=False)
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["step"] == 7 and all(torch.isfinite(v.float()).all() for v in ckpt["model"].values())


def test_another_configuration_in_the_same_folder_is_refused(tmp_path, digits):
    pretrain(small_spec(epochs=1), tmp_path / "run", data=digits, progress_bar=False)
    with pytest.raises(ValueError, match="different configuration"):
        pretrain(small_spec(epochs=1, lr=0.1), tmp_path / "run", data=digits, progress_bar=False)


def test_bad_training_settings_are_refused():
    with pytest.raises(ValueError, match="exactly one of epochs, steps or minutes"):
        TrainConfig()
    with pytest.raises(ValueError, match="batch size must be at least 2"):
        TrainConfig(epochs=1, batch_size=1)
    with pytest.raises(ValueError, match="unknown method"):
        RunSpec("swav", "digits")


def test_two_processes_train_one_run_once(tmp_path):
    """A time-budgeted run trained twice would differ; with the lock the second loads the first."""
    code = (
        "from sslkit.train import RunSpec, TrainConfig, pretrain;"
        "run = pretrain(RunSpec('simclr', 'digits', train=TrainConfig(minutes=0.05, batch_size=64)), progress_bar=False);"
        "print(run.history[-1]['step'], float(sum(p.sum() for p in run.method.parameters())))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1]
    assert len(list((tmp_path / "cache" / "runs").iterdir())) == 1


def test_a_checkpoint_of_another_version_is_one_clear_error(tmp_path):
    spec = RunSpec("rotation", "digits", train={"steps": 2, "batch_size": 32})
    run = pretrain(spec, tmp_path / "run", progress_bar=False)
    ckpt = torch.load(run.out_dir / "checkpoint.pt", weights_only=False)
    ckpt["model"]["old_buffer"] = torch.zeros(1)           # as if written by a version with other buffers
    torch.save(ckpt, run.out_dir / "checkpoint.pt")
    with pytest.raises(RuntimeError, match=r"does not fit this version .*old_buffer.*delete .* and train again"):
        load_run(run.out_dir)


@pytest.mark.parametrize("kw,says", [
    ({"steps": 2.5}, "steps) must be a whole number"),
    ({"steps": 5, "batch_size": 8.0}, "batch size must be a whole number"),
    ({"steps": 5, "lr": float("nan")}, "learning rate must be a finite number"),
    ({"steps": 5, "lr": "0.1"}, "learning rate must be a number, got '0.1'"),
    ({"epochs": True}, "must be a number, got True"),
    ({"steps": 5, "warmup": 1.5}, "warmup (a fraction of the run) must be between 0.0 and 1.0"),
    ({"steps": 5, "weight_decay": -1}, "weight decay must be at least 0.0"),
    ({"steps": 5, "log_every": 0}, "log_every must be at least 1"),
])
def test_training_settings_must_be_finite_numbers_of_the_right_type(kw, says):
    with pytest.raises(ValueError) as err:
        TrainConfig(**kw)
    assert says in str(err.value)


def test_method_settings_must_have_their_types():
    with pytest.raises(ValueError, match="'temperature' must be a finite number"):
        RunSpec("simclr", "digits", method_config={"temperature": float("inf")})
    with pytest.raises(ValueError, match="'crop_padding' must be a whole number"):
        RunSpec("rotation", "digits", method_config={"num_rotations": 4, "crop_padding": 1.5})
    with pytest.raises(ValueError, match="n_train"):
        RunSpec("simclr", "digits", n_train=0)


def test_the_data_note_says_which_dataset_and_what_it_changes():
    from sslkit.data import ImageData
    from sslkit.profiles import get_profile

    profile = get_profile("quick")
    x = torch.zeros(20, 1, 8, 8, dtype=torch.uint8)
    y = torch.arange(20) % 10
    digits = ImageData("digits", x, y, x[:10], y[:10], [str(i) for i in range(10)])
    note = profile.data_note(digits)
    assert note.startswith("This notebook runs on scikit-learn's digits (20 train / 10 test images, 8x8 greyscale")
    assert "not CIFAR-10" in note and "python -m sslkit download cifar10" in note and note.count(". ") == 0
    c = torch.zeros(20, 3, 32, 32, dtype=torch.uint8)
    cifar = ImageData("cifar10", c, y, c[:10], y[:10], list("abcdefghij"))
    assert "CIFAR-10 (20 train / 10 test images, 32x32 colour, 10 classes)" in profile.data_note(cifar)


def test_the_settings_table_is_the_profile_itself():
    from sslkit.profiles import get_profile

    quick = get_profile("quick")
    table = quick.settings_table()
    cfg = quick.train_config("mae")
    assert f"| mae | {quick.backbone_for('mae')} | {cfg.steps} steps | {cfg.batch_size} | {cfg.lr:g} |" in table
    assert "temperature 0.2" in table.splitlines()[4]          # simclr's row: the quick profile's temperature
    assert f"{quick.eval_train:,} / {quick.eval_test:,}" in table
    assert "the full train and test splits" in get_profile("full").settings_table()
