"""The inference wing: ``predict``, ``encode_support`` and multi-class ``segment`` on images in every form
(``iter_segment`` over a stream of them, reading ahead), weak support annotations (boxes, points, scribbles), the
precision choice, pictures of results, reading images, and videos (``predict_video``, ``segment_video``: streaming,
the supports encoded once)."""

from . import visualize
from .annotations import Box, Points, Scribble, annotation_from_mask, support_mask
from .image_io import as_list, load_image, load_mask
from .precision import PRECISIONS, autocast_dtype, bf16_pays, cpu_capabilities, native_bf16, resolve_precision
from .predict import Prediction, encode_support, predict, prepare_image
from .segment import Segmentation, encode_supports, resolve_overlaps, segment
from .stream import iter_segment
from .video import FrameResult, predict_video, segment_video, write_video_results

__all__ = [
    "PRECISIONS",
    "Box",
    "FrameResult",
    "Points",
    "Prediction",
    "Scribble",
    "Segmentation",
    "annotation_from_mask",
    "as_list",
    "autocast_dtype",
    "bf16_pays",
    "cpu_capabilities",
    "encode_support",
    "encode_supports",
    "iter_segment",
    "load_image",
    "load_mask",
    "native_bf16",
    "predict",
    "predict_video",
    "prepare_image",
    "resolve_overlaps",
    "resolve_precision",
    "segment",
    "segment_video",
    "support_mask",
    "visualize",
    "write_video_results",
]
