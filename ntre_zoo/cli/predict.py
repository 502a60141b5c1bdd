"""``ntre-zoo predict``: segment query images from annotated supports (masks, boxes, points, scribbles), one
class or several, and write masks, overlays and (``--details``) the probability, BG and DO maps."""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path
from typing import Any

from ..inference.precision import PRECISIONS
from .options import Deprecated, add_output, optional_positional
from .video import add_video_arguments, is_video, predict_video_file

#: Query files a directory contributes.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_KINDS = ("box", "points", "scribble")


class _SupportGroups(argparse.Action):
    """``--class NAME`` opens a class; each ``--support`` joins the last one opened (or the unnamed class)."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        groups = list(getattr(namespace, self.dest) or [])
        if option_string == "--class":
            groups.append((values, []))
        else:
            if not groups:
                groups.append((None, []))
            groups[-1][1].append(values)
        setattr(namespace, self.dest, groups)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="segment your images from a few annotated supports",
        description="Segments each QUERY (files, globs or directories) from annotated supports and writes, per "
        "query, NAME_mask.png (0/1, or label indices with several classes, as a palette PNG) and NAME_overlay.png. "
        "A support is IMG:MASK, IMG:box=x0,y0,x1,y1, IMG:points=x,y[,x,y...] or IMG:scribble=STROKES.png "
        "(pixels of IMG; rules in docs/predict.md). With --class NAME, the --support options after it "
        "belong to that class. Example: ntre-zoo predict DIR --class dog --support d.jpg:d.png "
        "--class cat --support c.jpg:box=10,20,200,180 photos/*.jpg -o results",
    )
    parser.add_argument(
        "model", metavar="MODEL", help="anything from_pretrained accepts: zoo name, hf-hub:ID or a directory"
    )
    optional_positional(
        parser.add_argument("queries", nargs="+", metavar="QUERY", help="image files, globs or directories")
    )
    parser.add_argument(
        "--model",
        dest="old_model",
        action=Deprecated,
        replacement="the model as the first positional argument: ntre-zoo predict MODEL QUERY...",
        help=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--support", dest="groups", action=_SupportGroups, required=True, metavar="IMG:ANNOTATION", help="a support"
    )
    parser.add_argument("--class", dest="groups", action=_SupportGroups, metavar="NAME", help="start a class")
    add_output(parser, "output directory (created)", required=True, old=("--out",))
    parser.add_argument("--device", default=None, help="e.g. cuda (default: cpu)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="number format: fp32, bf16 or fp16 (autocast), or auto: bf16 where the device computes it natively and "
        "the model gains, else fp32 (default: auto)",
    )
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="probability a class needs to claim a pixel (default: 0.5)"
    )
    parser.add_argument(
        "--mask-threshold", type=float, default=None, help="binarise soft support masks: target above it (e.g. 127)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=4,
        help="queries per forward pass; their backbone pass serves every class (default: %(default)s)",
    )
    parser.add_argument("--details", action="store_true", help="also NAME_details.npz and NAME_panel.png")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_video_arguments(parser)
    parser.set_defaults(handler=_run)


def parse_support(spec: str) -> tuple[str, Any]:
    """``IMG:MASK``, ``IMG:box=x0,y0,x1,y1``, ``IMG:points=x,y,...`` or ``IMG:scribble=PATH`` ->
    ``(image path, annotation)``; a path may itself hold ``:`` (the mask form splits where the image exists)."""
    from ..inference.annotations import Box, Points, Scribble

    for kind in _KINDS:
        image, marker, value = spec.rpartition(f":{kind}=")
        if marker:
            break
    else:
        cuts = [i for i, c in enumerate(spec) if c == ":" and Path(spec[:i]).is_file()]
        if not cuts:
            raise ValueError(
                f"--support {spec!r}: expected IMG:MASK, IMG:box=x0,y0,x1,y1, IMG:points=x,y[,x,y...] or "
                "IMG:scribble=STROKES with IMG an existing file."
            )
        return spec[: cuts[0]], spec[cuts[0] + 1 :]
    if kind == "scribble":
        return image, Scribble(value)
    try:
        numbers = [float(v) for v in value.split(",")]
    except ValueError:
        raise ValueError(f"--support {spec!r}: {kind}= takes comma-separated numbers, got {value!r}.") from None
    if kind == "box":
        if len(numbers) != 4:
            raise ValueError(f"--support {spec!r}: box= takes four numbers x0,y0,x1,y1, got {len(numbers)}.")
        return image, Box(*numbers)
    if len(numbers) % 2:
        raise ValueError(f"--support {spec!r}: points= takes x,y pairs, got an odd count ({len(numbers)}).")
    return image, Points(list(zip(numbers[::2], numbers[1::2], strict=True)))


def expand_queries(patterns: list[str]) -> list[Path]:
    """Files, globs (``*``, ``?``, ``[``) and directories (their image files, sorted) -> query paths."""
    paths: list[Path] = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            matches = sorted(Path(p) for p in glob.glob(pattern))
            if not matches:
                raise FileNotFoundError(f"QUERY {pattern!r} matches no file.")
            paths += [p for p in matches if p.is_file()]
        elif Path(pattern).is_dir():
            found = sorted(p for p in Path(pattern).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"QUERY directory {pattern!r} holds no image ({', '.join(IMAGE_SUFFIXES)}).")
            paths += found
        elif Path(pattern).is_file():
            paths.append(Path(pattern))
        else:
            raise FileNotFoundError(f"QUERY {pattern!r}: no such file or directory.")
    stems: dict[str, Path] = {}
    for path in paths:
        if path.stem in stems and stems[path.stem] != path:
            raise ValueError(
                f"Queries {str(stems[path.stem])!r} and {str(path)!r} would write the same outputs "
                f"({path.stem}_mask.png); run them with separate -o/--output directories."
            )
        stems[path.stem] = path
    return list(dict.fromkeys(paths))


def _supports(groups: list[tuple[str | None, list[str]]]) -> dict[str, tuple[list[str], list[Any]]]:
    """The parsed ``--class``/``--support`` groups as ``segment``'s ``{name: (images, annotations)}``."""
    named = [name for name, _ in groups if name is not None]
    if named and groups[0][0] is None:
        raise ValueError("With --class, put every --support after the --class it belongs to.")
    supports: dict[str, tuple[list[str], list[Any]]] = {}
    for name, specs in groups:
        label = name if name is not None else "target"
        if label in supports:
            raise ValueError(f"--class {label!r} is given twice; list all its supports after one --class.")
        if not specs:
            raise ValueError(f"--class {label!r} has no --support; give at least one after it.")
        pairs = [parse_support(spec) for spec in specs]
        supports[label] = ([image for image, _ in pairs], [annotation for _, annotation in pairs])
    return supports


def _model_and_queries(args: argparse.Namespace) -> tuple[str, list[str]]:
    """``(model, query patterns)``: MODEL QUERY..., or with the old ``--model M`` every positional is a query."""
    if args.old_model is not None:
        return args.old_model, [args.model, *(args.queries or [])]
    if not args.queries:
        raise ValueError(
            f"predict takes the model, then at least one QUERY: ntre-zoo predict {args.model} QUERY... "
            "--support IMG:ANNOTATION -o DIR."
        )
    return args.model, args.queries


def _output_names(query: Path, details: bool) -> list[str]:
    """The files ``_write`` writes for ``query`` (``labels.json`` is the run's own)."""
    suffixes = ("mask.png", "overlay.png", *(("details.npz", "panel.png") if details else ()))
    return [f"{query.stem}_{suffix}" for suffix in suffixes]


def _input_files(supports: dict[str, tuple[list[str], list[Any]]], queries: list[Path]) -> list[Path]:
    """Every file the run reads: support images, mask and scribble files, queries."""
    from ..inference.annotations import Scribble

    files = [Path(q) for q in queries]
    for images, marks in supports.values():
        files += [Path(image) for image in images]
        for annotation in marks:
            value = annotation.strokes if isinstance(annotation, Scribble) else annotation
            if isinstance(value, str):
                files.append(Path(value))
    return files


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (resolved links, and hard links where both exist)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_outputs(out: Path, outputs: list[Path], inputs: list[Path]) -> None:
    """Refuse a run that would write over one of its inputs, or into an ``--output`` that is a file, before
    anything is read or written.

    Raises:
        FileExistsError: ``out`` exists and is not a directory.
        ValueError: an output path is an input file, naming both.
    """
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--output {str(out)!r} is a file, not a directory; pass a directory (it is created).")
    for output in outputs:
        for source in inputs:
            if _same_file(output, source):
                raise ValueError(
                    f"{str(output)!r} would write over the input {str(source)!r}; nothing was written. Choose "
                    "another -o/--output directory (e.g. a new folder beside the inputs), or rename the input."
                )


def _run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .._atomic import atomic_write_json
    from ..inference.segment import encode_supports, segment
    from ..model.config import check_int
    from ..zoo.hub import from_pretrained

    batch_size = check_int(args.batch_size, "--batch-size", 1)
    supports = _supports(args.groups)
    model_spec, patterns = _model_and_queries(args)
    queries = expand_queries(patterns)
    videos, queries = [q for q in queries if is_video(q)], [q for q in queries if not is_video(q)]
    named = args.groups[0][0] is not None
    out = Path(args.output)
    outputs = [out / "labels.json", *(out / name for q in queries for name in _output_names(q, args.details))]
    check_outputs(out, outputs, _input_files(supports, queries))
    out.mkdir(parents=True, exist_ok=True)
    model = from_pretrained(model_spec)
    encoded = encode_supports(
        model, supports, device=args.device, precision=args.precision, mask_threshold=args.mask_threshold
    )
    atomic_write_json(out / "labels.json", {"0": "background", **{str(i + 1): n for i, n in enumerate(supports)}})
    for video in videos:
        print(f"{video}: {predict_video_file(args, model, encoded, video, out)['frames']} frame(s) to {out}")
    bar = tqdm(total=len(queries), desc="predict", unit="image", disable=args.no_progress)
    for start in range(0, len(queries), batch_size):
        chunk = queries[start : start + batch_size]
        results = segment(
            model,
            [str(q) for q in chunk],
            encoded,
            threshold=args.threshold,
            device=args.device,
            precision=args.precision,
            batch_size=batch_size,
        )
        for query, result in zip(chunk, results if isinstance(results, list) else [results], strict=True):
            _write(out, query, result, named, supports if args.details else None, model.config.test_size)
        bar.update(len(chunk))
    bar.close()
    print(f"wrote {len(queries)} mask(s) and overlay(s) for {len(supports)} class(es) to {out}")
    return 0


def _write(out: Path, query: Path, result: Any, named: bool, supports: dict[str, Any] | None, canvas: int) -> None:
    """A query's mask and overlay PNGs, and with ``supports`` (``--details``) its arrays and panel."""
    import numpy as np

    from .._atomic import atomic_write
    from ..inference import visualize

    mask = visualize.label_image(result.label_map)
    names = _output_names(query, supports is not None)
    atomic_write(out / names[0], lambda tmp: mask.save(tmp, format="PNG"))
    picture = visualize.overlay(query, result, legend=named)
    atomic_write(out / names[1], lambda tmp: picture.save(tmp, format="PNG"))
    if supports is None:
        return
    arrays = {
        "classes": np.array(result.classes),
        "label_map": result.label_map,
        "probabilities": result.probabilities,
        "bg_map": result.bg_map,
        "do_maps": result.do_maps,
    }

    def save_npz(path: Path) -> None:
        with open(path, "wb") as handle:  # a file object: np.savez would append .npz to the temporary name
            np.savez_compressed(handle, **arrays)

    atomic_write(out / names[2], save_npz)
    visualize.save_panel(out / names[3], query, result, supports, title=query.name, canvas=canvas)
