"""``ntre-zoo demo``: predict a synthetic episode offline and write a PNG."""

from __future__ import annotations

import argparse

from .options import add_output


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="segment a synthetic episode offline and write a PNG",
        description="Builds a synthetic few-shot episode, predicts it with the model shipped in the package "
        "and writes support, query, prediction, BG map and DO map side by side. No network needed.",
    )
    add_output(parser, "PNG to write (default: %(default)s)", metavar="FILE", default="ntre_zoo_demo.png")
    parser.add_argument("--seed", type=int, default=0, help="which episode (default: %(default)s)")
    parser.add_argument("--shot", type=int, default=1, help="number of supports (default: %(default)s)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    result = run_demo(args.output, seed=args.seed, shot=args.shot)
    print(f"model: {result.model_name}")
    print(f"target IoU on this episode: {result.iou:.3f}")
    print(f"wrote {result.output}")
    return 0
