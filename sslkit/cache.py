"""One on-disk cache for decoded datasets and finished training runs.

Layout under :func:`cache_root` (``$SSLKIT_CACHE``, else ``~/.cache/sslkit``)::

    datasets/<name>-<hash>.pt      decoded uint8 tensors of a dataset
    runs/<method>-<hash>/          a training run keyed by its whole configuration

Every file is written atomically (to a temporary file in the same folder, then renamed), so a
reader never sees half a file, and a process that wants a run another process is training waits
on a file lock instead of training it twice.
"""

from __future__ import annotations

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


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` that never leaves a partial file at ``path``."""
    _atomic_write(Path(path), lambda f: torch.save(obj, f))


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
