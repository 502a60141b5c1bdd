"""Inference benchmark: the baseline per-episode path vs the optimised path, side by side in one process.

    python benchmarks/inference.py --backbone resnet50 --size 473 --shots 1 --queries 8 [--device cuda]

Prints the FLOPs of one episode, this machine's measured 3x3-convolution and GEMM rates, per-episode
times of both paths, the achieved fraction of the conv rate, the amortised time per query when one
support set serves many queries, and the peak resident memory of a predict() call (in a fresh process).
On CUDA it also reports fp32 / bf16 / fp16 autocast, channels_last, batch 1 and batched.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import ntre_zoo


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def interleaved(paths: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds of each path, run alternately (after one warm-up each) so drift hits all alike."""
    for fn in paths.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, fn in paths.items():
            samples[name].append(timed(fn, device))
    return {name: statistics.median(values) for name, values in samples.items()}


def machine_rates(device: torch.device, repeats: int) -> dict[str, float]:
    """GFLOP/s of a 512->512 3x3 convolution on a 60x60 map and of a 2048^3 fp32 GEMM."""
    x = torch.randn(1, 512, 60, 60, device=device)
    w = torch.randn(512, 512, 3, 3, device=device)
    a = torch.randn(2048, 2048, device=device)
    with torch.inference_mode():
        times = interleaved({"conv": lambda: F.conv2d(x, w, padding=1), "gemm": lambda: a @ a}, repeats * 3, device)
    return {"conv3x3": 2 * 512 * 512 * 9 * 3600 / times["conv"] / 1e9, "gemm": 2 * 2048**3 / times["gemm"] / 1e9}


