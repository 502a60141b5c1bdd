"""Writing a benchmark tree from archives without touching the output folder (``-o/--output``) until every member
has been read and checked: the files go first into a staging folder beside it (same filesystem), then each new
file is moved in, never over a file already there. A failure removes the staging folder and leaves the output
folder as it was. Also the summary a ``prepare`` run reports."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tqdm.auto import tqdm

from ..._atomic import atomic_write
from ...errors import ArchiveError
from .archives import Archive

__all__ = ["PrepareSummary", "WritePlan", "output_folder"]

#: Converts one member into the output file, given the (staged) output path, the member's chunks and the
#: pixel cap; returns the ``(width, height)`` of the image or label written.
Converter = Callable[[Path, Iterator[bytes], int], tuple[int, int]]


@dataclass(frozen=True)
class PrepareSummary:
    """What a ``prepare`` run produced.

    Args:
        root: the tree the loaders read (``.../VOC2012`` or the COCO root).
        counts: named totals in the tree, e.g. ``{"images": 12031, "labels from VOC": 2913, ...}``.
        written: files written by this run (0 on a re-run over a finished tree).
        skipped: files already there.
    """

    root: Path
    counts: dict[str, int] = field(default_factory=dict)
    written: int = 0
    skipped: int = 0

    def __str__(self) -> str:
        totals = ", ".join(f"{n} {name}" for name, n in self.counts.items())
        return f"{self.root}: {totals}; {self.written} files written, {self.skipped} already there"


def output_folder(out: str | Path) -> Path:
    """``-o/--output`` as a path, refused if it is a file (prepare writes a folder and never replaces a file).

    Raises:
        FileExistsError: ``out`` is an existing file.
    """
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"--output {str(path)!r} is a file; prepare writes a folder there. Choose another one.")
    return path


def _checked(relative: str) -> str:
    """``relative`` if it stays inside the output folder (no absolute path, no empty, '.' or '..' part)."""
    parts = relative.split("/")
    if "\\" in relative or "\x00" in relative or any(part in ("", ".", "..") for part in parts):
        raise ArchiveError(f"Refusing to write {relative!r}: it is not a path inside the output folder.")
    return relative


def _place(staged: Path, target: Path, replace: bool) -> bool:
    """Move ``staged`` to ``target``, keeping a file already at ``target`` unless ``replace``; True if moved."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if replace:
        os.replace(staged, target)
        return True
    try:
        os.link(staged, target)  # fails if target exists, so nothing is ever overwritten
    except FileExistsError:
        return False
    except OSError:  # no hard links on this filesystem (or the output folder is a mount point): check, then copy
        if target.exists() or target.is_symlink():
            return False
        atomic_write(target, lambda tmp: shutil.copyfile(staged, tmp))
    staged.unlink(missing_ok=True)
    return True


class _Stage:
    """A hidden folder beside ``out`` (``.OUT.ntre-zoo-prepare-<random>.tmp``) shaped as ``out`` will be; inside
    ``out`` when only ``out`` is writable (its files are never moved onto themselves: none is named so)."""

    def __init__(self, out: Path) -> None:
        self.created = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
        out.parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{out.name}.ntre-zoo-prepare-"
        try:
            self.root = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=out.parent))
        except PermissionError:
            if not out.is_dir():
                raise
            self.root = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=out))

    def discard(self) -> None:
        """Remove the stage, and the folders above ``out`` that it created if they are empty."""
        shutil.rmtree(self.root, ignore_errors=True)
        for folder in self.created:
            try:
                folder.rmdir()
            except OSError:
                break


