"""The paper's Table 3 ablation on the synthetic benchmark: baseline, +BGEM, +DOEM, +PCL.

    python examples/ablation_synthetic.py --work runs/ablation [--jobs 2] [--epochs 30]

Each variant is the shipped tiny model's recipe (narrow resnet50s, 16-channel head, synthetic fold 0,
30 epochs of batch 8 on one CPU thread, the CPU kernels pinned) with modules or losses switched off:

| variant  | switches                                                        |
|----------|-----------------------------------------------------------------|
| baseline | --no-bg-eliminating --no-do-eliminating --loss pcl_weight=0 (no BG mining at all) |
| +BGEM    | --no-do-eliminating --loss pcl_weight=0                         |
| +DOEM    | --loss pcl_weight=0                                             |
| +PCL     | (the full model)                                                |

The +PCL variant is the shipped model's command, so it writes the shipped weights file. Every variant's
last-epoch weights are then evaluated on the 5 novel classes of fold 0 with the same
1000 episodes (seed 321). Prints a table like the paper's Table 3 and writes it to --work/ablation.md
and ablation.json. Variants run as separate processes, --jobs at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import ntre_zoo
from ntre_zoo.data import DataConfig, build_dataset, make_synthetic_voc
from ntre_zoo.evaluation import evaluate
from ntre_zoo.training.environment import PINNED_CPU_KERNELS

VARIANTS = {
    "baseline": ["--no-bg-eliminating", "--no-do-eliminating", "--loss", "pcl_weight=0"],
    "+BGEM": ["--no-do-eliminating", "--loss", "pcl_weight=0"],
    "+DOEM": ["--loss", "pcl_weight=0"],
    "+PCL": [],
}
TINY = [
    "--layers",
    "1",
    "1",
    "1",
    "1",
    "--channels",
    "8",
    "16",
    "32",
    "64",
    "--stem-width",
    "8",
    "--reduce-dim",
    "16",
    "--pyramid-bins",
    "8",
    "4",
    "2",
    "--test-size",
    "129",
    "--backbone-weights",
    "none",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/ablation", help="data and runs go here")
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at once (one CPU thread each)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--episodes", type=int, default=1000)
    args = parser.parse_args()
    work = Path(args.work)
    data = work / "synthetic"
    if not (data / "VOCdevkit").is_dir():
        make_synthetic_voc(data, seed=0, train=1000, val=300)
    root = data / "VOCdevkit" / "VOC2012"

    # 1. Train the variants, --jobs at a time, each on one thread with the CPU kernels pinned (the recipe of the
    # shipped tiny model, so the +PCL row is that model, byte for byte).
    env = {**os.environ, **PINNED_CPU_KERNELS}
    pending = list(VARIANTS.items())
    running = []
    times = {}
    while pending or running:
        while pending and len(running) < args.jobs:
            name, switches = pending.pop(0)
            out = work / name.strip("+").lower()
            if (out / "last" / "model.safetensors").is_file():
                print(f"{name}: already trained in {out}")
                continue
            command = [
                sys.executable,
                "-m",
                "ntre_zoo",
                "train",
                "--dataset",
                "pascal5i",
                "--data-root",
                str(root),
                "--fold",
                "0",
                "-o",
                str(out),
                *TINY,
                "--epochs",
                str(args.epochs),
                "--batch-size",
                "8",
                "--val-every",
                "0",
                "--no-progress",
                *switches,
            ]
            print(f"{name}: {' '.join(command[2:])}")
            running.append((name, time.perf_counter(), subprocess.Popen(command, env=env)))
        for item in list(running):
            name, start, process = item
            if process.poll() is not None:
                running.remove(item)
                if process.returncode != 0:
                    raise SystemExit(f"{name} failed with exit code {process.returncode}")
                times[name] = time.perf_counter() - start
                print(f"{name}: trained in {times[name] / 60:.1f} min")
        time.sleep(2)

    # 2. Evaluate every variant on the same episodes.
    rows = {}
    for name in VARIANTS:
        model = ntre_zoo.from_pretrained(work / name.strip("+").lower() / "last")
        config = DataConfig(root=str(root), fold=0, test_size=model.config.test_size)
        dataset = build_dataset(config, "val", episodes=args.episodes, seed=321, progress=False)
        result = evaluate(model, dataset, progress=False)
        rows[name] = {
            "class_iou": result.class_iou,
            "miou": result.miou,
            "fb_iou": result.fb_iou,
            "precision": result.precision,
            "train_minutes": times.get(name, float("nan")) / 60,
        }

    classes = list(next(iter(rows.values()))["class_iou"])
    header = "| variant | " + " | ".join(f"class {c}" for c in classes) + " | mIoU | FB-IoU | precision |"
    lines = [header, "|" + "---|" * (len(classes) + 4)]
    for name, row in rows.items():
        cells = [f"{100 * row['class_iou'][c]:.1f}" for c in classes]
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {100 * row['miou']:.2f} | {100 * row['fb_iou']:.2f} | {100 * row['precision']:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    (work / "ablation.md").write_text(table + "\n")
    (work / "ablation.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
