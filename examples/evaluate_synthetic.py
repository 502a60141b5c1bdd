"""Run the standard evaluation protocol on the synthetic benchmark, from Python.

    python examples/evaluate_synthetic.py [--model NAME_OR_DIR] [--episodes 200]

The same as `ntre-zoo make-synthetic -o DIR` followed by `ntre-zoo evaluate MODEL --dataset pascal5i
--data-root DIR/VOCdevkit/VOC2012 --fold 0`.
"""

import argparse
import tempfile
from pathlib import Path

import ntre_zoo
from ntre_zoo.data import DataConfig, build_dataset, make_synthetic_voc
from ntre_zoo.demo import DEMO_MODEL
from ntre_zoo.evaluation import evaluate, format_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help=f"anything ntre_zoo.from_pretrained accepts (default: {DEMO_MODEL})")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--val-images", type=int, default=120)
    args = parser.parse_args()
    model = ntre_zoo.from_pretrained(args.model or DEMO_MODEL)
    with tempfile.TemporaryDirectory() as tmp:
        make_synthetic_voc(tmp, seed=0, train=0, val=args.val_images)
        config = DataConfig(root=str(Path(tmp) / "VOCdevkit" / "VOC2012"), fold=0, test_size=model.config.test_size)
        result = evaluate(model, build_dataset(config, "val", episodes=args.episodes), seed=321)
    print(format_table(result))


if __name__ == "__main__":
    main()
