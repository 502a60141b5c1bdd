"""``ntre-zoo train``: the options become a ``RunConfig`` (or ``--config`` names one, or ``--resume`` reads the
run's own), and ``ntre_zoo.train`` runs it.

Several processes: ``torchrun --nproc_per_node=N -m ntre_zoo train ...`` (gloo on CPU, nccl on CUDA). Errors are
said once, by rank 0.
"""

from __future__ import annotations

import argparse
import os

from ..pipeline.train_command import (
    RESUME_OPTIONS,
    add_train_arguments,
    flag,
    given_options,
    run_config_from_options,
    with_run_options,
)
from .options import precision_option

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune NTRENet on episodes",
        description="Episodic NTRENet training with the reference recipe. Writes OUT/run.json (the run's RunConfig), "
        "OUT/checkpoints/{last,best}.pt (training state) and OUT/{last,best}/ (from_pretrained-loadable weights), "
        "and prints one line per epoch. Unlike evaluate, predict and export, train takes no MODEL positional: the "
        "model is what it writes, a new one by default; --init names the weights to fine-tune from. See "
        "docs/training.md.",
    )
    add_train_arguments(p)
    p.set_defaults(handler=_run)


def _given(args: argparse.Namespace, is_main: bool) -> dict:
    """The options typed, the deprecated ``--no-amp`` / ``--amp-dtype`` turned into ``--precision`` (with a
    notice); ``--no-amp`` wins over ``--amp-dtype``, as it did."""
    from ..training.config import precision_of_amp

    given = given_options(args)
    no_amp, amp_dtype = given.pop("no_amp", False), given.pop("amp_dtype", None)
    older = {"--no-amp": "fp32"} if no_amp else {f"--amp-dtype {amp_dtype}": precision_of_amp(True, amp_dtype)}
    chosen = precision_option(args, older if no_amp or amp_dtype else {}, is_main)
    return {**given, **({"precision": chosen} if chosen else {})}


def _run(args: argparse.Namespace) -> int:
    from ..pipeline.run import resume_config, train
    from ..training.run_config import RunConfig

    is_main = int(os.environ.get("RANK", "0")) == 0
    try:
        given = _given(args, is_main)
        if args.resume and args.config:
            raise ValueError("--resume continues the run in DIR, from its own run.json; --config is for a new run.")
        if args.resume:
            config = resume_config(args.resume, given)
        elif args.config:
            extra = sorted(set(given) - {"config", "overwrite", *RESUME_OPTIONS})
            if extra:
                raise ValueError(
                    f"--config {args.config} is the whole run; {', '.join(map(flag, extra))} would change it. Edit the "
                    f"file instead (only {', '.join(map(flag, RESUME_OPTIONS))} and --overwrite may be added)."
                )
            config = with_run_options(RunConfig.load(args.config), given)
        else:
            config = run_config_from_options(given)
        result = train(config, resume=bool(args.resume), overwrite=args.overwrite)
    except (ValueError, FileNotFoundError, RuntimeError):
        if not is_main:
            return 1  # rank 0 reports it, once
        raise
    if is_main:
        from ..training.run_dir import RunDir

        run = RunDir(config.output_dir)
        train_config = config.train
        best = f", best {train_config.select_metric} {result.best_metric:.4f}" if result.best_metric is not None else ""
        exported = " and ".join(str(run.export(n)) for n in ("best", "last") if run.export(n).is_dir())
        print(f"trained {result.step} steps ({result.epoch}/{train_config.epochs} epochs){best}; weights in {exported}")
    return 0
