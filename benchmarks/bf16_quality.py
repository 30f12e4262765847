"""Does bf16 autocast on the CPU cost quality? SimCLR in fp32 and in bf16, same steps, same seed.

The training step runs under bf16 autocast on a CPU with native bf16 instructions
(``sslkit.train.autocast_dtype``); parameters, the loss and the optimiser state stay fp32. This
pre-trains the quick profile's SimCLR (small CNN, batch 256) on CIFAR-10 for the same number of
steps twice from the same seed, once with ``SSLKIT_CPU_BF16=0`` (fp32) and once with bf16, and
evaluates both frozen encoders in fp32 with the kit's kNN and linear probe on the benchmarks'
evaluation subset (10k train / 2k test). Target: bf16's kNN within one point of fp32's. Prints
both and writes benchmarks/results/bf16_quality.json (or ``--json PATH``).

    python benchmarks/bf16_quality.py [--steps 150] [--seeds 0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from _common import cifar10_folder, eval_subset, knn_and_linear, save
from sslkit.profiles import get_profile
from sslkit.train import autocast_dtype, pretrain


def run(steps: int, seed: int, bf16: bool) -> dict:
    os.environ["SSLKIT_CPU_BF16"] = "1" if bf16 else "0"
    spec = get_profile("quick").spec("simclr", steps=steps, seed=seed)
    spec.dataset = str(cifar10_folder())
    with tempfile.TemporaryDirectory() as out:
        t0 = time.time()
        r = pretrain(spec, out, device="cpu", progress_bar=False)
        seconds = time.time() - t0
    res = knn_and_linear(r.encoder.float(), eval_subset(r.data))
    row = {"precision": "bf16" if bf16 else "fp32", "seed": seed, "steps": steps, "train_s": seconds,
           "final_loss": r.history[-1]["loss"], **res}
    print(f"  {row['precision']} seed {seed}: kNN {100 * res['knn']:.1f}%, linear {100 * res['linear']:.1f}%, "
          f"final loss {row['final_loss']:.3f}, {seconds:.0f} s", flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--json", help="write the results here instead of benchmarks/results/bf16_quality.json")
    args = p.parse_args()
    os.environ["SSLKIT_CPU_BF16"] = "1"
    if autocast_dtype(torch.device("cpu")) is None:
        raise SystemExit("this CPU has no native bf16 (AVX512-BF16 or AMX): training stays fp32 here, nothing to compare.")
    rows = [run(args.steps, seed, bf16) for seed in args.seeds for bf16 in (False, True)]
    diffs = [100 * (b["knn"] - a["knn"]) for a, b in zip(rows[::2], rows[1::2])]
    ok = all(abs(d) <= 1.0 for d in diffs)
    print(f"bf16 minus fp32, kNN: {', '.join(f'{d:+.1f}' for d in diffs)} points "
          f"({'within' if ok else 'NOT within'} one point)")
    save("bf16_quality", {"steps": args.steps, "batch_size": 256, "rows": rows, "knn_diff_points": diffs,
                          "within_one_point": ok}, args.json)


if __name__ == "__main__":
    main()
