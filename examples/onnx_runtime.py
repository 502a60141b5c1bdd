"""Segment a query with an ONNX export and onnxruntime: numpy only, no PyTorch (Pillow only reads the files).

    ntre-zoo export ntrenet_tiny.synthetic_fold0 --format onnx -o tiny_onnx
    python examples/onnx_runtime.py tiny_onnx --support dog.jpg --support-mask dog_mask.png --query q.jpg \\
        --output q_mask.png

Everything the graphs do not do is here, as ``onnx_config.json`` describes it: the reference test resize onto
the canvas (bilinear, half-pixel centres, no antialiasing; masks nearest, padded with 255), the mean/std
normalisation, and the way back (bilinear with aligned corners to max(H, W) squared, then the top-left H x W).
On the same inputs it gives ``model.predict``'s masks (tests/test_onnx_export.py checks it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image


def _linear_taps(
    n_in: int, n_out: int, align_corners: bool, count: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weight of the second tap for the first ``count`` (default all) of ``n_out`` positions
    along one axis, as torch's bilinear interpolation computes them."""
    dst = np.arange(n_out if count is None else count, dtype=np.float32)
    if align_corners:
        scale = np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0)
        src = dst * scale
    else:
        src = np.maximum((dst + np.float32(0.5)) * np.float32(np.float32(n_in) / np.float32(n_out)) - 0.5, 0)
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def resize_bilinear(
    array: np.ndarray, height: int, width: int, align_corners: bool, keep: tuple[int, int] | None = None
) -> np.ndarray:
    """``(C, H, W)`` float32 -> ``(C, height, width)``, or only its top-left ``keep = (h, w)``."""
    r0, r1, wr = _linear_taps(array.shape[1], height, align_corners, keep and keep[0])
    c0, c1, wc = _linear_taps(array.shape[2], width, align_corners, keep and keep[1])
    rows = array[:, r0] * (1 - wr)[:, None] + array[:, r1] * wr[:, None]
    return (rows[:, :, c0] * (1 - wc) + rows[:, :, c1] * wc).astype(np.float32)


def resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(H, W)`` -> ``(height, width)``, source index ``floor(i * in / out)`` in float32, as torch's nearest."""

    def index(n_in: int, n_out: int) -> np.ndarray:
        scale = np.float32(n_in) / np.float32(n_out)
        return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64), n_in - 1)

    return mask[index(mask.shape[0], height)][:, index(mask.shape[1], width)]


def canvas_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """The ``(h, w)`` an image takes on the canvas: long side ``size`` (down or up), both floored to x8."""
    if height >= width:
        h, w = size, int(width * (size * 1.0 / height))
    else:
        h, w = int(height * (size * 1.0 / width)), size
    return h // 8 * 8 or max(h, 1), w // 8 * 8 or max(w, 1)


def image_to_canvas(image: np.ndarray, config: dict) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(3, S, S)`` float32, resized, zero-padded and normalised."""
    size = config["canvas_size"]
    h, w = canvas_shape(image.shape[0], image.shape[1], size)
    resized = resize_bilinear(image.transpose(2, 0, 1).astype(np.float32) / np.float32(255), h, w, False)
    canvas = np.zeros((3, size, size), np.float32)
    canvas[:, :h, :w] = resized
    mean = np.asarray(config["mean"], np.float32)[:, None, None]
    std = np.asarray(config["std"], np.float32)[:, None, None]
    return (canvas - mean) / std


def mask_to_canvas(mask: np.ndarray, config: dict) -> np.ndarray:
    """``(H, W)`` mask (bool, {0, 1} or {0, 255}) -> ``(S, S)`` int64: 1 target, 0 not, 255 padding."""
    size = config["canvas_size"]
    target = (mask == 1) if (mask == 1).any() else (mask > 0)
    h, w = canvas_shape(mask.shape[0], mask.shape[1], size)
    canvas = np.full((size, size), config["preprocessing"]["resize"]["mask_pad"], np.int64)
    canvas[:h, :w] = resize_nearest(target.astype(np.int64), h, w)
    return canvas


def to_original(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Canvas maps ``(C, S, S)`` -> ``(C, height, width)``: the top-left of an aligned-corner bilinear resize to
    L x L, ``L = max(height, width)`` (only the kept rows and columns are computed)."""
    side = max(height, width)
    return resize_bilinear(maps, side, side, True, keep=(height, width))


class OnnxSegmenter:
    """The two graphs of an ``ntre-zoo export`` folder with their pre- and postprocessing."""

    def __init__(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.config = json.loads((directory / "onnx_config.json").read_text())
        graphs = self.config["graphs"]
        self.encoder = ort.InferenceSession(str(directory / graphs["encode_support"]["file"]))
        self.segmenter = ort.InferenceSession(str(directory / graphs["segment"]["file"]))

    def encode_support(self, images: list[np.ndarray], masks: list[np.ndarray]) -> dict[str, np.ndarray]:
        """K ``(H, W, 3)`` uint8 images and their masks -> the support encoding, reusable for many queries."""
        if len(images) != self.config["shot"] or len(masks) != len(images):
            raise ValueError(f"This export takes {self.config['shot']} support image(s) and as many masks.")
        feed = {
            "support_images": np.stack([image_to_canvas(im, self.config) for im in images])[None],
            "support_masks": np.stack([mask_to_canvas(m, self.config) for m in masks])[None],
        }
        prototype, support_high = self.encoder.run(None, feed)
        return {"prototype": prototype, "support_high": support_high}

    def segment(self, support: dict[str, np.ndarray], query: np.ndarray) -> dict[str, np.ndarray]:
        """A ``(H, W, 3)`` uint8 query -> ``mask`` (uint8 {0, 1}), ``probability``, ``bg_map``, ``do_map`` at (H, W)."""
        logits, bg_map, do_map = self.segmenter.run(
            None, {"query": image_to_canvas(query, self.config)[None], **support}
        )
        h, w = query.shape[:2]
        logits = to_original(logits[0], h, w)
        exp = np.exp(logits - logits.max(axis=0, keepdims=True))
        return {
            "mask": logits.argmax(axis=0).astype(np.uint8),
            "probability": exp[1] / exp.sum(axis=0),
            "bg_map": to_original(bg_map[0], h, w)[0],
            "do_map": to_original(do_map[0], h, w)[0],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir", help="a folder written by `ntre-zoo export --format onnx`")
    parser.add_argument("--support", action="append", required=True, help="a support image (repeat for K shots)")
    parser.add_argument("--support-mask", action="append", required=True, help="its binary mask, same order")
    parser.add_argument("--query", required=True, help="the image to segment")
    parser.add_argument("-o", "--output", default="onnx_mask.png", help="where to write the mask (0/255 PNG)")
    args = parser.parse_args()
    segmenter = OnnxSegmenter(args.export_dir)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in args.support]
    masks = [np.asarray(Image.open(p).convert("L")) for p in args.support_mask]
    result = segmenter.segment(
        segmenter.encode_support(images, masks), np.asarray(Image.open(args.query).convert("RGB"))
    )
    Image.fromarray(result["mask"] * 255).save(args.output)
    print(f"target pixels: {int(result['mask'].sum())} of {result['mask'].size}; wrote {args.output}")


if __name__ == "__main__":
    main()
