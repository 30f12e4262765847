"""SimCLR on the CPU, exactly as the issue's acceptance check runs it.

    python -m sslkit pretrain simclr --dataset <CIFAR-10 JPEG folder> --minutes 2 --out RUN
    python -m sslkit evaluate RUN --json RUN/results.json

Every other option at its default (on a CPU: the quick-profile small CNN). Target: kNN at least
7 points and linear at least 5 points above the random-init encoder. Prints the figures and
writes benchmarks/results/simclr_cpu.json.

Usage: python benchmarks/simclr_cpu.py [--minutes 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from _common import cifar10_folder, save, sslkit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=2.0)
    args = ap.parse_args()
    folder = cifar10_folder()
    work = Path(tempfile.mkdtemp(prefix="sslkit-bench-"))
    try:
        run = work / "run"
        sslkit("pretrain", "simclr", "--dataset", str(folder), "--minutes", str(args.minutes), "--out", str(run))
        sslkit("evaluate", str(run), "--json", str(run / "results.json"))
        res = json.loads((run / "results.json").read_text())["results"]
        history = json.loads((run / "history.json").read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    t, r = res["trained"], res["random_init"]
    gain = {k: t[k] - r[k] for k in ("knn", "linear", "fewshot10")}
    speed = sum(h["images_per_s"] for h in history[len(history) // 2:]) / max(1, len(history) - len(history) // 2)
    print(f"\nSimCLR, small CNN, {args.minutes:g} min on CPU: {history[-1]['step']} steps, ~{speed:.0f} images/s")
    print(f"kNN     {100 * t['knn']:.1f}% vs random init {100 * r['knn']:.1f}%  ({100 * gain['knn']:+.1f}; target >= +7)")
    print(f"linear  {100 * t['linear']:.1f}% vs random init {100 * r['linear']:.1f}%  ({100 * gain['linear']:+.1f}; target >= +5)")
    print(f"10-shot {100 * t['fewshot10']:.1f}% vs random init {100 * r['fewshot10']:.1f}%  ({100 * gain['fewshot10']:+.1f})")
    met = gain["knn"] >= 0.07 and gain["linear"] >= 0.05
    print("targets met" if met else "TARGETS NOT MET")
    save("simclr_cpu", {"minutes": args.minutes, "steps": history[-1]["step"], "images_per_s": speed,
                        "results": res, "gain": gain, "targets_met": met})


if __name__ == "__main__":
    main()
