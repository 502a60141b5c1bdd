"""Few-shot data: benchmark loaders (PASCAL-5i, COCO-20i, folders), episodes and a synthetic benchmark."""

from .augment import AugmentConfig, augment_pair
from .builder import DATASETS, DataConfig, build_dataset, fold_split
from .coco20i import coco20i_source
from .episodes import EpisodeDataset, ImageSource, collate_episodes, episode_generator
from .folder import folder_source
from .index import MIN_PIXELS, build_class_lists, label_class_counts
from .pascal5i import pascal5i_source
from .splits import FoldSplit, coco20i_split, custom_split, pascal5i_split
from .synthetic import (
    SYNTHETIC_CLASSES,
    make_synthetic_voc,
    render_scene,
    synthetic_episode,
)

__all__ = [
    "DATASETS",
    "MIN_PIXELS",
    "SYNTHETIC_CLASSES",
    "AugmentConfig",
    "DataConfig",
    "EpisodeDataset",
    "FoldSplit",
    "ImageSource",
    "augment_pair",
    "build_class_lists",
    "build_dataset",
    "coco20i_source",
    "coco20i_split",
    "collate_episodes",
    "custom_split",
    "episode_generator",
    "fold_split",
    "folder_source",
    "label_class_counts",
    "make_synthetic_voc",
    "pascal5i_source",
    "pascal5i_split",
    "render_scene",
    "synthetic_episode",
]
