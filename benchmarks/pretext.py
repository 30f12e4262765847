"""Rotation and jigsaw pre-training on CIFAR-10 (the JPEG folder), against random init.

Each method pre-trains the quick profile's encoder for a wall-clock budget (2 minutes by
default) in a fresh run folder, then the frozen encoder is evaluated with the kit's kNN and
linear probe on the benchmarks' evaluation subset (10k train / 2k test), beside the
random-initialised encoder of the same seed; for rotation also the layer-wise probe (on a
5k / 2k subset, first seed only). ``--seeds 0 1 2`` repeats each run with other seeds and
reports the mean, min and max gain over random init. Prints the figures and writes
benchmarks/results/pretext.json (or ``--json PATH``) with the date and the machine.

    python benchmarks/pretext.py
"""

from __future__ import annotations

import argparse
import time

from _common import cifar10_folder, eval_subset, gains, knn_and_linear, save, train_run
from sslkit.cli import _config_overrides
from sslkit.evaluate import layerwise_probe
from sslkit.profiles import get_profile
from sslkit.train import build_method


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=["rotation", "jigsaw"])
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--dataset", help="default: the CIFAR-10 JPEG folder")
    p.add_argument("--config", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="a method setting, e.g. jigsaw.num_permutations=100")
    p.add_argument("--train", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="a training setting, e.g. jigsaw.batch_size=64 (default: the quick profile's)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="one run per seed, each against the random init of its seed (default: 0)")
    p.add_argument("--no-layerwise", action="store_true")
    p.add_argument("--json", help="write the results here instead of benchmarks/results/pretext.json")
    args = p.parse_args()

    profile = get_profile("quick")
    overrides = _config_overrides(args.config)
    train_overrides = _config_overrides(args.train)
    dataset = args.dataset or str(cifar10_folder())
    results = {"dataset": dataset, "minutes": args.minutes, "methods": {}}
    random_init = {}   # per seed: the random-init encoder is the same for every method (same seed, backbone)
    for method in args.methods:
        rows = []
        for seed in args.seeds:
            spec, run, train_s = train_run(profile, method, overrides.get(method, {}), dataset, args.minutes,
                                           seed, **train_overrides.get(method, {}))
            data = eval_subset(run.data)
            t0 = time.time()
            row = {"seed": seed, "config": spec.method_config, "train": spec.train.__dict__,
                   "steps": run.history[-1]["step"], "images_seen": run.history[-1]["step"] * spec.train.batch_size,
                   "final_loss": run.history[-1]["loss"], "train_s": train_s,
                   "trained": knn_and_linear(run.encoder, data)}
            if seed not in random_init:
                random_init[seed] = knn_and_linear(build_method(spec, run.data).encoder, data)
            row["random_init"] = ri = random_init[seed]
            if method == "rotation" and not args.no_layerwise and seed == args.seeds[0]:
                small = data.subset(5000, 2000)      # 8 probes on up to 1024-d features: a smaller train set
                row["layerwise"] = {"n_train": len(small.train_x), "n_test": len(small.test_x),
                                    "trained": layerwise_probe(run.encoder, small),
                                    "random_init": layerwise_probe(build_method(spec, run.data).encoder, small)}
            row["eval_s"] = time.time() - t0
            rows.append(row)
            print(f"{method}, seed {seed}: {row['steps']} steps ({row['images_seen']} images) in {train_s:.0f} s, "
                  f"final loss {row['final_loss']:.3f}; kNN {100 * row['trained']['knn']:.1f}% / linear "
                  f"{100 * row['trained']['linear']:.1f}% against random init {100 * ri['knn']:.1f}% / "
                  f"{100 * ri['linear']:.1f}%", flush=True)
            if "layerwise" in row:
                print(f"  layer-wise probe on {row['layerwise']['n_train']} train / {row['layerwise']['n_test']} test images:")
                for name in ("trained", "random_init"):
                    print(f"  layer-wise linear probe, {name}: " + ", ".join(
                        f"{k} {100 * v:.1f}%" for k, v in row["layerwise"][name].items()), flush=True)
        print(f"{method}:")
        results["methods"][method] = {"runs": rows, "gains": gains(rows)}

    save("pretext", results, args.json)


if __name__ == "__main__":
    main()
