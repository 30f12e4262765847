"""One on-disk cache for decoded datasets and finished training runs.

Layout under :func:`cache_root` (``$SSLKIT_CACHE``, else ``~/.cache/sslkit``)::

    datasets/<name>-<hash>.pt      decoded uint8 tensors of a dataset
    runs/<method>-<hash>/          a training run keyed by its whole configuration

Every file is written atomically (to a temporary file in the same folder, then renamed), so a
reader never sees half a file, and a process that wants a run another process is training waits
on a file lock instead of training it twice.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import tempfile
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch


def cache_root() -> Path:
    """``$SSLKIT_CACHE``, else ``~/.cache/sslkit``."""
    return Path(os.environ.get("SSLKIT_CACHE", Path.home() / ".cache" / "sslkit")).expanduser()


class WriteError(OSError):
    """A file could not be written. Its message is one sentence naming the file and the operating
    system's reason (disk full, permission denied, read-only, a path under a file)."""

    def __init__(self, path: str | Path, err: OSError, kept: str = ""):
        self.path, self.cause = Path(path), err
        self.reason = reason = (err.strerror or str(err)).lower()
        remedy = ("free some space on that disk or write elsewhere" if err.errno in (errno.ENOSPC, errno.EDQUOT)
                  else "choose a folder you can write to")
        super().__init__(f"could not write {path} ({reason}){kept}: {remedy}, then run again.")
        self.errno = err.errno


class _RecordingFile:
    """A file whose write errors are remembered: ``torch.save`` reports a failed write as its own
    internal RuntimeError ("unexpected pos ..."), and the OSError behind it is what a user needs."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as err:
            self.error = err
            raise

    def __getattr__(self, name):
        return getattr(self.f, name)


def _atomic_write(path: Path, write) -> None:
    """Write through ``write(f)`` to a temporary file beside ``path``, fsync it, then rename it over
    ``path``: a crash at any moment leaves either the old file or the new one, and a failure
    (disk full, ...) removes the temporary file and raises :class:`WriteError`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise WriteError(path, err) from None
    f = None
    try:
        with os.fdopen(fd, "wb") as raw:
            f = _RecordingFile(raw)
            write(f)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        cause = err if isinstance(err, OSError) else (f.error if f is not None else None)
        if cause is not None and not isinstance(cause, WriteError):
            raise WriteError(path, cause) from None
        raise
    try:  # make the rename itself durable (a power cut right after it keeps the new file)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename is still atomic


def remove_stale_temp_files(folder: str | Path) -> None:
    """Delete the temporary files that a process killed in the middle of an atomic write left in
    ``folder`` (call it only while holding the folder's lock, so no write is in progress)."""
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` that never leaves a partial file at ``path``."""
    _atomic_write(Path(path), lambda f: torch.save(obj, f))


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    """Write bytes atomically (reference weights, a Markdown table)."""
    _atomic_write(Path(path), lambda f: f.write(data))


def atomic_write_json(obj: Any, path: str | Path) -> None:
    """Write JSON atomically (indent 2, trailing newline)."""
    _atomic_write(Path(path), lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive lock held for the ``with`` block (blocks while another process holds it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def config_key(config: dict) -> str:
    """A short stable hash of a JSON-able configuration."""
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_dir_for(config: dict) -> Path:
    """The cache folder of a training run with this configuration."""
    return cache_root() / "runs" / f"{config['method']}-{config_key(config)}"


# ------------------------------------------------------------------------- frozen features

# What a feature or result file's name is made of, besides the encoder and the images: a new
# value makes every old entry a miss (bump it when the extraction or a protocol changes).
FEATURES_VERSION = "1"
_digests: dict = {}             # id(tensor) -> (weak reference, in-place version, digest)


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes. Remembered for the tensor object itself (a weak
    reference, so a new tensor at a freed address is hashed anew) for as long as it is not changed
    in place (its version counter): the 50,000 training images are hashed once."""
    memo = _digests.get(id(t))
    if memo is not None and memo[0]() is t and memo[1] == t._version:
        return memo[2]
    h = hashlib.sha256(f"{t.dtype} {tuple(t.shape)}".encode())
    if t.numel():
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    digest = h.hexdigest()
    if t.numel() > 100_000:             # only big tensors are worth remembering
        for k in [k for k, v in _digests.items() if v[0]() is None]:
            del _digests[k]
        _digests[id(t)] = (weakref.ref(t), t._version, digest)
    return digest


def module_digest(module: torch.nn.Module) -> str:
    """sha256 of a module's architecture (its repr) and every tensor of its state: two encoders
    with the same digest compute the same features."""
    h = hashlib.sha256(repr(module).encode())
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor_digest(t).encode())
    return h.hexdigest()


def features_key(encoder: torch.nn.Module, images: torch.Tensor, **settings) -> str:
    """The cache key of ``encoder``'s features of ``images`` under ``settings`` (autocast, device
    type, ...), with torch's version: a different weight, image or setting gives another key."""
    parts = {"encoder": module_digest(encoder), "images": tensor_digest(images), "torch": torch.__version__,
             "version": FEATURES_VERSION, **settings}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def result_key(kind: str, *tensors: torch.Tensor, **settings) -> str:
    """The cache key of a deterministic result computed from ``tensors`` (features, labels) under
    ``settings``: a probe's accuracy, a 2-D projection. Any other tensor, setting or torch version
    gives another key."""
    parts = {"kind": kind, "tensors": [tensor_digest(torch.as_tensor(t)) for t in tensors], "torch": torch.__version__,
             "version": FEATURES_VERSION, **settings}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def cache_limit_bytes() -> int:
    """``$SSLKIT_FEATURE_CACHE_MB`` (default 2048) megabytes for features and results; 0 turns
    the feature cache off."""
    return int(float(os.environ.get("SSLKIT_FEATURE_CACHE_MB", "2048")) * 2**20)


def features_dir() -> Path:
    return cache_root() / "features"


def load_cached(key: str) -> Any | None:
    """The object stored under ``key`` in the feature cache, or None (a miss, or an unreadable file,
    which is then removed). A hit touches the file, so pruning removes the least recently used."""
    path = features_dir() / f"{key}.pt"
    if cache_limit_bytes() <= 0 or not path.exists():
        return None
    try:
        obj = torch.load(path, weights_only=True)
        os.utime(path)
        return obj
    except Exception:           # a damaged or foreign file is a miss, never an error
        path.unlink(missing_ok=True)
        return None


def store_cached(key: str, obj: Any) -> None:
    """Store ``obj`` (tensors, numbers, dicts) under ``key`` atomically, then prune the folder to
    :func:`cache_limit_bytes`, oldest use first. A cache that cannot be written is skipped silently:
    it only saves time."""
    limit = cache_limit_bytes()
    if limit <= 0:
        return
    folder = features_dir()
    try:
        atomic_save(obj, folder / f"{key}.pt")
        files = sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime, reverse=True)
        total = 0
        for p in files:
            total += p.stat().st_size
            if total > limit:
                p.unlink(missing_ok=True)
    except OSError:
        pass
