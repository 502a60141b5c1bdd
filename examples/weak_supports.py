"""What weak support annotations cost: mask, box, scribble and points supports on the synthetic benchmark with
the shipped model and the standard protocol (fold 0, 1000 episodes, seed 321), 1-shot and 5-shot.

    python examples/weak_supports.py [--episodes 1000] [--shots 1 5] [--json weak_supports.json]

Each episode is the one ``ntre-zoo evaluate`` draws (same query, class and supports); only the supports'
annotation changes. Every support's weak annotation is derived from its ground-truth mask by
``ntre_zoo.inference.annotations.annotation_from_mask`` (largest component -> its box, its skeleton as the
scribble, 3 clicks inside it), seeded by (episode seed, the support image's index in the val list, the class),
so an image is annotated the same way in every episode it serves, and rasterised by the rules of ``Box``,
``Scribble`` and ``Points``. The four kinds of one episode go through one ``model.segment`` call, where each
is its own episode and the query is encoded once; a kind's prediction is its probability > 0.5, which is
``predict``'s mask, and is scored like ``evaluate`` (class mIoU, FB-IoU at the original size, 255 ignored).
The mask row therefore reproduces the manifest's numbers (46.28 / 47.11 mIoU). A support set that
``encode_support`` refuses (a target too small to survive the model's canvas, which a thin scribble or small
click discs can be) gets no answer: the episode is scored as all background and counted as refused.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import ntre_zoo
from ntre_zoo.data import DataConfig, build_dataset, make_synthetic_voc
from ntre_zoo.data.episodes import binary_label
from ntre_zoo.data.index import read_label
from ntre_zoo.demo import DEMO_MODEL
from ntre_zoo.evaluation import FewShotMeter, episode_stats
from ntre_zoo.inference.annotations import ANNOTATION_KINDS, annotation_from_mask

KINDS = ("mask", *ANNOTATION_KINDS)


def annotate(dataset, cache: dict, index: int, class_id: int, seed: int, canvas: int) -> dict:
    """Every kind of annotation of source image ``index`` for ``class_id``, and each one's IoU with the mask."""
    key = (index, class_id)
    if key not in cache:
        mask = binary_label(read_label(dataset.source.labels[index]), class_id).numpy()
        points_seed = int(np.random.SeedSequence([seed, index, class_id]).generate_state(1)[0])
        found = {"mask": mask}
        for kind in ANNOTATION_KINDS:
            found[kind] = annotation_from_mask(mask, kind, seed=points_seed, canvas=canvas)
        target = mask == 1
        ious = {}
        for kind, annotation in found.items():
            drawn = target if kind == "mask" else annotation.to_mask(mask.shape, canvas=canvas) == 1
            ious[kind] = float((drawn & target).sum() / (drawn | target).sum())
        cache[key] = (found, ious)
    return cache[key]


def measure(model, voc: Path, shot: int, episodes: int, seed: int) -> dict:
    config = DataConfig(root=str(voc), fold=0, shot=shot, test_size=model.config.test_size)
    dataset = build_dataset(config, "val", episodes=episodes, seed=seed, progress=False)
    names = {c: dataset.class_name(c) for c in dataset.classes}
    meters = {kind: FewShotMeter(dataset.classes, names) for kind in KINDS}
    cache: dict = {}
    support_iou = {kind: [] for kind in KINDS}
    refused = dict.fromkeys(KINDS, 0)
    for i in tqdm(range(len(dataset)), desc=f"{shot}-shot", unit="episode"):
        query, class_id, supports = dataset.sample(i)
        annotated = [annotate(dataset, cache, s, class_id, seed, model.config.test_size) for s in supports]
        images = [dataset.source.images[s] for s in supports]
        encoded = {}
        for kind in KINDS:
            try:
                encoded[kind] = model.encode_support(images, [found[kind] for found, _ in annotated], precision="fp32")
            except ValueError:  # a support target that vanishes at the model's canvas: predict refuses it
                refused[kind] += 1
        result = model.segment(dataset.source.images[query], encoded, precision="fp32")
        label = binary_label(read_label(dataset.source.labels[query]), class_id)
        for kind in KINDS:
            probability = result.probabilities[result.classes.index(kind)] if kind in encoded else 0 * label
            prediction = torch.from_numpy((np.asarray(probability) > 0.5).astype(np.int64))  # refused: no answer
            meters[kind].update(class_id, episode_stats(prediction, label))
            support_iou[kind] += [ious[kind] for _, ious in annotated]
    out = {}
    for kind in KINDS:
        result = meters[kind].result(seed=seed)
        out[kind] = {
            "miou": result.miou,
            "fb_iou": result.fb_iou,
            "support_iou": float(np.mean(support_iou[kind])),
            "refused_episodes": refused[kind],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help=f"anything ntre_zoo.from_pretrained accepts (default: {DEMO_MODEL})")
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=321)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--val-images", type=int, default=300, help="as `ntre-zoo make-synthetic` (default: 300)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the tiny model runs best on one)")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = ntre_zoo.from_pretrained(args.model or DEMO_MODEL)
    start = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        voc = make_synthetic_voc(tmp, seed=0, train=0, val=args.val_images, progress=False)
        for shot in args.shots:
            results[shot] = measure(model, voc, shot, args.episodes, args.seed)
    elapsed = time.perf_counter() - start

    header = " | ".join(f"{s}-shot mIoU | {s}-shot FB-IoU" for s in args.shots)
    print(f"\n| support | {header} | support mask IoU with the ground truth | refused episodes |")
    print("|---" * (3 + 2 * len(args.shots)) + "|")
    for kind in KINDS:
        cells = []
        for shot in args.shots:
            r, base = results[shot][kind], results[shot]["mask"]
            delta = "" if kind == "mask" else f" ({100 * (r['miou'] - base['miou']):+.2f})"
            cells += [f"{100 * r['miou']:.2f}{delta}", f"{100 * r['fb_iou']:.2f}"]
        refusals = " / ".join(str(results[s][kind]["refused_episodes"]) for s in args.shots)
        iou = 100 * results[args.shots[0]][kind]["support_iou"]
        print(f"| {kind} | {' | '.join(cells)} | {iou:.1f} | {refusals} |")
    print(
        f"\n{args.episodes} episodes per shot, seed {args.seed}, {elapsed:.0f} s, {torch.get_num_threads()} thread(s)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"episodes": args.episodes, "seed": args.seed, "results": results}))


if __name__ == "__main__":
    main()
