"""``ntre-zoo predict`` end to end: supports of every annotation kind, one class or several, queries from
files, globs and directories, masks, overlays and details on disk, and clear errors."""

import json
import os

import numpy as np
import pytest
from PIL import Image

import ntre_zoo
from ntre_zoo.cli import main
from ntre_zoo.cli.predict import expand_queries, parse_support
from ntre_zoo.data import synthetic_episode
from ntre_zoo.demo import DEMO_MODEL


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A support (image, mask, scribble strokes) and three queries from synthetic episodes, as files."""
    root = tmp_path_factory.mktemp("predict_cli")
    supports, masks, _, _ = synthetic_episode(3, fold=0, shot=1, novel=True)
    Image.fromarray(supports[0]).save(root / "support.png")
    Image.fromarray(masks[0] * 255).save(root / "support_mask.png")
    strokes = np.zeros_like(masks[0])
    ys, xs = np.nonzero(masks[0])
    strokes[ys[len(ys) // 2], xs.min() : xs.max()] = 1
    Image.fromarray(strokes * 255).save(root / "strokes.png")
    (root / "queries").mkdir()
    for i in range(3):
        Image.fromarray(synthetic_episode(10 + i, fold=0, shot=1, novel=True)[2]).save(root / "queries" / f"q{i}.jpg")
    return root


def test_parse_support_reads_every_kind(files):
    image = str(files / "support.png")
    assert parse_support(f"{image}:{files / 'support_mask.png'}") == (image, str(files / "support_mask.png"))
    assert parse_support(f"{image}:box=1,2.5,30,40") == (image, ntre_zoo.Box(1, 2.5, 30, 40))
    assert parse_support(f"{image}:points=5,6,7,8") == (image, ntre_zoo.Points([(5, 6), (7, 8)]))
    path, scribble = parse_support(f"{image}:scribble={files / 'strokes.png'}")
    assert path == image and isinstance(scribble, ntre_zoo.Scribble) and scribble.strokes == str(files / "strokes.png")


def test_parse_support_splits_where_the_image_exists(tmp_path):
    odd = tmp_path / "a:b.png"  # a colon inside the image's own path
    odd.write_bytes(b"")
    assert parse_support(f"{odd}:{tmp_path / 'mask:1.png'}") == (str(odd), str(tmp_path / "mask:1.png"))


def test_parse_support_errors(files):
    image = str(files / "support.png")
    with pytest.raises(ValueError, match="IMG an existing file"):
        parse_support("missing.png:mask.png")
    with pytest.raises(ValueError, match="four numbers"):
        parse_support(f"{image}:box=1,2,3")
    with pytest.raises(ValueError, match="odd count"):
        parse_support(f"{image}:points=1,2,3")
    with pytest.raises(ValueError, match="comma-separated numbers"):
        parse_support(f"{image}:box=a,b,c,d")
    with pytest.raises(ValueError, match="empty"):
        parse_support(f"{image}:box=5,5,5,9")


def test_expand_queries_takes_files_globs_and_directories(files, tmp_path):
    q = files / "queries"
    assert expand_queries([str(q)]) == [q / "q0.jpg", q / "q1.jpg", q / "q2.jpg"]
    assert expand_queries([str(q / "q[12].jpg"), str(q / "q0.jpg"), str(q / "q0.jpg")]) == [
        q / "q1.jpg",
        q / "q2.jpg",
        q / "q0.jpg",
    ]
    with pytest.raises(FileNotFoundError, match="matches no file"):
        expand_queries([str(q / "*.tif")])
    with pytest.raises(FileNotFoundError, match="no such file"):
        expand_queries([str(q / "nope.jpg")])
    with pytest.raises(FileNotFoundError, match="holds no image"):
        expand_queries([str(tmp_path)])
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "q0.png")
    with pytest.raises(ValueError, match="same outputs"):
        expand_queries([str(q), str(tmp_path / "q0.png")])


def test_one_class_writes_masks_and_overlays_for_every_query(files, tmp_path, capsys):
    out = tmp_path / "out"
    support = f"{files / 'support.png'}:{files / 'support_mask.png'}"
    args = ["predict", DEMO_MODEL, "--support", support, str(files / "queries"), "-o", str(out)]
    assert main([*args, "--no-progress"]) == 0
    assert "predict: 3 done, 0 skipped (already complete), 0 failed in " in capsys.readouterr().out
    model = ntre_zoo.from_pretrained(DEMO_MODEL)
    for i in range(3):
        query = files / "queries" / f"q{i}.jpg"
        expected = model.predict(files / "support.png", files / "support_mask.png", query)
        with Image.open(out / f"q{i}_mask.png") as mask:
            assert mask.mode == "P"
            np.testing.assert_array_equal(np.asarray(mask), expected)
        with Image.open(out / f"q{i}_overlay.png") as overlay, Image.open(query) as image:
            assert overlay.size == image.size
    assert not list(out.glob("*_details.npz"))
    assert json.loads((out / "labels.json").read_text()) == {"0": "background", "1": "target"}


def test_several_classes_and_weak_supports_with_details(files, tmp_path):
    out = tmp_path / "out"
    image = files / "support.png"
    code = main(
        [
            "predict",
            DEMO_MODEL,
            "--class",
            "ring",
            "--support",
            f"{image}:{files / 'support_mask.png'}",
            "--support",
            f"{image}:scribble={files / 'strokes.png'}",
            "--class",
            "boxed",
            "--support",
            f"{image}:box=0,0,100,100",
            "--class",
            "clicked",
            "--support",
            f"{image}:points=50,50,120,150",
            str(files / "queries" / "q*.jpg"),
            "-o",
            str(out),
            "--details",
            "--precision",
            "fp32",
            "--batch-size",
            "2",
            "--no-progress",
        ]
    )
    assert code == 0
    assert json.loads((out / "labels.json").read_text()) == {
        "0": "background",
        "1": "ring",
        "2": "boxed",
        "3": "clicked",
    }
    model = ntre_zoo.from_pretrained(DEMO_MODEL)
    supports = {
        "ring": ([image, image], [files / "support_mask.png", ntre_zoo.Scribble(files / "strokes.png")]),
        "boxed": (image, ntre_zoo.Box(0, 0, 100, 100)),
        "clicked": (image, ntre_zoo.Points([(50, 50), (120, 150)])),
    }
    expected = model.segment(files / "queries" / "q1.jpg", supports, precision="fp32")
    with Image.open(out / "q1_mask.png") as mask:
        np.testing.assert_array_equal(np.asarray(mask), expected.label_map)
    details = np.load(out / "q1_details.npz")
    assert list(details["classes"]) == ["ring", "boxed", "clicked"]
    np.testing.assert_allclose(details["probabilities"], expected.probabilities, atol=1e-6)
    assert details["do_maps"].shape == (3, *expected.label_map.shape)
    assert (out / "q1_panel.png").is_file()


def test_cli_errors_are_clear(files, tmp_path, capsys):
    image = files / "support.png"
    base = ["predict", DEMO_MODEL, str(files / "queries"), "-o", str(tmp_path / "o"), "--no-progress"]
    assert (
        main([*base, "--support", f"{image}:box=0,0,10,10", "--class", "a", "--support", f"{image}:box=0,0,9,9"]) == 1
    )
    assert "after the --class it belongs to" in capsys.readouterr().err
    assert main([*base, "--class", "a", "--support", f"{image}:box=0,0,10,10", "--class", "b"]) == 1
    assert "'b' has no --support" in capsys.readouterr().err
    assert main([*base, "--support", f"{image}:box=0,0,999,10"]) == 1
    err = capsys.readouterr().err
    assert "supports['target']: support_masks[0]" in err and "outside the 200x200" in err


def _scene_files(folder):
    """support.png, s_mask.png (hand-drawn), q.png and q_mask.png (a second query) in one folder."""
    folder.mkdir()
    supports, masks, query, _ = synthetic_episode(3, fold=0, shot=1, novel=True)
    Image.fromarray(supports[0]).save(folder / "support.png")
    Image.fromarray(masks[0] * 255).save(folder / "s_mask.png")
    Image.fromarray(query).save(folder / "q.png")
    Image.fromarray(synthetic_episode(4, fold=0, shot=1, novel=True)[2]).save(folder / "q_mask.png")
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_predict_never_writes_over_an_input_file(tmp_path, capsys):
    folder = tmp_path / "inputs"
    before = _scene_files(folder)
    # the support's hand-drawn mask s_mask.png would be the output of a query named s.png
    (folder / "s.png").write_bytes(before["q.png"])
    before["s.png"] = before["q.png"]
    support = f"{folder / 'support.png'}:{folder / 's_mask.png'}"
    base = ["predict", DEMO_MODEL, "--support", support, "-o", str(folder), "--no-progress"]
    assert main([*base, str(folder / "s.png")]) == 1
    err = capsys.readouterr().err
    assert "would write over the input" in err and str(folder / "s_mask.png") in err
    # two queries q.png and q_mask.png: q's mask would replace the second query before it is read
    assert main([*base, str(folder / "q.png"), str(folder / "q_mask.png")]) == 1
    err = capsys.readouterr().err
    assert "would write over the input" in err and "q_mask.png" in err
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before  # nothing written at all


def test_predict_refuses_an_output_that_is_a_link_to_an_input(tmp_path, capsys):
    folder = tmp_path / "inputs"
    _scene_files(folder)
    out = tmp_path / "out"
    out.mkdir()
    os.link(folder / "s_mask.png", out / "q_mask.png")  # a hard link: another name of the same file
    support = f"{folder / 'support.png'}:{folder / 's_mask.png'}"
    args = ["predict", DEMO_MODEL, "--support", support, str(folder / "q.png"), "-o", str(out)]
    assert main([*args, "--no-progress"]) == 1
    assert "would write over the input" in capsys.readouterr().err


def test_predict_out_that_is_a_file_is_refused_before_any_work(files, tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("mine")
    support = f"{files / 'support.png'}:{files / 'support_mask.png'}"
    args = ["predict", "no/such/model", "--support", support, str(files / "queries"), "-o", str(out)]
    assert main([*args, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"--output {str(out)!r} is a file" in err
    assert out.read_text() == "mine"
