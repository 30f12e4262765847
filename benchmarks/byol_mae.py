"""BYOL and MAE pre-training on CIFAR-10 (the JPEG folder), against random init.

BYOL: the quick profile's small CNN pre-trained for a wall-clock budget (2 minutes by default),
then kNN and linear probe on the benchmarks' evaluation subset (10k train / 2k test) beside
the random-initialised encoder of the same seed; the same budget for each collapse switch (no
predictor, momentum 0, both), reporting the embedding spread at the start and the end of
training (1 = healthy, 0 = collapsed) and their kNN.

MAE: the quick profile's ViT (vit_mini) pre-trained for the same budget; on the evaluation
subset's test images, at mask ratio 0.75 and the same masks for every predictor, the MSE on the
hidden patches of the model against predicting each hidden patch's own mean (in the per-patch
normalised units of the loss, where the mean scores about 1, and in [0, 1] pixels); kNN and
linear probe; and fine-tuning (encoder + linear head, labels, a fixed number of steps) of the
pre-trained ViT against the random-init ViT with the same budget.

``--seeds 0 1 2`` repeats the BYOL and MAE runs with other seeds and reports the mean, min and
max gain over random init. Prints its figures and writes benchmarks/results/byol_mae.json (or
``--json PATH``) with the date and the machine:

    python benchmarks/byol_mae.py
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import cifar10_folder, eval_subset, gains, knn_and_linear, save, train_run
from sslkit.evaluate import fine_tune
from sslkit.profiles import get_profile
from sslkit.train import build_method

BYOL_RUNS = {"byol": {}, "no predictor": {"use_predictor": False}, "momentum 0": {"base_momentum": 0.0},
             "both": {"use_predictor": False, "base_momentum": 0.0}}


def spread(history: list[dict], first: bool) -> float:
    rows = [r["embedding_spread"] for r in history if r["embedding_spread"] is not None]
    return rows[0] if first else sum(rows[-3:]) / len(rows[-3:])


@torch.no_grad()
def masked_patch_mse(mae, images: torch.Tensor, ratio: float = 0.75, seed: int = 0) -> dict:
    """MSE on the hidden patches: the model against each hidden patch's own mean."""
    mae.eval()
    torch.manual_seed(seed)
    sums = {"model": 0.0, "patch_mean": 0.0, "model_pixels": 0.0, "patch_mean_pixels": 0.0}
    hidden_patches = hidden_pixels = 0.0
    for i in range(0, len(images), 256):
        x = images[i: i + 256].float().div(255)
        latent, mask, ids_restore = mae.forward_encoder(x, ratio)
        pred = mae.forward_decoder(latent, ids_restore)
        target = mae.targets(x)
        m = mask.unsqueeze(-1)
        sums["model"] += float((((pred - target) ** 2).mean(-1) * mask).sum())
        # each patch's own mean: 0 in per-patch normalised units (with norm_pix_loss)
        mean_pred = torch.zeros_like(target) if mae.cfg.norm_pix_loss else target.mean(-1, keepdim=True).expand_as(target)
        sums["patch_mean"] += float((((mean_pred - target) ** 2).mean(-1) * mask).sum())
        hidden_patches += float(mask.sum())
        # the same in [0, 1] pixels (the model's prediction mapped back with the patch's mean and std)
        true = mae.patchify(x)
        std = mae.encoder.std.flatten().repeat(mae.patch_size ** 2)          # channel last inside a patch
        mu = mae.encoder.mean.flatten().repeat(mae.patch_size ** 2)
        norm_true = (true - mu) / std
        p = pred * (norm_true.var(-1, keepdim=True) + 1e-6) ** 0.5 + norm_true.mean(-1, keepdim=True) \
            if mae.cfg.norm_pix_loss else pred
        p_pix = (p * std + mu).clamp(0, 1)
        sums["model_pixels"] += float((((p_pix - true) ** 2) * m).sum())
        sums["patch_mean_pixels"] += float((((true.mean(-1, keepdim=True) - true) ** 2) * m).sum())
        hidden_pixels += float(mask.sum()) * true.shape[-1]
    return {"model": sums["model"] / hidden_patches, "patch_mean": sums["patch_mean"] / hidden_patches,
            "model_pixels": sums["model_pixels"] / hidden_pixels,
            "patch_mean_pixels": sums["patch_mean_pixels"] / hidden_pixels}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--dataset", help="default: the CIFAR-10 JPEG folder")
    p.add_argument("--finetune-steps", type=int, default=150)
    p.add_argument("--finetune-batch", type=int, default=128)
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="one BYOL and one MAE run per seed, each against the random init of its seed "
                        "(the collapse switches run with the first seed only); default: 0")
    p.add_argument("--skip", nargs="*", default=[], choices=["byol", "switches", "mae"])
    p.add_argument("--json", help="write the results here instead of benchmarks/results/byol_mae.json")
    args = p.parse_args()

    profile = get_profile("quick")
    dataset = args.dataset or str(cifar10_folder())
    results = {"dataset": dataset, "minutes": args.minutes, "byol": {}, "mae": {}}

    if "byol" not in args.skip:
        runs = [("byol", seed) for seed in args.seeds]
        if "switches" not in args.skip:
            runs += [(name, args.seeds[0]) for name in BYOL_RUNS if name != "byol"]
        random_init, rows, switches = {}, [], {}
        for name, seed in runs:
            config = BYOL_RUNS[name]
            spec, run, train_s = train_run(profile, "byol", config, dataset, args.minutes, seed)
            data = eval_subset(run.data)
            row = {"seed": seed, "config": config, "steps": run.history[-1]["step"], "train_s": train_s,
                   "final_loss": run.history[-1]["loss"], "spread_start": spread(run.history, True),
                   "spread_end": spread(run.history, False), "trained": knn_and_linear(run.encoder, data)}
            if seed not in random_init:
                random_init[seed] = knn_and_linear(build_method(spec, run.data).encoder, data)
            row["random_init"] = ri = random_init[seed]
            if name == "byol":
                rows.append(row)
            else:
                switches[name] = row
            print(f"BYOL {name}, seed {seed}: {row['steps']} steps in {train_s:.0f} s, loss {row['final_loss']:.3f}, "
                  f"spread {row['spread_start']:.3f} -> {row['spread_end']:.3f}; kNN {100 * row['trained']['knn']:.1f}% / "
                  f"linear {100 * row['trained']['linear']:.1f}% (random init {100 * ri['knn']:.1f}% / "
                  f"{100 * ri['linear']:.1f}%)", flush=True)
        print("BYOL:")
        results["byol"] = {"runs": rows, "gains": gains(rows), "switches": switches}

    if "mae" not in args.skip:
        rows = []
        for seed in args.seeds:
            spec, run, train_s = train_run(profile, "mae", {}, dataset, args.minutes, seed)
            data = eval_subset(run.data)
            random_enc = build_method(spec, run.data).encoder
            row = {"seed": seed, "backbone": spec.backbone, "train": spec.train.__dict__,
                   "steps": run.history[-1]["step"], "train_s": train_s, "final_loss": run.history[-1]["loss"],
                   "masked_patch_mse": masked_patch_mse(run.method, data.test_x),
                   "trained": knn_and_linear(run.encoder, data), "random_init": knn_and_linear(random_enc, data)}
            mse = row["masked_patch_mse"]
            print(f"MAE, seed {seed}: {row['steps']} steps in {train_s:.0f} s, loss {row['final_loss']:.3f}; masked-patch "
                  f"MSE {mse['model']:.3f} against {mse['patch_mean']:.3f} for each patch's mean (normalised units), "
                  f"{mse['model_pixels']:.4f} against {mse['patch_mean_pixels']:.4f} in [0, 1] pixels", flush=True)
            print(f"MAE frozen: kNN {100 * row['trained']['knn']:.1f}% / linear {100 * row['trained']['linear']:.1f}% "
                  f"(random-init ViT {100 * row['random_init']['knn']:.1f}% / "
                  f"{100 * row['random_init']['linear']:.1f}%)", flush=True)
            t0 = time.time()
            kw = {"steps": args.finetune_steps, "batch_size": args.finetune_batch}
            row["trained"]["fine_tune"] = fine_tune(run.encoder, data, **kw)
            row["random_init"]["fine_tune"] = fine_tune(random_enc, data, **kw)
            row["fine_tune_budget"] = {**kw, "seconds": time.time() - t0}
            print(f"MAE fine-tuned ({kw['steps']} steps of {kw['batch_size']}, {time.time() - t0:.0f} s for both): "
                  f"{100 * row['trained']['fine_tune']:.1f}% against {100 * row['random_init']['fine_tune']:.1f}% "
                  "from random init", flush=True)
            rows.append(row)
        print("MAE:")
        results["mae"] = {"runs": rows, "gains": gains(rows, ("knn", "linear", "fine_tune"))}

    save("byol_mae", results, args.json)


if __name__ == "__main__":
    main()
