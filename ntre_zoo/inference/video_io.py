"""Reading and writing video files with PyAV (``pip install ntre-zoo[video]``; ``av`` is imported only when a video
is read or written, so the package works without it).

Reading decodes lazily, one frame at a time, in display order, with each frame's timestamp (``pts`` in the
stream's ``time_base``). A missing file, a file that is not a video, an image, a clip without a frame and a
truncated or damaged clip are refused with errors that name the file and the fix, never PyAV's own.

Writing encodes frame by frame under a temporary name beside the target (:class:`~ntre_zoo._atomic.AtomicTarget`)
and moves the file into place at :meth:`VideoWriter.close`: a lossless mask video (FFV1 in Matroska, 8-bit grey,
label values exactly), an overlay video (H.264 by libx264 where PyAV has it, else MPEG-4 Part 2), or a folder of
PNG frames. Each frame keeps its source timestamp, so a variable-frame-rate clip keeps its timing.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, TypeVar

import numpy as np

from .._atomic import AtomicTarget
from .image_io import MAX_PIXELS, _check_pixels, check_max_pixels
from .visualize import label_image

__all__ = [
    "DEFAULT_RATE",
    "VIDEO_SUFFIXES",
    "Frame",
    "PngFramesWriter",
    "VideoInfo",
    "VideoWriter",
    "is_video",
    "mask_video_writer",
    "overlay_video_writer",
    "probe_video",
    "read_video",
]
_W = TypeVar("_W", bound="_Written")

#: Frames per second written for frames that carry no timestamp (an iterable of arrays, a webcam).
DEFAULT_RATE = Fraction(25)
#: Files read as videos (by suffix, case-insensitive): ``ntre-zoo predict``'s and the app's video queries.
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
#: A clip whose last frame ends this many frame intervals (plus 10 ms) before the duration its header declares
#: was cut short.
_TRUNCATION_FRAMES = 1.5


def _av() -> ModuleType:
    """The ``av`` module, or an ImportError that says how to install it."""
    try:
        import av
    except ImportError as error:
        raise ImportError(
            f"Reading and writing video needs PyAV, which is not installed ({error}); install it with "
            "pip install ntre-zoo[video] (or pip install av)."
        ) from None
    return av


def is_video(path: str | Path) -> bool:
    """Whether a path names a video file (its suffix is one of :data:`VIDEO_SUFFIXES`)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    """What a video file's header says about its first video stream.

    Attributes:
        path: the file.
        width, height: frame size in pixels.
        rate: the average frame rate (frames per second), None where the header gives none.
        time_base: the unit of the frames' ``pts`` (seconds).
        frames: the frame count the header declares, None where it declares none (Matroska, WebM).
        duration: seconds the header declares for the stream, None where unknown.
        codec: the decoder's name (``h264``, ``ffv1``, ...).
    """

    path: Path
    width: int
    height: int
    rate: Fraction | None
    time_base: Fraction | None
    frames: int | None
    duration: float | None
    codec: str


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame: ``image`` is ``uint8 (H, W, 3)`` RGB; ``pts`` in units of ``time_base`` (both None for a
    frame without timestamp)."""

    index: int
    image: np.ndarray
    pts: int | None = None
    time_base: Fraction | None = None

    @property
    def time(self) -> float | None:
        """Seconds from the stream's start (``pts * time_base``), None without timestamp."""
        return None if self.pts is None or self.time_base is None else float(self.pts * self.time_base)


def _open(path: Path) -> Any:
    """An open PyAV input container for ``path`` with one video stream or more, or a named error."""
    av = _av()
    if not path.is_file():
        what = "is a directory, not a video file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"video {str(path)!r} {what}; pass the path of a video file (.mp4, .mkv, .webm, ...).")
    try:
        container = av.open(str(path), mode="r")
    except PermissionError:
        raise PermissionError(
            f"video {str(path)!r} cannot be read (permission denied); check its permissions."
        ) from None
    except av.error.FFmpegError as error:
        raise ValueError(
            f"video {str(path)!r} is not a video PyAV can read ({error.strerror or error}): the file is damaged, "
            "truncated before its index, or another kind of file. Pass a video file (.mp4, .mkv, .webm, ...), or "
            "re-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4)."
        ) from None
    fmt = container.format.name
    if not container.streams.video or fmt == "image2" or fmt.endswith("_pipe"):
        what = f"an image ({fmt})" if container.streams.video else "a file without a video stream"
        container.close()
        raise ValueError(
            f"video {str(path)!r} is {what}, not a video; segment images with predict, videos with predict_video."
        )
    return container


