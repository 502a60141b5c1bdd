"""Benchmark class names and the train/test classes of each fold (spec section 7.3), for model cards."""

from __future__ import annotations

from .splits import PASCAL_CLASSES, coco20i_split, pascal5i_split

__all__ = ["BENCHMARK_CLASSES", "fold_classes"]

# COCO 2014 categories in the order of the contiguous label ids 1-80 used by the reference lists.
_COCO = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)

#: Class names by benchmark, index i is label id i + 1.
BENCHMARK_CLASSES: dict[str, tuple[str, ...]] = {"pascal5i": PASCAL_CLASSES, "coco20i": _COCO}


def fold_classes(dataset: str, fold: int) -> tuple[list[str], list[str]]:
    """``(train classes, test classes)`` of a benchmark fold.

    PASCAL-5i fold i tests ids 5i+1..5i+5. COCO-20i uses the interleaved split (``use_split_coco``, the
    default of PFENet's COCO configs): fold i tests the ids c with ``(c - 1) % 4 == i``.

    Raises:
        ValueError: an unknown dataset or a fold outside 0-3.
    """
    if dataset not in BENCHMARK_CLASSES:
        raise ValueError(f"Unknown benchmark {dataset!r}; expected one of {sorted(BENCHMARK_CLASSES)}.")
    split = pascal5i_split(fold) if dataset == "pascal5i" else coco20i_split(fold)
    names = BENCHMARK_CLASSES[dataset]
    return [names[c - 1] for c in split.train_classes], [names[c - 1] for c in split.test_classes]
