"""Named evaluation protocols: their values against docs/evaluation.md, the shipped reference lists, the
model's canvas in evaluation, and ``--protocol`` on ``evaluate`` and ``train``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import ntre_zoo
from ntre_zoo.cli import main
from ntre_zoo.data import DataConfig, build_class_lists, build_dataset, make_synthetic_voc
from ntre_zoo.data.preprocessing import canvas_shape, image_to_canvas, logits_to_original
from ntre_zoo.data.reference_lists import list_info, reference_list, resolve_list
from ntre_zoo.evaluation import evaluate, evaluate_seeds
from ntre_zoo.evaluation.protocols import PROTOCOLS, Protocol, get_protocol

DOCS = Path(__file__).resolve().parents[1] / "docs" / "evaluation.md"
TINY = {"layers": (1, 1, 1, 1), "channels": (8, 16, 32, 64), "stem_width": 8, "reduce_dim": 16}


def _documented() -> dict[str, dict[str, str]]:
    """``{protocol: {field: value}}`` from the tables under the ``### `name` `` headings of the docs."""
    tables: dict[str, dict[str, str]] = {}
    current = None
    for line in DOCS.read_text().splitlines():
        heading = re.match(r"### `(\w+)`", line)
        if heading:
            current = tables.setdefault(heading.group(1), {})
            continue
        row = re.match(r"\| `([\w.]+)` \| ([^|]+) \|", line)
        if row and current is not None:
            current[row.group(1)] = row.group(2).strip()
    return tables


