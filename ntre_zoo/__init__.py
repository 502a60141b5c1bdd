"""ntre-zoo: NTRENet few-shot semantic segmentation (Liu et al., CVPR 2022) on timm backbones."""

from .data import DataConfig
from .evaluation import evaluate
from .export import export_onnx
from .inference import Box, Points, Prediction, Scribble, Segmentation, predict, segment, visualize
from .model import (
    BackboneConfig,
    ModelConfig,
    NTRENet,
    NTRENetOutput,
    QueryFeatures,
    SupportFeatures,
    create_model,
)
from .pipeline.fine_tune import fine_tune
from .pipeline.run import train
from .training import RunConfig, TrainConfig
from .zoo.convert import from_official_checkpoint
from .zoo.hub import from_pretrained
from .zoo.manifest import list_models
from .zoo.version import __version__

__all__ = [
    "BackboneConfig",
    "Box",
    "DataConfig",
    "ModelConfig",
    "NTRENet",
    "NTRENetOutput",
    "Points",
    "Prediction",
    "QueryFeatures",
    "RunConfig",
    "Scribble",
    "Segmentation",
    "SupportFeatures",
    "TrainConfig",
    "__version__",
    "create_model",
    "evaluate",
    "export_onnx",
    "fine_tune",
    "from_official_checkpoint",
    "from_pretrained",
    "list_models",
    "predict",
    "segment",
    "train",
    "visualize",
]
