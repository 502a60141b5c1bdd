"""``RunDir``: the one owner of a training run directory's layout.

A run directory holds (rank 0 writes it):

* ``run.json``: the :class:`~ntre_zoo.training.run_config.RunConfig` the run was started with, and the command line
  that makes it (``train --resume`` and ``ntre_zoo.train(..., resume=True)`` read it). A run of 0.3 has
  ``command.json`` (its command-line options) instead.
* ``train_config.json``: the :class:`~ntre_zoo.training.TrainConfig`, the model config and what the run computed in.
* ``checkpoints/last.pt``: the full training state (model, optimizer, scaler, DO bank, every rank's RNG states,
  epoch, step and sampler position); a resumed run continues from it. ``checkpoints/best.pt``: the same at the best
  validation. Both are written atomically.
* ``last/`` and ``best/``: the weights exported with ``save_pretrained`` (``config.json``, ``model.safetensors``,
  model card with the measured metrics): ``from_pretrained("OUT/best")`` loads them.
* ``metrics.jsonl``: one line per epoch (mean training loss, lr, validation metrics); ``tensorboard/`` when the
  ``tensorboard`` package is installed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

__all__ = ["EXPORTS", "RunDir"]

#: The exported weights a run writes: the last epoch's and the best validation's.
EXPORTS = ("best", "last")


class RunDir:
    """The files of one training run, by name (nothing is read or written until a method is called).

    Args:
        path: the run's output directory.
    """

    RUN_CONFIG = "run.json"
    LEGACY_COMMAND = "command.json"
    TRAIN_CONFIG = "train_config.json"
    METRICS = "metrics.jsonl"
    CHECKPOINTS = "checkpoints"
    TENSORBOARD = "tensorboard"
    #: Everything a run writes here (:meth:`clear` deletes these and nothing else).
    ENTRIES = (RUN_CONFIG, LEGACY_COMMAND, TRAIN_CONFIG, METRICS, CHECKPOINTS, *EXPORTS, TENSORBOARD)

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ------------------------------------------------------------------ paths
    @property
    def run_config(self) -> Path:
        return self.path / self.RUN_CONFIG

    @property
    def legacy_command(self) -> Path:
        return self.path / self.LEGACY_COMMAND

    @property
    def train_config(self) -> Path:
        return self.path / self.TRAIN_CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def tensorboard(self) -> Path:
        return self.path / self.TENSORBOARD

    def checkpoint(self, name: str = "last") -> Path:
        """``checkpoints/<name>.pt`` (``last`` or ``best``)."""
        return self.path / self.CHECKPOINTS / f"{name}.pt"

    def export(self, name: str) -> Path:
        """``best/`` or ``last/``: weights that ``from_pretrained`` loads."""
        if name not in EXPORTS:
            raise ValueError(f"A run exports {' and '.join(EXPORTS)}, not {name!r}.")
        return self.path / name

    def best_or_last(self) -> Path:
        """``best/`` when the run validated, else ``last/``."""
        return self.export("best") if self.export("best").is_dir() else self.export("last")

    # ------------------------------------------------------------------ state
    def holds_run(self) -> bool:
        """Whether an ntre-zoo run was started here (``run.json``, or a 0.3 run's ``command.json``)."""
        return self.run_config.is_file() or self.legacy_command.is_file()

    def check_new(self, overwrite: bool = False) -> None:
        """Refuse a file, or a non-empty directory unless ``overwrite``: a new run never mixes with an earlier one.

        Raises:
            ValueError: naming the directory and the ways out (resume a run, overwrite it, or a new directory).
        """
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"--output {str(self.path)!r} is a file; pass a directory.")
        if not self.path.is_dir() or overwrite or not any(self.path.iterdir()):
            return
        hint = f" It holds an ntre-zoo run: continue it with --resume {self.path}." if self.holds_run() else ""
        raise ValueError(
            f"--output {str(self.path)!r} is not empty.{hint} To train a new run there, pass --overwrite (it deletes "
            f"the earlier run's {', '.join(self.ENTRIES)}); or choose a new directory."
        )

    def clear(self) -> None:
        """Delete what a training run wrote here (:attr:`ENTRIES`), leaving any other file alone."""
        for name in self.ENTRIES:
            path = self.path / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def read_json(self, path: Path, what: str) -> dict[str, Any]:
        """A JSON object this run wrote (``what`` names it in errors).

        Raises:
            FileNotFoundError: the file is missing (this is not the directory of an ``ntre-zoo train`` run).
            ValueError: it is not a JSON object (damaged, or edited by hand).
        """
        if not path.is_file():
            raise FileNotFoundError(
                f"{str(path)!r} not found: resuming takes the output directory of an earlier `ntre-zoo train` run, "
                f"which holds {what}."
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
            raise ValueError(f"{str(path)!r} should hold {what} as JSON but does not ({error}).") from error
        if not isinstance(data, dict):
            raise ValueError(f"{str(path)!r} should hold {what} as a JSON object, got {type(data).__name__}.")
        return data
