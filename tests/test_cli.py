"""The ``ntre-zoo`` CLI: help, ``python -m`` entry point, the offline demo, and one spelling per meaning
(``-o/--output``, the model as the first positional, old spellings with a notice, the library's lists)."""

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ntre_zoo
from ntre_zoo.cli import build_parser, main
from ntre_zoo.cli.predict import _model_and_queries
from ntre_zoo.data import DATASETS, synthetic_episode
from ntre_zoo.data.splits import COCO_SPLITS
from ntre_zoo.demo import DEMO_MODEL
from ntre_zoo.model import BACKBONES
from ntre_zoo.training.config import PRESETS

MANIFEST = Path(ntre_zoo.__file__).parent / "checkpoints_manifest.json"
WEIGHTS = Path(ntre_zoo.__file__).parent / "weights"


def test_python_m_runs_the_same_cli():
    result = subprocess.run([sys.executable, "-m", "ntre_zoo", "--help"], capture_output=True, text=True, check=True)
    assert "ntre-zoo" in result.stdout and "demo" in result.stdout


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_demo_writes_a_png_offline(tmp_path, capsys):
    """The demo predicts synthetic episode 1 with the shipped model: the IoU it prints is that prediction's,
    and the PNG shows the query and the prediction overlaid on it, side by side."""
    out = tmp_path / "demo.png"
    assert main(["demo", "--output", str(out), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    supports, masks, query, query_mask = synthetic_episode(1, fold=0, shot=1, novel=True)
    mask = ntre_zoo.from_pretrained(DEMO_MODEL).predict(supports, masks, query).astype(bool)
    iou = (mask & (query_mask == 1)).sum() / (mask | (query_mask == 1)).sum()
    assert 0.2 < iou < 1
    assert f"model: {DEMO_MODEL}" in printed and f"target IoU on this episode: {iou:.3f}" in printed
    assert f"wrote {out}" in printed
    with Image.open(out) as image:
        assert image.format == "PNG"
        panels = np.asarray(image.convert("RGB"))
    h, w = query.shape[:2]
    pad, header = 8, 8 + 22  # panels: support, query, prediction, BG map, DO map (visualize.panel's layout)
    panel = [panels[header : header + h, pad + i * (w + pad) : pad + i * (w + pad) + w] for i in range(5)]
    np.testing.assert_array_equal(panel[1], query)
    changed = (panel[2] != query).any(axis=2)
    assert (changed == mask).mean() > 0.99  # the prediction panel tints the predicted pixels only


def test_demo_into_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path / "no" / "demo.png")]) == 1
    assert "does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ one flag per meaning
#: Every command that writes: the arguments it needs besides its output, and the spelling of the output that
#: ``-o/--output`` replaced (None: it had none; OUT: a positional).
WRITERS = {
    "demo": ([], None),
    "predict": (["M", "q.png", "--support", "s.png:m.png"], "--out"),
    "convert": (["final.pth", "--backbone", "resnet50"], "--out"),
    "prepare pascal5i": (["--voc", "voc.tar", "--sbd", "benchmark.tgz"], "--out"),
    "prepare coco20i": (["--images", "t.zip", "--annotations", "a.zip"], "--out"),
    "evaluate": (["M", "--dataset", "pascal5i", "--data-root", "d"], None),
    "make-synthetic": ([], "OUT"),
    "train": (["--dataset", "pascal5i", "--data-root", "d"], None),
    "reproduce": (["all", "--data-root", "d"], None),
    "export": (["M", "--format", "onnx"], None),
}


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every leaf command (``prepare pascal5i``, not ``prepare``) and its parser."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_subcommands(sub, f"{prefix}{name} ") or {f"{prefix}{name}": sub})
    return found


def _parse(line: list[str], capsys) -> tuple[argparse.Namespace, str]:
    args = build_parser().parse_args(line)
    return args, capsys.readouterr().err


def test_every_command_that_writes_spells_its_output_o_or_output():
    for name, parser in _subcommands(build_parser()).items():
        shown = [a.option_strings for a in parser._actions if a.dest == "output" and a.help != argparse.SUPPRESS]
        assert shown == ([["-o", "--output"]] if name in WRITERS else []), name
        assert ("-o" in parser.format_help()) == (name in WRITERS), name


@pytest.mark.parametrize("command", WRITERS)
@pytest.mark.parametrize("flag", ["-o", "--output"])
def test_the_output_is_o_or_output_without_a_notice(command, flag, capsys):
    needs, _ = WRITERS[command]
    args, err = _parse([*command.split(), *needs, flag, "target"], capsys)
    assert args.output == "target" and err == ""


@pytest.mark.parametrize("command", [c for c, (_, old) in WRITERS.items() if old])
def test_the_old_output_spelling_works_with_a_notice_naming_o(command, capsys):
    needs, old = WRITERS[command]
    words = ["target"] if old == "OUT" else [old, "target"]
    args, err = _parse([*command.split(), *words, *needs], capsys)
    assert args.output == "target"
    (notice,) = err.splitlines()
    assert notice.startswith(f"ntre-zoo {command}: ") and "deprecated" in notice
    assert "use -o" in notice and f"{'OUT as a positional argument' if old == 'OUT' else old} is" in notice
    with pytest.raises(SystemExit) as given_twice:  # both spellings at once: refused, not one silently kept
        build_parser().parse_args([*command.split(), *words, *needs, "-o", "other"])
    assert given_twice.value.code == 2 and "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize("command", [c for c in WRITERS if c not in ("demo", "evaluate", "train")])
