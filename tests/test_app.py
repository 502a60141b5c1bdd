"""The web app's logic without a browser: annotations from the editor, the model notice, masks to download,
examples; and ``ntre-zoo app``'s arguments. The page itself is driven in tests/test_app_browser.py."""

from __future__ import annotations

import dataclasses
import io
import zipfile
import zlib

import numpy as np
import pytest
from conftest import make_tiny_model
from data_fixtures import H, W, decode, encode_clip, grey_png, make_clip
from PIL import Image

from ntre_zoo import Box, Points, Scribble, Segmentation, segment
from ntre_zoo.app import MAX_UPLOAD, MAX_VIDEO_FRAMES
from ntre_zoo.app.logic import (
    NOT_OFFERED,
    AnnotatedSupport,
    ModelCache,
    describe_support,
    editor_support,
    model_notice,
    new_support_image,
    result_panels,
    run_prediction,
    segment_video_query,
    status_line,
    write_examples,
    write_masks,
    zoo_choices,
)
from ntre_zoo.cli import build_parser
from ntre_zoo.data import synthetic_episode
from ntre_zoo.demo import DEMO_MODEL
from ntre_zoo.inference import encode_support, predict_video, segment_video
from ntre_zoo.inference.image_io import MAX_PIXELS
from ntre_zoo.inference.video_io import probe_video
from ntre_zoo.zoo.saving import save_pretrained


def _editor(image: np.ndarray, painted: np.ndarray | None = None) -> dict:
    """What Gradio's ImageEditor gives: an RGBA background and one RGBA layer of brush strokes."""
    h, w = (painted if painted is not None else image).shape[:2]
    background = np.full((h, w, 4), 255, np.uint8)
    background[: image.shape[0], : image.shape[1], :3] = image[:h, :w]
    layer = np.zeros((h, w, 4), np.uint8)
    if painted is not None:
        layer[painted.astype(bool)] = (255, 42, 42, 255)
    return {"background": background, "layers": [layer], "composite": background}


@pytest.fixture(scope="module")
def episode():
    return synthetic_episode(5, fold=0, shot=1, novel=True)


def test_brush_strokes_become_the_support_mask(episode):
    supports, masks, _, _ = episode
    support = editor_support(supports[0], _editor(supports[0], masks[0]), None, 0)
    assert np.array_equal(support.image, supports[0])
    assert np.array_equal(support.annotation, masks[0])
    assert new_support_image(supports[0], None, "mask", None, 0)[0]["layers"] == []  # a new image clears the strokes
    with pytest.raises(ValueError, match="strokes were drawn on a 800x800 canvas, not on the 200x200 image"):
        editor_support(supports[0], _editor(supports[0], np.ones((800, 800), np.uint8)), None, 0)


def test_an_uploaded_mask_wins_over_strokes(episode):
    supports, masks, _, _ = episode
    painted = np.zeros_like(masks[0])
    painted[:10, :10] = 1
    support = editor_support(supports[0], _editor(supports[0], painted), masks[0] * np.uint8(255), 1)
    assert np.array_equal(support.annotation, masks[0])
    line = describe_support(supports[0], _editor(supports[0]), masks[0] * np.uint8(255), "mask", "", 1)
    assert line == f"Support 2: 200 x 200 px, {int(masks[0].sum())} object pixels (uploaded mask)."


def test_missing_or_mismatched_annotations_say_what_to_do(episode):
    supports, masks, _, _ = episode
    assert editor_support(None, None, None, 0) is None
    assert describe_support(None, None, None, "mask", None, 2) == "Support 3: empty."
    with pytest.raises(ValueError, match="Support 1 has no target pixel: paint the object"):
        editor_support(supports[0], _editor(supports[0]), None, 0)
    with pytest.raises(ValueError, match="Support 2 has a mask but no image"):
        editor_support(None, None, masks[0], 1)
    with pytest.raises(ValueError, match="the mask is 20x20 but the image is 200x200"):
        editor_support(supports[0], None, np.ones((20, 20), np.uint8), 0)
    with pytest.raises(ValueError, match="at least one query"):
        run_prediction(None, [editor_support(supports[0], None, masks[0], 0)], [])
    with pytest.raises(ValueError, match="at least one support"):
        run_prediction(None, [], [supports[0]])


