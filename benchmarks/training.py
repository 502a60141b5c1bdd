"""Training benchmark: optimizer steps/s, episodes/s and peak memory of the real trainer on a VOC-layout dataset.

    python benchmarks/training.py --data-root syn/VOCdevkit/VOC2012 --backbone resnet50 --crop-size 473 \\
        --batch-size 8 --steps 40 --device cuda --workers 8 --json out.json

Runs :class:`ntre_zoo.training.Trainer` (the reference recipe: SGD, poly lr, PCL bank, frozen backbone with
train-mode BN) for ``--steps`` steps and times every step after ``--warmup``; the backbone is random (the
time of a step does not depend on the weights). The default precision is the trainer's (``--precision auto``:
bf16 where native, fp32 before Ampere); the trainer stops on a non-finite loss, and the JSON records the last
loss and the precision it resolved to. ``--tiny`` takes the narrow test model (for a smoke run on a CPU). ``--save DIR``
keeps the weights for an evaluation run.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import ntre_zoo
from ntre_zoo.data import AugmentConfig, DataConfig, build_dataset
from ntre_zoo.training import TrainConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, help="a VOC2012 directory (e.g. from make-synthetic)")
    parser.add_argument("--backbone", default="resnet50", choices=["resnet50", "resnet101", "vgg16_bn"])
    parser.add_argument("--crop-size", type=int, default=473)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20, help="steps left out of the timing")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    parser.add_argument("--tiny", action="store_true", help="the narrow test model (smoke runs on a CPU)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--save", help="save the trained weights here (save_pretrained)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.steps <= args.warmup:
        raise SystemExit(f"--steps ({args.steps}) must exceed --warmup ({args.warmup}).")

    device = torch.device(args.device)
    torch.manual_seed(0)
    tiny = {"layers": (1, 1, 1, 1), "channels": (8, 16, 32, 64), "stem_width": 8, "reduce_dim": 16} if args.tiny else {}
    model = ntre_zoo.create_model(args.backbone, test_size=args.crop_size, **tiny)
    data = DataConfig(dataset="pascal5i", root=args.data_root, augment=AugmentConfig(crop_size=args.crop_size))
    train = build_dataset(data, "train", progress=False)
    config = TrainConfig(
        epochs=10**6,  # the schedule's length does not change a step's cost; max_steps ends the run
        batch_size=args.batch_size,
        max_steps=args.steps,
        precision=args.precision,
        num_workers=args.workers,
        val_every=0,
        progress=False,
    )
    trainer = Trainer(model, train, config, device=device)
    stamps: list[float] = []
    losses: list[float] = []
    step = trainer.train_step

    def timed_step(batch: Any) -> dict[str, Any]:
        terms = step(batch)
        losses.append(float(terms["total"]))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())
        return terms

    trainer.train_step = timed_step  # type: ignore[method-assign]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    trainer.fit()
    total = time.perf_counter() - start
    seconds = [b - a for a, b in zip(stamps[args.warmup - 1 : -1], stamps[args.warmup :], strict=True)]
    median = statistics.median(seconds)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "backbone": args.backbone,
        "crop_size": args.crop_size,
        "batch_size": args.batch_size,
        "precision_asked": args.precision,
        "precision": trainer.precision,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "losses_finite": all(map(math.isfinite, losses)),
        "workers": args.workers,
        "steps_timed": len(seconds),
        "median_step_s": median,
        "steps_per_s": 1 / median,
        "episodes_per_s": args.batch_size / median,
        "wall_s_all_steps": total,
        "peak_allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / 2**30 if device.type == "cuda" else None,
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))
    if args.save:
        model.save_pretrained(args.save, metadata={"dataset": "synthetic", "note": "benchmarks/training.py weights"})
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
