"""Publishing weights: ``publish`` a saved directory to the Hub and into the manifest, or ``push_to_hub`` a model.

``publish(DIR, repo_id)`` (``ntre-zoo publish``) is the path from a ``reproduce`` output to a manifest entry:
it checks the directory, the token and the write access before anything is uploaded, uploads the directory
as one commit, and writes the entry (repo id, that commit, file name, sha256, the measured metrics with their
episodes, seeds, protocol and command) into ``checkpoints_manifest.json``: validated by the manifest code,
every other line of the file untouched, the change printed as a diff. ``dry_run=True`` does all of it except
the upload and the write. This module does not import the model class (the model's ``push_to_hub`` method
imports it), so the directory is checked from its files.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors

from .._atomic import atomic_write_text
from ..model.types import FewShotSegmenter
from .download import resolve_endpoint, sha256_file
from .manifest import HubLocation, ManifestEntry, default_manifest_path, load_manifest, model_name
from .saving import (
    ARCHITECTURE,
    CONFIG_NAME,
    MODEL_CARD_NAME,
    WEIGHTS_NAME,
    card_is_ours,
    save_pretrained,
    stamped_card,
)
from .version import __version__

__all__ = ["ENTRY_FILE", "PublishResult", "PushResult", "publish", "push_to_hub"]

#: The manifest entry ``reproduce`` writes beside the weights: ``{"name", "entry", "weights"}``.
ENTRY_FILE = "manifest_entry.json"
_DRY_RUN_COMMIT = "0" * 40  # validates a dry run's entry; never written
_DRY_RUN_SHOWN = "<the commit of the upload>"


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


@dataclass(frozen=True)
class PublishResult:
    """What ``publish`` did.

    Args:
        entry: the manifest entry (for a dry run, its revision is a stand-in).
        commit: the uploaded commit, or None for a dry run.
        manifest: the manifest file that was (or, for a dry run, would be) changed.
        diff: the change of that file, as a unified diff.
    """

    entry: ManifestEntry
    commit: str | None
    manifest: Path
    diff: str


def _api(token: str | None, endpoint: str | None) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=resolve_endpoint(endpoint), token=token, library_name="ntre-zoo", library_version=__version__)


def _upload(
    api: Any, repo_id: str, files: Mapping[str, Path | bytes], private: bool | None, branch: str | None, message: str
) -> Any:
    """Create the repository if needed and upload ``files`` (name in the repository -> file or content) as one
    commit; returns the ``CommitInfo``."""
    from huggingface_hub import CommitOperationAdd

    api.create_repo(repo_id, private=private, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=source) for name, source in files.items()]
    return api.create_commit(repo_id=repo_id, operations=operations, revision=branch, commit_message=message)


def _files_to_upload(directory: Path, repo_id: str) -> dict[str, Path | bytes]:
    """The directory's files; a generated model card is written again for ``repo_id``, so that its "How to load"
    says ``from_pretrained("hf-hub:<repo_id>")`` (a card the user wrote goes up as it is)."""
    files: dict[str, Path | bytes] = {p.name: p for p in sorted(directory.iterdir()) if p.is_file()}
    card = directory / MODEL_CARD_NAME
    if card.is_file() and card_is_ours(card, directory / CONFIG_NAME):
        config = json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8"))
        files[MODEL_CARD_NAME] = stamped_card(config, repo_id).encode("utf-8")
    return files


def _reference_metrics(name: str) -> dict[str, Any]:
    entry = load_manifest().entries.get(name)
    return dict(entry.metrics["reference"]) if entry else {}


def _measured(metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    measured = dict(metrics or {})
    if not all(k in measured for k in ("episodes", "seed", "command")):
        if measured:
            print("note: the metrics lack episodes/seed/command, so the entry's measured metrics stay empty.")
        return {}
    return measured


def _entry_from_config(name: str | None, config: Mapping[str, Any]) -> ManifestEntry:
    """An unpublished entry from a saved model's ``config.json`` (its metadata names it and holds its metrics)."""
    meta, model_config = dict(config.get("metadata") or {}), config["model_config"]
    backbone, shot = model_config["backbone"]["name"], int(model_config.get("shot", 1))
    if name is None:
        name = meta.get("name")
    if name is None:
        if meta.get("dataset") is None or meta.get("fold") is None:
            raise ValueError(
                "The checkpoint's name is unknown: pass metadata={'dataset': ..., 'fold': ...} (the name becomes "
                "ntrenet_<backbone>.<dataset>_fold<k>) or name=."
            )
        name = model_name(backbone, meta["dataset"], int(meta["fold"]), shot)
    return ManifestEntry(
        name=name,
        backbone=backbone,
        dataset=str(meta.get("dataset", "")),
        fold=int(meta.get("fold", 0)),
        train_shot=shot,
        status="unpublished",
        metrics={"reference": _reference_metrics(name), "measured": _measured(meta.get("metrics"))},
    )


