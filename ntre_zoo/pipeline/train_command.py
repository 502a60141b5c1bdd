"""The words of ``ntre-zoo train``: its options, the :class:`RunConfig` they make, and the command line of a
``RunConfig`` (model cards record it; the reproduce recipes replay the manifest's recorded commands through it).

Each option names the ``RunConfig`` field it sets (:data:`FIELDS`), so a resumed run can tell which options would
change it, and the options it may take again come from the one list :data:`~ntre_zoo.training.run_config.RESUMABLE`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from ..data.augment import AugmentConfig
from ..data.builder import DATASETS, DataConfig
from ..data.splits import COCO_SPLITS
from ..evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS, get_protocol
from ..inference.precision import PRECISIONS
from ..model.config import BACKBONES, BackboneConfig, ModelConfig
from ..training.config import PRESETS, TrainConfig, precision_of_amp
from ..training.losses import LossConfig
from ..training.run_config import RESUMABLE, RunConfig

__all__ = [
    "FIELDS",
    "RESUME_OPTIONS",
    "add_train_arguments",
    "command_line",
    "field_value",
    "flag",
    "given_options",
    "option_value",
    "parse_train_command",
    "run_config_from_options",
    "with_run_options",
    "without_amp",
]

#: Each option (its argparse ``dest``) and the ``RunConfig`` field it sets.
FIELDS = {
    "dataset": "data.dataset",
    "data_root": "data.root",
    "fold": "data.fold",
    "shot": "data.shot",
    "coco_split": "data.coco_split",
    "protocol": "protocol",
    "novel_classes": "data.novel_classes",
    "crop_size": "data.augment.crop_size",
    "init": "init",
    "backbone": "model.backbone.name",
    "backbone_weights": "backbone_weights",
    "layers": "model.backbone.layers",
    "channels": "model.backbone.channels",
    "stem_width": "model.backbone.stem_width",
    "reduce_dim": "model.reduce_dim",
    "pyramid_bins": "model.pyramid_bins",
    "bg_eliminating": "model.bg_eliminating",
    "do_eliminating": "model.do_eliminating",
    "test_size": "model.test_size",
    "preset": "train.preset",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "base_lr": "train.base_lr",
    "seed": "train.seed",
    "backbone_bn": "train.backbone_bn",
    "grad_clip": "train.grad_clip",
    "precision": "train.precision",
    "loss": "train.loss",
    "output": "output_dir",
    "val_every": "train.val_every",
    "val_episodes": "train.val_episodes",
    "max_steps": "train.max_steps",
    "checkpoint_every": "train.checkpoint_every",
    "workers": "train.num_workers",
    "device": "device",
    "push_to_hub": "push_to_hub",
    "no_progress": "train.progress",
}
#: The options a resumed run may take again (they set :data:`RESUMABLE` fields).
RESUME_OPTIONS = tuple(dest for dest, path in FIELDS.items() if path in RESUMABLE)
_SWITCHED_OFF = {"bg_eliminating": "--no-bg-eliminating", "do_eliminating": "--no-do-eliminating"}
#: Options every recorded command names, so that it means the same whatever the defaults become.
_ALWAYS = ("dataset", "data_root", "fold", "shot", "protocol", "backbone", "backbone_weights", "preset", "precision")


def flag(dest: str) -> str:
    """The command-line spelling of option ``dest`` (``batch_size`` -> ``--batch-size``)."""
    return _SWITCHED_OFF.get(dest, "-o" if dest == "output" else "--" + dest.replace("_", "-"))


# ---------------------------------------------------------------------------------------------- the parser
def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``ntre-zoo train``; every default is None (or a switch's resting value), so that the options
    typed can be told apart from the defaults."""
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASETS, help="benchmark (required unless --resume or --config)")
    data.add_argument(
        "--data-root",
        help="VOC2012 dir (e.g. from `ntre-zoo make-synthetic`), COCO root or folder dataset (required unless "
        "--resume or --config)",
    )
    data.add_argument("--fold", type=int, help="test fold 0-3; training uses the other classes (default: 0)")
    data.add_argument("--shot", type=int, help="supports per training episode (default: 1)")
    data.add_argument("--coco-split", choices=COCO_SPLITS, help="COCO-20i fold layout (default: interleaved)")
    data.add_argument(
        "--protocol",
        choices=tuple(PROTOCOLS),
        help="training lists and filter, validation episodes and preprocessing of this repository (default: "
        f"{DEFAULT_PROTOCOL}: the reference's 5,953-image PASCAL-5i list; the synthetic benchmark keeps its own)",
    )
    data.add_argument(
        "--novel-classes", type=int, nargs="+", help="folder dataset: the held-out class ids (default: none)"
    )
    data.add_argument("--crop-size", type=int, help="training crop side (default: the model's test_size, 473)")
    model = p.add_argument_group("model")
    model.add_argument(
        "--init",
        metavar="NAME_OR_PATH",
        help="fine-tune: start from these weights (anything from_pretrained accepts: zoo name, hf-hub:ID or a "
        "directory) instead of a new model (default: a new model)",
    )
    model.add_argument("--backbone", choices=tuple(BACKBONES), help="backbone of a new model (default: resnet50)")
    model.add_argument(
        "--backbone-weights",
        metavar="{reference,timm,PATH,none}",
        help="initial weights of a new model's frozen backbone: 'reference' = the authors' ImageNet files "
        "(initmodel/resnet50_v2.pth, resnet101_v2.pth, vgg16_bn.pth), 'timm' = timm's ImageNet weights (Hub), PATH "
        "= such a file, a converted state dict, a from_pretrained directory or a directory of the reference files, "
        "'none' = random, for narrow test models only (default: reference)",
    )
    model.add_argument("--pretrained-backbone", action="store_true", help=argparse.SUPPRESS)
    model.add_argument("--layers", type=int, nargs=4, help="narrow ResNet: blocks per stage (default: the full one)")
    model.add_argument("--channels", type=int, nargs=4, help="narrow ResNet: widths per stage (default: the full one)")
    model.add_argument("--stem-width", type=int, help="narrow ResNet: stem width (default: the full model)")
    model.add_argument("--reduce-dim", type=int, help="head width C (default: 256)")
    model.add_argument("--pyramid-bins", type=float, nargs="+", help="FEM bins (default: 60 30 15 8)")
    model.add_argument(
        "--no-bg-eliminating",
        dest="bg_eliminating",
        action="store_false",
        help="ablation: no BGEM (with --no-do-eliminating too, no BG mining at all) (default: BGEM on)",
    )
    model.add_argument(
        "--no-do-eliminating", dest="do_eliminating", action="store_false", help="ablation: no DOEM (default: DOEM on)"
    )
    model.add_argument("--test-size", type=int, help="evaluation canvas side (default: 473)")
    opt = p.add_argument_group("optimisation")
    opt.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        help="hyper-parameter preset: reference = lr 0.025, batch 4, 150 epochs; paper = lr 0.03, batch 32, "
        "200 epochs (50 on COCO) (default: reference)",
    )
    opt.add_argument("--epochs", type=int, help="(default: from --preset: 150 reference, 200 or 50 paper)")
    opt.add_argument(
        "--batch-size",
        type=int,
        help="episodes per optimiser step, summed over all processes (each of N processes takes 1/N of them) "
        "(default: from --preset: 4 or 32)",
    )
    opt.add_argument(
        "--base-lr", type=float, help="the effective lr is 10x this (default: from --preset: 0.0025 or 0.003)"
    )
    opt.add_argument("--seed", type=int, help="(default: 321)")
    opt.add_argument(
        "--backbone-bn",
        choices=("train", "eval"),
        help="backbone BN mode while training (default: train, as the reference)",
    )
    opt.add_argument("--grad-clip", type=float, help="clip the gradient norm (default: off)")
    opt.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="number format on CUDA: auto = bf16 autocast on GPUs with native bf16 (compute capability 8.0+), fp32 "
        "on older ones; fp16 adds gradient scaling; the CPU always trains in fp32 (default: auto)",
    )
    # deprecated spellings of --precision, hidden (the CLI prints the notice naming the replacement)
    opt.add_argument("--no-amp", action="store_true", help=argparse.SUPPRESS)
    opt.add_argument("--amp-dtype", choices=("auto", "bfloat16", "float16"), help=argparse.SUPPRESS)
    opt.add_argument(
        "--loss",
        nargs="+",
        metavar="KEY=VALUE",
        help="LossConfig fields, e.g. pcl_weight=0 bg_weight=0 for ablations (default: the reference's weights)",
    )
    run = p.add_argument_group("run")
    run.add_argument("-o", "--output", metavar="OUT", help="output directory, new or empty (required unless --resume)")
    run.add_argument(
        "--config",
        metavar="RUN_JSON",
        help="the run as a RunConfig file (RunConfig.save, what `ntre-zoo reproduce` gives its trainings) instead of "
        f"the options above; only {', '.join(map(flag, RESUME_OPTIONS))} and --overwrite may be added (default: "
        "the options above)",
    )
    run.add_argument(
        "--resume",
        metavar="DIR",
        help=f"continue the run in DIR from its last checkpoint; only {', '.join(map(flag, RESUME_OPTIONS))} may "
        "change (default: a new run)",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run files already in --output and start again (default: off)",
    )
    run.add_argument(
        "--val-every", type=int, help="epochs between validations, 0: never (default: 2, or 1 when epochs <= 50)"
    )
    run.add_argument("--val-episodes", type=int, help="episodes per validation (default: 1000 PASCAL, 4000 COCO)")
    run.add_argument("--max-steps", type=int, help="stop after this many steps, resumable (default: all epochs)")
    run.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps (default: epoch ends only)")
    run.add_argument("--workers", type=int, help="DataLoader workers (default: 0)")
    run.add_argument("--device", help="(default: cuda:LOCAL_RANK when available, else cpu)")
    run.add_argument(
        "--push-to-hub",
        metavar="REPO_ID",
        help="upload OUT/best (else OUT/last) at the end; token and write access are checked before training "
        "(default: no upload)",
    )
    run.add_argument(
        "--no-progress", action="store_true", help="no progress bars; the epoch lines stay (default: bars)"
    )


