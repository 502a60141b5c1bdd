"""``ntre-zoo publish``: access checked before any upload, one commit on the (local) Hub, the manifest entry
written in place and then loaded through the same Hub with its sha256 check; the model card's Hub metadata."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import torch
from conftest import make_tiny_model
from huggingface_hub import ModelCard

import ntre_zoo
import ntre_zoo.zoo.hub_access
from ntre_zoo.cli import main as cli_main
from ntre_zoo.errors import HubAccessError
from ntre_zoo.zoo.manifest import ManifestEntry, default_manifest_path, load_manifest
from ntre_zoo.zoo.publish import ENTRY_FILE, publish

NAME = "ntrenet_resnet50.pascal5i_fold0"  # a paper variant: publishing it fills its unpublished entry
MEASURED = {
    "miou_1shot": 12.34,
    "fb_iou_1shot": 50.5,
    "miou_5shot": 13.5,
    "fb_iou_5shot": 51.25,
    "episodes": 1000,
    "seed": 321,
    "seeds": [321, 322],
    "protocol": "ntrenet",
    "command": f"ntre-zoo evaluate {NAME} --dataset pascal5i --data-root VOC2012 --fold 0 --shot {{1,5}} --seeds 2",
    "train_command": "ntre-zoo train --dataset pascal5i --fold 0 ...",
}


@pytest.fixture
def hub(hub, monkeypatch):
    """The local Hub of conftest.py with a user who may write to ntre-zoo and one who may only read."""
    hub.add_user("hf_write", "me", orgs={"ntre-zoo": "write", "others": "read"})
    hub.add_user("hf_read", "reader", role="read")
    monkeypatch.setenv("HF_TOKEN", "hf_write")
    return hub


@pytest.fixture
def variant(tmp_path):
    """A directory as ``reproduce`` writes it (weights, card, manifest_entry.json), and a copy of the manifest."""
    model = make_tiny_model()
    paper = load_manifest().get(NAME).metrics["reference"]
    metadata = {"name": NAME, "dataset": "pascal5i", "fold": 0, "metrics": MEASURED, "paper_metrics": paper}
    directory = model.save_pretrained(tmp_path / "out" / NAME, metadata=metadata)
    metrics = {"reference": paper, "measured": MEASURED}
    entry = ManifestEntry(NAME, "resnet50", "pascal5i", 0, 1, "unpublished", metrics=metrics)
    sha = ntre_zoo.zoo.sha256_file(directory / "model.safetensors")
    record = {"name": NAME, "entry": entry.to_dict(), "weights": {"filename": "model.safetensors", "sha256": sha}}
    (directory / ENTRY_FILE).write_text(json.dumps(record))
    manifest = tmp_path / "checkpoints_manifest.json"
    shutil.copyfile(default_manifest_path(), manifest)
    return directory, manifest, model, sha


def test_model_card_carries_hub_metadata_and_the_measured_results(variant):
    directory, *_ = variant
    card = ModelCard((directory / "README.md").read_text())
    data = card.data.to_dict()
    assert data["library_name"] == "ntre-zoo" and data["pipeline_tag"] == "image-segmentation"
    assert data["license"] == "apache-2.0" and data["datasets"] == ["pascal5i"]
    assert {"few-shot-segmentation", "ntrenet", "resnet50", "pascal5i"} <= set(data["tags"])
    results = {(r.metric_name, r.metric_value, r.dataset_split) for r in card.data.eval_results}
    assert ("mIoU (1-shot)", 12.34, "fold0") in results and ("FB-IoU (5-shot)", 51.25, "fold0") in results
    text = card.text
    assert "| 1-shot | 12.34 | 65.4 |" in text and "| 5-shot | 13.5 | 66.2 |" in text  # beside the paper
    assert MEASURED["command"] in text and MEASURED["train_command"] in text


def test_dry_run_then_publish_then_load_through_the_hub(hub, variant, capsys):
    directory, manifest, model, sha = variant
    before = manifest.read_text()
    command = ["publish", str(directory), "--repo-id", f"ntre-zoo/{NAME}", "--manifest", str(manifest)]
    assert cli_main([*command, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert hub.uploads() == [] and manifest.read_text() == before
    assert '+        "revision": "<the commit of the upload>",' in printed and f'+        "sha256": "{sha}"' in printed

    assert cli_main(command) == 0
    printed = capsys.readouterr().out
    commit = hub.repos[f"ntre-zoo/{NAME}"].refs["main"]
    assert f"at commit {commit}" in printed and f'+        "revision": "{commit}",' in printed
    assert sorted(hub.repos[f"ntre-zoo/{NAME}"].commits[commit]) == sorted(p.name for p in directory.iterdir())
    entry = load_manifest(manifest).get(NAME)  # the manifest code validates the whole file
    assert entry.published and entry.hub.revision == commit and entry.hub.sha256 == sha
    assert entry.metrics["measured"] == MEASURED and entry.metrics["reference"]["miou_1shot"] == 65.4
    old, new = json.loads(before)["models"], json.loads(manifest.read_text())["models"]
    assert list(old) == list(new) and all(old[k] == new[k] for k in old if k != NAME)
    old_lines, new_lines = before.splitlines(), manifest.read_text().splitlines()
    start = old_lines.index(f'    "{NAME}": {{')
    assert old_lines[:start] == new_lines[:start]  # everything before the entry is untouched
    assert old_lines[-300:] == new_lines[-300:]  # and the entries after it

    hub.requests.clear()
    loaded = ntre_zoo.from_pretrained(NAME, manifest=manifest)
    assert any(f"/resolve/{commit}/model.safetensors" in path for _, path in hub.requests)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_no_upload_without_a_token_that_can_write(hub, variant, monkeypatch):
    directory, manifest, *_ = variant
    with pytest.raises(HubAccessError, match="cannot create repositories in 'others'"):
        publish(directory, f"others/{NAME}", manifest=manifest)
    with pytest.raises(HubAccessError, match="role 'read'"):
        publish(directory, f"reader/{NAME}", manifest=manifest, token="hf_read")
    with pytest.raises(HubAccessError, match="refused the token"):
        publish(directory, f"me/{NAME}", manifest=manifest, token="hf_wrong")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubAccessError, match="none was found"):
        publish(directory, f"me/{NAME}", manifest=manifest)
    assert hub.uploads() == []


def test_offline_or_stale_weights_fail_before_anything_is_sent(hub, variant, monkeypatch):
    directory, manifest, *_ = variant
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(HubAccessError, match="HF_HUB_OFFLINE=1"):
        publish(directory, f"me/{NAME}", manifest=manifest)
    assert time.monotonic() - start < 5
    monkeypatch.delenv("HF_HUB_OFFLINE")
    record = json.loads((directory / ENTRY_FILE).read_text())
    record["weights"]["sha256"] = "0" * 64
    (directory / ENTRY_FILE).write_text(json.dumps(record))
    with pytest.raises(ValueError, match="changed after they were evaluated"):
        publish(directory, f"me/{NAME}", manifest=manifest)
    (directory / ENTRY_FILE).unlink()
    manifest.write_text(json.dumps(json.loads(manifest.read_text())))  # valid, but not the canonical layout
    with pytest.raises(ValueError, match="canonical layout"):
        publish(directory, f"me/{NAME}", manifest=manifest)
    assert hub.requests == []


def test_the_uploaded_card_loads_from_the_hub_and_a_card_the_user_wrote_goes_up_as_written(hub, variant):
    directory, manifest, *_ = variant
    local_card = (directory / "README.md").read_text()
    assert "from_pretrained('path/to/this/directory')" in local_card
    commit = publish(directory, f"ntre-zoo/{NAME}", manifest=manifest).commit
    uploaded = hub.repos[f"ntre-zoo/{NAME}"].commits[commit]["README.md"].decode()
    assert f"model = ntre_zoo.from_pretrained('hf-hub:ntre-zoo/{NAME}')" in uploaded
    assert (directory / "README.md").read_text() == local_card  # the local directory is not rewritten
    assert ModelCard(uploaded).data.to_dict()["library_name"] == "ntre-zoo"

    (directory / "README.md").write_text("# my own card\n")
    commit = publish(directory, f"ntre-zoo/{NAME}", manifest=manifest).commit
    assert hub.repos[f"ntre-zoo/{NAME}"].commits[commit]["README.md"] == b"# my own card\n"


def test_an_entry_file_without_a_key_names_the_file_and_the_key(hub, variant, capsys):
    directory, manifest, *_ = variant
    record = json.loads((directory / ENTRY_FILE).read_text())
    del record["weights"]["sha256"]
    (directory / ENTRY_FILE).write_text(json.dumps(record))
    assert cli_main(["publish", str(directory), "--repo-id", f"me/{NAME}", "--manifest", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert f"{str(directory / ENTRY_FILE)!r} has no 'weights.sha256'" in err
    (directory / ENTRY_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=r"manifest_entry\.json' is not valid JSON"):
        publish(directory, f"me/{NAME}", manifest=manifest)
    assert hub.requests == []
