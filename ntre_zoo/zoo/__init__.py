"""The zoo wing: the manifest, saving and publishing weights, downloads with sha256 checks, loading
(:mod:`ntre_zoo.zoo.hub`), conversion of the authors' checkpoints (:mod:`ntre_zoo.zoo.convert`), model cards.

This ``__init__`` exports only the modules that do not build a model: the model's own ``save_pretrained``
and ``push_to_hub`` methods import them while the model class is being defined. ``from_pretrained`` and the
converters are imported from their modules (or from ``ntre_zoo``). The zoo imports neither training, the
pipeline nor the CLI: the recipes and the reproduce sweep, which train, are in :mod:`ntre_zoo.pipeline`.
"""

from .download import cached_path, default_cache_dir, hub_download, sha256_file, verify_sha256
from .manifest import Manifest, ManifestEntry, list_models, load_manifest, model_name
from .publish import PushResult, push_to_hub
from .saving import CONFIG_NAME, WEIGHTS_NAME, build_config, save_pretrained

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "Manifest",
    "ManifestEntry",
    "PushResult",
    "build_config",
    "cached_path",
    "default_cache_dir",
    "hub_download",
    "list_models",
    "load_manifest",
    "model_name",
    "push_to_hub",
    "save_pretrained",
    "sha256_file",
    "verify_sha256",
]
