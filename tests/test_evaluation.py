"""Metrics against hand-computed values, evaluation invariance, the CLI end to end, bad options refused before
evaluating, and the TF32 switches an fp32 evaluation on CUDA records."""

from __future__ import annotations

import json
import math
from collections import defaultdict

import pytest
import torch

import ntre_zoo
from ntre_zoo.cli import main
from ntre_zoo.cli import main as cli_main
from ntre_zoo.data import AugmentConfig, DataConfig, build_dataset
from ntre_zoo.evaluation import FewShotMeter, FoldResult, MultiSeedResult, episode_stats, evaluate, format_table
from ntre_zoo.evaluation.loop import tf32_record

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
    # Seed 4 with 30 val images: fold-0 episodes over 5 classes in which some images are a support for two
    # different classes (test_feature_reuse_gives_the_per_episode_metrics relies on it).
    assert main(["make-synthetic", "-o", str(out), "--seed", "4", "--train", "0", "--val", "30", "--no-progress"]) == 0
    return out / "VOCdevkit" / "VOC2012"


@pytest.fixture(scope="module")
def model():
    """The shipped trained model on a 65-pixel canvas: fast, with mixed predictions that depend on the support
    (test_the_model_fixture_depends_on_its_support), so equal counts mean equal supports."""
    return ntre_zoo.from_pretrained("ntrenet_tiny.synthetic_fold0", test_size=65)


def _dataset(root, episodes, shot=1, **kw):
    config = DataConfig(dataset="pascal5i", root=str(root), fold=0, shot=shot, test_size=65)
    return build_dataset(config, "val", episodes=episodes, progress=False, **kw)


def _supports_of_two_classes(dataset) -> dict[int, set]:
    """Support images that the dataset's episodes use with more than one class."""
    classes = defaultdict(set)
    for i in range(len(dataset)):
        _, class_id, supports = dataset.sample(i)
        for s in supports:
            classes[s].add(class_id)
    return {s: c for s, c in classes.items() if len(c) > 1}


def _predict(model, query, image, mask):
    with torch.no_grad():
        return model(query[None], image[None, None], mask[None, None]).logits.argmax(dim=1)


def test_the_model_fixture_depends_on_its_support(synthetic_root, model):
    """The same support image with another class's mask, or another image, flips many query pixels."""
    dataset = _dataset(synthetic_root, 40)
    image_index, classes = next(iter(_supports_of_two_classes(dataset).items()))
    first, second = sorted(classes)
    episode = next(i for i in range(len(dataset)) if dataset.sample(i)[1:] == (first, [image_index]))
    query = dataset[episode]["query_image"]
    image, mask_first = dataset.eval_view(image_index, first)[:2]
    mask_second = dataset.eval_view(image_index, second)[1]
    expected = _predict(model, query, image, mask_first)
    assert 0.02 < expected.float().mean() < 0.8
    assert (expected != _predict(model, query, image, mask_second)).float().mean() > 0.02
    other_image, other_mask = dataset.eval_view(next(i for i in dataset.class_files[first] if i != image_index), first)[
        :2
    ]
    assert (expected != _predict(model, query, other_image, other_mask)).float().mean() > 0.02


def test_evaluate_same_numbers_for_any_batch_size_and_workers(synthetic_root, model):
    dataset = _dataset(synthetic_root, 9)
    one = evaluate(model, dataset, batch_size=1, workers=0, progress=False)
    many = evaluate(model, dataset, batch_size=4, workers=2, progress=False)
    assert one.to_dict() == many.to_dict()
    assert one.episodes == 9 and 0 < one.fb_iou < 1 and 0 < one.miou < 1 and one.seed == 321
    other = evaluate(model, dataset, seed=5, episodes=6, progress=False)
    same_count = evaluate(model, dataset, episodes=6, progress=False)
    assert other.episodes == same_count.episodes == 6 and other.seed == 5
    assert {**other.to_dict(), "seed": None} != {**same_count.to_dict(), "seed": None}  # the seed draws episodes
    train = build_dataset(
        DataConfig(dataset="pascal5i", root=str(synthetic_root), augment=AugmentConfig(crop_size=65)),
        "val",
        episodes=2,
        progress=False,
    )
    train.split = "train"
    with pytest.raises(ValueError, match="split='val'"):
        evaluate(model, train)


