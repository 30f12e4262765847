"""The registry: a method is one file and one entry in sslkit.methods.METHODS; the profiles, the
references, the comparison and the command line read everything else from its class."""

import dataclasses
import subprocess
import sys

import pytest
import torch

from sslkit import compare, reference
from sslkit.methods import METHODS, SSLMethod
from sslkit.methods.base import MethodOutput, ReferenceRecipe, Settings
from sslkit.methods.heads import projection_head
from sslkit.profiles import get_profile


@pytest.mark.parametrize("name", list(METHODS))
def test_every_entry_declares_what_the_kit_reads(name):
    cfg_cls, cls = METHODS[name]
    assert dataclasses.is_dataclass(cfg_cls) and issubclass(cls, SSLMethod)
    assert cls.title and cls.family in ("cnn", "vit")
    assert isinstance(cls.quick, Settings) and isinstance(cls.full, Settings)
    assert cls.reference is None or isinstance(cls.reference, ReferenceRecipe)
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    for settings in (cls.quick.config, cls.full.config, (cls.reference.config if cls.reference else {})):
        assert set(settings) <= fields, f"{name}: settings for fields its config does not have"


def test_the_comparison_and_the_references_follow_the_registry():
    with_reference = [m for m, (_, c) in METHODS.items() if c.reference is not None]
    assert list(reference.RECIPES) == with_reference
    assert set(compare.ORDER) == set(with_reference) and METHODS[compare.ORDER[-1]][1].uses_labels
    assert all(compare.NAMES[m] == METHODS[m][1].title for m in METHODS)
    mae = reference.RECIPES["mae"]
    assert mae.backbone == "vit_mini" and mae.heads == METHODS["mae"][1].reference.heads


class Toy(SSLMethod):
    """A seventh method, added as a newcomer would: a class with its attributes and one entry."""

    title = "Toy"
    quick = Settings(train={"steps": 7, "batch_size": 16}, config={"width": 8})
    full = Settings(config={"width": 32})

    def __init__(self, encoder, cfg):
        super().__init__()
        self.encoder, self.cfg = encoder, cfg
        self.head = projection_head(encoder.dim, cfg.width, cfg.width)

    def forward(self, images):
        z = self.head(self.encoder(images))
        return MethodOutput(z.pow(2).mean(), features=z.detach())


@dataclasses.dataclass
class ToyConfig:
    width: int = 4


def test_a_new_entry_is_all_the_profiles_and_the_loop_need(monkeypatch, tmp_path):
    from sslkit.train import pretrain

    monkeypatch.setitem(METHODS, "toy", (ToyConfig, Toy))
    quick = get_profile("quick")
    spec = quick.spec("toy")
    assert spec.train.steps == 7 and spec.train.batch_size == 16 and spec.method_config == {"width": 8}
    assert spec.backbone == "small_cnn" and "| toy |" in quick.settings_table()
    assert get_profile("full").spec("toy").method_config == {"width": 32}
    spec.dataset = "digits"
    run = pretrain(spec, tmp_path / "run", progress_bar=False)
    assert run.history[-1]["step"] == 7 and torch.isfinite(torch.tensor(run.history[-1]["loss"]))


def test_the_command_line_offers_every_registered_method():
    out = subprocess.run([sys.executable, "-m", "sslkit", "pretrain", "--help"], capture_output=True, text=True)
    assert all(m in out.stdout for m in METHODS), out.stdout
