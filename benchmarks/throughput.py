"""SimCLR training throughput: sslkit's step against lightly's standard pipeline, side by side.

Both train the same model (the kit's encoder and projection head, same seed) with the same loss
(NT-Xent, temperature 0.2), optimiser (AdamW, lr 1e-3) and batch on the same images, in one
process, for the same number of steps after a warm-up:

- sslkit: :func:`sslkit.train.train` as every run uses it: uint8 images resident on the device,
  batched augmentation with per-image parameters, one pass over both views, channels_last, bf16
  autocast where the device has it (CUDA; a CPU with AVX512-BF16 or AMX);
- lightly (``pip install -e .[bench]``): its SimCLR example as written, ``SimCLRTransform`` per
  PIL image in a ``DataLoader`` with 2 workers, one forward pass per view, ``NTXentLoss``, fp32.

The two alternate ``--repeats`` times so that a change in the machine's load hits both. Prints
images/s of both and their ratio, the CPU seconds each spent per 1000 images (all its processes
and threads: a figure that a busy machine disturbs far less than wall time) and peak memory
(CUDA: allocated; CPU: proportional resident set of the process and its workers, sampled).
Writes benchmarks/results/throughput_<device>_<backbone>.json (or ``--json PATH``).

    python benchmarks/throughput.py [--device cpu] [--backbone small_cnn] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from pathlib import Path

import torch
import torch.nn as nn

from _common import ROOT, save
from sslkit.backbones import build_encoder
from sslkit.methods.simclr import SimCLR, SimCLRConfig
from sslkit.train import TrainConfig, autocast_dtype, resolve_device, train

TEMPERATURE, LR = 0.2, 1e-3
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def load_images(n: int) -> tuple[torch.Tensor, str]:
    """``n`` CIFAR-10 training images (uint8, N x 3 x 32 x 32) from the JPEG folder when it is
    there, else random pixels of the same shape (the speed is the same; the data source is named)."""
    from sslkit.data import load_dataset

    folder = Path(os.environ.get("SSLKIT_DATA", ROOT / "data")) / "cifar10-jpeg"
    if (folder / "train").is_dir():
        x = load_dataset(str(folder)).pretrain_x
        return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n]], f"CIFAR-10 ({folder})"
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), "random 32x32 pixels (no CIFAR-10 folder)"


def build_simclr(backbone: str) -> SimCLR:
    torch.manual_seed(0)
    encoder = build_encoder(backbone, 3, [0.49, 0.48, 0.45], [0.25, 0.24, 0.26])
    return SimCLR(encoder, SimCLRConfig(temperature=TEMPERATURE))


# ------------------------------------------------------------------------ measuring

def _cpu_seconds(pids: list[int]) -> float:
    """CPU time of this process (all threads) plus that of ``pids`` (user + system, Linux /proc)."""
    total = time.process_time()
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICK    # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def _pss_bytes(pid: int | str) -> int:
    """Proportional set size: resident memory with pages shared by forked DataLoader workers
    counted once in all (resident set sizes would count them once per process)."""
    try:
        line = next(l for l in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines() if l.startswith("Pss:"))
        return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError, StopIteration):
        return 0


class PeakMemory:
    """Peak memory while the block runs: CUDA allocated bytes, or on a CPU the summed resident
    set (proportional) of this process and ``pids()``, sampled every 20 ms (None where /proc is missing)."""

    def __init__(self, device: torch.device, pids=lambda: []):
        self.device, self.pids, self.peak = device, pids, 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _pss_bytes("self") + sum(_pss_bytes(p) for p in self.pids()))

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
        self.mib = self.peak / 2 ** 20 if self.peak else None


# ------------------------------------------------------------------------ the two pipelines

def run_sslkit(images: torch.Tensor, device: torch.device, backbone: str, B: int, warmup: int, steps: int) -> dict:
    """The kit's own training loop, as ``pretrain`` calls it."""
    method = build_simclr(backbone)
    data = images.to(device)
    train(method, data, TrainConfig(steps=warmup, batch_size=B, lr=LR), device=device, progress_bar=False)
    with PeakMemory(device) as mem:
        t, c = time.perf_counter(), _cpu_seconds([])
        train(method, data, TrainConfig(steps=steps, batch_size=B, lr=LR, log_every=steps, seed=1),
              device=device, progress_bar=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - t, _cpu_seconds([]) - c
    return {"images_per_s": steps * B / wall, "cpu_s_per_1000": 1000 * cpu / (steps * B), "peak_mib": mem.mib}


class _TensorImages(torch.utils.data.Dataset):
    """uint8 tensor images as PIL images through a transform, as torchvision's CIFAR10 dataset."""

    def __init__(self, images: torch.Tensor, transform):
        self.images, self.transform = images.permute(0, 2, 3, 1).numpy(), transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), 0


