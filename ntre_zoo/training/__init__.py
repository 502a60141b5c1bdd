"""Episodic training of NTRENet: config and presets, optimizer and schedule, the trainer, checkpoints."""
from .config import PRESETS, TrainConfig
from .distributed import DistributedContext, EpisodeBatchSampler
from .optim import build_optimizer, parameter_groups, poly_lr
from .state import atomic_save, load_checkpoint, seed_everything
from .trainer import Trainer, TrainResult

__all__ = [
    "PRESETS",
    "TrainConfig",
    "Trainer",
    "TrainResult",
    "DistributedContext",
    "EpisodeBatchSampler",
    "build_optimizer",
    "parameter_groups",
    "poly_lr",
    "atomic_save",
    "load_checkpoint",
    "seed_everything",
]
