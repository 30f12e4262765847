"""Evaluation, stage by stage, on the full CIFAR-10 splits (50k train / 10k test), on this machine.

Times every stage of evaluating one frozen encoder, for the small CNN (the SimCLR reference) and the
ViT (the MAE reference): feature extraction in fp32 and bf16 (and a second time, from the feature
cache), kNN, the linear probe, few-shot, label efficiency, fine-tuning, alignment and uniformity,
UMAP and t-SNE. The linear probe and few-shot run with both solvers side by side: the kit's torch
L-BFGS and scikit-learn's lbfgs (what the kit used before), with their accuracies and the warnings
each raised. ``--agreement`` also fits both solvers on every shipped reference's features
(the "within 0.3 points" check of the torch solver).

    python benchmarks/eval_speed.py                       # both encoders, every stage
    python benchmarks/eval_speed.py --encoders simclr --agreement
    python benchmarks/eval_speed.py --quick               # 5k / 1k images, fine-tuning 20 steps: a smoke run

Writes benchmarks/results/eval_speed.json (``--out`` for another file). Run it on a quiet machine:
times taken beside another job are meaningless.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


class Stage:
    """Wall time of one stage, with the warnings it raised."""

    def __init__(self, rows: dict, name: str):
        self.rows, self.name = rows, name

    def __enter__(self):
        self._catch = warnings.catch_warnings(record=True)
        self.caught = self._catch.__enter__()
        warnings.simplefilter("always")
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        seconds = time.perf_counter() - self.t0
        self._catch.__exit__(*exc)
        found = sorted({f"{w.category.__name__}: {str(w.message)[:80]}" for w in self.caught})
        self.rows[self.name] = {"seconds": round(seconds, 2), **({"warnings": found} if found else {}),
                                **self.rows.get(self.name, {})}
        print(f"  {self.name:<34} {seconds:8.2f} s" + (f"   {len(found)} kind(s) of warning" if found else ""), flush=True)
        return False


def encoder_stages(name: str, data, finetune_steps: int, draws: int) -> dict:
    import torch

    from sslkit.compare import SHOTS, alignment, uniformity, view_pairs
    from sslkit.evaluate import evaluate_features, extract_features, few_shot, fine_tune, knn_accuracy, linear_probe
    from sslkit.reference import load_reference
    from sslkit.viz import project_2d

    ref = load_reference(name)
    enc = ref.encoder.eval()
    rows: dict = {}
    print(f"{name} ({ref.spec.backbone}), {len(data.train_x)} train / {len(data.test_x)} test images", flush=True)
    feats = {}
    for precision, autocast in (("fp32", False), ("bf16", True)):
        with Stage(rows, f"features {precision}"):
            feats[precision] = (extract_features(enc, data.train_x, autocast=autocast, cache=False),
                                extract_features(enc, data.test_x, autocast=autocast, cache=False))
    # what bf16 features would change: kNN and the linear probe on each (the cards are fp32)
    for precision, (a, b) in feats.items():
        rows[f"features {precision}"].update(knn=knn_accuracy(a, data.train_y, b, data.test_y),
                                             linear=linear_probe(a, data.train_y, b, data.test_y, cache=False))
    print(f"    bf16 against fp32 features: kNN {100 * (rows['features bf16']['knn'] - rows['features fp32']['knn']):+.2f}"
          f", linear {100 * (rows['features bf16']['linear'] - rows['features fp32']['linear']):+.2f} points", flush=True)
    with Stage(rows, "features fp32, first (into the cache)"):
        tr = extract_features(enc, data.train_x, autocast=False)
        te = extract_features(enc, data.test_x, autocast=False)
    with Stage(rows, "features fp32, from the cache"):
        tr2 = extract_features(enc, data.train_x, autocast=False)
        te2 = extract_features(enc, data.test_x, autocast=False)
    assert torch.equal(tr, tr2) and torch.equal(te, te2)
    ytr, yte = data.train_y, data.test_y
    with Stage(rows, "kNN (k=200, cosine)"):
        rows["kNN (k=200, cosine)"] = {"accuracy": knn_accuracy(tr, ytr, te, yte)}
    for solver in ("torch", "sklearn"):
        with Stage(rows, f"linear probe, {solver}"):
            rows[f"linear probe, {solver}"] = {"accuracy": linear_probe(tr, ytr, te, yte, solver=solver, cache=False)}
    for solver in ("torch", "sklearn"):
        with Stage(rows, f"10-shot x {draws} draws, {solver}"):
            mean, std = few_shot(tr, ytr, te, yte, shots=10, seeds=draws, solver=solver, cache=False)
            rows[f"10-shot x {draws} draws, {solver}"] = {"accuracy": mean, "std": std}
    with Stage(rows, f"label efficiency {'/'.join(map(str, SHOTS))}-shot"):
        rows[f"label efficiency {'/'.join(map(str, SHOTS))}-shot"] = {
            "accuracy": {k: few_shot(tr, ytr, te, yte, shots=k, seeds=draws, cache=False)[0] for k in SHOTS}}
    with Stage(rows, "alignment and uniformity"):
        z1, z2 = (extract_features(enc, v, cache=False) for v in view_pairs(data.test_x[:1000]))   # as compare does
        rows["alignment and uniformity"] = {"alignment": alignment(z1, z2), "uniformity": uniformity(te[:1000])}
    for how in ("umap", "tsne"):
        with Stage(rows, f"{how} of 1,000 test features"):
            project_2d(te[:1000], how, cache=False)
    with Stage(rows, "kNN, linear, 10-shot into the cache"):
        evaluate_features(tr, ytr, te, yte, shots=10, seeds=draws)   # fills the cache ...
    with Stage(rows, "kNN, linear, 10-shot from the cache"):
        evaluate_features(tr, ytr, te, yte, shots=10, seeds=draws)   # ... and reads it
    if finetune_steps:
        with Stage(rows, f"fine-tuning, {finetune_steps} steps"):
            rows[f"fine-tuning, {finetune_steps} steps"] = {
                "accuracy": fine_tune(enc, data, steps=finetune_steps, cache=False)}
    return rows


def agreement(data, draws: int) -> dict:
    """Both probe solvers on every shipped reference's features: linear and 10-shot accuracy."""
    from sslkit.evaluate import extract_features, few_shot, linear_probe
    from sslkit.reference import RECIPES, load_reference

    out = {}
    for name in RECIPES:
        enc = load_reference(name).encoder.eval()
        tr, te = extract_features(enc, data.train_x, autocast=False), extract_features(enc, data.test_x, autocast=False)
        row = {}
        for solver in ("torch", "sklearn"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                t0 = time.perf_counter()
                row[solver] = {"linear": linear_probe(tr, data.train_y, te, data.test_y, solver=solver, cache=False),
                               "fewshot10": few_shot(tr, data.train_y, te, data.test_y, 10, draws, solver=solver, cache=False)[0],
                               "seconds": round(time.perf_counter() - t0, 2), "warnings": len(caught)}
        row["difference_points"] = {k: round(100 * (row["torch"][k] - row["sklearn"][k]), 2) for k in ("linear", "fewshot10")}
        out[name] = row
        print(f"  {name:<11} linear torch {100 * row['torch']['linear']:.2f} sklearn {100 * row['sklearn']['linear']:.2f}"
              f" | 10-shot torch {100 * row['torch']['fewshot10']:.2f} sklearn {100 * row['sklearn']['fewshot10']:.2f}"
              f" | seconds {row['torch']['seconds']} / {row['sklearn']['seconds']}"
              f" | warnings {row['torch']['warnings']} / {row['sklearn']['warnings']}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoders", nargs="+", default=["simclr", "mae"], help="shipped references to time")
    ap.add_argument("--finetune-steps", type=int, default=500, help="the references' fine-tuning budget (0: skip)")
    ap.add_argument("--draws", type=int, default=5, help="draws per k-shot probe")
    ap.add_argument("--agreement", action="store_true", help="also both solvers on every shipped reference")
    ap.add_argument("--quick", action="store_true", help="5k / 1k images and 20 fine-tuning steps: a smoke run")
    ap.add_argument("--out", help="results file (default benchmarks/results/eval_speed.json)")
    args = ap.parse_args()

    # a cache folder of this run's own, so no entry left by an earlier run answers a stage timed as a
    # first computation; the decoded datasets are shared with the usual cache (their loading is not timed)
    from sslkit.cache import cache_root
    shared = cache_root() / "datasets"
    shared.mkdir(parents=True, exist_ok=True)
    os.environ["SSLKIT_CACHE"] = tempfile.mkdtemp(prefix="sslkit-eval-speed-")
    (cache_root() / "datasets").symlink_to(shared, target_is_directory=True)
    import torch

    from sslkit.data import load_dataset

    _common.cifar10_folder()
    t0 = time.perf_counter()
    data = load_dataset("cifar10")
    load_s = time.perf_counter() - t0
    if args.quick:
        data = data.subset(5000, 1000, seed=0)
        args.finetune_steps = min(args.finetune_steps, 20)
    print(f"CIFAR-10 loaded in {load_s:.1f} s; torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    record = {"command": " ".join(["python", "benchmarks/eval_speed.py", *sys.argv[1:]]),
              "images": {"train": len(data.train_x), "test": len(data.test_x)}, "load_seconds": round(load_s, 1),
              "threads": torch.get_num_threads(), "encoders": {}}
    for name in args.encoders:
        record["encoders"][name] = encoder_stages(name, data, args.finetune_steps, args.draws)
    if args.agreement:
        print("both probe solvers on every shipped reference:", flush=True)
        record["agreement"] = agreement(data, args.draws)
    _common.save("eval_speed", record, args.out)
    shutil.rmtree(cache_root(), ignore_errors=True)


if __name__ == "__main__":
    main()
