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
from sslkit.methods import METHODS
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

    def settings_table(self, methods: tuple[str, ...] | None = None) -> str:
        """The profile's runs as a Markdown table (backbone, budget, batch, learning rate, method settings),
        so that a notebook quotes the settings the code has, never a copy of them. ``methods``: by
        default every self-supervised method of the registry, in the course's order."""
        methods = methods or tuple(m for m, (_, cls) in METHODS.items() if not cls.uses_labels)
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


# The backbone each profile gives an encoder family (a method class's ``family``). References are
# trained on the quick profile's, so that the notebooks show them beside their own short runs.
QUICK_BACKBONES = {"cnn": "small_cnn", "vit": "vit_mini"}
FULL_BACKBONES = {"cnn": "resnet18", "vit": "vit_tiny"}


def _per_method(profile: str) -> dict:
    """The profile's per-method settings, read from every method class in the registry (each
    method's ``quick`` / ``full`` attribute, with the measurements behind it in its own file)."""
    backbones = QUICK_BACKBONES if profile == "quick" else FULL_BACKBONES
    classes = {name: cls for name, (_, cls) in METHODS.items()}
    return {"train": {m: dict(getattr(c, profile).train) for m, c in classes.items() if getattr(c, profile).train},
            "method_configs": {m: dict(getattr(c, profile).config) for m, c in classes.items() if getattr(c, profile).config},
            "method_backbones": {m: backbones[c.family] for m, c in classes.items() if c.family != "cnn"}}


def get_profile(name: str | None = None) -> Profile:
    """The profile called ``name``, else ``$SSLKIT_PROFILE``, else full with CUDA and quick without."""
    name = name or os.environ.get("SSLKIT_PROFILE") or ("full" if torch.cuda.is_available() else "quick")
    if name == "quick":
        dataset = os.environ.get("SSLKIT_DATASET") or quick_dataset()
        methods = _per_method("quick")
        # a fixed number of steps, sized for about 30 s on two idle CPU cores: the same numbers on
        # every run (a time budget would train less on a busy laptop); each method's own steps,
        # batch and settings are its class's ``quick`` (sslkit/methods/<method>.py)
        common = {"steps": 60, "batch_size": 256, "lr": 1e-3, "checkpoint_every": 100, "log_every": 5}
        return Profile("quick", dataset, QUICK_BACKBONES["cnn"], "auto", train={"*": common, **methods["train"]},
                       method_backbones=methods["method_backbones"], method_configs=methods["method_configs"],
                       # evaluation on 5k / 1k images: every notebook evaluates two to four encoders
                       eval_train=5000, eval_test=1000, plot_points=1000)
    if name == "full":
        methods = _per_method("full")
        # 5 epochs: sized so that a notebook takes about a minute on the project's H200 and about ten
        # on a student's GPU (issue 17). An estimate from public figures (ResNet-18 SimCLR on CIFAR-10,
        # ~12 s an epoch on an A100), not yet measured here: `bash benchmarks/gpu_run.sh` records
        # every notebook's time (RESULTS.md)
        common = {"epochs": 5, "batch_size": 512, "lr": 2e-3, "warmup": 0.05, "checkpoint_every": 1000}
        return Profile("full", os.environ.get("SSLKIT_DATASET") or "cifar10", FULL_BACKBONES["cnn"], "auto",
                       train={"*": common, **methods["train"]}, method_backbones=methods["method_backbones"],
                       method_configs=methods["method_configs"], eval_train=None, eval_test=None, plot_points=5000)
    raise ValueError(f"unknown profile '{name}': use quick or full.")


def scaled_budget(cfg: TrainConfig, factor: float) -> dict:
    """``cfg``'s training budget times ``factor``, as changes for :meth:`Profile.spec`: the short
    side runs of an ablation (rotation's K = 2/4/8, jigsaw's shortcut experiment)."""
    if getattr(cfg, "steps", None):
        return {"steps": max(1, round(cfg.steps * factor))}
    if cfg.minutes:
        return {"minutes": cfg.minutes * factor}
    return {"epochs": cfg.epochs * factor}
