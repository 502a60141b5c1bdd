"""``ntre-zoo predict``: segment query images from annotated supports (masks, boxes, points, scribbles), one
class or several, and write masks, overlays and (``--details``) the probability, BG and DO maps."""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from ..inference.precision import PRECISIONS
from .options import Deprecated, add_output, optional_positional
from .video import VIDEO_SUFFIXES, add_video_arguments, is_video, predict_video_file, video_output_names

#: Query files a directory contributes.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_KINDS = ("box", "points", "scribble")
#: The run's own files in the output directory: what wrote it (read back by a rerun), label names, failures.
RUN_FILE, LABELS_FILE, FAILURES_FILE = "predict.json", "labels.json", "failures.json"
#: Exit status when some queries could not be read (the others are written); 1 is an error that stopped the run.
EXIT_SOME_FAILED = 3
#: Failures listed on the terminal (all of them go to failures.json).
_SHOWN_FAILURES = 5


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
    parser.add_argument(
        "--read-ahead",
        type=int,
        default=8,
        help="queries decoded ahead in a thread while the model runs; bounds memory (default: %(default)s)",
    )
    parser.add_argument("--details", action="store_true", help="also NAME_details.npz and NAME_panel.png")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first query that cannot be read (default: report it, skip it, exit with status 3)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="recompute every query, also into an output directory written with other supports or settings",
    )
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
    """Files, globs (``*``, ``?``, ``[``) and directories (their image and video files, sorted) -> query paths."""
    paths: list[Path] = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            matches = sorted(Path(p) for p in glob.glob(pattern))
            if not matches:
                raise FileNotFoundError(f"QUERY {pattern!r} matches no file.")
            paths += [p for p in matches if p.is_file()]
        elif Path(pattern).is_dir():
            kinds = (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES)
            found = sorted(p for p in Path(pattern).iterdir() if p.suffix.lower() in kinds and p.is_file())
            if not found:
                raise FileNotFoundError(
                    f"QUERY directory {pattern!r} holds no image ({', '.join(IMAGE_SUFFIXES)}) and no video "
                    f"({', '.join(VIDEO_SUFFIXES)})."
                )
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


def _identities(path: Path) -> list[Any]:
    """What makes two paths one file: the resolved path, and the device and inode of a file that exists."""
    keys: list[Any] = [path.resolve()]
    try:
        stat = os.stat(path)
    except OSError:
        return keys
    return [*keys, (stat.st_dev, stat.st_ino)]


def check_outputs(out: Path, outputs: list[Path], inputs: list[Path]) -> None:
    """Refuse a run that would write over one of its inputs (links included), or into an ``--output`` that is a
    file, before anything is read or written. Linear in the number of files: folders of any size.

    Raises:
        FileExistsError: ``out`` exists and is not a directory.
        ValueError: an output path is an input file, naming both.
    """
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--output {str(out)!r} is a file, not a directory; pass a directory (it is created).")
    sources = {key: source for source in inputs for key in _identities(source)}
    for output in outputs:
        source = next((sources[key] for key in _identities(output) if key in sources), None)
        if source is not None:
            raise ValueError(
                f"{str(output)!r} would write over the input {str(source)!r}; nothing was written. Choose "
                "another -o/--output directory (e.g. a new folder beside the inputs), or rename the input."
            )


