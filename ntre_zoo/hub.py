"""Saving, publishing and loading NTRENet weights: ``save_pretrained``, ``push_to_hub``, ``from_pretrained``.

A saved model is a directory with ``config.json`` (architecture, :class:`~ntre_zoo.config.ModelConfig`,
preprocessing, package version, metadata), ``model.safetensors`` and a ``README.md`` model card. Weights
are read with safetensors only (no pickle) and loaded strictly. ``from_pretrained`` accepts a zoo name
from the manifest, ``hf-hub:<repo_id>[@<revision>]``, a local directory, or ``backbone=/dataset=/fold=``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import safetensors.torch

from ._atomic import atomic_write, atomic_write_text
from ._classnames import BENCHMARK_CLASSES, fold_classes
from ._download import hub_download, resolve_endpoint, sha256_file, verify_sha256
from ._loading import load_state_dict_strict
from ._model_card import render_model_card
from .config import ModelConfig
from .errors import WeightsUnavailableError
from .manifest import HubLocation, Manifest, ManifestEntry, load_manifest, model_name
from .model import NTRENet

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "PushResult",
    "from_pretrained",
    "load_pretrained_dir",
    "push_to_hub",
    "save_pretrained",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "README.md"
ARCHITECTURE = "ntrenet"
#: ModelConfig fields that may differ at load time; the others change the architecture.
LOAD_OVERRIDES = ("test_size", "mean", "std", "reduce_dropout", "classifier_dropout")
_ARCHITECTURE_FIELDS = (
    "backbone", "reduce_dim", "pyramid_bins", "bg_prototypes", "bg_eliminating", "do_eliminating", "layers", "channels",
    "stem_width",
)
PathLike = Union[str, Path]


# ---------------------------------------------------------------------------------------------- saving
def _full_metadata(metadata: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    meta = dict(metadata or {})
    dataset, fold = meta.get("dataset"), meta.get("fold")
    if dataset in BENCHMARK_CLASSES and fold in (0, 1, 2, 3):
        train, test = fold_classes(dataset, fold)
        meta.setdefault("train_classes", train)
        meta.setdefault("test_classes", test)
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"metadata must be JSON-serialisable (str, numbers, lists, dicts): {error}. "
            "Convert tensors with .item()/.tolist()."
        ) from error
    return meta


def build_config(model: NTRENet, metadata: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The ``config.json`` dict of ``model``."""
    from . import __version__

    cfg = model.config
    return {
        "architecture": ARCHITECTURE,
        "model_config": cfg.to_dict(),
        "preprocessing": {
            "test_size": cfg.test_size, "mean": list(cfg.mean), "std": list(cfg.std), "input": "RGB in [0, 1]"
        },
        "ntre_zoo_version": __version__,
        "metadata": _full_metadata(metadata),
    }


