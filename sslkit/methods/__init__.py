"""The methods, found by name through a plain dict: name -> (config class, method class)."""

from sslkit.methods.barlowtwins import BarlowTwins, BarlowTwinsConfig
from sslkit.methods.base import MethodOutput, SSLMethod
from sslkit.methods.byol import BYOL, BYOLConfig
from sslkit.methods.dino import DINO, DINOConfig
from sslkit.methods.mae import MAE, MAEConfig
from sslkit.methods.moco import MoCo, MoCoConfig
from sslkit.methods.jigsaw import Jigsaw, JigsawConfig
from sslkit.methods.rotation import Rotation, RotationConfig
from sslkit.methods.simclr import SimCLR, SimCLRConfig
from sslkit.methods.simsiam import SimSiam, SimSiamConfig
from sslkit.methods.supervised import Supervised, SupervisedConfig
from sslkit.methods.vicreg import VICReg, VICRegConfig

# The registry: every method by name, in the course's order (the comparison's rows, the profiles'
# tables). A method is one file (its config, its nn.Module with the attributes sslkit.methods.base
# lists: title, family, quick / full settings, reference recipe) and one entry here.
METHODS: dict[str, tuple[type, type[SSLMethod]]] = {
    "rotation": (RotationConfig, Rotation),
    "jigsaw": (JigsawConfig, Jigsaw),
    "simclr": (SimCLRConfig, SimCLR),
    "moco": (MoCoConfig, MoCo),
    "byol": (BYOLConfig, BYOL),
    "simsiam": (SimSiamConfig, SimSiam),
    "barlowtwins": (BarlowTwinsConfig, BarlowTwins),
    "vicreg": (VICRegConfig, VICReg),
    "mae": (MAEConfig, MAE),
    "dino": (DINOConfig, DINO),
    # not self-supervised: the labelled baseline of the same encoder (reference runs, comparison)
    "supervised": (SupervisedConfig, Supervised),
}

__all__ = ["BarlowTwins", "BarlowTwinsConfig", "Jigsaw", "JigsawConfig", "BYOL", "BYOLConfig", "DINO", "DINOConfig", "MAE", "MAEConfig", "METHODS", "MethodOutput", "MoCo", "MoCoConfig", "Rotation", "RotationConfig", "SSLMethod", "SimCLR", "SimCLRConfig", "SimSiam", "SimSiamConfig", "Supervised", "SupervisedConfig", "VICReg", "VICRegConfig"]
