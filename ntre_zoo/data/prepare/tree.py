"""Writing a benchmark tree from archives: a plan of output files and their sources, run with atomic writes
that skip files already there, and the summary a ``prepare`` run reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..._atomic import atomic_write, atomic_write_text
from .archives import Archive

__all__ = ["PrepareSummary", "WritePlan", "copy_member", "write_texts"]

#: Converts one member's bytes into the output file (given the output path, the bytes and the member name).
Converter = Callable[[Path, bytes, str], None]


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


@dataclass
class WritePlan:
    """Output file -> (archive, member, converter) for every file of the tree."""

    jobs: dict[Path, tuple[Archive, str, Converter]] = field(default_factory=dict)

    def add(self, out: Path, archive: Archive, member: str, convert: Converter) -> None:
        self.jobs[out] = (archive, member, convert)

    def run(self, progress: bool, desc: str) -> tuple[int, int]:
        """Write the missing outputs, reading each archive in storage order; returns ``(written, skipped)``."""
        todo = {out: job for out, job in self.jobs.items() if not out.is_file()}
        bar = tqdm(total=len(todo), desc=desc, unit="file", disable=not progress)
        archives = {id(a): a for a, _, _ in todo.values()}
        for archive in archives.values():
            wanted = {member: out for out, (a, member, _) in todo.items() if a is archive}
            for member, data in archive.read_all(wanted):
                out = wanted[member]
                todo[out][2](out, data, member)
                bar.update()
        bar.close()
        return len(todo), len(self.jobs) - len(todo)


def copy_member(out: Path, data: bytes, member: str) -> None:
    """A :data:`Converter` that writes the member's bytes unchanged."""
    atomic_write(out, lambda tmp: tmp.write_bytes(data))


def write_texts(root: Path, texts: dict[str, str]) -> tuple[int, int]:
    """Write text files under ``root`` (relative name -> content) unless already identical; returns
    ``(written, skipped)``."""
    written = 0
    for name, text in texts.items():
        path = root / name
        if path.is_file() and path.read_text() == text:
            continue
        atomic_write_text(path, text)
        written += 1
    return written, len(texts) - written
