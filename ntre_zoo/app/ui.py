"""``build_app``: the Gradio page (``pip install 'ntre-zoo[app]'``): choose a model, annotate supports with a brush
(a mask, box, points or scribble) or upload their masks, name their classes, add queries, run, see the
overlays, probabilities, BG and DO maps, download the masks (label maps for several classes).

It works offline: Gradio's analytics and version check are off, its fonts are its own files, and nothing is
fetched at run time (the browser test blocks every request that leaves the machine and finds none).
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ..demo import DEMO_MODEL
from ..inference.image_io import MAX_PIXELS
from ..inference.video_io import is_video
from ..model.config import check_int
from ..model.types import FewShotSegmenter
from .logic import (
    ANNOTATION_KINDS,
    DEFAULT_CLASS,
    MAX_VIDEO_FRAMES,
    ModelCache,
    describe_support,
    editor_support,
    model_notice,
    new_support_image,
    read_query,
    result_panels,
    run_prediction,
    segment_video_query,
    status_line,
    write_examples,
    write_masks,
)

__all__ = ["MAX_SUPPORTS", "MAX_UPLOAD", "MAX_VIDEO_FRAMES", "build_app", "launch"]

#: Support slots on the page (one tab each).
MAX_SUPPORTS = 4
#: The largest file a visitor may upload (Gradio's ``max_file_size``): a 40-megapixel photo (the pixel cap,
#: ``ntre_zoo.inference.image_io.MAX_PIXELS``) is about 10 to 25 MB as JPEG; a PNG of it may be larger.
MAX_UPLOAD = "50mb"
_TITLE = "NTRENet few-shot segmentation"
_HOW_TO = (
    "Add a **support** image and upload the object's mask or paint the object with the brush, add one or "
    "more **queries**, and press **Segment**. More supports (tabs) show the object in other views. Each query "
    "gets an overlay of the predicted object, the target probability, the background that BG mining found and "
    "the distracting objects that DOEM eliminated; the masks download as PNG (255 = object).\n\n"
    "**Annotation** of a support: *mask*: the uploaded mask, else the painted pixels; *box*: the bounding box "
    "of the brush strokes; *points*: one click at the centre of each separate stroke (a disc around it); "
    "*scribble*: the strokes, thickened. **Class**: supports with the same class name show one class; with "
    "several names each query gets a label map (overlay with a legend, a probability per class) and the "
    "download is a palette PNG whose pixels are the labels (0 = background, 1, 2, ... in the order the names "
    "first appear).\n\n"
    "**Video queries** (up to {frames} frames): every frame is segmented; the overlay video plays below the "
    "results and the masks download as a lossless video (FFV1 `.mkv`, pixel = label) and a zip of PNG frames."
)


def _gradio() -> Any:
    """Import Gradio with its analytics and version check off (they are read when it is imported)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    try:
        import gradio
    except ImportError as error:
        raise ImportError("The web app needs Gradio: pip install 'ntre-zoo[app]'.") from error
    return gradio


