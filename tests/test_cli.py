"""The ``ntre-zoo`` CLI: help, ``python -m`` entry point, and the offline demo."""

import subprocess
import sys

from PIL import Image

from ntre_zoo.cli import main


def test_python_m_runs_the_same_cli():
    result = subprocess.run([sys.executable, "-m", "ntre_zoo", "--help"], capture_output=True, text=True, check=True)
    assert "ntre-zoo" in result.stdout and "demo" in result.stdout


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_demo_writes_a_png_offline(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "--output", str(out), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "target IoU" in printed
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 5 * image.height // 2


def test_demo_into_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path / "no" / "demo.png")]) == 1
    assert "does not exist" in capsys.readouterr().err