def _sha256(path: Path) -> str:
    """The file's sha256, or its path where it cannot be read (encoding the supports then says why)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return f"unreadable {path}"


def _settings(model: str, supports: dict[str, tuple[list[str], list[Any]]], args: argparse.Namespace) -> dict:
    """Everything that decides a query's outputs, as ``predict.json`` records it: the model, each class's supports
    by content (sha256 of the files, the boxes and points as given) and the options that change masks."""
    from ..inference.annotations import Scribble

    def mark(annotation: Any) -> str:
        if isinstance(annotation, Scribble) and isinstance(annotation.strokes, str):
            return f"scribble sha256 {_sha256(Path(annotation.strokes))}"
        return f"mask sha256 {_sha256(Path(annotation))}" if isinstance(annotation, str) else repr(annotation)

    return {
        "model": str(Path(model).resolve()) if Path(model).is_dir() else model,
        "classes": {
            name: [[_sha256(Path(image)), mark(annotation)] for image, annotation in zip(*pair, strict=True)]
            for name, pair in supports.items()
        },
        "threshold": args.threshold,
        "mask_threshold": args.mask_threshold,
        "precision": args.precision,
    }


def _to_compute(
    out: Path, queries: list[Path], settings: dict, overwrite: bool, names: Callable[[Path], list[str]]
) -> list[Path]:
    """The queries (images and videos) a run computes: with ``overwrite`` all of them, else those whose outputs
    (``names(query)``) are not all there (each is written atomically, so one that exists is complete) in a
    directory that ``predict.json`` says the same settings wrote.

    Raises:
        FileExistsError: ``out`` holds outputs of other settings, or outputs and no ``predict.json``, naming
            what differs and the ways out (``--overwrite``, another ``-o``).
    """
    if overwrite:
        return queries
    record = out / RUN_FILE
    if record.is_file():
        try:
            previous = json.loads(record.read_text(encoding="utf-8")).get("settings", {})
        except (ValueError, AttributeError):
            previous = {}
        differ = [key for key in settings if previous.get(key) != settings[key]]
        if differ:
            raise FileExistsError(
                f"--output {str(out)!r} holds the outputs of another run: its {', '.join(differ)} differ(s) from "
                f"this one's ({record}). Nothing was written. Rerun with the same model, supports and options to "
                "resume it, pass --overwrite to recompute every query there, or choose another -o/--output."
            )
    elif out.is_dir():
        found = next((out / n for q in queries for n in names(q) if (out / n).exists()), None)
        if found is not None:
            raise FileExistsError(
                f"--output {str(out)!r} already holds {found.name} but no {RUN_FILE} saying which supports and "
                "settings wrote it, so it cannot be resumed. Nothing was written. Pass --overwrite to recompute "
                "every query there, or choose another -o/--output."
            )
    return [q for q in queries if not all((out / n).exists() for n in names(q))]


def _remove_outputs(out: Path, queries: list[Path]) -> None:
    """``--overwrite``: delete every output an earlier run wrote for ``queries`` (details included), so that none
    outlives the ``predict.json`` of other settings; warn about outputs of other queries, which stay."""
    from .._atomic import remove_stale_temporaries

    names = {name for q in queries for name in _output_names(q, True)}
    remove_stale_temporaries(out, names)
    for name in names:
        (out / name).unlink(missing_ok=True)
    stems = {q.stem for q in queries}
    others = sorted(p.name for p in out.glob("*_mask.png") if p.name.removesuffix("_mask.png") not in stems)
    if others:
        print(
            f"ntre-zoo predict: note: {len(others)} mask(s) in {out} belong to no query of this run (e.g. "
            f"{others[0]}) and stay as an earlier run wrote them.",
            file=sys.stderr,
        )


def _run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .._atomic import atomic_write_json, remove_stale_temporaries
    from ..inference.segment import encode_supports
    from ..inference.stream import iter_segment
    from ..model.config import check_int
    from ..zoo.hub import from_pretrained

    batch_size = check_int(args.batch_size, "--batch-size", 1)
    read_ahead = check_int(args.read_ahead, "--read-ahead", 1)
    supports = _supports(args.groups)
    model_spec, patterns = _model_and_queries(args)
    queries = expand_queries(patterns)
    named = args.groups[0][0] is not None
    out = Path(args.output)

    def names(query: Path) -> list[str]:
        return video_output_names(query, args) if is_video(query) else _output_names(query, args.details)

    own = [out / RUN_FILE, out / LABELS_FILE, out / FAILURES_FILE]
    check_outputs(out, [*own, *(out / name for q in queries for name in names(q))], _input_files(supports, queries))
    settings = _settings(model_spec, supports, args)
    todo = _to_compute(out, queries, settings, args.overwrite, names)
    videos, queries = [q for q in queries if is_video(q)], [q for q in queries if not is_video(q)]
    videos_todo, todo = [q for q in todo if is_video(q)], [q for q in todo if not is_video(q)]
    out.mkdir(parents=True, exist_ok=True)
    model = from_pretrained(model_spec)
    encoded = encode_supports(
        model, supports, device=args.device, precision=args.precision, mask_threshold=args.mask_threshold
    )
    if args.overwrite:
        _remove_outputs(out, queries)
    else:
        remove_stale_temporaries(out, [name for q in todo for name in _output_names(q, True)])
    atomic_write_json(out / RUN_FILE, {"settings": settings})
    atomic_write_json(out / LABELS_FILE, {"0": "background", **{str(i + 1): n for i, n in enumerate(supports)}})
    for video in videos:
        if video not in videos_todo:
            print(f"{video}: skipped, its outputs are complete in {out} (written atomically; --overwrite redoes it)")
            continue
        print(f"{video}: {predict_video_file(args, model, encoded, video, out)['frames']} frame(s) to {out}")
    failures: list[dict[str, str]] = []
    done = 0
    start = time.perf_counter()
    stream = iter_segment(
        model,
        todo,
        encoded,
        threshold=args.threshold,
        device=args.device,
        precision=args.precision,
        batch_size=batch_size,
        read_ahead=read_ahead,
    )
    # closing: a --strict error or a Ctrl-C stops the reader thread at once
    with closing(stream), tqdm(total=len(todo), desc="predict", unit="image", disable=args.no_progress) as bar:
        for query, result in stream:
            if isinstance(result, Exception) and args.strict:
                raise type(result)(
                    f"--strict: {result} The {done} queries before it were written, none after it; fix or remove "
                    "it and rerun: complete outputs are skipped."
                )
            if isinstance(result, Exception):
                failures.append({"query": str(query), "error": str(result)})
                bar.set_postfix(failed=len(failures))
            else:
                _write(out, query, result, named, supports if args.details else None, model.config.test_size)
                done += 1
            bar.update()
    atomic_write_json(out / FAILURES_FILE, failures)
    _summary(out, done, len(queries) - len(todo), failures, time.perf_counter() - start)
    return EXIT_SOME_FAILED if failures else 0


def _summary(out: Path, done: int, skipped: int, failures: list[dict[str, str]], seconds: float) -> None:
    """The run's last lines: counts, time and rate on stdout; the first failures on stderr."""
    rate = f"{done / seconds:.2f} images/s" if seconds > 0 else "- images/s"
    print(
        f"predict: {done} done, {skipped} skipped (already complete), {len(failures)} failed in {seconds:.1f} s "
        f"({rate}); outputs in {out}"
    )
    if not failures:
        return
    for failure in failures[:_SHOWN_FAILURES]:
        print(f"  failed: {failure['error']}", file=sys.stderr)
    print(
        f"  {len(failures)} failed in all, listed in {out / FAILURES_FILE}; fix or remove them and rerun (complete "
        "outputs are skipped), or pass --strict to stop at the first.",
        file=sys.stderr,
    )


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
