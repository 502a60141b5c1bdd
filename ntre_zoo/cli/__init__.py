"""The ``ntre-zoo`` command line. Each subcommand (or group of subcommands: ``zoo`` holds list, download, info
and convert) lives in its own module with a ``register(subparsers)`` function that adds its parser and sets
``handler`` to a function taking the parsed arguments. One spelling per meaning: ``-o/--output`` for what a
command writes, the model as the first positional argument (``options.py`` keeps the old spellings for a release)."""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["build_parser", "main"]

#: Modules of this package that define subcommands, in the order ``--help`` lists them.
_COMMAND_MODULES = (
    "demo",
    "predict",
    "zoo",
    "prepare",
    "evaluate",
    "make_synthetic",
    "train",
    "reproduce",
    "publish",
    "export",
    "app",
)


def build_parser() -> argparse.ArgumentParser:
    from ..zoo.version import __version__

    parser = argparse.ArgumentParser(prog="ntre-zoo", description="NTRENet few-shot segmentation model zoo.")
    parser.add_argument("--version", action="version", version=f"ntre-zoo {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (ValueError, TypeError, OSError, KeyError, RuntimeError, ImportError) as error:  # OSError: files, disks
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"ntre-zoo {args.command}: error: {message}", file=sys.stderr)
        return 1
