"""Runs: what a training run is, built on the one loop (:mod:`sslkit.loop`), and the folders it writes.

A run is described by a :class:`RunSpec` (method and its settings, backbone, dataset, training
settings). :func:`pretrain` builds it, trains it with :func:`sslkit.loop.train` and writes into its
run folder::

    config.json      the spec
    checkpoint.pt    model, optimizer, RNG states, position in the data, history (atomic)
    history.json     one row per logged step: loss, lr, images/s, embedding spread

A finished run in the folder is loaded instead of trained again, an unfinished one resumes
where it stopped; without ``out_dir`` the folder is the cache entry keyed by the spec, so a
re-run notebook is fast and two processes asking for the same run train it once.

The loop's names (``TrainConfig``, ``train``, ``resolve_device``, ...) are importable from here too,
as they were before the loop had its own module.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

import torch

from sslkit import distributed
from sslkit.backbones import build_encoder
from sslkit.cache import atomic_write_json, file_lock, remove_stale_temp_files, run_dir_for
from sslkit.data import DATASETS, ImageData, load_dataset
from sslkit.loop import (TrainConfig, TrainingDiverged, autocast_dtype, check_fits, check_number,  # noqa: F401
                         embedding_spread, load_weights, lr_at, read_checkpoint, resolve_device, train)
from sslkit.methods import METHODS, SSLMethod


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
            check_number(f"the {method} setting '{name}'", value, whole=isinstance(default, int))


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
        check_number("n_train (the size of the training subset)", self.n_train, whole=True, low=1, optional=True)
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




def load_data(spec: RunSpec, data_root: str | Path | None = None) -> ImageData:
    data = load_dataset(spec.dataset, data_root)
    return data.subset(spec.n_train, None, seed=spec.train.seed) if spec.n_train else data


def build_method(spec: RunSpec, data: ImageData | None = None, seed: int | None = None, *,
                 image_shape: Sequence[int] | None = None, channel_mean: Sequence[float] | None = None,
                 channel_std: Sequence[float] | None = None, num_classes: int | None = None) -> SSLMethod:
    """The spec's method with freshly initialised weights (seeded: the random-init baseline
    of a run is exactly the run's own starting point). The one place a method is built: runs,
    references and the comparison all come here.

    The encoder's input shape and normalisation come from ``data``; without it (a reference rebuilt
    from its card) they are given as ``image_shape (C, H, W)``, ``channel_mean`` and ``channel_std``.
    """
    torch.manual_seed(spec.train.seed if seed is None else seed)
    if data is not None:
        image_shape, (channel_mean, channel_std), num_classes = data.image_shape, data.channel_stats(), len(data.classes)
    if image_shape is None or channel_mean is None or channel_std is None:
        raise ValueError("build_method needs the data, or the image shape and the channel mean and std.")
    C, H, _ = image_shape
    encoder = build_encoder(spec.backbone, C, channel_mean, channel_std, image_size=H)
    cfg_cls, method_cls = METHODS[spec.method]
    cfg = cfg_cls(**spec.method_config)
    if getattr(cfg, "num_classes", 0) is None:       # the supervised baseline: as many outputs as classes
        cfg.num_classes = num_classes
    return method_cls(encoder, cfg)




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
    supervised = method.uses_labels                              # labels: the train split, never the unlabeled one
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
