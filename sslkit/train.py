"""The one training loop every method uses, and the runs it writes.

A run is described by a :class:`RunSpec` (method and its settings, backbone, dataset, training
settings). :func:`pretrain` builds it, trains it and writes into its run folder::

    config.json      the spec
    checkpoint.pt    model, optimizer, RNG states, position in the data, history (atomic)
    history.json     one row per logged step: loss, lr, images/s, embedding spread

A finished run in the folder is loaded instead of trained again, an unfinished one resumes
where it stopped; without ``out_dir`` the folder is the cache entry keyed by the spec, so a
re-run notebook is fast and two processes asking for the same run train it once.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import numbers
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sslkit import distributed
from sslkit.backbones import build_encoder
from sslkit.cache import (WriteError, atomic_save, atomic_write_json, file_lock, remove_stale_temp_files,
                          run_dir_for)
from sslkit.data import DATASETS, ImageData, load_dataset
from sslkit.methods import METHODS, SSLMethod


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """How long and how to optimise. Give one of ``epochs``, ``steps`` or ``minutes``.

    ``epochs`` and ``steps`` are reproducible (the same seed gives the same weights on the CPU);
    ``minutes`` is a wall-clock budget, for "what do I get in two minutes on this machine".
    The learning rate warms up linearly over the first ``warmup`` fraction of the run, then
    follows a half cosine to zero; with a time budget the fraction is of the time.
    """

    epochs: float | None = None
    minutes: float | None = None
    steps: int | None = None
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: float = 0.05
    seed: int = 0
    checkpoint_every: int = 500      # steps; and always at the end
    log_every: int = 10              # steps between history rows

    def __post_init__(self):
        budgets = [b for b in (self.epochs, self.minutes, self.steps) if b is not None]
        if len(budgets) != 1:
            raise ValueError("give exactly one of epochs, steps or minutes for the training budget.")
        for name in ("epochs", "minutes"):
            _check_number(f"the training budget ({name})", getattr(self, name), optional=True)
        _check_number("the training budget (steps)", self.steps, whole=True, optional=True)
        if budgets[0] <= 0:
            raise ValueError("the training budget (epochs, steps or minutes) must be positive.")
        _check_number("batch size", self.batch_size, whole=True)
        if self.batch_size < 2:
            raise ValueError(f"batch size must be at least 2, got {self.batch_size}.")
        _check_number("learning rate", self.lr)
        if self.lr <= 0:
            raise ValueError(f"learning rate must be positive, got {self.lr}.")
        _check_number("weight decay", self.weight_decay, low=0.0)
        _check_number("warmup (a fraction of the run)", self.warmup, low=0.0, high=1.0)
        _check_number("seed", self.seed, whole=True, low=0)
        _check_number("checkpoint_every", self.checkpoint_every, whole=True, low=1)
        _check_number("log_every", self.log_every, whole=True, low=1)


def _check_number(name: str, value, *, whole: bool = False, low: float | None = None,
                  high: float | None = None, optional: bool = False) -> None:
    """Refuse a setting that is not a finite number (a whole one with ``whole``) in [low, high]."""
    if value is None and optional:
        return
    kind = "a whole number" if whole else "a number"
    is_number = isinstance(value, numbers.Integral if whole else numbers.Real)   # numpy's numbers too
    if isinstance(value, bool) or not is_number:
        raise ValueError(f"{name} must be {kind}, got {value!r}.")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}.")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be {bounds}, got {value}.")


def _check_setting_types(method: str, given: dict, defaults: dict, prefix: str = "") -> None:
    """Every method setting must have the type of its default, and numbers must be finite
    (a ``--config temperature=nan`` would otherwise train to a NaN loss, or fail deep inside)."""
    for key, value in given.items():
        if key not in defaults:
            continue                      # unknown keys get their own message from the dataclass
        default, name = defaults[key], f"{prefix}{key}"
        if isinstance(default, dict) and isinstance(value, dict):
            _check_setting_types(method, value, default, f"{name}.")
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"the {method} setting '{name}' must be true or false, got {value!r}.")
        elif isinstance(default, (int, float)):
            _check_number(f"the {method} setting '{name}'", value, whole=isinstance(default, int))


@dataclass
class RunSpec:
    """Everything that determines a training run (and so its cache key)."""

    method: str
    dataset: str
    backbone: str = "small_cnn"
    method_config: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1))
    n_train: int | None = None       # pre-train on a stratified subset of this size

    def __post_init__(self):
        if isinstance(self.train, dict):
            self.train = TrainConfig(**self.train)
        if self.method not in METHODS:
            raise ValueError(f"unknown method '{self.method}': use one of {', '.join(METHODS)}.")
        if self.dataset not in DATASETS and Path(self.dataset).expanduser().is_dir():
            self.dataset = str(Path(self.dataset).expanduser().resolve())   # usable from any folder
        # validate and fill in the method's defaults now, before anything is built or written
        cfg_cls, _ = METHODS[self.method]
        known = {f.name for f in fields(cfg_cls)}
        unknown = sorted(set(self.method_config) - known)
        if unknown:
            raise ValueError(f"unknown setting '{unknown[0]}' for {self.method}: use one of {', '.join(sorted(known))}.")
        try:
            defaults = asdict(cfg_cls())
        except (TypeError, ValueError):  # a config without defaults for everything: nothing to compare with
            defaults = {}
        _check_setting_types(self.method, self.method_config, defaults)
        _check_number("n_train (the size of the training subset)", self.n_train, whole=True, low=1, optional=True)
        try:
            self.method_config = asdict(cfg_cls(**self.method_config))
        except TypeError as err:   # an unknown key inside a nested setting (augment.foo=1)
            message = str(err).split("__init__() ")[-1]
            raise ValueError(f"a {self.method} setting is wrong: {message}.") from err

    def to_dict(self) -> dict:
        return asdict(self)



@dataclass
class Run:
    """A trained (or loaded) run."""

    spec: RunSpec
    method: SSLMethod
    history: list[dict]
    data: ImageData
    out_dir: Path

    @property
    def encoder(self):
        return self.method.encoder


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` is CUDA when it is there, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available: use --device cpu or auto.")
    return torch.device(device)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype the training step's forward pass runs in under autocast, or None for fp32.

    bf16 on CUDA, and on a CPU with native bf16 instructions (AVX512-BF16 or AMX): there the SimCLR
    step ran 1.7-2.1x faster than in fp32, and kNN after the same 150 steps came within half a
    point of fp32's on two seeds (benchmarks/RESULTS.md, "bf16 quality"). ``SSLKIT_CPU_BF16=0``
    keeps such a CPU in fp32. A CPU without those instructions would emulate bf16, slower than
    fp32, so it always keeps fp32. Parameters, the loss and the optimiser state stay fp32 either way.
    """
    if device.type == "cuda":
        return torch.bfloat16
    if device.type == "cpu" and os.environ.get("SSLKIT_CPU_BF16", "1") != "0":
        native = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or \
            getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        return torch.bfloat16 if native else None
    return None


