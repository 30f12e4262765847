"""JupyterLab on a free local port and a headless Chromium driven by Playwright, for the widget tests.

The lab serves a copy of the notebooks (so nothing a test does is ever saved into the repository)
and its kernels see the run cache of the notebook tests (``$SSLKIT_CACHE`` as it was when pytest
started, before the unit tests' per-test caches), so the notebooks load their trained runs instead
of training again. Without Playwright or a system Chromium every test here is skipped with the
reason; the browser is never downloaded.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
# read at import, before tests/conftest.py gives every test its own empty cache
RUN_CACHE = os.environ.get("SSLKIT_CACHE")

# JupyterLab settings for a test session: every cell in the DOM (not only those on screen, so the
# tests see every output), no autosave, no news pop-up over the notebook
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}


def chromium_path() -> str | None:
    """``$SSLKIT_CHROMIUM``, else the distribution's Chromium (Debian: ``apt-get install chromium``)."""
    for candidate in (os.environ.get("SSLKIT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {proc.returncode}; its log:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer at {url} within {timeout:.0f} s; its log:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def chromium() -> str:
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install -e '.[dev]'")
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium (looked for $SSLKIT_CHROMIUM, /usr/bin/chromium, chromium, chromium-browser): "
                    "apt-get install chromium as root, or set SSLKIT_CHROMIUM")
    return path


@pytest.fixture(scope="session")
def lab(chromium, tmp_path_factory) -> dict:
    """A JupyterLab server on 127.0.0.1 serving a copy of ``notebooks/``: ``{"url", "token", "root"}``."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    settings = base / "settings"
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    env = dict(os.environ, SSLKIT_PROFILE="quick", JUPYTER_RUNTIME_DIR=str(base / "runtime"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.setdefault("SSLKIT_DATA", str(ROOT / "data"))   # the notebooks run from a copy, not beside data/
    if RUN_CACHE:
        env["SSLKIT_CACHE"] = RUN_CACHE
    env.pop("MPLBACKEND", None)     # `make test` sets Agg, under which plt.show() draws nothing in a widget
    port, token = _free_port(), secrets.token_hex(16)
    log = base / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={settings}",
           f"--LabApp.workspaces_dir={base / 'workspaces'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")   # Jupyter refuses to run as root without it (containers, CI)
    with open(log, "w") as log_file:
        proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(f"{url}/api/status?token={token}", proc, log)
        yield {"url": url, "token": token, "root": root, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # the system Chromium, never one downloaded by Playwright
        b = p.chromium.launch(executable_path=chromium, headless=True)
        yield b
        b.close()


def shut_down_kernels(lab: dict) -> None:
    """Every kernel the lab started (closing the page leaves them running, holding memory and CPU)."""
    headers = {"Authorization": f"token {lab['token']}"}
    with urllib.request.urlopen(urllib.request.Request(f"{lab['url']}/api/kernels", headers=headers),
                                timeout=10) as answer:
        kernels = json.load(answer)
    for kernel in kernels:
        urllib.request.urlopen(urllib.request.Request(f"{lab['url']}/api/kernels/{kernel['id']}",
                                                      method="DELETE", headers=headers), timeout=30)


@pytest.fixture
def page(browser, lab):
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    yield page
    context.close()
    shut_down_kernels(lab)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
