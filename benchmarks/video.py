"""Video segmentation throughput: ``predict_video`` reading and writing real files vs the bare query pass, side by
side in one process, and the peak memory of a streamed clip against its length.

    python benchmarks/video.py [--frames 24] [--tiny-frames 200] [--quick] [--json video.json]

A 360x480 H.264 clip (moving, growing and occluded shapes on a textured background) is encoded first. For the
shipped tiny model (at its own test size) and a ResNet-50 NTRENet at 473 (random weights: the time does not
depend on them), under ``precision`` fp32 and auto, with the support encoded once:

- **bare**: ``predict(model, support, frame)`` frame by frame on the frames already decoded into memory;
- **video**: ``write_video_results(predict_video(model, support, clip), masks=mask.mkv, overlay=overlay.mp4)``,
  decoding the clip and encoding the FFV1 mask and H.264 overlay videos while the model runs (reader and writer
  threads),

both at batch size 1, run alternately, and the ratio of their frames per second (1.0 = reading and writing cost
nothing). Then the peak resident memory (``VmHWM``, each in a fresh process) of the video path for the tiny
model on clips of 100 and 1,000 frames: streaming keeps it flat in the clip length. The CPU, its flags and the
thread count are printed with the tables.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import torch
from precision import medians  # the same alternating medians (benchmarks/ is the script's folder)

import ntre_zoo
from ntre_zoo.data.synthetic import _background
from ntre_zoo.demo import DEMO_MODEL
from ntre_zoo.inference import predict, predict_video, write_video_results
from ntre_zoo.inference.precision import cpu_capabilities, resolve_precision
from ntre_zoo.inference.video_io import read_video
from ntre_zoo.training.environment import cpu_model

HEIGHT, WIDTH, RATE = 360, 480, 25


def scene(t: float) -> tuple[np.ndarray, np.ndarray]:
    """Frame and 0/1 target mask at time ``t`` in [0, 1]: a patterned disc moving right and growing, a square moving
    left in front of it."""
    background = scene.background  # type: ignore[attr-defined]
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    disc = np.hypot(xx - WIDTH * (0.2 + 0.5 * t), yy - HEIGHT / 2) <= HEIGHT * (0.15 + 0.1 * t)
    square = (np.abs(xx - WIDTH * (0.85 - 0.6 * t)) <= HEIGHT * 0.12) & (np.abs(yy - HEIGHT * 0.45) <= HEIGHT * 0.12)
    frame = background.copy()
    frame[disc] = (220, 40, 40)
    frame[disc & ((xx // 12 + yy // 12) % 2 == 0)] = (250, 200, 60)
    frame[square] = (40, 40, 220)
    return frame, (disc & ~square).astype(np.uint8)


scene.background = np.clip(_background(np.random.default_rng(0), HEIGHT, WIDTH), 0, 255).astype(np.uint8)  # type: ignore[attr-defined]


def encode_clip(path: Path, frames: int) -> Path:
    """An H.264 clip of ``frames`` frames (crf 18, as a camera or a download would give)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=RATE, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(scene(i / max(frames - 1, 1))[0], format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def measure(model: ntre_zoo.NTRENet, clip: Path, out: Path, precision: str, repeats: int) -> dict[str, object]:
    frames = [f.image for f in read_video(clip)]
    support = model.encode_support(*scene(0.0), precision=precision)
    predict(model, support, frames[0], precision=precision)  # warm-up: one frame

    def bare() -> None:
        for frame in frames:
            predict(model, support, frame, precision=precision)

    def video() -> None:
        results = predict_video(model, support, clip, precision=precision)
        write_video_results(results, masks=out / "mask.mkv", overlay=out / "overlay.mp4", rate=RATE)

    times = medians({"bare": bare, "video": video}, repeats)
    return {
        "precision": precision,
        "resolves_to": resolve_precision(precision, "cpu", model),
        "frames": len(frames),
        "bare_fps": len(frames) / times["bare"],
        "video_fps": len(frames) / times["video"],
        "video_vs_bare": times["bare"] / times["video"],
    }


def peak_rss_mb(clip: Path, out: Path) -> float:
    """Peak resident memory (MB) of a fresh process that streams ``clip`` through the tiny model to mask and overlay
    videos (``VmHWM``: ``ru_maxrss`` would carry over the parent's peak across ``exec``)."""
    code = (
        "import numpy as np, ntre_zoo\n"
        "from ntre_zoo.inference import predict_video, write_video_results\n"
        f"model = ntre_zoo.from_pretrained({DEMO_MODEL!r})\n"
        "image = np.zeros((64, 64, 3), np.uint8); mask = np.zeros((64, 64), np.uint8); mask[16:48, 16:48] = 1\n"
        "support = model.encode_support(image, mask)\n"
        f"n = write_video_results(predict_video(model, support, {str(clip)!r}, batch_size=4), "
        f"masks={str(out / 'm.mkv')!r}, overlay={str(out / 'o.mp4')!r})\n"
        "print(n, next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(done.stdout.split()[-1]) / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=16, help="clip length for ResNet-50 (about 1-3 s a frame on CPU)")
    parser.add_argument("--tiny-frames", type=int, default=200, help="clip length for the tiny model")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each path (the tiny model: 3x)")
    parser.add_argument("--memory-frames", type=int, nargs="+", default=[100, 1000], help="clip lengths for the RSS")
    parser.add_argument("--quick", action="store_true", help="8 ResNet-50 frames, 50 tiny ones, RSS at 50 and 200")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.tiny_frames, args.memory_frames = 8, 50, [50, 200]
    torch.manual_seed(0)
    tiny = ntre_zoo.from_pretrained(DEMO_MODEL)
    models = {
        f"shipped tiny ({tiny.config.test_size} px, its own test size)": (tiny, args.tiny_frames, 3 * args.repeats),
        "ResNet-50 (473 px, random weights)": (
            ntre_zoo.create_model("resnet50", test_size=473).eval(),
            args.frames,
            args.repeats,
        ),
    }
    result: dict[str, object] = {
        "cpu": cpu_model(),
        "cpu_capabilities": cpu_capabilities(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "av": av.__version__,
        "clip": f"{WIDTH}x{HEIGHT} H.264 crf 18, {RATE} frame/s",
    }
    print(
        f"CPU: {result['cpu']}; {result['cpu_capabilities']}; {result['threads']} thread(s); torch {torch.__version__}"
    )
    print(f"clip: {result['clip']}; batch size 1; video = decode + predict + FFV1 mask .mkv + H.264 overlay .mp4")
    print("| model | precision (is) | frames | bare frame/s | video frame/s | video / bare |")
    print("|---" * 6 + "|")
    runs, memory = [], {}
    with tempfile.TemporaryDirectory() as root:
        work = Path(root)
        for name, (model, frames, repeats) in models.items():
            clip = encode_clip(work / f"clip_{frames}.mp4", frames)
            for precision in ("fp32", "auto"):
                row = {"model": name, **measure(model, clip, work, precision, repeats)}
                runs.append(row)
                print(
                    f"| {name} | {precision} ({row['resolves_to']}) | {frames} | {row['bare_fps']:.2f} "
                    f"| {row['video_fps']:.2f} | {row['video_vs_bare']:.2f} |",
                    flush=True,
                )
        print("\n| clip frames (tiny model, batch 4, fresh process) | peak RSS (MB) |\n|---|---|")
        for frames in args.memory_frames:
            memory[frames] = peak_rss_mb(encode_clip(work / f"memory_{frames}.mp4", frames), work)
            print(f"| {frames} | {memory[frames]:.0f} |", flush=True)
    print(f"(this process, for scale: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
    result.update(runs=runs, peak_rss_mb=memory)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
