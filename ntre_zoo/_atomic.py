"""Atomic file writes: a temporary file beside the target, then ``os.replace``. A crash at any moment
leaves the previous file or the new one, never a half-written one, and no temporary file behind."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_json", "atomic_write_text"]

PathLike = str | os.PathLike[str]


def atomic_write(path: PathLike, write: Callable[[Path], object], *, fsync: bool = False) -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then move it onto ``path`` (parents are created).

    Args:
        path: the final file.
        write: writes the whole content to the path it is given (a format-sniffing writer such as PIL's
            must be told the format: the temporary name ends in ``.tmp``).
        fsync: flush the data to disk before the rename (for checkpoints).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: PathLike, data: Any, **dumps: Any) -> Path:
    """Indented JSON with a final newline (``dumps`` go to ``json.dumps``, e.g. ``default=str``)."""
    return atomic_write_text(path, json.dumps(data, indent=2, **dumps) + "\n")
