"""The model wing: NTRENet, its head blocks, backbones, configuration and ``create_model``.

Imports only ``ntre_zoo.data.preprocessing`` below it; the one way up is :mod:`ntre_zoo.model.mixin`,
which gives the model its ``predict``/``save_pretrained`` methods without being imported back.
"""

from .config import BACKBONES, BackboneConfig, ModelConfig, check_fields
from .factory import create_model
from .ntrenet import NTRENet
from .types import NTRENetOutput, QueryFeatures, SupportFeatures

__all__ = [
    "BACKBONES",
    "BackboneConfig",
    "ModelConfig",
    "NTRENet",
    "NTRENetOutput",
    "QueryFeatures",
    "SupportFeatures",
    "check_fields",
    "create_model",
]