def _assert_same_metrics(a, b, tolerance=5e-4):
    """Equal episode counts, and every IoU and precision within ``tolerance``: one pixel flipped by float
    rounding moves a class IoU here by about 1e-4, while the smallest real difference measured (K-shot
    supports combined with the first shot's prototype only) moves one by 3e-3, a wrong cache key by 2e-2."""
    a, b = a.to_dict(), b.to_dict()
    assert (a["class_episodes"], a["episodes"], a["seed"]) == (b["class_episodes"], b["episodes"], b["seed"])
    for key in ("class_iou", "class_precision"):
        assert a[key].keys() == b[key].keys()
        for c in a[key]:
            assert (a[key][c] is None) == (b[key][c] is None)
            assert a[key][c] is None or a[key][c] == pytest.approx(b[key][c], abs=tolerance), (key, c)
    for key in ("miou", "fb_iou", "precision"):
        assert a[key] == pytest.approx(b[key], abs=tolerance), key


@pytest.mark.parametrize("shot", [1, 2])
def test_feature_reuse_gives_the_per_episode_metrics(synthetic_root, model, shot):
    """Grouping by query and caching supports changes the work done, not the counts: with a support image
    used for two classes (the cache key is the pair) and K shots combined from cached one-shot encodings
    (the K-shot prototype and prior). On the reference computation (``fast_inference`` off: no channels_last
    in one path only) the two paths run the same kernels."""
    dataset = _dataset(synthetic_root, 40, shot=shot)
    assert _supports_of_two_classes(dataset)
    model.fast_inference = False
    try:
        plain = evaluate(model, dataset, reuse_features=False, progress=False)
        reused = evaluate(model, dataset, reuse_features=True, batch_size=3, progress=False)
        tight = evaluate(model, dataset, reuse_features=True, cache_mb=0.05, progress=False)
    finally:
        model.fast_inference = True
    assert 0.1 < plain.miou < 0.9
    _assert_same_metrics(reused, plain)
    _assert_same_metrics(tight, plain)


def _record_decoding(model):
    """Hook on the final classifier (run by every evaluation path): its mode, autograd and output dtype."""
    seen = []
    handle = model.classifier.register_forward_hook(
        lambda module, args, output: seen.append((module.training, torch.is_grad_enabled(), output.dtype))
    )
    return seen, handle


@pytest.mark.parametrize("reuse_features", [True, False])
def test_evaluate_runs_in_eval_mode_without_autograd_and_never_changes_the_models_mode(
    synthetic_root, model, reuse_features
):
    dataset = _dataset(synthetic_root, 4)
    expected = evaluate(model, dataset, reuse_features=reuse_features, progress=False)
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    seen, handle = _record_decoding(model)
    modes_during = []  # the model itself, as another thread sees it while the evaluation runs
    hook = model.classifier.register_forward_hook(lambda *_: modes_during.append(model.training))
    model.train()
    try:
        result = evaluate(model, dataset, reuse_features=reuse_features, progress=False)
        assert model.training
    finally:
        handle.remove()
        hook.remove()
        model.eval()
    assert seen and set(seen) == {(False, False, torch.float32)}
    assert modes_during and all(modes_during)
    assert result.to_dict() == expected.to_dict()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in buffers.items())  # BN statistics untouched


@pytest.mark.parametrize("reuse_features", [True, False])
def test_bf16_runs_evaluation_under_autocast(synthetic_root, model, reuse_features):
    dataset = _dataset(synthetic_root, 6)
    seen, handle = _record_decoding(model)
    try:
        result = evaluate(model, dataset, precision="bf16", reuse_features=reuse_features, progress=False)
    finally:
        handle.remove()
    assert seen and {dtype for _, _, dtype in seen} == {torch.bfloat16}
    fp32 = evaluate(model, dataset, reuse_features=reuse_features, progress=False)
    assert result.episodes == 6 and abs(result.miou - fp32.miou) < 0.05


