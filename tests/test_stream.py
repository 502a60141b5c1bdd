"""``inference/stream.py``: ``iter_segment`` yields ``segment``'s results in input order whatever the batch size
and read-ahead, bad queries as their exceptions, consumes its input lazily and stops its reader when closed."""

import threading

import numpy as np
import pytest
from PIL import Image

from ntre_zoo.inference.segment import encode_supports, segment
from ntre_zoo.inference.stream import iter_segment


def _image(seed, h=40, w=52):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def encoded(tiny_model):
    mask = np.zeros((40, 52), np.uint8)
    mask[8:30, 10:40] = 1
    return encode_supports(tiny_model, {"a": (_image(100), mask), "b": (_image(101), 1 - mask)}, precision="fp32")


def _same(a, b):
    assert a.classes == b.classes
    np.testing.assert_array_equal(a.label_map, b.label_map)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)


@pytest.mark.parametrize(("batch_size", "read_ahead"), [(1, 1), (3, 2), (4, 16)])
def test_results_in_input_order_equal_segment(tiny_model, encoded, batch_size, read_ahead):
    queries = [_image(i, 30 + i, 50 - i) for i in range(7)]  # sizes differ: a swap would show
    expected = segment(tiny_model, queries, encoded, precision="fp32", batch_size=2)
    streamed = list(
        iter_segment(tiny_model, queries, encoded, precision="fp32", batch_size=batch_size, read_ahead=read_ahead)
    )
    assert [query is original for (query, _), original in zip(streamed, queries, strict=True)] == [True] * 7
    for (_, result), want in zip(streamed, expected, strict=True):
        _same(result, want)


def test_bad_queries_are_yielded_as_errors_in_place(tiny_model, encoded, tmp_path):
    Image.fromarray(_image(1, 20, 30)).save(tmp_path / "good.png")
    (tmp_path / "text.png").write_text("not an image")
    png = (tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    Image.fromarray(_image(2)).save(tmp_path / "big.png")  # 52 x 40 = 2080 pixels, over the cap below
    queries = [tmp_path / "good.png", tmp_path / "text.png", _image(3, 20, 30), tmp_path / "cut.png"]
    queries += [tmp_path / "big.png", tmp_path / "missing.png", _image(4, 20, 30)]
    streamed = list(iter_segment(tiny_model, queries, encoded, precision="fp32", batch_size=2, max_pixels=1000))
    assert [query for query, _ in streamed] == queries
    kinds = [type(result).__name__ for _, result in streamed]
    middle = ["ValueError", "Segmentation", "ValueError", "ValueError", "FileNotFoundError"]
    assert kinds == ["Segmentation", *middle, "Segmentation"]
    assert "query[1]" in str(streamed[1][1]) and "text.png" in str(streamed[1][1])
    assert "query[3]" in str(streamed[3][1]) and "cut.png" in str(streamed[3][1])
    assert "query[4]" in str(streamed[4][1]) and "max_pixels=1000" in str(streamed[4][1])
    assert "query[5]" in str(streamed[5][1]) and "missing.png" in str(streamed[5][1])
    for i in (0, 2, 6):
        _same(streamed[i][1], segment(tiny_model, queries[i], encoded, precision="fp32"))


def test_input_is_read_lazily_and_ahead_by_at_most_read_ahead(tiny_model, encoded):
    taken = []

    def queries():
        for i in range(50):
            taken.append(i)
            yield _image(i)

    stream = iter_segment(tiny_model, queries(), encoded, precision="fp32", batch_size=2, read_ahead=3)
    next(stream)
    for _ in range(100):  # let the reader fill its queue
        if len(taken) >= 6:
            break
        threading.Event().wait(0.01)
    assert len(taken) <= 2 + 3 + 1  # the batch, the queue, the one the reader holds
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "ntre-zoo-read-ahead"]


def test_options_are_checked_when_called(tiny_model, encoded):
    with pytest.raises(ValueError, match="read_ahead"):
        iter_segment(tiny_model, [], encoded, read_ahead=0)
    with pytest.raises(ValueError, match="batch_size"):
        iter_segment(tiny_model, [], encoded, batch_size=0)
    with pytest.raises(ValueError, match="threshold"):
        iter_segment(tiny_model, [], encoded, threshold=1.0)
    assert list(iter_segment(tiny_model, [], encoded)) == []


def test_an_unexpected_reader_error_is_raised(tiny_model, encoded):
    def queries():
        yield _image(0)
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        list(iter_segment(tiny_model, queries(), encoded, precision="fp32"))
