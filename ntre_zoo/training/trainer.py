"""The episodic trainer: SGD with the reference's groups and poly schedule, DO bank, checkpoints, resume, DDP.

What it writes in its output directory (rank 0) is laid out by :class:`~ntre_zoo.training.run_dir.RunDir`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..inference.precision import autocast_dtype
from .config import TrainConfig
from .distributed import (
    DistributedContext,
    EpisodeBatchSampler,
    SeededEpisodes,
    all_gather_cat,
    check_batch_split,
    collate_episodes,
    sync_batchnorm,
)
from .environment import run_environment
from .losses import NTRENetLoss
from .optim import build_optimizer, poly_lr, set_lr
from .outputs import append_jsonl, card_metadata, epoch_line, tensorboard_writer, write_json
from .run_dir import RunDir
from .state import (
    CHECKPOINT_FORMAT,
    atomic_save,
    load_checkpoint,
    rng_state,
    seed_everything,
    set_rng_state,
)

__all__ = ["EvaluateFn", "TrainResult", "Trainer"]

#: ``evaluate_fn(model) -> {"miou": ..., ...}``; it is called on every rank (see :mod:`.validation`).
EvaluateFn = Callable[[nn.Module], Mapping[str, float]]


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        model: the trained model (unwrapped, last weights, in eval mode).
        step: optimizer steps done in total.
        epoch: completed epochs.
        best_metric: best validation value of ``config.select_metric`` (None without validation).
        history: one dict per completed epoch (as in ``metrics.jsonl``).
        output_dir: where files were written, or None.
    """

    model: nn.Module
    step: int
    epoch: int
    best_metric: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    output_dir: Path | None = None


