"""Multi-class segment(): the overlap rule on a constructed case, agreement with predict class by class,
supports and queries encoded once, and clear errors."""

import numpy as np
import pytest

from ntre_zoo.inference.segment import Segmentation, encode_supports, resolve_overlaps, segment


def _scene(h=48, w=64, seed=0, box=(10, 30, 20, 44)):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[box[0] : box[1], box[2] : box[3]] = 1
    return image, mask


def test_overlap_rule_most_probable_class_above_the_threshold_else_background():
    p = np.array(
        [
            [[0.9, 0.6, 0.4, 0.7, 0.51]],  # class 1
            [[0.2, 0.8, 0.45, 0.7, 0.49]],  # class 2
            [[0.1, 0.3, 0.3, 0.2, 0.5]],  # class 3
        ],
        np.float32,
    )
    # pixel 0: class 1 alone; 1: both above 0.5, class 2 more probable; 2: none above; 3: a tie goes to the
    # class listed first; 4: 0.51 > 0.5 while exactly 0.5 does not count
    np.testing.assert_array_equal(resolve_overlaps(p), [[1, 2, 0, 1, 1]])
    np.testing.assert_array_equal(resolve_overlaps(p, 0.75), [[1, 2, 0, 0, 0]])
    np.testing.assert_array_equal(resolve_overlaps(p, 0.0), [[1, 2, 2, 1, 1]])
    assert resolve_overlaps(p).dtype == np.uint8
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\)"):
        resolve_overlaps(p, 1.0)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        resolve_overlaps(p[0])


def test_one_class_gives_predicts_mask(tiny_model):
    image, mask = _scene()
    query, _ = _scene(seed=1)
    expected = tiny_model.predict(image, mask, query, return_details=True)
    result = tiny_model.segment(query, {"dog": (image, mask)})
    assert isinstance(result, Segmentation) and result.classes == ("dog",)
    np.testing.assert_array_equal(result.label_map, expected.mask)
    np.testing.assert_array_equal(result.mask("dog"), expected.mask)
    np.testing.assert_allclose(result.probabilities[0], expected.probability, atol=1e-6)


def test_several_classes_are_each_predicts_episode_merged_by_the_rule(tiny_model):
    dog, dog_mask = _scene(seed=2)
    cat, cat_mask = _scene(seed=3, box=(5, 25, 30, 60))
    queries = [_scene(seed=4)[0], _scene(37, 90, seed=5)[0], _scene(seed=6)[0]]
    results = tiny_model.segment(queries, {"dog": ([dog], [dog_mask]), "cat": (cat, cat_mask)}, batch_size=2)
    assert len(results) == 3
    for query, result in zip(queries, results, strict=True):
        d = tiny_model.predict(dog, dog_mask, query, return_details=True)
        c = tiny_model.predict(cat, cat_mask, query, return_details=True)
        np.testing.assert_allclose(result.probabilities, np.stack([d.probability, c.probability]), atol=1e-5)
        np.testing.assert_allclose(result.do_maps, np.stack([d.do_map, c.do_map]), atol=1e-5)
        np.testing.assert_allclose(result.bg_map, d.bg_map, atol=1e-5)
        np.testing.assert_allclose(c.bg_map, d.bg_map, atol=1e-5)  # BG mining does not depend on the supports
        np.testing.assert_array_equal(result.label_map, resolve_overlaps(result.probabilities))
        assert result.label_map.shape == query.shape[:2] and result.probabilities.dtype == np.float32
    np.testing.assert_array_equal(results[0].mask("cat"), results[0].label_map == 2)
    with pytest.raises(KeyError, match="its classes are"):
        results[0].mask("bird")


def test_supports_and_queries_are_encoded_once(tiny_model, monkeypatch):
    image, mask = _scene()
    calls = {"support": 0, "query": 0}
    encode_support, encode_query = tiny_model.encode_support_tensors, tiny_model.encode_query

    def count(kind, fn):
        def wrapped(*args, **kwargs):
            calls[kind] += 1
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(tiny_model, "encode_support_tensors", count("support", encode_support))
    monkeypatch.setattr(tiny_model, "encode_query", count("query", encode_query))
    queries = [_scene(seed=s)[0] for s in range(5)]
    segment(tiny_model, queries, {"a": (image, mask), "b": ([image, image], [mask, mask]), "c": (image, mask)})
    assert calls == {"support": 3, "query": 2}  # one per class; one per batch of 4 queries
    encoded = encode_supports(tiny_model, {"a": (image, mask)})
    calls.update(support=0, query=0)
    first = segment(tiny_model, queries[0], encoded)
    assert calls == {"support": 0, "query": 1}
    np.testing.assert_array_equal(
        first.probabilities, segment(tiny_model, queries[0], {"a": (image, mask)}).probabilities
    )


def test_segment_errors_name_the_class(tiny_model):
    image, mask = _scene()
    with pytest.raises(TypeError, match="non-empty mapping"):
        segment(tiny_model, image, {})
    with pytest.raises(TypeError, match="non-empty mapping"):
        segment(tiny_model, image, [(image, mask)])
    with pytest.raises(TypeError, match=r"supports\['a'\] must be an \(images, annotations\) pair"):
        segment(tiny_model, image, {"a": image})
    with pytest.raises(TypeError, match="non-empty strings"):
        segment(tiny_model, image, {"": (image, mask)})
    with pytest.raises(ValueError, match=r"supports\['b'\]: support_masks\[0\] has no target pixel"):
        segment(tiny_model, image, {"a": (image, mask), "b": (image, mask * 0)})
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\)"):
        segment(tiny_model, image, {"a": (image, mask)}, threshold=1.5)
    with pytest.raises(ValueError, match="empty list"):
        segment(tiny_model, [], {"a": (image, mask)})


def test_soft_support_masks_with_mask_threshold(tiny_model):
    image, mask = _scene()
    soft = (mask * 200 + 30).astype(np.uint8)  # an anti-aliased-looking mask: 30 outside, 230 inside
    with pytest.raises(ValueError, match=r"supports\['a'\]"):
        segment(tiny_model, image, {"a": (image, soft)})
    expected = segment(tiny_model, image, {"a": (image, mask)})
    np.testing.assert_array_equal(
        segment(tiny_model, image, {"a": (image, soft)}, mask_threshold=127).label_map, expected.label_map
    )
