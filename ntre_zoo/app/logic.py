"""What the web app does, without Gradio: load models (once each), read the supports' annotations, predict,
draw the results and write the masks to download. :mod:`ntre_zoo.app.ui` wires these to the page."""

from __future__ import annotations

import json
import shutil
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from PIL import Image

from .._atomic import atomic_write
from ..data.synthetic import synthetic_episode
from ..demo import DEMO_MODEL
from ..inference import Prediction, encode_support, load_image, load_mask, predict
from ..inference.annotations import Box, Points, Scribble, components
from ..inference.image_io import MAX_PIXELS
from ..inference.segment import Segmentation, segment
from ..inference.video import FrameResult, predict_video, segment_video, write_video_results
from ..inference.video_io import VideoInfo, probe_video
from ..inference.visualize import heatmap, label_image, overlay
from ..model.types import FewShotSegmenter
from ..zoo.hub import from_pretrained
from ..zoo.manifest import load_manifest

__all__ = [
    "ANNOTATION_KINDS",
    "DEFAULT_CLASS",
    "MAX_VIDEO_FRAMES",
    "MODEL_CACHE_SIZE",
    "NOT_OFFERED",
    "AnnotatedSupport",
    "LoadedModel",
    "ModelCache",
    "VideoQueryResult",
    "check_video_query",
    "class_supports",
    "describe_support",
    "editor_support",
    "editor_value",
    "model_notice",
    "new_support_image",
    "read_query",
    "result_panels",
    "run_prediction",
    "segment_video_query",
    "status_line",
    "strokes_annotation",
    "write_examples",
    "write_masks",
    "zoo_choices",
]


@dataclass(frozen=True)
class LoadedModel:
    """A model the app can run, with what it was trained on (``synthetic``, ``pascal5i``, ...; None if unknown)."""

    name: str
    model: FewShotSegmenter
    trained_on: str | None

    @property
    def synthetic(self) -> bool:
        return self.trained_on == "synthetic"


def zoo_choices() -> list[str]:
    """The manifest's published names (those whose weights can be loaded), the shipped demo model first."""
    names = load_manifest().names(published_only=True)
    return sorted(names, key=lambda name: (name != DEMO_MODEL, name))


def _trained_on(name: str) -> str | None:
    """The dataset a zoo name or a saved model directory was trained on, from the manifest or its config.json."""
    manifest = load_manifest()
    if name in manifest.entries:
        return manifest.entries[name].dataset
    config = Path(name) / "config.json"
    if config.is_file():
        dataset = json.loads(config.read_text(encoding="utf-8")).get("metadata", {}).get("dataset")
        return str(dataset) if dataset else None
    return None


#: Models the app keeps loaded by default (least recently used first out; a model object given to the app stays).
MODEL_CACHE_SIZE = 4
#: What a visitor who asks for a model the server does not offer is told, whatever was asked: the same words for
#: a path that exists and one that does not, so that the page reveals nothing about the server's files.
NOT_OFFERED = (
    "This model is not offered here: choose one of the listed models. (The server's operator can offer more with "
    "`ntre-zoo app NAME_OR_DIR`.)"
)


def _canonical(name: str) -> str:
    """The cache key of a model name: a directory's resolved path (so that ``runs/x/best``, ``./runs/x/best/`` and
    ``~/...`` are one model), any other name (zoo name, ``hf-hub:`` id) as it is."""
    if name.startswith("hf-hub:"):
        return name
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


