"""Reference runs: every method trained much longer by the kit's own code, shipped small.

A two-minute CPU run shows a method's mechanics, rarely its result. So each method has a
*reference*: the same recipe (the quick profile's backbone, CIFAR-10) trained for many epochs by
:func:`sslkit.train.pretrain`, evaluated on the full test split beside the random-init encoder
of the same seed, and shipped in ``sslkit/references/`` as two files:

    NAME.safetensors   the weights: the encoder always, a head where a notebook shows it at work
    NAME.json          the card: spec, command, date, machine and device, training time, a
                       summary of the history, the evaluation, sslkit's version, the weights' sha256

Weights are safetensors (plain tensors, loaded without unpickling anything). :func:`load_reference`
checks the hash and gives one sentence naming the rebuild command when a reference is missing,
damaged or no longer fits the code. ``python -m sslkit reference build|list|evaluate`` is the
command line. Building resumes: the run lives in an ordinary run folder until it is finished.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sslkit.cache import atomic_write_bytes, atomic_write_json, config_key
from sslkit.data import ImageData
from sslkit.evaluate import compare_fine_tune, compare_with_random_init, extract_features, knn_accuracy
from sslkit.methods import MAE, METHODS, SSLMethod
from sslkit.profiles import QUICK_BACKBONES
from sslkit.train import RunSpec, TrainConfig, build_method, load_data, pretrain, resolve_device

REFERENCE_DIR = Path(__file__).parent / "references"
DATASET = "cifar10"
# The subset the shipped-reference test re-measures kNN on (class-balanced, seed 0): small enough
# for CI, large enough that one point is well outside its noise for a fixed encoder.
CHECK_SUBSET = {"n_train": 5000, "n_test": 1000, "seed": 0}
# MAE is judged by fine-tuning (its paper's protocol): the same fixed budget for the reference and
# for the random-init ViT. 500 steps of 128 (1.3 epochs) keeps `reference evaluate mae` to a few
# minutes on a laptop CPU.
FINETUNE = {"steps": 500, "batch_size": 128, "lr": 1e-3}


@dataclass(frozen=True)
class Recipe:
    """How one reference is trained (made from the method class's ``reference`` and the quick
    profile's backbone for its family). ``train`` holds TrainConfig fields except the budget, which
    is ``epochs`` (the default on any device) unless the build is given another one."""

    method: str
    backbone: str = "small_cnn"
    method_config: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    epochs: float = 20
    # state-dict prefixes shipped besides the encoder: the heads a notebook shows at work
    heads: tuple[str, ...] = ()
    about: str = ""

    def spec(self, epochs: float | None = None, minutes: float | None = None, method_config: dict | None = None,
             seed: int = 0) -> RunSpec:
        budget = {"minutes": minutes} if minutes is not None else {"epochs": epochs or self.epochs}
        return RunSpec(method=self.method, dataset=DATASET, backbone=self.backbone,
                       method_config={**self.method_config, **(method_config or {})},
                       train=TrainConfig(**self.train, **budget, seed=seed))


# checkpoint_every: a killed build loses at most a few minutes. Each method's own settings are its
# class's ``reference`` (sslkit/methods/<method>.py; RESULTS.md, "Reference runs", has the measurements).
_COMMON = {"checkpoint_every": 500, "log_every": 50}
# every method that declares a reference, in the registry's (the course's) order
RECIPES: dict[str, Recipe] = {
    name: Recipe(name, QUICK_BACKBONES[cls.family], dict(cls.reference.config), {**_COMMON, **cls.reference.train},
                 cls.reference.epochs, cls.reference.heads, cls.reference.about)
    for name, (_, cls) in METHODS.items() if cls.reference is not None}


class ReferenceError(RuntimeError):
    """A reference is missing, damaged, or no longer fits the code."""


def _rebuild(name: str) -> str:
    return f"python -m sslkit reference build {name}"


def reference_names() -> list[str]:
    """Every method that has a recipe, shipped or not."""
    return list(RECIPES)


def card_path(name: str, directory: Path | None = None) -> Path:
    return Path(directory or REFERENCE_DIR) / f"{name}.json"


def read_card(name: str, directory: Path | None = None) -> dict:
    path = card_path(name, directory)
    if name not in RECIPES and not path.exists():
        raise ValueError(f"unknown reference '{name}': use one of {', '.join(RECIPES)}.")
    if not path.exists():
        raise ReferenceError(f"there is no reference for '{name}' in {path.parent}: build it with `{_rebuild(name)}`.")
    return json.loads(path.read_text())


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Reference:
    """A loaded reference: its card, its spec and the method with the shipped weights."""

    name: str
    card: dict
    spec: RunSpec
    method: SSLMethod

    @property
    def encoder(self):
        return self.method.encoder

    def random_init_encoder(self):
        """The same encoder at the initialisation the reference started from (same seed)."""
        return _build(self.spec, self.card).encoder.to(next(self.method.parameters()).device).eval()

    def summary(self) -> str:
        """One line: method, budget, and the headline figures against random init."""
        return _summary_line(self.name, self.card)


def _build(spec: RunSpec, card: dict) -> SSLMethod:
    """The spec's method at its seeded initialisation, without the dataset: the image shape, the
    input normalisation and the classes come from the card (the weights hold them too)."""
    return build_method(spec, image_shape=card["image_shape"], channel_mean=card["channel_mean"],
                        channel_std=card["channel_std"], num_classes=len(card["classes"]))


def _shipped(name: str, state: dict) -> dict[str, torch.Tensor]:
    """The tensors shipped for a reference: the encoder's, plus the recipe's heads."""
    keep = ("encoder.",) + RECIPES[name].heads if name in RECIPES else ("encoder.",)
    return {k: v for k, v in state.items() if k.startswith(keep)}


# The heads ship smaller than the encoder, which stays fp32 (its kNN is checked): they are shown at
# work in a notebook, never trained further nor measured on the card. Matrices of 64k entries or more
# go as int8 with one fp16 scale per row (symmetric, the row's largest magnitude / 127), the rest as
# fp16. Per-row int8 halves the two largest heads again (jigsaw's classifier, Barlow Twins' projector),
# which keeps the shipped weights under the 30 MB the repository allows with DINO's two ViTs; what it
# changes in the notebooks' figures is measured in benchmarks/RESULTS.md, "Shipping the heads in int8".
_ROW_SCALE = ".int8_row_scale"
_INT8_MIN_NUMEL = 65536


def _pack_heads(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A reference's tensors as shipped: the encoder's as they are, the heads' in int8 or fp16."""
    out = {}
    for k, v in tensors.items():
        if k.startswith("encoder.") or not v.is_floating_point():
            out[k] = v
        elif v.dim() == 2 and v.numel() >= _INT8_MIN_NUMEL:
            scale = (v.float().abs().amax(dim=1, keepdim=True) / 127).clamp_min(1e-12).half()
            out[k] = (v.float() / scale.float()).round().clamp(-127, 127).to(torch.int8)
            out[k + _ROW_SCALE] = scale
        else:
            out[k] = v.half()
    return out


def _unpack_heads(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`_pack_heads`, as floats (int8 rows times their scales)."""
    out = {k: v for k, v in tensors.items() if not k.endswith(_ROW_SCALE)}
    for k, scale in tensors.items():
        if k.endswith(_ROW_SCALE):
            name = k[:-len(_ROW_SCALE)]
            out[name] = out[name].float() * scale.float()
    return out


def load_reference(name: str, device: str | torch.device = "cpu", directory: Path | None = None) -> Reference:
    """The shipped reference ``name`` (a method name), its weights checked against the card's sha256.

    Raises:
        ValueError: ``name`` is not a method with a reference recipe.
        ReferenceError: the reference is missing, its weights do not match the card, or they no
            longer fit the code; the message names the command that rebuilds it.
    """
    from safetensors.torch import load_file

    card = read_card(name, directory)
    weights = card_path(name, directory).with_suffix(".safetensors")
    if not weights.exists():
        raise ReferenceError(f"the weights of the '{name}' reference ({weights}) are missing: "
                             f"rebuild them with `{_rebuild(name)}`.")
    if sha256(weights) != card["weights"]["sha256"]:
        raise ReferenceError(f"{weights} does not match the sha256 on its card (damaged or replaced): "
                             f"rebuild it with `{_rebuild(name)}` or restore the shipped file.")
    try:
        spec = RunSpec(**card["spec"])
        method = _build(spec, card)
    except (TypeError, ValueError) as err:
        raise ReferenceError(f"the '{name}' reference was built by another version of sslkit ({err}): "
                             f"rebuild it with `{_rebuild(name)}`.") from None
    tensors = _unpack_heads(load_file(str(weights)))
    own = method.state_dict()
    expected = _shipped(name, own)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = sorted(k for k in set(tensors) & set(own) if tensors[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        what = (f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}" if unexpected
                else f"{wrong[0]} has shape {tuple(tensors[wrong[0]].shape)}, not {tuple(own[wrong[0]].shape)}")
        raise ReferenceError(f"the '{name}' reference no longer fits this version of sslkit's "
                             f"{type(method).__name__} ({what}): rebuild it with `{_rebuild(name)}`.")
    method.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=False)
    method.to(resolve_device(device)).eval()
    return Reference(name, card, spec, method)


# ------------------------------------------------------------------------------- evaluation

def evaluate_reference_encoders(trained, random_init, data: ImageData, method: str,
                                device: torch.device, mae: SSLMethod | None = None,
                                finetune_steps: int | None = None) -> dict:
    """The card's evaluation, also what ``reference evaluate`` prints: kNN, linear and 10-shot on
    the given splits for both encoders, fine-tuning at :data:`FINETUNE` for the methods judged by it
    (MAE), and MAE's masked-patch MSE against each patch's mean. Features in fp32 (no autocast), so a GPU-built card and a
    CPU re-evaluation measure the same thing."""
    with _exact_float32():
        out = {"results": compare_with_random_init(trained, random_init, data, device=device, autocast=False)}
        if METHODS[method][1].judged_by_finetuning:
            budget = {**FINETUNE, **({"steps": finetune_steps} if finetune_steps else {})}
            out["finetune"] = compare_fine_tune(trained, random_init, data, device=device, **budget)
        if isinstance(mae, MAE):                # a reconstruction's error, against each patch's mean
            out["masked_mse"] = masked_patch_mse(mae, data.test_x)
    return out


class _exact_float32:
    """No TF32 on a GPU for the duration (the default for convolutions), so fp32 means fp32."""

    def __enter__(self):
        self.saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False

    def __exit__(self, *exc):
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = self.saved


@torch.no_grad()
def masked_patch_mse(mae: SSLMethod, images: torch.Tensor, batch_size: int = 256, seed: int = 0) -> dict:
    """MAE's loss on ``images`` (the masked patches, per-patch normalised targets), eval mode, and
    the same error for predicting every masked patch by its own mean (about 1 with normalised
    targets): the baseline a reconstruction has to beat."""
    device = next(mae.parameters()).device
    was_training = mae.training
    mae.eval()
    total = base = n = 0.0
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for i in range(0, len(images), batch_size):
                x = images[i: i + batch_size].to(device).float().div_(255)
                out = mae(x)
                mask = out.extras["mask"]
                target = mae.targets(x)
                w = mask.sum()
                total += float(out.loss) * float(w)
                # each patch predicted by its own mean: with normalised targets, the mean of target^2
                base += float((((target - target.mean(-1, keepdim=True)) ** 2).mean(-1) * mask).sum())
                n += float(w)
    finally:
        mae.train(was_training)
    return {"trained": total / n, "patch_mean": base / n}


def check_knn(encoder, data: ImageData) -> float:
    """kNN accuracy on :data:`CHECK_SUBSET` of ``data`` in fp32: the figure the test re-measures."""
    sub = data.subset(CHECK_SUBSET["n_train"], CHECK_SUBSET["n_test"], seed=CHECK_SUBSET["seed"])
    with _exact_float32():
        train_f = extract_features(encoder, sub.train_x, autocast=False)
        test_f = extract_features(encoder, sub.test_x, autocast=False)
    return knn_accuracy(train_f, sub.train_y, test_f, sub.test_y)


# ------------------------------------------------------------------------------- building

def _machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__}


def _history_summary(history: list[dict], points: int = 60) -> dict:
    if not history:
        return {}
    stride = max(1, len(history) // points)
    rows = history[::stride] + ([history[-1]] if (len(history) - 1) % stride else [])
    ips = sorted(r["images_per_s"] for r in history)
    return {"steps": history[-1]["step"], "epochs": round(history[-1]["epoch"], 2),
            "seconds": round(history[-1]["elapsed_s"], 1), "images_per_s_median": round(ips[len(ips) // 2]),
            "loss_first": history[0]["loss"], "loss_last": history[-1]["loss"],
            "embedding_spread_last": history[-1].get("embedding_spread"),
            "curve": [{"step": r["step"], "loss": round(r["loss"], 5),
                       "embedding_spread": None if r.get("embedding_spread") is None else round(r["embedding_spread"], 4)}
                      for r in rows]}


def build_reference(name: str, *, device: str = "auto", epochs: float | None = None, minutes: float | None = None,
                    method_config: dict | None = None, out_name: str | None = None,
                    out_dir: str | Path | None = None, work_dir: str | Path = "runs/reference",
                    data_root: str | Path | None = None, command: str | None = None,
                    eval_subset: tuple[int, int] | None = None, progress_bar: bool = True) -> dict:
    """Train (or resume) the reference ``name``, evaluate it and write its weights and card.

    The run lives in ``work_dir/<name>-<hash of its spec>`` while it trains, so the same command
    resumes a killed build; weights and card are written atomically at the end, card last.
    ``method_config`` and ``out_name`` build a variant under another name (the jigsaw variants);
    ``eval_subset`` (train, test) evaluates on a class-balanced subset instead of the full splits
    (dry runs). Returns the card.
    """
    from safetensors.torch import save

    if name not in RECIPES:
        raise ValueError(f"unknown reference '{name}': use one of {', '.join(RECIPES)}.")
    recipe = RECIPES[name]
    dev = resolve_device(device)
    spec = recipe.spec(epochs, minutes, method_config)
    out_name = out_name or name
    out_dir = Path(out_dir or REFERENCE_DIR)
    data = load_data(spec, data_root)
    if data.name != DATASET:
        raise ValueError(f"a reference trains on {DATASET}, but '{data.name}' was loaded: point --data-root at CIFAR-10.")
    run_dir = Path(work_dir) / f"{out_name}-{config_key(spec.to_dict())}"
    t0 = time.time()
    run = pretrain(spec, run_dir, device=str(dev), data=data, progress_bar=progress_bar)
    train_wall = time.time() - t0
    trained = run.encoder.eval()
    random_init = build_method(spec, data).encoder.to(dev).eval()    # the run's own seeded start
    t1 = time.time()
    eval_data = data.subset(*eval_subset, seed=0) if eval_subset else data
    evaluation = evaluate_reference_encoders(trained, random_init, eval_data, spec.method, dev, mae=run.method,
                                             finetune_steps=20 if eval_subset else None)   # a dry run: a few steps
    eval_s = time.time() - t1

    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{out_name}.safetensors"
    tensors = _pack_heads({k: v.detach().to("cpu").contiguous()
                           for k, v in _shipped(name, run.method.state_dict()).items()})
    atomic_write_bytes(save(tensors, metadata={"reference": out_name, "method": spec.method}), weights)
    mean, std = data.channel_stats()
    card = {
        "name": out_name, "method": spec.method, "about": recipe.about, "dataset": DATASET,
        "image_shape": list(data.image_shape), "channel_mean": mean, "channel_std": std, "classes": data.classes,
        "spec": spec.to_dict(),
        "command": command or f"python -m sslkit reference build {name}",
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "training": {**_history_summary(run.history), "wall_seconds_this_call": round(train_wall, 1)},
        "evaluation": {"split": f"{'full' if not eval_subset else 'subset of'} {DATASET} train "
                                f"({len(eval_data.train_x)}) / test ({len(eval_data.test_x)})",
                       "n_train": len(eval_data.train_x), "n_test": len(eval_data.test_x),
                       "protocols": "frozen encoder, eval mode, fp32 features: kNN (k=200, cosine, T=0.1), "
                                    "linear (logistic regression), 10-shot (5 draws)"
                                    + (f"; fine-tuning {dict(FINETUNE, steps=20) if eval_subset else FINETUNE}"
                                       if METHODS[spec.method][1].judged_by_finetuning else ""),
                       "seconds": round(eval_s, 1), **evaluation},
        "check": {**CHECK_SUBSET, "knn": check_knn(trained, data)},
        "sslkit": _version(),
        "weights": {"file": weights.name, "sha256": sha256(weights), "bytes": weights.stat().st_size,
                    "tensors": len(tensors)},
    }
    atomic_write_json(card, card_path(out_name, out_dir))
    return card


def _version() -> str:
    from sslkit import __version__
    return __version__


# ------------------------------------------------------------------------------- listing

def _summary_line(name: str, card: dict) -> str:
    r = card["evaluation"]["results"]
    t, b = r["trained"], r["random_init"]
    tr = card["training"]
    parts = [f"{name:<11}", f"{card['spec']['backbone']:<9}", f"{tr.get('epochs', 0):>6.1f} ep",
             f"{tr.get('seconds', 0) / 60:>5.1f} min on {card['device'][:20]:<20}",
             f"kNN {100 * t['knn']:5.1f} ({100 * (t['knn'] - b['knn']):+5.1f})",
             f"linear {100 * t['linear']:5.1f} ({100 * (t['linear'] - b['linear']):+5.1f})",
             f"10-shot {100 * t['fewshot10']:5.1f} ({100 * (t['fewshot10'] - b['fewshot10']):+5.1f})"]
    if "finetune" in card["evaluation"]:
        f = card["evaluation"]["finetune"]
        parts.append(f"fine-tuned {100 * f['trained']:5.1f} ({100 * (f['trained'] - f['random_init']):+5.1f})")
    if "masked_mse" in card["evaluation"]:
        m = card["evaluation"]["masked_mse"]
        parts.append(f"masked MSE {m['trained']:.3f} (patch mean {m['patch_mean']:.3f})")
    return "  ".join(parts)


def list_references(directory: Path | None = None) -> list[str]:
    """One line per recipe: the shipped reference's budget and figures (gain over random init in
    brackets), or how to build it."""
    lines = []
    directory = Path(directory or REFERENCE_DIR)
    variants = sorted(p.stem for p in directory.glob("*.json") if p.stem not in RECIPES)
    for name in list(RECIPES) + variants:
        try:
            lines.append(_summary_line(name, read_card(name, directory)))
        except ReferenceError:
            lines.append(f"{name:<11}  not built: `{_rebuild(name)}`")
    return lines


def reference_for(name: str, data: ImageData, device: str | torch.device = "cpu") -> Reference | None:
    """The shipped reference ``name`` if it can be shown beside a run on ``data``, else None after
    printing one sentence saying why (not built, damaged, or trained on other images): what a
    notebook calls, so that it runs on every dataset and says what it leaves out."""
    try:
        loaded = load_reference(name, device=device)
    except ReferenceError as err:
        print(f"no reference shown: {err}")
        return None
    if data.name != loaded.card["dataset"] or list(data.image_shape) != loaded.card["image_shape"]:
        print(f"no reference shown: the {name} reference was trained on {loaded.card['dataset']} "
              f"{tuple(loaded.card['image_shape'])}, this notebook runs on {data.name} {tuple(data.image_shape)} "
              f"(put CIFAR-10 in the data root to see it).")
        return None
    return loaded
