"""Inference benchmark: the baseline per-episode path vs the optimised path, side by side in one process.

    python benchmarks/inference.py --backbone resnet50 --size 473 --shots 1 --queries 8 [--device cuda]

Prints the FLOPs of one episode, this machine's measured 3x3-convolution and GEMM rates, per-episode
times of both paths, the achieved fraction of the conv rate, the amortised time per query when one
support set serves many queries, and the peak resident memory of a predict() call (in a fresh process).
On CUDA it also reports fp32 / bf16 / fp16 autocast, channels_last, batch 1 and batched.

On CPU it also puts fp32 and bf16 autocast side by side (unless --no-bf16): the CPU's capabilities as torch
sees them and what precision="auto" resolves to, the conv/GEMM rates in bf16, the amortised time per query
in bf16 against the fp32 baseline episode, and the mask agreement of bf16 with fp32, on the random-weight
episodes and on synthetic-benchmark episodes with the shipped model (--agreement-episodes).
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
from ntre_zoo.data import synthetic_episode
from ntre_zoo.demo import DEMO_MODEL
from ntre_zoo.inference.precision import cpu_capabilities, native_bf16, resolve_precision
from ntre_zoo.training.environment import cpu_model


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


def machine_rates(
    device: torch.device,
    repeats: int,
    dtype: torch.dtype | None = None,
    layout: torch.memory_format = torch.contiguous_format,
    n: int = 2048,
) -> dict[str, float]:
    """GFLOP/s of a 512->512 3x3 convolution on a 60x60 map and of an ``n``^3 GEMM, in fp32 or under autocast to
    ``dtype``, the convolution in ``layout``."""
    x = torch.randn(1, 512, 60, 60, device=device).contiguous(memory_format=layout)
    w = torch.randn(512, 512, 3, 3, device=device).contiguous(memory_format=layout)
    a = torch.randn(n, n, device=device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        times = interleaved({"conv": lambda: F.conv2d(x, w, padding=1), "gemm": lambda: a @ a}, repeats * 3, device)
    conv = "conv3x3" if layout == torch.contiguous_format else "conv3x3_cl"
    return {conv: 2 * 512 * 512 * 9 * 3600 / times["conv"] / 1e9, "gemm": 2 * n**3 / times["gemm"] / 1e9}


def synthetic_agreement(episodes: int) -> dict[str, float]:
    """Mask agreement of bf16 autocast with fp32 for the shipped model on synthetic-benchmark episodes (fold 0,
    novel classes, seeds 0..episodes-1), and its time per episode in both."""
    model = ntre_zoo.from_pretrained(DEMO_MODEL)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model runs fastest on one
    equal = total = 0
    seconds = {"fp32": 0.0, "bf16": 0.0}
    for seed in range(episodes):
        supports, masks, query, _ = synthetic_episode(seed, fold=0, shot=1, novel=True)
        out = {}
        for precision in seconds:
            start = time.perf_counter()
            out[precision] = model.predict(supports, masks, query, precision=precision)
            seconds[precision] += time.perf_counter() - start
        equal += int((out["fp32"] == out["bf16"]).sum())
        total += out["fp32"].size
    torch.set_num_threads(threads)
    return {
        "synthetic_agreement": equal / total,
        "synthetic_episodes": episodes,
        "synthetic_fp32_episode_s": seconds["fp32"] / episodes,
        "synthetic_bf16_episode_s": seconds["bf16"] / episodes,
    }


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def cpu_precisions(fast, queries, supports, masks, args, baseline_s: float) -> dict[str, object]:
    """fp32 vs bf16 autocast on the CPU: rates, one cached support set serving the queries, mask agreement."""
    device = torch.device("cpu")

    def many(dtype: torch.dtype | None, count: int) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                support = fast.encode_support(supports, masks)
                batches = [fast(queries[i : min(i + 4, count)], support=support).logits for i in range(0, count, 4)]
                return torch.cat(batches).float()

        return run

    many(torch.bfloat16, 1)()  # warm-up (one query) of the bf16 kernels; fp32 ran already
    logits: dict[str, torch.Tensor] = {}
    samples: dict[str, list[float]] = {name: [] for name in PRECISIONS}
    for _ in range(args.bf16_repeats):  # alternately, so that drift hits both alike (bf16 is slow: no extra warm-up)
        for name, dtype in PRECISIONS.items():
            start = time.perf_counter()
            logits[name] = many(dtype, len(queries))()
            samples[name].append(time.perf_counter() - start)
    agreement = (logits["fp32"].argmax(1) == logits["bf16"].argmax(1)).double().mean().item()
    times = {name: statistics.median(values) for name, values in samples.items()}
    # a 1024^3 GEMM: emulated bf16 can run 100x slower than fp32
    rates = {name: machine_rates(device, 1, dtype, torch.channels_last, 1024) for name, dtype in PRECISIONS.items()}
    out: dict[str, object] = {
        "cpu": cpu_model(),
        "cpu_capabilities": cpu_capabilities(),
        "native_bf16": native_bf16("cpu"),
        "auto_resolves_to": resolve_precision("auto", "cpu", fast),
        **{f"{name}_{op}_gflops": rates[name][op] for name in PRECISIONS for op in ("conv3x3_cl", "gemm")},
        "fp32_many_per_query_s": times["fp32"] / len(queries),
        "bf16_many_per_query_s": times["bf16"] / len(queries),
        "bf16_many_vs_baseline_episode": times["bf16"] / len(queries) / baseline_s,
        "bf16_vs_fp32_per_query": times["bf16"] / times["fp32"],
        "bf16_mask_agreement_random_weights": agreement,
    }
    if args.agreement_episodes:
        out.update(synthetic_agreement(args.agreement_episodes))
    return out


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
    parser.add_argument("--no-bf16", action="store_true", help="CPU: skip the bf16 autocast comparison")
    parser.add_argument("--bf16-repeats", type=int, default=1, help="timed runs of each precision (default: 1)")
    parser.add_argument("--agreement-episodes", type=int, default=100, help="synthetic episodes for the agreement")
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
        if not args.no_bf16:
            result.update(cpu_precisions(fast, queries_cl, supports_cl, masks, args, times["baseline"]))
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
    if "bf16_many_per_query_s" in result:
        flags = result["cpu_capabilities"]
        print(f"  CPU                        {result['cpu']}: {', '.join(f'{k}={v}' for k, v in flags.items())}")
        print(f"  native bf16                {result['native_bf16']}; 'auto' resolves to {result['auto_resolves_to']}")
        for name in PRECISIONS:
            conv, gemm = result[f"{name}_conv3x3_cl_gflops"], result[f"{name}_gemm_gflops"]
            print(f"  {name} 3x3 conv NHWC / GEMM 1024^3 {conv:6.1f} / {gemm:.1f} GFLOP/s")
        for name in ("fp32", "bf16"):
            per_query = result[f"{name}_many_per_query_s"]
            print(
                f"  {args.queries} queries, one support  {name} {per_query:8.3f} s/query = "
                f"{per_query / times['baseline']:.3f} x baseline episode"
            )
        print(f"  bf16 / fp32 per query      {result['bf16_vs_fp32_per_query']:8.2f}")
        print(f"  bf16 mask agreement        {result['bf16_mask_agreement_random_weights']:.4%} (random weights)")
        if "synthetic_agreement" in result:
            print(
                f"  shipped model, {result['synthetic_episodes']} synthetic episodes: bf16 mask agreement "
                f"{result['synthetic_agreement']:.4%}, {result['synthetic_fp32_episode_s']:.4f} s fp32 vs "
                f"{result['synthetic_bf16_episode_s']:.4f} s bf16 per episode"
            )
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