def _run(miou, seed):
    return FoldResult(miou, miou / 2, 1 - miou, {1: miou}, {1: miou}, {1: 3}, {1: "a"}, 3, seed)


def test_multi_seed_spread_is_the_sample_standard_deviation():
    runs = [_run(0.2, 1), _run(0.4, 2), _run(0.9, 3)]
    summary = MultiSeedResult(runs).to_dict()
    # mean 0.5; squared deviations 0.09, 0.01, 0.16 sum to 0.26: sample std sqrt(0.26 / 2), not sqrt(0.26 / 3)
    assert summary["miou"] == pytest.approx(0.5) and summary["miou_std"] == pytest.approx(math.sqrt(0.13))
    assert summary["fb_iou_std"] == pytest.approx(math.sqrt(0.13) / 2)
    assert summary["precision"] == pytest.approx(0.5) and summary["precision_std"] == pytest.approx(math.sqrt(0.13))
    assert summary["class_iou"] == {"1": pytest.approx(0.5)} and summary["seeds"] == [1, 2, 3]
    assert MultiSeedResult(runs[:1]).to_dict()["miou_std"] == 0.0


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
    # "precision" is the metric; the number format the numbers were computed in has its own name.
    assert data["protocol"]["numeric_precision"] == "fp32" and "precision" not in data["protocol"]
    # The CLI's numbers are those of the Python function, one run per seed, and what it prints is what it wrote.
    runs = [evaluate(model, _dataset(synthetic_root, 6), seed=seed, progress=False) for seed in (7, 8)]
    assert [r["miou"] for r in data["runs"]] == [r.miou for r in runs] and runs[0].miou != runs[1].miou
    assert data["miou"] == pytest.approx((runs[0].miou + runs[1].miou) / 2)
    assert data["miou_std"] == pytest.approx(abs(runs[0].miou - runs[1].miou) / math.sqrt(2))  # sample std, n=2
    assert f"mIoU {100 * data['miou']:.2f} +- {100 * data['miou_std']:.2f}" in printed
    assert f"{'mIoU':<24} {100 * runs[1].miou:7.2f}" in printed
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


# ----------------------------------------------------------------------------------- errors before evaluating
def test_evaluate_output_that_is_a_directory_is_refused_before_evaluating(tmp_path, capsys, monkeypatch):
    import ntre_zoo.evaluation.loop as loop

    monkeypatch.setattr(loop, "evaluate", lambda *a, **k: pytest.fail("evaluated before checking --output"))
    code = cli_main(
        [
            *("evaluate", "ntrenet_tiny.synthetic_fold0", "--dataset", "pascal5i", "--data-root", str(tmp_path)),
            *("--output", str(tmp_path), "--no-progress"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "--output" in err and "is a directory" in err, err


def test_evaluate_names_bad_device_amp_dtype_and_batch_size(tiny_model):
    from ntre_zoo.evaluation import evaluate

    for kwargs, error, message in [
        ({"device": "bogus"}, ValueError, "device='bogus'"),
        ({"amp_dtype": torch.int8}, TypeError, "amp_dtype must be"),
        ({"batch_size": 2.5}, TypeError, "batch_size must be an integer"),
    ]:
        with pytest.raises(error, match=message):
            evaluate(tiny_model, dataset=None, **kwargs)


# -------------------------------------------------------------------- what an fp32 evaluation on CUDA records
def test_cuda_records_the_tf32_switches_and_the_cpu_nothing(monkeypatch):
    assert tf32_record("cpu") is None and tf32_record(torch.device("cpu")) is None
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    assert tf32_record("cuda:0") == {"convolutions": True, "matmul": False}  # torch's defaults
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert tf32_record("cuda") == {"convolutions": False, "matmul": False}
