"""DDP on the CPU: two processes (gloo) against one process with the same global batch.

One spawn of two processes runs every check and writes what it measured; the tests compare
that with the same computation done here in one process. A last test runs the command line
under torchrun.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from sslkit import distributed
from sslkit.losses import nt_xent
from sslkit.methods import METHODS
from sslkit.methods.simclr import SimCLR, SimCLRConfig
from sslkit.backbones import build_encoder
from sslkit.train import TrainConfig, train

WORLD, B = 2, 4          # two processes with 4 images each: a global batch of 8
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------ what both sides compute

def _projector() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 8))


def _pairs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(WORLD * B, 16, generator=g), torch.randn(WORLD * B, 16, generator=g)


def _images() -> torch.Tensor:
    return torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))


def _deterministic_simclr() -> SimCLR:
    """SimCLR whose two views are the image and its mirror image: no random draws, so two
    processes and one see exactly the same views."""
    torch.manual_seed(0)
    method = SimCLR(build_encoder("small_cnn", 3, [0.5] * 3, [0.25] * 3), SimCLRConfig(temperature=0.5))
    method.views = lambda x: torch.cat([x, x.flip(3)])
    return method


def _train_cfg(batch: int, **kw) -> TrainConfig:
    return TrainConfig(steps=4, batch_size=batch, lr=1e-2, log_every=1, **kw)


class _Stop(Exception):
    pass


# ------------------------------------------------------------------------ the two processes

def _worker(rank: int, init_file: str, out: str) -> None:
    os.environ["SSLKIT_CPU_BF16"] = "0"          # fp32, to compare to floating-point tolerance
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        results = {}
        # 1. NT-Xent over the global batch, through a synced-BatchNorm projector in DDP
        model = distributed.wrap(_projector(), torch.device("cpu"))
        x1, x2 = _pairs()
        mine = slice(rank * B, (rank + 1) * B)
        loss = nt_xent(model(x1[mine]), model(x2[mine]), 0.5)
        loss.backward()
        results["loss"] = distributed.mean_over_processes(loss.detach())
        results["grads"] = [p.grad.clone() for p in model.module.parameters()]

        # 2. four training steps of B per process, and the same run interrupted after two and resumed
        method = _deterministic_simclr()
        train(method, _images(), _train_cfg(B), device="cpu", progress_bar=False)
        results["trained"] = {k: v.clone() for k, v in method.state_dict().items()}
        ckpt = Path(out) / "run" / "checkpoint.pt"
        ckpt.parent.mkdir(exist_ok=True)
        method = _deterministic_simclr()

        def stop_after_two(progress: float) -> None:
            if progress >= 0.5:
                raise _Stop
        method.on_step_end = stop_after_two
        try:
            train(method, _images(), _train_cfg(B, checkpoint_every=2), device="cpu", progress_bar=False,
                  checkpoint_path=ckpt)
        except _Stop:
            pass
        dist.barrier()
        method = _deterministic_simclr()
        train(method, _images(), _train_cfg(B, checkpoint_every=2), device="cpu", progress_bar=False,
              checkpoint_path=ckpt)
        results["resumed"] = {k: v.clone() for k, v in method.state_dict().items()}

        # 3. every method takes two steps on DDP (a parameter without a gradient, a missing gather
        #    or an unsynced queue would fail or diverge here)
        results["methods"] = {}
        from sslkit.data import load_dataset
        from sslkit.profiles import get_profile
        from sslkit.train import build_method
        data = load_dataset("digits")
        profile = get_profile("quick")
        for name in METHODS:
            spec = profile.spec(name, steps=2, batch_size=8)
            spec.dataset = "digits"
            method = build_method(spec, data)
            supervised = getattr(method, "uses_labels", False)
            history = train(method, data.train_x if supervised else data.pretrain_x, spec.train, device="cpu",
                            progress_bar=False, labels=data.train_y if supervised else None)
            results["methods"][name] = {"loss": history[-1]["loss"],
                                        "params": torch.cat([p.detach().flatten() for p in method.parameters()])}
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(out / "init"), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)], out


# ------------------------------------------------------------------------ the tests

def test_gathered_loss_and_gradients_equal_one_process_with_the_global_batch(ranks):
    results, _ = ranks
    model = _projector()
    x1, x2 = _pairs()
    loss = nt_xent(model(x1), model(x2), 0.5)
    loss.backward()
    for r in results:
        assert torch.allclose(r["loss"], loss.detach(), atol=1e-6), (r["loss"], loss)
        for got, want in zip(r["grads"], [p.grad for p in model.parameters()]):
            assert torch.allclose(got, want, atol=1e-6, rtol=1e-5), (got - want).abs().max()


def test_gathered_loss_differs_from_each_process_alone(ranks):
    """The gather matters: a process's loss over its own 4 images is another number."""
    results, _ = ranks
    model = _projector()
    x1, x2 = _pairs()
    alone = nt_xent(model(x1[:B]), model(x2[:B]), 0.5)
    assert not torch.allclose(results[0]["loss"], alone.detach(), atol=1e-3)