def _published(entry: ManifestEntry, repo_id: str, commit: str, sha256: str) -> ManifestEntry:
    hub = HubLocation(repo_id=repo_id, revision=commit, filename=WEIGHTS_NAME, sha256=sha256)
    return dataclasses.replace(entry, status="published", source="hub", hub=hub, file=None, sha256=None)


def push_to_hub(
    model: FewShotSegmenter,
    repo_id: str,
    *,
    metadata: Mapping[str, Any] | None = None,
    private: bool | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    branch: str | None = None,
    commit_message: str | None = None,
    name: str | None = None,
) -> PushResult:
    """Save ``model`` and upload it to a Hub model repository, then print its manifest entry.

    To publish a directory written by ``reproduce`` (and write the entry into the manifest), use :func:`publish`.

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
    meta = dict(metadata or {})
    cfg = model.config
    with tempfile.TemporaryDirectory() as tmp:
        entry = _entry_from_config(name, {"metadata": meta, "model_config": cfg.to_dict()})
        meta.setdefault("name", entry.name)
        meta.setdefault("repo_id", repo_id)
        save_pretrained(model, tmp, metadata=meta)
        digest = sha256_file(Path(tmp) / WEIGHTS_NAME)
        files: dict[str, Path | bytes] = {p.name: p for p in sorted(Path(tmp).iterdir())}
        info = _upload(_api(token, endpoint), repo_id, files, private, branch, commit_message or f"Upload {entry.name}")
    result = PushResult(
        entry=_published(entry, repo_id, info.oid, digest), commit=info.oid, commit_url=str(info.commit_url)
    )
    print(
        f"Uploaded {entry.name} to {repo_id} at {info.oid}. Paste this entry into checkpoints_manifest.json 'models':"
    )
    print(result.manifest_snippet())
    return result


def _read_directory(directory: Path, name: str | None) -> tuple[ManifestEntry, str]:
    """The unpublished entry and the weights' sha256 of a saved model directory, after checking its files."""
    config_path, weights = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (config_path, weights):
        if not path.is_file():
            raise FileNotFoundError(
                f"{str(path)!r} does not exist: publish takes a directory written by `ntre-zoo reproduce` "
                "(OUT/VARIANT) or save_pretrained, holding config.json and model.safetensors."
            )
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("architecture") != ARCHITECTURE or "model_config" not in config:
        raise ValueError(f"{str(config_path)!r} is not an ntre-zoo NTRENet config; was it written by save_pretrained?")
    try:
        with safetensors.safe_open(str(weights), framework="pt") as handle:
            handle.keys()
    except Exception as error:  # safetensors raises its own SafetensorError for a bad header
        raise ValueError(f"{str(weights)!r} is not a readable safetensors file: {error}.") from error
    digest = sha256_file(weights)
    if not (directory / ENTRY_FILE).is_file():
        return _entry_from_config(name, config), digest
    recorded_name, recorded_entry, recorded_sha256 = _read_entry_file(directory / ENTRY_FILE)
    if recorded_sha256 != digest:
        raise ValueError(
            f"{str(weights)!r} has sha256 {digest}, but {ENTRY_FILE} records {recorded_sha256}: the "
            "weights changed after they were evaluated. Reproduce them again, or delete the stale entry file."
        )
    return ManifestEntry.from_dict(name or recorded_name, recorded_entry), digest


def _read_entry_file(path: Path) -> tuple[str, dict[str, Any], str]:
    """``(name, entry, weights sha256)`` of a ``manifest_entry.json``, each checked to be there.

    Raises:
        ValueError: not JSON, or a missing key, naming the file and the key.
    """
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as error:
        raise ValueError(f"{str(path)!r} is not valid JSON ({error!r}); reproduce the variant again.") from None
    found: list[Any] = []
    for keys in (("name",), ("entry",), ("weights", "sha256")):
        value: Any = recorded
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                raise ValueError(
                    f"{str(path)!r} has no {'.'.join(keys)!r}: a manifest entry file written by `ntre-zoo reproduce` "
                    "holds name, entry and weights.sha256. Reproduce the variant again, or delete the file to "
                    "publish from config.json."
                )
            value = value[key]
        found.append(value)
    return found[0], found[1], found[2]