@dataclass
class WritePlan:
    """Every file of the tree (relative to ``out``, ``/``-separated) and where it comes from.

    Args:
        out: the output folder (``-o/--output``).
    """

    out: Path
    jobs: dict[str, tuple[Archive, str, Converter, str | None]] = field(default_factory=dict)
    files: dict[str, tuple[bytes, bool]] = field(default_factory=dict)
    last: list[str] = field(default_factory=list)
    sizes: dict[str, tuple[tuple[int, int], str]] = field(default_factory=dict)
    written: int = 0
    skipped: int = 0

    def add(self, relative: str, archive: Archive, member: str, convert: Converter, group: str | None = None) -> None:
        """Write ``relative`` from ``member`` with ``convert``; files of one ``group`` must share one size.

        Raises:
            ArchiveError: ``relative`` is not inside ``out``, or the member's declared size is over the cap.
        """
        archive.check_size(member)
        self.jobs[_checked(relative)] = (archive, member, convert, group)

    def expect(self, group: str, size: tuple[int, int], source: str) -> None:
        """The ``(width, height)`` that ``source`` (e.g. an annotation entry) gives the files of ``group``."""
        self.sizes[group] = (size, source)

    def add_file(self, relative: str, content: bytes, *, ours: bool = False) -> None:
        """Write ``relative`` with ``content`` after every archive member (a list, an annotation file, the
        record). A different file already there is refused now, unless ``ours`` (prepare's own record).

        Raises:
            FileExistsError: ``out/relative`` exists with other content.
        """
        existing = self.out / _checked(relative)
        if not ours and existing.is_file() and existing.read_bytes() != content:
            raise FileExistsError(
                f"{str(existing)!r} exists and differs from the {relative} this archive gives; prepare never "
                "overwrites a file it did not write. Move it away, or choose another -o/--output."
            )
        self.files[relative] = (content, ours)

    def _check_size(self, group: str, size: tuple[int, int], archive: Archive, member: str) -> None:
        seen, source = self.sizes.setdefault(group, (size, f"member {member!r} of {archive.path.name}"))
        if seen != size:
            raise archive.refuse(
                member,
                f"is {size[0]}x{size[1]} pixels, but {source} is {seen[0]}x{seen[1]}; a label and its image "
                "must have one size. The archive was altered or mixed up; use the official download.",
            )

    def _write(self, stage: Path, progress: bool, desc: str) -> None:
        todo = {relative: job for relative, job in self.jobs.items() if not (self.out / relative).is_file()}
        self.skipped = len(self.jobs) - len(todo)
        bar = tqdm(total=len(todo), desc=desc, unit="file", disable=not progress)
        archives = {id(a): a for a, _, _, _ in todo.values()}
        for archive in archives.values():
            wanted = {member: relative for relative, (a, member, _, _) in todo.items() if a is archive}
            for member in archive.in_storage_order(wanted):
                _, _, convert, group = todo[wanted[member]]
                try:
                    size = convert(stage / wanted[member], archive.stream(member), archive.max_member_bytes)
                except ArchiveError:
                    raise
                except ValueError as error:
                    raise archive.refuse(member, f"{error}.") from error
                if group is not None:
                    self._check_size(group, size, archive, member)
                bar.update()
        bar.close()

    def _stage_files(self, stage: Path) -> None:
        for relative, (content, _) in self.files.items():
            if not (stage / relative).exists():
                atomic_write(stage / relative, partial(Path.write_bytes, data=content))

    def _commit(self, stage: Path) -> None:
        self._stage_files(stage)
        final = [*self.last, *self.files]
        staged = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())
        present = set(staged)
        for relative in [*(r for r in staged if r not in final), *(r for r in final if r in present)]:
            replace = relative in self.files and self.files[relative][1]
            target = self.out / relative
            if replace and target.is_file() and target.read_bytes() == self.files[relative][0]:
                replace = False
            if _place(stage / relative, target, replace):
                self.written += 1
            else:
                self.skipped += 1

    @contextmanager
    def staged(self, progress: bool, desc: str) -> Iterator[Path]:
        """Write every missing file into a staging folder and give it (the caller may write more there, naming
        those to move last in :attr:`last`, and :meth:`add_file` more); on leaving, move each new file into
        ``out``, never over a file already there. On an error the staging folder is removed and ``out`` is left
        as it was."""
        stage = _Stage(self.out)
        try:
            self._write(stage.root, progress, desc)
            self._stage_files(stage.root)
            yield stage.root
            self._commit(stage.root)
        finally:
            stage.discard()

    def run(self, progress: bool, desc: str) -> None:
        """:meth:`staged` with nothing added by the caller."""
        with self.staged(progress, desc):
            pass
