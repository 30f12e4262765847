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


def _fit(method, x, steps: int = 40, lr: float = 1e-3) -> list[float]:
    """Train ``method`` on the one fixed batch ``x`` for ``steps`` steps; the loss of each step."""
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    losses = []
    for step in range(steps):
        out = method(x)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        method.on_step_end((step + 1) / steps)
        losses.append(out.loss.item())
    return losses


@pytest.fixture
def fit():
    """The "loss falls on a small batch" loop every method's tests share."""
    return _fit
