"""``ntre-zoo export MODEL --format onnx -o DIR``: the model as graphs for onnxruntime."""

from __future__ import annotations

import argparse

from .options import add_output


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model to ONNX (encode_support.onnx, segment.onnx, onnx_config.json)",
        description="Writes two ONNX graphs (support images + masks -> support encoding; query + support encoding "
        "-> logits, BG and DO maps at the canvas size) and onnx_config.json with the canvas size, mean/std and how "
        "to map the maps back to an image's size, then checks them with onnxruntime against PyTorch. Needs "
        "pip install 'ntre-zoo[onnx]'.",
    )
    parser.add_argument(
        "model", metavar="MODEL", help="anything from_pretrained accepts: zoo name, hf-hub:ID or a directory"
    )
    parser.add_argument("--format", required=True, choices=("onnx",), help="the graph format (only onnx so far)")
    add_output(parser, "the folder to write: new, empty or a previous export (else refused)", required=True)
    parser.add_argument(
        "--test-size", type=int, default=None, help="canvas side, 9 to 2048 (default: the model's test_size)"
    )
    parser.add_argument("--shot", type=int, default=1, help="supports the graphs take (default: %(default)s)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime-vs-PyTorch check")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..export import export_onnx

    result = export_onnx(
        args.model, args.output, shot=args.shot, test_size=args.test_size, opset=args.opset, verify=not args.no_verify
    )
    for path in (result.encode_support, result.segment, result.config):
        print(f"wrote {path}")
    if result.max_abs_logit_diff is not None:
        print(f"onnxruntime vs PyTorch on a random episode: max |logit diff| = {result.max_abs_logit_diff:.2e}")
    return 0
