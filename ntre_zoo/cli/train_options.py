"""The options of ``ntre-zoo train``: which were typed, the command line a run records, the ``TrainConfig`` they
make, and every check a run makes before its first step (``--resume`` refusing options that would change the run,
the output directory, the batch against the process count, the backbone weights and the Hub).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
from pathlib import Path
from typing import Any

from ..evaluation.protocols import DEFAULT_PROTOCOL, get_protocol
from .options import precision_option

__all__ = ["command_line", "given_options", "preflight", "with_defaults", "with_precision"]

#: Options that may be given again with ``--resume`` (they do not change the trajectory).
_RESUME_OPTIONS = ("max_steps", "workers", "no_progress", "checkpoint_every", "push_to_hub", "device")
#: Defaults of options whose parser default is None, so that ``--resume`` can tell which options were typed.
_DEFAULTS = {
    "protocol": DEFAULT_PROTOCOL,
    "fold": 0,
    "shot": 1,
    "coco_split": "interleaved",
    "backbone": "resnet50",
    "preset": "reference",
    "backbone_weights": "reference",
}
#: The value an option has in a run recorded before the option existed: such a run trained on the tree's lists.
_LEGACY = {"protocol": None}
_SWITCHED_OFF = {"bg_eliminating": "--no-bg-eliminating", "do_eliminating": "--no-do-eliminating"}
_NOT_RECORDED = ("command", "handler", "resume", "push_to_hub", "no_progress", "overwrite", "pretrained_backbone")


# ---------------------------------------------------------------------------------------------- options
def _flag(name: str) -> str:
    return _SWITCHED_OFF.get(name, "--" + name.replace("_", "-"))


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options typed on the command line: every parser default is None, False, or True for a switch."""
    return {
        k: v
        for k, v in vars(args).items()
        if k not in ("command", "handler") and v is not None and v is not False and not (k in _SWITCHED_OFF and v)
    }


