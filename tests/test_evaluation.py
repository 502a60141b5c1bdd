"""Metrics against hand-computed values, evaluation invariance, and the CLI end to end."""

from __future__ import annotations

import json

import pytest
import torch
from data_fixtures import tiny_model

from ntre_zoo.cli import main
from ntre_zoo.data import AugmentConfig, DataConfig, build_dataset
from ntre_zoo.evaluation import FewShotMeter, episode_stats, evaluate, evaluate_seeds, format_table

pytestmark = pytest.mark.filterwarnings("ignore:.*never form an episode")

PRED = torch.tensor([[1, 1, 0], [0, 1, 0]])
TARGET = torch.tensor([[1, 0, 255], [0, 1, 1]])
#: bg I, bg U, fg I, fg U, TP, FP, episodes; worked out by hand (the 255 pixel counts nowhere).
STATS = [1, 3, 2, 4, 2, 1, 1]
EMPTY = [2, 3, 0, 1, 0, 0, 1]


def test_episode_stats_by_hand_with_ignore():
    assert episode_stats(PRED, TARGET).tolist() == STATS


def test_episode_stats_empty_prediction():
    assert episode_stats(torch.zeros(2, 2, dtype=torch.long), torch.tensor([[1, 0], [255, 0]])).tolist() == EMPTY
    with pytest.raises(ValueError, match="shape"):
        episode_stats(torch.zeros(2, 2), torch.zeros(3, 3))


def test_meter_reduces_class_miou_fb_iou_and_precision():
    meter = FewShotMeter([1, 2, 3], {1: "a"})
    meter.update(1, torch.tensor(STATS))
    meter.update(1, torch.tensor(EMPTY))
    meter.update(2, torch.tensor(STATS))
    result = meter.result(seed=4)
    assert result.class_iou[1] == pytest.approx(2 / 5) and result.class_iou[2] == pytest.approx(2 / 4)
    assert result.class_iou[3] is None and result.class_episodes == {1: 2, 2: 1, 3: 0}
    assert result.miou == pytest.approx(0.45)  # averaged over the classes that had episodes
    assert result.precision == pytest.approx(2 / 3)
    assert result.fb_iou == pytest.approx(0.5 * (4 / 9 + 4 / 9))
    assert result.episodes == 3 and result.seed == 4
    assert "45.00" in format_table(result)
    with pytest.raises(KeyError):
        meter.update(9, torch.tensor(STATS))


def test_meters_merge_like_one():
    a, b, whole = FewShotMeter([1, 2]), FewShotMeter([1, 2]), FewShotMeter([1, 2])
    a.update(1, torch.tensor(STATS))
    b.update(2, torch.tensor(EMPTY))
    whole.update(1, torch.tensor(STATS))
    whole.update(2, torch.tensor(EMPTY))
    assert a.merge(b).result().to_dict() == whole.result().to_dict()
    with pytest.raises(ValueError):
        a.merge(FewShotMeter([1]))


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    assert main(["make-synthetic", str(out), "--seed", "2", "--train", "0", "--val", "24", "--no-progress"]) == 0
    return out / "VOCdevkit" / "VOC2012"


@pytest.fixture(scope="module")
def model(synthetic_root):
    torch.manual_seed(0)
    net = tiny_model(test_size=65).eval()
    # An untrained head predicts background everywhere; shift its classifier to the median logit gap of
    # one episode so that predictions are mixed and the invariance checks compare real numbers.
    item = build_dataset(DataConfig(root=str(synthetic_root), test_size=65), "val", episodes=1, progress=False)[0]
    with torch.no_grad():
        net.classifier[-1].weight.normal_(0, 1.0)
        logits = net(item["query_image"][None], item["support_images"][None], item["support_masks"][None]).logits
        net.classifier[-1].bias.copy_(torch.tensor([float((logits[:, 1] - logits[:, 0]).median()), 0.0]))
    return net


def test_evaluate_same_numbers_for_any_batch_size_and_workers(synthetic_root, model):
    config = DataConfig(dataset="pascal5i", root=str(synthetic_root), fold=0, test_size=65)
    dataset = build_dataset(config, "val", episodes=9, progress=False)
    one = evaluate(model, dataset, batch_size=1, workers=0, progress=False)
    many = evaluate(model, dataset, batch_size=4, workers=2, progress=False)
    assert one.to_dict() == many.to_dict()
    assert one.episodes == 9 and 0 < one.fb_iou < 1 and 0 < one.miou < 1 and one.seed == 321
    other = evaluate(model, dataset, seed=5, episodes=6, progress=False)
    assert other.episodes == 6 and other.seed == 5
    multi = evaluate_seeds(model, dataset, [1, 2], episodes=4, progress=False).to_dict()
    assert multi["seeds"] == [1, 2] and "miou_std" in multi and len(multi["runs"]) == 2
    train = build_dataset(
        DataConfig(dataset="pascal5i", root=str(synthetic_root), augment=AugmentConfig(crop_size=65)),
        "val",
        episodes=2,
        progress=False,
    )
    train.split = "train"
    with pytest.raises(ValueError, match="split='val'"):
        evaluate(model, train)


