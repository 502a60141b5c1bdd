"""Process-group helpers, the reproducible episode sampler and the episode collation.

Launch several processes with ``torchrun --nproc_per_node=N -m ntre_zoo train ...``; the trainer picks up an
initialised default process group (gloo on CPU, nccl on CUDA) and shards episodes, gathers the DO
prototypes and reduces validation statistics through it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from .state import isolated_rng

__all__ = [
    "EPISODE_KEYS",
    "MAIN_FIRST_TIMEOUT",
    "DistributedContext",
    "EpisodeBatchSampler",
    "SeededEpisodes",
    "SyncedBatchNorm2d",
    "all_gather_cat",
    "check_batch_split",
    "collate_episodes",
    "main_process_first",
    "sync_batchnorm",
]

#: How long the other ranks wait for rank 0 in :func:`main_process_first` (indexing a first COCO run's ~120k
#: label files takes longer than the process group's 10-minute default).
MAIN_FIRST_TIMEOUT = timedelta(hours=4)

#: Keys of a training episode (the data contract); other keys are dropped when batching.
EPISODE_KEYS = ("query_image", "query_mask", "support_images", "support_masks", "class_index")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @classmethod
    def current(cls) -> DistributedContext:
        """The default process group's rank and size, or a single process when none is initialised."""
        if dist.is_available() and dist.is_initialized():
            local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
            return cls(dist.get_rank(), dist.get_world_size(), local)
        return cls()

    @classmethod
    def initialize_from_launcher(cls) -> DistributedContext:
        """Join the process group that ``torchrun`` describes in ``WORLD_SIZE``/``RANK``/``MASTER_ADDR``
        (nccl when CUDA is available, gloo otherwise); a single process when ``WORLD_SIZE`` is unset or 1."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend=backend)
        return cls.current()

    def device(self) -> torch.device:
        """This rank's default device: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")


