"""The checkpoints manifest: which NTRENet weights exist, where they live and what they score.

``checkpoints_manifest.json`` (shipped inside the package, symlinked at the repository root) holds
``{"schema_version": 1, "models": {name: entry}}``. Names follow ``ntrenet_{backbone}.{dataset}_fold{k}``,
with ``_{K}shot`` appended for a separately trained K-shot checkpoint. ``docs/zoo.md`` documents the schema.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ManifestError, UnknownModelError

__all__ = [
    "SCHEMA_VERSION",
    "HubLocation",
    "Manifest",
    "ManifestEntry",
    "default_manifest_path",
    "list_models",
    "load_manifest",
    "model_name",
]

SCHEMA_VERSION = 1
_STATUSES = ("published", "unpublished")
_SOURCES = ("hub", "package")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MEASURED_REQUIRED = ("episodes", "seed", "command")
PathLike = str | os.PathLike[str]


def default_manifest_path() -> Path:
    """The manifest shipped inside the package."""
    return Path(__file__).resolve().parent.parent / "checkpoints_manifest.json"


def model_name(backbone: str, dataset: str, fold: int, train_shot: int = 1) -> str:
    """The zoo name of a checkpoint, e.g. ``ntrenet_resnet50.pascal5i_fold0`` or ``..._fold0_5shot``."""
    name = f"ntrenet_{backbone}.{dataset}_fold{fold}"
    return name if train_shot == 1 else f"{name}_{train_shot}shot"


@dataclass(frozen=True)
class HubLocation:
    """Where published weights live on the Hugging Face Hub (all None while unpublished).

    Args:
        repo_id: the model repository, e.g. ``ntre-zoo/ntrenet_resnet50.pascal5i_fold0``.
        revision: the 40-hex commit the weights were uploaded in (never a branch: downloads are pinned).
        filename: the weights file in the repository, ``model.safetensors``.
        sha256: hex digest of that file, checked after every download.
    """

    repo_id: str | None = None
    revision: str | None = None
    filename: str | None = None
    sha256: str | None = None

    @property
    def is_empty(self) -> bool:
        return all(v is None for v in dataclasses.astuple(self))

    def pinned(self) -> tuple[str, str, str]:
        """``(repo_id, filename, revision)`` of published weights; ManifestError when any is missing."""
        if self.repo_id is None or self.filename is None or self.revision is None:
            raise ManifestError(f"Hub location {self} lacks repo_id, filename or revision; it cannot be downloaded.")
        return self.repo_id, self.filename, self.revision


@dataclass(frozen=True)
class ManifestEntry:
    """One checkpoint of the manifest.

    Args:
        name: the zoo name.
        backbone, dataset, fold, train_shot: what the weights were trained as.
        status: ``published`` (weights can be had) or ``unpublished`` (registered, no weights yet).
        source: ``hub`` (downloaded from ``hub``) or ``package`` (a file shipped inside the package).
        hub: the Hub location (source ``hub``).
        file: weights path relative to the manifest's directory (source ``package``); the package
            directory for the shipped manifest.
        config_file: the matching ``config.json``, relative like ``file`` (default: ``file`` with ``.json``).
        sha256: hex digest of ``file`` (source ``package``).
        metrics: ``{"reference": paper numbers, "measured": numbers from ``ntre-zoo evaluate``}``.
        base_dir: the directory relative paths resolve against.
    """

    name: str
    backbone: str
    dataset: str
    fold: int
    train_shot: int
    status: str
    source: str = "hub"
    hub: HubLocation = field(default_factory=HubLocation)
    file: str | None = None
    config_file: str | None = None
    sha256: str | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=lambda: {"reference": {}, "measured": {}})
    base_dir: Path | None = None

    @property
    def published(self) -> bool:
        return self.status == "published"

    @property
    def expected_sha256(self) -> str | None:
        """The digest the weights file must have."""
        return self.sha256 if self.source == "package" else self.hub.sha256

    def package_paths(self) -> tuple[Path, Path]:
        """``(weights, config)`` absolute paths of a ``package`` entry."""
        base = self.base_dir or default_manifest_path().parent
        weights = base / str(self.file)
        config = base / self.config_file if self.config_file else weights.with_suffix(".json")
        return weights, config

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written in the manifest (without the name, which is the key)."""
        data: dict[str, Any] = {
            "backbone": self.backbone,
            "dataset": self.dataset,
            "fold": self.fold,
            "train_shot": self.train_shot,
            "source": self.source,
        }
        if self.source == "hub":
            data["hub"] = dataclasses.asdict(self.hub)
        else:
            data["file"] = self.file
            if self.config_file:
                data["config_file"] = self.config_file
            data["sha256"] = self.sha256
        data["metrics"] = self.metrics
        data["status"] = self.status
        return data

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any], base_dir: Path | None = None) -> ManifestEntry:
        """Parse and validate one entry.

        Raises:
            ManifestError: a missing or malformed field, naming the entry and the field.
        """
        where = f"manifest entry {name!r}"
        if not isinstance(data, Mapping):
            raise ManifestError(f"{where} must be an object, got {type(data).__name__}.")
        for key in ("backbone", "dataset", "fold", "train_shot", "status", "metrics"):
            if key not in data:
                raise ManifestError(f"{where} lacks the field {key!r}; see docs/zoo.md for the schema.")
        status, source = data["status"], data.get("source", "hub")
        if status not in _STATUSES:
            raise ManifestError(f"{where}: status must be one of {_STATUSES}, got {status!r}.")
        if source not in _SOURCES:
            raise ManifestError(f"{where}: source must be one of {_SOURCES}, got {source!r}.")
        for key in ("fold", "train_shot"):
            if not isinstance(data[key], int) or data[key] < 0:
                raise ManifestError(f"{where}: {key} must be a non-negative integer, got {data[key]!r}.")
        hub = HubLocation(**_only(data.get("hub") or {}, HubLocation, where + " hub"))
        entry = cls(
            name=name,
            backbone=str(data["backbone"]),
            dataset=str(data["dataset"]),
            fold=data["fold"],
            train_shot=data["train_shot"],
            status=status,
            source=source,
            hub=hub,
            file=data.get("file"),
            config_file=data.get("config_file"),
            sha256=data.get("sha256"),
            metrics=_metrics(data["metrics"], where),
            base_dir=base_dir,
        )
        entry._validate_location(where)
        return entry

    def _validate_location(self, where: str) -> None:
        if self.source == "package":
            if not self.file or not self.sha256 or not _SHA256.fullmatch(self.sha256):
                raise ManifestError(f"{where}: a package entry needs 'file' and a 64-hex lowercase 'sha256'.")
            if not self.published:
                raise ManifestError(f"{where}: a package entry ships its weights, so its status must be 'published'.")
            return
        if not self.published:
            if not self.hub.is_empty:
                raise ManifestError(
                    f"{where} is unpublished but has hub fields {dataclasses.asdict(self.hub)}; set them all to null "
                    "until weights are uploaded (never fill in a repo, commit or hash nobody produced)."
                )
            return
        problems = []
        if not self.hub.repo_id or "/" not in self.hub.repo_id:
            problems.append(f"repo_id {self.hub.repo_id!r} is not 'owner/name'")
        if not self.hub.revision or not _COMMIT.fullmatch(self.hub.revision):
            problems.append(f"revision {self.hub.revision!r} is not a 40-hex commit")
        if not self.hub.filename:
            problems.append("filename is empty")
        if not self.hub.sha256 or not _SHA256.fullmatch(self.hub.sha256):
            problems.append(f"sha256 {self.hub.sha256!r} is not 64 lowercase hex digits")
        if problems:
            raise ManifestError(f"{where} is published but its hub location is invalid: {'; '.join(problems)}.")