def test_a_missing_output_is_refused_by_the_parser(command, capsys):
    needs, _ = WRITERS[command]
    with pytest.raises(SystemExit) as missing:
        build_parser().parse_args([*command.split(), *needs])
    assert missing.value.code == 2 and "-o/--output" in capsys.readouterr().err


def test_the_model_is_the_first_positional_of_predict_and_the_old_model_option_still_works(capsys):
    for line in (
        ["M", "a.png", "b/", "--support", "s.png:m.png", "-o", "out"],
        ["M", "--support", "s.png:m.png", "a.png", "b/", "-o", "out"],  # options may stand between them
        ["--support", "s.png:m.png", "-o", "out", "M", "a.png", "b/"],
    ):
        args, err = _parse(["predict", *line], capsys)
        assert _model_and_queries(args) == ("M", ["a.png", "b/"]) and err == ""
    for queries in (["a.png"], ["a.png", "b/"]):  # with --model, every positional is a query, as before
        args, err = _parse(["predict", "--model", "M", *queries, "--support", "s.png:m.png", "-o", "out"], capsys)
        assert _model_and_queries(args) == ("M", queries)
        assert err.startswith("ntre-zoo predict: --model is deprecated") and "first positional argument" in err
    args, _ = _parse(["predict", "M", "--support", "s.png:m.png", "-o", "out"], capsys)
    with pytest.raises(ValueError, match="at least one QUERY"):
        _model_and_queries(args)


def test_the_models_of_app_are_positional_and_the_repeatable_model_option_still_works(capsys):
    args, err = _parse(["app", "a", "b", "--port", "8080"], capsys)
    assert args.model == ["a", "b"] and err == ""
    args, err = _parse(["app", "--model", "a", "--host", "0.0.0.0", "b"], capsys)
    assert args.model == ["a", "b"]  # in the order given
    assert err.count("ntre-zoo app: --model is deprecated") == 1 and "positional" in err


@pytest.mark.parametrize("command", ["evaluate", "export", "predict", "app"])
def test_help_shows_the_model_as_the_first_positional(command):
    (parser,) = [p for name, p in _subcommands(build_parser()).items() if name == command]
    text = parser.format_help()
    assert "positional arguments:\n  MODEL " in text and "--model" not in text


@pytest.mark.parametrize(
    ("command", "unit"),
    [
        ("predict", "queries per forward pass"),
        ("evaluate", "episodes per forward pass"),
        ("train", "episodes per optimiser step, summed over all processes"),
    ],
)
def test_batch_size_says_its_unit(command, unit):
    (parser,) = [p for name, p in _subcommands(build_parser()).items() if name == command]
    (action,) = [a for a in parser._actions if "--batch-size" in a.option_strings]
    assert action.help.startswith(unit)


def test_backbones_datasets_and_presets_are_listed_from_the_library(monkeypatch):
    """A backbone or preset the library adds is a choice at once; the dataset and COCO split lists are the
    library's own tuples."""
    monkeypatch.setitem(BACKBONES, "newnet", "newnet_timm")
    monkeypatch.setitem(PRESETS, "newpreset", PRESETS["paper"])
    choices = {
        (name, option): action.choices
        for name, parser in _subcommands(build_parser()).items()
        for action in parser._actions
        for option in ("--backbone", "--dataset", "--coco-split", "--preset")
        if option in action.option_strings and action.choices
    }
    assert set(choices) == {
        *(("convert", "--backbone"), ("train", "--backbone"), ("train", "--preset"), ("reproduce", "--preset")),
        *(("evaluate", "--dataset"), ("train", "--dataset"), ("evaluate", "--coco-split"), ("train", "--coco-split")),
    }
    for (_, option), listed in choices.items():
        if option == "--backbone":
            assert listed == tuple(BACKBONES) and "newnet" in listed
        elif option == "--preset":
            assert listed == tuple(PRESETS) and "newpreset" in listed
        else:
            assert listed is (DATASETS if option == "--dataset" else COCO_SPLITS)


def _recorded_commands() -> list[str]:
    """Every command the shipped manifest and the packaged weights record (measured metrics' ``command`` and
    ``train_command``), as ``ntre-zoo`` argument lists: ``&&`` split, environment and ``# comments`` left out,
    and ``--shot {1,5}`` (one run per shot) written out."""
    records = [json.loads(MANIFEST.read_text()), *(json.loads(p.read_text()) for p in WEIGHTS.glob("*.json"))]
    texts: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            texts.extend(v for k, v in node.items() if k in ("command", "train_command") and isinstance(v, str))
            for value in node.values():
                walk(value)

    for record in records:
        walk(record)
    lines = []
    for text in texts:
        for part in text.split("&&"):
            words = shlex.split(part, comments=True)
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                words.pop(0)
            assert words[0] == "ntre-zoo", text
            braced = [i for i, w in enumerate(words) if re.fullmatch(r"\{[^}]*\}", w)]
            for value in words[braced[0]][1:-1].split(",") if braced else [None]:
                lines.append([value if i in braced else w for i, w in enumerate(words[1:], 1)])
    return lines


def test_every_recorded_command_of_the_manifest_still_parses(capsys):
    """The manifest records what was run (byte for byte, with the spellings of then); the CLI takes every such
    command. A notice for an old spelling is allowed: it is printed, not an error."""
    lines = _recorded_commands()
    assert {line[0] for line in lines} >= {"make-synthetic", "train", "evaluate"}
    for line in lines:
        args = build_parser().parse_args(line)
        assert args.handler is not None, line
    notices = capsys.readouterr().err.splitlines()
    assert all("is deprecated and goes in the next release; use" in n for n in notices)
