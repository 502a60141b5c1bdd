"""``save_pretrained``: a model as a directory of ``config.json``, ``model.safetensors`` and a model card.

``config.json`` holds the architecture (:class:`~ntre_zoo.model.config.ModelConfig`), the preprocessing,
the package version and free metadata; the weights are safetensors (no pickle).

A save is atomic as a whole: every file of the new version is written to a temporary file first, then the
weights are moved into place, then ``config.json`` and the card. The weights file carries its own config in
its header, so it is the commit point: a reader that finds new weights beside an old ``config.json`` (a save
killed between two renames) loads the new model with the config it was saved with
(:func:`ntre_zoo.zoo.hub.load_pretrained_dir`). Both files record a ``save_id`` (the config's sha256), which
tells such a leftover ``config.json`` from one a user edited on purpose (that one is honoured).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch

from .._atomic import atomic_write_many, remove_stale_temporaries
from ..data.classnames import BENCHMARK_CLASSES, fold_classes
from ..model.types import FewShotSegmenter
from .model_card import render_model_card
from .version import __version__

__all__ = [
    "ARCHITECTURE",
    "CONFIG_NAME",
    "HEADER_CONFIG_KEY",
    "MODEL_CARD_NAME",
    "WEIGHTS_METADATA",
    "WEIGHTS_NAME",
    "build_config",
    "card_is_ours",
    "save_id",
    "save_pretrained",
    "stamped_card",
    "write_safetensors",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "README.md"
ARCHITECTURE = "ntrenet"
#: The safetensors header entry that holds the ``config.json`` the weights were saved with.
HEADER_CONFIG_KEY = "ntre_zoo_config"
#: The rest of every weights file's header, in the order written. A weights file with only these entries is a
#: function of its tensors alone (no package version: a later release reproduces the same bytes); ``reproduce`` and
#: ``publish`` write that, and the shipped model's file is one.
WEIGHTS_METADATA = {"format": "pt"}
_CARD_STAMP = re.compile(r"\n<!-- ntre-zoo model card, sha256 of the text above: (?P<digest>[0-9a-f]{64}) -->\n\Z")
PathLike = str | os.PathLike[str]


def _full_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    meta = dict(metadata or {})
    dataset, fold = meta.get("dataset"), meta.get("fold")
    if dataset in BENCHMARK_CLASSES and fold in (0, 1, 2, 3):
        train, test = fold_classes(dataset, fold)
        meta.setdefault("train_classes", train)
        meta.setdefault("test_classes", test)
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"metadata must be JSON-serialisable (str, numbers, lists, dicts): {error}. "
            "Convert tensors with .item()/.tolist()."
        ) from error
    return meta


def build_config(model: FewShotSegmenter, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``config.json`` dict of ``model``."""
    cfg = model.config
    return {
        "architecture": ARCHITECTURE,
        "model_config": cfg.to_dict(),
        "preprocessing": {
            "test_size": cfg.test_size,
            "mean": list(cfg.mean),
            "std": list(cfg.std),
            "input": "RGB in [0, 1]",
        },
        "ntre_zoo_version": __version__,
        "metadata": _full_metadata(metadata),
    }


def write_safetensors(state: Mapping[str, Any], path: PathLike, metadata: Mapping[str, str]) -> None:
    """``safetensors.torch.save_file``, then its header rewritten with the metadata keys in the order given.

    safetensors writes the metadata mapping in an order that changes from process to process (a Rust
    ``HashMap``), so two saves of the same weights and config gave different files, and a pinned sha256 was a
    coin toss. Here the order is the caller's; the header keeps its length, and the tensors are untouched.
    """
    safetensors.torch.save_file(dict(state), str(path), metadata=dict(metadata))
    with open(path, "r+b") as handle:
        size = struct.unpack("<Q", handle.read(8))[0]
        header = json.loads(handle.read(size))
        written = header.pop("__metadata__")
        ordered = {"__metadata__": {k: written[k] for k in metadata}, **header}
        text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        handle.seek(8)
        handle.write(text.ljust(size))  # the same keys and values, so the same length; safetensors pads with spaces


def save_id(config: Mapping[str, Any]) -> str:
    """The sha256 of a ``config.json`` dict (without its own ``save_id``), in canonical JSON."""
    content = {k: v for k, v in config.items() if k != "save_id"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def stamped_card(config: Mapping[str, Any], repo_id: str = "") -> str:
    """The model card of ``config`` (loading from ``hf-hub:<repo_id>`` when given, else from its metadata's
    ``repo_id``), with a last line saying that ntre-zoo wrote it (and what it wrote, to notice edits)."""
    card = render_model_card(config, repo_id=repo_id or config["metadata"].get("repo_id", ""))
    digest = hashlib.sha256(card.encode()).hexdigest()
    return f"{card}\n<!-- ntre-zoo model card, sha256 of the text above: {digest} -->\n"


def card_is_ours(path: Path, config_path: Path | None = None) -> bool:
    """Whether ``path`` (a ``README.md``) is absent or a card ntre-zoo wrote and nobody edited since.

    A stamped card must still match its stamp; a card from before the stamp must equal the card of the
    ``config.json`` beside it. Anything else is the user's, and :func:`save_pretrained` keeps it.
    """
    if not path.exists():
        return True
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    stamp = _CARD_STAMP.search(text)
    if stamp:
        return hashlib.sha256(text[: stamp.start()].encode()).hexdigest() == stamp["digest"]
    try:
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path else None
        return config is not None and text == render_model_card(config, repo_id=config["metadata"].get("repo_id", ""))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def save_pretrained(
    model: FewShotSegmenter, save_directory: PathLike, *, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write ``config.json``, ``model.safetensors`` and a ``README.md`` model card to ``save_directory``.

    The save is atomic as a whole (see the module docstring): a reader sees the previous model or the new
    one, whenever the save is interrupted or killed; temporary files of killed saves are removed by the next
    save. Files follow the umask. A ``README.md`` that ntre-zoo did not write (or that was edited since) is
    kept, with a warning; delete it to get the generated card.

    Args:
        model: the model to save.
        save_directory: created if needed.
        metadata: JSON-serialisable facts about the weights, e.g. ``dataset``, ``fold``, ``metrics``
            (``train_classes``/``test_classes`` are filled in for PASCAL-5i and COCO-20i folds).

    Returns:
        The directory.

    Raises:
        TypeError: metadata that is not JSON-serialisable.
        FileExistsError: ``save_directory`` is a file.
    """
    directory = Path(save_directory)
    config = build_config(model, metadata)
    config["save_id"] = save_id(config)
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"save_directory {str(directory)!r} is a file; pass a directory (it is created).")
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(directory, (WEIGHTS_NAME, CONFIG_NAME, MODEL_CARD_NAME))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {**WEIGHTS_METADATA, HEADER_CONFIG_KEY: json.dumps(config)}
    files: list[tuple[Path, Any]] = [
        (directory / WEIGHTS_NAME, lambda tmp: write_safetensors(state, tmp, header)),
        (directory / CONFIG_NAME, lambda tmp: tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")),
    ]
    card_path = directory / MODEL_CARD_NAME
    if card_is_ours(card_path, directory / CONFIG_NAME):
        card = stamped_card(config)
        files.append((card_path, lambda tmp: tmp.write_text(card, encoding="utf-8")))
    else:
        warnings.warn(
            f"{str(card_path)!r} was not written by ntre-zoo (or was edited since), so it was kept; delete it and "
            "save again to get the generated model card.",
            stacklevel=2,
        )
    atomic_write_many(files)
    return directory
