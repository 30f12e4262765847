"""The GPU session's one command, dry-run on the CPU with tiny budgets: every part runs, writes its
results where the device brings them back, and an unknown part or argument is refused before any work."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_run.sh"


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ, OUT=str(tmp_path / "out"), GPU_RUN_WORK=str(tmp_path / "work"),
               SSLKIT_CACHE=str(tmp_path / "cache"), PYTHON=os.environ.get("PYTHON", _python()))
    env.setdefault("SSLKIT_DATA", str(ROOT / "data"))
    env.pop("SSLKIT_EXECUTED", None)
    return env


def _python() -> str:
    import sys

    return sys.executable


def test_unknown_part_is_refused_before_any_work(tmp_path):
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--parts", "throughput benchmark"],
                          env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("gpu_run.sh: unknown part 'benchmark': use throughput, notebooks, speed "
                                   "or references.")
    assert not (tmp_path / "out").exists()


def test_dry_run_of_every_part_brings_back_its_results(tmp_path):
    env = _env(tmp_path)
    if not (Path(env["SSLKIT_DATA"]) / "cifar10-jpeg" / "train").is_dir():
        pytest.skip(f"no CIFAR-10 JPEG folder under {env['SSLKIT_DATA']} (make data): the GPU script needs it")
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--parts", "throughput notebooks speed references",
                           "--only", "rotation"], env=env, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    out = tmp_path / "out"
    log = (out / "gpu_run.log").read_text() if (out / "gpu_run.log").exists() else ""
    assert proc.returncode == 0, log[-3000:] + proc.stderr[-2000:]
    assert "done (failed: 0)" in log

    with tarfile.open(out / "results.tar.gz") as tar:
        names = set(tar.getnames())
        results = {Path(n).name: tar.extractfile(n).read() for n in names if n.startswith("results/") and tar.getmember(n).isfile()}
    for backbone in ("small_cnn", "resnet18"):
        record = json.loads(results[f"throughput_cpu_{backbone}.json"])
        assert record["backbone"] == backbone and record["summary"]["sslkit"]["images_per_s_median"] > 0
    timings = results["notebooks.tsv"].decode().splitlines()
    assert timings[0].split("\t") == ["notebook", "profile", "seconds", "status"]
    assert [line.split("\t")[0::3] for line in timings[1:]] == [["00_setup_and_data", "passed"]]
    speed = json.loads(results["simclr_speed_cpu.json"])
    assert speed["curve"] and all(0 <= c["knn"] <= 1 for c in speed["curve"])
    assert speed["curve"][-1]["train_s"] >= 0.1 * 60 - 1           # the last evaluation is at the budget's end
    assert "logs/rotation.log" in names

    with tarfile.open(out / "notebooks.tar.gz") as tar:
        assert "executed/00_setup_and_data.ipynb" in tar.getnames()
    with tarfile.open(out / "references_a.tar") as tar:
        assert sorted(tar.getnames()) == ["rotation.json", "rotation.safetensors"]
    assert len([p for p in out.rglob("*") if p.is_file()]) <= 8      # the device brings back 8 files at most
