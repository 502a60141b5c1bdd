"""ntre-zoo: NTRENet few-shot semantic segmentation (Liu et al., CVPR 2022) on timm backbones.

The training entry points (``train``, ``fine_tune``, ``RunConfig``, ``TrainConfig``) load on first use, so that
``import ntre_zoo`` for inference, and every import of the zoo wing, loads neither training nor the pipeline.
"""

import importlib
from typing import TYPE_CHECKING, Any

from .data import DataConfig
from .evaluation import evaluate
from .export import export_onnx
from .inference import Box, Points, Prediction, Scribble, Segmentation, iter_segment, predict, segment, visualize
from .model import (
    BackboneConfig,
    ModelConfig,
    NTRENet,
    NTRENetOutput,
    QueryFeatures,
    SupportFeatures,
    create_model,
)
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
    "iter_segment",
    "list_models",
    "predict",
    "segment",
    "train",
    "visualize",
]

#: The public names that load on first use, and their modules.
_ON_FIRST_USE = {
    "RunConfig": "ntre_zoo.training.run_config",
    "TrainConfig": "ntre_zoo.training.config",
    "fine_tune": "ntre_zoo.pipeline.fine_tune",
    "train": "ntre_zoo.pipeline.run",
}

if TYPE_CHECKING:
    from .pipeline.fine_tune import fine_tune
    from .pipeline.run import train
    from .training.config import TrainConfig
    from .training.run_config import RunConfig


def __getattr__(name: str) -> Any:
    if name not in _ON_FIRST_USE:
        raise AttributeError(f"module 'ntre_zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_ON_FIRST_USE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
