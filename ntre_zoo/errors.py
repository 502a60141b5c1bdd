"""Exceptions of the model zoo, each derived from the built-in type a caller would already catch, and the
package's deprecation warnings (an old spelling keeps working for one release and names its replacement)."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from types import ModuleType

__all__ = [
    "ArchiveError",
    "ChecksumMismatchError",
    "HubAccessError",
    "ManifestError",
    "StateDictMismatchError",
    "UnknownModelError",
    "WeightsUnavailableError",
    "alias_moved_module",
    "warn_deprecated",
]

_PACKAGE = str(Path(__file__).resolve().parent) + os.sep  # ntre_zoo/: warnings are attributed past its frames


def warn_deprecated(old: str, new: str) -> None:
    """A ``DeprecationWarning``: ``old`` goes in the next release, use ``new``. It is attributed to the first
    caller outside this package (so Python's default filter shows it where a script calls the package)."""
    level, frame = 2, sys._getframe(1)  # stacklevel 2: warn_deprecated's caller
    while frame.f_back is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back
    warnings.warn(f"{old} is deprecated and goes in the next release: use {new}", DeprecationWarning, stacklevel=level)


def alias_moved_module(alias: str, module: ModuleType) -> None:
    """Make the module ``alias`` (a moved module's old path, kept one release) ``module`` itself, so its names,
    private helpers and monkeypatching by the old path keep working; warn at the line that imported it.

    Call it from the alias module's body: stacklevel 3 is that body's importer (``warnings`` skips the import
    machinery's frames)."""
    message = f"{alias} is deprecated and goes in the next release: use {module.__name__}"
    warnings.warn(message, DeprecationWarning, stacklevel=3)
    sys.modules[alias] = module


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
