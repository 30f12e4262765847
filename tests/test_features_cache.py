"""The feature cache: a hit returns the very features a forward pass gives, a changed weight or
image misses, and a failed write leaves no file behind."""

import pytest
import torch
import torch.nn as nn

from sslkit import cache
from sslkit.evaluate import extract_features


class Counting(nn.Module):
    """A tiny encoder that counts the images it has seen."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.seen = 0

    def forward(self, x):
        self.seen += len(x)
        return self.bn(self.conv(x)).mean((2, 3))


def images(n=12, seed=0):
    return torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_a_hit_returns_identical_features_without_a_forward_pass():
    enc, x = Counting(), images()
    first = extract_features(enc, x)
    assert enc.seen == 12 and len(list(cache.features_dir().glob("*.pt"))) == 1
    second = extract_features(enc, x.clone())              # the same pixels in another tensor
    assert enc.seen == 12 and torch.equal(first, second)
    assert torch.equal(first, extract_features(enc, x, cache=False))   # what the forward pass gives


def test_another_weight_image_or_setting_misses():
    enc, x = Counting(), images()
    extract_features(enc, x)
    with torch.no_grad():
        enc.conv.weight[0, 0, 0, 0] += 1e-3
    extract_features(enc, x)                               # one weight changed
    assert enc.seen == 24
    enc.bn.running_mean[0] = 0.5                           # a buffer changed
    extract_features(enc, x)
    assert enc.seen == 36
    y = x.clone()
    y[3, 0, 0, 0] ^= 1                                     # one pixel changed
    extract_features(enc, y)
    assert enc.seen == 48
    x[5, 1, 2, 2] ^= 1                                     # changed in place: not the remembered digest
    extract_features(enc, x)
    assert enc.seen == 60
    extract_features(enc, x, autocast=True)                # bf16 features are other features
    assert enc.seen == 72


def test_a_failed_write_leaves_nothing_and_raises_nothing(monkeypatch):
    enc, x = Counting(), images()

    def broken_save(obj, f):
        f.write(b"half a file")
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(cache.torch, "save", broken_save)
        feats = extract_features(enc, x)                   # the features still come back
    assert feats.shape == (12, 4)
    assert not any(cache.features_dir().iterdir())         # no partial file, no temporary file
    extract_features(enc, x)
    assert enc.seen == 24 and len(list(cache.features_dir().glob("*.pt"))) == 1


def test_a_damaged_file_is_a_miss_and_the_size_limit_prunes_the_oldest(monkeypatch):
    enc = Counting()
    extract_features(enc, images(seed=1))
    (path,) = cache.features_dir().glob("*.pt")
    path.write_bytes(b"not a tensor")
    assert extract_features(enc, images(seed=1)).shape == (12, 4) and enc.seen == 24
    size = path.stat().st_size
    monkeypatch.setenv("SSLKIT_FEATURE_CACHE_MB", str(1.5 * size / 2**20))   # room for one file
    extract_features(enc, images(seed=2))
    assert [p.name for p in cache.features_dir().glob("*.pt")] != [path.name]
    assert len(list(cache.features_dir().glob("*.pt"))) == 1
    monkeypatch.setenv("SSLKIT_FEATURE_CACHE_MB", "0")                      # off
    extract_features(enc, images(seed=3))
    extract_features(enc, images(seed=3))
    assert enc.seen == 24 + 12 + 24


def test_a_new_tensor_is_hashed_anew():
    a = images(n=2000)
    first = cache.tensor_digest(a)
    assert cache.tensor_digest(a) == first
    del a                                                  # a new tensor may reuse the freed memory
    b = images(n=2000, seed=1)
    assert cache.tensor_digest(b) != first


def test_fine_tuning_is_run_once_per_encoder_data_and_setting(monkeypatch):
    from sslkit import evaluate
    from sslkit.data import load_dataset
    from sslkit.train import RunSpec, TrainConfig, build_method

    data = load_dataset("digits").subset(200, 100)
    enc = build_method(RunSpec("simclr", "digits", train=TrainConfig(steps=1)), data).encoder
    first = evaluate.fine_tune(enc, data, steps=2, batch_size=16)
    with monkeypatch.context() as m:
        m.setattr(evaluate, "_fine_tune", lambda *a: pytest.fail("fine-tuned again"))
        assert evaluate.fine_tune(enc, data, steps=2, batch_size=16) == first
    runs = []
    monkeypatch.setattr(evaluate, "_fine_tune", lambda *a: runs.append(a) or 0.5)
    evaluate.fine_tune(enc, data, steps=3, batch_size=16)                 # another budget
    evaluate.fine_tune(enc, data.subset(100, 100), steps=2, batch_size=16)   # other images
    assert len(runs) == 2


def test_a_probe_is_fitted_once_per_features_labels_and_setting(monkeypatch):
    from sslkit import evaluate

    g = torch.Generator().manual_seed(0)
    tr, te = torch.randn(200, 8, generator=g), torch.randn(50, 8, generator=g)
    ytr, yte = torch.arange(200) % 3, torch.arange(50) % 3
    first = evaluate.linear_probe(tr, ytr, te, yte)
    assert first == evaluate.linear_probe(tr, ytr, te, yte, cache=False)      # what a fit gives
    fits = []
    real = evaluate.fit_linear_probe
    monkeypatch.setattr(evaluate, "fit_linear_probe", lambda *a, **k: fits.append(a) or real(*a, **k))
    assert evaluate.linear_probe(tr.clone(), ytr, te, yte) == first and not fits     # the same numbers: a hit
    evaluate.linear_probe(tr, ytr, te, yte, C=0.1)                                   # another setting
    evaluate.linear_probe(tr, (ytr + 1) % 3, te, yte)                                # other labels
    tr[0, 0] += 1
    evaluate.linear_probe(tr, ytr, te, yte)                                          # other features
    assert len(fits) == 3


def test_a_projection_is_computed_once_per_features_method_and_seed(monkeypatch):
    import numpy as np

    from sslkit import viz

    f = torch.randn(60, 16, generator=torch.Generator().manual_seed(0))
    first = viz.project_2d(f, "pca")
    assert np.allclose(first, viz.project_2d(f, "pca", cache=False))
    calls = []
    real = viz._project_2d
    monkeypatch.setattr(viz, "_project_2d", lambda *a: calls.append(a[1:]) or real(*a))
    assert np.array_equal(viz.project_2d(f.clone(), "pca"), first) and not calls
    viz.project_2d(f, "pca", seed=1)
    viz.project_2d(f, "tsne")
    assert calls == [("pca", 1), ("tsne", 0)]
    with pytest.raises(ValueError, match="unknown projection 'mds'"):
        viz.project_2d(f, "mds")
