"""``ntre-zoo train``: episodic training, fine-tuning (``--init``) and resuming (``--resume``).

Several processes: ``torchrun --nproc_per_node=N -m ntre_zoo train ...`` (gloo on CPU, nccl on CUDA).

A run checks everything it will need before its first step and fails within seconds otherwise: the options
(``--loss`` keys, the batch against the process count), the output directory (a non-empty one needs
``--resume`` or ``--overwrite``), the backbone weights (files present, the Hub reachable) and, for
``--push-to-hub``, a token that can write. Errors are said once, by rank 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_json
from ..data.builder import DATASETS
from ..data.splits import COCO_SPLITS
from ..evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS, Protocol, get_protocol
from ..inference.precision import PRECISIONS
from ..model.config import BACKBONES
from ..training.config import PRESETS
from .options import add_output
from .train_options import command_line, given_options, preflight, with_defaults, with_precision

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune NTRENet on episodes",
        description="Episodic NTRENet training with the reference recipe. Writes OUT/checkpoints/{last,best}.pt "
        "(training state) and OUT/{last,best}/ (from_pretrained-loadable weights), and prints one line per epoch. "
        "Unlike evaluate, predict and export, train takes no MODEL positional: the model is what it writes, a new "
        "one by default; --init names the weights to fine-tune from. See docs/training.md.",
    )
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASETS, help="benchmark (required unless --resume)")
    data.add_argument(
        "--data-root",
        help="VOC2012 dir (e.g. from `ntre-zoo make-synthetic`), COCO root or folder dataset (required unless "
        "--resume)",
    )
    data.add_argument("--fold", type=int, help="test fold 0-3; training uses the other classes (default: 0)")
    data.add_argument("--shot", type=int, help="supports per training episode (default: 1)")
    data.add_argument("--coco-split", choices=COCO_SPLITS, help="COCO-20i fold layout (default: interleaved)")
    data.add_argument(
        "--protocol",
        choices=tuple(PROTOCOLS),
        help="training lists and filter, validation episodes and preprocessing of this repository (default: "
        f"{DEFAULT_PROTOCOL}: the reference's 5,953-image PASCAL-5i list; the synthetic benchmark keeps its own)",
    )
    data.add_argument(
        "--novel-classes", type=int, nargs="+", help="folder dataset: the held-out class ids (default: none)"
    )
    data.add_argument("--crop-size", type=int, help="training crop side (default: the model's test_size, 473)")
    model = p.add_argument_group("model")
    model.add_argument(
        "--init",
        metavar="NAME_OR_PATH",
        help="fine-tune: start from these weights (anything from_pretrained accepts: zoo name, hf-hub:ID or a "
        "directory) instead of a new model (default: a new model)",
    )
    model.add_argument("--backbone", choices=tuple(BACKBONES), help="backbone of a new model (default: resnet50)")
    model.add_argument(
        "--backbone-weights",
        metavar="{reference,timm,PATH,none}",
        help="initial weights of a new model's frozen backbone: 'reference' = the authors' ImageNet files "
        "(initmodel/resnet50_v2.pth, resnet101_v2.pth, vgg16_bn.pth), 'timm' = timm's ImageNet weights (Hub), PATH "
        "= such a file, a converted state dict, a from_pretrained directory or a directory of the reference files, "
        "'none' = random, for narrow test models only (default: reference)",
    )
    model.add_argument("--pretrained-backbone", action="store_true", help=argparse.SUPPRESS)
    model.add_argument("--layers", type=int, nargs=4, help="narrow ResNet: blocks per stage (default: the full one)")
    model.add_argument("--channels", type=int, nargs=4, help="narrow ResNet: widths per stage (default: the full one)")
    model.add_argument("--stem-width", type=int, help="narrow ResNet: stem width (default: the full model)")
    model.add_argument("--reduce-dim", type=int, help="head width C (default: 256)")
    model.add_argument("--pyramid-bins", type=float, nargs="+", help="FEM bins (default: 60 30 15 8)")
    model.add_argument(
        "--no-bg-eliminating",
        dest="bg_eliminating",
        action="store_false",
        help="ablation: no BGEM (with --no-do-eliminating too, no BG mining at all) (default: BGEM on)",
    )
    model.add_argument(
        "--no-do-eliminating", dest="do_eliminating", action="store_false", help="ablation: no DOEM (default: DOEM on)"
    )
    model.add_argument("--test-size", type=int, help="evaluation canvas side (default: 473)")
    opt = p.add_argument_group("optimisation")
    opt.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        help="hyper-parameter preset: reference = lr 0.025, batch 4, 150 epochs; paper = lr 0.03, batch 32, "
        "200 epochs (50 on COCO) (default: reference)",
    )
    opt.add_argument("--epochs", type=int, help="(default: from --preset: 150 reference, 200 or 50 paper)")
    opt.add_argument(
        "--batch-size",
        type=int,
        help="episodes per optimiser step, summed over all processes (each of N processes takes 1/N of them) "
        "(default: from --preset: 4 or 32)",
    )
    opt.add_argument(
        "--base-lr", type=float, help="the effective lr is 10x this (default: from --preset: 0.0025 or 0.003)"
    )
    opt.add_argument("--seed", type=int, help="(default: 321)")
    opt.add_argument(
        "--backbone-bn",
        choices=("train", "eval"),
        help="backbone BN mode while training (default: train, as the reference)",
    )
    opt.add_argument("--grad-clip", type=float, help="clip the gradient norm (default: off)")
    opt.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="number format on CUDA: auto = bf16 autocast on GPUs with native bf16 (compute capability 8.0+), fp32 "
        "on older ones; fp16 adds gradient scaling; the CPU always trains in fp32 (default: auto)",
    )
    # deprecated spellings of --precision, hidden (with_precision prints the notice naming the replacement)
    opt.add_argument("--no-amp", action="store_true", help=argparse.SUPPRESS)
    opt.add_argument("--amp-dtype", choices=("auto", "bfloat16", "float16"), help=argparse.SUPPRESS)
    opt.add_argument(
        "--loss",
        nargs="+",
        metavar="KEY=VALUE",
        help="LossConfig fields, e.g. pcl_weight=0 bg_weight=0 for ablations (default: the reference's weights)",
    )
    run = p.add_argument_group("run")
    add_output(run, "output directory, new or empty (required unless --resume)", metavar="OUT")
    run.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR from its last checkpoint; only --max-steps, --checkpoint-every, --workers, "
        "--device, --no-progress and --push-to-hub may change (default: a new run)",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run files already in --output and start again (default: off)",
    )
    run.add_argument(
        "--val-every", type=int, help="epochs between validations, 0: never (default: 2, or 1 when epochs <= 50)"
    )
    run.add_argument("--val-episodes", type=int, help="episodes per validation (default: 1000 PASCAL, 4000 COCO)")
    run.add_argument("--max-steps", type=int, help="stop after this many steps, resumable (default: all epochs)")
    run.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps (default: epoch ends only)")
    run.add_argument("--workers", type=int, help="DataLoader workers (default: 0)")
    run.add_argument("--device", help="(default: cuda:LOCAL_RANK when available, else cpu)")
    run.add_argument(
        "--push-to-hub",
        metavar="REPO_ID",
        help="upload OUT/best (else OUT/last) at the end; token and write access are checked before training "
        "(default: no upload)",
    )
    run.add_argument(
        "--no-progress", action="store_true", help="no progress bars; the epoch lines stay (default: bars)"
    )
    p.set_defaults(handler=_run)


# ---------------------------------------------------------------------------------------------- the run
def _build_model(args: argparse.Namespace, saved_model_config: dict[str, Any] | None, backbone: Any) -> Any:
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
    names = ("layers", "channels", "stem_width", "reduce_dim", "pyramid_bins", "test_size")
    options = {k: getattr(args, k) for k in (*names, "bg_eliminating", "do_eliminating")}
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if v is not None}
    model = create_model(args.backbone, shot=args.shot, **options)
    if backbone is not None:
        from ..zoo.backbone_weights import load_backbone_weights

        load_backbone_weights(model, backbone)
    return model


def _protocol(args: argparse.Namespace) -> Protocol | None:
    return get_protocol(args.protocol) if args.protocol else None


def _with_protocol(args: argparse.Namespace, data: Any) -> Any:
    """``data`` under ``--protocol`` (its lists, filter and preprocessing), ``--coco-split`` kept."""
    protocol = _protocol(args)
    return dataclasses.replace(protocol.data_config(data), coco_split=args.coco_split) if protocol else data


def _datasets(args: argparse.Namespace, model: Any, config: Any, ctx: Any) -> Any:
    """``(train, val, test_classes)``: the training episodes, the validation episodes (None without validation)
    and the fold's novel classes (None for a folder dataset trained without validation)."""
    from ..data import AugmentConfig, DataConfig, build_dataset, fold_split
    from ..training.distributed import main_process_first

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
    val = None
    with main_process_first(ctx):  # rank 0 indexes the labels (and writes the class-list cache) first
        train = build_dataset(data, "train", seed=config.seed, progress=progress)
        if config.validation_interval():
            val = build_dataset(data, "val", episodes=config.val_episodes, seed=config.val_seed, progress=progress)
    if val is not None:
        return train, val, list(val.classes)
    return train, val, list(fold_split(data).test_classes) if data.dataset != "folder" else None


