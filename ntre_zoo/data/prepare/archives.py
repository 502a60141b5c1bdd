"""Read the official dataset archives (tar, tar.gz/tgz, zip) or their extracted folders the same way.

Members are named by their ``/``-separated path inside the archive. Opening an archive lists every member
once (a tar's index is checked to end with the end-of-archive block, so a download cut short is refused
before anything is written); members are then read in storage order, so a compressed tar is decompressed
front to back instead of once per member.
"""

from __future__ import annotations

import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = ["Archive"]

_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)
#: Magic bytes of gzip, bzip2 and xz, the compressions ``tarfile`` reads.
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


class Archive:
    """The files of a tar/tgz/zip archive or of a folder.

    Args:
        path: the archive file, or an extracted folder.
        what: how errors name it, e.g. ``"the VOC 2012 trainval archive (--voc)"``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a tar, zip or folder, or a truncated or corrupt archive.
    """

    def __init__(self, path: str | Path, what: str) -> None:
        self.path = Path(path).expanduser()
        self.what = what
        self._tar: tarfile.TarFile | None = None
        self._zip: zipfile.ZipFile | None = None
        self._order: dict[str, int] = {}
        self._tar_members: dict[str, tarfile.TarInfo] = {}
        if not self.path.exists():
            raise FileNotFoundError(f"{what}: {str(self.path)!r} does not exist.")
        if self.path.is_dir():
            files = sorted(p for p in self.path.rglob("*") if p.is_file())
            self._order = {p.relative_to(self.path).as_posix(): i for i, p in enumerate(files)}
            return
        with open(self.path, "rb") as handle:
            head = handle.read(512)
        if head.startswith(b"PK"):
            self._open_zip()
        elif head.startswith(_COMPRESSED) or head[257:262] == b"ustar":
            self._open_tar()
        else:
            raise ValueError(
                f"{what}: {str(self.path)!r} is neither a tar/tgz/zip archive nor a folder; pass the file as "
                "downloaded, or the folder it was extracted to."
            )

    def _corrupt(self, error: BaseException) -> ValueError:
        return ValueError(
            f"{self.what}: {str(self.path)!r} is truncated or corrupt ({type(error).__name__}: {error}). "
            "Download it again (compare its size or checksum with the official one)."
        )

    def _open_zip(self) -> None:
        try:
            self._zip = zipfile.ZipFile(self.path)
            infos = [i for i in self._zip.infolist() if not i.is_dir()]
        except _ERRORS as error:
            raise self._corrupt(error) from error
        self._order = {i.filename: i.header_offset for i in infos}

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
        self._tar_members = {m.name[2:] if m.name.startswith("./") else m.name: m for m in members if m.isfile()}
        self._order = {name: m.offset_data for name, m in self._tar_members.items()}

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
            ValueError: no member ends with ``suffix``, so this is not the expected archive.
        """
        root = self.find_root(suffix)
        if root is None:
            raise ValueError(
                f"{self.what}: {str(self.path)!r} has no member '.../{suffix}'; it is not the expected archive "
                "(or an incomplete extraction of it)."
            )
        return root

    def read(self, name: str) -> bytes:
        """The bytes of member ``name``.

        Raises:
            KeyError: no such member.
            ValueError: its data is truncated or corrupt.
        """
        if name not in self._order:
            raise KeyError(f"{self.what}: no member {name!r} in {str(self.path)!r}.")
        try:
            if self._zip is not None:
                return self._zip.read(name)
            if self._tar is not None:
                handle: IO[bytes] | None = self._tar.extractfile(self._tar_members[name])
                if handle is None:
                    raise KeyError(f"{self.what}: member {name!r} is not a regular file.")
                return handle.read()
            return (self.path / name).read_bytes()
        except _ERRORS as error:
            raise self._corrupt(error) from error

    def read_all(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """``(name, bytes)`` of ``names``, in storage order."""
        for name in sorted(set(names), key=self._order.__getitem__):
            yield name, self.read(name)

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
