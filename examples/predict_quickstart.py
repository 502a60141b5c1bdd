"""Segment a query from one annotated support, offline.

    python examples/predict_quickstart.py [--model NAME_OR_DIR] [-o DIR]

Writes a synthetic support image, its mask and a query to -o/--output as PNG files (the way your own files
would sit on disk), then predicts from the paths. With no --model it uses the demo model shipped inside
the package (ntrenet_tiny.synthetic_fold0).
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import ntre_zoo
from ntre_zoo.data import synthetic_episode
from ntre_zoo.demo import DEMO_MODEL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="anything ntre_zoo.from_pretrained accepts")
    parser.add_argument("-o", "--output", default="quickstart_out", help="folder to write (default: %(default)s)")
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    supports, masks, query, query_mask = synthetic_episode(seed=7, fold=0, shot=1)
    Image.fromarray(supports[0]).save(out / "support.png")
    Image.fromarray(masks[0] * 255).save(out / "support_mask.png")
    Image.fromarray(query).save(out / "query.png")

    if args.model:
        model, name = ntre_zoo.from_pretrained(args.model), args.model
    else:
        model, name = ntre_zoo.from_pretrained(DEMO_MODEL), DEMO_MODEL
    mask = model.predict([out / "support.png"], [out / "support_mask.png"], out / "query.png")
    Image.fromarray(mask * 255).save(out / "prediction.png")
    iou = np.logical_and(mask, query_mask).sum() / max(1, np.logical_or(mask, query_mask).sum())
    print(f"{name}: predicted {int(mask.sum())} target pixels, IoU with the synthetic label {iou:.3f}")
    print(f"wrote {out / 'prediction.png'}")


if __name__ == "__main__":
    main()
