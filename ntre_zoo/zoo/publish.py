"""``push_to_hub``: upload a model to a Hub repository and print its manifest entry."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._version import __version__
from ..model.types import FewShotSegmenter
from .download import resolve_endpoint, sha256_file
from .manifest import HubLocation, ManifestEntry, load_manifest, model_name
from .saving import WEIGHTS_NAME, save_pretrained

__all__ = ["PushResult", "push_to_hub"]


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


def _reference_metrics(name: str) -> dict[str, Any]:
    entry = load_manifest().entries.get(name)
    return dict(entry.metrics["reference"]) if entry else {}
