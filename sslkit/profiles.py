"""The two profiles the notebooks and the command line run under.

- **quick** (chosen when there is no CUDA GPU): the small CNN, a wall-clock training budget of
  tens of seconds, evaluation on a class-balanced subset; every notebook in about 90 s on two
  CPU cores. Its dataset is CIFAR-10 when it is on disk (named, or as a JPEG folder
  ``<data root>/cifar10-jpeg``, see :mod:`sslkit.data`), else scikit-learn's digits, which is always there.
- **full** (chosen when CUDA is available): CIFAR-10 with ResNet-18, settings scaled from the
  papers to minutes on one GPU, evaluation on the whole splits.

Override with ``SSLKIT_PROFILE=quick|full`` and the dataset with ``SSLKIT_DATASET``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from sslkit.data import ImageData, is_available, load_dataset
from sslkit.train import RunSpec, TrainConfig


_BUDGETS = {"epochs", "steps", "minutes"}


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for k, v in changes.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class Profile:
    """Settings for one profile. ``train`` holds TrainConfig fields per method (``"*"`` for all)."""

    name: str
    dataset: str
    backbone: str
    device: str
    train: dict = field(default_factory=dict)
    method_backbones: dict = field(default_factory=dict)   # methods that need another backbone (MAE: a ViT)
    method_configs: dict = field(default_factory=dict)     # per-method settings scaled to the profile
    eval_train: int | None = None     # evaluate on a stratified subset of this many train images
    eval_test: int | None = None
    plot_points: int = 2000           # points in UMAP / t-SNE figures

    def backbone_for(self, method: str) -> str:
        return self.method_backbones.get(method, self.backbone)

    def train_config(self, method: str, **changes) -> TrainConfig:
        """The profile's settings for ``method``, with ``changes`` on top. A budget given in a
        higher layer (``minutes=1`` here, say) replaces the budget of the layers below."""
        merged: dict = {}
        for layer in (self.train.get("*", {}), self.train.get(method, {}), changes):
            if _BUDGETS & {k for k, v in layer.items() if v is not None}:
                merged = {k: v for k, v in merged.items() if k not in _BUDGETS}
            merged.update(layer)
        return TrainConfig(**merged)

    def method_config(self, method: str, changes: dict | None = None) -> dict:
        """The profile's settings for ``method`` (nested dicts merged) with ``changes`` on top."""
        return _merge(self.method_configs.get(method, {}), changes or {})

    def spec(self, method: str, method_config: dict | None = None, backbone: str | None = None,
             **train_changes) -> RunSpec:
        """The run this profile makes of ``method`` (with optional changes)."""
        return RunSpec(method=method, dataset=self.dataset, backbone=backbone or self.backbone_for(method),
                       method_config=self.method_config(method, method_config),
                       train=self.train_config(method, **train_changes))

    def load_data(self) -> ImageData:
        """The profile's dataset (downloaded on the full profile when it is missing)."""
        return load_dataset(self.dataset, download=self.name == "full" and not is_available(self.dataset)[0])

    def eval_data(self, data: ImageData) -> ImageData:
        return data.subset(self.eval_train, self.eval_test, seed=0)

    def settings_table(self, methods: tuple[str, ...] = ("rotation", "jigsaw", "simclr", "moco", "byol", "mae")) -> str:
        """The profile's runs as a Markdown table (backbone, budget, batch, learning rate, method settings),
        so that a notebook quotes the settings the code has, never a copy of them."""
        rows = ["| method | backbone | budget | batch | lr | method settings |", "|---|---|---|---|---|---|"]
        for method in methods:
            cfg = self.train_config(method)
            budget = (f"{cfg.steps} steps" if cfg.steps else f"{cfg.epochs:g} epochs" if cfg.epochs
                      else f"{cfg.minutes:g} minutes")
            settings = ", ".join(f"{k} {v}" for k, v in self.method_config(method).items()) or "its config's defaults"
            rows.append(f"| {method} | {self.backbone_for(method)} | {budget} | {cfg.batch_size} | {cfg.lr:g} | {settings} |")
        evaluation = (f"{self.eval_train:,} / {self.eval_test:,} class-balanced train / test images"
                      if self.eval_train else "the full train and test splits")
        return "\n".join(rows) + f"\n\nEvaluation: {evaluation}; projections of {self.plot_points:,} test points."

    def data_note(self, data: ImageData) -> str:
        """One sentence for the top of a notebook: which dataset it runs on and what that changes."""
        c, h, w = data.image_shape
        title = {"cifar10": "CIFAR-10", "digits": "scikit-learn's digits", "mnist": "MNIST",
                 "fashion-mnist": "Fashion-MNIST", "stl10": "STL-10", "svhn": "SVHN"}.get(data.name, data.name)
        what = (f"{title} ({len(data.train_x):,} train / {len(data.test_x):,} test images, "
                f"{h}x{w} {'colour' if c == 3 else 'greyscale'}, {len(data.classes)} classes)")
        if data.name == "cifar10":
            return f"This notebook runs on {what}, the dataset its text and the reference runs are about."
        return (f"This notebook runs on {what}, not CIFAR-10: the figures are smaller, every figure and score is "
                "this dataset's (the text describes CIFAR-10's), and the reference runs, trained on CIFAR-10, are "
                "not shown; `python -m sslkit download cifar10` fetches CIFAR-10, which the quick profile then uses.")


