"""Few-shot data: benchmark loaders (PASCAL-5i, COCO-20i, folders), episodes and a synthetic benchmark."""
from .synthetic import SYNTHETIC_CLASSES, make_synthetic_voc, render_scene, synthetic_episode

__all__ = ["SYNTHETIC_CLASSES", "make_synthetic_voc", "render_scene", "synthetic_episode"]
