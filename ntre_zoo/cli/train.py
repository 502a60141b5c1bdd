"""``ntre-zoo train``: episodic training, fine-tuning (``--init``) and resuming (``--resume``).

Several processes: ``torchrun --nproc_per_node=N -m ntre_zoo train ...`` (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_json
from ..evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS, Protocol, get_protocol

__all__ = ["register"]

#: Options that may be given again with ``--resume`` (they do not change the trajectory).
_RESUME_OPTIONS = ("max_steps", "workers", "no_progress", "checkpoint_every", "push_to_hub", "device")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune NTRENet on episodes",
        description="Episodic NTRENet training with the reference recipe. Writes OUT/checkpoints/{last,best}.pt "
        "(training state) and OUT/{last,best}/ (from_pretrained-loadable weights). See docs/training.md.",
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--dataset", choices=("pascal5i", "coco20i", "folder"), help="benchmark (required unless --resume)"
    )
    data.add_argument(
        "--data-root", help="VOC2012 dir (e.g. from `ntre-zoo make-synthetic`), COCO root or folder dataset"
    )
    data.add_argument("--fold", type=int, default=0, help="test fold 0-3; training uses the other classes (default: 0)")
    data.add_argument("--shot", type=int, default=1, help="supports per training episode (default: 1)")
    data.add_argument("--coco-split", default="interleaved", choices=("interleaved", "contiguous"))
    data.add_argument(
        "--protocol",
        default=DEFAULT_PROTOCOL,
        choices=tuple(PROTOCOLS),
        help="training lists and filter, validation episodes and preprocessing of this repository (default: "
        "%(default)s: the reference's 5,953-image PASCAL-5i list)",
    )
    data.add_argument(
        "--novel-classes", type=int, nargs="+", default=None, help="folder dataset: the held-out class ids"
    )
    data.add_argument(
        "--crop-size", type=int, default=None, help="training crop side (default: the model's test_size, 473)"
    )
    model = p.add_argument_group("model")
    model.add_argument(
        "--init",
        default=None,
        metavar="NAME_OR_PATH",
        help="start from these weights (anything from_pretrained accepts) instead of a new model",
    )
    model.add_argument("--backbone", default="resnet50", choices=("resnet50", "resnet101", "vgg16_bn"))
    model.add_argument("--pretrained-backbone", action="store_true", help="timm ImageNet weights for a new model (Hub)")
    model.add_argument("--layers", type=int, nargs=4, default=None, help="narrow ResNet: blocks per stage")
    model.add_argument("--channels", type=int, nargs=4, default=None, help="narrow ResNet: widths per stage")
    model.add_argument("--stem-width", type=int, default=None, help="narrow ResNet: stem width")
    model.add_argument("--reduce-dim", type=int, default=None, help="head width C (default: 256)")
    model.add_argument("--pyramid-bins", type=float, nargs="+", default=None, help="FEM bins (default: 60 30 15 8)")
    model.add_argument(
        "--no-bg-eliminating",
        dest="bg_eliminating",
        action="store_false",
        help="ablation: no BGEM (with --no-do-eliminating too, no BG mining at all)",
    )
    model.add_argument("--no-do-eliminating", dest="do_eliminating", action="store_false", help="ablation: no DOEM")
    model.add_argument("--test-size", type=int, default=None, help="evaluation canvas side (default: 473)")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--preset", default="reference", choices=("reference", "paper"), help="hyper-parameter preset")
    opt.add_argument("--epochs", type=int, default=None)
    opt.add_argument("--batch-size", type=int, default=None, help="episodes per step over all processes")
    opt.add_argument("--base-lr", type=float, default=None, help="the effective lr is 10x this (reference)")
    opt.add_argument("--seed", type=int, default=None, help="default: 321")
    opt.add_argument(
        "--backbone-bn",
        choices=("train", "eval"),
        default=None,
        help="backbone BN mode while training (default: train, as the reference)",
    )
    opt.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm (default: off)")
    opt.add_argument("--no-amp", action="store_true", help="full precision on CUDA")
    opt.add_argument("--amp-dtype", choices=("float16", "bfloat16"), default=None)
    opt.add_argument(
        "--loss",
        nargs="+",
        default=None,
        metavar="KEY=VALUE",
        help="LossConfig fields, e.g. pcl_weight=0 bg_weight=0 (ablations)",
    )
    run = p.add_argument_group("run")
    run.add_argument("--output", "-o", help="output directory (required unless --resume)")
    run.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR from its last checkpoint")
    run.add_argument("--val-every", type=int, default=None, help="epochs between validations (0: never)")
    run.add_argument("--val-episodes", type=int, default=None, help="episodes per validation (default: 1000)")
    run.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (resumable)")
    run.add_argument("--checkpoint-every", type=int, default=None, help="also checkpoint every N steps")
    run.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: 0)")
    run.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK when available, else cpu")
    run.add_argument(
        "--push-to-hub", default=None, metavar="REPO_ID", help="upload OUT/best (else OUT/last) at the end"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=_run)


def _parse_loss(items: list | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--loss takes KEY=VALUE pairs, got {item!r}; e.g. --loss pcl_weight=0.")
        out[key] = float(value) if "." in value or "e" in value.lower() else int(value)
    return out


_SWITCHED_OFF = {"bg_eliminating": "--no-bg-eliminating", "do_eliminating": "--no-do-eliminating"}


def _command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run, rebuilt from the parsed options (for model cards)."""
    words = ["ntre-zoo", "train"]
    for key, value in vars(args).items():
        if key in _SWITCHED_OFF:  # store_false switches: on by default, written only when turned off
            words += [] if value else [_SWITCHED_OFF[key]]
            continue
        if key in ("command", "handler", "resume", "push_to_hub", "no_progress") or value is None or value is False:
            continue
        words.append("--" + key.replace("_", "-"))
        if value is not True:
            words += [shlex.quote(str(v)) for v in (value if isinstance(value, (list, tuple)) else [value])]
    return " ".join(words)