def build_app(
    model: FewShotSegmenter | str | Path = DEMO_MODEL,
    *,
    offered: Sequence[str | Path] = (),
    allow_any_model: bool = False,
    examples_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    max_video_frames: int = MAX_VIDEO_FRAMES,
) -> Any:
    """The app as a ``gradio.Blocks`` (``.launch()`` it, mount it, or serve it as a Hugging Face Space).

    Args:
        model: the model shown first: a zoo name, ``hf-hub:`` id or directory (loaded now, so a wrong name
            fails here), or a model object.
        offered: more names or directories a visitor may choose, besides ``model`` and the zoo's published names.
        allow_any_model: let visitors load any name, server directory or ``hf-hub:`` id (see docs/deploy.md:
            only where every visitor may read the server's files and use its network).
        examples_dir: where the synthetic example episodes are written (default: a new temporary folder).
        output_dir: where each run's masks are written for download (default: a new temporary folder).
        max_video_frames: the most frames a video query may have (refused from its header, else stopped there).

    Raises:
        ImportError: Gradio missing.
        ValueError, TypeError: ``max_video_frames`` not a whole number of at least 1.
    """
    max_video_frames = check_int(max_video_frames, "max_video_frames", 1)
    gr = _gradio()
    models = ModelCache(model, offered=offered, allow_any=allow_any_model)
    first = models.get(None)
    examples = write_examples(Path(examples_dir or tempfile.mkdtemp(prefix="ntre_zoo_app_examples_")))
    outputs = Path(output_dir or tempfile.mkdtemp(prefix="ntre_zoo_app_masks_"))
    outputs.mkdir(parents=True, exist_ok=True)

    with gr.Blocks(title=_TITLE, analytics_enabled=False) as app:
        gr.Markdown(f"# {_TITLE}\n{_HOW_TO.format(frames=max_video_frames)}")
        notice = gr.Markdown(model_notice(first), elem_id="model-notice")
        model_box = gr.Dropdown(
            choices=models.choices,
            value=first.name,
            allow_custom_value=allow_any_model,
            label="Model: a zoo name, a local directory written by save_pretrained, or hf-hub:<repo id>"
            if allow_any_model
            else "Model",
            elem_id="model",
        )
        images, uploads, editors, kinds, labels, notes = [], [], [], [], [], []
        with gr.Row():
            with gr.Column(scale=3), gr.Tabs():
                for i in range(MAX_SUPPORTS):
                    with gr.Tab(f"Support {i + 1}"):
                        with gr.Row():
                            images.append(
                                gr.Image(
                                    label=f"Support {i + 1}",
                                    type="numpy",
                                    image_mode="RGB",
                                    format="png",
                                    sources=("upload", "clipboard"),
                                    height=240,
                                    elem_id=f"support-{i}",
                                )
                            )
                            uploads.append(
                                gr.Image(
                                    label="its mask (white = object), or paint it below",
                                    type="numpy",
                                    image_mode="L",
                                    format="png",
                                    sources=("upload",),
                                    height=240,
                                    elem_id=f"support-mask-{i}",
                                )
                            )
                        editors.append(
                            gr.ImageEditor(
                                label=f"Support {i + 1}: paint the object (used when no mask is uploaded)",
                                type="numpy",
                                format="png",
                                sources=(),
                                layers=False,
                                transforms=(),
                                brush=gr.Brush(colors=["#ff2a2a"], color_mode="fixed"),
                                elem_id=f"support-paint-{i}",
                            )
                        )
                        with gr.Row():
                            kinds.append(
                                gr.Radio(
                                    choices=list(ANNOTATION_KINDS),
                                    value="mask",
                                    label="Annotation: what the strokes mean",
                                    elem_id=f"support-kind-{i}",
                                )
                            )
                            labels.append(
                                gr.Textbox(value=DEFAULT_CLASS, label="Class name", elem_id=f"support-class-{i}")
                            )
                        notes.append(gr.Markdown(f"Support {i + 1}: empty.", elem_id=f"support-note-{i}"))
            with gr.Column(scale=2):
                queries = gr.File(
                    label="Query images or short videos",
                    file_count="multiple",
                    file_types=["image", "video"],
                    elem_id="queries",
                )
                run = gr.Button("Segment", variant="primary", elem_id="run")
        status = gr.Markdown(elem_id="status")
        gallery = gr.Gallery(
            label="Results", columns=4, format="png", object_fit="contain", interactive=False, elem_id="results"
        )
        video = gr.Video(label="Overlay video (the first video query)", interactive=False, elem_id="video-result")
        masks = gr.File(
            label="Masks (PNG, 255 = object) or label maps (palette PNG, several classes); for a video, its mask "
            "video (FFV1 .mkv) and PNG frames (.zip), pixel = label",
            file_count="multiple",
            interactive=False,
            elem_id="masks",
        )
        gr.Examples(
            examples=[[str(s), str(m), [str(q)]] for s, m, q in examples],
            inputs=[images[0], uploads[0], queries],
            label="Synthetic episodes (fold 0's novel classes): the demo model's home ground",
        )

        def choose(name: str) -> str:
            try:
                return model_notice(models.get(name))
            except PermissionError as error:  # not offered: the same words whatever was asked
                raise gr.Error(str(error)) from None
            except (ValueError, OSError, KeyError, RuntimeError) as error:
                raise gr.Error(f"Cannot load {name!r}: {error}") from None

        def segment(name: str, query_files: list[str] | None, *slots: Any) -> tuple[Any, str | None, list[str], str]:
            start = time.perf_counter()
            try:
                loaded = models.get(name)
                slot_values = zip(*(slots[k * MAX_SUPPORTS : (k + 1) * MAX_SUPPORTS] for k in range(5)), strict=True)
                supports = [
                    s
                    for i, (im, ed, m, kind, label) in enumerate(slot_values)
                    if (s := editor_support(im, ed, m, i, kind, label)) is not None
                ]
                paths = [path for path in query_files or [] if not is_video(path)]
                videos = [path for path in query_files or [] if is_video(path)]
                images = [read_query(path) for path in paths]
                predictions = run_prediction(loaded.model, supports, images) if images or not videos else []
                folder = Path(tempfile.mkdtemp(dir=outputs))  # one folder per run: names repeat across runs
                clips = [
                    segment_video_query(loaded.model, supports, path, folder, max_frames=max_video_frames)
                    for path in videos
                ]
            except (ValueError, OSError, KeyError, RuntimeError, TypeError, ImportError) as error:
                raise gr.Error(str(error)) from None
            names = [Path(path).name for path in paths]
            files = [*write_masks(folder, names, predictions), *(f for c in clips for f in (c.masks, c.frames_zip))]
            frames = sum(clip.frames for clip in clips)
            line = status_line(loaded, supports, len(images) + len(clips), time.perf_counter() - start, frames)
            overlay = str(clips[0].overlay) if clips else None
            return result_panels(images, names, predictions), overlay, [str(f) for f in files], line

        model_box.change(choose, inputs=model_box, outputs=notice)
        slots = zip(images, uploads, editors, kinds, labels, notes, strict=True)
        for i, (image, upload, editor, kind, label, note) in enumerate(slots):
            image.change(
                functools.partial(new_support_image, index=i),
                inputs=[image, upload, kind, label],
                outputs=[editor, note],
                show_progress="hidden",
            )
            gr.on(
                [editor.change, upload.change, kind.change, label.change],
                functools.partial(describe_support, index=i),
                inputs=[image, editor, upload, kind, label],
                outputs=note,
                show_progress="hidden",
                trigger_mode="always_last",
            )
        run.click(
            segment,
            inputs=[model_box, queries, *images, *editors, *uploads, *kinds, *labels],
            outputs=[gallery, video, masks, status],
        )
    return app


