"""``OUT/ledger.json`` of a reproduce sweep: per variant, its recipe, data root, the steps done and the result."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_json

__all__ = ["LEDGER_NAME", "Ledger"]

LEDGER_NAME = "ledger.json"
_LEDGER_FORMAT = "ntre-zoo-reproduce/1"


class Ledger:
    """``OUT/ledger.json``: per variant, its recipe, data root, the steps done and the result (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.data: dict[str, Any] = {"format": _LEDGER_FORMAT, "variants": {}}
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, or nested beyond reading
                raise ValueError(
                    f"{str(path)!r} is not a readable reproduce ledger ({error!r}): it was damaged or is another "
                    "file. Move it away to start the sweep afresh, or use another -o."
                ) from None
            if not isinstance(data, dict) or data.get("format") != _LEDGER_FORMAT:
                raise ValueError(f"{str(path)!r} is not a reproduce ledger ({_LEDGER_FORMAT}); use another -o.")
            self.data = data

    def variant(self, name: str) -> dict[str, Any]:
        return self.data["variants"].setdefault(name, {"state": "pending", "steps": {}})

    def update(self, name: str, **fields: Any) -> None:
        with self._lock:
            self.variant(name).update(fields)
            atomic_write_json(self.path, self.data)

    def step_done(self, name: str, step: str, record: Mapping[str, Any]) -> None:
        with self._lock:
            self.variant(name)["steps"][step] = dict(record)
            atomic_write_json(self.path, self.data)
