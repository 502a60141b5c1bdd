"""``ntre-zoo prepare pascal5i|coco20i``: the benchmark trees from the official archives."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="build PASCAL-5i or COCO-20i from the official archives",
        description="Turns the archives as downloaded (or their extracted folders) into the trees that "
        "`ntre-zoo train/evaluate --dataset pascal5i|coco20i` read. Everything is checked before anything is "
        "written; files are written atomically and a re-run skips those already there. See docs/data.md.",
    )
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    voc = benchmarks.add_parser(
        "pascal5i",
        help="VOC 2012 + SBD -> VOCdevkit/VOC2012 with SegmentationClassAug",
        description="Writes OUT/VOCdevkit/VOC2012/{JPEGImages,SegmentationClassAug,ImageSets}: VOC's labels where "
        "VOC has them (255 boundary kept), SBD's GTcls.Segmentation for the other images. Needs scipy "
        "(pip install 'ntre-zoo[prepare]').",
    )
    voc.add_argument("--voc", required=True, help="VOCtrainval_11-May-2012.tar (or its extracted folder)")
    voc.add_argument("--sbd", required=True, help="SBD's benchmark.tgz (or its extracted folder)")
    voc.add_argument("--out", required=True, help="output directory")
    voc.add_argument("--no-progress", action="store_true", help="no progress bar")
    voc.set_defaults(handler=_run_pascal5i)
    coco = benchmarks.add_parser(
        "coco20i",
        help="COCO 2014 -> train2014/, val2014/, annotations/ and the label PNGs",
        description="Writes OUT/{train2014,val2014,annotations} and builds the semantic labels once (needs "
        "pycocotools: pip install 'ntre-zoo[coco]').",
    )
    coco.add_argument("--images", nargs="+", required=True, help="train2014.zip val2014.zip (or their folders)")
    coco.add_argument("--annotations", required=True, help="annotations_trainval2014.zip (or its folder)")
    coco.add_argument("--out", required=True, help="output directory (the COCO root)")
    coco.add_argument("--no-progress", action="store_true", help="no progress bars")
    coco.set_defaults(handler=_run_coco20i)


def _run_pascal5i(args: argparse.Namespace) -> int:
    from ..data.prepare.voc_sbd import prepare_pascal5i

    summary = prepare_pascal5i(args.voc, args.sbd, args.out, progress=not args.no_progress)
    print(summary)
    print(f"train or evaluate with: --dataset pascal5i --data-root {summary.root}")
    return 0


def _run_coco20i(args: argparse.Namespace) -> int:
    from ..data.prepare.coco2014 import prepare_coco20i

    summary = prepare_coco20i(args.images, args.annotations, args.out, progress=not args.no_progress)
    print(summary)
    print(f"train or evaluate with: --dataset coco20i --data-root {summary.root}")
    return 0
