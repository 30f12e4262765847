"""The methods, found by name through a plain dict: name -> (config class, method class)."""

from sslkit.methods.base import MethodOutput, SSLMethod
from sslkit.methods.byol import BYOL, BYOLConfig
from sslkit.methods.mae import MAE, MAEConfig
from sslkit.methods.moco import MoCo, MoCoConfig
from sslkit.methods.jigsaw import Jigsaw, JigsawConfig
from sslkit.methods.rotation import Rotation, RotationConfig
from sslkit.methods.simclr import SimCLR, SimCLRConfig
from sslkit.methods.supervised import Supervised, SupervisedConfig

METHODS: dict[str, tuple[type, type[SSLMethod]]] = {
    "simclr": (SimCLRConfig, SimCLR),
    "rotation": (RotationConfig, Rotation),
    "jigsaw": (JigsawConfig, Jigsaw),
    "moco": (MoCoConfig, MoCo),
    "byol": (BYOLConfig, BYOL),
    "mae": (MAEConfig, MAE),
    # not self-supervised: the labelled baseline of the same encoder (reference runs, comparison)
    "supervised": (SupervisedConfig, Supervised),
}

__all__ = ["Jigsaw", "JigsawConfig", "BYOL", "BYOLConfig", "MAE", "MAEConfig", "METHODS", "MethodOutput", "MoCo", "MoCoConfig", "Rotation", "RotationConfig", "SSLMethod", "SimCLR", "SimCLRConfig", "Supervised", "SupervisedConfig"]