def run_lightly(images: torch.Tensor, device: torch.device, backbone: str, B: int, warmup: int, steps: int) -> dict:
    """lightly's SimCLR example (docs: examples/pytorch/simclr.py) with the kit's model and the
    CIFAR-10 recipe (crop scale 0.08-1, jitter strength 0.5, grey 0.2, no blur); no Normalize
    in the transform because the kit's encoder normalises its input itself."""
    from lightly.loss import NTXentLoss
    from lightly.transforms import SimCLRTransform

    method = build_simclr(backbone).to(device).train()
    model = nn.Sequential(method.encoder, method.projector)
    criterion = NTXentLoss(temperature=TEMPERATURE)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=TrainConfig.weight_decay)
    transform = SimCLRTransform(input_size=32, cj_strength=0.5, min_scale=0.08, gaussian_blur=0.0, normalize=None)
    loader = torch.utils.data.DataLoader(_TensorImages(images, transform), batch_size=B, shuffle=True,
                                         num_workers=2, drop_last=True, pin_memory=device.type == "cuda")
    it = iter(loader)
    workers = lambda: [w.pid for w in getattr(it, "_workers", [])]   # noqa: E731  (for CPU time and memory)

    def step():
        (x0, x1), _ = next(it)
        x0, x1 = x0.to(device, non_blocking=True), x1.to(device, non_blocking=True)
        loss = criterion(model(x0), model(x1))
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss

    for _ in range(warmup):
        step()
    with PeakMemory(device, workers) as mem:
        t, c = time.perf_counter(), _cpu_seconds(workers())
        for _ in range(steps):
            loss = step()
        float(loss.detach())                            # waits for the GPU
        wall, cpu = time.perf_counter() - t, _cpu_seconds(workers()) - c
    del it
    return {"images_per_s": steps * B / wall, "cpu_s_per_1000": 1000 * cpu / (steps * B), "peak_mib": mem.mib}


# ------------------------------------------------------------------------ main

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--backbone", default="small_cnn", choices=["small_cnn", "resnet18"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=25, help="timed steps after the warm-up")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2, help="alternate the two pipelines this many times")
    p.add_argument("--also-fp32", action="store_true",
                   help="on a CPU with bf16, also time sslkit's step in fp32 (SSLKIT_CPU_BF16=0)")
    p.add_argument("--without-lightly", action="store_true",
                   help="time sslkit's step alone (where lightly is not installed: the GPU script's dry run)")
    p.add_argument("--json", help="write here instead of benchmarks/results/throughput_<device>_<backbone>.json")
    args = p.parse_args()
    if not args.without_lightly:
        try:
            import lightly  # noqa: F401
        except ImportError:
            raise SystemExit("lightly is not installed: pip install -e '.[bench]' (it is only needed for this "
                             "benchmark), or pass --without-lightly to time sslkit's step alone.")
    device = resolve_device(args.device)
    B = args.batch_size
    images, source = load_images((args.warmup + args.steps + 1) * B)
    amp = autocast_dtype(device)
    print(f"{device}, {args.backbone}, batch {B}, {args.steps} steps after {args.warmup} warm-up, "
          f"{args.repeats} repeats; sslkit in {amp or torch.float32}; data: {source}; "
          f"torch threads {torch.get_num_threads()}; load average at start {os.getloadavg()[0]:.1f}", flush=True)

    pipelines = {"sslkit": run_sslkit} if args.without_lightly else {"sslkit": run_sslkit, "lightly": run_lightly}
    if args.also_fp32 and amp is not None and device.type == "cpu":
        def run_fp32(*a):
            os.environ["SSLKIT_CPU_BF16"] = "0"
            try:
                return run_sslkit(*a)
            finally:
                os.environ["SSLKIT_CPU_BF16"] = "1"
        pipelines["sslkit_fp32"] = run_fp32
    rows: dict[str, list[dict]] = {k: [] for k in pipelines}
    for r in range(args.repeats):
        for name, fn in pipelines.items():
            row = fn(images, device, args.backbone, B, args.warmup, args.steps)
            row["load_average"] = os.getloadavg()[0]
            rows[name].append(row)
            mem = "n/a" if row["peak_mib"] is None else f"{row['peak_mib']:.0f} MiB"
            print(f"  repeat {r + 1}  {name:12s} {row['images_per_s']:8.0f} images/s   "
                  f"{row['cpu_s_per_1000']:6.2f} CPU s / 1000 images   peak {mem}   load {row['load_average']:.1f}",
                  flush=True)

    summary = {}
    for name, rs in rows.items():
        summary[name] = {"images_per_s_median": statistics.median(r["images_per_s"] for r in rs),
                         "images_per_s_best": max(r["images_per_s"] for r in rs),
                         "cpu_s_per_1000_median": statistics.median(r["cpu_s_per_1000"] for r in rs),
                         "peak_mib": max((r["peak_mib"] or 0) for r in rs) or None}
    s, l = summary["sslkit"], summary.get("lightly")
    ratio = None if l is None else {"wall_median": s["images_per_s_median"] / l["images_per_s_median"],
                                    "wall_best": s["images_per_s_best"] / l["images_per_s_best"],
                                    "cpu_work": l["cpu_s_per_1000_median"] / s["cpu_s_per_1000_median"]}
    for name, v in summary.items():
        mem = "n/a" if v["peak_mib"] is None else f"{v['peak_mib']:.0f} MiB"
        print(f"{name:12s} {v['images_per_s_median']:8.0f} images/s median ({v['images_per_s_best']:.0f} best), "
              f"{v['cpu_s_per_1000_median']:.2f} CPU s / 1000 images, peak memory {mem}")
    if ratio is None:
        print("lightly not timed (--without-lightly): no ratio")
    else:
        print(f"ratio sslkit / lightly: {ratio['wall_median']:.2f}x images/s (median), {ratio['wall_best']:.2f}x (best), "
              f"{ratio['cpu_work']:.2f}x less CPU time per image")
    save(f"throughput_{device.type}_{args.backbone}",
         {"device": str(device), "backbone": args.backbone, "batch_size": B, "steps": args.steps,
          "warmup": args.warmup, "sslkit_precision": str(amp or torch.float32), "data": source,
          "torch_threads": torch.get_num_threads(), "runs": rows, "summary": summary, "ratio": ratio}, args.json)


if __name__ == "__main__":
    main()
