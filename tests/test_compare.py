"""The comparison's rows: one random init per architecture, named by what it is."""

import torch

from sslkit.backbones import Encoder, ViT
from sslkit.compare import _architecture, _random_name


def _vit_encoder(class_token: bool) -> Encoder:
    torch.manual_seed(0)
    return Encoder(ViT(3, 32, patch_size=4, dim=32, depth=1, heads=2, class_token=class_token), 32, [0.5] * 3, [0.25] * 3)


def test_a_vit_with_a_class_token_gets_its_own_random_init():
    pooled, with_token = _vit_encoder(False), _vit_encoder(True)
    assert _architecture("vit_mini", pooled) != _architecture("vit_mini", with_token)
    assert _architecture("vit_mini", pooled) == _architecture("vit_mini", _vit_encoder(False))
    assert _random_name("ViT", pooled) == "random init (ViT)"
    assert _random_name("ViT", with_token) == "random init (ViT, class token)"
    # and they are different networks: the same images give different features
    x = torch.rand(2, 3, 32, 32)
    assert not torch.allclose(pooled(x), with_token(x))