class ModelCache:
    """The models a web visitor may choose, loaded on first use and kept in a bounded cache; one app holds one.

    By default a visitor may choose only the zoo's published names (those ``from_pretrained`` loads) and the
    models the server was started with (``initial`` and ``offered``); any other name, path or ``hf-hub:`` id is
    refused with :data:`NOT_OFFERED`, before the file system or the network is touched. ``allow_any=True``
    lets visitors load anything ``from_pretrained`` accepts, server paths included (docs/deploy.md: only on a
    machine whose files and network the visitors may read).

    Args:
        initial: the model shown first: a name or directory for ``from_pretrained``, or a model object (then
            named ``label`` and always kept).
        label: the name a model object is listed under.
        offered: further names or directories visitors may choose.
        allow_any: let visitors choose any name, directory or ``hf-hub:`` id.
        capacity: the most models loaded by name kept at once (the least recently used goes first).
    """

    def __init__(
        self,
        initial: FewShotSegmenter | str | Path = DEMO_MODEL,
        label: str = "custom model",
        *,
        offered: Sequence[str | Path] = (),
        allow_any: bool = False,
        capacity: int = MODEL_CACHE_SIZE,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 model, got {capacity!r}.")
        self.allow_any, self.capacity = allow_any, capacity
        self._objects: dict[str, LoadedModel] = {}
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        if isinstance(initial, (str, Path)):
            self.default = str(initial)
        else:
            self.default = label
            self._objects[label] = LoadedModel(label, initial, None)
        given = [self.default, *(str(name) for name in offered)]
        self.choices = list(dict.fromkeys([*given, *zoo_choices()]))
        self._offered = set(self.choices)

    def get(self, name: str | None) -> LoadedModel:
        """The model called ``name`` (the default when empty), loading it on first use.

        Raises:
            PermissionError: a name that is not offered (:data:`NOT_OFFERED`, whatever the name).
            ValueError, FileNotFoundError, KeyError, RuntimeError: what ``from_pretrained`` raises.
        """
        name = (name or "").strip() or self.default
        if name in self._objects:
            return self._objects[name]
        if name not in self._offered and not self.allow_any:
            raise PermissionError(NOT_OFFERED)
        key = _canonical(name)
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = LoadedModel(name, from_pretrained(key), _trained_on(key))
                while len(self._loaded) > self.capacity:
                    self._loaded.popitem(last=False)
            self._loaded.move_to_end(key)
            return self._loaded[key]

    def loaded(self) -> list[str]:
        """The keys of the models loaded by name, least recently used first."""
        return list(self._loaded)


def model_notice(loaded: LoadedModel) -> str:
    """The page's line about the model (Markdown); plain about the synthetic demo model."""
    if loaded.synthetic:
        return (
            f"**Synthetic demo model.** `{loaded.name}` was trained on drawn shapes on textured backgrounds "
            "(ntre-zoo's synthetic benchmark), **not on photos**: it segments shapes like those of the examples "
            "below and does poorly on real pictures. Load real weights with `ntre-zoo app NAME_OR_DIR`."
        )
    trained = f", trained on {loaded.trained_on}" if loaded.trained_on else ""
    return f"Model: `{loaded.name}`{trained}."


#: The annotation kinds a support slot offers; the brush strokes become each by :func:`editor_support`'s rule.
ANNOTATION_KINDS = ("mask", "box", "points", "scribble")
#: The class name of a support whose name field is left empty.
DEFAULT_CLASS = "target"


@dataclass(frozen=True)
class AnnotatedSupport:
    """One support image ``(H, W, 3)`` uint8, its annotation (a ``uint8 (H, W)`` mask in {0, 1}, or a
    :class:`~ntre_zoo.Box`, :class:`~ntre_zoo.Points` or :class:`~ntre_zoo.Scribble`), and its class name."""

    image: np.ndarray
    annotation: np.ndarray | Box | Points | Scribble
    label: str = DEFAULT_CLASS


def _strokes(editor: dict[str, Any] | None, h: int, w: int, index: int) -> np.ndarray:
    """The brush strokes of the editor's layers (pixels with alpha > 0) as a bool ``(h, w)`` mask."""
    strokes = np.zeros((h, w), dtype=bool)
    for layer in [np.asarray(layer) for layer in (editor or {}).get("layers") or []]:
        if layer.ndim != 3 or layer.shape[2] != 4 or not (layer[..., 3] > 0).any():
            continue
        if layer.shape[:2] != (h, w):
            raise ValueError(
                f"Support {index + 1}: the strokes were drawn on a {layer.shape[0]}x{layer.shape[1]} canvas, "
                f"not on the {h}x{w} image (painted before it appeared?); clear them and paint again."
            )
        strokes |= layer[..., 3] > 0
    return strokes


def strokes_annotation(strokes: np.ndarray, kind: str) -> np.ndarray | Box | Points | Scribble:
    """Brush strokes (bool ``(H, W)``, at least one pixel) as an annotation of ``kind``: ``mask``: the painted
    pixels; ``box``: their bounding box; ``points``: one click at the centre (mean pixel, rounded) of each
    stroke (8-connected piece); ``scribble``: the strokes, dilated by the Scribble rule."""
    if kind == "mask":
        return strokes.astype(np.uint8)
    if kind == "box":
        ys, xs = np.nonzero(strokes)
        return Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    if kind == "points":
        centres = [np.nonzero(stroke) for stroke in components(strokes)]
        return Points([(round(float(xs.mean())), round(float(ys.mean()))) for ys, xs in centres])
    if kind == "scribble":
        return Scribble(strokes.astype(np.uint8))
    raise ValueError(f"The annotation kind must be one of {ANNOTATION_KINDS}, got {kind!r}.")


def editor_support(
    image: Any,
    editor: dict[str, Any] | None,
    mask_upload: Any,
    index: int,
    kind: str = "mask",
    label: str | None = DEFAULT_CLASS,
) -> AnnotatedSupport | None:
    """A support slot's image, its annotation and class. ``mask``: the uploaded mask when there is one, else
    the brush strokes painted over the image; ``box``, ``points``, ``scribble``: the strokes turned into that
    annotation (:func:`strokes_annotation`). None when the slot holds no image.

    Args:
        image: the support image ``(H, W, 3)`` uint8 (or anything ``predict`` takes), or None.
        editor: ``{"background": ..., "layers": [(H, W, 4), ...], ...}`` as Gradio's ImageEditor gives it, or
            None; a stroke is any pixel of a layer with alpha > 0.
        mask_upload: an uploaded mask (anything ``predict`` takes as a mask) or None; only the ``mask`` kind
            takes one.
        index: the slot's 0-based number, for messages.
        kind: one of :data:`ANNOTATION_KINDS`.
        label: the class name; empty or None is :data:`DEFAULT_CLASS`.

    Raises:
        ValueError: an unknown kind, no mask or stroke, an uploaded mask with another kind, a mask of another
            size than the image, or strokes drawn on a canvas of another size (painted before the image was
            on it).
    """
    name = f"Support {index + 1}"
    if kind not in ANNOTATION_KINDS:
        raise ValueError(f"{name}: the annotation kind must be one of {ANNOTATION_KINDS}, got {kind!r}.")
    if image is None:
        if mask_upload is not None:
            raise ValueError(f"{name} has a mask but no image: add the image.")
        return None
    array = (load_image(image, name.lower()).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    h, w = array.shape[:2]
    label = (label or "").strip() or DEFAULT_CLASS
    if mask_upload is not None:
        if kind != "mask":
            raise ValueError(
                f"{name}: an uploaded mask is a 'mask' annotation, but the kind is {kind!r}; choose 'mask', "
                f"or remove the uploaded mask and draw the {kind} with the brush."
            )
        mask = (load_mask(mask_upload, f"{name.lower()} mask") == 1).numpy()
        if mask.shape != (h, w):
            raise ValueError(
                f"{name}: the mask is {mask.shape[0]}x{mask.shape[1]} but the image is {h}x{w}; "
                "upload a mask of the image's size."
            )
        return AnnotatedSupport(array, mask.astype(np.uint8), label)
    strokes = _strokes(editor, h, w, index)
    if not strokes.any():
        how = "paint the object with the brush or upload its mask" if kind == "mask" else f"draw its {kind}"
        raise ValueError(f"{name} has no target pixel: {how}{'' if kind == 'mask' else ' with the brush'}.")
    return AnnotatedSupport(array, strokes_annotation(strokes, kind), label)


def editor_value(image: np.ndarray | None) -> dict[str, Any] | None:
    """The painting editor's value for a new support image: the image as background, no strokes."""
    return None if image is None else {"background": image, "layers": [], "composite": image}


def new_support_image(
    image: np.ndarray | None, mask_upload: Any, kind: str, label: str | None, index: int
) -> tuple[dict[str, Any] | None, str]:
    """A support image was added, changed or removed: the painting editor's new value and the slot's line."""
    value = editor_value(image)
    return value, describe_support(image, value, mask_upload, kind, label, index)


def _describe_annotation(annotation: np.ndarray | Box | Points | Scribble, uploaded: bool) -> str:
    if isinstance(annotation, Box):
        return f"box x {annotation.x0:g}-{annotation.x1:g}, y {annotation.y0:g}-{annotation.y1:g} (from the strokes)"
    if isinstance(annotation, Points):
        clicks = ", ".join(f"({x:g}, {y:g})" for x, y in annotation.points)
        return f"{len(annotation.points)} click(s) at {clicks} (the strokes' centres)"
    if isinstance(annotation, Scribble):
        return f"scribble of {int(np.count_nonzero(annotation.strokes))} stroke pixels"
    return f"{int(annotation.sum())} object pixels ({'uploaded mask' if uploaded else 'painted'})"


def describe_support(
    image: Any, editor: dict[str, Any] | None, mask_upload: Any, kind: str, label: str | None, index: int
) -> str:
    """One line about a support slot as it stands: its size, its annotation and class, or what it still lacks."""
    try:
        support = editor_support(image, editor, mask_upload, index, kind, label)
    except (ValueError, TypeError) as error:
        return str(error)
    if support is None:
        return f"Support {index + 1}: empty."
    h, w = support.image.shape[:2]
    line = f"Support {index + 1}: {h} x {w} px, {_describe_annotation(support.annotation, mask_upload is not None)}."
    return line if support.label == DEFAULT_CLASS else f"{line} Class: {support.label}."


def read_query(path: str | Path) -> np.ndarray:
    """A query file as ``(H, W, 3)`` uint8 RGB."""
    return (load_image(path, f"query {Path(path).name}").permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def class_supports(supports: Sequence[AnnotatedSupport]) -> dict[str, tuple[list[np.ndarray], list[Any]]]:
    """The supports grouped by class name (in the order the names first appear): ``{name: (images, annotations)}``
    as :func:`~ntre_zoo.segment` takes it."""
    classes: dict[str, tuple[list[np.ndarray], list[Any]]] = {}
    for support in supports:
        images, annotations = classes.setdefault(support.label, ([], []))
        images.append(support.image)
        annotations.append(support.annotation)
    return classes


def _classes(supports: Sequence[AnnotatedSupport]) -> dict[str, tuple[list[np.ndarray], list[Any]]]:
    """:func:`class_supports`, or a ValueError that says to add a support when there is none."""
    if not supports:
        raise ValueError("Add at least one support image and annotate the object (mask, box, points or scribble).")
    return class_supports(supports)


def run_prediction(
    model: FewShotSegmenter, supports: Sequence[AnnotatedSupport], queries: Sequence[np.ndarray]
) -> list[Prediction] | list[Segmentation]:
    """Segment every query: with one class, encode its supports once and ``predict`` with details (a
    :class:`Prediction` per query); with several, :func:`~ntre_zoo.segment` (a :class:`Segmentation` per query,
    label ``i`` = the i-th class name in the order the supports give them).

    Raises:
        ValueError: no support or no query, saying what to add.
    """
    classes = _classes(supports)
    if not queries:
        raise ValueError("Add at least one query image or video to segment.")
    if len(classes) > 1:
        return cast(list[Segmentation], segment(model, list(queries), classes))
    ((images, annotations),) = classes.values()
    support = encode_support(model, images, annotations)
    return cast(list[Prediction], predict(model, support, list(queries), return_details=True))


def result_panels(
    queries: Sequence[np.ndarray], names: Sequence[str], predictions: Sequence[Prediction | Segmentation]
) -> list[tuple[np.ndarray, str]]:
    """Gallery items ``(image, caption)`` per query: its overlay, the target probability, the BG and DO maps;
    for several classes the label map's overlay with a legend, then each class's probability and DO map."""
    items: list[tuple[np.ndarray, str]] = []
    for query, name, result in zip(queries, names, predictions, strict=True):
        if isinstance(result, Segmentation):
            items.append((np.asarray(overlay(query, result)), f"{name}: classes"))
            items += [
                (np.asarray(heatmap(p)), f"{name}: probability of {c}")
                for c, p in zip(result.classes, result.probabilities, strict=True)
            ]
            items.append((np.asarray(heatmap(result.bg_map)), f"{name}: BG map (mined background)"))
            items += [
                (np.asarray(heatmap(d)), f"{name}: DO map of {c} (eliminated distractors)")
                for c, d in zip(result.classes, result.do_maps, strict=True)
            ]
            continue
        items += [
            (np.asarray(overlay(query, result.mask, legend=False)), f"{name}: prediction"),
            (np.asarray(heatmap(result.probability)), f"{name}: target probability"),
            (np.asarray(heatmap(result.bg_map)), f"{name}: BG map (mined background)"),
            (np.asarray(heatmap(result.do_map)), f"{name}: DO map (eliminated distractors)"),
        ]
    return items


def _write_png(path: Path, picture: np.ndarray | Image.Image) -> Path:
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def write_masks(directory: Path, names: Sequence[str], predictions: Sequence[Prediction | Segmentation]) -> list[Path]:
    """One file per query in ``directory``, their paths: ``<name>_mask.png`` (8-bit, 255 = target, 0 = not)
    for a :class:`Prediction`; ``<name>_labels.png`` (palette PNG, pixel = class label, 0 = background) for a
    :class:`Segmentation`."""
    paths = []
    for name, result in zip(names, predictions, strict=True):
        stem = directory / Path(name).stem
        if isinstance(result, Segmentation):
            paths.append(_write_png(Path(f"{stem}_labels.png"), label_image(result)))
        else:
            paths.append(_write_png(Path(f"{stem}_mask.png"), result.mask * np.uint8(255)))
    return paths


#: The most frames a video query may have (``build_app(max_video_frames=...)``, ``ntre-zoo app --max-video-frames``):
#: a clip whose header declares more is refused before it is decoded, and decoding stops there if the header lies.
MAX_VIDEO_FRAMES = 300


@dataclass(frozen=True)
class VideoQueryResult:
    """What :func:`segment_video_query` wrote for one video: the overlay video (H.264 ``.mp4``), the lossless mask
    video (FFV1 ``.mkv``, pixel = label), a zip of per-frame palette PNGs (pixel = label), and the frame count."""

    overlay: Path
    masks: Path
    frames_zip: Path
    frames: int


def _too_long(name: str, count: int | None, max_frames: int) -> ValueError:
    """``count`` frames (None: more than the limit, found while decoding) over the limit."""
    frames = f"more than {max_frames} frames" if count is None else f"{count} frames"
    return ValueError(
        f"Video {name!r} has {frames}, over this page's limit of {max_frames}: cut it shorter (e.g. ffmpeg -i IN "
        f"-frames:v {max_frames} OUT.mp4), or run ntre-zoo predict on your own machine for longer clips."
    )


def _named(error: Exception, path: Path) -> ValueError:
    """The error naming the upload by its file name alone, not by the server folder it was stored in."""
    return ValueError(str(error).replace(str(path), path.name))


def check_video_query(
    path: str | Path, max_frames: int = MAX_VIDEO_FRAMES, max_pixels: int | None = MAX_PIXELS
) -> VideoInfo:
    """A video query's header (nothing decoded), refused when it is not a video, declares more than
    ``max_frames`` frames (its frame count, else its duration times its rate) or frames over ``max_pixels``.

    Raises:
        ValueError: naming the file (not its folder) and the limit.
    """
    path = Path(path)
    try:
        info = probe_video(path, max_pixels)
    except (ValueError, OSError) as error:
        raise _named(error, path) from None
    declared = info.frames
    if declared is None and info.duration is not None and info.rate is not None:
        declared = round(info.duration * info.rate)
    if declared is not None and declared > max_frames:
        raise _too_long(path.name, declared, max_frames)
    return info


def _capped(results: Iterator[FrameResult], max_frames: int, name: str) -> Iterator[FrameResult]:
    """``results`` up to ``max_frames``; one more stops the decoding (a header that said fewer, or nothing)."""
    try:
        for result in results:
            if result.index >= max_frames:
                raise _too_long(name, None, max_frames)
            yield result
    finally:
        getattr(results, "close", lambda: None)()


def _zip_folder(folder: Path, target: Path) -> Path:
    """The folder's files as ``target`` (written atomically, entries under the folder's name); the folder goes."""

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
            for file in sorted(folder.iterdir()):
                archive.write(file, f"{folder.name}/{file.name}")

    atomic_write(target, write)
    shutil.rmtree(folder)
    return target


def segment_video_query(
    model: FewShotSegmenter,
    supports: Sequence[AnnotatedSupport],
    path: str | Path,
    directory: Path,
    *,
    max_frames: int = MAX_VIDEO_FRAMES,
    max_pixels: int | None = MAX_PIXELS,
) -> VideoQueryResult:
    """Segment every frame of a video query with the supports, as :func:`run_prediction` does for images (one
    class: its supports encoded once, ``predict_video``; several: ``segment_video``, label ``i`` = the i-th class),
    and write into ``directory``: ``NAME_overlay.mp4``, ``NAME_mask.mkv`` and ``NAME_frames.zip``
    (``NAME_frames/000000.png``, ...), at the clip's frame rate, size and timestamps.

    The header is checked first (:func:`check_video_query`); a clip that turns out longer than ``max_frames``
    while decoding is stopped there (decoding ends at most 4 frames later: the reader's read-ahead) and
    leaves no video behind.

    Raises:
        ValueError: no support; a file that is not a video, is damaged or truncated, or is over a limit: naming
            the file (not its folder) and the limit.
    """
    path = Path(path)
    classes = _classes(supports)
    info = check_video_query(path, max_frames, max_pixels)
    stem = directory / path.stem
    overlay_path, masks_path, frames_path = (Path(f"{stem}{end}") for end in ("_overlay.mp4", "_mask.mkv", "_frames"))
    try:
        if len(classes) > 1:
            results = segment_video(model, path, classes, max_pixels=max_pixels)
        else:
            ((images, annotations),) = classes.values()
            support = encode_support(model, images, annotations)
            results = predict_video(model, support, None, path, max_pixels=max_pixels)
        count = write_video_results(
            _capped(results, max_frames, path.name),
            masks=masks_path,
            overlay=overlay_path,
            frame_masks=frames_path,
            rate=info.rate,
            legend=len(classes) > 1,
        )
    except (ValueError, OSError) as error:
        raise _named(error, path) from None
    zipped = _zip_folder(frames_path, Path(f"{frames_path}.zip"))
    return VideoQueryResult(overlay_path, masks_path, zipped, count)


def write_examples(directory: Path, seeds: Sequence[int] = (0, 1, 2, 3)) -> list[tuple[Path, Path, Path]]:
    """Synthetic episodes of fold 0's novel classes as PNG files: ``(support, support mask, query)`` per seed."""
    episodes = []
    for seed in seeds:
        supports, masks, query, _ = synthetic_episode(seed, fold=0, shot=1, novel=True)
        files = (
            directory / f"episode{seed}_support.png",
            directory / f"episode{seed}_support_mask.png",
            directory / f"episode{seed}_query.png",
        )
        for path, array in zip(files, (supports[0], masks[0] * np.uint8(255), query), strict=True):
            _write_png(path, array)
        episodes.append(files)
    return episodes


def status_line(
    loaded: LoadedModel, supports: Sequence[AnnotatedSupport], queries: int, seconds: float, video_frames: int = 0
) -> str:
    """The line under the results (with ``video_frames``, the frames of the video queries among them); with
    several classes it names each label."""
    plural = "y" if queries == 1 else "ies"
    frames = f" ({video_frames} video frames)" if video_frames else ""
    line = (
        f"{queries} quer{plural}{frames} segmented from {len(supports)} support(s) by `{loaded.name}` in "
        f"{seconds:.2f} s."
    )
    classes = class_supports(supports)
    if len(classes) == 1:
        return line
    labels = ", ".join(f"{i} = {name}" for i, name in enumerate(classes, start=1))
    return f"{line} {len(classes)} classes; label map: 0 = background, {labels}."