def _format(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _fields(protocol: Protocol) -> dict[str, str]:
    out = {}
    for key, value in dataclasses.asdict(protocol).items():
        if key in ("name", "source", "unreproduced"):
            continue
        if isinstance(value, dict):
            out.update({f"{key}.{k}": _format(v) for k, v in value.items()})
        else:
            out[key] = _format(tuple(value) if isinstance(value, list) else value)
    return out


def test_every_protocol_field_is_the_value_its_doc_table_states():
    documented = _documented()
    assert set(documented) == set(PROTOCOLS)
    for name, protocol in PROTOCOLS.items():
        assert documented[name] == _fields(protocol), name
    # The values the docs and the protocols' sources name, pinned here too.
    assert get_protocol("pfenet").episodes("pascal5i") == 5000 and get_protocol("pfenet").episodes("coco20i") == 20000
    assert get_protocol("ntrenet").episodes("coco20i") == 4000 and get_protocol("hsnet").seeds == (0,)
    assert get_protocol("bam").seeds == (510, 365, 382, 322, 988) and get_protocol("bam").train_excludes_novel
    # BAM's seeds are what its test.py draws: np.random.seed(123); np.random.randint(0, 1000, 5).
    np.random.seed(123)
    assert tuple(int(s) for s in np.random.randint(0, 1000, 5)) == get_protocol("bam").seeds


def test_get_protocol_and_validation():
    assert get_protocol("ntrenet") is PROTOCOLS["ntrenet"] and get_protocol(PROTOCOLS["bam"]) is PROTOCOLS["bam"]
    with pytest.raises(ValueError, match=r"Unknown protocol 'pfnet'\. Expected one of: ntrenet, pfenet, hsnet, bam"):
        get_protocol("pfnet")
    with pytest.raises(ValueError, match="resize"):
        dataclasses.replace(PROTOCOLS["ntrenet"], resize="crop")
    json.dumps(PROTOCOLS["hsnet"].to_dict())  # recorded in result JSON as it is


def test_the_shipped_reference_lists_have_their_documented_lengths_and_hashes():
    info = list_info()
    expected = {
        "voc_sbd_merge_noduplicate": (5953, "87578cffe141c681b15bf0b07a4cc79019ed7af02335b5ca614ccd044827fc0b"),
        "voc2012_val": (1449, "25cdf9026986ab18d9c235d458f2b39bc44a29b801f3371624a22011bcee980c"),
    }
    assert set(info) == set(expected)
    ids = {}
    for name, (lines, source_sha256) in expected.items():
        data = reference_list(name).read_bytes()
        ids[name] = data.decode().split()
        assert len(ids[name]) == lines == info[name]["lines"] and len(set(ids[name])) == lines
        assert hashlib.sha256(data).hexdigest() == info[name]["sha256"]
        source = info[name]["source"]
        assert source["repo"] == "LIUYUANWEI98/NERTNet" and len(source["commit"]) == 40
        # The ids, written back in the source's line format, are the source file byte for byte.
        rebuilt = "".join(source["line_format"].format(id=i) + "\n" for i in ids[name]).encode()
        assert hashlib.sha256(rebuilt).hexdigest() == source["sha256"] == source_sha256
    assert not set(ids["voc_sbd_merge_noduplicate"]) & set(ids["voc2012_val"])
    assert resolve_list("voc2012_val") == reference_list("voc2012_val")
    with pytest.raises(FileNotFoundError, match="neither a shipped list"):
        resolve_list("voc2013_val")


def test_a_changed_shipped_list_is_refused(tmp_path, monkeypatch):
    from ntre_zoo.data import reference_lists

    (tmp_path / "lists.json").write_text(json.dumps({"x": {"sha256": "0" * 64}}))
    (tmp_path / "x.txt").write_text("2007_000001\n")
    monkeypatch.setattr(reference_lists, "LISTS_DIR", tmp_path)
    with pytest.raises(ValueError, match="does not match its recorded sha256"):
        resolve_list("x")


# ------------------------------------------------------------------------------------------ on the synthetic set


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_voc(tmp_path_factory.mktemp("syn"), seed=2, train=24, val=24, progress=False)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ntre_zoo.create_model("resnet50", **TINY, pyramid_bins=(4, 2), test_size=33).eval()


def test_a_protocol_configures_lists_resize_scoring_and_the_training_filter(synthetic, tmp_path):
    base = DataConfig(dataset="pascal5i", root=str(tmp_path), fold=1, shot=2)
    ntrenet = get_protocol("ntrenet").data_config(base)
    assert (ntrenet.train_list, ntrenet.val_list) == ("voc_sbd_merge_noduplicate", "voc2012_val")
    assert (ntrenet.fold, ntrenet.shot, ntrenet.test_size) == (1, 2, None)
    hsnet = get_protocol("hsnet").data_config(base)
    assert (hsnet.resize, hsnet.scoring, hsnet.train_list) == ("square", "canvas", None)
    assert get_protocol("bam").data_config(base).exclude_novel
    # The synthetic benchmark keeps its own lists (its ids are not PASCAL VOC's).
    on_synthetic = get_protocol("ntrenet").data_config(dataclasses.replace(base, root=str(synthetic)))
    assert (on_synthetic.train_list, on_synthetic.val_list) == (None, None)
    coco = get_protocol("pfenet").data_config(DataConfig(dataset="coco20i"))
    assert (coco.train_list, coco.val_list, coco.coco_split) == (None, None, "interleaved")
    with pytest.raises(ValueError, match="PASCAL-5i image lists"):
        DataConfig(dataset="coco20i", train_list="voc_sbd_merge_noduplicate")


def test_bam_leaves_training_images_with_a_test_class_out(synthetic):
    counts = [{6: 3000}, {6: 3000, 2: 10}, {7: 5000}]
    assert build_class_lists(counts, [6, 7]).data == (0, 1, 2)
    assert build_class_lists(counts, [6, 7], exclude=[2]).data == (0, 2)
    config = DataConfig(root=str(synthetic), fold=0, test_size=33)
    kept = build_dataset(get_protocol("bam").data_config(config), "train", progress=False)
    every = build_dataset(get_protocol("ntrenet").data_config(config), "train", progress=False)
    assert 0 < len(kept) < len(every)
    for query, _ in kept.queries:
        label = np.asarray(ntre_zoo.data.index.read_label(kept.source.labels[query]))
        assert not set(np.unique(label)) & {1, 2, 3, 4, 5}


def test_evaluate_takes_the_model_canvas_and_refuses_another(synthetic, model):
    config = DataConfig(root=str(synthetic), fold=0)
    assert config.test_size is None
    dataset = build_dataset(config, "val", episodes=5, progress=False)
    with pytest.raises(ValueError, match="test_size is None"):
        dataset[0]
    taken = evaluate(model, dataset, progress=False)
    explicit = build_dataset(dataclasses.replace(config, test_size=33), "val", episodes=5, progress=False)
    assert taken.to_dict() == evaluate(model, explicit, progress=False).to_dict()
    assert taken.protocol is None and evaluate(model, config, episodes=5, progress=False).episodes == 5
    other = build_dataset(dataclasses.replace(config, test_size=473), "val", episodes=5, progress=False)
    with pytest.raises(ValueError, match=r"473-px canvas .* model.config.test_size=33"):
        evaluate(model, other, progress=False)
    grey = build_dataset(dataclasses.replace(config, mean=(0.5, 0.5, 0.5)), "val", episodes=5, progress=False)
    with pytest.raises(ValueError, match="mean"):
        evaluate(model, grey, progress=False)


def test_a_dataset_built_for_another_protocol_is_refused(synthetic, model):
    config = DataConfig(root=str(synthetic), fold=0)
    plain = build_dataset(config, "val", episodes=5, progress=False)
    with pytest.raises(ValueError, match=r"not built for protocol 'hsnet': resize='long_side' .*scoring="):
        evaluate(model, plain, protocol="hsnet", progress=False)
    square = build_dataset(get_protocol("hsnet").data_config(config), "val", progress=False)
    result = evaluate(model, square, protocol="hsnet", episodes=6, progress=False)
    assert result.protocol == "hsnet" and result.seed == 0 and result.episodes == 6
    # HSNet scores the label resized onto the canvas; the reference, the label at its own size.
    item = dataclasses.replace(config, test_size=33)
    hsnet = build_dataset(get_protocol("hsnet").data_config(item), "val", progress=False)[0]
    assert hsnet["query_label"].shape == (33, 33)
    assert max(build_dataset(item, "val", progress=False)[0]["query_label"].shape) == 200  # the synthetic images


def test_bam_evaluates_its_five_seeds(synthetic, model):
    result = evaluate_seeds(model, DataConfig(root=str(synthetic), fold=0), protocol="bam", episodes=2, progress=False)
    assert [r.seed for r in result.runs] == [510, 365, 382, 322, 988]
    assert result.to_dict()["protocol"] == "bam" and all(r.episodes == 2 for r in result.runs)


def _run_cli_pfenet(model, synthetic: Path, tmp_path: Path) -> dict:
    model.save_pretrained(tmp_path / "tiny")
    output = tmp_path / "result.json"
    command = ["evaluate", str(tmp_path / "tiny"), "--dataset", "pascal5i", "--data-root", str(synthetic)]
    assert main([*command, "--protocol", "pfenet", "--output", str(output), "--no-progress"]) == 0
    data = json.loads(output.read_text())
    assert data["episodes"] == 5000 and sum(data["runs"][0]["class_episodes"].values()) == 5000
    assert data["runs"][0]["protocol"] == "pfenet" and data["seeds"] == [321]
    return data


def test_evaluate_cli_protocol_pfenet_runs_its_episode_count(synthetic, model, tmp_path, capsys, monkeypatch):
    from ntre_zoo.evaluation import loop

    def count_only(model, dataset, indices, meter, **kwargs):  # every episode drawn and counted, no forward pass
        for index in indices:
            meter.update(dataset.sample(index)[1], torch.tensor([1, 2, 1, 2, 1, 1, 1]))

    monkeypatch.setattr(loop, "score_episodes", count_only)
    data = _run_cli_pfenet(model, synthetic, tmp_path)
    assert "protocol pfenet: 5000 episodes x seeds [321]" in capsys.readouterr().out
    record = data["protocol"]
    assert record["name"] == "pfenet" and record["definition"] == json.loads(
        json.dumps(get_protocol("pfenet").to_dict())
    )
    assert record["overrides"] == {} and record["test_size"] == 33 and record["resize"] == "long_side"
    val_list = Path(record["val_list"])  # the synthetic tree's own list, with its hash
    assert record["val_list_sha256"] == hashlib.sha256(val_list.read_bytes()).hexdigest()
    output = tmp_path / "hsnet.json"
    command = ["evaluate", str(tmp_path / "tiny"), "--dataset", "pascal5i", "--data-root", str(synthetic)]
    assert main([*command, "--protocol", "hsnet", "--episodes", "4", "--seed", "9", "--output", str(output)]) == 0
    record = json.loads(output.read_text())["protocol"]
    assert record["overrides"] == {"episodes": 4, "seeds": [9]} and record["scoring"] == "canvas"


@pytest.mark.slow
def test_evaluate_cli_protocol_pfenet_scores_its_5000_episodes(synthetic, model, tmp_path):
    data = _run_cli_pfenet(model, synthetic, tmp_path)
    assert 0 <= data["miou"] <= 1


def test_train_cli_records_the_protocol_in_the_model_card(synthetic, tmp_path):
    out = tmp_path / "run"
    model = ["--layers", "1", "1", "1", "1", "--channels", "8", "16", "32", "64", "--stem-width", "8"]
    model += ["--reduce-dim", "16", "--pyramid-bins", "4", "2", "--test-size", "33", "--backbone-weights", "none"]
    common = ["--dataset", "pascal5i", "--data-root", str(synthetic), "--epochs", "1", "--batch-size", "2"]
    code = main(["train", *common, *model, "-o", str(out), "--protocol", "bam", "--max-steps", "1", "--no-progress"])
    assert code == 0
    metadata = json.loads((out / "last" / "config.json").read_text())["metadata"]
    assert metadata["protocol"] == "bam" and "--protocol bam" in metadata["command"]
    assert "- Protocol: bam" in (out / "last" / "README.md").read_text()


# ------------------------------------------------------------------------------------------------ test resize


def test_images_smaller_than_the_canvas_are_enlarged_and_scored_in_place():
    assert canvas_shape(100, 60, 473) == (472, 280) and canvas_shape(100, 60, 473, "square") == (473, 473)
    for resize in ("long_side", "square"):
        image = torch.zeros(1, 100, 60)
        image[:, :, :30] = 1  # left half
        logits = image_to_canvas(image, 473, resize)[None]
        back = logits_to_original(logits, 100, 60, resize)[0, 0]
        assert back[:, :29].mean() > 0.95 and back[:, 31:].mean() < 0.05, resize
