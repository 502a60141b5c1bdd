"""Seeding, RNG state capture and atomic checkpoint files."""

from __future__ import annotations

import contextlib
import os
import random
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_write

__all__ = [
    "CHECKPOINT_FORMAT",
    "atomic_save",
    "check_checkpoint_file",
    "isolated_rng",
    "load_checkpoint",
    "rng_state",
    "seed_everything",
    "set_rng_state",
]

PathLike = str | os.PathLike[str]
#: The ``format`` field of every training checkpoint.
CHECKPOINT_FORMAT = "ntre-zoo-train-state/1"


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy, torch (and every CUDA device); with ``deterministic``, cuDNN deterministic and no
    benchmark, as the reference does when it has a seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def rng_state() -> dict[str, Any]:
    """Every RNG's state, in types ``torch.load(weights_only=True)`` accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(np.asarray(keys).astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`; CUDA states are restored where this machine has as many devices."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Seed python, numpy and torch (CPU) with ``seed`` for the block, then put the previous states back.

    Episodes are drawn inside it, so an episode depends only on its seed, never on the worker that loads it
    or on what ran before (which makes resuming in the middle of an epoch exact).
    """
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def atomic_save(obj: Any, path: PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace``: a crash at any moment
    leaves either the previous file or the new one, never a truncated one."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp), fsync=True)


def _not_a_checkpoint(path: Path, why: str) -> ValueError:
    return ValueError(
        f"{str(path)!r} is not a usable training checkpoint: {why}. Expected the {CHECKPOINT_FORMAT!r} file that "
        "`ntre-zoo train` writes to OUT/checkpoints/last.pt (a torch.save zip archive, written atomically). If the "
        "file was cut short by a copy or a full disk, copy it again or resume from checkpoints/best.pt (rename it "
        "to last.pt); otherwise start the run again with --overwrite."
    )


def check_checkpoint_file(path: PathLike) -> Path:
    """Cheaply check that ``path`` looks like a complete checkpoint (a torch zip archive whose index is intact),
    without loading it: an empty, truncated or foreign file is refused before a run builds anything.

    Raises:
        FileNotFoundError: no such file, with a hint about ``--resume``.
        ValueError: empty, truncated or not a torch archive, naming the file and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No training checkpoint at {str(path)!r}. --resume takes the output directory of an earlier "
            "`ntre-zoo train` run; it holds checkpoints/last.pt from the first epoch end (or --checkpoint-every) on. "
            "A run killed before that has nothing to resume: start it again with --overwrite."
        )
    size = path.stat().st_size
    if size == 0:
        raise _not_a_checkpoint(path, "the file is empty")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as error:
        raise _not_a_checkpoint(path, f"it is not a complete torch archive ({size} bytes; {error})") from error
    if not any(name.endswith("/data.pkl") for name in names):
        raise _not_a_checkpoint(path, "it is a zip file but not one written by torch.save")
    return path


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a training checkpoint written by the trainer (``weights_only`` loading: no code runs).

    Raises:
        FileNotFoundError: no such file, with a hint about ``--resume``.
        ValueError: an empty, truncated or foreign file, or another format, naming the file.
    """
    path = check_checkpoint_file(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError or EOFError depending on the damage
        raise _not_a_checkpoint(path, f"torch.load failed ({type(error).__name__}: {error})") from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = f"a dict with format {state.get('format')!r}" if isinstance(state, dict) else type(state).__name__
        raise _not_a_checkpoint(path, f"it holds {found}, not an ntre-zoo training state")
    return state