def launch(
    model: FewShotSegmenter | str | Path = DEMO_MODEL,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    offered: Sequence[str | Path] = (),
    allow_any_model: bool = False,
    max_file_size: str | int | None = MAX_UPLOAD,
    max_video_frames: int = MAX_VIDEO_FRAMES,
    **options: Any,
) -> Any:
    """Build the app and serve it on ``host:port`` (no share link, no server-side rendering); blocks until
    stopped unless ``prevent_thread_lock=True`` is passed. Returns the app.

    Args:
        model, offered, allow_any_model, max_video_frames: as :func:`build_app` takes them.
        max_file_size: the largest upload Gradio accepts (default :data:`MAX_UPLOAD`; None: no limit).
        **options: passed to ``gradio.Blocks.launch``.
    """
    # Gradio decodes uploaded supports and drawn masks with PIL before any code of ours sees them; PIL refuses
    # an image over twice MAX_IMAGE_PIXELS, so this bounds that decoding by the package's own pixel cap. The
    # setting is process-wide, which is right for the server process this function runs.
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS // 2
    app = build_app(model, offered=offered, allow_any_model=allow_any_model, max_video_frames=max_video_frames)
    app.launch(server_name=host, server_port=port, share=False, ssr_mode=False, max_file_size=max_file_size, **options)
    return app