def probe_video(path: str | Path, max_pixels: int | None = MAX_PIXELS) -> VideoInfo:
    """Read a video's header (nothing is decoded) and check its frame size against ``max_pixels``.

    Raises:
        ImportError: PyAV is not installed.
        FileNotFoundError: no such file.
        ValueError: not a video, an image, or frames of more than ``max_pixels`` pixels.
    """
    path = Path(path)
    max_pixels = check_max_pixels(max_pixels)
    with _open(path) as container:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_pixels(height, width, f"video {str(path)!r}: each frame", max_pixels)
        time_base = Fraction(stream.time_base) if stream.time_base else None
        if stream.duration is not None and time_base is not None:
            duration: float | None = float(stream.duration * time_base)
        elif container.duration is not None and len(container.streams) == 1:
            duration = container.duration / 1_000_000  # AV_TIME_BASE; only a lone stream's is the video's own
        else:
            duration = None
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            path=path,
            width=width,
            height=height,
            rate=Fraction(rate) if rate else None,
            time_base=time_base,
            frames=stream.frames or None,
            duration=duration,
            codec=stream.codec_context.name,
        )


def read_video(path: str | Path, max_pixels: int | None = MAX_PIXELS) -> Iterator[Frame]:
    """Decode a video lazily: an iterator of :class:`Frame` in display order, one decoded frame in memory at a time.

    The header is checked now (:func:`probe_video`); decoding starts at the first ``next``.

    Raises:
        ImportError, FileNotFoundError, ValueError: as :func:`probe_video`, now; while iterating, ValueError for a
            clip without a frame, or one that is damaged or truncated (fewer frames, or an earlier end, than its
            header declares), naming the file and the last frame read.
    """
    return _decode(probe_video(path, max_pixels))


