"""``train``: one training run from a :class:`~ntre_zoo.training.run_config.RunConfig`, from Python or the CLI.

A run checks everything it will need before its first step and fails within seconds otherwise (:func:`preflight`):
the output directory (a non-empty one needs ``resume`` or ``overwrite``), the data root, the batch against the
process count, the backbone weights (files present, the Hub reachable) and, with ``push_to_hub``, a token that can
write. A resumed run continues the configuration it was started with (``run.json``): only the
:data:`~ntre_zoo.training.run_config.RESUMABLE` fields may differ. Several processes: ``torchrun`` sets
``WORLD_SIZE``/``RANK`` (gloo on CPU, nccl on CUDA), and ``train`` joins that group.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import DataConfig, build_dataset, fold_split
from ..evaluation.protocols import get_protocol
from ..training.config import TrainConfig, precision_of_amp
from ..training.distributed import DistributedContext, check_batch_split, main_process_first
from ..training.run_config import RunConfig
from ..training.run_dir import RunDir
from ..training.state import load_checkpoint, seed_everything
from ..training.trainer import Trainer, TrainResult
from ..training.validation import make_evaluate_fn
from .train_command import (
    FIELDS,
    RESUME_OPTIONS,
    command_line,
    field_value,
    flag,
    given_options,
    option_value,
    run_config_from_options,
    with_run_options,
)

__all__ = ["Preflight", "load_run", "preflight", "train"]


@dataclass(frozen=True)
class Preflight:
    """What :func:`preflight` found: the run as it will go, and what it needs next.

    Args:
        config: the run's configuration (for a resumed run: as it was started, with the resumable fields given now).
        command: the command line its model cards record.
        saved_model: a resumed run's model config (``train_config.json``): the model is rebuilt from it, no download.
        backbone: the resolved backbone initialisation of a new model (rank 0 only; None otherwise).
        backbone_init: what the model card records of the backbone's initial weights.
    """

    config: RunConfig
    command: str
    saved_model: dict[str, Any] | None = None
    backbone: Any = None
    backbone_init: dict[str, Any] | None = None


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def load_run(path: str | os.PathLike) -> tuple[RunConfig, str]:
    """The configuration a run directory was started with, and its recorded command line.

    ``run.json`` holds it; a run of 0.3 recorded its command-line options in ``command.json`` instead, and its
    precision in ``train_config.json`` (as ``amp``/``amp_dtype``), which are read back as the run they made.

    Its checkpoint is not read here: :func:`preflight` loads it once, before anything is built.

    Raises:
        FileNotFoundError: not a run directory.
        ValueError: a damaged or hand-edited ``run.json``/``command.json``, or a checkpoint file passed instead of
            the run's directory.
    """
    run = RunDir(path)
    if run.path.is_file():
        parent = run.path.parent.parent if run.path.parent.name == RunDir.CHECKPOINTS else None
        hint = f" For this checkpoint that is --resume {parent}." if parent else ""
        raise ValueError(f"--resume takes a run's output directory, not the file {str(run.path)!r}.{hint}")
    if run.run_config.is_file():
        command = run.read_json(run.run_config, "the run's configuration (run.json)").get("command")
        config = RunConfig.load(run.run_config)
    else:
        config, command = _legacy_run(run)
    return config.replace(output_dir=str(run.path)), command or f"ntre-zoo train --config {run.run_config}"


def _legacy_run(run: RunDir) -> tuple[RunConfig, str]:
    """A 0.3 run: its ``command.json`` options (with the precision its ``train_config.json`` recorded) as a
    ``RunConfig``. Options it did not record (``--protocol``) take the value they had then (the tree's lists)."""
    saved = run.read_json(run.legacy_command, "the run's options (command.json)")
    train_config = run.read_json(run.train_config, "the run's configuration (train_config.json)")
    options = saved.get("args")
    if not isinstance(options, dict) or "command" not in saved:
        raise ValueError(f"{str(run.legacy_command)!r} lacks 'args' or 'command'; it was not written by ntre-zoo.")
    recorded = train_config.get("train") or {}
    precision = recorded.get("precision") or precision_of_amp(recorded.get("amp"), recorded.get("amp_dtype"))
    known = {k: v for k, v in given_options(options).items() if k in FIELDS}  # its precision: train_config.json
    config = run_config_from_options({**known, "precision": precision, "output": str(run.path)})
    if "protocol" not in options:
        config = dataclasses.replace(config, protocol=None)
    return config, str(saved["command"])


def _refuse_changes(run: str | os.PathLike, changed: list[str]) -> None:
    """Refuse what would change a resumed run: ``changed`` holds ``"--flag value (the run has value)"`` items."""
    if changed:
        raise ValueError(
            f"Resuming {run} continues the run as it was started, and {'; '.join(changed)} would change it. Resume "
            f"without {'it' if len(changed) == 1 else 'them'} (only {', '.join(map(flag, RESUME_OPTIONS))} may be "
            "given again), or train a new run in another directory (or this one with --overwrite)."
        )


def _check_resumed(saved: RunConfig, config: RunConfig) -> None:
    by_field = {path: flag(dest) for dest, path in FIELDS.items()}
    changes = saved.resume_differences(config).items()
    _refuse_changes(saved.output_dir, [f"{by_field.get(k, k)} {b!r} (the run has {a!r})" for k, (a, b) in changes])


def resume_config(path: str | os.PathLike, given: Mapping[str, Any]) -> RunConfig:
    """The run in ``path`` with the options ``given`` again (``{dest: value}`` as typed): the resumable ones are
    applied (and said), the others must have the run's values.

    Raises:
        ValueError: an option whose value would change the run, naming it, its value and the run's.
    """
    saved, _ = load_run(path)
    # The run options of the first run do not carry over: a resumed run takes them as given now (or their defaults).
    defaults = run_config_from_options({"dataset": "pascal5i", "data_root": ".", "output": "."})
    saved = saved.replace(**{FIELDS[d]: field_value(defaults, FIELDS[d]) for d in RESUME_OPTIONS})
    changed = []
    for dest, value in given.items():
        if dest not in FIELDS or dest in RESUME_OPTIONS:
            continue
        before = option_value(saved, dest)
        same = Path(value).resolve() == Path(saved.output_dir).resolve() if dest == "output" else before == value
        if not same:
            changed.append(f"{flag(dest)} {value!r} (the run has {before!r})")
    _refuse_changes(path, changed)
    shown = [f"{flag(d)} {v!r}" if v is not True else flag(d) for d, v in given.items() if d in RESUME_OPTIONS]
    if shown and _is_main():
        print(f"resuming {path}: applying {', '.join(shown)} (safe to change: the weights' trajectory stays the same)")
    return with_run_options(saved, given)


def preflight(config: RunConfig, *, resume: bool = False, overwrite: bool = False) -> Preflight:
    """Every check a run can make before it starts, in seconds; returns what the run needs next.

    Raises:
        ValueError, FileNotFoundError, RuntimeError: what would make the run fail later, and the way out.
    """
    if resume and overwrite:
        raise ValueError("resume continues a run and overwrite starts a new one; pass one of them.")
    run = RunDir(config.output_dir)
    saved_model = None
    if resume:
        saved, command = load_run(run.path)
        load_checkpoint(run.checkpoint("last"))  # read once now, so a damaged file stops the run at once
        _check_resumed(saved, config)
        saved_model = run.read_json(run.train_config, "the run's configuration (train_config.json)").get("model")
    else:
        run.check_new(overwrite)
        if not Path(config.data.root).exists():
            raise FileNotFoundError(f"--data-root {config.data.root!r} does not exist.")
        command = command_line(config) or f"ntre-zoo train --config {run.run_config}"
    preset = TrainConfig.from_preset(config.train.preset, benchmark=config.data.dataset)
    origin = f"--preset {preset.preset}" if preset.batch_size == config.train.batch_size else "--batch-size"
    check_batch_split(config.train.batch_size, int(os.environ.get("WORLD_SIZE", "1")), origin)
    plan = Preflight(config, command, saved_model)
    if not _is_main():
        return plan  # the Hub and the backbone files are rank 0's business (DDP broadcasts its weights)
    backbone, backbone_init = None, None
    if resume:
        trained = run.read_json(run.train_config, "the run's configuration (train_config.json)")
        backbone_init = (trained.get("metadata") or {}).get("backbone_init")
    elif config.init:
        backbone_init = {"kind": "init", "source": config.init, "sha256": None}
    elif config.model is not None:
        from ..zoo.backbone_weights import resolve_backbone_weights

        backbone = resolve_backbone_weights(str(config.backbone_weights), config.model.backbone)
        backbone_init = backbone.to_dict() if backbone is not None else None
    if config.push_to_hub:
        from ..zoo.hub_access import check_hub_reachable, check_write_access

        check_hub_reachable(
            "--push-to-hub",
            f"Train without it and publish afterwards: ntre-zoo publish {run.best_or_last()} "
            f"--repo-id {config.push_to_hub}.",
        )
        check_write_access(config.push_to_hub)
    if overwrite:
        run.clear()
    return dataclasses.replace(plan, backbone=backbone, backbone_init=backbone_init)


def _build_model(plan: Preflight) -> Any:
    from ..model import NTRENet
    from ..model.config import ModelConfig

    config = plan.config
    if plan.saved_model is not None:  # resume: the architecture of the run; weights come from the checkpoint
        return NTRENet(ModelConfig.from_dict(plan.saved_model))
    if config.init:
        from ..zoo.hub import from_pretrained

        model = from_pretrained(config.init)
        if model.config.shot != config.data.shot:
            model.config = dataclasses.replace(model.config, shot=config.data.shot)
        return model
    assert config.model is not None  # RunConfig fills it in for a new model
    model = NTRENet(config.model)
    if plan.backbone is not None:
        from ..zoo.backbone_weights import load_backbone_weights

        load_backbone_weights(model, plan.backbone)
    return model


def _data(config: RunConfig, model: Any) -> DataConfig:
    """The run's data with the model's canvas and normalisation, under its protocol (COCO split kept)."""
    mc = model.config
    data = dataclasses.replace(config.data, test_size=mc.test_size, mean=mc.mean, std=mc.std)
    if config.protocol is None:
        return data
    return dataclasses.replace(get_protocol(config.protocol).data_config(data), coco_split=data.coco_split)


def _datasets(data: DataConfig, train: TrainConfig, ctx: DistributedContext) -> tuple[Any, Any, list | None]:
    """``(train, val, test_classes)``: the training episodes, the validation episodes (None without validation)
    and the fold's novel classes (None for a folder dataset trained without validation)."""
    progress = train.progress and ctx.is_main
    val = None
    with main_process_first(ctx):  # rank 0 indexes the labels (and writes the class-list cache) first
        episodes = build_dataset(data, "train", seed=train.seed, progress=progress)
        if train.validation_interval():
            val = build_dataset(data, "val", episodes=train.val_episodes, seed=train.val_seed, progress=progress)
    if val is not None:
        return episodes, val, list(val.classes)
    return episodes, val, list(fold_split(data).test_classes) if data.dataset != "folder" else None


def train(config: RunConfig, *, resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Run one training: a new model (``config.model``) or a fine-tuning (``config.init``), writing
    ``config.output_dir`` (:class:`~ntre_zoo.training.run_dir.RunDir`); the same run as ``ntre-zoo train``.

    Args:
        config: the run.
        resume: continue the run in ``config.output_dir`` from its last checkpoint (bit-exact on the CPU);
            ``config`` must be the run's own (``ntre_zoo.training.RunConfig.load(OUT / "run.json")``) except for
            the resumable fields (``max_steps``, ``checkpoint_every``, workers, progress, ``device``,
            ``push_to_hub``).
        overwrite: delete the run files already in ``config.output_dir`` and start again.

    Returns:
        The :class:`~ntre_zoo.training.TrainResult` (trained model, steps, epochs, best metric, history).

    Raises:
        ValueError, FileNotFoundError, RuntimeError: from :func:`preflight`, before anything is trained.
    """
    plan = preflight(config, resume=resume, overwrite=overwrite)
    config = plan.config
    run = RunDir(config.output_dir)
    if _is_main() and config.backbone_weights == "none":
        print("backbone: random weights (backbone_weights none); the backbone is frozen, so they stay random")
    ctx = DistributedContext.initialize_from_launcher()
    try:
        seed_everything(config.train.seed, config.train.deterministic)  # the new head's weights follow the seed
        model = _build_model(plan)
        data = _data(config, model)
        episodes, val, test_classes = _datasets(data, config.train, ctx)
        if ctx.is_main and not resume:
            run.path.mkdir(parents=True, exist_ok=True)
            config.save(run.run_config, command=plan.command)
        # The synthetic benchmark is read through the PASCAL loader; its synthetic.json tells it apart.
        dataset_name = "synthetic" if (Path(data.root) / "synthetic.json").is_file() else data.dataset
        metadata: dict[str, Any] = {
            "protocol": config.protocol,
            "dataset": dataset_name,
            "fold": data.fold,
            "shot": data.shot,
            "command": plan.command,
            "train_classes": list(episodes.classes),
            "test_classes": test_classes,
        }
        if config.init:
            metadata["init"] = config.init
        if plan.backbone_init is not None:
            metadata["backbone_init"] = plan.backbone_init
        trainer = Trainer(
            model,
            episodes,
            config.train,
            output_dir=run.path,
            evaluate_fn=make_evaluate_fn(val, config.train) if val is not None else None,
            device=config.device,
            metadata=metadata,
            distributed=ctx,
        )
        result = trainer.fit(resume=resume)
        if ctx.is_main and config.push_to_hub:
            from ..zoo.hub import from_pretrained
            from ..zoo.publish import push_to_hub

            source = run.best_or_last()
            card = json.loads((source / "config.json").read_text())["metadata"]
            push_to_hub(from_pretrained(source), config.push_to_hub, metadata=card)
    finally:
        if ctx.enabled:
            import torch.distributed as dist

            dist.destroy_process_group()
    return result