def _only(data: Mapping[str, Any], cls: type, where: str) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {unknown}; expected {sorted(known)}.")
    return dict(data)


def _metrics(data: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(data, Mapping) or set(data) - {"reference", "measured"}:
        raise ManifestError(f"{where}: metrics must be an object with 'reference' and 'measured', got {data!r}.")
    measured = dict(data.get("measured") or {})
    missing = [k for k in _MEASURED_REQUIRED if k not in measured]
    if measured and missing:
        raise ManifestError(
            f"{where}: measured metrics must say how they were produced; missing {missing} "
            "(record the episodes, seed and the `ntre-zoo evaluate` command used)."
        )
    return {"reference": dict(data.get("reference") or {}), "measured": measured}


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest file.

    Args:
        path: the file it was read from.
        entries: entries by name, in file order.
    """

    path: Path
    entries: dict[str, ManifestEntry]
    schema_version: int = SCHEMA_VERSION

    def names(self, pattern: str = "*", published_only: bool = False) -> list[str]:
        """Sorted names matching an ``fnmatch`` pattern."""
        return sorted(
            n
            for n, e in self.entries.items()
            if fnmatch.fnmatchcase(n, pattern) and (e.published or not published_only)
        )

    def get(self, name: str) -> ManifestEntry:
        """The entry called ``name``.

        Raises:
            UnknownModelError: with the closest names ("did you mean").
        """
        if name in self.entries:
            return self.entries[name]
        close = difflib.get_close_matches(name, list(self.entries), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"Unknown model {name!r}.{hint} Run `ntre-zoo list` (or ntre_zoo.list_models()) to see all "
            f"{len(self.entries)} names in {self.path}."
        )

    def find(self, backbone: str, dataset: str, fold: int, shot: int | None = None) -> ManifestEntry:
        """The entry trained as ``backbone``/``dataset``/``fold`` with ``shot`` supports (default 1).

        Raises:
            UnknownModelError: no such entry, listing what exists for that backbone and dataset.
        """
        train_shot = 1 if shot is None else shot
        for entry in self.entries.values():
            if (entry.backbone, entry.dataset, entry.fold, entry.train_shot) == (backbone, dataset, fold, train_shot):
                return entry
        return self.get(model_name(backbone, dataset, fold, train_shot))

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "models": {n: e.to_dict() for n, e in self.entries.items()}}


class _DuplicateKeyError(ValueError):
    """A JSON object that gives one key twice (``json`` would silently keep the last)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``'s ``object_pairs_hook``: the object, or :class:`_DuplicateKeyError` naming a repeated key."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKeyError(key)
        found[key] = value
    return found


def load_manifest(path: PathLike | None = None) -> Manifest:
    """Read and validate a manifest (default: the one shipped in the package).

    Relative ``file`` paths of package entries resolve against the manifest's real directory.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ManifestError: invalid JSON or schema, or a name (or a key of an object) given twice.
    """
    file = Path(path) if path is not None else default_manifest_path()
    if not file.is_file():
        raise FileNotFoundError(f"Manifest {str(file)!r} does not exist; pass the path of a checkpoints_manifest.json.")
    try:
        data = json.loads(file.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
    except _DuplicateKeyError as error:
        raise ManifestError(
            f"Manifest {str(file)!r} gives {error.args[0]!r} twice (an entry name or a key of one object); JSON "
            "would keep only the last silently. Remove or rename one of them."
        ) from None
    except (json.JSONDecodeError, RecursionError) as error:
        raise ManifestError(f"Manifest {str(file)!r} is not valid JSON: {error}.") from None
    if not isinstance(data, Mapping) or data.get("schema_version") != SCHEMA_VERSION:
        version = data.get("schema_version") if isinstance(data, Mapping) else None
        raise ManifestError(
            f"Manifest {str(file)!r} has schema_version {version!r}; this ntre-zoo reads version {SCHEMA_VERSION}. "
            "Upgrade ntre-zoo or fix the file."
        )
    models = data.get("models")
    if not isinstance(models, Mapping):
        raise ManifestError(f"Manifest {str(file)!r} needs a 'models' object mapping names to entries.")
    base = file.resolve().parent
    entries = {name: ManifestEntry.from_dict(name, entry, base) for name, entry in models.items()}
    return Manifest(path=file, entries=entries, schema_version=SCHEMA_VERSION)


def list_models(pattern: str = "*", published_only: bool = False, manifest: PathLike | None = None) -> list[str]:
    """Names of the zoo's checkpoints.

    Args:
        pattern: an ``fnmatch`` pattern, e.g. ``"*resnet50.pascal5i*"``.
        published_only: only names whose weights can be loaded.
        manifest: another manifest file instead of the shipped one.

    Returns:
        Sorted names.
    """
    return load_manifest(manifest).names(pattern, published_only)
