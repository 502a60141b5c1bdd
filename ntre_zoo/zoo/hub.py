"""``from_pretrained``: load NTRENet weights from a zoo name, a Hub repository or a local directory.

Weights are read with safetensors only (no pickle), checked against the manifest's sha256 where it
knows them, and loaded strictly. ``from_pretrained`` accepts a zoo name from the manifest,
``hf-hub:<repo_id>[@<revision>]``, a local directory, or ``backbone=/dataset=/fold=``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors
import torch

from ..errors import WeightsUnavailableError
from ..model.config import ModelConfig, resolve_device
from ..model.ntrenet import NTRENet
from .download import DownloadOptions, hub_download, verify_sha256
from .loading import load_state_dict_strict
from .manifest import Manifest, ManifestEntry, load_manifest
from .saving import ARCHITECTURE, CONFIG_NAME, HEADER_CONFIG_KEY, WEIGHTS_NAME

__all__ = ["LOAD_OVERRIDES", "download_hf_hub", "fetch_entry", "from_pretrained", "load_pretrained_dir"]

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


def _permission_denied(path: Path) -> PermissionError:
    return PermissionError(
        f"{str(path)!r}: permission denied (the file exists but this user cannot read it). Ask its owner to make "
        "it readable (chmod a+r; ntre-zoo writes files with the umask's mode), or copy the model directory."
    )


def _read_config(path: Path) -> dict[str, Any]:
    """A ``config.json`` written by ``save_pretrained``, checked to be one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{str(path)!r} does not exist; a saved model directory holds {CONFIG_NAME} and {WEIGHTS_NAME}."
        ) from None
    except PermissionError:
        raise _permission_denied(path) from None
    except (IsADirectoryError, UnicodeDecodeError) as error:
        raise ValueError(f"{str(path)!r} is not a readable {CONFIG_NAME} ({error}).") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{str(path)!r} is not valid JSON ({error}); save the model again with save_pretrained, or fix the file."
        ) from None
    except RecursionError:
        raise ValueError(
            f"{str(path)!r} nests its JSON too deeply to be read (thousands of levels); it is not a {CONFIG_NAME} "
            "written by save_pretrained. Save the model again, or fix the file."
        ) from None
    return _check_config(config, repr(str(path)))


def _check_config(config: Any, where: str) -> dict[str, Any]:
    if not isinstance(config, dict) or config.get("architecture") != ARCHITECTURE or "model_config" not in config:
        found = config.get("architecture") if isinstance(config, dict) else type(config).__name__
        raise ValueError(
            f"{where} is not an ntre-zoo NTRENet config (architecture {found!r}); was it written by save_pretrained?"
        )
    model_config = config["model_config"]
    if not isinstance(model_config, dict) or "test_size" not in model_config:
        raise ValueError(
            f"{where}: model_config must be a JSON object with test_size (the canvas side the weights expect, 473 "
            "in the reference protocol); it is not guessed. Save the model again with save_pretrained, or add it."
        )
    return config


def _model_config(config: Mapping[str, Any], where: str) -> ModelConfig:
    """The ``ModelConfig`` of a checked config; bad values are reported with the file they came from."""
    try:
        return ModelConfig.from_dict(config["model_config"])
    except (TypeError, ValueError) as error:
        raise type(error)(f"{where}: {error}") from None


