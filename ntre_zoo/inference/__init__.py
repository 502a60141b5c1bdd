"""The inference wing: ``predict`` and ``encode_support`` on images in every form, and reading those images."""

from .image_io import as_list, load_image, load_mask
from .predict import Prediction, encode_support, predict, prepare_image

__all__ = ["Prediction", "as_list", "encode_support", "load_image", "load_mask", "predict", "prepare_image"]