def test_prediction_panels_and_mask_files(tmp_path, episode):
    supports, masks, query, _ = episode
    cache = ModelCache()
    loaded = cache.get("")
    assert loaded is cache.get(DEMO_MODEL)  # loaded once
    predictions = run_prediction(loaded.model, [editor_support(supports[0], None, masks[0], 0)], [query])
    assert np.array_equal(predictions[0].mask, loaded.model.predict(supports[0], masks[0], query))
    panels = result_panels([query], ["q.jpg"], predictions)
    assert [caption.split(": ")[1] for _, caption in panels] == [
        "prediction",
        "target probability",
        "BG map (mined background)",
        "DO map (eliminated distractors)",
    ]
    assert all(image.shape == (*query.shape[:2], 3) and image.dtype == np.uint8 for image, _ in panels)
    (path,) = write_masks(tmp_path, ["q.jpg"], predictions)
    assert path.name == "q_mask.png"
    assert np.array_equal(np.asarray(Image.open(path)) // 255, predictions[0].mask)


def test_the_synthetic_demo_model_is_named_plainly():
    cache = ModelCache()
    assert cache.get(None).synthetic
    assert "not on photos" in model_notice(cache.get(None))
    assert zoo_choices()[0] == DEMO_MODEL
    other = ModelCache(cache.get(None).model, label="my model").get(None)
    assert other.name == "my model" and not other.synthetic
    assert model_notice(other) == "Model: `my model`."


def test_examples_are_synthetic_episodes_on_disk(tmp_path):
    ((support, mask, query),) = write_examples(tmp_path, seeds=(3,))
    supports, masks, expected_query, _ = synthetic_episode(3, fold=0, shot=1, novel=True)
    assert np.array_equal(np.asarray(Image.open(support)), supports[0])
    assert np.array_equal(np.asarray(Image.open(mask)) // 255, masks[0])
    assert np.array_equal(np.asarray(Image.open(query)), expected_query)


def test_app_command_arguments():
    args = build_parser().parse_args(["app", "runs/x/best", "--host", "0.0.0.0", "--port", "8080"])
    assert (args.model, args.host, args.port, args.allow_any_model) == (["runs/x/best"], "0.0.0.0", 8080, False)
    defaults = build_parser().parse_args(["app"])
    assert (defaults.model, defaults.host, defaults.port) == ([], "127.0.0.1", 7860)
    several = build_parser().parse_args(["app", "a", "b", "--allow-any-model"])
    assert (several.model, several.allow_any_model) == (["a", "b"], True)


@pytest.fixture
def saved_models(tmp_path):
    """Three saved model directories (tiny random models)."""
    directories = []
    for i in range(3):
        save_pretrained(make_tiny_model(seed=i), tmp_path / f"model{i}")
        directories.append(tmp_path / f"model{i}")
    return directories


def _counting_loads(monkeypatch):
    """Count the calls the app's cache makes to from_pretrained (by the key it asks for)."""
    import ntre_zoo.app.logic as logic

    calls = []
    real = logic.from_pretrained
    monkeypatch.setattr(logic, "from_pretrained", lambda key: calls.append(key) or real(key))
    return calls


def test_a_visitor_may_choose_only_the_offered_models(saved_models, monkeypatch):
    calls = _counting_loads(monkeypatch)
    cache = ModelCache()
    asked = [str(saved_models[0]), "/etc", "/no/such/dir", "~", "../..", "hf-hub:someone/model", "x" * 300]
    for name in asked:
        with pytest.raises(PermissionError) as refused:
            cache.get(name)
        assert str(refused.value) == NOT_OFFERED  # the same words whether the path exists or not
    assert calls == [] and cache.loaded() == []  # nothing was loaded, downloaded or looked up
    assert cache.choices == zoo_choices()  # the zoo's published names, the demo model first
    assert cache.get(DEMO_MODEL).name == DEMO_MODEL
    offered = ModelCache(saved_models[1], offered=[saved_models[0]])
    assert offered.choices[:2] == [str(saved_models[1]), str(saved_models[0])]
    assert not offered.get(str(saved_models[0])).synthetic
    with pytest.raises(PermissionError):
        offered.get(str(saved_models[2]))


def test_with_allow_any_one_model_is_one_cache_entry_whatever_its_spelling(saved_models, monkeypatch):
    calls = _counting_loads(monkeypatch)
    cache = ModelCache(allow_any=True)
    first = cache.get(str(saved_models[0]))
    for spelling in (f"{saved_models[0]}/", f"{saved_models[0]}/../{saved_models[0].name}", f" {saved_models[0]} "):
        assert cache.get(spelling) is first
    assert calls == [str(saved_models[0].resolve())] and cache.loaded() == calls
    with pytest.raises(FileNotFoundError):
        cache.get(str(saved_models[0].parent / "missing"))


def test_the_model_cache_is_bounded_and_keeps_the_model_it_was_given(saved_models, monkeypatch):
    calls = _counting_loads(monkeypatch)
    given = make_tiny_model()
    cache = ModelCache(given, label="mine", allow_any=True, capacity=2)
    for directory in saved_models:
        cache.get(str(directory))
    cache.get(str(saved_models[1]))  # the most recently used stays
    assert cache.loaded() == [str(saved_models[2].resolve()), str(saved_models[1].resolve())]
    assert cache.get("mine").model is given and cache.get(None).model is given
    cache.get(str(saved_models[0]))  # evicted, so loaded again
    assert len(calls) == 4 and len(cache.loaded()) == 2
    with pytest.raises(ValueError, match="capacity must be at least 1"):
        ModelCache(capacity=0)


def test_launch_sets_the_upload_limit_and_passes_the_model_choices(monkeypatch):
    import ntre_zoo.app.ui as ui

    seen = {}

    class _App:
        def launch(self, **options):
            seen["launch"] = options

    monkeypatch.setattr(ui, "build_app", lambda model, **options: seen.update(build=(model, options)) or _App())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    ui.launch("a", offered=["b"], prevent_thread_lock=True)
    assert seen["launch"]["max_file_size"] == MAX_UPLOAD == "50mb"
    # what Gradio decodes for us (supports, drawn masks) is refused by PIL above the package's pixel cap
    assert 2 * Image.MAX_IMAGE_PIXELS == MAX_PIXELS
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(grey_png(7000, 6000, zlib.compress(b"\0" * 64))))  # 42 MP: refused from its header
    assert seen["build"] == ("a", {"offered": ["b"], "allow_any_model": False, "max_video_frames": MAX_VIDEO_FRAMES})
    args = build_parser().parse_args(["app", "a", "b"])
    monkeypatch.setattr(ui, "launch", lambda model, **options: seen.update(cli=(model, options)))
    monkeypatch.setattr("ntre_zoo.app.launch", ui.launch)
    assert args.handler(args) == 0
    expected = {"host": "127.0.0.1", "port": 7860, "offered": ["b"], "allow_any_model": False, "max_video_frames": 300}
    assert seen["cli"] == ("a", expected)
    assert build_parser().parse_args(["app", "--max-video-frames", "50"]).max_video_frames == 50


def _two_strokes(shape: tuple[int, int]) -> np.ndarray:
    """Two separate 11 x 11 brush strokes centred at (x=65, y=45) and (x=125, y=105)."""
    painted = np.zeros(shape, np.uint8)
    painted[40:51, 60:71] = 1
    painted[100:111, 120:131] = 1
    return painted


def test_box_points_and_scribble_from_strokes_predict_like_the_api(episode):
    supports, _, query, _ = episode
    model = ModelCache().get(None).model
    painted = _two_strokes(supports[0].shape[:2])
    expected = {
        "box": Box(60, 40, 131, 111),
        "points": Points([(65, 45), (125, 105)]),
        "scribble": Scribble(painted),
    }
    for kind, annotation in expected.items():
        support = editor_support(supports[0], _editor(supports[0], painted), None, 0, kind, "target")
        if kind == "scribble":
            assert np.array_equal(support.annotation.strokes, painted)
        else:
            assert support.annotation == annotation
        (prediction,) = run_prediction(model, [support], [query])
        assert np.array_equal(prediction.mask, model.predict(supports[0], annotation, query)), kind
    line = describe_support(supports[0], _editor(supports[0], painted), None, "points", "dog", 0)
    assert line == "Support 1: 200 x 200 px, 2 click(s) at (65, 45), (125, 105) (the strokes' centres). Class: dog."


def test_two_classes_give_the_label_map_of_segment(tmp_path, episode):
    supports, masks, query, _ = episode
    other, _, _, _ = synthetic_episode(6, fold=0, shot=1, novel=True)
    painted = _two_strokes(other[0].shape[:2])
    loaded = ModelCache().get(None)
    annotated = [
        editor_support(supports[0], None, masks[0] * np.uint8(255), 0, "mask", "a"),
        editor_support(other[0], _editor(other[0], painted), None, 1, "box", "b"),
        editor_support(supports[0], _editor(supports[0], masks[0]), None, 2, "mask", " a "),  # same class "a"
    ]
    (result,) = run_prediction(loaded.model, annotated, [query])
    expected = segment(
        loaded.model, query, {"a": ([supports[0]] * 2, [masks[0]] * 2), "b": ([other[0]], [Box(60, 40, 131, 111)])}
    )
    assert isinstance(result, Segmentation) and result.classes == ("a", "b")
    assert np.array_equal(result.label_map, expected.label_map)
    assert np.allclose(result.probabilities, expected.probabilities, atol=1e-6)
    captions = [caption.split(": ")[1] for _, caption in result_panels([query], ["q.jpg"], [result])]
    assert captions == [
        "classes",
        "probability of a",
        "probability of b",
        "BG map (mined background)",
        "DO map of a (eliminated distractors)",
        "DO map of b (eliminated distractors)",
    ]
    (path,) = write_masks(tmp_path, ["q.jpg"], [result])
    picture = Image.open(path)
    assert path.name == "q_labels.png" and picture.mode == "P"
    assert np.array_equal(np.asarray(picture), result.label_map)
    line = status_line(loaded, annotated, 1, 0.5)
    assert line.endswith("2 classes; label map: 0 = background, 1 = a, 2 = b.")
    assert status_line(loaded, annotated[:1], 1, 0.5).endswith("in 0.50 s.")  # one class: the line as before


def test_bad_annotation_combinations_say_what_to_do(episode):
    supports, masks, _, _ = episode
    with pytest.raises(ValueError, match="Support 1 has no target pixel: draw its box with the brush"):
        editor_support(supports[0], _editor(supports[0]), None, 0, "box", "target")
    with pytest.raises(ValueError, match="an uploaded mask is a 'mask' annotation, but the kind is 'points'"):
        editor_support(supports[0], _editor(supports[0]), masks[0], 1, "points", "target")
    with pytest.raises(ValueError, match="kind must be one of"):
        editor_support(supports[0], _editor(supports[0], masks[0]), None, 0, "lasso", "target")
    assert describe_support(supports[0], _editor(supports[0]), None, "scribble", None, 2) == (
        "Support 3 has no target pixel: draw its scribble with the brush."
    )


@pytest.fixture(scope="module")
def video_query(tmp_path_factory):
    """A 12-frame 64 x 80 clip at 12 frames/s (lossless), its label maps, and the demo model."""
    frames, labels = make_clip(12)
    path = encode_clip(tmp_path_factory.mktemp("query") / "clip.mkv", frames)
    return path, frames, labels, ModelCache().get(None).model


def _zipped_frames(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        return names, [np.asarray(Image.open(io.BytesIO(archive.read(name)))) for name in names]


def test_a_video_query_gives_an_overlay_video_a_mask_video_and_a_zip_of_frames(tmp_path, video_query):
    pytest.importorskip("av")
    path, frames, labels, model = video_query
    support = AnnotatedSupport(frames[0], (labels[0] == 1).astype(np.uint8))
    result = segment_video_query(model, [support], path, tmp_path)
    expected = [r.labels for r in predict_video(model, encode_support(model, [frames[0]], [support.annotation]), path)]
    assert result.frames == 12 == len(expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip_frames.zip", "clip_mask.mkv", "clip_overlay.mp4"]
    overlay = probe_video(result.overlay)
    assert (overlay.codec, overlay.width, overlay.height) == ("h264", W, H)  # what browsers play
    pictures, _, rate = decode(result.overlay)
    assert len(pictures) == 12 and rate == 12
    masks, _, rate = decode(result.masks, "gray")
    assert rate == 12 and all(np.array_equal(m, e) for m, e in zip(masks, expected, strict=True))
    names, pngs = _zipped_frames(result.frames_zip)
    assert names == [f"clip_frames/{i:06d}.png" for i in range(12)]
    assert all(np.array_equal(png, e) for png, e in zip(pngs, expected, strict=True))


def test_two_classes_in_a_video_give_label_maps(tmp_path, video_query):
    pytest.importorskip("av")
    path, frames, labels, model = video_query
    supports = [
        AnnotatedSupport(frames[0], (labels[0] == 1).astype(np.uint8), "disc"),
        AnnotatedSupport(frames[3], (labels[3] == 2).astype(np.uint8), "square"),
    ]
    result = segment_video_query(model, supports, path, tmp_path)
    classes = {"disc": ([frames[0]], [supports[0].annotation]), "square": ([frames[3]], [supports[1].annotation])}
    expected = [r.labels for r in segment_video(model, path, classes)]
    masks, _, _ = decode(result.masks, "gray")
    _, pngs = _zipped_frames(result.frames_zip)
    assert {int(v) for e in expected for v in np.unique(e)} <= {0, 1, 2}
    assert all(np.array_equal(m, e) for m, e in zip(masks, expected, strict=True))
    assert all(np.array_equal(png, e) for png, e in zip(pngs, expected, strict=True))


def _counting_decodes(monkeypatch):
    """Count the frames PyAV decodes (every video the app reads goes through video_io._decode)."""
    import ntre_zoo.inference.video_io as video_io

    decoded = []
    real = video_io._decode

    def counting(info):
        for frame in real(info):
            decoded.append(frame.index)
            yield frame

    monkeypatch.setattr(video_io, "_decode", counting)
    return decoded


def test_a_video_over_the_frame_cap_is_refused_from_its_header_or_stopped_at_the_cap(
    tmp_path, video_query, monkeypatch
):
    pytest.importorskip("av")
    import ntre_zoo.app.logic as logic

    path, frames, labels, model = video_query
    support = AnnotatedSupport(frames[0], (labels[0] == 1).astype(np.uint8))
    decoded = _counting_decodes(monkeypatch)
    with pytest.raises(ValueError, match=r"'clip\.mkv' has 12 frames, over this page's limit of 5") as refused:
        segment_video_query(model, [support], path, tmp_path, max_frames=5)
    assert decoded == [] and list(tmp_path.iterdir()) == []  # refused from the header (duration x rate)
    assert str(path.parent) not in str(refused.value)  # the upload's name, not the server's folder
    real_probe = logic.probe_video
    monkeypatch.setattr(logic, "probe_video", lambda *a: dataclasses.replace(real_probe(*a), frames=3, duration=None))
    with pytest.raises(ValueError, match=r"'clip\.mkv' has more than 5 frames, over this page's limit of 5"):
        segment_video_query(model, [support], path, tmp_path, max_frames=5)
    # stopped at the cap (frame 5 is the 6th), but for the read-ahead: 3 queued, 1 in the reader's hand; nothing left
    assert 6 <= len(decoded) <= 6 + 4 and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="max_pixels") as refused:
        segment_video_query(model, [support], path, tmp_path, max_pixels=H * W - 1)
    assert str(path.parent) not in str(refused.value)


def test_a_file_that_is_not_a_video_is_named_in_a_clear_error(tmp_path, video_query):
    pytest.importorskip("av")
    _, frames, labels, model = video_query
    fake = tmp_path / "upload" / "holiday.mp4"
    fake.parent.mkdir()
    fake.write_text("not a video")
    support = AnnotatedSupport(frames[0], (labels[0] == 1).astype(np.uint8))
    with pytest.raises(ValueError, match=r"video 'holiday\.mp4' is not a video PyAV can read") as refused:
        segment_video_query(model, [support], fake, tmp_path)
    assert str(fake.parent) not in str(refused.value) and list(tmp_path.iterdir()) == [fake.parent]
    with pytest.raises(ValueError, match="at least one support"):
        segment_video_query(model, [], fake, tmp_path)
