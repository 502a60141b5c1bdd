"""ntre-zoo: NTRENet few-shot semantic segmentation (Liu et al., CVPR 2022) on timm backbones."""
from .config import BackboneConfig, ModelConfig
from .evaluation import evaluate
from .convert import from_official_checkpoint
from .factory import create_model
from .hub import from_pretrained
from .manifest import list_models
from .model import NTRENet, NTRENetOutput, SupportFeatures

__version__ = "0.1.0"

__all__ = [
    "BackboneConfig",
    "ModelConfig",
    "NTRENet",
    "NTRENetOutput",
    "SupportFeatures",
    "create_model",
    "evaluate",
    "from_official_checkpoint",
    "from_pretrained",
    "list_models",
    "__version__",
]