def load_data(spec: RunSpec, data_root: str | Path | None = None) -> ImageData:
    data = load_dataset(spec.dataset, data_root)
    return data.subset(spec.n_train, None, seed=spec.train.seed) if spec.n_train else data


def build_method(spec: RunSpec, data: ImageData, seed: int | None = None) -> SSLMethod:
    """The spec's method with freshly initialised weights (seeded: the random-init baseline
    of a run is exactly the run's own starting point)."""
    torch.manual_seed(spec.train.seed if seed is None else seed)
    C, H, _ = data.image_shape
    mean, std = data.channel_stats()
    encoder = build_encoder(spec.backbone, C, mean, std, image_size=H)
    cfg_cls, method_cls = METHODS[spec.method]
    cfg = cfg_cls(**spec.method_config)
    if getattr(cfg, "num_classes", 0) is None:       # the supervised baseline: as many outputs as classes
        cfg.num_classes = len(data.classes)
    return method_cls(encoder, cfg)


def embedding_spread(features: torch.Tensor) -> float:
    """Std over the batch of the L2-normalised features, averaged over dimensions.

    About 1/sqrt(D) for features spread over the sphere, 0 when every image maps to the same
    point (collapse). Reported times sqrt(D), so 1 is healthy whatever the width.
    """
    f = F.normalize(features.float(), dim=1)
    return float(f.std(0).mean() * math.sqrt(f.shape[1]))


