"""The ``ntre-zoo`` CLI: help, ``python -m`` entry point, and the offline demo."""

import subprocess
import sys

import numpy as np
from PIL import Image

import ntre_zoo
from ntre_zoo.cli import main
from ntre_zoo.data import synthetic_episode
from ntre_zoo.demo import DEMO_MODEL


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