def with_precision(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the deprecated ``--no-amp`` / ``--amp-dtype`` turned into ``--precision`` (with a notice), so
    that the run records and checks one option. ``--no-amp`` wins over ``--amp-dtype``, as it did."""
    from ..training.config import precision_of_amp

    values = vars(args).copy()
    no_amp, amp_dtype = values.pop("no_amp", False), values.pop("amp_dtype", None)
    older = {"--no-amp": "fp32"} if no_amp else {f"--amp-dtype {amp_dtype}": precision_of_amp(True, amp_dtype)}
    chosen = precision_option(args, older if no_amp or amp_dtype else {}, int(os.environ.get("RANK", "0")) == 0)
    return argparse.Namespace(**{**values, "precision": chosen})


def with_defaults(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), **{k: v for k, v in _DEFAULTS.items() if getattr(args, k) is None}})


def _parse_loss(items: list | None) -> dict[str, float]:
    from ..training.losses import LossConfig

    known = [f.name for f in dataclasses.fields(LossConfig)]
    out: dict[str, float] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--loss takes KEY=VALUE pairs, got {item!r}; e.g. --loss pcl_weight=0.")
        if key not in known:
            raise ValueError(f"--loss: unknown key {key!r} (in {item!r}). Valid keys: {', '.join(known)}.")
        try:
            out[key] = float(value) if "." in value or "e" in value.lower() else int(value)
        except ValueError:
            raise ValueError(f"--loss {item}: the value of {key} must be a number, got {value!r}.") from None
    return out


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run, rebuilt from the parsed options (for model cards)."""
    words = ["ntre-zoo", "train"]
    for key, value in vars(args).items():
        if key in _SWITCHED_OFF:  # store_false switches: on by default, written only when turned off
            words += [] if value else [_SWITCHED_OFF[key]]
            continue
        if key in _NOT_RECORDED or value is None or value is False:
            continue
        words.append(_flag(key))
        if value is not True:
            words += [shlex.quote(str(v)) for v in (value if isinstance(value, (list, tuple)) else [value])]
    return " ".join(words)


def _train_config(args: argparse.Namespace) -> Any:
    from ..training import TrainConfig
    from ..training.losses import LossConfig

    names = ("epochs", "batch_size", "base_lr", "seed", "backbone_bn", "grad_clip", "precision", "val_every")
    overrides: dict[str, Any] = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    for name in ("max_steps", "checkpoint_every"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.workers is not None:
        overrides["num_workers"] = args.workers
    overrides["progress"] = not args.no_progress
    if args.loss:
        overrides["loss"] = LossConfig.from_dict(_parse_loss(args.loss))
    protocol = get_protocol(args.protocol or DEFAULT_PROTOCOL)
    overrides["val_episodes"] = args.val_episodes or protocol.episodes(args.dataset)
    return TrainConfig.from_preset(args.preset, benchmark=args.dataset, **overrides)


# ---------------------------------------------------------------------------------------------- checks
def _read_run_file(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} not found: --resume takes the output directory of an earlier `ntre-zoo train` run, "
            f"which holds {what}."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{str(path)!r} should hold {what} as JSON but does not ({error}).") from error
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} should hold {what} as a JSON object, got {type(data).__name__}.")
    return data


def _resume_args(args: argparse.Namespace, given: dict[str, Any]) -> tuple[argparse.Namespace, dict[str, Any]]:
    """The saved run's options with the safe ones given now; refuses options that would change the run.

    Returns:
        The options to run with, and the saved ``train_config.json``.
    """
    from ..training.config import precision_of_amp
    from ..training.state import load_checkpoint

    out = Path(args.resume)
    if out.is_file():
        run_dir = out.parent.parent if out.parent.name == "checkpoints" else None
        hint = f" For this checkpoint that is --resume {run_dir}." if run_dir else ""
        raise ValueError(f"--resume takes a run's output directory, not the file {str(out)!r}.{hint}")
    saved = _read_run_file(out / "command.json", "the run's options (command.json)")
    train_config = _read_run_file(out / "train_config.json", "the run's configuration (train_config.json)")
    load_checkpoint(out / "checkpoints" / "last.pt")  # read once now, so a damaged file stops the run at once
    saved_args = saved.get("args")
    if not isinstance(saved_args, dict) or "command" not in saved:
        raise ValueError(f"{str(out / 'command.json')!r} lacks 'args' or 'command'; it was not written by ntre-zoo.")
    # The run keeps the precision it started with, whatever the default is now; a run of 0.3 recorded it as
    # amp/amp_dtype (options --no-amp/--amp-dtype), whose default then was float16.
    recorded = train_config.get("train") or {}
    precision = recorded.get("precision") or precision_of_amp(recorded.get("amp"), recorded.get("amp_dtype"))
    saved_args = {**{k: v for k, v in saved_args.items() if k not in ("no_amp", "amp_dtype")}, "precision": precision}
    changed = []
    for key, value in given.items():
        if key in _RESUME_OPTIONS or key == "resume":
            continue
        before = saved_args[key] if key in saved_args else _LEGACY.get(key, _DEFAULTS.get(key))
        if before is None:  # the preset's value, as the run's TrainConfig recorded it
            before = (train_config.get("train") or {}).get(key)
        same = Path(value).resolve() == out.resolve() if key == "output" else before == value
        if not same:
            changed.append(f"{_flag(key)} {value!r} (the run has {before!r})")
    if changed:
        raise ValueError(
            f"--resume {out} continues the run as it was started, and {'; '.join(changed)} would change it. Resume "
            f"without {'it' if len(changed) == 1 else 'them'} (only {', '.join(map(_flag, _RESUME_OPTIONS))} may be "
            "given again), or train a new run in another directory (or this one with --overwrite)."
        )
    applied = [f"{_flag(k)} {v!r}" if v is not True else _flag(k) for k, v in given.items() if k in _RESUME_OPTIONS]
    if applied and int(os.environ.get("RANK", "0")) == 0:
        print(f"resuming {out}: applying {', '.join(applied)} (safe to change: the weights' trajectory stays the same)")
    now = {k: getattr(args, k) for k in _RESUME_OPTIONS}
    merged = {**_DEFAULTS, **_LEGACY, **saved_args, **now, "resume": str(out), "output": str(out), "overwrite": False}
    return argparse.Namespace(**merged), {**train_config, "command": saved["command"]}


def preflight(args: argparse.Namespace, given: dict[str, Any], is_main: bool) -> dict[str, Any]:
    """Every check a run can make before it starts, in seconds; returns what the run needs next."""
    from ..training.distributed import check_batch_split
    from ..training.outputs import check_output_dir, clear_run_dir

    plan: dict[str, Any] = {"saved": None, "backbone": None}
    if args.pretrained_backbone:
        raise ValueError(
            "--pretrained-backbone is gone: it took timm's weights although the authors start from PSPNet's "
            "resnet50_v2.pth. Pass --backbone-weights reference (the authors' files in initmodel/), timm, PATH or none."
        )
    if args.resume and args.overwrite:
        raise ValueError("--resume continues a run and --overwrite starts a new one; pass one of them.")
    if args.resume:
        args, plan["saved"] = _resume_args(args, given)
    elif not (args.dataset and args.data_root and args.output):
        raise ValueError("ntre-zoo train needs --dataset, --data-root and -o/--output (or --resume DIR).")
    else:
        check_output_dir(Path(args.output), args.overwrite)
        if not Path(args.data_root).exists():
            raise FileNotFoundError(f"--data-root {args.data_root!r} does not exist.")
        if args.init and "backbone_weights" in given:
            raise ValueError("--backbone-weights is for a new model; --init already brings its backbone's weights.")
    plan["args"] = args
    plan["config"] = config = _train_config(args)
    origin = "--batch-size" if "batch_size" in given else f"--preset {config.preset}"
    check_batch_split(config.batch_size, int(os.environ.get("WORLD_SIZE", "1")), origin)
    if not is_main:
        return plan  # the Hub and the backbone files are rank 0's business (DDP broadcasts its weights)
    if not args.resume and not args.init:
        from ..model.config import BackboneConfig
        from ..zoo.backbone_weights import resolve_backbone_weights

        narrowing = {k: tuple(getattr(args, k)) if getattr(args, k) else None for k in ("layers", "channels")}
        backbone = BackboneConfig(args.backbone, stem_width=args.stem_width, **narrowing)
        plan["backbone"] = resolve_backbone_weights(args.backbone_weights, backbone)
    if args.push_to_hub:
        from ..zoo.hub_access import check_hub_reachable, check_write_access

        check_hub_reachable(
            "--push-to-hub",
            f"Train without it and publish afterwards: ntre-zoo publish {Path(args.output) / 'best'} "
            f"--repo-id {args.push_to_hub}.",
        )
        check_write_access(args.push_to_hub)
    if args.overwrite:
        clear_run_dir(Path(args.output))
    return plan
