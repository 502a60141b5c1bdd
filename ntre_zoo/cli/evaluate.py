"""``ntre-zoo evaluate`` (few-shot benchmark evaluation) and ``ntre-zoo make-synthetic``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_json
from ..model import NTRENet
from ..zoo.hub import from_pretrained


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a model on PASCAL-5i, COCO-20i or a folder dataset",
        description="Runs seeded few-shot episodes (the reference protocol: test resize to the model's canvas, "
        "scoring at the original label size with 255 ignored) and reports class mIoU, FB-IoU and precision.",
    )
    parser.add_argument(
        "model", metavar="MODEL", help="anything from_pretrained accepts: zoo name, hf-hub:ID or a directory"
    )
    parser.add_argument("--dataset", required=True, choices=("pascal5i", "coco20i", "folder"))
    parser.add_argument("--data-root", required=True, help="VOC2012 dir (or its parent), COCO root, or folder dataset")
    parser.add_argument("--fold", type=int, default=0, help="test fold 0-3 (default: %(default)s)")
    parser.add_argument("--shot", type=int, default=1, help="supports per episode (default: %(default)s)")
    parser.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="episodes per seed (default: 1000 on PASCAL-5i, 4000 on COCO-20i, as the paper)",
    )
    parser.add_argument("--seed", type=int, default=321, help="episode seed (default: %(default)s, as the reference)")
    parser.add_argument(
        "--seeds", type=int, default=1, help="run SEED, SEED+1, ... and report mean and std (default: 1)"
    )
    parser.add_argument(
        "--coco-split",
        default="interleaved",
        choices=("interleaved", "contiguous"),
        help="COCO-20i fold layout (default: %(default)s, PFENet's use_split_coco)",
    )
    parser.add_argument("--novel-classes", type=int, nargs="+", default=None, help="folder dataset: the test class ids")
    parser.add_argument("--device", default="cpu", help="e.g. cuda, cuda:1 (default: %(default)s)")
    parser.add_argument("--amp", choices=("bf16", "fp16"), default=None, help="run under autocast (default: fp32)")
    parser.add_argument("--batch-size", type=int, default=1, help="episodes per forward pass (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (default: %(default)s)")
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_run_evaluate)

    synth = subparsers.add_parser(
        "make-synthetic",
        help="write the procedural few-shot benchmark in the VOC layout",
        description="Generates 20 shape/appearance classes (4 folds of 5) on recurring stuff textures, with "
        "distractor objects, as OUT/VOCdevkit/VOC2012 that `evaluate --dataset pascal5i` reads unchanged.",
    )
    synth.add_argument("out", metavar="OUT", help="output directory")
    synth.add_argument("--seed", type=int, default=0, help="dataset seed (default: %(default)s)")
    synth.add_argument("--train", type=int, default=1000, help="training images (default: %(default)s)")
    synth.add_argument("--val", type=int, default=300, help="validation images (default: %(default)s)")
    synth.add_argument("--size", type=int, default=200, help="long image side in pixels (default: %(default)s)")
    synth.add_argument("--no-progress", action="store_true", help="no progress bar")
    synth.set_defaults(handler=_run_make_synthetic)


def _load_model(spec: str, device: str) -> NTRENet:
    return from_pretrained(spec, device=device)


def _run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from ..data import DEFAULT_EPISODES, DataConfig, build_dataset
    from ..evaluation.loop import evaluate_seeds
    from ..evaluation.metrics import format_table

    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds!r}.")
    model = _load_model(args.model, args.device)
    config = DataConfig(
        dataset=args.dataset,
        root=args.data_root,
        fold=args.fold,
        shot=args.shot,
        coco_split=args.coco_split,
        novel_classes=tuple(args.novel_classes) if args.novel_classes else None,
        test_size=model.config.test_size,
        mean=model.config.mean,
        std=model.config.std,
    )
    episodes = args.episodes if args.episodes is not None else DEFAULT_EPISODES[args.dataset]
    dataset = build_dataset(config, "val", episodes=episodes, seed=args.seed, progress=not args.no_progress)
    seeds = [args.seed + i for i in range(args.seeds)]
    result = evaluate_seeds(
        model,
        dataset,
        seeds,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        progress=not args.no_progress,
        amp_dtype={"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp),
    )
    for run in result.runs:
        print(f"\n{args.dataset} fold {args.fold}, {args.shot}-shot, seed {run.seed}")
        print(format_table(run))
    summary = result.to_dict()
    if len(seeds) > 1:
        print(
            f"\nover {len(seeds)} seeds: mIoU {100 * summary['miou']:.2f} +- {100 * summary['miou_std']:.2f}, "
            f"FB-IoU {100 * summary['fb_iou']:.2f} +- {100 * summary['fb_iou_std']:.2f}"
        )
    if args.output:
        summary.update(seed=args.seed, model=args.model, protocol=_protocol(args, config, episodes, dataset))
        atomic_write_json(Path(args.output), summary)
        print(f"wrote {args.output}")
    return 0


def _protocol(args: argparse.Namespace, config: Any, episodes: int, dataset: Any) -> dict[str, Any]:
    return {
        "dataset": config.dataset,
        "data_root": str(Path(config.root).resolve()),
        "fold": config.fold,
        "shot": config.shot,
        "episodes": episodes,
        "seeds": [args.seed + i for i in range(args.seeds)],
        "coco_split": config.coco_split if config.dataset == "coco20i" else None,
        "test_classes": list(dataset.classes),
        "min_pixels": config.min_pixels,
        "test_size": config.test_size,
        "mean": list(config.mean),
        "std": list(config.std),
        "resize": "long side to test_size, floored to multiples of 8, top-left on a black canvas (PFENet test.py)",
        "scoring": "original label resolution, 255 ignored (PFENet ori_resize)",
        "query_order": "val list order, cycled",
        "amp": args.amp,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "device": args.device,
    }


def _run_make_synthetic(args: argparse.Namespace) -> int:
    from ..data import make_synthetic_voc

    voc = make_synthetic_voc(
        args.out, args.seed, train=args.train, val=args.val, size=args.size, progress=not args.no_progress
    )
    print(f"wrote {args.train} train and {args.val} val images to {voc}")
    print(f"evaluate with: ntre-zoo evaluate MODEL --dataset pascal5i --data-root {voc}")
    return 0