def lr_at(progress: float, cfg: TrainConfig) -> float:
    """Linear warm-up then half-cosine decay, as a function of the fraction of training done."""
    if progress < cfg.warmup:
        return cfg.lr * (progress + 1e-3) / cfg.warmup
    t = (progress - cfg.warmup) / max(1e-8, 1 - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def load_weights(method: SSLMethod, state: dict, path: Path) -> None:
    """``method.load_state_dict(state)``, or one clear error when the checkpoint at ``path`` was
    written by a version of the method with other weights or buffers."""
    try:
        method.load_state_dict(state)
    except RuntimeError as err:
        detail = str(err).splitlines()[-1].strip().rstrip(".")
        raise RuntimeError(f"the checkpoint {path} does not fit this version of sslkit's {type(method).__name__} "
                           f"({detail}): delete {path.parent} (or clear $SSLKIT_CACHE) and train again.") from None


_CHECKPOINT_KEYS = ("model", "optimizer", "rng", "order_rng", "step", "epoch", "pos", "elapsed", "perm", "history",
                    "finished")


def read_checkpoint(path: Path) -> dict:
    """``torch.load`` a run's checkpoint, or one clear error naming it when it is damaged
    (truncated by a full disk, half copied, not a checkpoint at all)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        missing = [k for k in _CHECKPOINT_KEYS if k not in ckpt]
    except OSError:
        raise                         # permission denied and the like: the command line names the file
    except Exception as err:  # noqa: BLE001 -- a damaged zip or pickle fails in many ways; the file is what matters
        reason = str(err).splitlines()[0].strip().rstrip(".") if str(err) else type(err).__name__
        raise RuntimeError(f"the checkpoint {path} is damaged and cannot be read ({reason}): delete it to train "
                           "the run again from the start, or delete the whole run folder.") from None
    if missing:
        raise RuntimeError(f"the checkpoint {path} is not one sslkit writes (it has no '{missing[0]}'): delete it "
                           "to train the run again from the start, or delete the whole run folder.")
    return ckpt


def check_fits(cfg: TrainConfig, n: int, world: int = 1) -> None:
    """Refuse a batch larger than the dataset (every step takes a full batch; with DDP a global
    batch of ``world`` times the batch size)."""
    B = cfg.batch_size
    if n < B * world:
        raise ValueError(f"batch size {B} is larger than the {n} training images: use --batch-size {n} or less."
                         if world == 1 else f"a global batch of {world} x {B} images is larger than the "
                         f"{n} training images: use --batch-size {n // world} or less.")


def train(method: SSLMethod, images: torch.Tensor, cfg: TrainConfig, *, device: str | torch.device = "auto",
          checkpoint_path: Path | None = None,
          callbacks: Sequence[Callable[[dict], None]] = (), progress_bar: bool = True,
          labels: torch.Tensor | None = None) -> list[dict]:
    """Train ``method`` on uint8 ``images (N, C, H, W)``; return the history.

    ``labels (N,)`` are handed to a method that uses them (``method(x, labels=y)``): only the
    supervised baseline does; every self-supervised method sees the images alone.

    The images are moved to the device once; each step takes a batch by index, converts it to
    float in [0, 1] there and hands it to the method, which draws its own augmented views.
    With ``checkpoint_path``, a checkpoint is written atomically every ``cfg.checkpoint_every``
    steps and at the end, and an existing unfinished checkpoint is resumed exactly: same data
    order, same random draws. A NaN or infinite loss raises :class:`TrainingDiverged` and
    leaves the last good checkpoint in place.
    """
    device = resolve_device(device)
    n = images.shape[0]
    B = cfg.batch_size
    # with DDP (torchrun), B is per process: every step takes a global batch of B * world images
    # in the same order on every process, and process r trains on its r-th share of it
    ctx = distributed.context()
    GB = B * ctx.world
    check_fits(cfg, n, ctx.world)
    steps_per_epoch = n // GB                       # drop the last partial batch: contrastive losses want full ones
    total_steps = cfg.steps or (None if cfg.epochs is None else max(1, round(cfg.epochs * steps_per_epoch)))
    budget_s = None if cfg.minutes is None else cfg.minutes * 60

    cuda = device.type == "cuda"
    amp_dtype = autocast_dtype(device)
    # channels_last: the layout cuDNN's and oneDNN's convolutions prefer (measured here on the
    # 2-core CPU: the small CNN's forward+backward 30% faster)
    method.to(device, memory_format=torch.channels_last)
    model = distributed.wrap(method, device)       # DDP and synced BatchNorm with several processes, else method
    params = [p for p in method.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **({"fused": True} if cuda else {}))
    data = images.to(device)
    targets = None if labels is None else labels.to(device)

    torch.manual_seed(cfg.seed + ctx.rank)        # augmentation draws: each process its own
    order_gen = torch.Generator().manual_seed(cfg.seed)   # data order, separate from augmentation draws
    state = {"step": 0, "epoch": 0, "pos": 0, "elapsed": 0.0, "perm": None, "history": [], "finished": False}
    last_good_step = None                          # the step of the checkpoint on disk, if any
    if checkpoint_path is not None and checkpoint_path.exists():
        ckpt = read_checkpoint(checkpoint_path)
        load_weights(method, ckpt["model"], checkpoint_path)
        opt.load_state_dict(ckpt["optimizer"])
        ranks = ckpt.get("rng_ranks") or []
        _set_rng_state(ranks[ctx.rank] if len(ranks) == ctx.world else ckpt["rng"], device)
        order_gen.set_state(ckpt["order_rng"])
        state.update({k: ckpt[k] for k in state})
        last_good_step = state["step"]
        if state["finished"]:
            return state["history"]

    def kept() -> str:
        if checkpoint_path is None:
            return "no checkpoint is written without a run folder"
        if last_good_step is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint (step {last_good_step}) is kept at {checkpoint_path}"

    def save(finished: bool = False) -> None:
        if checkpoint_path is None:
            return
        rng_ranks = distributed.gather_objects(_rng_state(device))      # every process's, for an exact resume
        if not ctx.is_main:                                               # rank 0 alone writes
            return
        try:
            atomic_save({**state, "finished": finished, "model": method.state_dict(), "optimizer": opt.state_dict(),
                         "rng": rng_ranks[0], "order_rng": order_gen.get_state(),
                         **({"rng_ranks": rng_ranks} if ctx.world > 1 else {})},
                        checkpoint_path)
        except WriteError as err:     # say what is left, so the user knows a re-run resumes from there
            raise WriteError(checkpoint_path, err.cause, kept=f"; {kept()}") from None

    def progress() -> float:
        if budget_s is not None:
            return min(1.0, state["elapsed"] / budget_s)
        return state["step"] / total_steps

    bar = tqdm(total=total_steps if budget_s is None else round(budget_s), unit="step" if budget_s is None else "s",
               initial=state["step"] if budget_s is None else round(state["elapsed"]),
               disable=not progress_bar or not ctx.is_main, dynamic_ncols=True, desc=type(method).__name__)
    method.train()
    loss_sum = torch.zeros((), device=device)
    window_steps, window_start = 0, time.perf_counter()
    t_prev = time.perf_counter()
    try:
        while progress() < 1.0:
            if state["perm"] is None or state["pos"] + GB > n:
                state["perm"] = torch.randperm(n, generator=order_gen)
                if state["pos"] + GB > n:
                    state["epoch"] += 1
                state["pos"] = 0
            start = state["pos"] + ctx.rank * B
            idx = state["perm"][start: start + B].to(device)
            state["pos"] += GB
            x = data[idx].float().div_(255).contiguous(memory_format=torch.channels_last)
            lr = lr_at(progress(), cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                out = model(x) if targets is None else model(x, labels=targets[idx])
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            method.on_step_end(progress())
            loss_sum += out.loss.detach().float()
            state["step"] += 1
            window_steps += 1
            now = time.perf_counter()
            state["elapsed"] += now - t_prev
            t_prev = now
            if budget_s is not None:          # all processes stop after the same step
                state["elapsed"] = distributed.broadcast_float(state["elapsed"], device)

            log_now = state["step"] % cfg.log_every == 0 or progress() >= 1.0
            ckpt_now = state["step"] % cfg.checkpoint_every == 0
            if log_now or ckpt_now:
                mean_loss = float(distributed.mean_over_processes(loss_sum)) / window_steps
                if not math.isfinite(mean_loss):
                    raise TrainingDiverged(
                        f"the loss became {mean_loss} by step {state['step']}; {kept()}: "
                        f"lower the learning rate (now {cfg.lr}) and train again in a new run folder.")
                dt = now - window_start
                row = {"step": state["step"], "epoch": state["epoch"] + state["pos"] / n,
                       "loss": mean_loss, "lr": lr, "images_per_s": window_steps * GB / max(dt, 1e-9),
                       "embedding_spread": embedding_spread(out.features) if out.features is not None else None,
                       "elapsed_s": state["elapsed"]}
                state["history"].append(row)
                for cb in callbacks if ctx.is_main else ():
                    cb(row)
                bar.set_postfix(loss=f"{mean_loss:.3f}", img_s=f"{row['images_per_s']:.0f}")
                loss_sum.zero_()
                window_steps, window_start = 0, time.perf_counter()
                t_prev = window_start  # the time spent logging is not training time
            if ckpt_now:
                save()
                last_good_step = state["step"]
            bar.update(1 if budget_s is None else round(state["elapsed"]) - bar.n)
    finally:
        bar.close()
    for cb in callbacks if ctx.is_main else ():
        if hasattr(cb, "close"):      # a live plot draws its last rows
            cb.close()
    save(finished=True)
    return state["history"]


def _check_same_spec(out_dir: Path, spec: RunSpec) -> None:
    cfg_file = out_dir / "config.json"
    if cfg_file.exists():
        saved = json.loads(cfg_file.read_text())
        if saved != json.loads(json.dumps(spec.to_dict())):
            raise ValueError(f"{out_dir} holds a run with a different configuration: choose another --out "
                             "or delete that folder.")


def _dry_run(method: SSLMethod, images: torch.Tensor, labels: torch.Tensor | None, device: torch.device) -> None:
    """One forward pass of a copy of ``method`` on a few images, so that a method, backbone and
    image shape that do not fit together fail now, before the run folder is made, not at step 1."""
    x = images[: min(len(images), 4)].to(device).float().div_(255).contiguous(memory_format=torch.channels_last)
    trial = copy.deepcopy(method).to(device, memory_format=torch.channels_last).train()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            trial(x) if labels is None else trial(x, labels=labels[: len(x)].to(device))
    except ValueError:
        raise                                           # the methods' own messages are already clear
    except RuntimeError as err:                         # a shape mismatch deep in torch
        detail = str(err).splitlines()[0].strip().rstrip(".")
        C, H, W = images.shape[1:]
        square = "" if H == W else " (they are not square: most methods want square images)"
        raise ValueError(f"{type(method).__name__} with this backbone cannot train on {C}x{H}x{W} images"
                         f"{square}: {detail}.") from None
    finally:
        del trial


def checkpoint_bytes(method: SSLMethod, n_images: int) -> int:
    """About the size of one checkpoint: weights and buffers, AdamW's two moments of every trained
    weight, the data order, and a margin for the history and the file format."""
    tensors = {t.data_ptr(): t.numel() * t.element_size() for t in method.state_dict().values()}
    trained = sum(p.numel() * p.element_size() for p in method.parameters() if p.requires_grad)
    return sum(tensors.values()) + 2 * trained + 8 * n_images + 256 * 1024


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def check_writable(out_dir: Path, need_bytes: int) -> None:
    """Refuse, before anything is written, a run folder that cannot be made or written into, or
    one on a disk without room for a checkpoint."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"the run folder {out_dir} is a file, not a folder: choose another --out.")
    base = _nearest_existing(out_dir.absolute())
    if not base.is_dir():
        raise ValueError(f"cannot make the run folder {out_dir}: {base} is a file, not a folder; choose another --out.")
    if not os.access(base, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(base).f_flag & os.ST_RDONLY)
        reason = "is on a read-only file system" if read_only else "is not writable (permission denied)"
        raise ValueError(f"cannot write the run folder {out_dir}: {base} {reason}; choose another --out.")
    free = shutil.disk_usage(base).free
    if free < need_bytes:
        raise ValueError(f"the disk holding {base} has {free / 1e6:.1f} MB free but a checkpoint of this run needs "
                         f"about {need_bytes / 1e6:.1f} MB: free some space or choose another --out.")


def pretrain(spec: RunSpec, out_dir: str | Path | None = None, *, data_root: str | Path | None = None,
             device: str = "auto", callbacks: Sequence[Callable[[dict], None]] = (),
             progress_bar: bool = True, data: ImageData | None = None) -> Run:
    """Train the run described by ``spec`` (or load it when it is finished already).

    Args:
        spec: the run.
        out_dir: its folder; None uses the cache folder keyed by the spec.
        data_root: where the dataset is (see :func:`sslkit.data.default_root`).
        device: ``auto``, ``cpu`` or ``cuda``.
        callbacks: called with every history row (live plots).
        data: the already loaded dataset, to skip loading it again.
    """
    data = data if data is not None else load_data(spec, data_root)
    device = resolve_device(device)
    # everything that can be checked is checked before a file is written: a failure before the
    # first step leaves no trace on disk
    method = build_method(spec, data)
    supervised = getattr(method, "uses_labels", False)          # labels: the train split, never the unlabeled one
    images, labels = (data.train_x, data.train_y) if supervised else (data.pretrain_x, None)
    check_fits(spec.train, len(images), distributed.context().world)
    _dry_run(method, images, labels, device)
    out_dir = Path(out_dir) if out_dir is not None else run_dir_for(spec.to_dict())
    _check_same_spec(out_dir, spec)
    check_writable(out_dir, checkpoint_bytes(method, len(images)))
    main = distributed.context().is_main               # with DDP, rank 0 alone locks, writes and cleans up
    made = _nearest_existing(out_dir.absolute())        # what exists now; anything below it is ours to remove
    ours = [f for f in (out_dir / "config.json", out_dir / ".lock") if not f.exists()]
    locked = False                                      # a process waiting for the lock undoes nothing
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(out_dir / ".lock") if main else contextlib.nullcontext():   # a second process waits, then loads the result
            locked = main
            if main:
                remove_stale_temp_files(out_dir)        # left by a process killed while writing
                atomic_write_json(spec.to_dict(), out_dir / "config.json")
            history = train(method, images, spec.train, device=device, checkpoint_path=out_dir / "checkpoint.pt",
                            callbacks=callbacks, progress_bar=progress_bar, labels=labels)
            if main:
                atomic_write_json(history, out_dir / "history.json")
    except BaseException:
        if main and (locked or not out_dir.is_dir()) and not (out_dir / "checkpoint.pt").exists():
            _remove_what_was_made(made, out_dir.absolute(), ours)   # nothing worth keeping: the disk as it was
        raise
    method.eval()
    return Run(spec, method, history, data, out_dir)


def _remove_what_was_made(existing: Path, out_dir: Path, files: list[Path]) -> None:
    """Undo a run folder's creation: the files this call wrote and the folders it made."""
    for f in files:
        f.unlink(missing_ok=True)
    if existing != out_dir:
        top = out_dir
        while top.parent != existing:
            top = top.parent
        shutil.rmtree(top, ignore_errors=True)


def load_run(run_dir: str | Path, *, data_root: str | Path | None = None, device: str = "cpu",
             data: ImageData | None = None) -> Run:
    """Load a finished run folder (its method with trained weights, history and dataset)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists() or not (run_dir / "checkpoint.pt").exists():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.json and checkpoint.pt): "
                                "give the --out folder of a `pretrain` run.")
    spec = RunSpec(**json.loads((run_dir / "config.json").read_text()))
    data = data if data is not None else load_data(spec, data_root)
    method = build_method(spec, data)
    ckpt = read_checkpoint(run_dir / "checkpoint.pt")
    if not ckpt["finished"]:
        raise RuntimeError(f"the run in {run_dir} has not finished (step {ckpt['step']}): "
                           "run the same `pretrain` command again to resume it.")
    load_weights(method, ckpt["model"], run_dir / "checkpoint.pt")
    method.to(resolve_device(device)).eval()
    return Run(spec, method, ckpt["history"], data, run_dir)
