"""Exceptions of the model zoo; each derives from the built-in type a caller would already catch."""

from __future__ import annotations

__all__ = [
    "ArchiveError",
    "ChecksumMismatchError",
    "HubAccessError",
    "ManifestError",
    "StateDictMismatchError",
    "UnknownModelError",
    "WeightsUnavailableError",
]


class UnknownModelError(KeyError):
    """A model name that the manifest does not list (a ``KeyError`` whose message prints unquoted)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ManifestError(ValueError):
    """A ``checkpoints_manifest.json`` that does not follow the schema."""


class WeightsUnavailableError(RuntimeError):
    """The weights exist in the manifest but cannot be had: unpublished, or absent on the Hub / in the cache."""


class ChecksumMismatchError(ValueError):
    """A weights file whose sha256 differs from the manifest's; nothing was loaded."""


class StateDictMismatchError(RuntimeError):
    """A state dict whose keys or shapes do not match the model (strict loading)."""


class HubAccessError(RuntimeError):
    """The Hub is needed (backbone weights, an upload) but offline, unreachable, or the token cannot write."""


class ArchiveError(ValueError):
    """A dataset archive, or one of its members, that ``prepare`` refuses (corrupt, unsafe, too large, wrong)."""
