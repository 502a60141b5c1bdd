"""Few-shot episodes over any labelled image set (spec sections 7.3 and 8).

An :class:`EpisodeDataset` turns an :class:`ImageSource` (image and label files) and a split's class list
into episodes. Item ``i`` is a pure function of ``(seed, epoch, i)``: its ``torch.Generator`` is derived from
them, so the same seed gives the same episodes in any process, with any worker count and batch size.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from .augment import AugmentConfig, augment_pair
from .index import MIN_PIXELS, build_class_lists, label_class_counts, read_label
from .preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    check_resize,
    image_to_canvas,
    mask_to_canvas,
    normalize,
)

__all__ = ["SCORING_MODES", "EpisodeDataset", "ImageSource", "binary_label", "collate_episodes", "episode_generator"]

#: Which label an evaluation episode is scored against: ``original`` (the query's label at its own size,
#: PFENet's ``ori_resize``) or ``canvas`` (the label resized onto the canvas, HSNet's default).
SCORING_MODES = ("original", "canvas")


@dataclass(frozen=True)
class ImageSource:
    """Image/label file pairs of one split of a dataset.

    Args:
        name: cache prefix, e.g. ``pascal5i_train``.
        root: data root; cache keys use paths relative to it.
        images, labels: parallel tuples of files; labels are single-channel PNGs of class ids.
        class_names: names of the dataset's class ids (for tables).
        cache_dir: where the class-list cache is written (``None``: no cache).
        benchmark: ``pascal5i``, ``coco20i`` or ``folder`` (protocols choose their settings by it).
        list_file: the image list the pairs were read from, if any (recorded with results).
    """

    name: str
    root: Path
    images: tuple[Path, ...]
    labels: tuple[Path, ...]
    class_names: Mapping[int, str] = field(default_factory=dict)
    cache_dir: Path | None = None
    benchmark: str = "folder"
    list_file: Path | None = None

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError(
                f"{self.name}: {len(self.images)} images but {len(self.labels)} labels; pass one label per image."
            )
        if not self.images:
            raise ValueError(
                f"{self.name}: no images found under {str(self.root)!r}; check the data root and its lists."
            )


def episode_generator(seed: int, epoch: int, index: int, stream: int = 0) -> torch.Generator:
    """The generator of one episode, derived from ``(seed, epoch, index)`` only (no global RNG state);
    ``stream`` 0 draws the class and supports, 1 the augmentation."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(index), int(stream)]).generate_state(1, dtype=np.uint64)[
        0
    ]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


def binary_label(label: np.ndarray, class_id: int) -> torch.Tensor:
    """Remap a class-id label to the episode's: ``class_id`` -> 1, 255 kept, everything else -> 0."""
    out = np.zeros(label.shape, dtype=np.int64)
    out[label == class_id] = 1
    out[label == 255] = 255
    return torch.from_numpy(out)


