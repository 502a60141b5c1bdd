"""Process-group helpers, the reproducible episode sampler and the episode collation.

Launch several processes with ``torchrun --nproc_per_node=N -m ntre_zoo train ...``; the trainer picks up an
initialised default process group (gloo on CPU, nccl on CUDA) and shards episodes, gathers the DO
prototypes and reduces validation statistics through it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from .state import isolated_rng

__all__ = [
    "EPISODE_KEYS",
    "DistributedContext",
    "EpisodeBatchSampler",
    "SeededEpisodes",
    "all_gather_cat",
    "check_batch_split",
    "collate_episodes",
]

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
