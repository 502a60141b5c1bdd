"""Atomic file writes: a temporary file beside the target, then ``os.replace``. A crash at any moment
leaves the previous file or the new one, never a half-written one; an exception leaves no temporary file
behind, and :func:`remove_stale_temporaries` removes those of killed processes. A file or folder filled over
time (a video frame by frame) is an :class:`AtomicTarget`: filled under its temporary name, moved at the end.

Every file gets the mode the process's umask gives a new file (``0o666 & ~umask``), whatever the writer
used for its temporary file (safetensors creates them ``0o600``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "AtomicTarget",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_many",
    "atomic_write_text",
    "file_mode",
    "remove_stale_temporaries",
]

PathLike = str | os.PathLike[str]
Writer = Callable[[Path], object]
_UMASK_LOCK = threading.Lock()
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)(?:-[0-9a-f]+)?\.tmp$")


def file_mode() -> int:
    """The permission bits a new file gets under the current umask (``0o644`` under umask 022)."""
    try:  # Linux states the umask; reading it there changes nothing, even for a moment
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def _temporary(path: Path) -> Path:
    """A fresh hidden name beside ``path`` that records the writing process (``.NAME.PID-TOKEN.tmp``)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def atomic_write_many(files: Sequence[tuple[PathLike, Writer]], *, fsync: bool = False) -> list[Path]:
    """Write several files, each to a temporary file first, then move them into place in the given order.

    No target is touched until every new file is complete, and the moves that follow are renames within
    the directory, so the first target is the commit point: list first the file that decides which
    version a reader sees. An exception removes every temporary file; a kill leaves them for
    :func:`remove_stale_temporaries`.

    Args:
        files: ``(path, write)`` pairs; ``write(tmp)`` writes the whole content to the path it is given (a
            format-sniffing writer such as PIL's must be told the format: the temporary name ends in ``.tmp``).
        fsync: flush the data to disk before the renames (for checkpoints).
    """
    targets = [Path(path) for path, _ in files]
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
    temporaries = [_temporary(target) for target in targets]
    mode = file_mode()
    try:
        for tmp, (_, write) in zip(temporaries, files, strict=True):
            write(tmp)
            os.chmod(tmp, mode)
            if fsync:
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
        for tmp, target in zip(temporaries, targets, strict=True):
            os.replace(tmp, target)
    except BaseException:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)
        raise
    return targets


def atomic_write(path: PathLike, write: Writer, *, fsync: bool = False) -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then move it onto ``path`` (parents are created).

    Args:
        path: the final file.
        write: writes the whole content to the path it is given (a format-sniffing writer such as PIL's
            must be told the format: the temporary name ends in ``.tmp``).
        fsync: flush the data to disk before the rename (for checkpoints).
    """
    return atomic_write_many([(path, write)], fsync=fsync)[0]


class AtomicTarget:
    """A file or folder that a writer fills over time under a temporary name beside ``path`` (``tmp``), moved
    onto ``path`` by :meth:`commit` (a folder replaces the folder there) or removed by :meth:`discard`, so a killed
    or failed writer never leaves a partial result under the final name."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = _temporary(self.path)

    def commit(self) -> Path:
        """Move the finished file or folder into place; returns ``path``."""
        if not self.tmp.is_dir():
            os.chmod(self.tmp, file_mode())
            os.replace(self.tmp, self.path)
            return self.path
        old = _temporary(self.path) if self.path.is_dir() else None
        if old is not None:
            os.replace(self.path, old)  # a folder cannot be renamed onto a non-empty one: the old one steps aside
        os.replace(self.tmp, self.path)
        if old is not None:
            shutil.rmtree(old)
        return self.path

    def discard(self) -> None:
        """Remove what was written (nothing under ``path`` changes)."""
        if self.tmp.is_dir():
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            self.tmp.unlink(missing_ok=True)


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: PathLike, data: Any, **dumps: Any) -> Path:
    """Indented JSON with a final newline (``dumps`` go to ``json.dumps``, e.g. ``default=str``)."""
    return atomic_write_text(path, json.dumps(data, indent=2, **dumps) + "\n")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to another user
        return True
    return True


def remove_stale_temporaries(directory: PathLike, names: Iterable[str]) -> list[Path]:
    """Delete the temporary files that killed writers of ``directory/NAME`` left (their process is gone).

    Only POSIX can tell a dead process from a live one; elsewhere nothing is removed. Returns what was removed.
    """
    directory, names = Path(directory), set(names)
    if os.name != "posix" or not directory.is_dir():
        return []
    removed = []
    for entry in directory.iterdir():
        match = _TEMPORARY.match(entry.name)
        if match and match["name"] in names and not _alive(int(match["pid"])):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
