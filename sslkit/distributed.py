"""Training on several processes (GPUs, or CPU processes) with PyTorch's DistributedDataParallel.

``torchrun --nproc_per_node=N -m sslkit pretrain METHOD ...`` starts N processes; each runs the
same training loop on its own share of every global batch, and DDP averages the gradients, so
the N processes take the steps one process would take with the global batch (N times the
``--batch-size``, which is per process). What a method needs beyond that:

- **Batch statistics.** BatchNorm normalises over the images a process sees; with SyncBatchNorm
  the statistics are over the global batch, as in one process (SimCLR's "global BN", BYOL's
  synced BN). MoCo keeps per-process BatchNorm on purpose (its shuffled BN, see its config).
- **Negatives.** SimCLR's NT-Xent contrasts every image with the other images of the batch: the
  embeddings of all processes are gathered with their gradients (:func:`all_gather_with_grad`),
  so each process's loss is over the global batch. MoCo's keys are gathered (no gradient) before
  they join the queue, so every process keeps the same queue.
- A method whose loss is a mean over images of a term that involves that image alone (BYOL's
  two views, MAE's masked patches, rotation's and jigsaw's labels, the supervised baseline's)
  needs no gather: the mean of the per-process losses is the global loss and DDP's averaged
  gradient is exactly the global gradient. Only BatchNorm couples images, and it is synced. A
  loss over the batch's statistics (a cross-correlation, a covariance) gathers its embeddings
  as SimCLR does.

Nothing here imports from the rest of sslkit: losses, methods and the training loop import it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

# torch 2.14 deprecates the autograd-aware collectives of torch.distributed.nn in favour of a
# private module (torch.distributed._functional_collectives); the public ones still work and are
# tested (tests/test_distributed.py). One filter for their two messages, set once here rather than
# around every call (CPUSyncBatchNorm's all_reduce runs in every layer of every training step).
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.(all_gather|all_reduce) is deprecated",
                        category=FutureWarning)


@dataclass(frozen=True)
class Context:
    """This process's place: ``rank`` in ``[0, world)``; rank 0 alone writes files and logs."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context() -> Context:
    """The current process group's rank and size, or a single process."""
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size())
    return Context()


def setup(device: torch.device) -> Context:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE``,
    ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): NCCL on GPUs, each process on
    its own GPU (``LOCAL_RANK``), gloo on CPUs. A single process without torchrun returns at once."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return context()
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return context()


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------------ gathers

def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Every process's ``x (B, ...)`` stacked in rank order: ``(world * B, ...)``, with gradients
    flowing back to each process's own rows (torch.distributed.nn's autograd-aware all_gather).
    A single process gets ``x`` back."""
    if context().world == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()))


@torch.no_grad()
def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """As :func:`all_gather_with_grad` without gradients (MoCo's keys for the queue)."""
    world = context().world
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def mean_over_processes(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over the processes (the logged loss); ``x`` itself in one process."""
    world = context().world
    if world == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / world


def broadcast_float(value: float, device: torch.device) -> float:
    """Rank 0's ``value`` on every process (the elapsed time of a wall-clock budget, so that all
    processes stop after the same step)."""
    if context().world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return float(t)


def gather_objects(obj) -> list:
    """Every process's picklable ``obj`` in rank order (RNG states for a checkpoint)."""
    world = context().world
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


# ------------------------------------------------------------------------ batch statistics

class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are over every process's batch, for CPU processes.

    Written here because torch's ``nn.SyncBatchNorm`` runs on GPUs only (it raises for CPU
    tensors); on GPUs :func:`sync_batchnorm` uses torch's. The per-channel sums and sums of
    squares are all-reduced with autograd (torch.distributed.nn), so the gradient is the one a
    single process would compute over the global batch. Any input of 2 or more dimensions.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and context().world > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, x.dim()))                       # all but the channel
        xf = x.float()
        count = torch.tensor([xf.numel() / xf.shape[1]], device=x.device)
        stats = all_reduce(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count]))   # (2C + 1,) over processes
        C, n = xf.shape[1], stats[-1]
        mean, var = stats[:C] / n, (stats[C:2 * C] / n - (stats[:C] / n) ** 2).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
                self.running_var.lerp_((var.detach() * n / (n - 1)).to(self.running_var.dtype), m)
                self.num_batches_tracked.add_(1)
        shape = [1, C] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm in ``module`` by one synced over the processes, keeping its weights
    and running statistics (same state-dict keys, so checkpoints stay interchangeable)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, CPUSyncBatchNorm):
            new = CPUSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats).to(device)
            new.load_state_dict(child.state_dict())
            if child.affine:                                 # the same Parameter objects
                new.weight, new.bias = child.weight, child.bias
            new.train(child.training)
            setattr(module, name, new)
        else:
            sync_batchnorm(child, device)
    return module


def wrap(method: nn.Module, device: torch.device) -> nn.Module:
    """``method`` itself in one process; else DistributedDataParallel around it, its BatchNorm
    synced unless the method says otherwise (``sync_batchnorm = False``: MoCo).

    ``broadcast_buffers=False``: DDP would otherwise copy rank 0's buffers to every process at
    every step (MoCo's queue among them); synced BatchNorm keeps the running statistics equal and
    MoCo's gathered keys keep the queues equal without it.
    """
    if context().world == 1:
        return method
    if getattr(method, "sync_batchnorm", True):
        sync_batchnorm(method, device)
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    # torch 2.14 renames broadcast_buffers=False to forward_sync_buffers=False (which still syncs
    # once at construction: harmless, every process builds the same seeded method); older torch
    # (the GPU machine's 2.11) has only the first
    import inspect

    no_sync = ("forward_sync_buffers" if "forward_sync_buffers" in
               inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters else "broadcast_buffers")
    return nn.parallel.DistributedDataParallel(method, device_ids=ids, **{no_sync: False})


__all__ = ["Context", "context", "setup", "teardown", "all_gather_with_grad", "all_gather_no_grad",
           "mean_over_processes", "broadcast_float", "gather_objects", "CPUSyncBatchNorm", "sync_batchnorm", "wrap"]
