import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache, so no test sees another's runs."""
    monkeypatch.setenv("SSLKIT_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    yield


@pytest.fixture
def shared_data():
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"the shared datasets are not at {SHARED_DATA}")
    return SHARED_DATA


def pytest_configure(config):
    os.environ.setdefault("MPLBACKEND", "Agg")
