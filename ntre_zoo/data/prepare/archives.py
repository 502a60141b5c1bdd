"""Read the official dataset archives (tar, tar.gz/tgz, zip) or their extracted folders the same way, trusting
nothing in them.

Members are named by their ``/``-separated path inside the archive. Opening an archive lists every member
once (a tar's index is checked to end with the end-of-archive block, so a download cut short is refused
before anything is written; a member stored twice is refused, since which copy counts would be a guess);
members are then read in storage order, so a compressed tar is decompressed front to back instead of once per
member. A member is read as a stream of chunks and may expand to at most ``max_member_bytes``
(:data:`DEFAULT_MAX_MEMBER_BYTES`), checked against the size the index declares before a byte is read and
again while reading, so a small archive cannot fill memory. Member names are only looked up, never used as
output paths: ``prepare`` builds those from ids checked by :func:`plain_name`.
"""

from __future__ import annotations

import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

from ...errors import ArchiveError

__all__ = ["DEFAULT_MAX_MEMBER_BYTES", "Archive", "mib", "plain_name"]

#: What one member may expand to: 64 MiB, far above any VOC, SBD or COCO image or label (at most a few MB).
DEFAULT_MAX_MEMBER_BYTES = 64 * 2**20
_CHUNK = 2**20
_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)
#: Magic bytes of gzip, bzip2 and xz, the compressions ``tarfile`` reads.
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
#: Characters no plain file name holds: path separators (POSIX, Windows), a drive colon, NUL.
_SEPARATORS = frozenset("/\\:\x00")


def mib(size: int) -> str:
    """``size`` bytes as MiB for messages (``64 MiB``, ``0.5 MiB``)."""
    return f"{size / 2**20:g} MiB"


def plain_name(name: str, where: str) -> str:
    """``name`` if it is a plain file name: one path component, not hidden, no separator, space or control
    character, at most 200 characters. Ids and file names read from an archive go into output paths, so
    anything else could point outside the output folder.

    Raises:
        ArchiveError: naming ``where`` (e.g. "the VOC archive: ImageSets/Segmentation/train.txt, line 3").
    """
    if (
        not name
        or len(name) > 200
        or name.startswith(".")
        or any(c in _SEPARATORS or c.isspace() or not c.isprintable() for c in name)
    ):
        raise ArchiveError(
            f"{where}: {name!r} is not a plain file name (expected one name such as '2007_000032', without "
            "'/', '\\', ':', a leading '.', spaces or control characters). The archive was altered; use the "
            "official download."
        )
    return name