def _manifest_text(manifest_path: Path, entry: ManifestEntry) -> tuple[str, str]:
    """``(old, new)`` text of the manifest with ``entry`` put in place (or appended), validated by
    :func:`load_manifest`; the file must be in the canonical layout, so that no other line changes."""
    old = manifest_path.read_text(encoding="utf-8")
    manifest = load_manifest(manifest_path)
    data = json.loads(old)
    if json.dumps(data, indent=2) + "\n" != old:
        raise ValueError(
            f"{str(manifest_path)!r} is not in the canonical layout (json.dumps(indent=2) plus a newline), so writing "
            f'the entry would reformat other lines. Normalise it first: python -c "import json,sys; p=sys.argv[1]; '
            f"json.dump(json.load(open(p)), open(p + '.new', 'w'), indent=2)\" {manifest_path} (then add the newline)."
        )
    data["models"][entry.name] = entry.to_dict()
    new = json.dumps(data, indent=2) + "\n"
    with tempfile.TemporaryDirectory() as tmp:
        check = Path(tmp) / manifest_path.name
        check.write_text(new, encoding="utf-8")
        load_manifest(check)
    if entry.name not in manifest.entries:
        print(f"note: {entry.name} is a new name in {manifest_path}.")
    return old, new


def publish(
    directory: str | Path,
    repo_id: str,
    *,
    manifest: str | Path | None = None,
    name: str | None = None,
    dry_run: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    private: bool | None = None,
    branch: str | None = None,
    commit_message: str | None = None,
) -> PublishResult:
    """Upload a saved model directory to ``repo_id`` and record it in the manifest.

    Args:
        directory: ``OUT/VARIANT`` of ``ntre-zoo reproduce`` (its ``manifest_entry.json`` carries the measured
            metrics), or any ``save_pretrained`` directory (the entry then comes from ``config.json``).
        repo_id: ``owner/name`` (created if missing); use the zoo name as the repository name.
        manifest: the ``checkpoints_manifest.json`` to update (default: the package's).
        name: the zoo name, if the directory does not record it.
        dry_run: check everything, print the manifest diff, but upload nothing and write nothing.
        token: a Hub token (default: the logged-in one, or ``HF_TOKEN``).
        endpoint: another Hub endpoint (default ``HF_ENDPOINT``).
        private: create the repository private.
        branch: upload to this branch instead of ``main`` (the entry pins the commit either way).
        commit_message: defaults to "Upload <name>".

    Returns:
        A :class:`PublishResult`.

    Raises:
        FileNotFoundError, ValueError: an incomplete directory, weights changed since evaluation, a manifest that
            would not validate.
        HubAccessError: offline, unreachable, no token or no write access (all checked before uploading).
    """
    from .hub_access import check_hub_reachable, check_write_access

    directory = Path(directory)
    manifest_path = Path(manifest) if manifest is not None else default_manifest_path()
    entry, digest = _read_directory(directory, name)
    _manifest_text(manifest_path, _published(entry, repo_id, _DRY_RUN_COMMIT, digest))  # refuse early
    check_hub_reachable("ntre-zoo publish", "Publish when the Hub can be reached.", endpoint=endpoint)
    user = check_write_access(repo_id, token=token, endpoint=endpoint)
    print(f"token of {user!r} can write to {repo_id}; {entry.name}: {WEIGHTS_NAME} sha256 {digest}")
    commit = None
    if not dry_run:
        message = commit_message or f"Upload {entry.name}"
        files = _files_to_upload(directory, repo_id)
        commit = _upload(_api(token, endpoint), repo_id, files, private, branch, message).oid
        print(f"uploaded {directory} to {repo_id} at commit {commit}")
    final = _published(entry, repo_id, commit or _DRY_RUN_COMMIT, digest)
    old, new = _manifest_text(manifest_path, final)
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), str(manifest_path), str(manifest_path)
        )
    )
    if dry_run:
        diff = diff.replace(_DRY_RUN_COMMIT, _DRY_RUN_SHOWN)
        print(f"dry run: nothing uploaded and {manifest_path} not written; the change would be:")
    else:
        atomic_write_text(manifest_path, new)
        print(f"wrote the {entry.name} entry into {manifest_path}:")
    print(diff or "(no change)")
    return PublishResult(entry=final, commit=commit, manifest=manifest_path, diff=diff)
