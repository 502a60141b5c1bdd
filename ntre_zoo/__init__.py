"""ntre-zoo: NTRENet few-shot semantic segmentation (Liu et al., CVPR 2022) on timm backbones."""
from .config import BackboneConfig, ModelConfig
from .convert import from_official_checkpoint
from .evaluation import evaluate
from .factory import create_model
from .hub import from_pretrained
from .inference import Prediction, predict
from .manifest import list_models
from .model import NTRENet, NTRENetOutput, QueryFeatures, SupportFeatures

__version__ = "0.1.0"

__all__ = [
    "BackboneConfig",
    "ModelConfig",
    "NTRENet",
    "NTRENetOutput",
    "Prediction",
    "QueryFeatures",
    "SupportFeatures",
    "create_model",
    "evaluate",
    "from_official_checkpoint",
    "from_pretrained",
    "list_models",
    "predict",
    "__version__",
]
