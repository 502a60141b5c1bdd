"""Named evaluation protocols: what NTRENet, PFENet, HSNet and BAM each evaluate (and train) on.

A :class:`Protocol` is a frozen record of one repository's choices: episodes per benchmark, seeds, how images
go onto the canvas, which resolution is scored, the image lists and the training-list filter. Every value
cites the file that defines it in ``docs/evaluation.md`` (whose table is checked against these objects), and
what ntre-zoo cannot reproduce is listed in ``unreproduced``. ``get_protocol(name)`` returns one;
``protocol.data_config(config)`` applies it to a :class:`~ntre_zoo.data.DataConfig`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.builder import DataConfig
from ..data.episodes import SCORING_MODES, EpisodeDataset
from ..data.index import MIN_PIXELS
from ..data.pascal5i import is_synthetic_tree
from ..data.preprocessing import RESIZE_MODES
from ..data.reference_lists import resolve_list
from ..data.splits import COCO_SPLITS

__all__ = ["DEFAULT_PROTOCOL", "PROTOCOLS", "BenchmarkProtocol", "Protocol", "get_protocol"]


@dataclass(frozen=True)
class BenchmarkProtocol:
    """A protocol's settings for one benchmark.

    Args:
        episodes: evaluation episodes per seed.
        reference_canvas: the canvas side the repository evaluates at (its training crop), for the record;
            ntre-zoo evaluates at the model's ``config.test_size``, the size the model was trained for.
        train_list, val_list: shipped image lists (``ntre_zoo.data.reference_lists``); None: the data tree's
            own lists (every annotated image for COCO-20i).
    """

    episodes: int
    reference_canvas: int | None = None
    train_list: str | None = None
    val_list: str | None = None

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes!r}.")


@dataclass(frozen=True)
class Protocol:
    """One repository's evaluation (and training-data) protocol.

    Args:
        name: ``ntrenet``, ``pfenet``, ``hsnet`` or ``bam``.
        source: the repository and commit its values were read from.
        pascal5i, coco20i: the per-benchmark settings (a ``folder`` dataset takes PASCAL-5i's episode count
            and no lists).
        seeds: the seeds the repository evaluates; results are averaged over them. ntre-zoo derives each
            episode from ``(seed, index)``, so a seed names the same episodes in every ntre-zoo run but not
            the repository's.
        resize: ``long_side`` (long side to the canvas, floored to x8, top-left) or ``square`` (stretched).
        scoring: ``original`` (logits upsampled to the label's own size) or ``canvas`` (the label resized
            onto the canvas).
        coco_split: the COCO-20i fold layout (``interleaved`` is PFENet's ``use_split_coco``).
        min_pixels: a class counts in an image with at least this many pixels.
        train_excludes_novel: training lists leave out images that show any test class (BAM).
        unreproduced: what the repository does that ntre-zoo does not, in words.
    """

    name: str
    source: str
    pascal5i: BenchmarkProtocol
    coco20i: BenchmarkProtocol
    seeds: tuple[int, ...] = (321,)
    resize: str = "long_side"
    scoring: str = "original"
    coco_split: str = "interleaved"
    min_pixels: int = MIN_PIXELS
    train_excludes_novel: bool = False
    unreproduced: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError(f"Protocol {self.name!r} needs at least one seed.")
        for field, value, allowed in (
            ("resize", self.resize, RESIZE_MODES),
            ("scoring", self.scoring, SCORING_MODES),
            ("coco_split", self.coco_split, COCO_SPLITS),
        ):
            if value not in allowed:
                raise ValueError(f"Protocol {field} must be one of {', '.join(allowed)}, got {value!r}.")

    def benchmark(self, dataset: str) -> BenchmarkProtocol:
        """The settings for ``pascal5i``, ``coco20i`` or ``folder`` (PASCAL-5i's episode count, no lists)."""
        if dataset == "pascal5i":
            return self.pascal5i
        if dataset == "coco20i":
            return self.coco20i
        if dataset == "folder":
            return BenchmarkProtocol(episodes=self.pascal5i.episodes)
        raise ValueError(f"Unknown dataset {dataset!r}. Expected one of: pascal5i, coco20i, folder.")

    def episodes(self, dataset: str) -> int:
        """Evaluation episodes per seed on ``dataset``."""
        return self.benchmark(dataset).episodes

    def lists(self, dataset: str, root: str | Path) -> tuple[str | None, str | None]:
        """The ``(train_list, val_list)`` for ``dataset`` at ``root``: none on the synthetic benchmark, whose
        own lists stand in for PASCAL VOC's ids."""
        settings = self.benchmark(dataset)
        if dataset == "pascal5i" and is_synthetic_tree(root):
            return None, None
        return settings.train_list, settings.val_list

    def data_config(self, config: DataConfig) -> DataConfig:
        """``config`` with this protocol's lists, resize, scoring, COCO split, pixel threshold and training
        filter (dataset, root, fold, shot, augmentation and normalisation are kept)."""
        train_list, val_list = self.lists(config.dataset, config.root)
        return dataclasses.replace(
            config,
            train_list=train_list,
            val_list=val_list,
            resize=self.resize,
            scoring=self.scoring,
            coco_split=self.coco_split,
            min_pixels=self.min_pixels,
            exclude_novel=self.train_excludes_novel,
        )

    def check_dataset(self, dataset: EpisodeDataset) -> None:
        """Refuse an evaluation dataset built with other lists or preprocessing than this protocol's.

        Raises:
            ValueError: naming every setting that differs and how to build the dataset instead.
        """
        wanted = self.lists(dataset.source.benchmark, dataset.source.root)[1]
        found = {
            "resize": (dataset.resize, self.resize),
            "scoring": (dataset.scoring, self.scoring),
            "min_pixels": (dataset.min_pixels, self.min_pixels),
            "val_list": (dataset.source.list_file, resolve_list(wanted) if wanted else dataset.source.list_file),
        }
        wrong = [f"{key}={have!r} (protocol: {want!r})" for key, (have, want) in found.items() if have != want]
        if wrong:
            raise ValueError(
                f"The dataset was not built for protocol {self.name!r}: {'; '.join(wrong)}. Pass evaluate() a "
                "DataConfig instead (it builds the dataset under the protocol), or build it from "
                f"get_protocol({self.name!r}).data_config(config)."
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples become lists)."""
        return dataclasses.asdict(self)


NTRENET = Protocol(
    name="ntrenet",
    source="LIUYUANWEI98/NERTNet@1fe13ad (train.py validate, config/pascal_split0_resnet50.yaml); paper section 4.1",
    pascal5i=BenchmarkProtocol(
        episodes=1000, reference_canvas=473, train_list="voc_sbd_merge_noduplicate", val_list="voc2012_val"
    ),
    coco20i=BenchmarkProtocol(episodes=4000, reference_canvas=None),
    unreproduced=(
        "NTRENet's code evaluates 1000 PASCAL-5i episodes but 20000 COCO-20i ones (train.py validate); the "
        "protocol follows the paper's 4000 on COCO-20i.",
        "The reference breaks one episode late (N+1 episodes); ntre-zoo runs exactly N.",
        "NTRENet ships no COCO-20i config or lists; COCO-20i uses every annotated COCO 2014 image and PFENet's "
        "use_split_coco layout.",
    ),
)

PFENET = Protocol(
    name="pfenet",
    source="dvlab-research/PFENet@a505675 (test.py, util/dataset.py, util/transform.py, config/, README.md)",
    pascal5i=BenchmarkProtocol(
        episodes=5000, reference_canvas=473, train_list="voc_sbd_merge_noduplicate", val_list="voc2012_val"
    ),
    coco20i=BenchmarkProtocol(episodes=20000, reference_canvas=641),
    unreproduced=(
        "PFENet breaks one episode late (5001 and 20001 episodes are scored); ntre-zoo runs exactly 5000 and 20000.",
        "PFENet's COCO-20i lists (82,081 train, 40,137 val, README) are not in its repository; ntre-zoo uses "
        "every annotated COCO 2014 image.",
    ),
)

HSNET = Protocol(
    name="hsnet",
    source="juhongm999/hsnet@6b1bc12 (test.py, data/pascal.py, data/coco.py, data/dataset.py, common/)",
    pascal5i=BenchmarkProtocol(episodes=1000, reference_canvas=400, val_list="voc2012_val"),
    coco20i=BenchmarkProtocol(episodes=1000, reference_canvas=400),
    seeds=(0,),
    resize="square",
    scoring="canvas",
    unreproduced=(
        "HSNet reads fixed (image, class) pairs from data/splits/pascal/{trn,val}/fold*.txt and "
        "data/splits/coco/{trn,val}/fold*.pkl; ntre-zoo draws the class per episode from VOC val.txt "
        "(which holds all 1,381 images of HSNet's PASCAL val lists) and trains on the tree's own list.",
        "On COCO-20i HSNet draws the class uniformly, then the query; ntre-zoo cycles the val list.",
        "HSNet's lists are precomputed; whether they apply a pixel threshold cannot be determined from the "
        "repository, so ntre-zoo keeps 2048.",
        "HSNet predicts K-shot by voting over K one-shot masks (predict_mask_nshot), a model choice that "
        "NTRENet does not share.",
        "HSNet does not keep K supports distinct (each is drawn independently, only the query is excluded).",
    ),
)

BAM = Protocol(
    name="bam",
    source="chunbolang/BAM@c0f935c (test.py, util/dataset.py, config/pascal, config/coco)",
    pascal5i=BenchmarkProtocol(
        episodes=1000, reference_canvas=473, train_list="voc_sbd_merge_noduplicate", val_list="voc2012_val"
    ),
    coco20i=BenchmarkProtocol(episodes=1000, reference_canvas=641),
    seeds=(510, 365, 382, 322, 988),
    train_excludes_novel=True,
    unreproduced=(
        "BAM's list files (lists/, fss_list/) are downloaded separately, not in its repository: that they "
        "equal PFENet's voc_sbd_merge_noduplicate.txt and val.txt, named in its configs, cannot be verified.",
        "BAM's test.py prints both the best and the mean over its five seeds; which one its paper reports "
        "cannot be determined from the repository. ntre-zoo reports the mean and standard deviation.",
    ),
)

#: Every protocol by name.
PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (NTRENET, PFENET, HSNET, BAM)}
DEFAULT_PROTOCOL = "ntrenet"


def get_protocol(name: str | Protocol) -> Protocol:
    """The protocol called ``name`` (a :class:`Protocol` is returned as is).

    Raises:
        ValueError: an unknown name.
    """
    if isinstance(name, Protocol):
        return name
    if name not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {name!r}. Expected one of: {', '.join(PROTOCOLS)}.")
    return PROTOCOLS[name]
