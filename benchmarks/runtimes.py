"""Time per query with a cached support set: onnxruntime beside PyTorch fp32 and bf16 autocast, one process.

    python benchmarks/runtimes.py --backbone resnet50 --size 473 --shots 1 --repeats 5

Exports the model (random weights: speed does not depend on them) with ``ntre_zoo.export_onnx``, encodes
one support set once per runtime, then times one query's pass from the canvas to the logits and the BG/DO
maps at the canvas size: ``segment.onnx`` in onnxruntime (CPU provider, as many threads as torch), and the
same computation in PyTorch as ``predict`` runs it (eval, ``inference_mode``, channels_last), in fp32 and
under bf16 autocast. Paths alternate so that drift hits all alike; medians are printed, with the largest
logit difference of each against PyTorch fp32.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from inference import interleaved

import ntre_zoo
from ntre_zoo.inference.predict import canvas_maps


def cpu_name() -> str:
    """The CPU's model name, family/model and vector extensions, from /proc/cpuinfo where there is one."""
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return platform.processor() or "unknown CPU"
    fields: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    vector = [name for name in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if name in flags]
    return (
        f"{fields.get('model name', 'unknown CPU')} (family {fields.get('cpu family', '?')} model "
        f"{fields.get('model', '?')}; {', '.join(vector) or 'no AVX2'})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet50", choices=["resnet50", "resnet101", "vgg16_bn"])
    parser.add_argument("--size", type=int, default=473)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    model = ntre_zoo.create_model(args.backbone, test_size=args.size).eval()
    model.to(memory_format=torch.channels_last)

    g = torch.Generator().manual_seed(0)
    size = args.size
    query = torch.randn(1, 3, size, size, generator=g)
    images = torch.randn(1, args.shots, 3, size, size, generator=g)
    masks = torch.zeros(1, args.shots, size, size, dtype=torch.long)
    masks[..., size // 4 : 3 * size // 4, size // 3 : 2 * size // 3] = 1  # a target of about 1/6 of the image

    with tempfile.TemporaryDirectory() as tmp:
        export = ntre_zoo.export_onnx(model, tmp, shot=args.shots, verify=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        encoder = ort.InferenceSession(str(export.encode_support), options, providers=providers)
        segmenter = ort.InferenceSession(str(export.segment), options, providers=providers)
    prototype, support_high = encoder.run(None, {"support_images": images.numpy(), "support_masks": masks.numpy()})
    feed = {"query": query.numpy(), "prototype": prototype, "support_high": support_high}
    query_cl = query.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        support = model.encode_support(images.flatten(0, 1).contiguous(memory_format=torch.channels_last)[None], masks)

    def torch_query(dtype: torch.dtype | None):
        def run() -> torch.Tensor:
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                out = model(query_cl, support=support)
                canvas_maps(out)
                return out.logits.float()

        return run

    paths = {
        "onnxruntime_fp32": lambda: segmenter.run(None, feed)[0],
        "pytorch_fp32": torch_query(None),
        "pytorch_bf16_autocast": torch_query(torch.bfloat16),
    }
    reference = paths["pytorch_fp32"]().numpy()
    diffs = {name: float(np.abs(np.asarray(fn()) - reference).max()) for name, fn in paths.items()}
    times = interleaved(paths, args.repeats, torch.device("cpu"))

    result = {
        "cpu": cpu_name(),
        "threads": threads,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "backbone": args.backbone,
        "size": size,
        "shots": args.shots,
        "repeats": args.repeats,
        "seconds_per_query": times,
        "max_abs_logit_diff_vs_pytorch_fp32": diffs,
    }
    print(f"{args.backbone} {args.shots}-shot at {size}, cached support, one query per call")
    print(f"{result['cpu']}, {threads} threads; torch {torch.__version__}, onnxruntime {ort.__version__}")
    for name, seconds in times.items():
        ratio = seconds / times["pytorch_fp32"]
        print(f"  {name:24s} {seconds:7.3f} s/query  {ratio:5.2f} x PyTorch fp32   max |logit diff| {diffs[name]:.1e}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
