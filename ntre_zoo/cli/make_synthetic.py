"""``ntre-zoo make-synthetic``: write the procedural few-shot benchmark in the VOC layout."""

from __future__ import annotations

import argparse

from .options import Deprecated


def register(subparsers: argparse._SubParsersAction) -> None:
    synth = subparsers.add_parser(
        "make-synthetic",
        help="write the procedural few-shot benchmark in the VOC layout",
        description="Generates 20 shape/appearance classes (4 folds of 5) on recurring stuff textures, with "
        "distractor objects, as OUT/VOCdevkit/VOC2012 that `evaluate --dataset pascal5i` reads unchanged.",
        # argparse would show -o as optional: the group that requires it also holds the hidden positional
        usage="%(prog)s [-h] -o OUT [--seed SEED] [--train TRAIN] [--val VAL] [--size SIZE] [--no-progress]",
    )
    # -o OUT, or OUT as the positional it replaces (one of them, once); the positional is the only one, so
    # argparse takes it wherever it stands.
    output = synth.add_mutually_exclusive_group(required=True)
    output.add_argument("-o", "--output", metavar="OUT", help="output directory")
    output.add_argument(
        "output", nargs="?", metavar="OUT", action=Deprecated, replacement="-o OUT", help=argparse.SUPPRESS
    )
    synth.add_argument("--seed", type=int, default=0, help="dataset seed (default: %(default)s)")
    synth.add_argument("--train", type=int, default=1000, help="training images (default: %(default)s)")
    synth.add_argument("--val", type=int, default=300, help="validation images (default: %(default)s)")
    synth.add_argument("--size", type=int, default=200, help="long image side in pixels (default: %(default)s)")
    synth.add_argument("--no-progress", action="store_true", help="no progress bar")
    synth.set_defaults(handler=_run_make_synthetic)


def _run_make_synthetic(args: argparse.Namespace) -> int:
    from ..data import make_synthetic_voc

    voc = make_synthetic_voc(
        args.output, args.seed, train=args.train, val=args.val, size=args.size, progress=not args.no_progress
    )
    print(f"wrote {args.train} train and {args.val} val images to {voc}")
    print(f"evaluate with: ntre-zoo evaluate MODEL --dataset pascal5i --data-root {voc}")
    return 0
