"""Hub downloads through ``huggingface_hub`` (its cache, pinned revisions, mirrors, offline mode) and sha256 checks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TypedDict

from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import (
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..errors import ChecksumMismatchError, WeightsUnavailableError
from .version import __version__

__all__ = [
    "DownloadOptions",
    "cached_path",
    "default_cache_dir",
    "hub_download",
    "resolve_endpoint",
    "sha256_file",
    "verify_sha256",
]

PathLike = str | os.PathLike[str]
_TRUE = {"1", "ON", "YES", "TRUE"}


class DownloadOptions(TypedDict):
    """How to reach the Hub, as ``from_pretrained`` receives it and :func:`hub_download` takes it."""

    cache_dir: PathLike | None
    local_files_only: bool
    endpoint: str | None
    token: str | bool | None


def resolve_endpoint(endpoint: str | None = None) -> str | None:
    """``endpoint``, else ``HF_ENDPOINT`` read now (huggingface_hub reads it only at import), else None."""
    value = endpoint or os.environ.get("HF_ENDPOINT") or None
    return value.rstrip("/") if value else None


def default_cache_dir() -> Path:
    """huggingface_hub's cache, honouring ``HF_HUB_CACHE`` / ``HF_HOME`` as they are set now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(hf_constants.HF_HUB_CACHE)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE or hf_constants.HF_HUB_OFFLINE


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: PathLike, expected: str | None, what: str) -> None:
    """Raise unless ``path`` hashes to ``expected`` (no-op when nothing is expected).

    Raises:
        ChecksumMismatchError: the digests differ; the message says what to do.
    """
    if not expected:
        return
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ChecksumMismatchError(
            f"sha256 of {str(path)!r} is {actual}, but the manifest expects {expected} for {what}. The file is "
            "corrupted or was replaced; nothing was loaded. Delete it (e.g. `hf cache delete`, or remove the "
            "file) and download again; if the mismatch persists, the manifest entry or the uploaded file is wrong."
        )


def hub_download(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: PathLike | None = None,
    local_files_only: bool = False,
    endpoint: str | None = None,
    token: str | bool | None = None,
    force_download: bool = False,
    download_command: str | None = None,
) -> Path:
    """Fetch one file with ``hf_hub_download`` (progress bar, cache, ``HF_HUB_OFFLINE``), or its cached copy.

    Args:
        force_download: download the file again even if it is cached (replacing the cached copy).
        download_command: the command that fetches this file into the cache, for the offline message
            (default ``ntre-zoo download hf-hub:REPO[@REVISION]``).

    Raises:
        WeightsUnavailableError: the repository, revision or file does not exist, or the file is not cached
            while downloads are off; the message names the repository, revision, endpoint and cache.
        PermissionError: the cache cannot be written or read by this user; the message names it.
        ValueError: ``force_download`` while downloads are off.
    """
    endpoint = resolve_endpoint(endpoint)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    offline = local_files_only or _offline()
    if force_download and offline:
        off = "local_files_only=True" if local_files_only else "HF_HUB_OFFLINE=1"
        raise ValueError(
            f"force_download=True asks to download {filename!r} of {repo_id} again, but {off} turns downloads off; "
            "drop one of the two."
        )
    where = f"{repo_id}@{revision or 'main'} on {endpoint or hf_constants.ENDPOINT}"
    command = download_command or f"ntre-zoo download hf-hub:{repo_id}" + (f"@{revision}" if revision else "")

    def unavailable(error: Exception) -> Exception:
        """The error to raise for a failed ``hf_hub_download``, naming what to do."""
        if isinstance(error, RepositoryNotFoundError):
            return WeightsUnavailableError(
                f"Hub repository {repo_id!r} was not found ({where}). Check the repo id; a private repository needs "
                "a token (`hf auth login` or token=)."
            )
        if isinstance(error, RevisionNotFoundError):
            return WeightsUnavailableError(f"Revision {revision!r} does not exist in {where}.")
        if isinstance(error, RemoteEntryNotFoundError):
            return WeightsUnavailableError(f"File {filename!r} is not in {where}.")
        if isinstance(error, PermissionError):
            return PermissionError(
                f"Permission denied on {error.filename or str(cache)!r} while fetching {filename!r} of {where} into "
                f"the cache {str(cache)!r}. A cache must be writable by this user: pass another one (cache_dir=, "
                "--cache-dir, or HF_HUB_CACHE), or ask its owner for access."
            )
        if force_download:
            return WeightsUnavailableError(
                f"force_download=True could not download {filename!r} of {where}: the Hub could not be reached "
                f"({error}). Try again, set HF_ENDPOINT to a reachable mirror, or drop force_download to use the "
                "cached copy."
            )
        reason = (
            "downloads are off (local_files_only=True or HF_HUB_OFFLINE=1)"
            if offline
            else "the Hub could not be reached"
        )
        return WeightsUnavailableError(
            f"{filename!r} of {where} is not in the cache {str(cache)!r} and {reason}. Download it once online "
            f"(`{command}`), or set HF_ENDPOINT to a reachable mirror."
        )

    try:
        path = hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=str(cache),
            local_files_only=offline,
            force_download=force_download,
            endpoint=endpoint,
            token=token,
            library_name="ntre-zoo",
            library_version=__version__,
        )
    except (
        RepositoryNotFoundError,
        RevisionNotFoundError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        PermissionError,
    ) as error:
        raise unavailable(error) from error
    except ValueError as error:
        # Under force_download, huggingface_hub raises a failed request as ValueError("Force download failed
        # due to the above error.") caused by the error it raises otherwise.
        if not force_download or not isinstance(error.__cause__, Exception):
            raise
        raise unavailable(error.__cause__) from error.__cause__
    return Path(path)


def cached_path(
    repo_id: str, filename: str, revision: str | None = None, cache_dir: PathLike | None = None
) -> Path | None:
    """Where a Hub file sits in the cache, or None if it has not been downloaded."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    found = try_to_load_from_cache(repo_id, filename, cache_dir=str(cache), revision=revision)
    return Path(found) if isinstance(found, str) else None