def _backbone_record(args: argparse.Namespace, plan: dict[str, Any]) -> dict[str, Any] | None:
    if plan["saved"] is not None:
        return (plan["saved"].get("metadata") or {}).get("backbone_init")
    if args.init:
        return {"kind": "init", "source": args.init, "sha256": None}
    return plan["backbone"].to_dict() if plan["backbone"] is not None else None


def _run(args: argparse.Namespace) -> int:
    from ..training import DistributedContext, Trainer, seed_everything
    from ..training.validation import make_evaluate_fn

    is_main = int(os.environ.get("RANK", "0")) == 0
    try:
        args = with_precision(args)
        plan = preflight(with_defaults(args), given_options(args), is_main)
    except (ValueError, FileNotFoundError, RuntimeError):
        if not is_main:
            return 1  # rank 0 reports it, once
        raise
    args, config, saved = plan["args"], plan["config"], plan["saved"]
    out = Path(args.output)
    if is_main and plan["backbone"] is not None and plan["backbone"].kind == "none":
        print("backbone: random weights (--backbone-weights none); the backbone is frozen, so they stay random")
    ctx = DistributedContext.initialize_from_launcher()
    seed_everything(config.seed, config.deterministic)  # the new head's initial weights follow the seed
    model = _build_model(args, saved["model"] if saved else None, plan["backbone"])
    train, val, test_classes = _datasets(args, model, config, ctx)
    command = saved["command"] if saved else command_line(args)
    if ctx.is_main and not saved:
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
        "test_classes": test_classes,
    }
    if args.init:
        metadata["init"] = args.init
    backbone_init = _backbone_record(args, plan)
    if backbone_init is not None:
        metadata["backbone_init"] = backbone_init
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
    result = trainer.fit(resume=bool(saved))
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
