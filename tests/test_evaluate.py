import numpy as np
import pytest
import torch
import torch.nn as nn

from sslkit.evaluate import (compare_with_random_init, extract_features, few_shot, format_table, knn_accuracy,
                             knn_predict, linear_probe)


def clusters(n_per_class=50, classes=4, dim=16, noise=0.3, seed=0):
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(123)) * 3
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[y] + noise * torch.randn(len(y), dim, generator=g), y


def test_knn_on_separable_clusters_is_perfect_and_on_noise_is_chance():
    f, y = clusters()
    tf, ty = clusters(seed=1)
    assert knn_accuracy(f, y, tf, ty, k=20) > 0.99
    noise = torch.randn(400, 16)
    acc = knn_accuracy(noise[:200], torch.randint(0, 4, (200,)), noise[200:], torch.randint(0, 4, (200,)), k=20)
    assert 0.1 < acc < 0.45


def test_knn_votes_are_temperature_weighted_cosine():
    # one very similar neighbour of class 1 outvotes two mediocre ones of class 0 at low T
    train = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.8, -0.6]])
    labels = torch.tensor([1, 0, 0])
    query = torch.tensor([[1.0, 0.05]])
    assert knn_predict(train, labels, query, k=3, temperature=0.05).item() == 1
    assert knn_predict(train, labels, query, k=3, temperature=100.0).item() == 0   # ~ plain majority
    # cosine: the scale of a feature does not matter
    assert knn_predict(train * torch.tensor([[10.0], [1.0], [1.0]]), labels, query, k=3, temperature=0.05).item() == 1


def test_linear_probe_and_few_shot():
    f, y = clusters(noise=1.0)
    tf, ty = clusters(noise=1.0, seed=2)
    assert linear_probe(f, y, tf, ty) > 0.95
    mean, std = few_shot(f, y, tf, ty, shots=2, seeds=4)
    assert 0.5 < mean <= 1.0 and std >= 0.0


def test_torch_probe_agrees_with_scikit_learn():
    import warnings

    from sslkit.evaluate import fit_linear_probe

    f, y = clusters(n_per_class=60, noise=2.5)        # overlapping classes: the optimum is not trivial
    tf, ty = clusters(n_per_class=60, noise=2.5, seed=3)
    y, ty = 2 * y + 3, 2 * ty + 3                      # labels need not be 0..k-1
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # converged: no ConvergenceWarning from either
        ours = fit_linear_probe(f, y, solver="torch")
        theirs = fit_linear_probe(f, y, solver="sklearn")
    assert 0.6 < ours.score(tf, ty) < 1.0
    assert (ours.predict(tf.numpy()) == theirs.predict(tf.numpy())).mean() > 0.99
    assert abs(ours.score(tf.numpy(), ty.numpy()) - theirs.score(tf.numpy(), ty.numpy())) <= 0.005
    lr = theirs[-1]                                    # the same weights: the same objective, solved
    assert np.allclose(ours.weight.numpy().T, lr.coef_, atol=1e-2 * np.abs(lr.coef_).max())   # both stop at a gradient of 1e-4
    with pytest.raises(ValueError, match="at least two classes"):
        fit_linear_probe(f[:10], torch.zeros(10, dtype=torch.long))


def test_extract_features_uses_eval_mode_and_restores_it():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten())
    net.train()
    x = torch.randint(0, 255, (6, 3, 5, 5), dtype=torch.uint8)
    a = extract_features(net, x, batch_size=2, cache=False)
    b = extract_features(net, x, batch_size=6, cache=False)
    assert torch.allclose(a, b, atol=1e-5)   # batch statistics would make these differ
    assert net.training and a.shape == (6, 36)


def test_compare_reports_the_same_protocols_for_both(tmp_path):
    from sslkit.data import load_dataset
    from sslkit.train import RunSpec, TrainConfig, build_method

    data = load_dataset("digits")
    spec = RunSpec("simclr", "digits", train=TrainConfig(epochs=1))
    a, b = build_method(spec, data, seed=0).encoder, build_method(spec, data, seed=1).encoder
    res = compare_with_random_init(a, b, data, seeds=2)
    assert set(res) == {"trained", "random_init"}
    for r in res.values():
        assert {"knn", "linear", "fewshot10", "fewshot10_std"} <= set(r)
        assert all(0.0 <= r[k] <= 1.0 for k in ("knn", "linear", "fewshot10"))
    table = format_table(res)
    assert "trained" in table and "random_init" in table and "10-shot" in table


def test_depth_groups_split_the_encoder_input_side_first():
    from sslkit.backbones import build_encoder
    from sslkit.evaluate import depth_groups

    vit = build_encoder("vit_mini", 3, [0.5] * 3, [0.25] * 3, 32)
    groups = depth_groups(vit)
    assert len(groups) == 1 + len(vit.backbone.blocks) + 1            # patch embedding, blocks, norm
    assert groups[0][0] is vit.backbone.patch_embed.weight
    assert groups[-1][0] is vit.backbone.norm.weight
    flat = [id(p) for g in groups for p in g]
    assert sorted(flat) == sorted(id(p) for p in vit.parameters())       # every parameter once
    cnn = build_encoder("small_cnn", 1, [0.5], [0.25], 32)
    assert [len(g) for g in depth_groups(cnn)] == [3, 3, 3, 3]           # conv, BN weight and bias per stage


def test_fine_tune_learns_digits_and_leaves_the_encoder_alone():
    from sslkit.backbones import build_encoder
    from sslkit.data import load_dataset
    from sslkit.evaluate import fine_tune

    data = load_dataset("digits")
    mean, std = data.channel_stats()
    enc = build_encoder("small_cnn", 1, mean, std, data.image_shape[-1])
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    for decay in (0.75, None):
        assert fine_tune(enc, data, steps=60, batch_size=64, layer_decay=decay) > 0.8   # chance: 0.1
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())


def test_fine_tune_last_stage_only_leaves_the_rest_alone():
    import copy

    from sslkit.data import load_dataset
    from sslkit.evaluate import depth_groups, fine_tune
    from sslkit.train import RunSpec, TrainConfig, build_method

    data = load_dataset("digits")
    enc = build_method(RunSpec("simclr", "digits", train=TrainConfig(steps=1)), data).encoder
    before = copy.deepcopy(enc.state_dict())
    acc = fine_tune(enc, data, steps=3, batch_size=16, train_groups=1)
    assert 0.0 <= acc <= 1.0
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in before.items())     # the encoder passed in is untouched
    with pytest.raises(ValueError, match="train_groups must be between 0 and"):
        fine_tune(enc, data, steps=1, batch_size=16, train_groups=len(depth_groups(enc)) + 1)
