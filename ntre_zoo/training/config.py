"""``TrainConfig``: every training hyper-parameter in one dataclass, and the two named presets."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from ..errors import warn_deprecated
from ..inference.precision import PRECISIONS, resolve_precision
from ..model.config import check_fields
from .losses import LossConfig

__all__ = ["AMP_DTYPES", "PRESETS", "RESUMABLE_OVERRIDES", "TrainConfig", "precision_of_amp"]

#: Values of the deprecated ``TrainConfig.amp_dtype``, and the ``precision`` each names.
AMP_DTYPES = ("auto", "bfloat16", "float16")
_AMP_DTYPE_PRECISIONS = dict(zip(AMP_DTYPES, ("auto", "bf16", "fp16"), strict=True))
_AMP_KEYS = ("amp", "amp_dtype")

#: Fields a resumed run may change: they do not alter the trajectory of the weights.
RESUMABLE_OVERRIDES = frozenset({"max_steps", "progress", "num_workers", "log_every", "checkpoint_every"})

#: Named presets (spec 7.1 and 10.6). The paper and the code disagree; see docs/training.md.
#: ``reference``: the authors' repo config (base_lr 0.0025 x 10 = 0.025 effective, batch 4, 150 epochs).
#: ``paper``: the paper's text (lr 0.03 effective, batch 32, 200 epochs on PASCAL-5i, 50 on COCO-20i).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "reference": {"*": {"base_lr": 0.0025, "batch_size": 4, "epochs": 150}},
    "paper": {
        "*": {"base_lr": 0.003, "batch_size": 32, "epochs": 200},
        "coco20i": {"epochs": 50},
    },
}


_T = TypeVar("_T")


def precision_of_amp(amp: Any = None, amp_dtype: Any = None) -> str:
    """The ``TrainConfig.precision`` that the deprecated pair ``amp`` / ``amp_dtype`` (0.3 and earlier) spells:
    ``amp=False`` is ``fp32``; else ``amp_dtype`` (``auto``, ``bfloat16`` = ``bf16``, ``float16`` = ``fp16``; None:
    ``auto``).

    Raises:
        ValueError: an ``amp_dtype`` outside :data:`AMP_DTYPES`.
    """
    if amp_dtype is not None and amp_dtype not in AMP_DTYPES:
        raise ValueError(
            f"amp_dtype must be one of {', '.join(map(repr, AMP_DTYPES))}, got {amp_dtype!r}; it is deprecated: pass "
            f"precision= instead ({', '.join(map(repr, PRECISIONS))})."
        )
    if amp is not None and not amp:
        return "fp32"
    return _AMP_DTYPE_PRECISIONS[amp_dtype or "auto"]


def _new_spelling(values: Mapping[str, Any], function: str) -> dict[str, Any]:
    """``values`` with the deprecated ``amp`` / ``amp_dtype`` turned into ``precision``, warning that they go.

    Raises:
        ValueError: a bad ``amp_dtype``, or a ``precision`` other than the default that disagrees with them.
    """
    values = dict(values)
    old = {k: values.pop(k) for k in _AMP_KEYS if k in values}
    if not old:
        return values
    named = precision_of_amp(**old)
    warn_deprecated(f"{function}({', '.join(f'{k}={v!r}' for k, v in old.items())})", f"precision={named!r}")
    if values.get("precision", "auto") not in ("auto", named):
        raise ValueError(
            f"{', '.join(f'{k}={v!r}' for k, v in old.items())} and precision={values['precision']!r} disagree; pass "
            "only precision= (amp and amp_dtype are its deprecated older spelling)."
        )
    return {**values, "precision": named}


def _accepting_amp_keywords(cls: type[_T]) -> type[_T]:
    """Let the constructor take the deprecated ``amp`` / ``amp_dtype`` keywords (for one release)."""
    generated: Callable[..., None] = cls.__init__

    @functools.wraps(generated)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        generated(self, *args, **_new_spelling(kwargs, cls.__name__))

    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls


@_accepting_amp_keywords
@dataclass(frozen=True)
class TrainConfig:
    """Episodic training hyper-parameters. Defaults are the reference preset (``TrainConfig.preset("reference")``).

    Args:
        preset: name of the preset the values came from (recorded, not interpreted).
        epochs: passes over the training dataset.
        batch_size: episodes per optimizer step over all processes (divided among the ranks).
        base_lr: the reference's ``base_lr``; the learning rate is ``lr_multiplier * base_lr * (1 - t/T)^power``.
        lr_multiplier: 10 in the reference (``index_split = -1`` puts every group at 10x).
        power: poly exponent, 0.9.
        momentum: SGD momentum, 0.9.
        weight_decay: SGD weight decay, 1e-4, on every head parameter (biases and the BG prototype included).
        grad_clip: clip the head's gradient norm to this value; None (the reference) for no clipping.
        backbone_bn: ``"train"`` (the reference: frozen weights, BN in train mode with batch statistics and
            drifting running statistics) or ``"eval"`` (BN statistics frozen too).
        precision: the number format on CUDA: ``"auto"`` (bf16 autocast where the GPU computes it natively,
            compute capability 8.0 and newer, with no gradient scaling; fp32 before Ampere, as the reference
            trained), ``"bf16"``, ``"fp16"`` (autocast with gradient scaling) or ``"fp32"``. The CPU always trains
            in fp32 (bit-exact runs). :meth:`precision_on` gives what a device resolves it to. The deprecated
            keywords ``amp=False`` (``"fp32"``) and ``amp_dtype=`` (``"bfloat16"``, ``"float16"``, ``"auto"``)
            still work for one release, with a ``DeprecationWarning``.
        seed: seeds every RNG (321 in the reference).
        deterministic: cuDNN deterministic, no benchmark (the reference's setting with a seed).
        shuffle: shuffle the training episodes each epoch.
        num_workers: DataLoader worker processes.
        val_every: validate every this many epochs; None = the reference's rule (every 2, or every epoch
            when ``epochs <= 50``); 0 = never.
        val_episodes: episodes per validation (the paper: 1000 PASCAL, 4000 COCO).
        val_seed: seed of the validation episodes (321, the reference's ``fix_random_seed_val``).
        select_metric: validation metric that picks the best checkpoint (higher is better).
        checkpoint_every: also write the last checkpoint every this many steps (None: at epoch ends only).
        max_steps: stop (with a checkpoint) after this many optimizer steps in total; the schedule still spans
            all ``epochs``, so ``--resume`` continues it exactly. None: run every epoch.
        log_every: steps between TensorBoard scalars and loss reductions across ranks.
        progress: show a tqdm progress bar (rank 0 only).
        loss: the loss weights and PCL bank settings.
    """

    preset: str = "reference"
    epochs: int = 150
    batch_size: int = 4
    base_lr: float = 0.0025
    lr_multiplier: float = 10.0
    power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 1e-4
    grad_clip: float | None = None
    backbone_bn: str = "train"
    precision: str = "auto"
    seed: int = 321
    deterministic: bool = True
    shuffle: bool = True
    num_workers: int = 0
    val_every: int | None = None
    val_episodes: int = 1000
    val_seed: int = 321
    select_metric: str = "miou"
    checkpoint_every: int | None = None
    max_steps: int | None = None
    log_every: int = 10
    progress: bool = True
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        if isinstance(self.loss, Mapping):
            object.__setattr__(self, "loss", LossConfig(**self.loss))
        for name in ("epochs", "batch_size", "log_every", "val_episodes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)!r}.")
        for name in ("base_lr", "lr_multiplier", "momentum", "weight_decay", "power"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)!r}.")
        if self.backbone_bn not in ("train", "eval"):
            raise ValueError(f"backbone_bn must be 'train' (the reference) or 'eval', got {self.backbone_bn!r}.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {self.precision!r}.")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or None (no clipping), got {self.grad_clip!r}.")
        for name in ("val_every", "checkpoint_every", "max_steps"):
            value = getattr(self, name)
            if value is not None and (int(value) < 0 or (name != "val_every" and int(value) == 0)):
                raise ValueError(f"TrainConfig.{name} must be a positive integer or None, got {value!r}.")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers!r}.")

    # ------------------------------------------------------------------ presets and I/O
    @classmethod
    def from_preset(cls, name: str = "reference", benchmark: str = "pascal5i", **overrides: Any) -> TrainConfig:
        """A preset, optionally with some fields replaced.

        Args:
            name: ``reference`` or ``paper``.
            benchmark: ``pascal5i``, ``coco20i`` or anything else (only the paper preset's epochs depend on it).
            **overrides: TrainConfig fields.

        Raises:
            ValueError: an unknown preset or field.
        """
        if name not in PRESETS:
            raise ValueError(f"Unknown training preset {name!r}. Expected one of: {', '.join(PRESETS)}.")
        values: dict[str, Any] = {"preset": name, **PRESETS[name]["*"], **PRESETS[name].get(benchmark, {})}
        return cls.from_dict({**values, **_new_spelling(overrides, "TrainConfig.from_preset")})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the loss config nested)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise. A record written before ``precision`` existed
        (``train_config.json`` or a checkpoint of 0.3, with ``amp`` and ``amp_dtype``) reads as the precision it
        trained with (:func:`precision_of_amp`)."""
        values = dict(data)
        if "precision" not in values and any(k in values for k in _AMP_KEYS):
            values["precision"] = precision_of_amp(values.pop("amp", None), values.pop("amp_dtype", None))
        values = check_fields(cls, _new_spelling(values, "TrainConfig.from_dict"))
        if isinstance(values.get("loss"), Mapping):
            values["loss"] = LossConfig.from_dict(values["loss"])
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed."""
        return self.from_dict({**self.to_dict(), **_new_spelling(changes, "TrainConfig.replace")})

    def trajectory_differences(self, other: TrainConfig) -> dict[str, Any]:
        """Fields (other than :data:`RESUMABLE_OVERRIDES`) whose values differ: ``{name: (self, other)}``."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in mine if k not in RESUMABLE_OVERRIDES and mine[k] != theirs[k]}

    @property
    def amp(self) -> bool:
        """Deprecated (``DeprecationWarning``): whether :attr:`precision` is other than ``fp32``."""
        warn_deprecated("TrainConfig.amp", "TrainConfig.precision")
        return self.precision != "fp32"

    @property
    def amp_dtype(self) -> str:
        """Deprecated (``DeprecationWarning``): :attr:`precision` in the old names (``fp32`` reads ``auto``, with
        :attr:`amp` False)."""
        warn_deprecated("TrainConfig.amp_dtype", "TrainConfig.precision")
        return {"bf16": "bfloat16", "fp16": "float16"}.get(self.precision, "auto")

    def precision_on(self, device: str | torch.device) -> str:
        """What training computes in on ``device``: ``"fp32"``, ``"bf16"`` or ``"fp16"``.

        fp32 on the CPU (bit-exact runs); on CUDA, :attr:`precision`, where ``"auto"`` is bf16 on GPUs with native
        bf16 (compute capability 8.0+: no gradient scaling needed) and fp32 on older ones.
        """
        device = torch.device(device)
        return resolve_precision(self.precision, device) if device.type == "cuda" else "fp32"

    def validation_interval(self) -> int:
        """Epochs between validations (0: never), with the reference's rule when ``val_every`` is None."""
        if self.val_every is not None:
            return int(self.val_every)
        return 1 if self.epochs <= 50 else 2