def quick_dataset() -> str:
    """CIFAR-10 when it is on disk (torchvision's files or the JPEG copy), else digits."""
    return "cifar10" if is_available("cifar10")[0] else "digits"


def get_profile(name: str | None = None) -> Profile:
    """The profile called ``name``, else ``$SSLKIT_PROFILE``, else full with CUDA and quick without."""
    name = name or os.environ.get("SSLKIT_PROFILE") or ("full" if torch.cuda.is_available() else "quick")
    if name == "quick":
        dataset = os.environ.get("SSLKIT_DATASET") or quick_dataset()
        return Profile("quick", dataset, "small_cnn", "auto",
                       # a fixed number of steps, sized for about 30 s on two idle CPU cores: the
                       # same numbers on every run (a time budget would train less on a busy laptop)
                       train={"*": {"steps": 60, "batch_size": 256, "lr": 1e-3, "checkpoint_every": 100,
                                    "log_every": 5},
                              # MAE: the paper's AdamW weight decay 0.05 and 5% warm-up (40 of 800 epochs),
                              # but lr 1.5e-3, ten times its 1.5e-4 * B/256: a run of a few hundred
                              # steps needs the faster start (loss lower after the same steps here).
                              # Batch 64, not 256: an image costs the same at either size here, so in
                              # the same time four times the steps. 2-minute runs, seed 0 (masked MSE;
                              # kNN / linear / fine-tuned; random-init ViT 27.5 / 44.8 / 36.7%): batch
                              # 256, 204 steps: 0.738; 28.8 / 43.3 / 37.5%. 128, 419 steps: 0.670; 32.7
                              # / 48.9 / 41.4%. 64, 850 steps: 0.615; 34.6 / 50.4 / 46.0%. 200 steps
                              # of 64 (notebook 06's run, about 40 s): fewer images than the former 60
                              # of 256, so that the notebook keeps its time.
                              "mae": {"lr": 1.5e-3, "weight_decay": 0.05, "warmup": 0.05, "batch_size": 64,
                                      "steps": 200},
                              # rotation: batch 64 (x 4 rotations = 256 views), 100 steps, not the
                              # paper's 128: a view costs a quarter less in a batch of 256 than of 512
                              # here (cache), and more steps learn more. 5k / 1k evaluation, kNN / linear
                              # / 10-shot gain over random init, two seeds: +6.7 / +1.1 / +4.0 and
                              # +6.2 / +4.0 / +3.5 in 34 s; batch 128 x 60 steps +4.9 / +2.0 / +4.2 and
                              # +3.5 / +1.4 / +2.5 in 41-51 s
                              "rotation": {"batch_size": 64, "steps": 100},
                              "jigsaw": {"batch_size": 64, "steps": 150},
                              # BYOL: batch 64. No negatives, so small batches cost it little, and in
                              # minutes it needs steps. 2-minute runs: kNN 36.6-38.2% / linear
                              # 49.6-51.6% at batch 64 (five runs, 550-650 steps), 34-38% / 49.5-51% at
                              # 128, 34.1% / 49.4% at 256; random init 35.2% / 48.7%. Three seeds on a
                              # slower day (441-467 steps): +0.3 kNN / +0.6 linear over random init on
                              # average, within noise (RESULTS.md).
                              # 100 steps (about 25 s) so that notebook 05's three runs fit its time.
                              "byol": {"batch_size": 64, "steps": 100},
                              # MoCo: batch 64, its lesson (4096 negatives whatever the batch), 100 steps
                              # (about as long as SimCLR's 60 of 256 here); notebook 04 compares SimCLR
                              # at the same batch and steps
                              "moco": {"batch_size": 64, "steps": 100}},
                       method_backbones={"mae": "vit_mini"},
                       # SimCLR: temperature 0.2, not the paper's 0.5: it learns faster in short CPU runs.
                       # jigsaw: 100 permutations (the paper: 1000), a task a half-minute run can start to
                       # learn; batch 64 (9 small tiles each) and 150 steps: more steps, about the same time.
                       # Tiles cut from the 32-px images as they are (9-px tiles), not upsampled to 64 px
                       # (18-px tiles): the encoder then learns at the scale it is evaluated at. 2-minute
                       # runs (kNN / linear, random init 35.2% / 48.7%): 32 px 36.1% / 49.2%, 48 px
                       # 34.5% / 45.1%, 64 px 30.0% / 44.7%; 32 px with 1000 permutations 36.6% / 50.1%.
                       # Three seeds at 32 px: -0.2 / -0.2 against random init on average (RESULTS.md)
                       # BYOL: base momentum 0.9 (0.99 on the full profile): a run of a few hundred
                       # steps needs a target that keeps up (at 0.99 it averages over the last ~100
                       # steps, most of the run; batch 128: kNN 38.2% at 0.9, 36.8% at 0.97); projector
                       # and predictor 1024 wide, not 4096: 10% more steps in the same time and within
                       # noise (kNN 38.2 / linear 50.6 against 35.7 / 51.7 for 4096, 2-minute runs)
                       method_configs={"simclr": {"temperature": 0.2}, "jigsaw": {"num_permutations": 100, "image_size": 32},
                                       "byol": {"base_momentum": 0.9, "hidden_dim": 1024},
                                       # MoCo: the authors' CIFAR-10 demo values (K 4096, m 0.99) but T 0.2 as
                                       # SimCLR here. At the quick batch of 64 the queue holds real keys
                                       # only after 64 of the 100 steps; kept at 4096 because 4096
                                       # negatives at batch 64 is notebook 04's lesson, and its sweep shows
                                       # what smaller queues give in 100 steps. m 0.99 lets the keys follow
                                       "moco": {"queue_size": 4096, "momentum": 0.99, "temperature": 0.2}},
                       # evaluation on 5k / 1k images: every notebook evaluates two to four encoders
                       eval_train=5000, eval_test=1000, plot_points=1000)
    if name == "full":
        return Profile("full", os.environ.get("SSLKIT_DATASET") or "cifar10", "resnet18", "auto",
                       # 5 epochs: sized so that a notebook takes about a minute on the project's H200
                       # and about ten on a student's GPU (issue 17). An estimate from public figures
                       # (ResNet-18 SimCLR on CIFAR-10, ~12 s an epoch on an A100), not yet measured
                       # here: `bash benchmarks/gpu_run.sh` records every notebook's time (RESULTS.md)
                       train={"*": {"epochs": 5, "batch_size": 512, "lr": 2e-3, "warmup": 0.05,
                                    "checkpoint_every": 1000},
                              # MAE: the paper's rule lr = 1.5e-4 * B / 256, weight decay 0.05
                              "mae": {"lr": 1.5e-4 * 512 / 256, "weight_decay": 0.05, "warmup": 0.05}},
                       method_backbones={"mae": "vit_tiny"},
                       # MoCo: the authors' CIFAR-10 demo (K 4096, m 0.99, T 0.1)
                       method_configs={"moco": {"queue_size": 4096, "momentum": 0.99, "temperature": 0.1}},
                       eval_train=None, eval_test=None, plot_points=5000)
    raise ValueError(f"unknown profile '{name}': use quick or full.")


def scaled_budget(cfg: TrainConfig, factor: float) -> dict:
    """``cfg``'s training budget times ``factor``, as changes for :meth:`Profile.spec`: the short
    side runs of an ablation (rotation's K = 2/4/8, jigsaw's shortcut experiment)."""
    if getattr(cfg, "steps", None):
        return {"steps": max(1, round(cfg.steps * factor))}
    if cfg.minutes:
        return {"minutes": cfg.minutes * factor}
    return {"epochs": cfg.epochs * factor}
