"""environment.yml (conda users) and pyproject.toml (pip users) name the same packages."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI's
CONDA_TO_PYPI = {"pytorch": "torch"}
# what conda needs for itself or for the set-up, not a Python package of the kit
CONDA_ONLY = {"python", "pip", "nodejs"}   # nodejs: npm for the site's MathJax (the Makefile)


def _split(requirement: str) -> tuple[str, str]:
    """``"torch>=2.4"`` -> ``("torch", ">=2.4")``; names compared in PyPI's normalised form."""
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", requirement)
    name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
    return name, m.group(2).replace(" ", "")


def conda_packages() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    out = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):           # the pip: section installs the kit itself
            assert dep.get("pip") == ["-e ."], f"environment.yml's pip section should only install the kit: {dep}"
            continue
        name, spec = _split(dep)
        if name in CONDA_ONLY:
            continue
        out[CONDA_TO_PYPI.get(name, name)] = spec
    return out


def pip_packages() -> dict[str, str]:
    """What ``pip install -e ".[dev]"`` installs: the dependencies plus the notebooks and dev extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["dev"] + \
        project["optional-dependencies"].get("notebooks", [])
    return dict(_split(r) for r in reqs)


def test_conda_and_pip_name_the_same_packages_and_versions():
    conda, pip = conda_packages(), pip_packages()
    assert sorted(set(pip) - set(conda)) == [], "in pyproject.toml but not in environment.yml"
    assert sorted(set(conda) - set(pip)) == [], "in environment.yml but not in pyproject.toml"
    assert {k: v for k, v in conda.items() if v != pip[k]} == {}, "version bounds differ"


def test_pytorch_comes_from_conda_forge_alone():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    # the retired pytorch channel stopped at 2.5: with it first, strict priority picks an old build
    assert "pytorch" not in env["channels"]
    assert env["channels"][0] == "conda-forge"