def _train_config(args: argparse.Namespace) -> Any:
    from ..training import TrainConfig
    from ..training.losses import LossConfig

    overrides: dict[str, Any] = {}
    for name in (
        "epochs",
        "batch_size",
        "base_lr",
        "seed",
        "backbone_bn",
        "grad_clip",
        "amp_dtype",
        "val_every",
        "val_episodes",
        "max_steps",
        "checkpoint_every",
    ):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.workers is not None:
        overrides["num_workers"] = args.workers
    if args.no_amp:
        overrides["amp"] = False
    overrides["progress"] = not args.no_progress
    if args.loss:
        overrides["loss"] = LossConfig.from_dict(_parse_loss(args.loss))
    if args.val_episodes is None:
        overrides["val_episodes"] = get_protocol(args.protocol or DEFAULT_PROTOCOL).episodes(args.dataset)
    return TrainConfig.from_preset(args.preset, benchmark=args.dataset, **overrides)


def _build_model(args: argparse.Namespace, saved_model_config: dict[str, Any] | None) -> Any:
    import dataclasses

    from ..model import NTRENet
    from ..model.config import ModelConfig
    from ..model.factory import create_model

    if saved_model_config is not None:  # resume: the architecture of the run; weights come from the checkpoint
        return NTRENet(ModelConfig.from_dict(saved_model_config))
    if args.init:
        from ..zoo.hub import from_pretrained

        model = from_pretrained(args.init)
        if model.config.shot != args.shot:
            model.config = dataclasses.replace(model.config, shot=args.shot)
        return model
    options = {
        k: getattr(args, k)
        for k in (
            "layers",
            "channels",
            "stem_width",
            "reduce_dim",
            "pyramid_bins",
            "test_size",
            "bg_eliminating",
            "do_eliminating",
        )
    }
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if v is not None}
    return create_model(args.backbone, shot=args.shot, pretrained_backbone=args.pretrained_backbone, **options)


def _protocol(args: argparse.Namespace) -> Protocol | None:
    return get_protocol(args.protocol) if args.protocol else None


def _with_protocol(args: argparse.Namespace, data: Any) -> Any:
    """``data`` under ``--protocol`` (its lists, filter and preprocessing), ``--coco-split`` kept."""
    protocol = _protocol(args)
    return dataclasses.replace(protocol.data_config(data), coco_split=args.coco_split) if protocol else data