def given_options(args: argparse.Namespace | Mapping[str, Any]) -> dict[str, Any]:
    """The options typed: every parser default is None, False, or True for a switch (lists become tuples)."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)

    def typed(key: str, value: Any) -> bool:
        if key in _SWITCHED_OFF:
            return value is False  # on by default: typed when turned off
        return key not in ("command", "handler") and value is not None and value is not False

    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if typed(k, v)}


def parse_train_command(words: Sequence[str]) -> dict[str, Any]:
    """The options typed in a recorded ``ntre-zoo train`` command (the words after ``train``), as
    :func:`given_options` gives them; the deprecated ``--no-amp`` / ``--amp-dtype X`` read as ``precision``.

    Raises:
        ValueError: words that ``ntre-zoo train`` does not take, quoting argparse's reason.
    """
    parser = argparse.ArgumentParser(prog="ntre-zoo train", add_help=False, exit_on_error=False)
    add_train_arguments(parser)
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = parser.parse_args(list(words))
    except (argparse.ArgumentError, SystemExit) as error:
        reason = str(error) if isinstance(error, argparse.ArgumentError) else errors.getvalue().strip()
        raise ValueError(f"Not an `ntre-zoo train` command: {shlex.join(words)!r} ({reason}).") from None
    return without_amp(given_options(args))


def without_amp(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the deprecated ``no_amp`` / ``amp_dtype`` turned into the ``precision`` they name (given
    ``precision`` wins; ``no_amp`` wins over ``amp_dtype``, as it did)."""
    values = dict(options)
    no_amp, amp_dtype = values.pop("no_amp", False), values.pop("amp_dtype", None)
    if "precision" not in values and (no_amp or amp_dtype):
        values["precision"] = "fp32" if no_amp else precision_of_amp(True, amp_dtype)
    return values


