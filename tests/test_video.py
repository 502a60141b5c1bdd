"""``inference/video.py``, ``inference/video_io.py`` and ``cli/video.py``: videos in and out, on real encoded clips
(moving, scaling and occluded shapes on a textured background, lossless FFV1 so the decoded frames are known)."""

from __future__ import annotations

import json
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch
from data_fixtures import H, W, decode, encode_clip, make_clip
from PIL import Image

import ntre_zoo
from ntre_zoo.cli import main
from ntre_zoo.cli.video import is_video
from ntre_zoo.demo import DEMO_MODEL
from ntre_zoo.inference import predict, predict_video, segment, segment_video, write_video_results
from ntre_zoo.inference.video_io import probe_video, read_video

pytest.importorskip("av")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames, labels = make_clip()
    path = encode_clip(tmp_path_factory.mktemp("video") / "clip.mkv", frames)
    return path, frames, labels


def support_of(frames, labels):
    return frames[0], (labels[0] == 1).astype(np.uint8)


def test_the_file_decodes_to_its_frames_and_masks_equal_predict_frame_by_frame(tiny_model, clip):
    path, frames, labels = clip
    image, mask = support_of(frames, labels)
    results = list(predict_video(tiny_model, image, mask, path, precision="fp32"))
    assert [r.index for r in results] == list(range(len(frames)))
    assert [r.time for r in results] == pytest.approx([i / 12 for i in range(len(frames))], abs=1e-3)
    support = tiny_model.encode_support(image, mask, precision="fp32")
    for result, frame in zip(results, frames, strict=True):
        assert np.array_equal(result.image, frame)  # FFV1: the decoded frame is the one encoded
        assert result.result.dtype == np.uint8 and result.result.shape == (H, W)
        assert np.array_equal(result.labels, predict(tiny_model, support, frame, precision="fp32"))


def test_an_iterable_of_frames_in_any_form_gives_what_the_file_gives(tiny_model, clip):
    path, frames, labels = clip
    image, mask = support_of(frames, labels)
    support = tiny_model.encode_support(image, mask, precision="fp32")
    from_file = [r.labels for r in predict_video(tiny_model, support, path, precision="fp32")]
    forms = [frames, (Image.fromarray(f) for f in frames), [torch.from_numpy(f).permute(2, 0, 1) for f in frames]]
    for source in forms:
        results = list(tiny_model.predict_video(support, source=source, precision="fp32"))
        assert all(r.time is None and r.pts is None for r in results)
        assert all(np.array_equal(a, r.labels) for a, r in zip(from_file, results, strict=True))


def test_batching_gives_the_same_masks(tiny_model, clip):
    path, frames, labels = clip
    image, mask = support_of(frames, labels)
    one = [r.labels for r in predict_video(tiny_model, image, mask, path, batch_size=1, precision="fp32")]
    four = list(predict_video(tiny_model, image, mask, path, batch_size=4, precision="fp32", return_details=True))
    assert all(isinstance(r.result, ntre_zoo.Prediction) for r in four)
    assert all(np.array_equal(a, b.labels) for a, b in zip(one, four, strict=True))


def test_segment_video_equals_segment_per_frame(tiny_model, clip):
    path, frames, labels = clip
    supports = {"disc": ([frames[0]], [labels[0] == 1]), "square": ([frames[3]], [labels[3] == 2])}
    encoded = ntre_zoo.inference.encode_supports(tiny_model, supports, precision="fp32")
    results = list(tiny_model.segment_video(path, supports, batch_size=3, precision="fp32"))
    assert len(results) == len(frames)
    for result, frame in zip(results, frames, strict=True):
        expected = segment(tiny_model, frame, encoded, precision="fp32")
        assert result.result.classes == ("disc", "square")
        assert np.array_equal(result.labels, expected.label_map)
        assert np.allclose(result.result.probabilities, expected.probabilities, atol=1e-6)


