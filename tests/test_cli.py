"""The command line as a user runs it: real processes, exit codes, files."""

import json
import os
import subprocess
import sys

import pytest


def sslkit(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sslkit", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=600)


def test_datasets_lists_every_dataset(tmp_path):
    r = sslkit("datasets", "--data-root", str(tmp_path))
    assert r.returncode == 0
    for name in ["digits", "mnist", "fashion-mnist", "cifar10", "stl10", "svhn"]:
        assert name in r.stdout
    assert "available" in r.stdout and "missing" in r.stdout


def test_pretrain_then_evaluate(tmp_path):
    out = tmp_path / "run"
    r = sslkit("pretrain", "simclr", "--dataset", "digits", "--epochs", "2", "--batch-size", "128", "--out", str(out),
               "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert {"config.json", "checkpoint.pt", "history.json"} <= {p.name for p in out.iterdir()}
    assert "loss" in r.stderr or "SimCLR" in r.stderr            # the tqdm bar goes to stderr
    r = sslkit("evaluate", str(out), "--json", str(tmp_path / "res.json"))
    assert r.returncode == 0, r.stderr
    assert "random_init" in r.stdout and "kNN" in r.stdout
    res = json.loads((tmp_path / "res.json").read_text())["results"]
    for enc in ("trained", "random_init"):
        assert all(0.0 <= res[enc][k] <= 1.0 for k in ("knn", "linear", "fewshot10"))
    # running the same pretrain again loads the finished run
    r = sslkit("pretrain", "simclr", "--dataset", "digits", "--epochs", "2", "--batch-size", "128", "--out", str(out),
               "--device", "cpu")
    assert r.returncode == 0


@pytest.mark.parametrize("args,says", [
    (["pretrain", "simclr", "--dataset", "no-such-set"], "unknown dataset 'no-such-set'"),
    (["pretrain", "swav", "--dataset", "digits"], "invalid choice: 'swav'"),
    (["pretrain", "simclr", "--dataset", "digits", "--batch-size", "1"], "batch size must be at least 2"),
    (["pretrain", "simclr", "--dataset", "digits", "--temperature", "0"], "temperature must be positive"),
    (["pretrain", "simclr", "--dataset", "digits", "--temperature", "-1"], "temperature must be positive"),
    (["pretrain", "simclr", "--dataset", "mnist", "--data-root", "EMPTY"], "dataset 'mnist' is not in"),
    (["evaluate", "no/such/run"], "does not exist"),
    (["pretrain", "simclr", "--dataset", "digits", "--config", "nonsense"], "KEY=VALUE"),
    (["pretrain", "simclr", "--dataset", "digits", "--config", "foo=1"], "unknown setting 'foo' for simclr"),
])
def test_bad_arguments_give_one_line_and_write_nothing(tmp_path, args, says):
    args = [str(tmp_path / "empty") if a == "EMPTY" else a for a in args]
    (tmp_path / "empty").mkdir()
    r = sslkit(*args, "--out", str(tmp_path / "out")) if args[0] == "pretrain" else sslkit(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], r.stderr
    assert not (tmp_path / "out").exists()
    assert not list((tmp_path / "cache").glob("runs/*"))


def test_evaluate_refuses_an_unfinished_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    r = sslkit("evaluate", str(out))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def _folder(root, classes, n=12, size=16):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / "train" / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "train" / c / f"{i}.png")
    return root


def test_a_one_class_folder_pretrains_and_its_evaluation_says_what_is_missing(tmp_path):
    folder, out = _folder(tmp_path / "cats", ["cat"]), tmp_path / "run"
    r = sslkit("pretrain", "simclr", "--dataset", str(folder), "--steps", "2", "--batch-size", "4", "--out", str(out),
               "--device", "cpu")
    assert r.returncode == 0, r.stderr                        # SSL needs no labels: one folder is fine
    r = sslkit("evaluate", str(out), "--json", str(tmp_path / "res.json"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs labelled images of at least two classes" in lines[0], r.stderr
    assert "one class, 'cat'" in lines[0] and "--dataset" in lines[0] and "np.int64" not in lines[0]
    assert not (tmp_path / "res.json").exists()
    # pointed at labelled images of the same shape, it evaluates (in this process: no second start-up)
    from sslkit.cli import main

    labelled = _folder(tmp_path / "pets", ["cat", "dog"])
    assert main(["evaluate", str(out), "--dataset", str(labelled), "--json", str(tmp_path / "res.json")]) == 0
    assert json.loads((tmp_path / "res.json").read_text())["dataset"] == str(labelled)
