"""Backbone initialisation of a new model: the authors' ImageNet files, timm's, a file or directory, or none.

The backbone is frozen, so its initial weights are the only ImageNet knowledge a trained NTRENet has.
``--backbone-weights`` (``backbone_weights=`` in Python) takes:

* ``reference``: what the authors start from (spec section 1): PSPNet's ``resnet50_v2.pth`` /
  ``resnet101_v2.pth`` and torchvision's ``vgg16_bn.pth``, read from ``./initmodel`` as the authors' code does,
  converted on the fly with :func:`~ntre_zoo.zoo.convert.convert_imagenet_backbone`.
* ``timm``: timm's ImageNet weights for the architecture (``resnet50s.gluon_in1k`` ...), downloaded from the
  Hub before training starts (cached afterwards).
* a path: one of the reference files, a converted state dict (``ntre-zoo convert --imagenet``, ``.safetensors``
  or ``.pth``), a ``from_pretrained`` directory (its backbone is taken), or a directory holding the reference files.
* ``none``: random weights. The backbone never trains, so this is only for narrow test models such as the
  shipped synthetic one; it must be asked for by name.

The resolved :class:`BackboneWeights` (kind, file, sha256) goes into the run's metadata, so ``config.json`` and
the model card say how the backbone started.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from ..errors import StateDictMismatchError
from ..model.config import BackboneConfig
from ..model.ntrenet import NTRENet
from .convert import _torch_load, convert_imagenet_backbone
from .download import cached_path, hub_download, sha256_file
from .hub_access import check_hub_reachable
from .saving import CONFIG_NAME, WEIGHTS_NAME

__all__ = [
    "BACKBONE_WEIGHTS_CHOICES",
    "REFERENCE_DIR",
    "REFERENCE_FILES",
    "BackboneWeights",
    "load_backbone_weights",
    "resolve_backbone_weights",
]

#: The named choices; anything else is a path.
BACKBONE_WEIGHTS_CHOICES = ("reference", "timm", "none")
#: Where the authors' code reads its ImageNet files from (``model/base/resnet.py``, ``vgg.py``).
REFERENCE_DIR = Path("initmodel")
REFERENCE_FILES = {"resnet50": "resnet50_v2.pth", "resnet101": "resnet101_v2.pth", "vgg16_bn": "vgg16_bn.pth"}
_REFERENCE_ORIGIN = (
    "They come from the ImageNet backbones archive linked in PFENet's README (github.com/dvlab-research/PFENet, "
    "'Download the ImageNet pretrained backbones and put them into the initmodel directory'), which NTRENet's "
    "code uses unchanged; they cannot be downloaded by ntre-zoo."
)
_CLASSIFIER_PREFIXES = ("fc.", "head.", "pre_logits.")


@dataclass(frozen=True)
class BackboneWeights:
    """A resolved backbone initialisation.

    Args:
        kind: ``reference``, ``timm``, ``file`` (a converted state dict), ``pretrained`` (a saved model's
            backbone) or ``none``.
        path: the local file to read (None for ``none``).
        source: where it came from, for the record (a file name, or ``hf-hub:repo@commit``).
        sha256: hex digest of ``path``.
    """

    kind: str
    path: Path | None = None
    source: str | None = None
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record kept in ``config.json`` metadata (``backbone_init``) and the model card."""
        return {"kind": self.kind, "source": self.source, "sha256": self.sha256}

    def describe(self) -> str:
        """One line for logs and the model card."""
        if self.kind == "none":
            return "random weights (--backbone-weights none)"
        return f"{self.kind}: {self.source} (sha256 {self.sha256})"


def _no_weights_for_narrow(config: BackboneConfig, spec: str) -> ValueError:
    return ValueError(
        f"--backbone-weights {spec}: no ImageNet weights exist for a narrowed {config.name} backbone (layers="
        f"{config.layers}, channels={config.channels}, stem_width={config.stem_width}). Pass --backbone-weights none "
        "to train it from random weights (as the shipped synthetic model is), or a PATH to weights of that shape."
    )


def _reference_file(directory: Path, config: BackboneConfig, spec: str) -> BackboneWeights:
    path = directory / REFERENCE_FILES[config.name]
    if not path.is_file():
        raise FileNotFoundError(
            f"--backbone-weights {spec}: the authors' ImageNet {config.name} file {str(path)!r} does not exist. "
            f"{_REFERENCE_ORIGIN} Put {REFERENCE_FILES[config.name]} in {str(directory)!r} (or pass its path), or use "
            "--backbone-weights timm for timm's ImageNet weights instead (not what the paper started from)."
        )
    return BackboneWeights("reference", path, path.name, sha256_file(path))