class Trainer:
    """Trains an NTRENet on an episode dataset following the ``ntre_zoo.data`` contract.

    Args:
        model: the network (its backbone stays frozen); moved to ``device``.
        train_dataset: items with ``query_image``, ``query_mask``, ``support_images``, ``support_masks`` and
            ``class_index`` (see :mod:`ntre_zoo.data`). A ``set_epoch(epoch)`` method is called each epoch.
        config: hyper-parameters.
        output_dir: where checkpoints and exports go (None: nothing is written and resume is unavailable).
        evaluate_fn: validation callback, run every ``config.validation_interval()`` epochs on every rank.
        device: defaults to this rank's CUDA device, else the CPU.
        metadata: extra fields for the exported model card (dataset, fold, ...).
        distributed: the process group view; defaults to the initialised default group, if any.
    """

    def __init__(
        self,
        model: nn.Module,
        train_dataset: Dataset,
        config: TrainConfig | None = None,
        *,
        output_dir: str | os.PathLike | None = None,
        evaluate_fn: EvaluateFn | None = None,
        device: str | torch.device | None = None,
        metadata: Mapping[str, Any] | None = None,
        distributed: DistributedContext | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        self.dist = distributed or DistributedContext.current()
        self.device = torch.device(device) if device is not None else self.dist.device()
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.run_dir = RunDir(output_dir) if output_dir is not None else None
        self.metadata = dict(metadata or {})
        self.evaluate_fn = evaluate_fn
        check_batch_split(self.config.batch_size, self.dist.world_size, "the TrainConfig")
        self.model = model.to(self.device)
        self.dataset = train_dataset
        self.sampler = EpisodeBatchSampler(
            len(train_dataset),  # type: ignore[arg-type]
            self.config.batch_size // self.dist.world_size,
            self.config.seed,
            self.dist.rank,
            self.dist.world_size,
            self.config.shuffle,
        )
        self.optimizer = build_optimizer(self.model, self.config)
        self.criterion = NTRENetLoss(self.config.loss)
        #: What the run computes in on this device (``TrainConfig.precision_on``): recorded in train_config.json.
        self.precision = self.config.precision_on(self.device)
        self.autocast_dtype = autocast_dtype(self.precision, self.device)  # None: fp32
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        if self.device.type == "cuda":  # the layout tensor cores read without transposes
            self.model.to(memory_format=torch.channels_last)
        self.network: nn.Module = self.model
        backbone = getattr(self.model, "backbone", None)
        if self.dist.enabled and self.config.backbone_bn == "train" and isinstance(backbone, nn.Module):
            sync_batchnorm(backbone)  # batch statistics of the whole batch: the same run at any process count
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.network = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        # Position: the epoch in progress, batches of it already done, optimizer steps done.
        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0
        self.best_metric: float | None = None
        self.history: list[dict[str, Any]] = []
        self.epoch_sums: dict[str, float] = {}  # running loss sums of the epoch in progress (mean over ranks)
        self._pending: dict[str, torch.Tensor] = {}  # loss sums on the device since the last gather
        self._pending_steps = 0
        self._loader: DataLoader | None = None
        self._writer = None

    # ------------------------------------------------------------------ public
    @property
    def total_steps(self) -> int:
        """T of the poly schedule: ``epochs * batches per epoch``."""
        return self.config.epochs * len(self.sampler)

    def fit(self, resume: bool = False) -> TrainResult:
        """Train until ``config.epochs`` (or ``config.max_steps``) and return the result.

        Args:
            resume: continue from ``output_dir/checkpoints/last.pt`` (bit-exact on CPU: the same weights as a
                run that was never interrupted).

        Raises:
            FileNotFoundError: ``resume`` without a checkpoint.
            ValueError: the checkpoint was written with a different trajectory-changing config.
        """
        if resume:
            if self.run_dir is None:
                raise ValueError("resume=True needs the output_dir of the run to continue.")
            self.load_state(load_checkpoint(self.run_dir.checkpoint("last")))
        else:
            # Different streams per rank (dropout, PCL sampling); identical weights come from DDP's broadcast.
            seed_everything(self.config.seed + self.dist.rank, self.config.deterministic)
        if self.device.type == "cuda":
            # CUDA training is not bit-reproducible whatever the flags (atomic adds in the backward of
            # interpolation and of the losses), so cuDNN may pick its fastest kernels (docs/training.md).
            torch.backends.cudnn.benchmark = True
        if self.dist.is_main and self.run_dir is not None:
            self._write_config(self.run_dir)
            self._writer = tensorboard_writer(self.run_dir.tensorboard)
        try:
            self._run()
        finally:
            if self._writer is not None:
                self._writer.close()
        self._sync_buffers()
        self.model.eval()
        return TrainResult(self.model, self.step, self.epoch, self.best_metric, list(self.history), self.output_dir)

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        cfg = self.config
        while self.epoch < cfg.epochs:
            if self._reached_max_steps():
                break
            self._train_epoch()
            sums = self.epoch_sums
            if self.batch_in_epoch < len(self.sampler):  # stopped by max_steps inside the epoch
                self.save_checkpoint("last")
                break
            done = self.epoch
            self.epoch, self.batch_in_epoch, self.epoch_sums = self.epoch + 1, 0, {}
            record: dict[str, Any] = {
                "epoch": self.epoch,
                "step": self.step,
                "lr": self.optimizer.param_groups[0]["lr"],
            }
            count = max(sums.pop("_batches", 0.0), 1.0)
            record.update({f"train_{k}": v / count for k, v in sums.items()})
            interval = cfg.validation_interval()
            improved, metrics = False, {}
            if self.evaluate_fn is not None and interval and (done % interval == 0 or self.epoch == cfg.epochs):
                metrics = self._validate()
                record.update({f"val_{k}": v for k, v in metrics.items()})
                value = metrics.get(cfg.select_metric)
                if value is None:
                    raise KeyError(
                        f"Validation returned {sorted(metrics)}; select_metric={cfg.select_metric!r} is not among them."
                    )
                improved = self.best_metric is None or value > self.best_metric
                if improved:
                    self.best_metric = float(value)
            self.history.append(record)
            self._log_epoch(record, improved)
            if improved:
                self.save_checkpoint("best")
                self._export("best", metrics)
            self.save_checkpoint("last")
        if self.epoch >= cfg.epochs or self._reached_max_steps():
            self._export("last", self._last_metrics())

    def _train_epoch(self) -> None:
        cfg = self.config
        self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
        self._set_train_mode()
        bar = tqdm(
            total=len(self.sampler),
            initial=self.batch_in_epoch,
            desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
            disable=not (cfg.progress and self.dist.is_main),
            dynamic_ncols=True,
        )
        with bar:
            for batch in self.loader():
                self.train_step(batch)
                self.batch_in_epoch += 1
                bar.update(1)
                if self.step % cfg.log_every == 0:
                    interval = self._gather_losses()
                    bar.set_postfix(loss=f"{interval['total']:.4f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint("last")
                if self._reached_max_steps():
                    break
        self._gather_losses()

    def loader(self) -> DataLoader:
        """The training DataLoader, built once: its workers (``num_workers``) live across epochs, and every episode
        key carries its epoch (see :class:`~ntre_zoo.training.distributed.SeededEpisodes`)."""
        if self._loader is None:
            workers = self.config.num_workers
            self._loader = DataLoader(
                SeededEpisodes(self.dataset),
                batch_sampler=self.sampler,
                num_workers=workers,
                collate_fn=collate_episodes,
                pin_memory=self.device.type == "cuda",
                persistent_workers=workers > 0,
                prefetch_factor=4 if workers > 0 else None,
                # worker seeds; keeps the global RNG untouched (episodes are seeded by their keys anyway)
                generator=torch.Generator().manual_seed(self.config.seed),
            )
        return self._loader

    def train_step(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One optimizer step on a collated batch.

        Returns:
            This rank's loss terms as 0-d tensors on the device (detached; reading them waits for the device).
            Their sums are gathered over ranks every ``log_every`` steps into the epoch means.

        Raises:
            RuntimeError: the loss is not finite on some rank; every rank raises it at the same step.
        """
        cfg = self.config
        self.step += 1
        lr = poly_lr(cfg, self.step, self.total_steps)
        set_lr(self.optimizer, lr)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if self.device.type == "cuda":
            batch["query_image"] = batch["query_image"].contiguous(memory_format=torch.channels_last)
        dtype = self.autocast_dtype
        autocast = torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with autocast:
            output = self.network(batch["query_image"], batch["support_images"], batch["support_masks"])
        gather = all_gather_cat if self.dist.enabled else None
        loss = self.criterion(output, batch["query_mask"], batch["support_masks"], batch["class_index"], gather)
        self._check_finite(loss.total.detach(), lr)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss.total).backward()
        if cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        terms = {"total": loss.total.detach(), **loss.terms}
        for k, v in terms.items():
            self._pending[k] = self._pending[k] + v.double() if k in self._pending else v.double()
        self._pending_steps += 1
        return terms

    def _check_finite(self, total: torch.Tensor, lr: float) -> None:
        """Raise on every rank together when the loss is not finite on any (a rank raising alone would leave the
        others waiting in the next all-reduce): one small all-reduce and one wait for the device per step."""
        losses = torch.zeros(self.dist.world_size, device=total.device, dtype=torch.float32)
        losses[self.dist.rank] = total.float()
        if self.dist.enabled:
            dist.all_reduce(losses)
        values = losses.tolist()
        bad = {rank: value for rank, value in enumerate(values) if not math.isfinite(value)}
        if bad:
            where = ", ".join(f"{value} on rank {rank}" for rank, value in bad.items())
            raise RuntimeError(
                f"The training loss is not finite at step {self.step} (lr {lr:.3g}): {where}. Lower base_lr or set "
                f"grad_clip; in fp16 (precision), try --precision bf16 or fp32."
            )

    def _gather_losses(self) -> dict[str, float]:
        """Move the loss sums since the last call into ``epoch_sums`` as means over the ranks (one all-reduce),
        write their means over those steps to TensorBoard, and return those means."""
        if not self._pending_steps:
            return {}
        names = sorted(self._pending)
        sums = torch.stack([self._pending[k] for k in names])
        if self.dist.enabled:
            dist.all_reduce(sums)
        means = dict(zip(names, (sums / self.dist.world_size).tolist(), strict=True))
        steps = self._pending_steps
        for k, v in means.items():
            self.epoch_sums[k] = self.epoch_sums.get(k, 0.0) + v
        self.epoch_sums["_batches"] = self.epoch_sums.get("_batches", 0.0) + steps
        self._pending, self._pending_steps = {}, 0
        interval = {k: v / steps for k, v in means.items()}
        if self._writer is not None:
            for k, v in interval.items():
                self._writer.add_scalar(f"train/{k}", v, self.step)
            self._writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], self.step)
        return interval

    def _set_train_mode(self) -> None:
        self.network.train()
        if self.config.backbone_bn == "eval":
            backbone: Any = self.model.backbone
            backbone.eval()

    def _reached_max_steps(self) -> bool:
        return self.config.max_steps is not None and self.step >= self.config.max_steps

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's buffers (train-mode BN statistics), as DDP does before each forward."""
        if self.dist.enabled:
            for buffer in self.model.buffers():
                dist.broadcast(buffer, 0)

    def _validate(self) -> dict[str, float]:
        """Run the validation callback without touching the training's random streams (a DataLoader draws
        its base seed from the global generator), so a run with validation trains exactly as one without."""
        self._sync_buffers()
        self.model.eval()
        rngs = rng_state()
        try:
            with torch.no_grad():
                raw = self.evaluate_fn(self.model)  # type: ignore[misc]
                metrics = {k: v if isinstance(v, int) else float(v) for k, v in raw.items()}
        finally:
            set_rng_state(rngs)
            self._set_train_mode()
        if self._writer is not None:
            for k, v in metrics.items():
                self._writer.add_scalar(f"val/{k}", v, self.step)
        return metrics

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The full training state of this rank (RNG states of every rank are gathered by :meth:`save_checkpoint`)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "bank": self.criterion.bank.state_dict(),
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            "best_metric": self.best_metric,
            "history": json.dumps(self.history),
            "epoch_sums": json.dumps(self.epoch_sums),
            "config": json.dumps(self.config.to_dict()),
            "world_size": self.dist.world_size,
            "rng": [rng_state()],
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (as written by :meth:`save_checkpoint`) into this trainer."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"Not an ntre-zoo training checkpoint (format {state.get('format')!r}, expected {CHECKPOINT_FORMAT!r})."
            )
        saved = TrainConfig.from_dict(json.loads(state["config"]))
        changed = saved.trajectory_differences(self.config)
        if changed:
            raise ValueError(
                f"The checkpoint was trained with different settings {changed} (saved, now); resume with the "
                "saved configuration (only max_steps, progress, num_workers, log_every and checkpoint_every may "
                "change)."
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scaler"] or not self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        # else: the run so far had no loss scaling (it ran on the CPU, or in bf16 or fp32), so its scaler state is
        # empty; resumed where fp16 scaling is on (--device cuda), the scaler starts from its initial scale.
        self.criterion.bank.load_state_dict(state["bank"])
        self.criterion.bank.to(self.device)
        self.epoch, self.batch_in_epoch, self.step = (
            int(state["epoch"]),
            int(state["batch_in_epoch"]),
            int(state["step"]),
        )
        self.best_metric = state["best_metric"]
        self.history = json.loads(state["history"])
        self.epoch_sums = json.loads(state["epoch_sums"])
        rngs = state["rng"]
        if len(rngs) == self.dist.world_size:
            set_rng_state(rngs[self.dist.rank])
        else:  # another process count: exact continuation is impossible; reseed deterministically
            seed_everything(self.config.seed + 7919 * self.step + self.dist.rank, self.config.deterministic)

    def save_checkpoint(self, name: str) -> Path | None:
        """Write ``checkpoints/<name>.pt`` atomically on rank 0 (every rank must call it: RNG states are gathered)."""
        self._sync_buffers()
        self._gather_losses()  # the epoch's loss sums so far belong in the checkpoint
        state = self.state_dict()
        if self.dist.enabled:
            rngs: list[Any] = [None] * self.dist.world_size
            dist.all_gather_object(rngs, state["rng"][0])
            state["rng"] = rngs
        if self.run_dir is None or not self.dist.is_main:
            return None
        return atomic_save(state, self.run_dir.checkpoint(name))

    # ------------------------------------------------------------------ files
    def _write_config(self, run_dir: RunDir) -> None:
        model_config: Any = getattr(self.model, "config", None)
        payload = {
            "train": self.config.to_dict(),
            "precision": self.precision,
            "device": self.device.type,
            "model": model_config.to_dict() if hasattr(model_config, "to_dict") else None,
            "world_size": self.dist.world_size,
            "metadata": self.metadata,
        }
        write_json(run_dir.train_config, payload)

    def _log_epoch(self, record: Mapping[str, Any], improved: bool) -> None:
        """One printed line per epoch on rank 0 (also without progress bars, so cluster logs show progress), then
        ``metrics.jsonl`` and TensorBoard."""
        if not self.dist.is_main:
            return
        print(epoch_line(record, self.config.epochs, improved), flush=True)
        if self.run_dir is None:
            return
        append_jsonl(self.run_dir.metrics, record)
        if self._writer is not None:
            for k, v in record.items():
                if k.startswith("train_") and isinstance(v, float) and math.isfinite(v):
                    self._writer.add_scalar(f"epoch/{k}", v, self.epoch)

    def _last_metrics(self) -> dict[str, float]:
        for record in reversed(self.history):
            metrics = {k[4:]: v for k, v in record.items() if k.startswith("val_")}
            if metrics:
                return metrics
        return {}

    def _export(self, name: str, metrics: Mapping[str, float]) -> None:
        """Write ``OUT/<name>/`` with ``save_pretrained`` (config.json, model.safetensors, model card); models
        without ``save_pretrained`` (not an NTRENet) are only checkpointed."""
        save = getattr(self.model, "save_pretrained", None)
        if self.run_dir is None or not self.dist.is_main or save is None:
            return
        environment = run_environment(self.device)
        card = card_metadata(
            self.metadata,
            metrics,
            self.config,
            self.epoch,
            self.step,
            self.dist.world_size,
            environment,
            self.precision,
        )
        save(self.run_dir.export(name), metadata=card)
