"""Benchmark loaders, class lists, episodes and augmentation on small on-disk fixtures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from data_fixtures import COCO_CATEGORIES, write_coco, write_folder
from PIL import Image
from torch.utils.data import DataLoader

from ntre_zoo.data import (
    AugmentConfig,
    DataConfig,
    augment_pair,
    build_class_lists,
    build_dataset,
    coco20i_split,
    collate_episodes,
    custom_split,
    label_class_counts,
    make_synthetic_voc,
    pascal5i_source,
    pascal5i_split,
)
from ntre_zoo.data.episodes import binary_label
from ntre_zoo.data.preprocessing import mask_to_canvas

pytestmark = pytest.mark.filterwarnings("ignore:.*never form an episode")


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return make_synthetic_voc(tmp_path_factory.mktemp("synthetic"), seed=1, train=40, val=30, progress=False)


def _config(voc, **kw):
    base = {
        "dataset": "pascal5i",
        "root": str(voc),
        "fold": 0,
        "shot": 1,
        "augment": AugmentConfig(crop_size=65),
        "test_size": 65,
    }
    base.update(kw)
    return DataConfig(**base)


# ----------------------------------------------------------------------------------------- fold lists
def test_pascal_folds():
    assert pascal5i_split(0).test_classes == (1, 2, 3, 4, 5)
    assert pascal5i_split(3).test_classes == (16, 17, 18, 19, 20)
    assert pascal5i_split(1).train_classes == tuple(c for c in range(1, 21) if not 6 <= c <= 10)
    with pytest.raises(ValueError, match="fold"):
        pascal5i_split(4)


def test_coco_folds_interleaved_and_contiguous():
    for fold in range(4):
        split = coco20i_split(fold)
        assert split.test_classes == tuple(c for c in range(1, 81) if (c - 1) % 4 == fold)
        assert len(split.train_classes) == 60 and not set(split.train_classes) & set(split.test_classes)
    assert coco20i_split(0).test_classes[:3] == (1, 5, 9)
    assert coco20i_split(2, "contiguous").test_classes == tuple(range(41, 61))
    with pytest.raises(ValueError, match="interleaved"):
        coco20i_split(0, "random")


def test_custom_split_needs_known_novel_classes():
    assert custom_split([1, 2, 3], [2]).train_classes == (1, 3)
    with pytest.raises(ValueError, match="not in the dataset"):
        custom_split([1, 2, 3], [7])
    with pytest.raises(ValueError, match="novel"):
        custom_split([1, 2, 3], None)


def test_the_folder_dataset_hint_speaks_cli_and_python():
    with pytest.raises(ValueError, match=r"`--novel-classes 1 2` on the command line.*novel_classes=\(1, 2\)"):
        custom_split([1, 2, 3], None)


# ---------------------------------------------------------------------------------------- class lists
def test_pixel_rule_is_2048():
    counts = [{1: 2048, 2: 2047}, {2: 5000}, {1: 100}, {7: 9000}]
    lists = build_class_lists(counts, classes=[1, 2])
    assert lists.data == (0, 1)
    assert lists.per_class == {1: (0,), 2: (1,)}
    assert lists.present[2] == (1,)  # present (for choosing a class) but below the threshold


def test_class_count_cache_is_reused_and_rebuilt(tmp_path, monkeypatch):
    labels = []
    for i in range(3):
        label = np.zeros((50, 50), dtype=np.uint8)
        label[: 10 * (i + 1)] = i + 1
        label[-1] = 255
        Image.fromarray(label, mode="L").save(tmp_path / f"{i}.png")
        labels.append(tmp_path / f"{i}.png")
    first = label_class_counts(labels, root=tmp_path, cache_dir=tmp_path / "cache", name="t", progress=False)
    assert first == [{1: 500}, {2: 1000}, {3: 1500}]
    caches = list((tmp_path / "cache").glob("t_classes_*.json"))
    assert len(caches) == 1 and not list((tmp_path / "cache").glob("*.tmp"))

    import ntre_zoo.data.index as index

    monkeypatch.setattr(index, "read_label", lambda path: pytest.fail("the cache was not used"))
    assert label_class_counts(labels, root=tmp_path, cache_dir=tmp_path / "cache", name="t", progress=False) == first
    monkeypatch.undo()
    Image.fromarray(np.full((60, 60), 2, dtype=np.uint8), mode="L").save(labels[0])  # a changed dataset
    again = label_class_counts(labels, root=tmp_path, cache_dir=tmp_path / "cache", name="t", progress=False)
    assert again[0] == {2: 3600} and len(list((tmp_path / "cache").glob("t_classes_*.json"))) == 2


# --------------------------------------------------------------------------------------------- PASCAL
def test_voc_lists_ids_pairs_and_fallback(voc, tmp_path):
    train = pascal5i_source(voc, "train")
    val = pascal5i_source(voc.parent.parent, "val")  # the parent of VOCdevkit works too
    assert len(train.images) == 40 and len(val.images) == 30
    assert train.images[0].name == "synth_train_000000.jpg" and train.labels[0].parent.name == "SegmentationClassAug"
    # PFENet-style "image label" pairs are read the same way.
    tree = tmp_path / "VOC2012"
    stems = ["synth_train_000000", "synth_train_000001", "synth_val_000000"]
    for sub, ext in (("JPEGImages", "jpg"), ("SegmentationClassAug", "png")):
        (tree / sub).mkdir(parents=True)
        for stem in stems:
            (tree / sub / f"{stem}.{ext}").write_bytes((voc / sub / f"{stem}.{ext}").read_bytes())
    (tree / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tree / "ImageSets" / "Segmentation" / "val.txt").write_text(
        f"JPEGImages/{stems[0]}.jpg SegmentationClassAug/{stems[0]}.png\n"
    )
    assert [p.stem for p in pascal5i_source(tree, "val").labels] == stems[:1]
    assert [p.stem for p in pascal5i_source(tree, "train").labels] == stems[1:]  # no list: all but val
    with pytest.raises(FileNotFoundError, match="make-synthetic"):
        pascal5i_source(tmp_path / "nothing", "val")


def test_eval_episodes_resize_and_keep_original_label(voc):
    dataset = build_dataset(_config(voc), "val", episodes=12, seed=5, progress=False)
    assert dataset.classes == (1, 2, 3, 4, 5) and len(dataset) == 12
    item = dataset[0]
    query, class_id, _supports = dataset.sample(0)
    assert item["query_image"].shape == (3, 65, 65) and item["support_images"].shape == (1, 3, 65, 65)
    label = np.asarray(Image.open(dataset.source.labels[query]))
    assert item["query_label"].shape == label.shape
    torch.testing.assert_close(item["query_label"], binary_label(label, class_id))
    torch.testing.assert_close(item["query_mask"], mask_to_canvas(item["query_label"], 65))
    assert int(item["class_id"]) == class_id and int(item["class_index"]) == dataset.classes.index(class_id)
    # The query sequence is the data list in order, cycled.
    assert [dataset.sample(i)[0] for i in range(len(dataset.queries) + 1)][-1] == dataset.sample(0)[0]
    batch = collate_episodes([dataset[i] for i in range(3)])
    assert batch["query_image"].shape == (3, 3, 65, 65) and isinstance(batch["query_label"], list)


def test_supports_exclude_query_and_never_repeat(voc):
    dataset = build_dataset(_config(voc, shot=3, fold=1), "train", episodes=60, progress=False)
    for i in range(len(dataset)):
        query, class_id, supports = dataset.sample(i)
        assert query not in supports and len(set(supports)) == 3
        assert all(i in dataset.class_files[class_id] for i in supports)
        assert class_id in dataset.classes


def test_train_labels_are_binary_and_test_classes_become_background():
    label = np.array([[1, 2, 255], [6, 2, 0]], dtype=np.uint8)  # 1 is a fold-0 test class
    assert binary_label(label, 2).tolist() == [[0, 1, 255], [0, 1, 0]]


def _batches(dataset, workers, batch_size):
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_episodes)
    return list(loader)


def test_episodes_identical_across_workers_and_batch_sizes(voc):
    dataset = build_dataset(_config(voc, shot=2), "train", episodes=6, seed=11, progress=False)
    dataset.set_epoch(3)
    single = _batches(dataset, 0, 1)
    multi = _batches(dataset, 2, 4)
    for key in ("query_mask", "support_masks", "class_id", "class_index", "episode"):
        torch.testing.assert_close(
            torch.cat([b[key] for b in single]), torch.cat([b[key] for b in multi]), rtol=0, atol=0
        )
    # Images: the same draws; worker processes run single-threaded kernels, so allow float rounding.
    for key in ("query_image", "support_images"):
        torch.testing.assert_close(
            torch.cat([b[key] for b in single]), torch.cat([b[key] for b in multi]), rtol=0, atol=1e-5
        )


@pytest.mark.parametrize("split", ["train", "val"])
def test_another_seed_draws_other_episodes_at_the_same_epoch(voc, split):
    """Episodes are a function of (seed, epoch, index): compare seeds at one epoch, and epochs at one seed."""
    a, b, a_again = (
        build_dataset(_config(voc, shot=2), split, episodes=12, seed=s, progress=False) for s in (11, 12, 11)
    )
    for dataset in (a, b, a_again):
        dataset.set_epoch(3)
    draws = [[d.sample(i) for i in range(12)] for d in (a, b, a_again)]
    assert draws[0] == draws[2] and draws[0] != draws[1]
    assert [d[1:] for d in draws[0]] != [d[1:] for d in draws[1]]  # the class and supports, not only the query
    if split == "train":  # the augmentation follows the seed too
        assert torch.equal(a[0]["query_mask"], a_again[0]["query_mask"])
        assert not torch.equal(a[0]["query_image"], b[0]["query_image"])
    a_again.set_epoch(4)
    assert [a_again.sample(i) for i in range(12)] != draws[0]


# ------------------------------------------------------------------------------------------ augmentation
def test_augmentation_is_seeded_pads_and_keeps_target():
    image = torch.rand(3, 40, 50)
    mask = torch.zeros(40, 50, dtype=torch.long)
    mask[10:30, 10:40] = 1
    mask[0] = 255
    cfg = AugmentConfig(crop_size=65)
    a = augment_pair(image, mask, cfg, (0.485, 0.456, 0.406), torch.Generator().manual_seed(4))
    b = augment_pair(image, mask, cfg, (0.485, 0.456, 0.406), torch.Generator().manual_seed(4))
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
    assert a[0].shape == (3, 65, 65) and a[1].shape == (65, 65) and a[1].dtype == torch.long
    assert set(a[1].unique().tolist()) <= {0, 1, 255}
    assert (a[1] == 255).sum() > 65 * 65 - 60 * 60  # padding is ignore
    corner = a[0][:, 0, 0]  # padded with the mean
    torch.testing.assert_close(corner, torch.tensor([0.485, 0.456, 0.406]), atol=1e-5, rtol=0)
    big = torch.zeros(300, 300, dtype=torch.long)
    big[100:160, 100:160] = 1
    out = augment_pair(
        torch.rand(3, 300, 300),
        big,
        AugmentConfig(crop_size=97, rotate_p=0, scale_range=(1, 1)),
        (0.5, 0.5, 0.5),
        torch.Generator().manual_seed(0),
    )[1]
    assert (out == 1).sum() >= 0.85 * 3600


# ------------------------------------------------------------------------------------------------- COCO
def test_coco_layout_through_the_real_loader(tmp_path):
    write_coco(tmp_path)
    config = DataConfig(dataset="coco20i", root=str(tmp_path), fold=0, test_size=65)
    # With 4 categories the contiguous ids are 1..4 in category-id order; fold 0 interleaved tests {1, 5, ...}.
    with pytest.warns(UserWarning, match="categories"):
        dataset = build_dataset(config, "val", episodes=5, progress=False)
    assert dataset.source.class_names == {i + 1: n for i, (_, n) in enumerate(COCO_CATEGORIES)}
    label = np.asarray(Image.open(dataset.source.labels[0]))
    assert set(np.unique(label).tolist()) == {0, 1, 2}  # image 0: person (polygon) + car (RLE)
    assert (label == 2).sum() == 52 * 52 and (label == 1).sum() >= 50 * 50
    assert dataset.classes[:2] == (1, 5)
    item = dataset[0]
    assert int(item["class_id"]) == 1 and item["query_label"].shape == (96, 128)
    with pytest.warns(UserWarning):
        train = build_dataset(config, "train", episodes=4, progress=False)
    assert set(train.classes) >= {2, 3, 4} and 1 not in train.classes
    assert len(list((tmp_path / "ntre_zoo_labels").iterdir())) == 2  # labels cached once per split


# ----------------------------------------------------------------------------------------------- folder
def test_folder_dataset_with_and_without_classes_json(tmp_path):
    write_folder(tmp_path / "a")
    config = DataConfig(
        dataset="folder",
        root=str(tmp_path / "a"),
        novel_classes=(3,),
        test_size=65,
        augment=AugmentConfig(crop_size=65),
    )
    val = build_dataset(config, "val", episodes=4, progress=False)
    assert val.classes == (3,) and val.class_name(3) == "cow"
    assert int(val[0]["class_id"]) == 3
    train = build_dataset(config, "train", progress=False)
    assert train.classes == (1, 2) and train[0]["query_image"].shape == (3, 65, 65)
    write_folder(tmp_path / "b", with_classes=False)
    bare = build_dataset(
        DataConfig(dataset="folder", root=str(tmp_path / "b"), novel_classes=(1, 2)), "train", progress=False
    )
    assert bare.classes == (3,)
    with pytest.raises(ValueError, match="novel"):
        build_dataset(DataConfig(dataset="folder", root=str(tmp_path / "a")), "val", progress=False)
    (tmp_path / "a" / "classes.json").write_text(json.dumps({"0": "bg"}))
    with pytest.raises(ValueError, match=r"1\.\.254"):
        build_dataset(config, "val", progress=False)


def test_synthetic_tree_reports_its_own_class_names(voc):
    from ntre_zoo.data import SYNTHETIC_CLASSES

    names = pascal5i_source(voc, "val").class_names
    assert len(names) == 20 and names[1] == SYNTHETIC_CLASSES[0].name
