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