def _read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The tensors of a safetensors file, and the ``config.json`` dict its header carries (None in files
    written before ``save_pretrained`` stored it), read from one open file."""
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise FileNotFoundError(f"{str(path)!r} does not exist; save weights with save_pretrained.") from None
    except PermissionError:
        raise _permission_denied(path) from None
    try:
        with safetensors.safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # safetensors raises its own SafetensorError for a bad header
        raise ValueError(f"{str(path)!r} is not a readable safetensors file: {error}.") from error
    stored = header.get(HEADER_CONFIG_KEY)
    if stored is None:
        return state, None
    try:
        return state, _check_config(json.loads(stored), f"the config stored in {str(path)!r}")
    except (json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{str(path)!r} carries a config that is not valid JSON ({error!r}).") from None


def _choose_config(on_disk: dict[str, Any] | None, stored: dict[str, Any] | None, config_path: Path) -> dict:
    """``config.json``, unless it is a leftover of an earlier save than the weights (its ``save_id`` differs
    from theirs: a save killed between the two renames); then the config the weights were saved with."""
    if stored is None or (on_disk is not None and on_disk.get("save_id") == stored.get("save_id")):
        if on_disk is None:
            raise FileNotFoundError(
                f"{str(config_path)!r} does not exist; a saved model directory holds {CONFIG_NAME} and {WEIGHTS_NAME}."
            )
        return on_disk
    if on_disk is not None:
        warnings.warn(
            f"{str(config_path)!r} is from another save than {WEIGHTS_NAME} (an interrupted save_pretrained?); "
            "loading the weights with the config they were saved with. Save the model again to rewrite it.",
            stacklevel=3,
        )
    return stored


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
    device = resolve_device(device)
    # config.json is read before the weights are opened, so that a save switching both in between is seen
    # either whole (the weights' own config wins) or not at all.
    on_disk = _read_config(config_path) if config_path.exists() or not weights_path.exists() else None
    state, stored = _read_weights(weights_path)
    config = _choose_config(on_disk, stored, config_path)
    where = repr(str(config_path)) if config is on_disk else f"the config stored in {str(weights_path)!r}"
    model_config = _apply_overrides(_model_config(config, where), overrides)
    model = NTRENet(model_config)
    load_state_dict_strict(model, state, source=source, hint="The weights belong to another architecture or version.")
    model.pretrained_metadata = dict(config.get("metadata") or {})
    model.eval()
    return model if device is None else model.to(device)


def load_pretrained_dir(directory: PathLike, *, device: Any | None = None, **overrides: Any) -> NTRENet:
    """Load a directory written by :func:`save_pretrained` (``config.json`` + ``model.safetensors``)."""
    directory = Path(directory)
    if not (directory / CONFIG_NAME).exists() and not (directory / WEIGHTS_NAME).exists():
        exported = [directory / sub for sub in ("best", "last") if (directory / sub / CONFIG_NAME).is_file()]
        if exported:
            raise FileNotFoundError(
                f"{str(directory)!r} is a training run's output directory, not a saved model; load the weights it "
                f"exported: {' or '.join(repr(str(p)) for p in exported)} (best: the best validation score; last: "
                "the last epoch)."
            )
    return _load_files(directory / CONFIG_NAME, directory / WEIGHTS_NAME, repr(str(directory)), device, overrides)


def _unpublished_error(entry: ManifestEntry, manifest: PathLike | None = None) -> WeightsUnavailableError:
    other = f" --manifest {shlex.quote(str(manifest))}" if manifest is not None else ""
    return WeightsUnavailableError(
        f"{entry.name} is registered in the manifest but unpublished: no weights have been released for it "
        "(the authors published none either). To make exactly this entry, run "
        f"`ntre-zoo reproduce {entry.name} --data-root DIR -o zoo{other}` (DIR: the prepared {entry.dataset} "
        "data, see docs/data.md; GPU time not yet measured, see docs/reproducing.md): it trains the entry's "
        f"recipe, evaluates it and writes zoo/{entry.name}/, which from_pretrained('zoo/{entry.name}') loads. "
        f"Or train it yourself (`ntre-zoo train`, backbone {entry.backbone}, {entry.dataset} fold {entry.fold}) "
        "and load the run's OUT/best or OUT/last with from_pretrained, or convert a checkpoint of the authors' "
        f"code with `ntre-zoo convert CHECKPOINT.pth --backbone {entry.backbone} -o DIR`. "
        "`ntre-zoo list --published` shows the weights that can be downloaded."
    )


def _check_revision(entry: ManifestEntry, revision: str | None) -> None:
    """A ``revision`` given with a manifest entry may only repeat the commit the manifest pins."""
    if revision is None:
        return
    if entry.source == "package":
        raise ValueError(
            f"{entry.name} ships inside the package, so it has no Hub revision; drop revision={revision!r}."
        )
    if revision != entry.hub.revision:
        raise ValueError(
            f"The manifest pins {entry.name} to commit {entry.hub.revision} of {entry.hub.repo_id} (the commit "
            f"whose sha256 it records), so revision={revision!r} is refused. Drop revision=, or load that "
            f"revision as from_pretrained('hf-hub:{entry.hub.repo_id}@{revision}') (sha256-checked only at a "
            "commit the manifest lists)."
        )


def fetch_entry(
    entry: ManifestEntry,
    *,
    revision: str | None = None,
    force_download: bool = False,
    cache_dir: PathLike | None = None,
    local_files_only: bool = False,
    endpoint: str | None = None,
    token: str | bool | None = None,
    manifest: PathLike | None = None,
) -> tuple[Path, Path]:
    """``(config, weights)`` paths of a manifest entry, downloaded if needed and sha256-checked.

    Args:
        revision: must be None or the commit the entry pins.
        force_download: download again even if cached (the sha256 check still applies).
        manifest: the manifest file the entry came from when it is not the shipped one (named in the
            command of the unpublished-entry message).

    Raises:
        WeightsUnavailableError: unpublished, or not obtainable (see :func:`~ntre_zoo.zoo.download.hub_download`).
        ChecksumMismatchError: the weights file differs from the manifest's sha256.
        FileNotFoundError: a package entry whose file is missing.
        ValueError: a ``revision`` other than the pinned commit.
    """
    if not entry.published:
        raise _unpublished_error(entry, manifest)
    _check_revision(entry, revision)
    if entry.source == "package":
        weights, config = entry.package_paths()
        for path in (weights, config):
            if not path.is_file():
                raise FileNotFoundError(f"{entry.name}: packaged file {str(path)!r} is missing; reinstall ntre-zoo.")
    else:
        options = DownloadOptions(
            cache_dir=cache_dir, local_files_only=local_files_only, endpoint=endpoint, token=token
        )
        repo_id, filename, pinned = entry.hub.pinned()
        command = f"ntre-zoo download {entry.name}"
        weights, config = (
            hub_download(
                repo_id, file, revision=pinned, force_download=force_download, download_command=command, **options
            )
            for file in (filename, CONFIG_NAME)
        )
    verify_sha256(weights, entry.expected_sha256, entry.name)
    return config, weights


def download_hf_hub(
    spec: str,
    options: DownloadOptions,
    *,
    revision: str | None = None,
    force_download: bool = False,
    manifest: PathLike | None = None,
) -> tuple[Path, Path]:
    """``(config, weights)`` paths of an ``hf-hub:<repo_id>[@<revision>]`` id, downloaded into the cache if
    needed (``options``: cache, offline mode, endpoint, token; ``force_download``: even if cached) and
    sha256-checked when the manifest lists that commit."""
    repo_id, rev = _parse_hf_hub(spec, revision)
    weights = hub_download(repo_id, WEIGHTS_NAME, revision=rev, force_download=force_download, **options)
    config = hub_download(repo_id, CONFIG_NAME, revision=rev, force_download=force_download, **options)
    _verify_known_commit(load_manifest(manifest), repo_id, weights)
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
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
    manifest: PathLike | None = None,
    endpoint: str | None = None,
    **overrides: Any,
) -> NTRENet:
    """Load pretrained NTRENet weights, in eval mode.

    ``name_or_path`` may be:

    * a zoo name from the manifest (``ntrenet_resnet50.pascal5i_fold0``; ``ntre-zoo list`` shows them),
      downloaded at the entry's pinned revision and checked against its sha256;
    * ``hf-hub:<repo_id>[@<revision>]`` (timm's convention), any repository written by ``push_to_hub``;
    * a local directory holding ``config.json`` and ``model.safetensors``;
    * None, with ``backbone=``, ``dataset=``, ``fold=`` (and ``shot=`` for a K-shot-trained checkpoint).

    ``revision``, ``cache_dir``, ``force_download``, ``local_files_only`` and ``token`` mean what they mean in
    ``huggingface_hub`` (``ModelHubMixin.from_pretrained``, ``hf_hub_download``). A local directory ignores
    the download keywords, as huggingface_hub does, and refuses ``revision``.

    Args:
        revision: a Hub branch, tag or commit for ``hf-hub:`` ids without ``@<revision>`` (equal if both are
            given). A zoo name is pinned by the manifest: only its pinned commit is accepted.
        device: where to put the model.
        cache_dir: huggingface_hub cache (default: ``HF_HUB_CACHE`` / ``HF_HOME`` / ``~/.cache/huggingface/hub``).
        force_download: download again even if the files are cached; a zoo name's weights are still
            checked against the manifest's sha256.
        local_files_only: never touch the network (also when ``HF_HUB_OFFLINE=1``).
        token: a Hub token for private repositories (``True``: the saved one, ``False``: none; default:
            ``HF_TOKEN`` or the one saved by ``hf auth login``).
        manifest: a manifest file to use instead of the shipped one.
        endpoint: a Hub mirror (default ``HF_ENDPOINT``).
        **overrides: ModelConfig fields that may differ at load time (``test_size``, ``mean``, ``std``, dropouts).

    Raises:
        UnknownModelError: an unknown name, with the closest names.
        WeightsUnavailableError: unpublished or unobtainable weights, saying how to get them.
        ChecksumMismatchError: downloaded weights that differ from the manifest's sha256.
        StateDictMismatchError: weights that do not fit the config, naming the keys.
        ValueError: conflicting or architecture-changing arguments, a ``revision`` other than a zoo name's
            pinned commit or with a local directory, ``force_download`` while downloads are off.
    """
    download = DownloadOptions(cache_dir=cache_dir, local_files_only=local_files_only, endpoint=endpoint, token=token)

    def load_entry(entry: ManifestEntry) -> NTRENet:
        paths = fetch_entry(entry, revision=revision, force_download=force_download, manifest=manifest, **download)
        return _load_files(*paths, entry.name, device, overrides)

    if name_or_path is None:
        if backbone is None or dataset is None or fold is None:
            raise ValueError("Pass a name, an 'hf-hub:' id or a directory, or all of backbone=, dataset= and fold=.")
        return load_entry(load_manifest(manifest).find(backbone, dataset, fold, shot))
    if any(v is not None for v in (backbone, dataset, fold, shot)):
        raise ValueError(
            "backbone=/dataset=/fold=/shot= select a checkpoint when no name is given; "
            f"{str(name_or_path)!r} already names one."
        )
    spec = str(name_or_path)
    if spec.startswith("hf-hub:"):
        config, weights = download_hf_hub(
            spec, download, revision=revision, force_download=force_download, manifest=manifest
        )
        return _load_files(config, weights, spec, device, overrides)
    path = Path(spec).expanduser()
    if path.is_dir():
        if revision is not None:
            raise ValueError(
                f"{spec!r} is a local directory, which has no revision; drop revision={revision!r}, or load a Hub "
                f"revision with 'hf-hub:<repo_id>@{revision}'."
            )
        return load_pretrained_dir(path, device=device, **overrides)
    if path.exists() or os.sep in spec or spec.startswith("."):
        raise FileNotFoundError(
            f"{spec!r} is not a directory holding {CONFIG_NAME} and {WEIGHTS_NAME}. Pass such a directory "
            "(written by save_pretrained or `ntre-zoo convert`), a zoo name or 'hf-hub:<repo_id>'."
        )
    return load_entry(load_manifest(manifest).get(spec))


def _verify_known_commit(manifest: Manifest, repo_id: str, weights: Path) -> None:
    """An ``hf-hub:`` download at a commit the manifest lists gets that entry's sha256 check."""
    commit = weights.parent.name
    for entry in manifest.entries.values():
        if entry.source == "hub" and entry.hub.repo_id == repo_id and entry.hub.revision == commit:
            verify_sha256(weights, entry.hub.sha256, entry.name)
