"""What every benchmark script shares: where the data is, the machine, and the results file."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def cifar10_folder() -> Path:
    """The CIFAR-10 JPEG folder (`make data/cifar10-jpeg/train` extracts it), or exit with why."""
    folder = Path(os.environ.get("SSLKIT_DATA", ROOT / "data")) / "cifar10-jpeg"
    if not (folder / "train").is_dir():
        sys.exit(f"no CIFAR-10 JPEG folder at {folder}: run `make data/cifar10-jpeg/train` first "
                 "(it extracts ../shared/data/cifar10-jpeg.tar.gz).")
    return folder


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()}-core {cpu}, {gpu}, torch {torch.__version__}, load average {load:.1f} at start"


def sslkit(*args: str) -> None:
    """Run the command line exactly as a user would; stop the benchmark if it fails."""
    cmd = [sys.executable, "-m", "sslkit", *args]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)


def train_run(profile, method: str, config: dict, dataset: str, minutes: float, seed: int = 0, **train_changes):
    """Pre-train ``profile``'s run of ``method`` on ``dataset`` for ``minutes`` in a throw-away
    folder (never the cache): ``(spec, run, training seconds)``."""
    from sslkit.train import pretrain

    spec = profile.spec(method, config, minutes=minutes, seed=seed, **train_changes)
    spec.dataset = dataset
    with tempfile.TemporaryDirectory() as out:
        t0 = time.time()
        run = pretrain(spec, out, progress_bar=False)
        return spec, run, time.time() - t0


def eval_subset(data):
    """The benchmarks' evaluation split: a stratified 10k train / 2k test subset (seed 0), fixed
    here so that recorded figures stay comparable when the notebooks' profile changes its own."""
    return data.subset(10000, 2000, seed=0)


def knn_and_linear(encoder, data) -> dict:
    """The kit's kNN and linear probe on ``data``'s splits, for one frozen encoder."""
    from sslkit.evaluate import extract_features, knn_accuracy, linear_probe

    train_f, test_f = extract_features(encoder, data.train_x), extract_features(encoder, data.test_x)
    return {"knn": knn_accuracy(train_f, data.train_y, test_f, data.test_y),
            "linear": linear_probe(train_f, data.train_y, test_f, data.test_y)}


def gains(rows: list[dict], keys=("knn", "linear")) -> dict:
    """Over several seeds' rows (each with "trained" and "random_init" accuracies): the gain of the
    trained encoder over the random-init one of the same seed, per protocol, as mean, min and max
    in points; prints one line per protocol."""
    out = {}
    for key in keys:
        d = [100 * (r["trained"][key] - r["random_init"][key]) for r in rows]
        out[key] = {"mean": sum(d) / len(d), "min": min(d), "max": max(d), "seeds": len(d)}
        print(f"  {key}: gain over random init {out[key]['mean']:+.1f} points on average over {len(d)} "
              f"seed(s), from {out[key]['min']:+.1f} to {out[key]['max']:+.1f}", flush=True)
    return out


def save(name: str, record: dict, path: str | Path | None = None) -> Path:
    """Write ``record`` with the date and the machine to ``path``, by default
    ``benchmarks/results/<name>.json`` (give another path for exploratory runs, so the recorded
    figures are not overwritten)."""
    record = {"date": datetime.date.today().isoformat(), "machine": machine(), **record}
    path = Path(path) if path is not None else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
    return path
