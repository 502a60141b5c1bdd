"""``ntre-zoo evaluate``: few-shot benchmark evaluation under a named protocol."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_json
from ..data.builder import DATASETS
from ..data.splits import COCO_SPLITS
from ..evaluation.loop import tf32_record
from ..evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS
from ..inference.precision import PRECISIONS
from ..model import NTRENet
from ..zoo.hub import from_pretrained
from .options import add_output, precision_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a model on PASCAL-5i, COCO-20i or a folder dataset",
        description="Runs seeded few-shot episodes under a named protocol (default ntrenet: the reference's lists, "
        "test resize to the model's canvas, scoring at the original label size with 255 ignored) and reports "
        "class mIoU, FB-IoU and precision. See docs/evaluation.md for the protocols.",
    )
    parser.add_argument(
        "model", metavar="MODEL", help="anything from_pretrained accepts: zoo name, hf-hub:ID or a directory"
    )
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--data-root", required=True, help="VOC2012 dir (or its parent), COCO root, or folder dataset")
    parser.add_argument("--fold", type=int, default=0, help="test fold 0-3 (default: %(default)s)")
    parser.add_argument("--shot", type=int, default=1, help="supports per episode (default: %(default)s)")
    parser.add_argument(
        "--protocol",
        default=DEFAULT_PROTOCOL,
        choices=tuple(PROTOCOLS),
        help="lists, episodes, seeds, resize and scoring of this repository (default: %(default)s)",
    )
    parser.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="episodes per seed (default: the protocol's; ntrenet: 1000 on PASCAL-5i, 4000 on COCO-20i)",
    )
    parser.add_argument("--seed", type=int, default=None, help="episode seed (default: the protocol's first)")
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="run SEED, SEED+1, ... (N seeds) and report mean and std (default: the protocol's seeds)",
    )
    parser.add_argument(
        "--coco-split",
        default=None,
        choices=COCO_SPLITS,
        help="COCO-20i fold layout (default: the protocol's, interleaved: PFENet's use_split_coco)",
    )
    parser.add_argument("--novel-classes", type=int, nargs="+", default=None, help="folder dataset: the test class ids")
    parser.add_argument("--device", default="cpu", help="e.g. cuda, cuda:1 (default: %(default)s)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="number format: fp32, bf16 or fp16 (autocast), or auto: bf16 where the device computes it natively and "
        "the model gains, else fp32 (default: fp32, in which every protocol's numbers and the manifest's are measured)",
    )
    parser.add_argument("--amp", choices=("bf16", "fp16"), default=None, help=argparse.SUPPRESS)  # deprecated
    parser.add_argument("--batch-size", type=int, default=1, help="episodes per forward pass (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (default: %(default)s)")
    add_output(parser, "write the results as JSON here (default: print them only)", metavar="FILE")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_run_evaluate)


def _load_model(spec: str, device: str) -> NTRENet:
    return from_pretrained(spec, device=device)


def _seeds(args: argparse.Namespace, protocol: Any) -> list[int]:
    """The protocol's seeds, or ``--seed``/``--seeds``: SEED, SEED+1, ... (SEED defaults to the protocol's first)."""
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds!r}.")
    if args.seed is None and args.seeds is None:
        return list(protocol.seeds)
    first = protocol.seeds[0] if args.seed is None else args.seed
    return [first + i for i in range(args.seeds or 1)]


def _run_evaluate(args: argparse.Namespace) -> int:
    import dataclasses

    from ..data import DataConfig, build_dataset
    from ..evaluation.loop import evaluate_seeds
    from ..evaluation.metrics import format_table
    from ..evaluation.protocols import get_protocol
    from ..inference.precision import resolve_precision

    protocol = get_protocol(args.protocol)
    seeds = _seeds(args, protocol)
    asked = _precision(args)
    if args.output:
        _check_output(Path(args.output))
    model = _load_model(args.model, args.device)
    precision = resolve_precision(asked, args.device, model)  # once: what the numbers are computed in
    config = protocol.data_config(
        DataConfig(
            dataset=args.dataset,
            root=args.data_root,
            fold=args.fold,
            shot=args.shot,
            novel_classes=tuple(args.novel_classes) if args.novel_classes else None,
            mean=model.config.mean,
            std=model.config.std,
        )
    )
    if args.coco_split is not None:
        config = dataclasses.replace(config, coco_split=args.coco_split)
    episodes = args.episodes if args.episodes is not None else protocol.episodes(args.dataset)
    print(
        f"protocol {protocol.name}: {episodes} episodes x seeds {seeds}, {protocol.resize} resize onto "
        f"{model.config.test_size} px, {protocol.scoring} scoring"
    )
    dataset = build_dataset(config, "val", episodes=episodes, seed=seeds[0], progress=not args.no_progress)
    result = evaluate_seeds(
        model,
        dataset,
        seeds,
        protocol=protocol,
        episodes=episodes,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        progress=not args.no_progress,
        precision=precision,
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
        record = _protocol(args, protocol, config, seeds, dataset, model.config.test_size, precision)
        summary.update(seed=seeds[0], model=args.model, protocol=record)
        atomic_write_json(Path(args.output), summary)
        print(f"wrote {args.output}")
    return 0


def _check_output(path: Path) -> None:
    """Refuse an ``--output`` that could not be written, before the evaluation rather than after it."""
    if path.is_dir():
        raise ValueError(
            f"--output {str(path)!r} is a directory; pass a file path, e.g. {str(path / 'results.json')!r}."
        )
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ValueError(f"--output {str(path)!r}: {str(parent)!r} is a file, not a directory.")
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--output {str(path)!r}: permission denied writing in {str(parent)!r}.")


def _sha256(path: Path | None) -> str | None:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else None


def _protocol(
    args: argparse.Namespace,
    protocol: Any,
    config: Any,
    seeds: list[int],
    dataset: Any,
    test_size: int,
    precision: str,
) -> dict[str, Any]:
    """The result JSON's ``protocol`` record: the protocol's name and definition, what the command line changed,
    and every setting of this run (``numeric_precision``: the number format the numbers were computed in, fp32,
    bf16 or fp16, ``auto`` resolved; the metric ``precision`` is another thing)."""
    overrides = {
        key: value
        for key, value, default in (
            ("episodes", dataset.episodes, protocol.episodes(config.dataset)),
            ("seeds", seeds, list(protocol.seeds)),
            ("coco_split", config.coco_split, protocol.coco_split),
        )
        if value != default and (key != "coco_split" or config.dataset == "coco20i")
    }
    list_file = dataset.source.list_file
    return {
        "name": protocol.name,
        "definition": protocol.to_dict(),
        "overrides": overrides,
        "dataset": config.dataset,
        "data_root": str(Path(config.root).resolve()),
        "fold": config.fold,
        "shot": config.shot,
        "episodes": dataset.episodes,
        "seeds": seeds,
        "coco_split": config.coco_split if config.dataset == "coco20i" else None,
        "val_list": str(list_file) if list_file is not None else None,
        "val_list_sha256": _sha256(list_file),
        "test_classes": list(dataset.classes),
        "min_pixels": dataset.min_pixels,
        "test_size": test_size,
        "mean": list(config.mean),
        "std": list(config.std),
        "resize": dataset.resize,
        "scoring": dataset.scoring,
        "query_order": "val list order, cycled",
        "numeric_precision": precision,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "device": args.device,
        "tf32": tf32_record(args.device),
    }


def _precision(args: argparse.Namespace) -> str:
    """``--precision`` (default fp32, the protocols'), or its deprecated spelling ``--amp`` (with a notice)."""
    return precision_option(args, {f"--amp {args.amp}": args.amp} if args.amp else {}) or "fp32"
