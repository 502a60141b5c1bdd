"""Segment a video from one annotated frame, offline: streaming, the support encoded once.

    python examples/video_quickstart.py [--model NAME_OR_DIR] [--frames 24] [-o DIR] [--strip PNG]

Encodes a synthetic clip (a synthetic-benchmark object moving, growing and passing behind another one on a
textured background) as H.264 in DIR/clip.mp4, takes its first frame and that frame's mask as the support,
segments every frame with ``predict_video`` and writes DIR/clip_mask.mkv (lossless FFV1 masks) and
DIR/clip_overlay.mp4; ``--strip`` also saves a strip of four overlay frames (docs/images/video_strip.png is one).
With no --model it uses the demo model shipped inside the package (ntrenet_tiny.synthetic_fold0).
"""

import argparse
from pathlib import Path

import av
import numpy as np
from PIL import Image

import ntre_zoo
from ntre_zoo.data.synthetic import SYNTHETIC_CLASSES, _background, _draw_object
from ntre_zoo.demo import DEMO_MODEL
from ntre_zoo.inference import predict_video, visualize, write_video_results

HEIGHT, WIDTH = 160, 224


def frame_at(t: float, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The frame at time ``t`` in [0, 1] and its 0/1 mask of the target (class 1, fold 0's first novel class)."""
    image, label = background.astype(np.float32), np.zeros((HEIGHT, WIDTH), np.uint8)
    target = (WIDTH * (0.22 + 0.5 * t), HEIGHT * (0.5 + 0.1 * np.sin(4 * t))), HEIGHT * (0.2 + 0.1 * t)
    _draw_object(np.random.default_rng(1), image, label, SYNTHETIC_CLASSES[0], *target)
    occluder = (WIDTH * (0.9 - 0.55 * t), HEIGHT * 0.42), HEIGHT * 0.17  # drawn last: it hides the target
    _draw_object(np.random.default_rng(2), image, label, SYNTHETIC_CLASSES[11], *occluder)
    return np.clip(image, 0, 255).astype(np.uint8), (label == 1).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEMO_MODEL, help="anything ntre_zoo.from_pretrained accepts")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("-o", "--output", default="video_out", help="folder to write (default: %(default)s)")
    parser.add_argument("--strip", help="also save four overlay frames side by side here (PNG)")
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    background = np.clip(_background(np.random.default_rng(0), HEIGHT, WIDTH), 0, 255)
    scenes = [frame_at(i / (args.frames - 1), background) for i in range(args.frames)]

    with av.open(str(out / "clip.mp4"), "w") as container:  # the clip, as a camera would give it
        stream = container.add_stream("libx264", rate=12, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for image, _ in scenes:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))

    model = ntre_zoo.from_pretrained(args.model)
    support = model.encode_support(*scenes[0])  # once, for every frame
    results = list(predict_video(model, support, out / "clip.mp4", batch_size=4))
    write_video_results(results, masks=out / "clip_mask.mkv", overlay=out / "clip_overlay.mp4", rate=12)
    ious = [(r.labels & m).sum() / max((r.labels | m).sum(), 1) for r, (_, m) in zip(results, scenes, strict=True)]
    print(f"{len(results)} frames: mean IoU {np.mean(ious):.3f}; wrote {out / 'clip_mask.mkv'} and clip_overlay.mp4")
    if args.strip:
        picks = np.linspace(0, len(results) - 1, 4).round().astype(int)
        # drawn in cyan (label 6's colour), not the first class's red, which would vanish on the red target
        tiles = [visualize.overlay(results[i].image, results[i].labels * 6, legend=False) for i in picks]
        strip = Image.new("RGB", (4 * WIDTH + 3 * 6, HEIGHT), "white")
        for n, tile in enumerate(tiles):
            strip.paste(tile, (n * (WIDTH + 6), 0))
        strip.save(args.strip)
        print(f"frames {picks.tolist()} of the overlay in {args.strip}")


if __name__ == "__main__":
    main()