@pytest.mark.parametrize("shot", [1, 2])
def test_feature_reuse_gives_the_per_episode_metrics(synthetic_root, model, shot):
    """Grouping by query and caching supports changes the work done, not a single count."""
    config = DataConfig(dataset="pascal5i", root=str(synthetic_root), fold=0, shot=shot, test_size=65)
    dataset = build_dataset(config, "val", episodes=40, progress=False)
    plain = evaluate(model, dataset, reuse_features=False, progress=False)
    reused = evaluate(model, dataset, reuse_features=True, batch_size=3, progress=False)
    tight = evaluate(model, dataset, reuse_features=True, cache_mb=0.05, workers=2, progress=False)
    assert 0 < plain.miou < 1
    assert reused.to_dict() == plain.to_dict() == tight.to_dict()


def test_evaluate_under_bf16_autocast(synthetic_root, model):
    config = DataConfig(dataset="pascal5i", root=str(synthetic_root), fold=0, test_size=65)
    dataset = build_dataset(config, "val", episodes=6, progress=False)
    result = evaluate(model, dataset, amp_dtype=torch.bfloat16, progress=False)
    assert result.episodes == 6 and 0 <= result.miou <= 1


def test_support_cache_restores_exact_encodings_and_respects_its_budget(model):
    from ntre_zoo.evaluation.feature_reuse import SupportCache
    from ntre_zoo.model import SupportFeatures

    images = torch.randn(1, 1, 3, 65, 65)
    masks = torch.zeros(1, 1, 65, 65, dtype=torch.long)
    masks[..., 10:30, 20:40] = 1
    with torch.no_grad():
        encoded = model.encode_support(images, masks)
    cache = SupportCache(max_bytes=10**7)
    assert cache.get((0, 1)) is None
    cache.put((0, 1), SupportFeatures(None, None, encoded.prototype, encoded.masked_high))
    restored = cache.get((0, 1))
    assert torch.equal(restored.masked_high, encoded.masked_high) and torch.equal(restored.prototype, encoded.prototype)
    assert (cache.hits, cache.misses) == (1, 1)
    small = SupportCache(max_bytes=cache.bytes)
    small.put((0, 1), restored)
    small.put((1, 1), restored)  # evicts the least recently used entry
    assert small.get((0, 1)) is None and small.get((1, 1)) is not None and small.bytes <= small.max_bytes


def test_evaluate_cli_end_to_end(synthetic_root, model, tmp_path, capsys):
    from ntre_zoo.zoo.saving import save_pretrained

    save_pretrained(model, tmp_path / "tiny")
    output = tmp_path / "result.json"
    code = main(
        [
            "evaluate",
            str(tmp_path / "tiny"),
            "--dataset",
            "pascal5i",
            "--data-root",
            str(synthetic_root),
            "--fold",
            "0",
            "--shot",
            "1",
            "--episodes",
            "6",
            "--seed",
            "7",
            "--seeds",
            "2",
            "--batch-size",
            "3",
            "--output",
            str(output),
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "FB-IoU" in printed and "over 2 seeds" in printed
    data = json.loads(output.read_text())
    for key in ("miou", "fb_iou", "precision", "class_iou", "episodes", "seed", "protocol"):
        assert key in data
    assert data["episodes"] == 6 and data["seed"] == 7 and data["seeds"] == [7, 8]
    assert data["protocol"]["test_classes"] == [1, 2, 3, 4, 5] and data["protocol"]["test_size"] == 65
    # The CLI's numbers are those of the Python function.
    dataset = build_dataset(
        DataConfig(dataset="pascal5i", root=str(synthetic_root), test_size=65),
        "val",
        episodes=6,
        seed=7,
        progress=False,
    )
    assert data["runs"][0]["miou"] == evaluate(model, dataset, progress=False).miou
    bad = main(
        [
            "evaluate",
            str(tmp_path / "tiny"),
            "--dataset",
            "pascal5i",
            "--data-root",
            str(tmp_path / "none"),
            "--no-progress",
        ]
    )
    assert bad == 1 and "make-synthetic" in capsys.readouterr().err
