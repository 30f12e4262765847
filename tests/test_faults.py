"""Bad input and faults, as a user meets them: one clear sentence, nothing half-written, nothing lost.

Every case runs the command line in a real process and checks the exit status, that stderr is
one line (no traceback) saying what is wrong, and what is left on disk. The fault-injection test
kills training processes with SIGKILL at random moments (and while a checkpoint is being written)
and requires the resumed run to end with exactly the weights of an uninterrupted one.
"""

import multiprocessing
import os
import random
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sslkit.train import read_checkpoint

# a tiny run: digits, batches of 16, a checkpoint (and a history row) every 3 steps
TINY = ["simclr", "--dataset", "digits", "--batch-size", "16", "--device", "cpu", "--checkpoint-every", "3"]


def sslkit(*args, env=None):
    # one thread: the machine running the tests is shared, and the numbers do not depend on it
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sslkit", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)


def one_line_error(r, *says):
    """The process failed with exit 2 and one line on stderr (after the progress bar) holding ``says``."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    errors = [line for line in r.stderr.splitlines() if "sslkit: error:" in line]
    assert errors == [last] and last.startswith("sslkit: error:"), r.stderr
    for s in says:
        assert s in last, last
    return last


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def temp_files(folder: Path) -> list[Path]:
    return list(folder.glob(".*.tmp")) if folder.is_dir() else []


# --------------------------------------------------------------------------- image folders

def image_folder(root: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for name in ["cat", "dog"]:
        (root / "train" / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / "train" / name / f"{i}.png")
    return root


def test_a_file_that_is_not_an_image_is_named_and_nothing_is_written(tmp_path):
    folder = image_folder(tmp_path / "imgs")
    (folder / "train" / "cat" / "notes.jpg").write_text("not a picture")
    r = sslkit("pretrain", "simclr", "--dataset", folder, "--steps", "2", "--batch-size", "4", "--out", tmp_path / "run")
    one_line_error(r, "notes.jpg", "cannot identify image file", "delete or replace them")
    assert not (tmp_path / "run").exists() and tree(tmp_path / "cache") <= {"datasets"}


def test_a_truncated_jpeg_is_named(tmp_path):
    folder = image_folder(tmp_path / "imgs")
    jpg = folder / "train" / "dog" / "cut.jpg"
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(jpg, quality=95)
    jpg.write_bytes(jpg.read_bytes()[:200])
    r = sslkit("pretrain", "simclr", "--dataset", folder, "--steps", "2", "--batch-size", "4", "--out", tmp_path / "run")
    one_line_error(r, "1 of the 13 image files cannot be read", "cut.jpg")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("case,says", [
    ("empty class", "the class folder"),
    ("no images", "holds no images"),
    ("one image per class", "at least 2 images in every class folder"),
])
def test_empty_folders_are_one_sentence(tmp_path, case, says):
    folder = image_folder(tmp_path / "imgs", n=1 if case == "one image per class" else 6)
    if case == "empty class":
        (folder / "train" / "eel").mkdir()
    if case == "no images":
        for f in folder.rglob("*.png"):
            f.unlink()
    r = sslkit("pretrain", "simclr", "--dataset", folder, "--steps", "2", "--batch-size", "2", "--out", tmp_path / "run")
    one_line_error(r, says)
    assert not (tmp_path / "run").exists()


def test_non_square_images_fail_before_the_run_folder_is_made(tmp_path):
    folder = tmp_path / "imgs"
    for name in ["a", "b"]:
        (folder / "train" / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((12, 16, 3), 40 * i, np.uint8)).save(folder / "train" / name / f"{i}.png")
    r = sslkit("pretrain", "rotation", "--dataset", folder, "--steps", "2", "--batch-size", "4", "--device", "cpu",
               "--out", tmp_path / "run")
    one_line_error(r, "3x12x16 images", "not square")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- settings and --out

@pytest.mark.parametrize("args,says", [
    (["--batch-size", "5000"], "batch size 5000 is larger than the 1437 training images"),
    (["--lr", "nan"], "learning rate must be a finite number, got nan"),
    (["--lr", "inf"], "learning rate must be a finite number"),
    (["--epochs", "inf"], "the training budget (epochs) must be a finite number"),
    (["--minutes", "nan"], "the training budget (minutes) must be a finite number"),
    (["--checkpoint-every", "0"], "checkpoint_every must be at least 1"),
    (["--seed", "-1"], "seed must be at least 0"),
    (["--config", "temperature=NaN"], "the simclr setting 'temperature' must be a finite number"),
    (["--config", "augment.crop_scale_min=nan"], "the simclr setting 'augment.crop_scale_min' must be a number, got 'nan'"),
])
def test_bad_numbers_are_refused_before_anything_is_written(tmp_path, args, says):
    r = sslkit("pretrain", "simclr", "--dataset", "digits", "--device", "cpu", *args, "--out", tmp_path / "run")
    one_line_error(r, says)
    assert not (tmp_path / "run").exists() and not list((tmp_path / "cache").glob("runs/*"))


def test_an_out_folder_under_a_file_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    r = sslkit("pretrain", *TINY, "--steps", "2", "--out", tmp_path / "notes.txt" / "run")
    one_line_error(r, f"{tmp_path / 'notes.txt'} is a file, not a folder")
    assert {p.name for p in tmp_path.iterdir()} <= {"notes.txt", "cache"} and not list(tmp_path.glob("cache/runs/*"))
    assert (tmp_path / "notes.txt").read_text() == "mine"
    r = sslkit("pretrain", *TINY, "--steps", "2", "--out", tmp_path / "notes.txt")
    one_line_error(r, "is a file, not a folder")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_new_parent_folders_are_removed_after_a_failure_before_the_first_checkpoint(tmp_path):
    # a NaN loss at the first logged step: no checkpoint exists, so the message says so and the
    # folders the command made (a/b/run) are gone again
    r = sslkit("pretrain", *TINY, "--steps", "12", "--lr", "1e20", "--checkpoint-every", "100",
               "--out", tmp_path / "a" / "b" / "run")
    one_line_error(r, "the loss became nan by step", "no checkpoint was written yet")
    assert not (tmp_path / "a").exists()


def test_a_nan_stop_names_the_checkpoint_it_keeps(tmp_path):
    out = tmp_path / "run"
    r = sslkit("pretrain", *TINY, "--steps", "12", "--lr", "1e20", "--checkpoint-every", "1", "--out", out)
    line = one_line_error(r, "the loss became nan by step 2", f"the last good checkpoint (step 1) is kept at {out / 'checkpoint.pt'}")
    assert "lower the learning rate" in line
    assert read_checkpoint(out / "checkpoint.pt")["step"] == 1 and not temp_files(out)


def test_a_damaged_checkpoint_at_resume_is_named_and_left_alone(tmp_path):
    out = tmp_path / "run"
    assert sslkit("pretrain", *TINY, "--steps", "3", "--out", out).returncode == 0
    ckpt = out / "checkpoint.pt"
    damaged = ckpt.read_bytes()[:1000]
    ckpt.write_bytes(damaged)
    for command in (["pretrain", *TINY, "--steps", "3", "--out", out], ["evaluate", out]):
        r = sslkit(*command)
        one_line_error(r, f"the checkpoint {ckpt} is damaged", "delete it")
        assert ckpt.read_bytes() == damaged


# --------------------------------------------------------------------------- small file systems (root only)

@contextmanager
def mounted(path: Path, options: str):
    """A tmpfs at ``path``; the test is skipped where one cannot be mounted (not root, a container
    without the right to mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_read_only_out_folder_is_refused(tmp_path):
    with mounted(tmp_path / "ro", "ro,size=1m") as ro:
        r = sslkit("pretrain", *TINY, "--steps", "2", "--out", ro / "run")
        one_line_error(r, "read-only file system", "choose another --out")
        assert tree(ro) == set()


def test_a_disk_too_small_for_one_checkpoint_is_refused_first(tmp_path):
    with mounted(tmp_path / "small", "size=1m") as small:
        r = sslkit("pretrain", *TINY, "--steps", "2", "--out", small / "run")
        one_line_error(r, "MB free but a checkpoint of this run needs about")
        assert tree(small) == set()


def test_a_disk_that_fills_keeps_the_last_checkpoint(tmp_path):
    # room for the first checkpoint (about 6 MB) but not for a second one beside it
    with mounted(tmp_path / "disk", "size=9m") as disk:
        out = disk / "run"
        r = sslkit("pretrain", *TINY, "--steps", "9", "--out", out)
        one_line_error(r, f"could not write {out / 'checkpoint.pt'} (no space left on device)",
                       "the last good checkpoint (step 3) is kept", "free some space")
        assert read_checkpoint(out / "checkpoint.pt")["step"] == 3
        assert not temp_files(out)
        # with room again, the same command resumes and finishes
        subprocess.run(["mount", "-o", "remount,size=32m", str(disk)], check=True)
        r = sslkit("pretrain", *TINY, "--steps", "9", "--out", out)
        assert r.returncode == 0, r.stderr
        ckpt = read_checkpoint(out / "checkpoint.pt")
        assert ckpt["finished"] and ckpt["step"] == 9 and not temp_files(out)


# --------------------------------------------------------------------------- SIGKILL at random moments

STEPS = 60     # 20 checkpoints: the trials move the run on by at most 15 of them, so every kill hits a live run


def _child(argv: list[str], env: dict, started, slow_writes: bool) -> None:
    """A training process, forked from a server that imported torch once (a fresh interpreter per
    trial would spend seconds importing it). ``slow_writes`` holds every fsync 50 ms, so that a
    kill aimed at a checkpoint write lands inside it."""
    os.environ.update(env)
    torch.set_num_threads(1)
    import sslkit.train as train_mod
    from sslkit.cli import main

    real_train, real_fsync = train_mod.train, os.fsync

    def announced_train(*args, **kw):   # tells the test that validation is over and training starts
        started.set()
        return real_train(*args, **kw)

    train_mod.train = announced_train
    if slow_writes:
        os.fsync = lambda fd: (time.sleep(0.05), real_fsync(fd))[1]
    sys.exit(main(argv))


def test_sigkill_at_random_moments_then_resume_gives_the_same_weights(tmp_path):
    ctx = multiprocessing.get_context("forkserver")
    # the server imports once what every child needs; torch._dynamo is what AdamW's constructor
    # imports on first use (seconds on a busy machine)
    ctx.set_forkserver_preload(["sslkit.cli", "sslkit.train", "sslkit.profiles", "torch._dynamo", __name__])
    env = {"SSLKIT_CACHE": str(tmp_path / "cache"), "PYTHONWARNINGS": "ignore"}

    def start(out: Path, slow_writes: bool = False):
        started = ctx.Event()
        p = ctx.Process(target=_child, args=(["pretrain", *TINY, "--steps", str(STEPS), "--out", str(out)], env,
                                             started, slow_writes))
        p.start()
        assert started.wait(120), "the training process did not start"
        return p, time.perf_counter()

    p, t0 = start(tmp_path / "whole")                 # the uninterrupted run
    p.join(300)
    assert p.exitcode == 0
    train_s = time.perf_counter() - t0
    whole = read_checkpoint(tmp_path / "whole" / "checkpoint.pt")

    def inode(path: Path) -> int | None:
        try:
            return path.stat().st_ino                  # each checkpoint is a new file renamed into place
        except FileNotFoundError:
            return None

    def wait_for(condition, p) -> None:
        t0 = time.perf_counter()
        while p.is_alive() and not condition() and time.perf_counter() - t0 < 60:
            time.sleep(0.001)

    rng = random.Random(16)
    out, kills, mid_write, steps_seen = tmp_path / "killed", 0, 0, []
    for trial in range(20):
        aim_at_write = trial % 2 == 1                  # every other kill aims at a checkpoint being written
        p, _ = start(out, slow_writes=aim_at_write)
        if trial % 4 == 3:                             # a quarter of the trials let the run move on by a checkpoint
            before = inode(out / "checkpoint.pt")
            wait_for(lambda: inode(out / "checkpoint.pt") != before, p)
        before = inode(out / "checkpoint.pt")
        if aim_at_write:
            wait_for(lambda: bool(temp_files(out)), p)
            time.sleep(rng.uniform(0, 0.04))           # inside the write, which the slowed fsync holds open
        else:                                          # a random moment, at most one checkpoint further on
            deadline = time.perf_counter() + rng.uniform(0, train_s / 10)
            wait_for(lambda: time.perf_counter() > deadline or inode(out / "checkpoint.pt") != before, p)
        p.kill()
        p.join(60)
        if p.exitcode == -9:
            kills += 1
            mid_write += bool(temp_files(out))
        # whatever the moment, the checkpoint on disk is whole and loadable
        if (out / "checkpoint.pt").exists():
            steps_seen.append(read_checkpoint(out / "checkpoint.pt")["step"])
    print(f"{kills} kills, {mid_write} inside a checkpoint write; checkpoint steps after each: {steps_seen}; "
          f"an uninterrupted run trains in {train_s:.1f} s")
    p, _ = start(out)                                   # resume to the end
    p.join(300)
    assert p.exitcode == 0
    final = read_checkpoint(out / "checkpoint.pt")

    assert kills == 20, f"only {kills} of 20 trials killed a running process"
    assert mid_write >= 5, f"only {mid_write} kills landed inside a checkpoint write"
    assert len(set(steps_seen)) >= 3, f"the kills did not spread over the run: checkpoints at {steps_seen}"
    assert final["finished"] and final["step"] == STEPS and not temp_files(out)
    for name, tensor in whole["model"].items():
        assert torch.equal(tensor, final["model"][name]), name
    assert [r["loss"] for r in final["history"]] == [r["loss"] for r in whole["history"]]