class Archive:
    """The files of a tar/tgz/zip archive or of a folder.

    Args:
        path: the archive file, or an extracted folder.
        what: how errors name it, e.g. ``"the VOC 2012 trainval archive (--voc)"``.
        max_member_bytes: the most one member may expand to (:data:`DEFAULT_MAX_MEMBER_BYTES`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ArchiveError: not a tar, zip or folder, a truncated or corrupt archive, or a member stored twice.
    """

    def __init__(self, path: str | Path, what: str, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> None:
        if max_member_bytes < 1:
            raise ValueError(f"max_member_bytes must be positive, got {max_member_bytes!r}.")
        self.path = Path(path).expanduser()
        self.what = what
        self.max_member_bytes = max_member_bytes
        self._tar: tarfile.TarFile | None = None
        self._zip: zipfile.ZipFile | None = None
        self._order: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._tar_members: dict[str, tarfile.TarInfo] = {}
        if not self.path.exists():
            raise FileNotFoundError(f"{what}: {str(self.path)!r} does not exist.")
        if self.path.is_dir():
            files = sorted(p for p in self.path.rglob("*") if p.is_file())
            self._order = {p.relative_to(self.path).as_posix(): i for i, p in enumerate(files)}
            self._sizes = {p.relative_to(self.path).as_posix(): p.stat().st_size for p in files}
            return
        with open(self.path, "rb") as handle:
            head = handle.read(512)
        if head.startswith(b"PK"):
            self._open_zip()
        elif head.startswith(_COMPRESSED) or head[257:262] == b"ustar":
            self._open_tar()
        else:
            raise ArchiveError(
                f"{what}: {str(self.path)!r} is neither a tar/tgz/zip archive nor a folder; pass the file as "
                "downloaded, or the folder it was extracted to."
            )

    def _corrupt(self, error: BaseException) -> ArchiveError:
        return ArchiveError(
            f"{self.what}: {str(self.path)!r} is truncated or corrupt ({type(error).__name__}: {error}). "
            "Download it again (compare its size or checksum with the official one)."
        )

    def refuse(self, name: str, problem: str) -> ArchiveError:
        """The error for member ``name``: ``problem`` says what is wrong with it."""
        return ArchiveError(f"{self.what}: {str(self.path)!r}: member {name!r} {problem}")

    def _index(self, names_and_sizes: Iterable[tuple[str, int, int]]) -> None:
        for name, position, size in names_and_sizes:
            if name in self._order:
                raise self.refuse(
                    name,
                    "is stored twice; an archive as published holds each file once, and which copy "
                    "counts would be a guess. Download it again from the official source.",
                )
            self._order[name], self._sizes[name] = position, size

    def _open_zip(self) -> None:
        try:
            self._zip = zipfile.ZipFile(self.path)
            infos = [i for i in self._zip.infolist() if not i.is_dir()]
        except _ERRORS as error:
            raise self._corrupt(error) from error
        self._index((i.filename, i.header_offset, i.file_size) for i in infos)

    def _open_tar(self) -> None:
        try:
            self._tar = tarfile.open(self.path, "r:*")
            members = self._tar.getmembers()
            # A complete tar ends with a zero block, which the index read as its last block; a download cut
            # at a member boundary ends with nothing at all.
            fileobj = self._tar.fileobj
            complete = fileobj is not None and fileobj.tell() - self._tar.offset == tarfile.BLOCKSIZE
        except _ERRORS as error:
            raise self._corrupt(error) from error
        if not complete:
            raise self._corrupt(EOFError("no end-of-archive block after the last member"))
        files = [(m.name[2:] if m.name.startswith("./") else m.name, m) for m in members if m.isfile()]
        self._index((name, m.offset_data, m.size) for name, m in files)
        self._tar_members = dict(files)

    def __contains__(self, name: object) -> bool:
        return name in self._order

    @property
    def names(self) -> list[str]:
        """Every file member, in storage order."""
        return sorted(self._order, key=self._order.__getitem__)

    def find_root(self, suffix: str) -> str | None:
        """The prefix under which ``suffix`` is a member (``""`` at the top, the shortest if several), or None."""
        roots = [n[: -len(suffix)] for n in self._order if n == suffix or n.endswith("/" + suffix)]
        return min(roots, key=len) if roots else None

    def root_of(self, suffix: str) -> str:
        """:meth:`find_root`, e.g. ``VOCdevkit/VOC2012/`` for ``ImageSets/Segmentation/val.txt``.

        Raises:
            ArchiveError: no member ends with ``suffix``, so this is not the expected archive.
        """
        root = self.find_root(suffix)
        if root is None:
            raise ArchiveError(
                f"{self.what}: {str(self.path)!r} has no member '.../{suffix}'; it is not the expected archive "
                "(or an incomplete extraction of it)."
            )
        return root

    def _too_large(self, name: str, size: str, limit: int) -> ArchiveError:
        return self.refuse(
            name,
            f"expands to {size}, more than the {mib(limit)} one member may have (no VOC, SBD or COCO image "
            "or label comes near it). It is refused as a likely decompression bomb; if you trust the archive, "
            "raise the cap with --max-member-mib (max_member_bytes= in Python).",
        )

    def check_size(self, name: str, limit: int | None = None) -> None:
        """Refuse member ``name`` now if its declared size is over ``limit`` (default: ``max_member_bytes``)."""
        limit = self.max_member_bytes if limit is None else limit
        if self._sizes[name] > limit:
            raise self._too_large(name, f"{self._sizes[name]:,} bytes", limit)

    def _open(self, name: str) -> IO[bytes]:
        if self._zip is not None:
            return self._zip.open(name)
        if self._tar is not None:
            handle = self._tar.extractfile(self._tar_members[name])
            if handle is None:  # pragma: no cover - only regular files are indexed
                raise self.refuse(name, "is not a regular file.")
            return handle
        return open(self.path / name, "rb")

    def stream(self, name: str, limit: int | None = None) -> Iterator[bytes]:
        """The bytes of member ``name`` in chunks of at most 1 MiB.

        Args:
            name: the member.
            limit: the most it may expand to (default: ``max_member_bytes``).

        Raises:
            KeyError: no such member.
            ArchiveError: it expands past ``limit``, or its data is truncated or corrupt.
        """
        if name not in self._order:
            raise KeyError(f"{self.what}: no member {name!r} in {str(self.path)!r}.")
        limit = self.max_member_bytes if limit is None else limit
        self.check_size(name, limit)
        total = 0
        try:
            with self._open(name) as handle:
                while chunk := handle.read(min(_CHUNK, limit + 1 - total)):
                    total += len(chunk)
                    if total > limit:
                        raise self._too_large(name, f"more than {limit:,} bytes", limit)
                    yield chunk
        except _ERRORS as error:
            raise self._corrupt(error) from error

    def read(self, name: str, limit: int | None = None) -> bytes:
        """The bytes of member ``name`` (at most ``limit``, as :meth:`stream`)."""
        return b"".join(self.stream(name, limit))

    def in_storage_order(self, names: Iterable[str]) -> list[str]:
        """``names`` (each once) sorted as the archive stores them."""
        return sorted(set(names), key=self._order.__getitem__)

    def close(self) -> None:
        for handle in (self._tar, self._zip):
            if handle is not None:
                handle.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