def with_run_options(config: RunConfig, given: Mapping[str, Any]) -> RunConfig:
    """``config`` with the options of ``given`` that a run may take again (:data:`RESUME_OPTIONS`) applied."""
    changes = {FIELDS[d]: (not v) if d == "no_progress" else v for d, v in given.items() if d in RESUME_OPTIONS}
    return config.replace(**changes)


# ---------------------------------------------------------------------------------------------- options -> RunConfig
def _parse_loss(items: Sequence[str]) -> LossConfig:
    known = [f.name for f in dataclasses.fields(LossConfig)]
    out: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--loss takes KEY=VALUE pairs, got {item!r}; e.g. --loss pcl_weight=0.")
        if key not in known:
            raise ValueError(f"--loss: unknown key {key!r} (in {item!r}). Valid keys: {', '.join(known)}.")
        try:
            out[key] = float(value) if "." in value or "e" in value.lower() else int(value)
        except ValueError:
            raise ValueError(f"--loss {item}: the value of {key} must be a number, got {value!r}.") from None
    return LossConfig.from_dict(out)


def _loss_words(loss: LossConfig) -> tuple[str, ...]:
    default = LossConfig()
    return tuple(
        f"{f.name}={getattr(loss, f.name)}"
        for f in dataclasses.fields(loss)
        if getattr(loss, f.name) != getattr(default, f.name)
    )


