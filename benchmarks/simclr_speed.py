"""SimCLR speed run: kNN accuracy against training wall time, capped at ``--minutes``.

The full profile's SimCLR (ResNet-18 for CIFAR, batch 512, AdamW, NT-Xent) trained by the kit's
own loop with a wall-clock budget (the learning-rate schedule spans the budget), and the kit's
kNN (k 200, T 0.1, full CIFAR-10 splits) measured every ``--eval-every`` seconds of training. The
evaluations run inside the loop's logging callback, whose time the loop does not count as
training time, so the times reported are training seconds. Prints each evaluation and, at the
end, how far it got and the training time to 80% and 85% kNN where reached. Writes
benchmarks/results/simclr_speed_<device>.json (or ``--json PATH``).

Reference points (issue 17): lightly's benchmark, SimCLR kNN 84.7% after 200 epochs in 97.7
minutes on one A6000; a tuned public SimCLR, 83.2% after 100 epochs in about 20 minutes on one A100.

    python benchmarks/simclr_speed.py [--device cuda] [--minutes 8]
    python benchmarks/simclr_speed.py --device cpu --minutes 0.2 --eval-every 5 --eval-subset 500 200   # dry run
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import cifar10_folder, save
from sslkit.data import load_dataset
from sslkit.evaluate import extract_features, knn_accuracy
from sslkit.profiles import get_profile
from sslkit.train import build_method, resolve_device, train

TARGETS = (0.80, 0.85)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--minutes", type=float, default=8.0, help="training wall-time budget")
    p.add_argument("--eval-every", type=float, default=45.0, help="training seconds between kNN evaluations")
    p.add_argument("--backbone", default=None, help="default: the full profile's (resnet18)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the full profile's (512)")
    p.add_argument("--eval-subset", type=int, nargs=2, metavar=("TRAIN", "TEST"),
                   help="evaluate on a stratified subset (a dry run); default: the full splits")
    p.add_argument("--json", help="write here instead of benchmarks/results/simclr_speed_<device>.json")
    args = p.parse_args()

    device = resolve_device(args.device)
    data = load_dataset(str(cifar10_folder()))
    evaluation = data.subset(*args.eval_subset, seed=0) if args.eval_subset else data
    changes = {"minutes": args.minutes, "log_every": 10}
    if args.batch_size:
        changes["batch_size"] = args.batch_size
    spec = get_profile("full").spec("simclr", backbone=args.backbone, **changes)
    spec.dataset = data.name
    method = build_method(spec, data)
    encoder = method.encoder

    curve: list[dict] = []

    def measure(row: dict) -> None:
        last = curve[-1]["train_s"] if curve else 0.0
        if row["elapsed_s"] - last < args.eval_every and row["elapsed_s"] < 60 * args.minutes - 1e-6:
            return
        t0 = time.perf_counter()
        train_f, test_f = extract_features(encoder, evaluation.train_x), extract_features(encoder, evaluation.test_x)
        knn = knn_accuracy(train_f, evaluation.train_y, test_f, evaluation.test_y)
        point = {"train_s": row["elapsed_s"], "step": row["step"], "epoch": row["epoch"], "loss": row["loss"],
                 "images_per_s": row["images_per_s"], "knn": knn, "eval_s": time.perf_counter() - t0}
        curve.append(point)
        print(f"  {point['train_s']:6.0f} s  epoch {point['epoch']:5.1f}  loss {point['loss']:.3f}  "
              f"kNN {100 * knn:.1f}%  ({point['images_per_s']:.0f} images/s; evaluation {point['eval_s']:.0f} s)",
              flush=True)

    print(f"SimCLR speed run: {spec.backbone}, batch {spec.train.batch_size}, {args.minutes:g} minutes on {device}, "
          f"kNN on {len(evaluation.train_x)} / {len(evaluation.test_x)} images", flush=True)
    t_start = time.perf_counter()
    train(method, data.pretrain_x, spec.train, device=device, callbacks=[measure], progress_bar=False)
    reached = {f"{round(100 * t)}%": next((c["train_s"] for c in curve if c["knn"] >= t), None) for t in TARGETS}
    best = max(curve, key=lambda c: c["knn"]) if curve else None
    for name, seconds in reached.items():
        print(f"time to {name} kNN: " + (f"{seconds:.0f} s of training" if seconds is not None else "not reached"))
    if best:
        print(f"best kNN {100 * best['knn']:.1f}% at {best['train_s']:.0f} s (epoch {best['epoch']:.1f}); "
              f"wall time with evaluations {time.perf_counter() - t_start:.0f} s")
    save(f"simclr_speed_{device.type}", {"backbone": spec.backbone, "batch_size": spec.train.batch_size,
                                          "minutes": args.minutes, "eval_subset": args.eval_subset,
                                          "curve": curve, "time_to": reached,
                                          "device_name": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"},
         args.json)


if __name__ == "__main__":
    main()
