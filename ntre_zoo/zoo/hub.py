"""``from_pretrained``: load NTRENet weights from a zoo name, a Hub repository or a local directory.

Weights are read with safetensors only (no pickle), checked against the manifest's sha256 where it
knows them, and loaded strictly. ``from_pretrained`` accepts a zoo name from the manifest,
``hf-hub:<repo_id>[@<revision>]``, a local directory, or ``backbone=/dataset=/fold=``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch

from ..errors import WeightsUnavailableError
from ..model.config import ModelConfig
from ..model.ntrenet import NTRENet
from .download import DownloadOptions, hub_download, verify_sha256
from .loading import load_state_dict_strict
from .manifest import Manifest, ManifestEntry, load_manifest
from .saving import ARCHITECTURE, CONFIG_NAME, WEIGHTS_NAME

__all__ = ["LOAD_OVERRIDES", "fetch_entry", "from_pretrained", "load_pretrained_dir"]

#: ModelConfig fields that may differ at load time; the others change the architecture.
LOAD_OVERRIDES = ("test_size", "mean", "std", "reduce_dropout", "classifier_dropout")
_ARCHITECTURE_FIELDS = (
    "backbone",
    "reduce_dim",
    "pyramid_bins",
    "bg_prototypes",
    "bg_eliminating",
    "do_eliminating",
    "layers",
    "channels",
    "stem_width",
)
PathLike = str | os.PathLike[str]


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} does not exist; a saved model directory holds {CONFIG_NAME} and {WEIGHTS_NAME}."
        )
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("architecture") != ARCHITECTURE or "model_config" not in config:
        raise ValueError(
            f"{str(path)!r} is not an ntre-zoo NTRENet config (architecture {config.get('architecture')!r}); "
            "was it written by save_pretrained?"
        )
    return config


def _apply_overrides(config: ModelConfig, overrides: Mapping[str, Any]) -> ModelConfig:
    architecture = sorted(k for k in overrides if k in _ARCHITECTURE_FIELDS)
    if architecture:
        raise ValueError(
            f"{architecture} would change the architecture of pretrained weights, so they cannot be overridden at "
            f"load time. Allowed overrides: {list(LOAD_OVERRIDES)}. To change the architecture, build a model with "
            "ntre_zoo.create_model and train it."
        )
    unknown = sorted(set(overrides) - set(LOAD_OVERRIDES))
    if unknown:
        raise ValueError(f"Unknown override(s) {unknown}; from_pretrained accepts {list(LOAD_OVERRIDES)}.")
    return dataclasses.replace(config, **overrides)


def _load_files(
    config_path: Path, weights_path: Path, source: str, device: Any | None, overrides: Mapping[str, Any]
) -> NTRENet:
    config = _read_config(config_path)
    model_config = _apply_overrides(ModelConfig.from_dict(config["model_config"]), overrides)
    if not weights_path.is_file():
        raise FileNotFoundError(f"{str(weights_path)!r} does not exist; save weights with save_pretrained.")
    try:
        state = safetensors.torch.load_file(str(weights_path), device="cpu")
    except Exception as error:  # safetensors raises its own SafetensorError for a bad header
        raise ValueError(f"{str(weights_path)!r} is not a readable safetensors file: {error}.") from error
    model = NTRENet(model_config)
    load_state_dict_strict(model, state, source=source, hint="The weights belong to another architecture or version.")
    model.pretrained_metadata = dict(config.get("metadata") or {})
    model.eval()
    return model if device is None else model.to(device)


def load_pretrained_dir(directory: PathLike, *, device: Any | None = None, **overrides: Any) -> NTRENet:
    """Load a directory written by :func:`save_pretrained` (``config.json`` + ``model.safetensors``)."""
    directory = Path(directory)
    return _load_files(directory / CONFIG_NAME, directory / WEIGHTS_NAME, repr(str(directory)), device, overrides)


def _unpublished_error(entry: ManifestEntry) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"{entry.name} is registered in the manifest but unpublished: no weights have been released for it "
        "(the authors published none either). To get weights, train them with the recipe "
        f"(`ntre-zoo train`, backbone {entry.backbone}, {entry.dataset} fold {entry.fold}) and load the output "
        "directory with from_pretrained(DIR), or convert a checkpoint of the authors' code with "
        f"`ntre-zoo convert CHECKPOINT.pth --backbone {entry.backbone} --out DIR`. "
        "`ntre-zoo list --published` shows the weights that can be downloaded."
    )


def fetch_entry(
    entry: ManifestEntry,
    *,
    cache_dir: PathLike | None = None,
    local_files_only: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
) -> tuple[Path, Path]:
    """``(config, weights)`` paths of a manifest entry, downloaded if needed and sha256-checked.

    Raises:
        WeightsUnavailableError: unpublished, or not obtainable (see :func:`~ntre_zoo.zoo.download.hub_download`).
        ChecksumMismatchError: the weights file differs from the manifest's sha256.
        FileNotFoundError: a package entry whose file is missing.
    """
    if not entry.published:
        raise _unpublished_error(entry)
    if entry.source == "package":
        weights, config = entry.package_paths()
        for path in (weights, config):
            if not path.is_file():
                raise FileNotFoundError(f"{entry.name}: packaged file {str(path)!r} is missing; reinstall ntre-zoo.")
    else:
        options = DownloadOptions(
            cache_dir=cache_dir, local_files_only=local_files_only, endpoint=endpoint, token=token
        )
        repo_id, filename, revision = entry.hub.pinned()
        weights = hub_download(repo_id, filename, revision=revision, **options)
        config = hub_download(repo_id, CONFIG_NAME, revision=revision, **options)
    verify_sha256(weights, entry.expected_sha256, entry.name)
    return config, weights


def _parse_hf_hub(spec: str, revision: str | None) -> tuple[str, str | None]:
    repo_id, _, at = spec[len("hf-hub:") :].partition("@")
    if not repo_id or repo_id.count("/") != 1:
        raise ValueError(f"{spec!r} is not 'hf-hub:<owner>/<name>[@<revision>]'.")
    if at and revision and at != revision:
        raise ValueError(f"{spec!r} pins revision {at!r} but revision={revision!r} was also given; pass one.")
    return repo_id, at or revision


def from_pretrained(
    name_or_path: PathLike | None = None,
    *,
    backbone: str | None = None,
    dataset: str | None = None,
    fold: int | None = None,
    shot: int | None = None,
    revision: str | None = None,
    device: Any | None = None,
    cache_dir: PathLike | None = None,
    local_files_only: bool = False,
    manifest: PathLike | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    **overrides: Any,
) -> NTRENet:
    """Load pretrained NTRENet weights, in eval mode.

    ``name_or_path`` may be:

    * a zoo name from the manifest (``ntrenet_resnet50.pascal5i_fold0``; ``ntre-zoo list`` shows them),
      downloaded at the entry's pinned revision and checked against its sha256;
    * ``hf-hub:<repo_id>[@<revision>]`` (timm's convention), any repository written by ``push_to_hub``;
    * a local directory holding ``config.json`` and ``model.safetensors``;
    * None, with ``backbone=``, ``dataset=``, ``fold=`` (and ``shot=`` for a K-shot-trained checkpoint).

    Args:
        revision: a Hub revision for ``hf-hub:`` ids.
        device: where to put the model.
        cache_dir: huggingface_hub cache (default: ``HF_HUB_CACHE`` / ``HF_HOME`` / ``~/.cache/huggingface/hub``).
        local_files_only: never touch the network (also when ``HF_HUB_OFFLINE=1``).
        manifest: a manifest file to use instead of the shipped one.
        endpoint: a Hub mirror (default ``HF_ENDPOINT``).
        token: a Hub token for private repositories.
        **overrides: ModelConfig fields that may differ at load time (``test_size``, ``mean``, ``std``, dropouts).

    Raises:
        UnknownModelError: an unknown name, with the closest names.
        WeightsUnavailableError: unpublished or unobtainable weights, saying how to get them.
        ChecksumMismatchError: downloaded weights that differ from the manifest's sha256.
        StateDictMismatchError: weights that do not fit the config, naming the keys.
        ValueError: conflicting or architecture-changing arguments.
    """
    download = DownloadOptions(cache_dir=cache_dir, local_files_only=local_files_only, endpoint=endpoint, token=token)
    if name_or_path is None:
        if backbone is None or dataset is None or fold is None:
            raise ValueError("Pass a name, an 'hf-hub:' id or a directory, or all of backbone=, dataset= and fold=.")
        entry = load_manifest(manifest).find(backbone, dataset, fold, shot)
        return _load_files(*fetch_entry(entry, **download), entry.name, device, overrides)
    if any(v is not None for v in (backbone, dataset, fold, shot)):
        raise ValueError(
            "backbone=/dataset=/fold=/shot= select a checkpoint when no name is given; "
            f"{str(name_or_path)!r} already names one."
        )
    spec = str(name_or_path)
    if spec.startswith("hf-hub:"):
        repo_id, rev = _parse_hf_hub(spec, revision)
        weights = hub_download(repo_id, WEIGHTS_NAME, revision=rev, **download)
        config = hub_download(repo_id, CONFIG_NAME, revision=rev, **download)
        _verify_known_commit(load_manifest(manifest), repo_id, weights)
        return _load_files(config, weights, spec, device, overrides)
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_pretrained_dir(path, device=device, **overrides)
    if path.exists() or os.sep in spec or spec.startswith("."):
        raise FileNotFoundError(
            f"{spec!r} is not a directory holding {CONFIG_NAME} and {WEIGHTS_NAME}. Pass such a directory "
            "(written by save_pretrained or `ntre-zoo convert`), a zoo name or 'hf-hub:<repo_id>'."
        )
    if revision is not None:
        raise ValueError(
            f"Zoo names are pinned to a revision in the manifest; for another one use 'hf-hub:<repo_id>@{revision}'."
        )
    entry = load_manifest(manifest).get(spec)
    return _load_files(*fetch_entry(entry, **download), entry.name, device, overrides)


def _verify_known_commit(manifest: Manifest, repo_id: str, weights: Path) -> None:
    """An ``hf-hub:`` download at a commit the manifest lists gets that entry's sha256 check."""
    commit = weights.parent.name
    for entry in manifest.entries.values():
        if entry.source == "hub" and entry.hub.repo_id == repo_id and entry.hub.revision == commit:
            verify_sha256(weights, entry.hub.sha256, entry.name)