def _timm_weights(config: BackboneConfig, endpoint: str | None, cache_dir: str | Path | None) -> BackboneWeights:
    import timm

    pretrained = timm.models.get_pretrained_cfg(config.timm_name)
    repo_id = pretrained.hf_hub_id if pretrained is not None else None
    if not repo_id:
        raise ValueError(f"timm has no Hub weights for {config.timm_name}; use --backbone-weights reference or PATH.")
    path = cached_path(repo_id, WEIGHTS_NAME, cache_dir=cache_dir)
    if path is None:
        check_hub_reachable(
            "--backbone-weights timm",
            f"Download {repo_id} once online (it is then cached), or use --backbone-weights reference or PATH.",
            endpoint=endpoint,
        )
        path = hub_download(repo_id, WEIGHTS_NAME, cache_dir=cache_dir, endpoint=endpoint)
    return BackboneWeights("timm", path, f"hf-hub:{repo_id}@{path.parent.name}", sha256_file(path))


def resolve_backbone_weights(
    spec: str | Path,
    config: BackboneConfig,
    *,
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
) -> BackboneWeights:
    """Find the weights ``spec`` names for ``config`` (downloading timm's), before anything trains.

    Args:
        spec: ``reference``, ``timm``, ``none`` or a path (see the module docstring).
        config: the backbone the weights are for.
        endpoint: a Hub mirror for ``timm`` (default ``HF_ENDPOINT``).
        cache_dir: the huggingface_hub cache for ``timm``.

    Raises:
        FileNotFoundError: a missing reference file or path, saying where the files come from.
        ValueError: ImageNet weights asked for a narrowed backbone.
        HubAccessError: ``timm`` weights that are not cached while the Hub is off or unreachable.
    """
    spec = str(spec)
    narrowed = any(v is not None for v in (config.layers, config.channels, config.stem_width))
    if spec == "none":
        return BackboneWeights("none")
    if spec in ("reference", "timm") and narrowed:
        raise _no_weights_for_narrow(config, spec)
    if spec == "reference":
        return _reference_file(REFERENCE_DIR, config, spec)
    if spec == "timm":
        return _timm_weights(config, endpoint, cache_dir)
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / CONFIG_NAME).is_file():
            weights = path / WEIGHTS_NAME
            return BackboneWeights("pretrained", weights, str(path), sha256_file(weights))
        return _reference_file(path, config, spec)
    if not path.is_file():
        raise FileNotFoundError(
            f"--backbone-weights {spec!r} is neither 'reference', 'timm', 'none' nor an existing file or directory."
        )
    kind = "reference" if path.name == REFERENCE_FILES[config.name] else "file"
    return BackboneWeights(kind, path, path.name, sha256_file(path))


def _read_state_dict(weights: BackboneWeights, backbone: str) -> dict[str, torch.Tensor]:
    path = weights.path
    assert path is not None
    if path.suffix == ".safetensors":
        state: Any = safetensors.torch.load_file(str(path))
    else:
        state = _torch_load(path)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{str(path)!r} holds no state dict of tensors, so it cannot initialise a backbone.")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):  # a whole NTRENet: keep its backbone
        return {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    if weights.kind == "timm":
        return {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    return state


def _some(keys: list[str]) -> str:
    return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "") if keys else "none"


def load_backbone_weights(model: NTRENet, weights: BackboneWeights) -> None:
    """Load ``weights`` strictly into ``model.backbone`` (no-op for ``none``).

    A state dict already in timm's keys loads as it is; the authors' layout (PSPNet stem, torchvision VGG) is
    converted first.

    Raises:
        StateDictMismatchError: the weights fit the backbone in neither layout (naming the keys).
    """
    if weights.kind == "none":
        return
    backbone = model.backbone
    name = model.config.backbone.name
    state = _read_state_dict(weights, name)
    expected = set(backbone.state_dict())
    counters = {k for k in expected if k.endswith(".num_batches_tracked")}
    if weights.kind not in ("timm", "pretrained") and not expected - counters <= set(state) <= expected:
        try:
            state = convert_imagenet_backbone(state, name)
        except StateDictMismatchError as error:
            raise StateDictMismatchError(
                f"{weights.source} fits the {name} backbone neither in timm's keys nor in the authors' layout: {error}"
            ) from error
    for key in counters - set(state):  # files saved without BN step counters (timm's, older torch)
        state[key] = torch.tensor(0, dtype=torch.long)
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise StateDictMismatchError(
            f"{weights.source} does not fit the {name} backbone: missing {_some(missing)}, unexpected "
            f"{_some(unexpected)}. Is --backbone right?"
        )
    backbone.load_state_dict(state, strict=True)
