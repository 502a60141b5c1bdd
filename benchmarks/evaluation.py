"""Evaluation benchmark: episodes/s of the per-episode path vs the feature-reusing path, same episodes.

    python benchmarks/evaluation.py --backbone resnet50 --test-size 473 --val-images 40 --episodes 300

Writes a synthetic benchmark (VOC layout) to a temporary folder, evaluates the same episodes both ways
in one process, checks that every metric is identical, and prints the ratio. The protocol's reuse comes
from episodes outnumbering val images (PASCAL-5i fold 0: 1000 episodes over about 350 query images;
the synthetic default here keeps a similar ratio at a size that runs on a CPU).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import ntre_zoo
from ntre_zoo.data import DataConfig, build_dataset, make_synthetic_voc
from ntre_zoo.evaluation import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet50", choices=["resnet50", "resnet101", "vgg16_bn"])
    parser.add_argument("--test-size", type=int, default=473)
    parser.add_argument("--val-images", type=int, default=40)
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--shot", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=321)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = ntre_zoo.create_model(args.backbone, test_size=args.test_size).eval().to(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        make_synthetic_voc(tmp, seed=0, train=0, val=args.val_images, progress=False)
        config = DataConfig(
            root=str(Path(tmp) / "VOCdevkit" / "VOC2012"), fold=0, shot=args.shot, test_size=args.test_size
        )
        dataset = build_dataset(config, "val", episodes=args.episodes, seed=args.seed, progress=False)
        queries = len({dataset.sample(i)[0] for i in range(args.episodes)})
        timings, results = {}, {}
        for name, reuse in (("per_episode", False), ("reuse", True)):
            start = time.perf_counter()
            results[name] = evaluate(
                model, dataset, reuse_features=reuse, batch_size=args.batch_size, device=args.device, progress=False
            )
            timings[name] = time.perf_counter() - start
    identical = results["per_episode"].to_dict() == results["reuse"].to_dict()
    out = {
        "backbone": args.backbone,
        "test_size": args.test_size,
        "shot": args.shot,
        "episodes": args.episodes,
        "distinct_queries": queries,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "per_episode_eps": args.episodes / timings["per_episode"],
        "reuse_eps": args.episodes / timings["reuse"],
        "speedup": timings["per_episode"] / timings["reuse"],
        "identical_metrics": identical,
        "miou": results["reuse"].miou,
        "fb_iou": results["reuse"].fb_iou,
    }
    print(
        f"{args.backbone} {args.shot}-shot, test size {args.test_size}, {args.episodes} episodes over "
        f"{queries} query images, {args.device}, {out['threads']} threads"
    )
    print(f"  per-episode path   {out['per_episode_eps']:7.3f} episodes/s")
    print(f"  feature reuse      {out['reuse_eps']:7.3f} episodes/s   speedup {out['speedup']:.2f}x")
    print(f"  identical metrics  {identical} (mIoU {100 * out['miou']:.2f}, FB-IoU {100 * out['fb_iou']:.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    if not identical:
        raise SystemExit("The two paths disagree: this is a bug.")


if __name__ == "__main__":
    main()