def run_config_from_options(options: Mapping[str, Any]) -> RunConfig:
    """The ``RunConfig`` of a new run from the options typed (:func:`given_options`; absent = the default).

    Raises:
        ValueError: a missing ``--dataset``/``--data-root``/``-o``, ``--backbone-weights`` with ``--init``, the gone
            ``--pretrained-backbone``, a bad ``--loss`` pair, or anything the configs refuse.
    """
    o = without_amp(options)
    if o.get("pretrained_backbone"):
        raise ValueError(
            "--pretrained-backbone is gone: it took timm's weights although the authors start from PSPNet's "
            "resnet50_v2.pth. Pass --backbone-weights reference (the authors' files in initmodel/), timm, PATH or none."
        )
    if not (o.get("dataset") and o.get("data_root") and o.get("output")):
        raise ValueError("ntre-zoo train needs --dataset, --data-root and -o/--output (or --resume DIR, or --config).")
    if o.get("init") and "backbone_weights" in o:
        raise ValueError("--backbone-weights is for a new model; --init already brings its backbone's weights.")
    shot = o.get("shot", 1)
    data = DataConfig(
        dataset=o["dataset"],
        root=str(o["data_root"]),
        fold=o.get("fold", 0),
        shot=shot,
        coco_split=o.get("coco_split", "interleaved"),
        novel_classes=o.get("novel_classes"),
        augment=AugmentConfig(crop_size=o.get("crop_size")),
    )
    model = None
    if not o.get("init"):
        narrowing: dict[str, Any] = {k: tuple(o[k]) if k != "stem_width" else o[k] for k in _NARROWING if k in o}
        fields: dict[str, Any] = {k: tuple(o[k]) if k == "pyramid_bins" else o[k] for k in _MODEL_OPTIONS if k in o}
        backbone = BackboneConfig(o.get("backbone", "resnet50"), **narrowing)
        model = ModelConfig(backbone=backbone, shot=shot, **fields)
    protocol = o.get("protocol", DEFAULT_PROTOCOL)
    overrides: dict[str, Any] = {_TRAIN_OPTIONS[k]: o[k] for k in _TRAIN_OPTIONS if k in o}
    overrides["progress"] = not o.get("no_progress", False)
    if "loss" in o:
        overrides["loss"] = _parse_loss(o["loss"])
    overrides.setdefault("val_episodes", get_protocol(protocol or DEFAULT_PROTOCOL).episodes(o["dataset"]))
    train = TrainConfig.from_preset(o.get("preset", "reference"), benchmark=o["dataset"], **overrides)
    return RunConfig(
        data=data,
        output_dir=str(o["output"]),
        model=model,
        init=o.get("init"),
        backbone_weights=o.get("backbone_weights"),
        protocol=protocol,
        train=train,
        device=o.get("device"),
        push_to_hub=o.get("push_to_hub"),
    )