def test_output_videos_keep_count_size_rate_and_the_mask_video_is_exact(tiny_model, clip, tmp_path):
    path, frames, labels = clip
    results = list(predict_video(tiny_model, *support_of(frames, labels), path, precision="fp32"))
    count = write_video_results(
        iter(results),
        masks=tmp_path / "m.mkv",
        overlay=tmp_path / "o.mp4",
        frame_masks=tmp_path / "frames",
        rate=probe_video(path).rate,
    )
    assert count == len(frames)
    masks, times, rate = decode(tmp_path / "m.mkv", "gray")
    assert all(np.array_equal(m, r.labels) for m, r in zip(masks, results, strict=True))
    assert 12 == rate and times == pytest.approx([r.time for r in results], abs=1e-3)
    pictures, times, rate = decode(tmp_path / "o.mp4")
    assert len(pictures) == len(frames) and pictures[0].shape == (H, W, 3) and rate == 12
    pngs = sorted((tmp_path / "frames").iterdir())
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(len(frames))]
    assert all(np.array_equal(np.asarray(Image.open(p)), r.labels) for p, r in zip(pngs, results, strict=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "m.mkv", "o.mp4"]  # no temporary left


def test_label_maps_as_png_frames_and_a_variable_frame_rate_kept(tiny_model, tmp_path):
    frames, labels = make_clip(8, 48, 63)  # an odd width: the overlay is 4:4:4
    pts = [0, 40, 80, 200, 240, 300, 400, 410]
    path = encode_clip(tmp_path / "vfr.mkv", frames, pts, Fraction(1, 1000))
    supports = {"disc": ([frames[0]], [labels[0] == 1]), "square": ([frames[0]], [labels[0] == 2])}
    results = list(segment_video(tiny_model, path, supports, precision="fp32"))
    assert [r.time for r in results] == pytest.approx([p / 1000 for p in pts])
    write_video_results(results, masks=tmp_path / "labels", mask_format="png", overlay=tmp_path / "o.mp4")
    pngs = sorted((tmp_path / "labels").iterdir())
    assert all(np.array_equal(np.asarray(Image.open(p)), r.labels) for p, r in zip(pngs, results, strict=True))
    pictures, times, _ = decode(tmp_path / "o.mp4")
    assert pictures[0].shape == (48, 63, 3) and times == pytest.approx([p / 1000 for p in pts], abs=1e-3)


def test_a_failure_midway_leaves_no_output(tiny_model, clip, tmp_path):
    path, frames, labels = clip

    def broken():
        for i, result in enumerate(predict_video(tiny_model, *support_of(frames, labels), path)):
            if i == 5:
                raise RuntimeError("disk full")
            yield result

    with pytest.raises(RuntimeError, match="disk full"):
        write_video_results(broken(), masks=tmp_path / "m.mkv", overlay=tmp_path / "o.mp4", frame_masks=tmp_path / "f")
    assert list(tmp_path.iterdir()) == []


def test_frames_are_read_lazily_a_batch_and_a_little_ahead(tiny_model, clip):
    _, frames, labels = clip
    read = []

    def camera():
        for i in range(200):
            read.append(i)
            yield frames[i % len(frames)]

    results = predict_video(tiny_model, *support_of(frames, labels), camera(), batch_size=4)
    assert read == []  # nothing is read before the first result is asked for
    first = next(results)
    assert first.index == 0 and len(read) <= 4 + 2 + 1 + 4  # a batch, the read-ahead, one in hand, the next batch
    for _ in range(7):
        next(results)
    assert len(read) <= 8 + 2 + 1 + 4
    results.close()


@pytest.fixture(scope="module")
def broken_files(clip, tmp_path_factory):
    path, _, _ = clip
    root = tmp_path_factory.mktemp("broken")
    data = path.read_bytes()
    (root / "cut.mkv").write_bytes(data[: len(data) * 2 // 3])
    (root / "head.mkv").write_bytes(data[:300])
    (root / "notes.mp4").write_text("not a video")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "still.png")
    return root


def test_bad_files_get_errors_that_name_them(tiny_model, clip, broken_files):
    _, frames, labels = clip
    support = tiny_model.encode_support(*support_of(frames, labels))
    with pytest.raises(ValueError, match=r"cut\.mkv.*truncated.*re-download"):
        list(predict_video(tiny_model, support, broken_files / "cut.mkv"))
    with pytest.raises(ValueError, match=r"head\.mkv.*(no frame|truncated)"):
        list(read_video(broken_files / "head.mkv"))
    with pytest.raises(ValueError, match=r"notes\.mp4.*not a video"):
        predict_video(tiny_model, support, broken_files / "notes.mp4")  # refused at the call: the header
    with pytest.raises(ValueError, match=r"still\.png.*an image.*predict"):
        predict_video(tiny_model, support, str(broken_files / "still.png"))
    with pytest.raises(FileNotFoundError, match=r"missing\.mkv"):
        predict_video(tiny_model, support, broken_files / "missing.mkv")
    with pytest.raises(ValueError, match="no frame"):
        list(predict_video(tiny_model, support, iter([])))
    with pytest.raises(TypeError, match="list\\(array\\)"):
        predict_video(tiny_model, support, np.stack(frames))
    with pytest.raises(ValueError, match="batch_size"):
        predict_video(tiny_model, support, frames, batch_size=0)


def test_frames_over_max_pixels_are_refused(tiny_model, clip):
    path, frames, labels = clip
    support = tiny_model.encode_support(*support_of(frames, labels))
    with pytest.raises(ValueError, match="max_pixels"):
        predict_video(tiny_model, support, path, max_pixels=H * W - 1)
    with pytest.raises(ValueError, match="source frame 0"):
        next(predict_video(tiny_model, support, frames, max_pixels=H * W - 1))


def test_without_pyav_the_error_says_how_to_install_it(clip, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match=r"pip install ntre-zoo\[video\]"):
        read_video(clip[0])


def test_the_cli_segments_a_video_query(clip, tmp_path):
    path, frames, labels = clip
    Image.fromarray(frames[0]).save(tmp_path / "support.png")
    Image.fromarray((labels[0] == 1).astype(np.uint8) * 255).save(tmp_path / "support_mask.png")
    Image.fromarray(frames[5]).save(tmp_path / "still.png")
    out = tmp_path / "out"
    support = f"{tmp_path / 'support.png'}:{tmp_path / 'support_mask.png'}"
    argv = ["predict", DEMO_MODEL, str(path), str(tmp_path / "still.png"), "--support", support, "-o", str(out)]
    assert is_video(path) and not is_video(tmp_path / "still.png")
    assert main([*argv, "--frame-masks", "--no-progress", "--precision", "fp32"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "clip_frames",
        "clip_mask.mkv",
        "clip_overlay.mp4",
        "failures.json",
        "labels.json",
        "predict.json",
        "still_mask.png",
        "still_overlay.png",
    ]
    assert json.loads((out / "labels.json").read_text()) == {"0": "background", "1": "target"}
    masks, _, rate = decode(out / "clip_mask.mkv", "gray")
    model = ntre_zoo.from_pretrained(DEMO_MODEL)
    expected = predict(
        model, str(tmp_path / "support.png"), str(tmp_path / "support_mask.png"), frames, precision="fp32"
    )
    assert 12 == rate and len(masks) == len(frames) and len(list((out / "clip_frames").iterdir())) == len(frames)
    assert all(np.array_equal(m, e) for m, e in zip(masks, expected, strict=True))
    assert main([*argv, "--video-masks", "png", "--no-progress", "--precision", "fp32"]) == 0
    assert len(list((out / "clip_mask").iterdir())) == len(frames)


def test_a_folder_of_images_and_videos_is_segmented_once_and_a_rerun_skips_what_is_complete(
    clip, tmp_path, monkeypatch, capsys
):
    import shutil

    import ntre_zoo.cli.predict as predict_cli

    path, frames, labels = clip
    folder = tmp_path / "queries"
    folder.mkdir()
    shutil.copy(path, folder / "clip.mkv")
    Image.fromarray(frames[3]).save(folder / "still.png")
    (folder / "notes.txt").write_text("not a query")
    Image.fromarray(frames[0]).save(tmp_path / "support.png")
    Image.fromarray((labels[0] == 1).astype(np.uint8) * 255).save(tmp_path / "support_mask.png")
    support = f"{tmp_path / 'support.png'}:{tmp_path / 'support_mask.png'}"
    argv = ["predict", DEMO_MODEL, str(folder), "--support", support, "-o", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 0
    assert f"{folder / 'clip.mkv'}: {len(frames)} frame(s)" in capsys.readouterr().out
    written = {
        p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir() if "clip" in p.name or "still" in p.name
    }
    assert set(written) == {"clip_mask.mkv", "clip_overlay.mp4", "still_mask.png", "still_overlay.png"}

    def never(*args, **kwargs):
        raise AssertionError("a complete video was segmented again")

    monkeypatch.setattr(predict_cli, "predict_video_file", never)
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "clip.mkv: skipped, its outputs are complete" in printed and "0 done, 1 skipped" in printed
    assert {n: (tmp_path / "out" / n).stat().st_mtime_ns for n in written} == written
    (tmp_path / "out" / "predict.json").unlink()  # video outputs with no record of what wrote them: not resumed
    assert main(argv) == 1
    assert "already holds clip_mask.mkv but no predict.json" in " ".join(capsys.readouterr().err.split())


@pytest.mark.slow
def test_a_long_clip_streams(tiny_model, tmp_path):
    frames, labels = make_clip(300)
    path = encode_clip(tmp_path / "long.mkv", frames)
    support = tiny_model.encode_support(*support_of(frames, labels))
    count = write_video_results(
        predict_video(tiny_model, support, path, batch_size=8), masks=tmp_path / "m.mkv", overlay=tmp_path / "o.mp4"
    )
    assert count == 300 and len(decode(tmp_path / "m.mkv", "gray")[0]) == 300
