"""``export_onnx``: an NTRENet as two ONNX graphs that onnxruntime runs without PyTorch.

* ``encode_support.onnx``: ``support_images (1, K, 3, S, S)`` float32 normalised canvases and ``support_masks
  (1, K, S, S)`` int64 (1 = target, 0 = not, 255 = ignore and padding) -> ``prototype (1, C, 1, 1)`` and
  ``support_high (1, K, C4, h4, w4)``, the masked layer4 features the prior mask reads.
* ``segment.onnx``: ``query (1, 3, S, S)`` and those two -> ``logits (1, 2, S, S)`` (channel 1 = target),
  ``bg_map`` and ``do_map`` ``(1, 1, S, S)``, all at the canvas size.
* ``onnx_config.json``: the canvas size, mean/std, and how an image goes onto the canvas and the maps come back
  to its size (the reference test resize of :mod:`ntre_zoo.data.preprocessing`); ``examples/onnx_runtime.py``
  does both in numpy.

The shot K and the canvas S are fixed at export. ``segment.onnx`` takes one query per call: the prior mask
keeps only the support positions inside the mask (``model.heads.prior_mask``), and that selection is traced
per query.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._atomic import atomic_write, atomic_write_json
from ..data.preprocessing import IGNORE_INDEX
from ..inference.predict import canvas_maps
from ..model.types import FewShotSegmenter, SupportFeatures
from ..zoo.download import sha256_file
from ..zoo.hub import from_pretrained
from ..zoo.version import __version__

__all__ = ["ENCODE_SUPPORT_NAME", "ONNX_CONFIG_NAME", "SEGMENT_NAME", "OnnxExport", "export_onnx"]

ENCODE_SUPPORT_NAME = "encode_support.onnx"
SEGMENT_NAME = "segment.onnx"
ONNX_CONFIG_NAME = "onnx_config.json"
#: Version of the ``onnx_config.json`` layout.
FORMAT_VERSION = 1
#: The largest canvas side ``test_size`` may ask for: the export traces the model on a random S x S episode whose
#: memory grows with S squared (S = 2048 takes a few GB for ResNet-50; the reference canvas is 473).
MAX_TEST_SIZE = 2048
_SUPPORT_OUTPUTS = ("prototype", "support_high")
_SEGMENT_OUTPUTS = ("logits", "bg_map", "do_map")


@dataclass(frozen=True)
class OnnxExport:
    """What ``export_onnx`` wrote.

    Attributes:
        directory: the output folder; ``encode_support``, ``segment``, ``config``: the three files in it.
        max_abs_logit_diff: the largest difference between onnxruntime's and PyTorch's logits on a random
            episode (None when not verified).
    """

    directory: Path
    encode_support: Path
    segment: Path
    config: Path
    max_abs_logit_diff: float | None


class _SupportEncoder(nn.Module):
    """``(support_images, support_masks) -> (prototype, support_high)``: the graph of ``encode_support.onnx``."""

    def __init__(self, model: FewShotSegmenter) -> None:
        super().__init__()
        self.model = model

    def forward(self, support_images: torch.Tensor, support_masks: torch.Tensor) -> tuple[torch.Tensor, ...]:
        support = self.model.encode_support(support_images, support_masks)
        return support.prototype, support.masked_high


class _Segmenter(nn.Module):
    """``(query, prototype, support_high) -> (logits, bg_map, do_map)``: the graph of ``segment.onnx``."""

    def __init__(self, model: FewShotSegmenter) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, query: torch.Tensor, prototype: torch.Tensor, support_high: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        out = self.model(query, support=SupportFeatures(None, None, prototype, support_high))
        bg_map, do_map = canvas_maps(out)
        return out.logits, bg_map, do_map


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"ONNX export needs {module!r}, which is not installed: pip install 'ntre-zoo[onnx]'."
        ) from error


@contextlib.contextmanager
def _eval(model: FewShotSegmenter) -> Iterator[None]:
    """Eval mode for the export (dropout off, BN on running statistics); the caller's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _random_episode(size: int, shot: int, seed: int = 0, device: Any = "cpu") -> tuple[torch.Tensor, ...]:
    """A normalised-looking random episode on the ``size`` canvas: ``query (1, 3, S, S)``, ``support_images
    (1, K, 3, S, S)``, ``support_masks (1, K, S, S)`` int64 with a target rectangle and 255-padding columns."""
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(1, 3, size, size, generator=g)
    images = torch.randn(1, shot, 3, size, size, generator=g)
    masks = torch.zeros(1, shot, size, size, dtype=torch.long)
    masks[..., size // 4 : 3 * size // 4, size // 3 : 2 * size // 3] = 1
    masks[..., -max(1, size // 10) :] = IGNORE_INDEX
    return query.to(device), images.to(device), masks.to(device)


def _export(
    module: nn.Module, args: tuple[torch.Tensor, ...], names: tuple[str, ...], path: Path, opset: int | None
) -> int:
    """Trace ``module`` on ``args`` with the dynamo exporter, write the graph to ``path``; return its opset."""
    program = torch.onnx.export(
        module, args, dynamo=True, output_names=list(names), opset_version=opset, verbose=False, external_data=False
    )
    if program is None:  # only the TorchScript exporter writes straight to a file and returns None
        raise RuntimeError("torch.onnx.export(dynamo=True) returned no ONNXProgram; update torch.")
    atomic_write(path, lambda tmp: program.save(tmp, external_data=False))
    return next(o.version for o in program.model_proto.opset_import if o.domain in ("", "ai.onnx"))


def export_onnx(
    model: FewShotSegmenter | str | Path,
    output_dir: str | Path,
    *,
    shot: int = 1,
    test_size: int | None = None,
    opset: int | None = None,
    verify: bool = True,
) -> OnnxExport:
    """Write ``encode_support.onnx``, ``segment.onnx`` and ``onnx_config.json`` into ``output_dir``.

    Args:
        model: an NTRENet, or a name, ``hf-hub:`` id or directory for :func:`~ntre_zoo.from_pretrained`.
        output_dir: the folder to write (created if missing).
        shot: K, the number of supports ``encode_support.onnx`` takes.
        test_size: the canvas side S (default: the model's ``test_size``).
        opset: ONNX opset (default: the exporter's).
        verify: run both graphs with onnxruntime on a random episode and record the largest logit difference.

    Returns:
        :class:`OnnxExport`.

    Raises:
        ValueError: ``shot`` below 1, ``test_size`` outside [9, :data:`MAX_TEST_SIZE`], or an ``output_dir``
            holding files other than a previous export (checked before any work).
        FileExistsError: ``output_dir`` is a file.
        ImportError: onnx, onnxscript (the exporter) or onnxruntime (``verify``) missing.
    """
    if shot < 1:
        raise ValueError(f"shot must be >= 1, got {shot!r}.")
    if test_size is not None and not 9 <= test_size <= MAX_TEST_SIZE:
        raise ValueError(
            f"test_size must be between 9 and {MAX_TEST_SIZE}, got {test_size!r}: the export runs the model on a "
            f"random test_size x test_size episode, whose memory grows with its square (the reference uses 473)."
        )
    out = Path(output_dir)
    _check_output_dir(out)
    for module in ("onnx", "onnxscript", *(("onnxruntime",) if verify else ())):
        _require(module)
    source = "an in-memory model"
    if isinstance(model, (str, Path)):
        source, model = str(model), from_pretrained(model)
    size = test_size or model.config.test_size
    device = next(model.parameters()).device
    query, images, masks = _random_episode(size, shot, seed=0, device=device)
    paths = (out / ENCODE_SUPPORT_NAME, out / SEGMENT_NAME, out / ONNX_CONFIG_NAME)
    with _eval(model), torch.no_grad():
        encoder, segmenter = _SupportEncoder(model).eval(), _Segmenter(model).eval()
        graph_opset = _export(encoder, (images, masks), _SUPPORT_OUTPUTS, paths[0], opset)
        prototype, support_high = encoder(images, masks)
        _export(segmenter, (query, prototype, support_high), _SEGMENT_OUTPUTS, paths[1], opset)
        diff = _verify(model, paths[0], paths[1], size, shot) if verify else None
    atomic_write_json(paths[2], _config(model, source, size, shot, graph_opset, paths, prototype, support_high))
    return OnnxExport(out, *paths, max_abs_logit_diff=diff)


def _check_output_dir(out: Path) -> None:
    """Refuse an output that is a file, or a folder holding anything but a previous export, before any work."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{str(out)!r} is a file, not a folder; choose a folder for the export (-o NEW_DIR).")
    if not out.is_dir():
        return
    ours = (ENCODE_SUPPORT_NAME, SEGMENT_NAME, ONNX_CONFIG_NAME)
    others = sorted(path.name for path in out.iterdir() if path.name not in ours)
    config = out / ONNX_CONFIG_NAME
    if not others and config.is_file():
        try:
            format_name = json.loads(config.read_text(encoding="utf-8")).get("format")
        except (ValueError, AttributeError):
            format_name = None
        if format_name != "ntre-zoo-onnx":
            others = [ONNX_CONFIG_NAME]
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise ValueError(
            f"{str(out)!r} is not empty and not a previous export: it holds {shown}. The export writes "
            f"{', '.join(ours)} there and replaces files of those names; choose an empty or new folder (-o NEW_DIR)."
        )


def _cpu_reference(model: FewShotSegmenter, device: torch.device) -> FewShotSegmenter:
    """The model itself when it is on the CPU (``device``); elsewhere a CPU copy in eval mode, so that the graphs
    are checked against float32 CPU results (not TF32 or other accelerator kernels) and the caller's model stays
    where it is."""
    if device.type == "cpu":
        return model
    return copy.deepcopy(model).to("cpu").eval()


def _verify(model: FewShotSegmenter, encode_path: Path, segment_path: Path, size: int, shot: int) -> float:
    """Largest |logit| difference between onnxruntime (CPU) and the model, run on the CPU, on a random episode
    (seed 1)."""
    ort = _require("onnxruntime")
    model = _cpu_reference(model, next(model.parameters()).device)
    query, images, masks = _random_episode(size, shot, seed=1)
    encoder = ort.InferenceSession(str(encode_path), providers=["CPUExecutionProvider"])
    segmenter = ort.InferenceSession(str(segment_path), providers=["CPUExecutionProvider"])
    prototype, support_high = encoder.run(None, {"support_images": images.numpy(), "support_masks": masks.numpy()})
    feed = {"query": query.numpy(), "prototype": prototype, "support_high": support_high}
    logits = segmenter.run(["logits"], feed)[0]
    expected = _Segmenter(model)(query, *_SupportEncoder(model)(images, masks))[0]
    return float(np.abs(logits - expected.float().numpy()).max())


def _config(
    model: FewShotSegmenter,
    source: str,
    size: int,
    shot: int,
    opset: int,
    paths: tuple[Path, Path, Path],
    prototype: torch.Tensor,
    support_high: torch.Tensor,
) -> dict[str, Any]:
    """What a runtime needs besides the graphs: shapes, the preprocessing and the way back."""
    return {
        "format": "ntre-zoo-onnx",
        "format_version": FORMAT_VERSION,
        "ntre_zoo_version": __version__,
        "model": source,
        "model_config": {**model.config.to_dict(), "test_size": size},
        "opset": opset,
        "canvas_size": size,
        "shot": shot,
        "mean": list(model.config.mean),
        "std": list(model.config.std),
        "graphs": {
            "encode_support": {
                "file": paths[0].name,
                "sha256": sha256_file(paths[0]),
                "inputs": {
                    "support_images": {"shape": [1, shot, 3, size, size], "dtype": "float32"},
                    "support_masks": {"shape": [1, shot, size, size], "dtype": "int64"},
                },
                "outputs": {
                    "prototype": {"shape": list(prototype.shape), "dtype": "float32"},
                    "support_high": {"shape": list(support_high.shape), "dtype": "float32"},
                },
            },
            "segment": {
                "file": paths[1].name,
                "sha256": sha256_file(paths[1]),
                "inputs": {
                    "query": {"shape": [1, 3, size, size], "dtype": "float32"},
                    "prototype": {"shape": list(prototype.shape), "dtype": "float32"},
                    "support_high": {"shape": list(support_high.shape), "dtype": "float32"},
                },
                "outputs": {
                    name: {"shape": [1, 2 if name == "logits" else 1, size, size], "dtype": "float32"}
                    for name in _SEGMENT_OUTPUTS
                },
            },
        },
        "preprocessing": {
            "image": (
                "RGB as float32 in [0, 1], (3, H, W). The long side becomes canvas_size, larger or smaller: "
                "(h, w) = (S, int(W * S / H)) if H >= W else (int(H * S / W), S), then each side is floored to a "
                "multiple of 8 (a side shorter than 8 keeps its length, at least 1). Resize bilinearly (half-pixel "
                "centres, align_corners=False, no antialiasing), paste at the top-left of a zero canvas_size "
                "square, then (x - mean) / std per channel."
            ),
            "mask": (
                "Resize to the same (h, w) with nearest neighbour (source index floor(i * in / out)), paste at the "
                f"top-left of a canvas_size square filled with {IGNORE_INDEX} (ignored); 1 = target, 0 = not."
            ),
            "resize": {
                "multiple_of": 8,
                "image_mode": "bilinear",
                "align_corners": False,
                "antialias": False,
                "mask_mode": "nearest",
                "image_pad": 0.0,
                "mask_pad": IGNORE_INDEX,
                "placement": "top-left",
            },
        },
        "postprocessing": {
            "to_original": (
                "For an (H, W) image: resize the canvas maps bilinearly with align_corners=True to L x L, "
                "L = max(H, W), and keep the top-left H x W."
            ),
            "mask": "argmax over the 2 logit channels (1 = target)",
            "probability": "softmax over the 2 logit channels, channel 1",
            "bg_map": "background probability from BG mining: what BGEM eliminates",
            "do_map": "distracting-object mask averaged over the pyramid bins: what DOEM eliminates",
        },
    }