_NARROWING = ("layers", "channels", "stem_width")
_MODEL_OPTIONS = ("reduce_dim", "pyramid_bins", "bg_eliminating", "do_eliminating", "test_size")
_TRAIN_OPTIONS = {
    "epochs": "epochs",
    "batch_size": "batch_size",
    "base_lr": "base_lr",
    "seed": "seed",
    "backbone_bn": "backbone_bn",
    "grad_clip": "grad_clip",
    "precision": "precision",
    "val_every": "val_every",
    "val_episodes": "val_episodes",
    "max_steps": "max_steps",
    "checkpoint_every": "checkpoint_every",
    "workers": "num_workers",
}


# ---------------------------------------------------------------------------------------------- RunConfig -> options
def field_value(config: RunConfig, path: str) -> Any:
    """The value of the dotted field ``path`` of ``config`` (None below a None)."""
    value: Any = config
    for name in path.split("."):
        value = None if value is None else getattr(value, name)
    return value


def option_value(config: RunConfig, dest: str) -> Any:
    """The value option ``dest`` has in ``config``, as :func:`given_options` spells it."""
    if dest == "no_progress":
        return not config.train.progress
    if dest == "loss":
        return _loss_words(config.train.loss)
    value = field_value(config, FIELDS[dest])
    return tuple(value) if isinstance(value, list) else value


def _preset_values(config: RunConfig) -> TrainConfig:
    """What the options other than the preset's would leave the training at."""
    episodes = get_protocol(config.protocol or DEFAULT_PROTOCOL).episodes(config.data.dataset)
    return TrainConfig.from_preset(config.train.preset, benchmark=config.data.dataset, val_episodes=episodes)


def _unspoken(config: RunConfig) -> list[str]:
    """Fields that differ from what the options can say (a ``RunConfig`` made in Python may set them)."""
    found = []
    spoken_train = {*_TRAIN_OPTIONS.values(), "preset", "loss", "progress"}
    base = _preset_values(config)
    found += [
        f"train.{f.name}"
        for f in dataclasses.fields(TrainConfig)
        if f.name not in spoken_train and getattr(config.train, f.name) != getattr(base, f.name)
    ]
    if config.model is not None:
        default = ModelConfig()
        spoken_model = {*_MODEL_OPTIONS, "backbone", "shot"}
        found += [
            f"model.{f.name}"
            for f in dataclasses.fields(ModelConfig)
            if f.name not in spoken_model and getattr(config.model, f.name) != getattr(default, f.name)
        ]
    spoken_data = {
        "dataset",
        "root",
        "fold",
        "shot",
        "coco_split",
        "novel_classes",
        "augment",
        "test_size",
        "mean",
        "std",
    }
    data_default = DataConfig()
    found += [
        f"data.{f.name}"
        for f in dataclasses.fields(DataConfig)
        if f.name not in spoken_data and getattr(config.data, f.name) != getattr(data_default, f.name)
    ]
    augment_default = AugmentConfig()
    found += [
        f"data.augment.{f.name}"
        for f in dataclasses.fields(AugmentConfig)
        if f.name != "crop_size" and getattr(config.data.augment, f.name) != getattr(augment_default, f.name)
    ]
    if config.protocol is None:
        found.append("protocol")
    return found


def command_line(config: RunConfig) -> str | None:
    """The ``ntre-zoo train`` command that makes ``config`` (what a model card records), or None when ``config``
    sets a field no option reaches (then ``run.json`` is the record: ``ntre-zoo train --config run.json``).
    ``--no-progress`` and ``--push-to-hub`` are left out: they change nothing about the weights."""
    if _unspoken(config):
        return None
    base = _preset_values(config)
    defaults = run_config_from_options({"dataset": config.data.dataset, "data_root": ".", "output": "."})
    words = ["ntre-zoo", "train"]
    for dest, path in FIELDS.items():
        value = option_value(config, dest)
        if dest in ("no_progress", "push_to_hub") or value is None or value == ():
            continue
        if dest not in _ALWAYS:
            if path.startswith("train.") and dest != "loss":
                default = getattr(base, path.split(".")[1])
            else:
                default = option_value(defaults, dest)
            if value == default:
                continue
        if dest in _SWITCHED_OFF:
            words.append(flag(dest))  # on by default: written only when turned off
            continue
        words.append(flag(dest))
        words += [shlex.quote(str(v)) for v in (value if isinstance(value, tuple) else (value,))]
    return " ".join(words)
