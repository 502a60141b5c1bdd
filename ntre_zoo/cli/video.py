"""``ntre-zoo predict`` on video queries: a video file among the QUERY arguments is segmented frame by frame with the
run's supports (encoded once) and written as ``NAME_mask.mkv`` (lossless FFV1 label video; ``--video-masks png``:
a folder ``NAME_mask/`` of PNG frames), ``NAME_overlay.mp4`` and, with ``--frame-masks``, ``NAME_frames/NNNNNN.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..inference.video_io import VIDEO_SUFFIXES, is_video

__all__ = ["VIDEO_SUFFIXES", "add_video_arguments", "is_video", "predict_video_file", "video_output_names"]


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of video queries: ``--video-masks {ffv1,png}`` and ``--frame-masks``."""
    from ..inference.video import MASK_FORMATS

    parser.add_argument(
        "--video-masks",
        choices=MASK_FORMATS,
        default="ffv1",
        help="a video query's label maps as NAME_mask.mkv (ffv1: lossless, label values exactly) or as a folder "
        "NAME_mask/ of PNG frames (png) (default: %(default)s)",
    )
    parser.add_argument(
        "--frame-masks", action="store_true", help="also write a video query's masks as NAME_frames/NNNNNN.png"
    )


def video_output_names(path: Path, args: argparse.Namespace) -> list[str]:
    """The files and folders :func:`predict_video_file` writes for the video ``path``."""
    masks = f"{path.stem}_mask" + (".mkv" if args.video_masks == "ffv1" else "")
    return [masks, f"{path.stem}_overlay.mp4", *([f"{path.stem}_frames"] if args.frame_masks else [])]


def predict_video_file(
    args: argparse.Namespace, model: Any, encoded_supports: dict[str, Any], path: Path, out: Path
) -> dict[str, Any]:
    """Segment one video with the run's encoded supports (``encode_supports``'s result) and write its outputs in
    ``out``, at the clip's frame rate, size and timestamps.

    Args:
        args: ``ntre-zoo predict``'s arguments (``threshold``, ``batch_size``, ``precision``, ``video_masks``,
            ``frame_masks``; ``--class`` given: the overlay names the classes).
        model: the loaded model.
        encoded_supports: ``{name: SupportFeatures}``.
        path: the video file.
        out: the output directory.

    Returns:
        ``{"frames": n, "seconds": t, "outputs": [paths]}``: frames written, wall time, what was written.
    """
    from ..inference.video import segment_video, write_video_results
    from ..inference.video_io import probe_video

    start = time.perf_counter()
    info = probe_video(path)
    names = [out / name for name in video_output_names(path, args)]
    frames = write_video_results(
        segment_video(
            model,
            path,
            encoded_supports,
            threshold=args.threshold,
            batch_size=args.batch_size,
            precision=args.precision,
        ),
        masks=names[0],
        mask_format=args.video_masks,
        overlay=names[1],
        frame_masks=names[2] if args.frame_masks else None,
        rate=info.rate,
        legend=args.groups[0][0] is not None,
    )
    return {"frames": frames, "seconds": time.perf_counter() - start, "outputs": [str(n) for n in names]}
