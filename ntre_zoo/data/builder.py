"""``DataConfig`` and ``build_dataset``: one entry point for every benchmark's episodes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .augment import AugmentConfig
from .coco20i import coco20i_source
from .episodes import SCORING_MODES, EpisodeDataset, ImageSource
from .folder import folder_source
from .index import MIN_PIXELS, label_class_counts
from .pascal5i import pascal5i_source
from .preprocessing import IMAGENET_MEAN, IMAGENET_STD, check_resize
from .splits import COCO_SPLITS, FoldSplit, coco20i_split, custom_split, pascal5i_split

__all__ = ["DATASETS", "DataConfig", "build_dataset", "fold_split"]

DATASETS = ("pascal5i", "coco20i", "folder")


@dataclass(frozen=True)
class DataConfig:
    """Which benchmark, fold and episode shape to load.

    Args:
        dataset: ``pascal5i``, ``coco20i`` or ``folder``.
        root: the data root (``VOC2012``, the COCO root, or the folder dataset).
        fold: 0-3 (ignored by ``folder``).
        shot: supports per episode.
        coco_split: ``interleaved`` (default, PFENet's ``use_split_coco``) or ``contiguous``.
        novel_classes: the test classes of a ``folder`` dataset.
        min_pixels: the class-list threshold (2 * 32 * 32 in the reference).
        augment: training augmentation.
        test_size: evaluation canvas side; None (default): the model's ``config.test_size``, which
            ``ntre_zoo.evaluate`` fills in (a different explicit value is refused there).
        mean, std: input normalisation (the model's ``config.mean/std``).
        train_list, val_list: PASCAL-5i image lists: a shipped list name (``voc_sbd_merge_noduplicate``,
            ``voc2012_val``) or a file; None: the tree's own lists. An evaluation protocol sets them.
        resize: how evaluation images go onto the canvas: ``long_side`` (the reference) or ``square``.
        scoring: ``original`` (score at the label's own size, the reference) or ``canvas``.
        exclude_novel: leave training images that show any test class out of the training lists (BAM).
    """

    dataset: str = "pascal5i"
    root: str = "."
    fold: int = 0
    shot: int = 1
    coco_split: str = "interleaved"
    novel_classes: tuple[int, ...] | None = None
    min_pixels: int = MIN_PIXELS
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    test_size: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    train_list: str | None = None
    val_list: str | None = None
    resize: str = "long_side"
    scoring: str = "original"
    exclude_novel: bool = False

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"Unknown dataset {self.dataset!r}. Expected one of: {', '.join(DATASETS)}.")
        if self.coco_split not in COCO_SPLITS:
            raise ValueError(f"Unknown coco_split {self.coco_split!r}. Expected one of: {', '.join(COCO_SPLITS)}.")
        if self.dataset != "folder" and self.fold not in (0, 1, 2, 3):
            raise ValueError(f"fold must be 0, 1, 2 or 3, got {self.fold!r}.")
        if self.shot < 1:
            raise ValueError(f"shot must be >= 1, got {self.shot!r}.")
        if self.novel_classes is not None:
            object.__setattr__(self, "novel_classes", tuple(int(c) for c in self.novel_classes))
        if self.test_size is not None and int(self.test_size) < 1:
            raise ValueError(f"test_size must be a positive canvas side or None (the model's), got {self.test_size!r}.")
        check_resize(self.resize)
        if self.scoring not in SCORING_MODES:
            raise ValueError(f"Unknown scoring {self.scoring!r}. Expected one of: {', '.join(SCORING_MODES)}.")
        if self.dataset != "pascal5i" and (self.train_list or self.val_list):
            raise ValueError(
                f"train_list/val_list select PASCAL-5i image lists; dataset {self.dataset!r} takes none "
                "(a folder dataset reads its own train.txt/val.txt)."
            )
        if isinstance(self.augment, Mapping):
            object.__setattr__(self, "augment", AugmentConfig(**self.augment))
        for key in ("mean", "std"):
            object.__setattr__(self, key, tuple(getattr(self, key)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the augmentation nested)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise (lists become tuples)."""
        if not isinstance(data, Mapping):
            raise TypeError(f"A DataConfig is read from a JSON object, got {type(data).__name__}.")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(
                f"Unknown DataConfig field(s) {unknown}; expected {[f.name for f in dataclasses.fields(cls)]}."
            )
        if isinstance(values.get("augment"), Mapping):
            augment: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values["augment"].items()}
            values["augment"] = AugmentConfig(**augment)
        return cls(**values)


def _source(config: DataConfig, split: str, progress: bool) -> ImageSource:
    if config.dataset == "pascal5i":
        return pascal5i_source(config.root, split, train_list=config.train_list, val_list=config.val_list)
    if config.dataset == "coco20i":
        return coco20i_source(config.root, split, progress=progress)
    return folder_source(config.root, split)


def fold_split(config: DataConfig, source: ImageSource | None = None, progress: bool = True) -> FoldSplit:
    """The fold's train and test classes; a folder dataset without ``classes.json`` uses every class
    found in its masks (which needs ``source``)."""
    if config.dataset == "pascal5i":
        return pascal5i_split(config.fold)
    if config.dataset == "coco20i":
        return coco20i_split(config.fold, config.coco_split)
    class_ids = list(source.class_names) if source is not None and source.class_names else None
    if class_ids is None:
        if source is None:
            raise ValueError("A folder dataset without classes.json needs its source to list its classes.")
        counts = label_class_counts(
            source.labels, root=source.root, cache_dir=source.cache_dir, name=source.name, progress=progress
        )
        class_ids = sorted({c for image in counts for c in image})
    return custom_split(class_ids, config.novel_classes)


def build_dataset(
    config: DataConfig,
    split: str,
    *,
    episodes: int | None = None,
    seed: int = 321,
    progress: bool = True,
) -> EpisodeDataset:
    """Episodes of ``split`` (``train``: the fold's base classes, augmented; ``val``: its novel classes,
    test-resized) of the configured benchmark.

    Args:
        config: dataset, root, fold, shot, lists and preprocessing.
        split: ``train`` or ``val``.
        episodes: number of items (default: the data-list length).
        seed: the episode seed.
        progress: tqdm bars while indexing.

    Raises:
        FileNotFoundError: the data root does not have the benchmark's layout.
        ValueError: bad settings, or no episode can be formed.
    """
    source = _source(config, split, progress)
    if config.dataset == "folder":
        # Both splits of a folder dataset share the class table, so read it from the whole folder.
        split_classes = fold_split(config, source, progress)
    else:
        split_classes = fold_split(config)
    exclude = split_classes.test_classes if split == "train" and config.exclude_novel else ()
    return EpisodeDataset(
        source,
        split_classes.classes(split),
        split=split,
        shot=config.shot,
        episodes=episodes,
        seed=seed,
        augment=config.augment,
        test_size=config.test_size,
        mean=config.mean,
        std=config.std,
        min_pixels=config.min_pixels,
        resize=config.resize,
        scoring=config.scoring,
        exclude=exclude,
        progress=progress,
    )
