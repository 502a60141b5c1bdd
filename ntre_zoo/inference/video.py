"""Segment a video from one annotated support set: ``predict_video`` (one class) and ``segment_video`` (several),
streaming, and ``write_video_results`` to save what they yield as mask and overlay videos.

The supports are encoded once (:func:`~ntre_zoo.inference.predict.encode_support`,
:func:`~ntre_zoo.inference.segment.encode_supports`); each batch of ``batch_size`` frames then pays for the query
pass alone, through ``predict`` / ``segment`` with the encoded supports. Nothing holds the whole clip: a reader
thread decodes (or pulls from the caller's iterable) at most ``batch_size + 2`` frames ahead of the model, and
``write_video_results`` draws and encodes in a writer thread behind a queue of the same size, so decoding and
encoding overlap the model instead of adding to it.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model.config import check_int
from ..model.types import FewShotSegmenter, SupportFeatures
from .image_io import MAX_PIXELS, _check_pixels, check_max_pixels, load_image
from .predict import Prediction, encode_support, predict
from .segment import Segmentation, encode_supports, segment
from .stream import prefetch
from .video_io import (
    Frame,
    PngFramesWriter,
    VideoWriter,
    mask_video_writer,
    overlay_video_writer,
    read_video,
)
from .visualize import overlay

__all__ = ["MASK_FORMATS", "FrameResult", "predict_video", "segment_video", "write_video_results"]

#: How ``write_video_results`` stores the label maps: a lossless FFV1 video, or a folder of PNG frames.
MASK_FORMATS = ("ffv1", "png")
#: Frames the reader decodes beyond the batch the model is on (and results the writer queues).
_READ_AHEAD = 2


@dataclass(frozen=True, eq=False)
class FrameResult:
    """One frame's result.

    Attributes:
        index: the frame's position in the clip, from 0.
        time: seconds from the start (``pts * time_base``); None for a frame without timestamp (an iterable).
        result: ``predict_video``: the ``uint8 (H, W)`` {0, 1} mask, or with ``return_details`` a
            :class:`~ntre_zoo.inference.predict.Prediction`; ``segment_video``: a
            :class:`~ntre_zoo.inference.segment.Segmentation`.
        image: the frame, ``uint8 (H, W, 3)`` RGB (the decoded array itself: no copy is made).
        pts, time_base: the frame's timestamp in the source's units (None without), which writers keep.
    """

    index: int
    time: float | None
    result: np.ndarray | Prediction | Segmentation
    image: np.ndarray
    pts: int | None = None
    time_base: Fraction | None = None

    @property
    def labels(self) -> np.ndarray:
        """``uint8 (H, W)``: the mask (0/1) or the label map (0 = background, ``i`` = the i-th class)."""
        if isinstance(self.result, Prediction):
            return self.result.mask
        if isinstance(self.result, Segmentation):
            return self.result.label_map
        return self.result


def _is_path(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike))


def _as_rgb(value: Any, name: str, max_pixels: int | None) -> np.ndarray:
    """A frame in any form ``predict`` takes -> ``uint8 (H, W, 3)`` (an array of that form as it is)."""
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 3 and value.shape[2] == 3:
        _check_pixels(value.shape[0], value.shape[1], name, max_pixels)
        return value
    return (load_image(value, name, max_pixels) * 255).round().byte().permute(1, 2, 0).numpy()


def _iterable_frames(source: Iterable[Any], max_pixels: int | None) -> Iterator[Frame]:
    count = 0
    for count, value in enumerate(source, start=1):
        yield Frame(count - 1, _as_rgb(value, f"source frame {count - 1}", max_pixels))
    if not count:
        raise ValueError("source yielded no frame; pass a video file or an iterable of at least one image.")


def _frames(source: Any, max_pixels: int | None) -> Iterator[Frame]:
    """The frames of a video file (decoded lazily) or of an iterable of images (numpy, PIL, tensors, paths)."""
    if _is_path(source):
        return read_video(source, max_pixels)
    if isinstance(source, (np.ndarray, torch.Tensor)) or not isinstance(source, Iterable):
        raise TypeError(
            f"source must be a video file path or an iterable of frames (numpy HxWx3 uint8, PIL images, 3xHxW "
            f"tensors), got {type(source).__name__}; for a clip held as one array, pass list(array)."
        )
    return _iterable_frames(source, max_pixels)


_END = object()


def _batched(
    frames: Iterator[Frame], batch_size: int, run: Callable[[list[np.ndarray]], list[Any]]
) -> Iterator[FrameResult]:
    """``run`` on each batch of ``batch_size`` frames (read ahead in a thread), one :class:`FrameResult` per frame."""
    ahead = prefetch(frames, batch_size + _READ_AHEAD)
    try:
        while batch := list(islice(ahead, batch_size)):
            for frame, result in zip(batch, run([f.image for f in batch]), strict=True):
                yield FrameResult(frame.index, frame.time, result, frame.image, frame.pts, frame.time_base)
    finally:
        ahead.close()


def predict_video(
    model: FewShotSegmenter,
    support_imgs: Any,
    support_masks: Any = None,
    source: Any = None,
    *,
    batch_size: int = 1,
    precision: str = "auto",
    device: str | torch.device | None = None,
    return_details: bool = False,
    mask_threshold: float | None = None,
    max_pixels: int | None = MAX_PIXELS,
) -> Iterator[FrameResult]:
    """Segment every frame of a video from K annotated supports, streaming.

    The supports are encoded once; frames are decoded lazily and segmented ``batch_size`` at a time, each by
    ``predict`` with the encoded support, so frame ``i``'s mask is ``predict(model, support, frame_i)``'s.

    Args:
        model: an :class:`~ntre_zoo.NTRENet`.
        support_imgs, support_masks: the supports as ``predict`` takes them (one image or K, masks or weak
            annotations), or a :class:`SupportFeatures` from ``model.encode_support`` followed by ``source``.
        source: a video file path (decoded with PyAV: ``pip install ntre-zoo[video]``), or any iterable of frames
            (numpy ``HxWx3`` uint8, PIL images, ``3xHxW`` tensors, image paths), e.g. a generator reading a webcam.
        batch_size: frames per forward pass.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto``, as in ``predict``.
        device: run there (the model is moved); default: where the model is.
        return_details: each result is a :class:`Prediction` (probability, BG and DO maps) instead of a mask.
        mask_threshold: binarise soft support masks, as in ``predict``.
        max_pixels: refuse frames (and supports) of more pixels, as ``predict`` refuses images (None: no cap).

    Returns:
        An iterator of :class:`FrameResult`, in frame order. Supports, arguments and the file's header are checked
        now; frames are read as the iterator is consumed.

    Raises:
        ValueError, TypeError, FileNotFoundError: a bad argument or support now; a damaged, truncated or empty
            clip, or a frame that is not an image, while iterating (naming the file or the frame).
        ImportError: a video file without PyAV installed.
    """
    batch_size = check_int(batch_size, "batch_size", 1)
    max_pixels = check_max_pixels(max_pixels)
    if isinstance(support_imgs, SupportFeatures):
        if source is not None and support_masks is not None:
            raise ValueError("With a precomputed support, call predict_video(model, support, source).")
        support, source = support_imgs, support_masks if source is None else source
    else:
        if support_masks is None:
            raise ValueError("support_masks is required: pass one mask per support image.")
        support = encode_support(
            model,
            support_imgs,
            support_masks,
            device=device,
            precision=precision,
            mask_threshold=mask_threshold,
            max_pixels=max_pixels,
        )
        device = None  # the model is there now; moving it again per batch would only cost time
    if source is None:
        raise ValueError("source is required: pass a video file path or an iterable of frames.")
    frames = _frames(source, max_pixels)

    def run(images: list[np.ndarray]) -> list[Any]:
        results = predict(
            model,
            support,
            images,
            batch_size=len(images),
            device=device,
            precision=precision,
            return_details=return_details,
            max_pixels=max_pixels,
        )
        return list(results)  # type: ignore[arg-type]

    return _batched(frames, batch_size, run)


def segment_video(
    model: FewShotSegmenter,
    source: Any,
    supports: Mapping[str, Any],
    *,
    threshold: float = 0.5,
    batch_size: int = 1,
    precision: str = "auto",
    device: str | torch.device | None = None,
    mask_threshold: float | None = None,
    max_pixels: int | None = MAX_PIXELS,
) -> Iterator[FrameResult]:
    """Segment several classes in every frame of a video, streaming: ``segment`` on each batch of frames, with
    every class's supports encoded once (:func:`~ntre_zoo.inference.segment.encode_supports`).

    Args:
        model: an :class:`~ntre_zoo.NTRENet`.
        source: a video file path or an iterable of frames, as in :func:`predict_video`.
        supports: ``{name: (images, annotations)}`` or ``{name: SupportFeatures}``, as in ``segment``.
        threshold: a class needs a probability above this to claim a pixel.
        batch_size, precision, device, mask_threshold, max_pixels: as in :func:`predict_video`.

    Returns:
        An iterator of :class:`FrameResult` whose ``result`` is the frame's :class:`Segmentation`.

    Raises:
        As :func:`predict_video`; support errors name the class.
    """
    batch_size = check_int(batch_size, "batch_size", 1)
    max_pixels = check_max_pixels(max_pixels)
    encoded = encode_supports(
        model, supports, device=device, precision=precision, mask_threshold=mask_threshold, max_pixels=max_pixels
    )
    frames = _frames(source, max_pixels)

    def run(images: list[np.ndarray]) -> list[Any]:
        results = segment(
            model,
            images,
            encoded,
            threshold=threshold,
            precision=precision,
            batch_size=len(images),
            max_pixels=max_pixels,
        )
        return list(results)  # type: ignore[arg-type]

    return _batched(frames, batch_size, run)


Writer = VideoWriter | PngFramesWriter


def _open_writers(
    first: FrameResult,
    masks: Path | None,
    mask_format: str,
    overlay_path: Path | None,
    frame_masks: Path | None,
    rate: Fraction | int | None,
) -> list[tuple[Writer, bool]]:
    """The writers of the outputs asked for, sized by the first frame: ``(writer, takes the overlay)`` pairs."""
    height, width = first.image.shape[:2]
    writers: list[tuple[Writer, bool]] = []
    try:
        if masks is not None and mask_format == "ffv1":
            writers.append((mask_video_writer(masks, width, height, rate=rate, time_base=first.time_base), False))
        elif masks is not None:
            writers.append((PngFramesWriter(masks), False))
        if overlay_path is not None:
            writers.append(
                (overlay_video_writer(overlay_path, width, height, rate=rate, time_base=first.time_base), True)
            )
        if frame_masks is not None:
            writers.append((PngFramesWriter(frame_masks), False))
    except BaseException:
        for writer, _ in writers:
            writer.abort()
        raise
    return writers


def write_video_results(
    results: Iterable[FrameResult],
    *,
    masks: str | os.PathLike[str] | None = None,
    mask_format: str = "ffv1",
    overlay: str | os.PathLike[str] | None = None,
    frame_masks: str | os.PathLike[str] | None = None,
    rate: Fraction | int | None = None,
    legend: bool = False,
) -> int:
    """Save what :func:`predict_video` / :func:`segment_video` yield, drawing and encoding in a writer thread while
    the model works on the next frames.

    Every output is filled under a temporary name and moved into place once the last frame is written; an error
    (a truncated clip, a full disk) or a kill leaves nothing under the final names.

    Args:
        results: the :class:`FrameResult` iterator (consumed here).
        masks: the label maps: an FFV1 Matroska video (``mask_format="ffv1"``, ``.mkv``: values exactly, 8-bit
            grey) or a folder of PNG frames ``000000.png``, ... (``"png"``).
        mask_format: ``ffv1`` or ``png``.
        overlay: an overlay video (``.mp4``, H.264 where available): each frame with its mask drawn on it.
        frame_masks: also a folder of per-frame PNG masks ``000000.png``, ....
        rate: the nominal frame rate (frames per second) of the videos; frames keep their own timestamps when they
            have them. Default: 25 for frames without timestamps, else the one of the timestamps' unit.
        legend: name the classes on the overlay (a ``segment_video`` result).

    Returns:
        The number of frames written.

    Raises:
        ValueError: an unknown ``mask_format``, or no output asked for; errors of ``results`` pass through.
    """
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}.")
    paths = [None if p is None else Path(p) for p in (masks, overlay, frame_masks)]
    if all(p is None for p in paths):
        raise ValueError("write_video_results: pass masks=, overlay= and/or frame_masks= (nothing would be written).")
    iterator = iter(results)
    first = next(iterator, None)
    if first is None:
        raise ValueError("results yielded no frame; nothing was written.")
    writers = _open_writers(first, paths[0], mask_format, paths[1], paths[2], rate)
    pending = _WriterThread(writers, legend)
    try:
        pending.put(first)
        for result in iterator:
            pending.put(result)
        pending.finish()
    except BaseException:
        pending.stop()
        for writer, _ in writers:
            writer.abort()
        raise
    for writer, _ in writers:
        writer.close()
    return pending.count


class _WriterThread:
    """Draws overlays and encodes frames in a background thread, behind a bounded queue."""

    def __init__(self, writers: list[tuple[Writer, bool]], legend: bool) -> None:
        self._writers, self._legend = writers, legend
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=_READ_AHEAD + 2)
        self._error: BaseException | None = None
        self.count = 0
        self._thread = threading.Thread(target=self._work, name="ntre-zoo video writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (item := self._queue.get()) is not _END:
            if self._error is not None:
                continue  # drain, so the producer never blocks on a dead writer
            try:
                for writer, drawn in self._writers:
                    picture = overlay(item.image, item.result, legend=self._legend) if drawn else None
                    writer.write(item.labels if picture is None else np.asarray(picture), item.pts)
                self.count += 1
            except BaseException as error:  # raised by the producer at its next put or finish
                self._error = error

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: FrameResult) -> None:
        self._check()
        self._queue.put(item)

    def finish(self) -> None:
        self._queue.put(_END)
        self._thread.join()
        self._check()

    def stop(self) -> None:
        self._error = self._error or RuntimeError("stopped")
        self._queue.put(_END)
        self._thread.join()