def _decode(info: VideoInfo) -> Iterator[Frame]:
    av = _av()
    name = str(info.path)
    index, last = 0, None
    with _open(info.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for decoded in container.decode(stream):
                last = Frame(index, decoded.to_ndarray(format="rgb24"), decoded.pts, info.time_base)
                yield last
                index += 1
        except av.error.FFmpegError as error:
            raise ValueError(
                f"video {name!r} is damaged or truncated after frame {index} ({error.strerror or error}); "
                "re-encode or re-download it."
            ) from None
    if last is None:
        raise ValueError(f"video {name!r} holds no frame (an empty or truncated clip); pass a clip with frames.")
    _check_complete(info, last)


def _check_complete(info: VideoInfo, last: Frame) -> None:
    """Refuse a clip that stopped before the frame count or the end its header declares (a cut-off download)."""
    name, count = str(info.path), last.index + 1
    if info.frames is not None and count < info.frames:
        raise ValueError(
            f"video {name!r} is truncated: its header declares {info.frames} frames but only {count} could be "
            "decoded; re-encode or re-download it."
        )
    if info.duration is None or info.rate is None or last.time is None:
        return
    end = last.time + 1 / info.rate
    if end + _TRUNCATION_FRAMES / info.rate + 0.01 < info.duration:
        raise ValueError(
            f"video {name!r} is truncated: its header declares {info.duration:.3f} s but its frames end at "
            f"{float(end):.3f} s (frame {last.index}); re-encode or re-download it."
        )


class _Written(abc.ABC):
    """A context manager over ``close`` (on success: the output appears under its name) and ``abort`` (on an
    error: nothing appears), for the writers below."""

    @abc.abstractmethod
    def close(self) -> Path:
        """Move the finished output into place; returns its path."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Remove the partial output."""

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


class VideoWriter(_Written):
    """Frames encoded into a video file as they come, under a temporary name until :meth:`close`.

    Use it as a context manager (an exception discards the file) or call :meth:`close` / :meth:`abort`.
    Frames are written at their ``pts`` in units of ``time_base`` (strictly increasing; a repeated one is moved one
    tick on), or, without, one ``1 / rate`` apart.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        codec: str,
        pix_fmt: str,
        frame_format: str,
        width: int,
        height: int,
        rate: Fraction | int | None = None,
        time_base: Fraction | None = None,
        container_format: str | None = None,
        options: dict[str, str] | None = None,
    ) -> None:
        av = _av()
        self.rate = Fraction(rate) if rate else DEFAULT_RATE
        self.time_base = time_base or 1 / self.rate
        self.frame_format = frame_format
        self.size = (height, width)
        self.frames = 0
        self._last_pts: int | None = None
        self._target = AtomicTarget(path)
        self._container = av.open(str(self._target.tmp), mode="w", format=container_format)
        try:
            stream = self._container.add_stream(codec, rate=self.rate, options=options or {})
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            stream.time_base = self.time_base
            stream.codec_context.time_base = self.time_base
        except BaseException:
            self.abort()
            raise
        self._stream = stream

    @property
    def path(self) -> Path:
        """The final file."""
        return self._target.path

    def write(self, array: np.ndarray, pts: int | None = None) -> None:
        """Encode one frame: ``uint8 (H, W)`` for grey, ``(H, W, 3)`` for RGB, at ``pts`` (None: the next tick)."""
        av = _av()
        if tuple(array.shape[:2]) != self.size:
            raise ValueError(
                f"frame {self.frames} is {array.shape[0]}x{array.shape[1]} but {self.path} is "
                f"{self.size[0]}x{self.size[1]} (H x W); every frame of a video has one size."
            )
        if pts is None:
            pts = round(self.frames / (self.rate * self.time_base))
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format=self.frame_format)
        frame.pts, frame.time_base = pts, self.time_base
        self._container.mux(self._stream.encode(frame))
        self._last_pts = pts
        self.frames += 1

    def close(self) -> Path:
        """Flush the encoder, finish the file and move it into place; returns its path."""
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
        except BaseException:
            self.abort()
            raise
        return self._target.commit()

    def abort(self) -> None:
        """Stop and remove the partial file (nothing appears under the final name)."""
        try:
            self._container.close()
        except Exception:  # a half-open container may fail to close; the file goes anyway
            pass
        self._target.discard()


def mask_video_writer(
    path: str | Path, width: int, height: int, *, rate: Fraction | int | None = None, time_base: Fraction | None = None
) -> VideoWriter:
    """A lossless mask video: FFV1, 8-bit grey, in Matroska (``.mkv``); a frame decodes to exactly the ``uint8
    (H, W)`` labels written (0/1 masks, or label maps)."""
    return VideoWriter(
        path,
        codec="ffv1",
        pix_fmt="gray",
        frame_format="gray",
        width=width,
        height=height,
        rate=rate,
        time_base=time_base,
        container_format="matroska",
    )


def overlay_video_writer(
    path: str | Path, width: int, height: int, *, rate: Fraction | int | None = None, time_base: Fraction | None = None
) -> VideoWriter:
    """An RGB video for people (``.mp4``): H.264 by libx264 (``crf`` 18, ``yuv420p``; ``yuv444p`` for an odd width
    or height, which 4:2:0 cannot hold) where PyAV has it, else MPEG-4 Part 2."""
    av = _av()
    even = width % 2 == 0 and height % 2 == 0
    if "libx264" in av.codecs_available:
        codec, pix_fmt, options = "libx264", "yuv420p" if even else "yuv444p", {"crf": "18", "preset": "veryfast"}
    else:
        codec, pix_fmt, options = "mpeg4", "yuv420p", {"qscale": "3"}
    return VideoWriter(
        path,
        codec=codec,
        pix_fmt=pix_fmt,
        frame_format="rgb24",
        width=width,
        height=height,
        rate=rate,
        time_base=time_base,
        container_format="mp4",
        options=options,
    )


class PngFramesWriter(_Written):
    """Label maps as a folder of palette PNGs ``000000.png``, ``000001.png``, ... (values kept exactly, shown in
    the label colours), filled under a temporary name and moved into place at :meth:`close`. Same interface as
    :class:`VideoWriter` (``pts`` is ignored: the file names give the order)."""

    def __init__(self, path: str | Path) -> None:
        self._target = AtomicTarget(path)
        self._target.tmp.mkdir()
        self.frames = 0

    @property
    def path(self) -> Path:
        """The final folder."""
        return self._target.path

    def write(self, array: np.ndarray, pts: int | None = None) -> None:
        """Save one ``uint8 (H, W)`` label map as the next PNG."""
        label_image(array).save(self._target.tmp / f"{self.frames:06d}.png", format="PNG")
        self.frames += 1

    def close(self) -> Path:
        """Move the finished folder into place (replacing a folder of the same name); returns its path."""
        return self._target.commit()

    def abort(self) -> None:
        """Remove the partial folder."""
        self._target.discard()
