"""Episodic training of NTRENet: config and presets, a run's configuration and directory, optimizer and schedule,
the trainer, checkpoints."""

from .config import PRESETS, TrainConfig
from .distributed import DistributedContext, EpisodeBatchSampler
from .optim import build_optimizer, parameter_groups, poly_lr
from .run_config import RunConfig
from .run_dir import RunDir
from .state import atomic_save, load_checkpoint, seed_everything
from .trainer import Trainer, TrainResult

__all__ = [
    "PRESETS",
    "DistributedContext",
    "EpisodeBatchSampler",
    "RunConfig",
    "RunDir",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "atomic_save",
    "build_optimizer",
    "load_checkpoint",
    "parameter_groups",
    "poly_lr",
    "seed_everything",
]
