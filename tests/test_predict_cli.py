"""``ntre-zoo predict`` end to end: supports of every annotation kind, one class or several, queries from
files, globs and directories, masks, overlays and details on disk, and clear errors; folders at scale: a bad
image reported and skipped (or fatal with --strict), batch sizes alike, a killed run resumed to the same bytes, a
rerun with other supports refused."""

import json
import os
import re

import numpy as np
import pytest
from PIL import Image

import ntre_zoo
from ntre_zoo.cli import main
from ntre_zoo.cli import predict as predict_cli
from ntre_zoo.cli.predict import EXIT_SOME_FAILED, expand_queries, parse_support
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


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A support and a folder of 20 small queries (``q00.png`` ...), and a copy with ``q12.png`` not an image."""
    root = tmp_path_factory.mktemp("predict_folder")
    supports, masks, _, _ = synthetic_episode(3, fold=0, shot=1, novel=True)
    Image.fromarray(supports[0]).save(root / "support.png")
    Image.fromarray(masks[0] * 255).save(root / "support_mask.png")
    rng = np.random.default_rng(0)
    for name in ("clean", "bad"):
        (root / name).mkdir()
    for i in range(20):
        image = Image.fromarray(rng.integers(0, 256, (36 + i, 48, 3), dtype=np.uint8))
        image.save(root / "clean" / f"q{i:02d}.png")
        image.save(root / "bad" / f"q{i:02d}.png")
    (root / "bad" / "q12.png").write_bytes(b"these bytes are no picture")
    return root


def _folder_run(folder, queries, out, *more):
    """``ntre-zoo predict`` of the directory ``queries`` into ``out`` with ``folder``'s support; its exit status."""
    support = f"{folder / 'support.png'}:{folder / 'support_mask.png'}"
    args = ["predict", DEMO_MODEL, "--support", support, str(queries), "-o", str(out), "--no-progress"]
    return main([*args, "--precision", "fp32", *more])


def _contents(out):
    return {path.name: path.read_bytes() for path in sorted(out.iterdir())}


def test_a_bad_image_in_a_folder_is_reported_and_skipped(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert _folder_run(folder, folder / "bad", out) == EXIT_SOME_FAILED == 3
    captured = capsys.readouterr()
    summary = r"predict: 19 done, 0 skipped \(already complete\), 1 failed in \d+\.\d s \(\d+\.\d\d images/s\); "
    assert re.fullmatch(summary + f"outputs in {re.escape(str(out))}\n", captured.out)
    assert "cannot read" in captured.err and str(folder / "bad" / "q12.png") in captured.err
    assert "1 failed in all, listed in" in captured.err
    [failure] = json.loads((out / "failures.json").read_text())
    assert failure["query"] == str(folder / "bad" / "q12.png") and "as an image" in failure["error"]
    written = {f"q{i:02d}_{kind}.png" for i in range(20) if i != 12 for kind in ("mask", "overlay")}
    assert set(_contents(out)) == written | {"predict.json", "labels.json", "failures.json"}
    # the good queries' outputs are those of a folder without the bad one
    reference = tmp_path / "reference"
    assert _folder_run(folder, folder / "clean", reference, "--batch-size", "3") == 0
    assert all(_contents(out)[name] == _contents(reference)[name] for name in written)
    # fixed, a rerun computes only the one that failed
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    for path in (folder / "bad").iterdir():
        (fixed / path.name).write_bytes((folder / "clean" / path.name).read_bytes())
    assert _folder_run(folder, fixed, out) == 0
    assert "predict: 1 done, 19 skipped (already complete), 0 failed" in capsys.readouterr().out
    assert json.loads((out / "failures.json").read_text()) == []


def test_strict_stops_at_the_bad_image_naming_it(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert _folder_run(folder, folder / "bad", out, "--strict", "--batch-size", "5") == 1
    err = capsys.readouterr().err
    assert "--strict" in err and str(folder / "bad" / "q12.png") in err and "12 queries before it" in err
    assert sorted(p.name for p in out.glob("*_mask.png")) == [f"q{i:02d}_mask.png" for i in range(12)]
    assert not (out / "failures.json").exists()


def test_batch_sizes_give_identical_outputs(folder, tmp_path):
    runs = {}
    for batch_size in (1, 3):
        out = tmp_path / f"b{batch_size}"
        assert _folder_run(folder, folder / "clean", out, "--batch-size", str(batch_size), "--read-ahead", "2") == 0
        runs[batch_size] = _contents(out)
    assert runs[1] == runs[3]


def test_a_killed_folder_run_resumes_to_the_same_outputs(folder, tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    assert _folder_run(folder, folder / "clean", reference) == 0
    out = tmp_path / "out"
    written = []
    write = predict_cli._write

    def killed_after_seven(out_dir, query, *rest):
        if len(written) == 7:
            raise KeyboardInterrupt
        write(out_dir, query, *rest)
        written.append(query.name)

    monkeypatch.setattr(predict_cli, "_write", killed_after_seven)
    with pytest.raises(KeyboardInterrupt):
        _folder_run(folder, folder / "clean", out)
    assert written == [f"q{i:02d}.png" for i in range(7)]
    (out / "q03_overlay.png").unlink()  # as if killed between a query's two files
    before = {path.name: path.stat().st_mtime_ns for path in out.glob("q*.png")}
    written.clear()
    monkeypatch.setattr(
        predict_cli, "_write", lambda out_dir, query, *rest: (written.append(query.name), write(out_dir, query, *rest))
    )
    assert _folder_run(folder, folder / "clean", out) == 0
    assert written == ["q03.png", *(f"q{i:02d}.png" for i in range(7, 20))]
    assert all(out.joinpath(name).stat().st_mtime_ns == mtime for name, mtime in before.items() if "q03" not in name)
    assert _contents(out) == _contents(reference)


def test_a_rerun_with_other_supports_is_refused_unless_overwrite(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert _folder_run(folder, folder / "clean", out) == 0
    before = _contents(out)
    box = ["predict", DEMO_MODEL, "--support", f"{folder / 'support.png'}:box=10,10,120,150", str(folder / "clean")]
    box += ["-o", str(out), "--no-progress", "--precision", "fp32"]
    capsys.readouterr()
    assert main(box) == 1
    err = capsys.readouterr().err
    assert "holds the outputs of another run: its classes differ" in err and "--overwrite" in err
    assert _folder_run(folder, folder / "clean", out, "--threshold", "0.7") == 1
    assert "its threshold differ" in capsys.readouterr().err
    assert _contents(out) == before  # nothing written
    assert main([*box, "--overwrite"]) == 0
    assert "20 done, 0 skipped" in capsys.readouterr().out
    assert json.loads((out / "predict.json").read_text())["settings"]["classes"]["target"][0][1].startswith("Box(")
    assert _contents(out) != before


def test_outputs_without_a_record_are_refused_unless_overwrite(folder, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "q05_mask.png").write_bytes(b"someone's file")
    assert _folder_run(folder, folder / "clean", out) == 1
    assert "already holds q05_mask.png but no predict.json" in capsys.readouterr().err
    assert _contents(out) == {"q05_mask.png": b"someone's file"}
    (out / "notes_mask.png").write_bytes(b"not a query of this run")
    assert _folder_run(folder, folder / "clean", out, "--overwrite") == 0
    assert (
        "1 mask(s) in" in capsys.readouterr().err
        and (out / "notes_mask.png").read_bytes() == b"not a query of this run"
    )
    assert (out / "q05_mask.png").read_bytes() != b"someone's file"
