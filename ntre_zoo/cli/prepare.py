"""``ntre-zoo prepare pascal5i|coco20i``: the benchmark trees from the official archives."""

from __future__ import annotations

import argparse
import math

from .options import add_output

__all__ = ["register"]

#: The default of --max-member-mib (ntre_zoo.data.prepare.archives.DEFAULT_MAX_MEMBER_BYTES, in MiB).
_MAX_MEMBER_MIB = 64


def _positive_mib(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number of MiB, got {text!r}")
    return value


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--max-member-mib",
        type=_positive_mib,
        default=_MAX_MEMBER_MIB,
        metavar="MIB",
        help=f"the most one archive member may expand to, in MiB, and the most pixels (in Mi) an image or label "
        f"may have (default {_MAX_MEMBER_MIB}; no real member comes near it). Larger members are refused as "
        "likely decompression bombs; raise it only for an archive you trust.",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="build PASCAL-5i or COCO-20i from the official archives",
        description="Turns the archives as downloaded (or their extracted folders) into the trees that "
        "`ntre-zoo train/evaluate --dataset pascal5i|coco20i` read. The archives are checked first, the tree is "
        "built beside the output directory and moved in at the end (a failure leaves it as it was), a file already "
        "there is never overwritten, and a re-run writes only the missing files. See docs/data.md.",
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
    add_output(voc, "output directory", required=True, old=("--out",))
    _add_common(voc)
    voc.set_defaults(handler=_run_pascal5i)
    coco = benchmarks.add_parser(
        "coco20i",
        help="COCO 2014 -> train2014/, val2014/, annotations/ and the label PNGs",
        description="Writes OUT/{train2014,val2014,annotations} and builds the semantic labels once (needs "
        "pycocotools: pip install 'ntre-zoo[coco]').",
    )
    coco.add_argument("--images", nargs="+", required=True, help="train2014.zip val2014.zip (or their folders)")
    coco.add_argument("--annotations", required=True, help="annotations_trainval2014.zip (or its folder)")
    add_output(coco, "output directory (the COCO root)", required=True, old=("--out",))
    _add_common(coco)
    coco.set_defaults(handler=_run_coco20i)


def _bytes(mib: float) -> int:
    return round(mib * 2**20)


def _run_pascal5i(args: argparse.Namespace) -> int:
    from ..data.prepare.voc_sbd import prepare_pascal5i

    summary = prepare_pascal5i(
        args.voc, args.sbd, args.output, progress=not args.no_progress, max_member_bytes=_bytes(args.max_member_mib)
    )
    print(summary)
    print(f"train or evaluate with: --dataset pascal5i --data-root {summary.root}")
    return 0


def _run_coco20i(args: argparse.Namespace) -> int:
    from ..data.prepare.coco2014 import prepare_coco20i

    summary = prepare_coco20i(
        args.images,
        args.annotations,
        args.output,
        progress=not args.no_progress,
        max_member_bytes=_bytes(args.max_member_mib),
    )
    print(summary)
    print(f"train or evaluate with: --dataset coco20i --data-root {summary.root}")
    return 0
