"""The one training loop every method uses: the training settings, the loop with exact resume,
and what it needs (device, precision, learning-rate schedule, checkpoints).

It knows nothing of methods, datasets or run folders: it trains whatever :class:`torch.nn.Module`
returns a loss, on uint8 images. :mod:`sslkit.train` builds runs on it (RunSpec, the run folder,
the cache); :func:`sslkit.evaluate.fine_tune` reuses its settings and schedule.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sslkit import distributed
from sslkit.cache import WriteError, atomic_save

if TYPE_CHECKING:                      # the loop trains any method; it never imports them
    from sslkit.methods.base import SSLMethod


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
            check_number(f"the training budget ({name})", getattr(self, name), optional=True)
        check_number("the training budget (steps)", self.steps, whole=True, optional=True)
        if budgets[0] <= 0:
            raise ValueError("the training budget (epochs, steps or minutes) must be positive.")
        check_number("batch size", self.batch_size, whole=True)
        if self.batch_size < 2:
            raise ValueError(f"batch size must be at least 2, got {self.batch_size}.")
        check_number("learning rate", self.lr)
        if self.lr <= 0:
            raise ValueError(f"learning rate must be positive, got {self.lr}.")
        check_number("weight decay", self.weight_decay, low=0.0)
        check_number("warmup (a fraction of the run)", self.warmup, low=0.0, high=1.0)
        check_number("seed", self.seed, whole=True, low=0)
        check_number("checkpoint_every", self.checkpoint_every, whole=True, low=1)
        check_number("log_every", self.log_every, whole=True, low=1)


def check_number(name: str, value, *, whole: bool = False, low: float | None = None,
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
                       "elapsed_s": state["elapsed"], **{k: float(v) for k, v in out.logs.items()}}
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
