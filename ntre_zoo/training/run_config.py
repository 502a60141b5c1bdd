"""``RunConfig``: one training run as one validated object (what ``ntre_zoo.train`` and ``ntre-zoo train`` take)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_json
from ..data.builder import DataConfig
from ..evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS
from ..model.config import ModelConfig
from .config import RESUMABLE_OVERRIDES, TrainConfig

__all__ = ["BACKBONE_WEIGHTS", "RESUMABLE", "RUN_FORMAT", "RunConfig"]

RUN_FORMAT = "ntre-zoo-run/1"
#: The named initialisations of a new model's frozen backbone (else a path; see ``zoo.backbone_weights``).
BACKBONE_WEIGHTS = ("reference", "timm", "none")
#: The fields a resumed run may change, as dotted paths: they do not alter the trajectory of the weights.
RESUMABLE = ("device", "push_to_hub", *sorted(f"train.{name}" for name in RESUMABLE_OVERRIDES))
#: Data fields an evaluation protocol sets (a run with ``protocol=None`` takes them from ``data`` as given).
PROTOCOL_DATA_FIELDS = ("train_list", "val_list", "resize", "scoring", "min_pixels", "exclude_novel")


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs: what to train, on which episodes, how, and where it writes.

    Args:
        data: the training benchmark (dataset, root, fold, shot, COCO split, a folder dataset's novel classes, the
            augmentation). Its ``test_size``, ``mean`` and ``std`` are the model's (filled in when the run starts),
            and ``augment.crop_size=None`` crops at the model's ``test_size``.
        output_dir: the run directory (:class:`~ntre_zoo.training.run_dir.RunDir` owns its layout).
        model: the architecture of a new model (default: ``ModelConfig()``, ResNet-50); its ``shot`` is
            ``data.shot``. Not with ``init``.
        init: fine-tune: the weights to start from, anything ``from_pretrained`` accepts (a zoo name,
            ``hf-hub:ID``, a directory). Not with ``model``.
        backbone_weights: a new model's frozen backbone: ``reference`` (the authors' ImageNet files, default),
            ``timm``, a path, or ``none`` (random: for narrow test models). None with ``init``.
        protocol: the repository whose training lists, filter, validation episodes and preprocessing the run
            follows (default ``ntrenet``); None: ``data``'s lists and preprocessing as given.
        train: the hyper-parameters; ``train.precision`` is the run's number format (:attr:`precision`).
        device: where to train (default: this rank's CUDA device when there is one, else the CPU).
        push_to_hub: a Hub repository to upload ``best/`` (else ``last/``) to at the end; write access is checked
            before the first step.

    Raises:
        ValueError: ``model`` and ``init`` together, ``backbone_weights`` with ``init``, an unknown protocol, or
            data fields that the protocol would replace.
    """

    data: DataConfig
    output_dir: str
    model: ModelConfig | None = None
    init: str | None = None
    backbone_weights: str | None = None
    protocol: str | None = DEFAULT_PROTOCOL
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str | None = None
    push_to_hub: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.data, DataConfig):
            raise TypeError(f"RunConfig.data must be a DataConfig, got {type(self.data).__name__}.")
        if not isinstance(self.train, TrainConfig):
            raise TypeError(f"RunConfig.train must be a TrainConfig, got {type(self.train).__name__}.")
        if not self.output_dir:
            raise ValueError("RunConfig.output_dir is empty; name the run directory to write.")
        object.__setattr__(self, "output_dir", os.fspath(self.output_dir))
        if self.init is not None:
            if self.model is not None:
                raise ValueError(
                    "RunConfig takes model= (a new model's architecture) or init= (weights to fine-tune), not both."
                )
            if self.backbone_weights is not None:
                raise ValueError(
                    f"backbone_weights={self.backbone_weights!r} is for a new model; init={self.init!r} already brings "
                    "its backbone's weights. Leave backbone_weights out."
                )
        else:
            model = self.model if self.model is not None else ModelConfig()
            if not isinstance(model, ModelConfig):
                raise TypeError(f"RunConfig.model must be a ModelConfig, got {type(model).__name__}.")
            object.__setattr__(self, "model", dataclasses.replace(model, shot=self.data.shot))
            object.__setattr__(self, "backbone_weights", os.fspath(self.backbone_weights or "reference"))
        if self.protocol is not None:
            if self.protocol not in PROTOCOLS:
                raise ValueError(f"Unknown protocol {self.protocol!r}. Expected one of: {', '.join(PROTOCOLS)}.")
            default = DataConfig()
            set_here = [k for k in PROTOCOL_DATA_FIELDS if getattr(self.data, k) != getattr(default, k)]
            if set_here:
                raise ValueError(
                    f"protocol={self.protocol!r} sets the data's {', '.join(set_here)}, which this DataConfig sets "
                    "too; leave them at their defaults, or pass protocol=None to choose them yourself."
                )

    @property
    def precision(self) -> str:
        """The run's number format, ``train.precision`` (``fp32|bf16|fp16|auto``; the CPU always trains in fp32)."""
        return self.train.precision

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict, nested configs included (the form of ``run.json``)."""
        return {
            "data": self.data.to_dict(),
            "output_dir": self.output_dir,
            "model": self.model.to_dict() if self.model is not None else None,
            "init": self.init,
            "backbone_weights": self.backbone_weights,
            "protocol": self.protocol,
            "train": self.train.to_dict(),
            "device": self.device,
            "push_to_hub": self.push_to_hub,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise, and every nested config is validated."""
        if not isinstance(data, Mapping):
            raise TypeError(f"A RunConfig is read from a JSON object, got {type(data).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown RunConfig field(s) {unknown}; expected {sorted(known)}.")
        values = dict(data)
        if "data" not in values or "output_dir" not in values:
            raise ValueError("A RunConfig needs 'data' and 'output_dir'.")
        values["data"] = DataConfig.from_dict(values["data"])
        if values.get("model") is not None:
            values["model"] = ModelConfig.from_dict(values["model"])
        if "train" in values:
            values["train"] = TrainConfig.from_dict(values["train"])
        return cls(**values)

    def save(self, path: str | os.PathLike, command: str | None = None) -> Path:
        """Write this config as ``run.json``-style JSON, atomically (``command``: the command line it came from)."""
        payload: dict[str, Any] = {"format": RUN_FORMAT, "config": self.to_dict()}
        if command is not None:
            payload["command"] = command
        atomic_write_json(Path(path), payload)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RunConfig:
        """Read a file written by :meth:`save` (a run's ``run.json``, or what ``reproduce`` gives its children).

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a run config (another file, damaged, or edited into something invalid), naming it.
        """
        from .run_dir import RunDir

        path = Path(path)
        payload = RunDir(path.parent).read_json(path, "a run configuration (run.json)")
        if payload.get("format") != RUN_FORMAT or not isinstance(payload.get("config"), Mapping):
            raise ValueError(f"{str(path)!r} is not an ntre-zoo run configuration ({RUN_FORMAT!r} with a 'config').")
        try:
            return cls.from_dict(payload["config"])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{str(path)!r} holds an invalid run configuration: {error}") from None

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed; dotted names reach into the nested configs
        (``config.replace(**{"train.max_steps": 100, "data.augment.crop_size": 321})``)."""
        config = self
        for path, value in changes.items():
            config = _replaced(config, path, value)
        return config

    def resume_differences(self, other: RunConfig) -> dict[str, tuple[Any, Any]]:
        """Fields other than :data:`RESUMABLE` whose values differ, as dotted paths: ``{path: (self, other)}``.
        The output directories count as equal when they resolve to the same directory."""
        mine, theirs = _flatten(self.to_dict()), _flatten(other.to_dict())
        differences = {}
        for key in sorted(set(mine) | set(theirs)):
            if key in RESUMABLE:
                continue
            a, b = mine.get(key), theirs.get(key)
            if key == "output_dir" and Path(str(a)).resolve() == Path(str(b)).resolve():
                continue
            if a != b:
                differences[key] = (a, b)
        return differences


def _replaced(config: Any, path: str, value: Any) -> Any:
    """``config`` (a dataclass) with the field at the dotted ``path`` set to ``value``, every level validated."""
    head, _, rest = path.partition(".")
    return dataclasses.replace(config, **{head: _replaced(getattr(config, head), rest, value) if rest else value})


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