def _datasets(args: argparse.Namespace, model: Any, config: Any, ctx: Any) -> Any:
    import torch.distributed as dist

    from ..data import AugmentConfig, DataConfig, build_dataset

    mc = model.config
    data = DataConfig(
        dataset=args.dataset,
        root=args.data_root,
        fold=args.fold,
        shot=args.shot,
        coco_split=args.coco_split,
        novel_classes=tuple(args.novel_classes) if args.novel_classes else None,
        augment=AugmentConfig(crop_size=args.crop_size or mc.test_size),
        test_size=mc.test_size,
        mean=mc.mean,
        std=mc.std,
    )
    data = _with_protocol(args, data)
    progress = not args.no_progress and ctx.is_main
    if ctx.enabled and not ctx.is_main:
        dist.barrier()  # rank 0 indexes the labels (and writes the class-list cache) first
    train = build_dataset(data, "train", seed=config.seed, progress=progress)
    val = None
    if config.validation_interval():
        val = build_dataset(data, "val", episodes=config.val_episodes, seed=config.val_seed, progress=progress)
    if ctx.enabled and ctx.is_main:
        dist.barrier()
    return train, val


def _run(args: argparse.Namespace) -> int:
    from ..training import DistributedContext, Trainer, seed_everything
    from ..training.validation import make_evaluate_fn

    saved_model_config = None
    if args.resume:
        out = Path(args.resume)
        saved_path = out / "command.json"
        if not saved_path.is_file():
            raise FileNotFoundError(
                f"{str(saved_path)!r} not found: --resume takes the OUT directory of an earlier `ntre-zoo train`."
            )
        saved = json.loads(saved_path.read_text())
        # Only the options given now count: a --max-steps of the interrupted run must not stop this one.
        given = {k: getattr(args, k) for k in _RESUME_OPTIONS}
        # A run recorded before protocols existed trained on the tree's own lists: it resumes on them.
        args = argparse.Namespace(**{"protocol": None, **saved["args"], **given, "resume": str(out), "handler": None})
        saved_model_config = json.loads((out / "train_config.json").read_text())["model"]
    elif not (args.dataset and args.data_root and args.output):
        raise ValueError("ntre-zoo train needs --dataset, --data-root and --output (or --resume DIR).")
    out = Path(args.resume or args.output)
    ctx = DistributedContext.initialize_from_launcher()
    config = _train_config(args)
    seed_everything(config.seed, config.deterministic)  # the new head's initial weights follow the seed
    model = _build_model(args, saved_model_config)
    train, val = _datasets(args, model, config, ctx)
    command = _command_line(args) if not args.resume else saved["command"]
    if ctx.is_main and not args.resume:
        out.mkdir(parents=True, exist_ok=True)
        record = {"command": command, "args": {k: v for k, v in vars(args).items() if k != "handler"}}
        atomic_write_json(out / "command.json", record)
    # The synthetic benchmark is read through the PASCAL loader; its synthetic.json tells it apart.
    dataset_name = "synthetic" if (Path(args.data_root) / "synthetic.json").is_file() else args.dataset
    metadata = {
        "protocol": args.protocol,
        "dataset": dataset_name,
        "fold": args.fold,
        "shot": args.shot,
        "command": command,
        "train_classes": list(train.classes),
        "test_classes": list(val.classes) if val is not None else None,
    }
    if args.init:
        metadata["init"] = args.init
    trainer = Trainer(
        model,
        train,
        config,
        output_dir=out,
        evaluate_fn=make_evaluate_fn(val, config) if val is not None else None,
        device=args.device,
        metadata=metadata,
        distributed=ctx,
    )
    result = trainer.fit(resume=bool(args.resume))
    if ctx.is_main:
        best = f", best {config.select_metric} {result.best_metric:.4f}" if result.best_metric is not None else ""
        exported = " and ".join(str(out / n) for n in ("best", "last") if (out / n).is_dir())
        print(f"trained {result.step} steps ({result.epoch}/{config.epochs} epochs){best}; weights in {exported}")
        if args.push_to_hub:
            from ..zoo.hub import from_pretrained
            from ..zoo.publish import push_to_hub

            source = out / ("best" if (out / "best").is_dir() else "last")
            pushed = from_pretrained(source)
            push_to_hub(pushed, args.push_to_hub, metadata=json.loads((source / "config.json").read_text())["metadata"])
    if ctx.enabled:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0