def _read_image(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


class EpisodeDataset(Dataset):
    """Few-shot episodes of one split.

    Training (``split='train'``): the query is data-list entry ``i`` (shuffle with the DataLoader), every
    image goes through :func:`~ntre_zoo.data.augment.augment_pair`. Evaluation (``split='val'``): the
    query sequence is the data list in order, cycled to ``episodes`` items, and every image gets the
    test resize (:mod:`ntre_zoo.data.preprocessing`); the label the query is scored against is kept.
    In both, the class is drawn uniformly among the query's split classes and K supports are drawn
    without repeats from that class's list, the query excluded.

    Args:
        source: the image/label files.
        classes: the split's class ids, in ``class_index`` order.
        split: ``train`` or ``val``.
        shot: supports per episode.
        episodes: number of items (default: the data-list length).
        seed: episode seed (321 in the reference evaluation).
        augment: training pipeline settings (``split='train'`` only).
        test_size: canvas side for evaluation; None until set (``ntre_zoo.evaluate`` takes the model's
            ``config.test_size``); reading an evaluation item without it raises.
        mean, std: normalisation of [0, 1] images.
        min_pixels: the class-list pixel threshold.
        resize: how evaluation images go onto the canvas (:data:`~ntre_zoo.data.preprocessing.RESIZE_MODES`).
        scoring: the label evaluation scores against (:data:`SCORING_MODES`).
        exclude: classes whose images are left out altogether (at any pixel count): BAM drops training
            images that show a test class.
        progress: show a bar while indexing labels.

    Items (dict of tensors): ``query_image (3, H, W)``, ``query_mask (H, W)`` int64 in {0, 1, 255},
    ``support_images (K, 3, H, W)``, ``support_masks (K, H, W)``, ``class_id``, ``class_index``,
    ``episode``; evaluation adds ``query_label``, the binary label the query is scored against:
    ``(H0, W0)`` at the original size (``scoring='original'``) or the ``(S, S)`` canvas mask (``'canvas'``).
    """

    def __init__(
        self,
        source: ImageSource,
        classes: Sequence[int],
        *,
        split: str,
        shot: int = 1,
        episodes: int | None = None,
        seed: int = 321,
        augment: AugmentConfig | None = None,
        test_size: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        min_pixels: int = MIN_PIXELS,
        resize: str = "long_side",
        scoring: str = "original",
        exclude: Sequence[int] = (),
        progress: bool = True,
    ) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}.")
        if shot < 1:
            raise ValueError(f"shot must be >= 1, got {shot!r}.")
        if episodes is not None and episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes!r}.")
        if scoring not in SCORING_MODES:
            raise ValueError(f"Unknown scoring {scoring!r}. Expected one of: {', '.join(SCORING_MODES)}.")
        self.source = source
        self.classes = tuple(int(c) for c in classes)
        self.split, self.shot, self.seed, self.epoch = split, int(shot), int(seed), 0
        self.augment = augment or AugmentConfig()
        if self.augment.crop_size is None:  # crop at the canvas side
            if test_size is None:
                raise ValueError("AugmentConfig(crop_size=None) crops at test_size, which is None; set one of them.")
            self.augment = dataclasses.replace(self.augment, crop_size=int(test_size))
        self.test_size = None if test_size is None else int(test_size)
        self.resize, self.scoring = check_resize(resize), scoring
        self.min_pixels = int(min_pixels)
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        counts = label_class_counts(
            source.labels, root=source.root, cache_dir=source.cache_dir, name=source.name, progress=progress
        )
        lists = build_class_lists(counts, self.classes, min_pixels, exclude=exclude)
        self.class_files: dict[int, tuple[int, ...]] = lists.per_class
        members = {c: set(v) for c, v in lists.per_class.items()}
        usable = {c for c, files in lists.per_class.items() if len(files) >= self.shot + 1}
        too_few = sorted(set(self.classes) - usable)
        if too_few:
            warnings.warn(
                f"{source.name}: classes {too_few} have fewer than shot + 1 = {self.shot + 1} images with >= "
                f"{min_pixels} pixels and never form an episode.",
                stacklevel=2,
            )
        self.queries: list[tuple[int, tuple[int, ...]]] = []
        for q in lists.data:
            choices = tuple(
                c for c in lists.present[q] if c in members and len(members[c]) - (q in members[c]) >= self.shot
            )
            if choices:
                self.queries.append((q, choices))
        if not self.queries:
            raise ValueError(
                f"{source.name}: no episode can be formed for classes {list(self.classes)} with shot={self.shot}: "
                f"no class has {self.shot + 1} images with >= {min_pixels} pixels. Use more data or a smaller shot."
            )
        self.episodes = int(episodes) if episodes is not None else len(self.queries)

    def __len__(self) -> int:
        return self.episodes

    def set_epoch(self, epoch: int) -> None:
        """Draw a fresh set of training episodes (supports, augmentation) for ``epoch``."""
        self.epoch = int(epoch)

    def class_name(self, class_id: int) -> str:
        return str(self.source.class_names.get(class_id, class_id))

    def sample(self, index: int) -> tuple[int, int, list[int]]:
        """``(query, class_id, supports)`` of episode ``index``, as indices into the source."""
        if not 0 <= index < self.episodes:
            raise IndexError(f"episode {index} out of range for {self.episodes} episodes.")
        generator = episode_generator(self.seed, self.epoch, index)
        query, choices = self.queries[index % len(self.queries)]
        class_id = choices[int(torch.randint(len(choices), (), generator=generator))]
        query_pair = (self.source.images[query], self.source.labels[query])
        candidates = [
            i for i in self.class_files[class_id] if (self.source.images[i], self.source.labels[i]) != query_pair
        ]
        order = torch.randperm(len(candidates), generator=generator)[: self.shot].tolist()
        return query, class_id, [candidates[i] for i in order]

    def _load(self, index: int, class_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = _read_image(self.source.images[index])
        label = read_label(self.source.labels[index])
        if tuple(image.shape[-2:]) != label.shape:
            raise ValueError(
                f"Image {str(self.source.images[index])!r} is {tuple(image.shape[-2:])} but its label is "
                f"{label.shape}; every label must have its image's size."
            )
        return image, binary_label(label, class_id)

    def eval_view(self, index: int, class_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Source image ``index`` as evaluation sees it for ``class_id``: the normalised test canvas
        ``(3, S, S)``, its binary mask canvas ``(S, S)`` and the binary label it is scored against (the
        original-size label, or the mask canvas with ``scoring='canvas'``).

        Raises:
            ValueError: ``test_size`` is not set.
        """
        if self.test_size is None:
            raise ValueError(
                f"{self.source.name}: test_size is None, so evaluation images have no canvas size. "
                "ntre_zoo.evaluate(model, dataset) takes it from model.config.test_size; to read items "
                "yourself, build the dataset with DataConfig(test_size=model.config.test_size)."
            )
        image, label = self._load(index, class_id)
        canvas = normalize(image_to_canvas(image, self.test_size, self.resize), self.mean, self.std)
        mask = mask_to_canvas(label, self.test_size, self.resize)
        return canvas, mask, mask if self.scoring == "canvas" else label

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        query, class_id, supports = self.sample(index)
        generator = episode_generator(self.seed, self.epoch, index, stream=1)
        images, masks, query_label = [], [], None
        for n, i in enumerate([query, *supports]):
            if self.split == "train":
                image, mask = augment_pair(*self._load(i, class_id), self.augment, self.mean, generator)
                image = normalize(image, self.mean, self.std)
            else:
                image, mask, label = self.eval_view(i, class_id)
                query_label = label if n == 0 else query_label
            images.append(image)
            masks.append(mask)
        item = {
            "query_image": images[0],
            "query_mask": masks[0],
            "support_images": torch.stack(images[1:]),
            "support_masks": torch.stack(masks[1:]),
            "class_id": torch.tensor(class_id, dtype=torch.long),
            "class_index": torch.tensor(self.classes.index(class_id), dtype=torch.long),
            "episode": torch.tensor(index, dtype=torch.long),
        }
        if query_label is not None:
            item["query_label"] = query_label
        return item


def collate_episodes(batch: Sequence[dict[str, torch.Tensor]]) -> dict[str, object]:
    """``default_collate`` for every key except ``query_label`` (original sizes differ), kept as a list."""
    labels = [item["query_label"] for item in batch] if "query_label" in batch[0] else None
    out = default_collate([{k: v for k, v in item.items() if k != "query_label"} for item in batch])
    if labels is not None:
        out["query_label"] = labels
    return out