def check_batch_split(batch_size: int, world_size: int, origin: str = "batch_size") -> None:
    """Refuse a batch (episodes per step over all processes) that ``world_size`` processes cannot split evenly,
    with the fix: the process counts that keep the batch, or the batch to use instead.

    Args:
        batch_size: episodes per step over all processes.
        world_size: the process count.
        origin: where the batch came from, for the message (``--preset reference``, ``--batch-size``).

    Raises:
        ValueError: naming both fixes.
    """
    if batch_size % world_size == 0:
        return
    per = -(-batch_size // world_size)
    fits = [n for n in range(1, world_size + 1) if batch_size % n == 0]
    raise ValueError(
        f"{origin} trains with batch {batch_size} (episodes per step over all processes), which {world_size} "
        f"processes cannot split evenly. Keep the recipe on {', '.join(map(str, fits))} process(es) "
        f"(torchrun --nproc_per_node={fits[-1]}), or pass --batch-size {per * world_size} ({per} per process; a "
        "different recipe, recorded in the model card)."
    )


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (numpy's SeedSequence: distinct inputs give unrelated streams)."""
    return int(np.random.SeedSequence([int(v) % 2**63 for v in values]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class EpisodeBatchSampler:
    """Batches of ``(index, episode_seed, epoch)`` for one rank; every episode is a function of (seed, epoch, position).

    Each epoch draws one permutation of the dataset and one seed per position from ``(seed, epoch)``, the same
    on every rank. Rank r takes positions r, r + W, r + 2W, ... (as ``DistributedSampler``), drops the tail that
    does not fill a batch on every rank (the reference's ``drop_last``), and can start at a batch offset, so a
    resumed run sees exactly the batches the interrupted one would have.

    Args:
        dataset_size: number of dataset items.
        batch_size: episodes per batch on this rank.
        seed: the training seed.
        rank, world_size: this process's place in the job.
        shuffle: permute the items each epoch (list order otherwise).
    """

    def __init__(
        self, dataset_size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True
    ) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"Invalid sampler setup: batch_size={batch_size!r}, rank={rank!r}, world_size={world_size!r}."
            )
        self.dataset_size, self.batch_size, self.seed = int(dataset_size), int(batch_size), int(seed)
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.epoch, self.start_batch = 0, 0
        if len(self) == 0:
            raise ValueError(
                f"The training set has {dataset_size} episodes, fewer than one batch of {batch_size} on each of "
                f"{world_size} process(es); use a smaller batch_size or more data."
            )

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's permutation and skip its first ``start_batch`` batches."""
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def __len__(self) -> int:
        """Batches per epoch on every rank (the same on all)."""
        return (self.dataset_size // self.world_size) // self.batch_size

    def epoch_plan(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The epoch's item order and per-position episode seeds (identical on every rank)."""
        generator = torch.Generator().manual_seed(_mix(self.seed, epoch))
        order = (
            torch.randperm(self.dataset_size, generator=generator) if self.shuffle else torch.arange(self.dataset_size)
        )
        seeds = torch.randint(0, 2**62, (self.dataset_size,), generator=generator)
        return order, seeds

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        order, seeds = self.epoch_plan(self.epoch)
        positions = torch.arange(self.rank, len(self) * self.batch_size * self.world_size, self.world_size)
        for b in range(self.start_batch, len(self)):
            batch = positions[b * self.batch_size : (b + 1) * self.batch_size]
            yield [(int(order[p]), int(seeds[p]), self.epoch) for p in batch]


class SeededEpisodes(Dataset):
    """Wraps an episode dataset so that ``wrapped[(index, seed, epoch)]`` draws ``dataset[index]`` of ``epoch``
    (through the dataset's ``set_epoch``, if it has one) with every global RNG seeded by ``seed`` (and restored
    afterwards): random support choice and augmentation are then fixed by the sampler, whatever the worker count,
    the resume point, or how long the DataLoader's workers live (they keep their own copy of the dataset)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        index, seed, epoch = key
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None and getattr(self.dataset, "epoch", None) != epoch:
            set_epoch(epoch)
        with isolated_rng(seed):
            return self.dataset[index]


def collate_episodes(items: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack the training keys of a list of episodes (see :data:`EPISODE_KEYS`).

    Raises:
        KeyError: an episode lacks a key, naming it and the data contract.
    """
    batch: dict[str, torch.Tensor] = {}
    for key in EPISODE_KEYS:
        try:
            values = [torch.as_tensor(item[key]) for item in items]
        except KeyError:
            raise KeyError(
                f"A training episode has no {key!r} (keys: {sorted(items[0])}). Episodes must hold "
                f"{list(EPISODE_KEYS)}; see ntre_zoo.data."
            ) from None
        batch[key] = torch.stack(values)
    return batch


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (same shape on every rank) over all ranks, rank 0's rows first."""
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


@contextlib.contextmanager
def main_process_first(ctx: DistributedContext, timeout: timedelta = MAIN_FIRST_TIMEOUT) -> Iterator[None]:
    """Run the block on rank 0 first and on the other ranks once it is done (indexing a dataset, which rank 0
    caches for the others).

    The others wait in a gloo barrier of their own with ``timeout``, not in the default group: an NCCL barrier
    would be cancelled by its watchdog after the group's timeout (10 minutes by default), which a first COCO
    indexing can exceed.
    """
    if not ctx.enabled:
        yield
        return
    group = dist.new_group(backend="gloo", timeout=timeout)
    if not isinstance(group, dist.ProcessGroup):  # -100: this rank is outside the group, which cannot be here
        raise RuntimeError(f"rank {ctx.rank} is not in the gloo group of all ranks.")
    try:
        if not ctx.is_main:
            dist.barrier(group=group)
        yield
        if ctx.is_main:
            dist.barrier(group=group)
    finally:
        dist.destroy_process_group(group)


class SyncedBatchNorm2d(nn.BatchNorm2d):
    """A frozen backbone's BatchNorm2d whose train-mode statistics are those of the whole batch over every rank.

    In train mode under an initialised process group of several ranks, the batch mean and variance are reduced
    over all ranks (two small all-reduces, in float32), normalise this rank's part, and update the running
    statistics as one process holding the whole batch would: the model then trains the same at any process
    count. No gradient flows through the statistics: the backbone is frozen and runs under ``no_grad``. Eval
    mode, and a single process, are plain ``BatchNorm2d``. ``torch.nn.SyncBatchNorm`` does the same with
    gradients but runs on GPUs only, so gloo on the CPU could not show the equivalence.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        if x.requires_grad:
            raise RuntimeError("SyncedBatchNorm2d is for a frozen backbone run under no_grad; use nn.SyncBatchNorm.")
        xf = x.float()
        stats = torch.cat([xf.sum(dim=(0, 2, 3)), xf.new_tensor([x.numel() // x.shape[1]])])
        dist.all_reduce(stats)
        count = stats[-1]
        mean = stats[:-1] / count
        squares = (xf - mean[None, :, None, None]).square().sum(dim=(0, 2, 3))
        dist.all_reduce(squares)
        var = squares / count
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            momentum = 0.1 if self.momentum is None else self.momentum
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
            self.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
            self.running_var.mul_(1 - momentum).add_(var * count / (count - 1).clamp_min(1), alpha=momentum)
        return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` inside ``module`` by a :class:`SyncedBatchNorm2d` with the same parameters,
    statistics and mode (the state dict keeps its keys); returns ``module``."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = SyncedBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            synced.load_state_dict(child.state_dict())
            synced.to(child.weight.device if child.weight is not None else "cpu")
            synced.requires_grad_(any(p.requires_grad for p in child.parameters()))
            synced.train(child.training)
            setattr(module, name, synced)
        else:
            sync_batchnorm(child)
    return module