def save_pretrained(model: NTRENet, save_directory: PathLike, *, metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``config.json``, ``model.safetensors`` and a ``README.md`` model card to ``save_directory``.

    Each file is written to a temporary file in the same directory and moved into place, so an interrupted
    save leaves the previous files intact and no partial ``model.safetensors``.

    Args:
        model: the model to save.
        save_directory: created if needed.
        metadata: JSON-serialisable facts about the weights, e.g. ``dataset``, ``fold``, ``metrics``
            (``train_classes``/``test_classes`` are filled in for PASCAL-5i and COCO-20i folds).

    Returns:
        The directory.

    Raises:
        TypeError: metadata that is not JSON-serialisable.
    """
    directory = Path(save_directory)
    config = build_config(model, metadata)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    from . import __version__

    atomic_write(
        directory / WEIGHTS_NAME,
        lambda tmp: safetensors.torch.save_file(state, tmp, metadata={"format": "pt", "ntre_zoo_version": __version__}),
    )
    atomic_write_text(directory / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    atomic_write_text(directory / MODEL_CARD_NAME, render_model_card(config, repo_id=config["metadata"].get("repo_id", "")))
    return directory


# ---------------------------------------------------------------------------------------------- publishing
@dataclass(frozen=True)
class PushResult:
    """What ``push_to_hub`` uploaded.

    Args:
        entry: the manifest entry to paste into ``checkpoints_manifest.json``.
        commit: the uploaded commit (the entry's pinned revision).
        commit_url: the commit's page.
    """

    entry: ManifestEntry
    commit: str
    commit_url: str

    def manifest_snippet(self) -> str:
        """``"name": {...}`` JSON, ready for the manifest's ``models`` object."""
        return json.dumps({self.entry.name: self.entry.to_dict()}, indent=2)


def push_to_hub(
    model: NTRENet,
    repo_id: str,
    *,
    metadata: Optional[Mapping[str, Any]] = None,
    private: Optional[bool] = None,
    token: Optional[str] = None,
    endpoint: Optional[str] = None,
    branch: Optional[str] = None,
    commit_message: Optional[str] = None,
    name: Optional[str] = None,
) -> PushResult:
    """Save ``model`` and upload it to a Hub model repository, then print its manifest entry.

    Args:
        model: the model.
        repo_id: ``owner/name``; created if missing. Use the zoo name as repository name.
        metadata: as for :func:`save_pretrained`; ``dataset`` and ``fold`` name the entry, ``metrics``
            with ``episodes``, ``seed`` and ``command`` become the entry's measured metrics.
        private: create the repository private.
        token: a Hub token (default: the logged-in one).
        endpoint: another Hub endpoint (default ``HF_ENDPOINT``).
        branch: upload to this branch instead of ``main``.
        commit_message: defaults to "Upload <name>".
        name: the zoo name, when metadata lacks ``dataset``/``fold``.

    Returns:
        A :class:`PushResult`; its ``manifest_snippet()`` is what was printed.

    Raises:
        ValueError: neither ``name`` nor ``dataset`` and ``fold`` in metadata.
    """
    from huggingface_hub import HfApi

    from . import __version__

    meta = dict(metadata or {})
    cfg = model.config
    if name is None:
        if meta.get("dataset") is None or meta.get("fold") is None:
            raise ValueError(
                "push_to_hub needs the checkpoint's name: pass metadata={'dataset': ..., 'fold': ...} "
                "(the name becomes ntrenet_<backbone>.<dataset>_fold<k>) or name=."
            )
        name = model_name(cfg.backbone.name, meta["dataset"], int(meta["fold"]), cfg.shot)
    meta.setdefault("name", name)
    meta.setdefault("repo_id", repo_id)
    measured = dict(meta.get("metrics") or {})
    if not all(k in measured for k in ("episodes", "seed", "command")):
        if measured:
            print("note: metadata['metrics'] lacks episodes/seed/command, so the entry's measured metrics stay empty.")
        measured = {}
    api = HfApi(endpoint=resolve_endpoint(endpoint), token=token, library_name="ntre-zoo", library_version=__version__)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, metadata=meta)
        digest = sha256_file(Path(tmp) / WEIGHTS_NAME)
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id, folder_path=tmp, revision=branch, commit_message=commit_message or f"Upload {name}"
        )
    reference = _reference_metrics(name)
    entry = ManifestEntry(
        name=name,
        backbone=cfg.backbone.name,
        dataset=str(meta.get("dataset", "")),
        fold=int(meta.get("fold", 0)),
        train_shot=cfg.shot,
        status="published",
        source="hub",
        hub=HubLocation(repo_id=repo_id, revision=info.oid, filename=WEIGHTS_NAME, sha256=digest),
        metrics={"reference": reference, "measured": measured},
    )
    result = PushResult(entry=entry, commit=info.oid, commit_url=str(info.commit_url))
    print(f"Uploaded {name} to {repo_id} at {info.oid}. Paste this entry into checkpoints_manifest.json 'models':")
    print(result.manifest_snippet())
    return result


def _reference_metrics(name: str) -> Dict[str, Any]:
    entry = load_manifest().entries.get(name)
    return dict(entry.metrics["reference"]) if entry else {}


# ---------------------------------------------------------------------------------------------- loading
def _read_config(path: Path) -> Dict[str, Any]:
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
    config_path: Path, weights_path: Path, source: str, device: Optional[Any], overrides: Mapping[str, Any]
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


def load_pretrained_dir(directory: PathLike, *, device: Optional[Any] = None, **overrides: Any) -> NTRENet:
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
    cache_dir: Optional[PathLike] = None,
    local_files_only: bool = False,
    endpoint: Optional[str] = None,
    token: Optional[str] = None,
) -> Tuple[Path, Path]:
    """``(config, weights)`` paths of a manifest entry, downloaded if needed and sha256-checked.

    Raises:
        WeightsUnavailableError: unpublished, or not obtainable (see :func:`~ntre_zoo._download.hub_download`).
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
        options = dict(
            revision=entry.hub.revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            endpoint=endpoint,
            token=token,
        )
        weights = hub_download(entry.hub.repo_id, entry.hub.filename, **options)
        config = hub_download(entry.hub.repo_id, CONFIG_NAME, **options)
    verify_sha256(weights, entry.expected_sha256, entry.name)
    return config, weights


def _parse_hf_hub(spec: str, revision: Optional[str]) -> Tuple[str, Optional[str]]:
    repo_id, _, at = spec[len("hf-hub:") :].partition("@")
    if not repo_id or repo_id.count("/") != 1:
        raise ValueError(f"{spec!r} is not 'hf-hub:<owner>/<name>[@<revision>]'.")
    if at and revision and at != revision:
        raise ValueError(f"{spec!r} pins revision {at!r} but revision={revision!r} was also given; pass one.")
    return repo_id, at or revision


def from_pretrained(
    name_or_path: Optional[PathLike] = None,
    *,
    backbone: Optional[str] = None,
    dataset: Optional[str] = None,
    fold: Optional[int] = None,
    shot: Optional[int] = None,
    revision: Optional[str] = None,
    device: Optional[Any] = None,
    cache_dir: Optional[PathLike] = None,
    local_files_only: bool = False,
    manifest: Optional[PathLike] = None,
    endpoint: Optional[str] = None,
    token: Optional[str] = None,
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
    download = dict(cache_dir=cache_dir, local_files_only=local_files_only, endpoint=endpoint, token=token)
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