def test_two_processes_with_batch_b_reach_the_parameters_of_one_with_2b(ranks, monkeypatch):
    """To floating-point tolerance, measured on the whole parameter vector: AdamW divides each
    gradient by its own running size, so a weight whose gradient is almost zero (the last
    BatchNorm's bias, which the projector's BatchNorm nearly cancels) moves by rounding noise;
    measured: 0.1% of the distance travelled, against 111% for a process alone with batch B."""
    results, _ = ranks
    monkeypatch.setenv("SSLKIT_CPU_BF16", "0")
    method = _deterministic_simclr()
    start = torch.cat([p.detach().flatten() for p in method.parameters()])
    train(method, _images(), _train_cfg(WORLD * B), device="cpu", progress_bar=False)
    want = torch.cat([p.detach().flatten() for p in method.parameters()])
    names = [k for k, _ in method.named_parameters()]
    for r in results:
        got = torch.cat([r["trained"][k].flatten() for k in names])
        assert (got - want).norm() < 0.01 * (want - start).norm(), float((got - want).norm() / (want - start).norm())
        for k, v in method.state_dict().items():        # BatchNorm's running statistics, synced
            if "running" in k:
                assert torch.allclose(r["trained"][k], v, rtol=1e-3, atol=1e-4), k
    for k in results[0]["trained"]:                     # and the processes hold the same weights
        assert torch.equal(results[0]["trained"][k], results[1]["trained"][k]), k


def test_an_interrupted_ddp_run_resumes_exactly(ranks):
    results, out = ranks
    for r in results:
        for k, v in r["trained"].items():
            assert torch.allclose(r["resumed"][k].float(), v.float(), atol=1e-6), k
    ckpt = torch.load(out / "run" / "checkpoint.pt", weights_only=False)
    assert ckpt["finished"] and ckpt["step"] == 4 and len(ckpt["rng_ranks"]) == WORLD


def test_every_method_trains_on_ddp_with_equal_weights_on_both_processes(ranks):
    results, _ = ranks
    assert set(results[0]["methods"]) == set(METHODS)
    for name, r0 in results[0]["methods"].items():
        r1 = results[1]["methods"][name]
        assert torch.isfinite(torch.tensor(r0["loss"])), name
        assert r0["loss"] == r1["loss"], name          # the logged loss is the mean over processes
        assert torch.equal(r0["params"], r1["params"]), name


def test_torchrun_pretraining_from_the_command_line_writes_one_checkpoint(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "sslkit", "pretrain", "simclr", "--dataset", "digits", "--steps", "5", "--batch-size", "64",
           "--device", "cpu", "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("done: 5 steps") == 1, done.stdout          # rank 0 alone reports
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        ["checkpoint.pt", "config.json", "history.json"]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["finished"] and ckpt["step"] == 5 and len(ckpt["rng_ranks"]) == 2
    assert ckpt["history"][-1]["images_per_s"] > 0