def episode_inputs(args: argparse.Namespace, device: torch.device):
    g = torch.Generator().manual_seed(0)
    size = args.size
    queries = torch.randn(args.queries, 3, size, size, generator=g).to(device)
    supports = torch.randn(1, args.shots, 3, size, size, generator=g).to(device)
    masks = torch.zeros(1, args.shots, size, size, dtype=torch.long)
    masks[..., size // 4 : 3 * size // 4, size // 3 : 2 * size // 3] = 1  # a target of about 1/6 of the image
    return queries, supports, masks.to(device)


def peak_rss_of_predict(args: argparse.Namespace) -> float:
    """Peak resident MB of a fresh process that builds the model and runs one predict() call.

    Read from the child's ``VmHWM`` (``ru_maxrss`` would include this parent's size: Linux carries it
    across fork and exec)."""
    code = (
        "import numpy as np, torch, ntre_zoo\n"
        f"m = ntre_zoo.create_model({args.backbone!r}).eval()\n"
        f"img = (np.random.default_rng(0).random(({args.size}, {args.size}, 3)) * 255).astype(np.uint8)\n"
        f"mask = np.zeros(({args.size}, {args.size}), np.uint8); mask[100:300, 100:250] = 1\n"
        "m.predict(img, mask, img)\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(int(hwm.split()[1]) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet50", choices=["resnet50", "resnet101", "vgg16_bn"])
    parser.add_argument("--size", type=int, default=473)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    baseline = ntre_zoo.create_model(args.backbone).eval().to(device)
    baseline.fast_inference = False
    fast = ntre_zoo.create_model(args.backbone).eval().to(device)
    fast.load_state_dict(baseline.state_dict())
    fast.to(memory_format=torch.channels_last)
    queries, supports, masks = episode_inputs(args, device)
    queries_cl = queries.contiguous(memory_format=torch.channels_last)
    supports_cl = supports.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, supports.shape[:2])

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        baseline(queries[:1], supports, masks)
    flops = counter.get_total_flops()

    def baseline_episode() -> torch.Tensor:
        with torch.no_grad():
            return baseline(queries[:1], supports, masks).logits

    def fast_episode() -> torch.Tensor:
        with torch.inference_mode():
            return fast(queries_cl[:1], supports_cl, masks).logits

    def fast_many() -> torch.Tensor:
        with torch.inference_mode():
            support = fast.encode_support(supports_cl, masks)
            return torch.cat([fast(queries_cl[i : i + 4], support=support).logits for i in range(0, len(queries), 4)])

    with torch.inference_mode():
        diff = (fast_episode() - baseline_episode()).abs().max().item()
    rates = machine_rates(device, args.repeats)
    times = interleaved({"baseline": baseline_episode, "optimised": fast_episode}, args.repeats, device)
    many = interleaved({"optimised_many": fast_many}, max(1, args.repeats // 2), device)["optimised_many"]
    per_query = many / args.queries
    achieved = flops / times["optimised"] / 1e9

    result = {
        "device": str(device),
        "backbone": args.backbone,
        "size": args.size,
        "shots": args.shots,
        "threads": torch.get_num_threads(),
        "episode_gflop": flops / 1e9,
        "conv3x3_gflops": rates["conv3x3"],
        "gemm_gflops": rates["gemm"],
        "baseline_episode_s": times["baseline"],
        "optimised_episode_s": times["optimised"],
        "optimised_vs_baseline": times["optimised"] / times["baseline"],
        "achieved_gflops": achieved,
        "fraction_of_conv_rate": achieved / rates["conv3x3"],
        "queries": args.queries,
        "amortised_per_query_s": per_query,
        "amortised_vs_baseline_episode": per_query / times["baseline"],
        "max_abs_logit_diff": diff,
    }
    if device.type == "cpu":
        result["peak_rss_predict_mb"] = peak_rss_of_predict(args)
    else:
        result.update(gpu_variants(fast, queries, supports, masks, args.repeats, device))

    print(f"{args.backbone} {args.shots}-shot at {args.size}, {device}, {result['threads']} threads")
    print(f"  episode FLOPs              {result['episode_gflop']:8.1f} GFLOP")
    print(f"  machine 3x3 conv / GEMM    {rates['conv3x3']:8.1f} / {rates['gemm']:.1f} GFLOP/s")
    print(f"  baseline episode           {times['baseline']:8.3f} s")
    print(f"  optimised episode          {times['optimised']:8.3f} s   ratio {result['optimised_vs_baseline']:.3f}")
    print(
        f"  achieved                   {achieved:8.1f} GFLOP/s = {result['fraction_of_conv_rate']:.1%} of the conv rate"
    )
    print(
        f"  {args.queries} queries, one support  {per_query:8.3f} s/query = "
        f"{result['amortised_vs_baseline_episode']:.3f} x baseline episode"
    )
    print(f"  max |logit diff|           {diff:.2e}")
    if "peak_rss_predict_mb" in result:
        print(f"  peak RSS of predict()      {result['peak_rss_predict_mb']:8.0f} MB")
    for key, value in result.items():
        if key.startswith("gpu_"):
            print(f"  {key:26s} {value:8.4f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


def gpu_variants(model, queries, supports, masks, repeats, device) -> dict[str, float]:
    """Absolute episode times on a GPU: fp32/bf16/fp16 autocast, contiguous vs channels_last, batch 1 vs all."""
    out = {}
    for layout in ("contiguous", "channels_last"):
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        model.to(memory_format=fmt)
        q = queries.contiguous(memory_format=fmt)
        for dtype_name, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
            for batch in (1, len(queries)):

                def run(batch=batch, dtype=dtype, q=q):
                    with (
                        torch.inference_mode(),
                        torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None),
                    ):
                        s = supports.expand(batch, -1, -1, -1, -1)
                        m = masks.expand(batch, -1, -1, -1)
                        return model(q[:batch], s, m).logits

                t = interleaved({"x": run}, repeats, device)["x"]
                out[f"gpu_{layout}_{dtype_name}_b{batch}_per_episode"] = t / batch
    return out


if __name__ == "__main__":
    main()
