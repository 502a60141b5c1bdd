"""Fold class lists of the few-shot benchmarks (spec section 7.3), as 1-based dataset class ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["COCO_SPLITS", "PASCAL_CLASSES", "FoldSplit", "coco20i_split", "custom_split", "pascal5i_split"]

PASCAL_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
#: COCO-20i fold layouts: PFENet's ``use_split_coco`` (interleaved, the default) and the contiguous one.
COCO_SPLITS = ("interleaved", "contiguous")


@dataclass(frozen=True)
class FoldSplit:
    """Which classes a fold trains on and which it tests on.

    Args:
        fold: the fold number.
        train_classes: base classes, in the order that defines ``class_index`` for training episodes.
        test_classes: novel classes, in the order that defines ``class_index`` for evaluation episodes.
    """

    fold: int
    train_classes: tuple[int, ...]
    test_classes: tuple[int, ...]

    def classes(self, split: str) -> tuple[int, ...]:
        """``train_classes`` for ``split='train'``, ``test_classes`` for ``'val'``."""
        if split == "train":
            return self.train_classes
        if split == "val":
            return self.test_classes
        raise ValueError(f"Unknown split {split!r}; expected 'train' or 'val'.")


def _check_fold(fold: int, folds: int = 4) -> None:
    if not isinstance(fold, int) or not 0 <= fold < folds:
        raise ValueError(f"fold must be an integer in 0..{folds - 1}, got {fold!r}.")


def pascal5i_split(fold: int) -> FoldSplit:
    """PASCAL-5i: fold ``i`` tests classes ``5i+1 .. 5i+5`` and trains on the other 15."""
    _check_fold(fold)
    test = tuple(range(5 * fold + 1, 5 * fold + 6))
    return FoldSplit(fold, tuple(c for c in range(1, 21) if c not in test), test)


def coco20i_split(fold: int, split: str = "interleaved") -> FoldSplit:
    """COCO-20i on contiguous ids 1-80.

    Args:
        fold: 0-3.
        split: ``interleaved`` (PFENet's ``use_split_coco``: fold ``i`` tests the ids ``c`` with
            ``(c - 1) % 4 == i``) or ``contiguous`` (fold ``i`` tests ``20i+1 .. 20i+20``).
    """
    _check_fold(fold)
    if split == "interleaved":
        test = tuple(range(fold + 1, 81, 4))
    elif split == "contiguous":
        test = tuple(range(20 * fold + 1, 20 * fold + 21))
    else:
        raise ValueError(f"Unknown COCO-20i split {split!r}; expected one of {COCO_SPLITS}.")
    return FoldSplit(fold, tuple(c for c in range(1, 81) if c not in test), test)


def custom_split(class_ids: Sequence[int], novel: Sequence[int] | None) -> FoldSplit:
    """A user dataset's split: ``novel`` classes are tested, the rest trained on (fold number 0).

    Raises:
        ValueError: ``novel`` is empty or names a class the dataset does not have.
    """
    known = tuple(sorted(int(c) for c in class_ids))
    if not novel:
        raise ValueError(
            "Choose the novel (test) classes of the folder dataset: `--novel-classes 1 2` on the command line, "
            f"DataConfig(novel_classes=(1, 2)) in Python; its classes are {list(known)}."
        )
    novel = tuple(int(c) for c in novel)
    unknown = sorted(set(novel) - set(known))
    if unknown:
        raise ValueError(
            f"novel classes {unknown} are not in the dataset; its classes are {list(known)} (choose among them with "
            "--novel-classes, or novel_classes= in Python)."
        )
    return FoldSplit(0, tuple(c for c in known if c not in novel), novel)
