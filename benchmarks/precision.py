"""What ``precision="auto"`` costs against fp32 and bf16, side by side in one process, through ``predict``.

    python benchmarks/precision.py [--repeats 3] [--threads 1] [--json precision.json]

For the shipped tiny model (its 129 px canvas) and a ResNet-50 NTRENet at 473 (random weights: the time does not
depend on them), per cached query (``predict(support, query)`` with a support encoded once) and per whole
episode (``predict(image, mask, query)``): the median seconds of fp32, bf16 and auto, run alternately, and the
ratio auto / fp32, which must not exceed 1 beyond noise. It runs twice: with the CPU as torch reports it, and
with the other kind simulated (native bf16 reported absent, or present). The simulated run uses this CPU's
kernels, so it shows what auto *chooses* on the other kind, not that kind's speed: its times are this CPU's.
The CPU, its flags and the thread count are printed with the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from unittest import mock

import numpy as np
import torch

import ntre_zoo
from ntre_zoo.demo import DEMO_MODEL
from ntre_zoo.inference.precision import cpu_capabilities, native_bf16, resolve_precision
from ntre_zoo.training.environment import cpu_model

PRECISIONS = ("fp32", "bf16", "auto")


def medians(paths: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each path, run alternately after one warm-up each, so drift hits all alike."""
    for fn in paths.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def scene(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image, query = (rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(2))
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4 : 3 * size // 4, size // 3 : 2 * size // 3] = 1
    return image, mask, query


def measure(model: ntre_zoo.NTRENet, repeats: int) -> dict[str, object]:
    image, mask, query = scene(model.config.test_size)
    supports = {p: model.encode_support(image, mask, precision=p) for p in PRECISIONS}
    paths: dict[str, Callable[[], object]] = {}
    for p in PRECISIONS:
        paths[f"query_{p}"] = lambda p=p: model.predict(supports[p], query, precision=p)
        paths[f"episode_{p}"] = lambda p=p: model.predict(image, mask, query, precision=p)
    times = medians(paths, repeats)
    return {
        "auto_resolves_to": resolve_precision("auto", "cpu", model),
        **{f"{k}_s": v for k, v in times.items()},
        "query_auto_vs_fp32": times["query_auto"] / times["query_fp32"],
        "episode_auto_vs_fp32": times["episode_auto"] / times["episode_fp32"],
        "query_bf16_vs_fp32": times["query_bf16"] / times["query_fp32"],
        "episode_bf16_vs_fp32": times["episode_bf16"] / times["episode_fp32"],
    }


def simulated(native: bool) -> mock._patch_dict:
    """torch.cpu reporting native bf16 (AVX512-BF16) or none, as ``tests/conftest.py``'s ``--cpu-bf16`` does."""
    flags = {"_is_avx512_bf16_supported": lambda: native, "_is_amx_tile_supported": lambda: native}
    return mock.patch.dict(torch.cpu.__dict__, flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each path (the tiny model: 10x)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {  # with their repeats: the tiny model's calls take milliseconds, so it gets ten times as many
        "shipped tiny (129 px)": (ntre_zoo.from_pretrained(DEMO_MODEL), 10 * args.repeats),
        "ResNet-50 (473 px)": (ntre_zoo.create_model("resnet50", test_size=473).eval(), args.repeats),
    }
    host = native_bf16("cpu")
    result: dict[str, object] = {
        "cpu": cpu_model(),
        "cpu_capabilities": cpu_capabilities(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "runs": {},
    }
    print(
        f"CPU: {result['cpu']}; {result['cpu_capabilities']}; {result['threads']} thread(s); torch {torch.__version__}"
    )
    print(
        "| CPU kind | model | auto is | query fp32 / bf16 / auto (s) | auto/fp32 "
        "| episode fp32 / bf16 / auto (s) | auto/fp32 |"
    )
    print("|---" * 7 + "|")
    runs: dict[str, object] = {}
    for kind, native in (("as reported", host), ("simulated", not host)):
        label = f"{kind}: {'native bf16' if native else 'no native bf16'}"
        with simulated(native):
            for name, (model, repeats) in models.items():
                row = measure(model, repeats)
                runs[f"{label} / {name}"] = row
                q = " / ".join(f"{row[f'query_{p}_s']:.3f}" for p in PRECISIONS)
                e = " / ".join(f"{row[f'episode_{p}_s']:.3f}" for p in PRECISIONS)
                print(
                    f"| {label} | {name} | {row['auto_resolves_to']} | {q} | {row['query_auto_vs_fp32']:.2f} | {e} "
                    f"| {row['episode_auto_vs_fp32']:.2f} |",
                    flush=True,
                )
    result["runs"] = runs
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
