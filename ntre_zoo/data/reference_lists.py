"""The reference's image lists, shipped in ``ntre_zoo/data/lists/`` as image ids (one per line).

``lists.json`` records, for each list, its line count and sha256 and where it came from: the repository,
commit, path and sha256 of the source file, and the line format that turns the ids back into that file
byte for byte (tested). Image ids are data: the lists are what a run trains and evaluates on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["LISTS_DIR", "list_info", "reference_list", "resolve_list"]

LISTS_DIR = Path(__file__).parent / "lists"


def list_info() -> dict[str, dict[str, Any]]:
    """``lists.json``: list name -> ``{description, lines, sha256, source: {repo, commit, path, sha256, ...}}``."""
    return json.loads((LISTS_DIR / "lists.json").read_text())


def reference_list(name: str) -> Path:
    """The file of the shipped list ``name`` (e.g. ``voc_sbd_merge_noduplicate``).

    Raises:
        ValueError: no shipped list has that name.
    """
    known = list_info()
    if name not in known:
        raise ValueError(f"Unknown reference list {name!r}. Expected one of: {', '.join(known)}.")
    return LISTS_DIR / f"{name}.txt"


def resolve_list(name_or_path: str | Path) -> Path:
    """A shipped list's file given its name (checked against its recorded sha256), or an existing list
    file given its path.

    Raises:
        FileNotFoundError: neither a shipped list name nor an existing file.
        ValueError: a shipped list whose file was changed.
    """
    known = list_info()
    name = str(name_or_path)
    if name in known:
        path = reference_list(name)
        if hashlib.sha256(path.read_bytes()).hexdigest() != known[name]["sha256"]:
            raise ValueError(
                f"The shipped list {str(path)!r} does not match its recorded sha256 {known[name]['sha256']}; "
                "reinstall ntre-zoo."
            )
        return path
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"Image list {name!r} is neither a shipped list ({', '.join(known)}) nor an existing file; "
            "pass one of those names or the path of a list file."
        )
    return path
