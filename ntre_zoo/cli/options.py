"""Options that several commands share, spelt one way (``-o/--output`` for what a command writes, ``--precision``
for the number format), and the old spellings they replace (``--out``; ``evaluate --amp``, ``train --no-amp`` /
``--amp-dtype``): each still works for one release and prints a one-line notice naming the new one."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Deprecated", "add_output", "optional_positional", "precision_option"]


class Deprecated(argparse.Action):
    """An old spelling: prints ``PROG: OLD is deprecated and goes in the next release; use NEW`` to stderr, then
    stores its value in ``dest`` (appends it with ``append=True``), as the new spelling would.

    Args:
        replacement: the new spelling, as the notice names it (``-o/--output``).
        append: add the value to the list in ``dest`` (for a repeatable option) instead of replacing it.
    """

    def __init__(
        self, option_strings: Sequence[str], dest: str, *, replacement: str, append: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.replacement = replacement
        self.append = append

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: Any = None
    ) -> None:
        if values is None:  # a positional with nargs="?" that was not given: nothing to say, nothing to store
            return
        old = option_string or f"{self.metavar} as a positional argument"
        notice = f"{parser.prog}: {old} is deprecated and goes in the next release; use {self.replacement}"
        print(notice, file=sys.stderr)
        if self.append:
            values = [*(getattr(namespace, self.dest) or []), values]
        setattr(namespace, self.dest, values)


def add_output(
    parser: argparse._ActionsContainer,
    what: str,
    *,
    metavar: str = "DIR",
    required: bool = False,
    default: str | None = None,
    old: Sequence[str] = (),
) -> None:
    """``-o/--output METAVAR`` (dest ``output``, help ``what``), and each of ``old`` (e.g. ``--out``) as a hidden
    option that stores there after a notice. Giving both spellings is refused; ``required`` is met by either."""
    if not old:
        parser.add_argument("-o", "--output", metavar=metavar, default=default, required=required, help=what)
        return
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("-o", "--output", metavar=metavar, default=default, help=what)
    for spelling in old:
        group.add_argument(
            spelling,
            dest="output",
            metavar=metavar,
            help=argparse.SUPPRESS,
            action=Deprecated,
            replacement="-o/--output",
        )


def optional_positional(action: argparse.Action) -> argparse.Action:
    """``action``, a positional with ``nargs="+"``, made optional: it keeps its default when no argument is left
    for it. (``nargs="*"`` would not do after another positional: argparse would give it nothing as soon as the
    first positional is read, and then refuse the arguments meant for it.)"""
    action.required = False
    return action


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
            f"ntre-zoo {args.command}: {spelling} is deprecated and goes in the next release; use --precision {value}",
            file=sys.stderr,
        )
    named = {**older, **({"--precision " + args.precision: args.precision} if args.precision else {})}
    if len(set(named.values())) > 1:
        raise ValueError(f"{' and '.join(named)} disagree; pass only --precision.")
    return next(iter(named.values()), None)
