"""The older spellings of ``--precision`` (``evaluate --amp``, ``train --no-amp`` / ``--amp-dtype``): they work for
one more release, with a one-line notice on stderr naming the replacement. ``--precision`` (``fp32``, ``bf16``,
``fp16`` or ``auto``, :data:`~ntre_zoo.inference.precision.PRECISIONS`) is the one option for the number format
of ``predict``, ``evaluate`` and ``train``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

__all__ = ["precision_option"]


def precision_option(args: argparse.Namespace, older: Mapping[str, str], notice: bool = True) -> str | None:
    """``--precision``, or the precision an older spelling given on this command line names.

    Args:
        args: the parsed arguments (``args.precision``: None when not given).
        older: each older spelling that was given (e.g. ``"--amp bf16"``) and the precision it means.
        notice: print the notice (False on the other ranks of a distributed run: rank 0 prints it once).

    Returns:
        The precision asked for; None when none was given (the caller's default applies).

    Raises:
        ValueError: an older spelling and ``--precision`` (or two older ones) that disagree.
    """
    for spelling, value in older.items() if notice else ():
        print(
            f"ntre-zoo {args.command}: {spelling} is deprecated and goes in the next release: use --precision {value}",
            file=sys.stderr,
        )
    named = {**older, **({"--precision " + args.precision: args.precision} if args.precision else {})}
    if len(set(named.values())) > 1:
        raise ValueError(f"{' and '.join(named)} disagree; pass only --precision.")
    return next(iter(named.values()), None)
