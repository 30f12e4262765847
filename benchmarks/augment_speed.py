"""Time sslkit's batched SimCLR augmentation against kornia's with the same transforms.

The numbers behind the choice explained at the top of sslkit/augment.py. Needs kornia
(`pip install kornia`, the `bench` extra); prints ms per batch and writes
benchmarks/results/augment_speed.json.

Usage: python benchmarks/augment_speed.py [--batch 256] [--size 32] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import save
from sslkit.augment import AugmentConfig, simclr_augment


def timeit(fn, x, repeat: int) -> float:
    for _ in range(3):
        fn(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeat * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    x = torch.rand(args.batch, 3, args.size, args.size, device=args.device)
    cfg = AugmentConfig()               # SimCLR's CIFAR recipe: crop, flip, jitter 0.5 (p 0.8), grey 0.2
    s = cfg.jitter_strength
    ours = timeit(lambda t: simclr_augment(t, cfg), x, args.repeat)
    print(f"sslkit.augment.simclr_augment: {ours:.1f} ms per batch of {args.batch} ({args.size}x{args.size}, {args.device})")
    record = {"batch": args.batch, "size": args.size, "device": args.device, "sslkit_ms": ours}
    try:
        import kornia
        import kornia.augmentation as K
    except ImportError:
        print("kornia is not installed (pip install kornia): no comparison")
    else:
        pipeline = K.AugmentationSequential(
            K.RandomResizedCrop((args.size, args.size), scale=(cfg.crop_scale_min, 1.0)),
            K.RandomHorizontalFlip(p=cfg.flip_p),
            K.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=cfg.jitter_p),
            K.RandomGrayscale(p=cfg.gray_p),
        ).to(args.device)
        theirs = timeit(pipeline, x, args.repeat)
        print(f"kornia {kornia.__version__} AugmentationSequential, same transforms: {theirs:.1f} ms per batch")
        record.update({"kornia_version": kornia.__version__, "kornia_ms": theirs})
    save(f"augment_speed_{args.device}", record)


if __name__ == "__main__":
    main()
