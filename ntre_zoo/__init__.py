"""ntre-zoo: NTRENet few-shot semantic segmentation (Liu et al., CVPR 2022) on timm backbones."""
from .config import BackboneConfig, ModelConfig
from .factory import create_model
from .model import NTRENet, NTRENetOutput, SupportFeatures

__version__ = "0.1.0"

__all__ = [
    "BackboneConfig",
    "ModelConfig",
    "NTRENet",
    "NTRENetOutput",
    "SupportFeatures",
    "create_model",
    "__version__",
]
