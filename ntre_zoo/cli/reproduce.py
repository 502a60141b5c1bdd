"""``ntre-zoo reproduce``: train, evaluate and package zoo variants, resumably; see docs/reproducing.md."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from ..evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS
from ..training.config import PRESETS
from .options import add_output


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reproduce",
        help="train and evaluate zoo variants into publishable directories (resumable)",
        description="For each variant: train it with its recipe (the recorded command, or the paper preset), evaluate "
        "1- and 5-shot over seeds, and write OUT/VARIANT/ (from_pretrained directory, model card with Hub metadata, "
        "manifest_entry.json for `ntre-zoo publish`). Run the same command again after an interruption: finished "
        "steps are skipped and an interrupted training resumes from its last checkpoint.",
    )
    p.add_argument(
        "variants", nargs="+", metavar="VARIANT", help="manifest name, pattern (ntrenet_*.pascal5i_*) or 'all'"
    )
    p.add_argument(
        "--data-root",
        action="append",
        required=True,
        metavar="[DATASET=]DIR",
        help="the prepared data, one directory for all, or per benchmark: pascal5i=DIR coco20i=DIR synthetic=DIR "
        "(repeat the option)",
    )
    add_output(p, "the sweep's directory (its ledger makes it resumable)", required=True)
    p.add_argument(
        "--protocol",
        default=DEFAULT_PROTOCOL,
        choices=tuple(PROTOCOLS),
        help="paper variants' protocol: training lists, evaluation episodes and first seed (default: %(default)s)",
    )
    p.add_argument(
        "--backbone-weights",
        metavar="{reference,timm,PATH}",
        help="paper variants' backbone initialisation (default: reference, the authors' files in ./initmodel)",
    )
    p.add_argument("--preset", choices=tuple(PRESETS), help="paper variants' training preset (default: paper)")
    p.add_argument(
        "--select",
        choices=("last", "best"),
        help="paper variants' weights: last, or best validation on the test fold as the authors (default: last)",
    )
    p.add_argument("--seeds", type=int, help="evaluation seeds, mean and std (default: 5, or the recorded number)")
    p.add_argument(
        "--gpus",
        help="comma-separated CUDA device indices, e.g. 0,1,2,3, counted within CUDA_VISIBLE_DEVICES when it is set "
        "(default: the CPU)",
    )
    p.add_argument(
        "--gpus-per-run",
        type=int,
        default=1,
        help="GPUs per training (torchrun when > 1); runs share the GPUs in groups (default: %(default)s)",
    )
    p.add_argument("--manifest", help="another checkpoints_manifest.json (default: the shipped one)")
    p.add_argument("--dry-run", action="store_true", help="print the commands of the next steps, run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (one line per variant and step stays)")
    p.set_defaults(handler=_reproduce)


def _benchmarks(manifest: str | None) -> set[str]:
    """The benchmarks a ``--data-root DATASET=DIR`` may name: those of the shipped manifest and of ``manifest``."""
    from ..zoo.manifest import load_manifest

    return {entry.dataset for path in (None, manifest) for entry in load_manifest(path).entries.values()}


def _data_roots(items: list[str], datasets: set[str]) -> str | dict[str, str]:
    """One ``DIR`` for every benchmark, or ``{DATASET: DIR}`` with DATASET one of ``datasets``."""
    roots: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if sep and key in datasets:
            roots[key] = value
        elif len(items) == 1:
            return item
        else:
            raise ValueError(
                f"With several --data-root options, each must be DATASET=DIR, DATASET one of the manifests' "
                f"{', '.join(sorted(datasets))}; got {item!r}."
            )
    return roots


def _gpus(text: str) -> list[int]:
    words = text.split(",")
    if not all(w.strip().isdigit() for w in words):
        raise ValueError(
            f"--gpus takes device indices as this shell sees them (0,1,...), got {text!r}. Under a "
            "CUDA_VISIBLE_DEVICES mask (UUIDs included) they count within the mask: --gpus 0 is its first entry."
        )
    return [int(w) for w in words]


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the running step, which then stops its child


def _reproduce(args: argparse.Namespace) -> int:
    from ..pipeline.reproduce import reproduce

    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}.")
    gpus = _gpus(args.gpus) if args.gpus else None
    previous = signal.signal(signal.SIGTERM, _stop)  # a scheduler's SIGTERM stops the training child too
    try:
        results = reproduce(
            args.variants,
            _data_roots(args.data_root, _benchmarks(args.manifest)),
            args.output,
            protocol=args.protocol,
            backbone_weights=args.backbone_weights,
            preset=args.preset,
            select=args.select,
            seeds=args.seeds,
            gpus=gpus,
            gpus_per_run=args.gpus_per_run,
            manifest=args.manifest,
            progress=not args.no_progress,
            dry_run=args.dry_run,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    for result in results:
        if result.manifest_check:
            same = [k for k, v in result.manifest_check.items() if v is True or (isinstance(v, tuple) and v[0] == v[1])]
            other = {k: v for k, v in result.manifest_check.items() if k not in same}
            verdict = "matches the manifest" if not other else f"differs from the manifest in {other}"
            print(f"{result.name}: {verdict} ({', '.join(same)} equal)")
        if result.weights_diff is not None:
            diff = result.weights_diff
            meaning = (
                "the same training on another kind of CPU: only running statistics moved (docs/reproducing.md)"
                if diff.same_training()
                else "a different training"
            )
            print(f"{result.name}: against the shipped weights, {diff.summary()}: {meaning}")
    failed = [r.name for r in results if r.state != "done"]
    if failed:
        print(f"failed: {', '.join(failed)}; see {Path(args.output) / 'ledger.json'} and run the command again")
    elif results:
        print(f"publish each with: ntre-zoo publish {Path(args.output)}/VARIANT --repo-id ORG/VARIANT")
    return 1 if failed else 0
