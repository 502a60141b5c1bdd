"""``ntre-zoo app``: serve the web app (Gradio) on this machine."""

from __future__ import annotations

import argparse

from .options import Deprecated


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..app.logic import MAX_VIDEO_FRAMES

    parser = subparsers.add_parser(
        "app",
        help="serve the web app: annotate supports with a brush, segment queries, download the masks",
        description="Serves a Gradio page on HOST:PORT that runs the whole predict workflow offline: choose a "
        "model, paint (or upload) the supports' masks, add queries, see the overlays, probability, BG and DO maps, "
        "download the masks. Needs pip install 'ntre-zoo[app]'.",
    )
    parser.add_argument(
        "model",
        nargs="*",
        action="extend",
        metavar="MODEL",
        help="models visitors may choose: zoo name, local directory or hf-hub:ID; the first is shown first "
        "(default: the shipped demo model; the zoo's published names are always offered)",
    )
    parser.add_argument(
        "--model",
        dest="model",
        action=Deprecated,
        append=True,
        replacement="the models as positional arguments: ntre-zoo app MODEL [MODEL ...]",
        help=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--allow-any-model",
        action="store_true",
        help="let visitors load ANY directory of this server or hf-hub: id by typing it (read docs/deploy.md first)",
    )
    parser.add_argument(
        "--max-video-frames",
        type=int,
        default=MAX_VIDEO_FRAMES,
        metavar="N",
        help="refuse video queries of more frames, from their header before decoding (default: %(default)s)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..app import launch
    from ..demo import DEMO_MODEL

    first, *offered = args.model or [DEMO_MODEL]
    launch(
        first,
        host=args.host,
        port=args.port,
        offered=offered,
        allow_any_model=args.allow_any_model,
        max_video_frames=args.max_video_frames,
    )
    return 0
