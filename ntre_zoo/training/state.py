"""Seeding, RNG state capture and atomic checkpoint files."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_write

__all__ = ["atomic_save", "isolated_rng", "load_checkpoint", "rng_state", "seed_everything", "set_rng_state"]

PathLike = str | os.PathLike[str]


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


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a training checkpoint written by the trainer (``weights_only`` loading: no code runs).

    Raises:
        FileNotFoundError: no such file, with a hint about ``--resume``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No training checkpoint at {str(path)!r}. --resume takes the output directory of an earlier "
            "`ntre-zoo train` run (it holds checkpoints/last.pt)."
        )
    return torch.load(path, map_location=map_location, weights_only=True)
