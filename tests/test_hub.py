"""The zoo: manifest, save/load round trips, atomic saves, strict loading, downloads through a local Hub."""

from __future__ import annotations

import hashlib
import inspect
import json
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest
import safetensors.torch
import torch
from conftest import make_tiny_model
from conftest import state_equal as _state_equal
from hub_server import HubServer

import ntre_zoo
from ntre_zoo.cli import build_parser
from ntre_zoo.cli import main as cli_main
from ntre_zoo.errors import (
    ChecksumMismatchError,
    ManifestError,
    StateDictMismatchError,
    UnknownModelError,
    WeightsUnavailableError,
)
from ntre_zoo.zoo.manifest import default_manifest_path, load_manifest
from ntre_zoo.zoo.saving import save_pretrained

REPO_ROOT = Path(__file__).resolve().parents[1]
PAPER = {  # spec section 9: 1-shot and 5-shot mIoU per fold
    ("vgg16_bn", "pascal5i"): ([57.7, 67.6, 57.1, 53.7], [60.3, 68.0, 55.2, 57.1]),
    ("resnet50", "pascal5i"): ([65.4, 72.3, 59.4, 59.8], [66.2, 72.8, 61.7, 62.2]),
    ("resnet101", "pascal5i"): ([65.5, 71.8, 59.1, 58.3], [67.9, 73.2, 60.1, 66.8]),
    ("resnet50", "coco20i"): ([36.8, 42.6, 39.9, 37.9], [38.2, 44.1, 40.4, 38.4]),
    ("resnet101", "coco20i"): ([38.3, 40.4, 39.5, 38.1], [42.3, 44.4, 44.2, 41.7]),
}


def _episode(seed: int = 0, shot: int = 1, size: int = 64):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(1, 3, size, size, generator=g)
    images = torch.randn(1, shot, 3, size, size, generator=g)
    masks = (torch.rand(1, shot, size, size, generator=g) > 0.5).long()
    return query, images, masks


def _assert_same(a: ntre_zoo.NTRENet, b: ntre_zoo.NTRENet) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    with torch.no_grad():
        assert torch.equal(a(*_episode()).logits, b(*_episode()).logits)


def _write_manifest(path: Path, models: dict) -> Path:
    path.write_text(json.dumps({"schema_version": 1, "models": models}))
    return path


def _hub_entry(repo_id, revision, sha256, filename="model.safetensors"):
    return {
        "backbone": "resnet50",
        "dataset": "synthetic",
        "fold": 0,
        "train_shot": 1,
        "source": "hub",
        "hub": {"repo_id": repo_id, "revision": revision, "filename": filename, "sha256": sha256},
        "metrics": {"reference": {}, "measured": {}},
        "status": "published",
    }


# ------------------------------------------------------------------------------------------ manifest
def test_manifest_registers_every_paper_variant():
    manifest = load_manifest()
    assert len(manifest.entries) == 21  # the 20 paper variants and the shipped tiny demo model
    for (backbone, dataset), (one, five) in PAPER.items():
        for fold in range(4):
            name = f"ntrenet_{backbone}.{dataset}_fold{fold}"
            entry = manifest.get(name)
            assert (entry.backbone, entry.dataset, entry.fold, entry.train_shot) == (backbone, dataset, fold, 1)
            assert entry.metrics["reference"]["miou_1shot"] == one[fold]
            assert entry.metrics["reference"]["miou_5shot"] == five[fold]
            assert entry.status == "unpublished" and entry.hub.is_empty and entry.metrics["measured"] == {}
            assert manifest.find(backbone, dataset, fold) is entry
    assert manifest.get("ntrenet_resnet50.pascal5i_fold0").metrics["reference"]["fb_iou_1shot_mean"] == 77.0


def test_repo_level_manifest_is_the_packaged_one():
    assert (REPO_ROOT / "checkpoints_manifest.json").read_bytes() == default_manifest_path().read_bytes()
    assert default_manifest_path().parent == Path(ntre_zoo.__file__).resolve().parent


def test_list_models_patterns():
    assert len(ntre_zoo.list_models()) == 21
    assert ntre_zoo.list_models("*coco20i_fold1") == [
        "ntrenet_resnet101.coco20i_fold1",
        "ntrenet_resnet50.coco20i_fold1",
    ]
    assert ntre_zoo.list_models(published_only=True) == ["ntrenet_tiny.synthetic_fold0"]


def test_shipped_tiny_model_loads_offline_with_its_measured_metrics(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    entry = load_manifest().get("ntrenet_tiny.synthetic_fold0")
    assert entry.source == "package" and entry.published
    measured = entry.metrics["measured"]
    assert measured["episodes"] == 1000 and measured["seed"] == 321 and 0 < measured["miou_1shot"] < 100
    model = ntre_zoo.from_pretrained("ntrenet_tiny.synthetic_fold0")
    assert not model.training and model.config.reduce_dim == 16


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownModelError, match=r"Did you mean: ntrenet_resnet50\.pascal5i_fold0"):
        ntre_zoo.from_pretrained("ntrenet_resnt50.pascal5i_fold0")


def _reproduce_command(message: str) -> list[str]:
    """The words of the ``ntre-zoo reproduce`` command an error message names first."""
    start = message.index("`ntre-zoo reproduce ")
    return shlex.split(message[start + 1 : message.index("`", start + 1)])


@pytest.mark.parametrize("how", ["name", "keywords"])
def test_unpublished_entry_names_the_reproduce_command_first(how):
    args = (
        (["ntrenet_vgg16_bn.pascal5i_fold3"], {})
        if how == "name"
        else ([], {"backbone": "vgg16_bn", "dataset": "pascal5i", "fold": 3})
    )
    with pytest.raises(WeightsUnavailableError, match="unpublished") as info:
        ntre_zoo.from_pretrained(*args[0], **args[1])
    message = str(info.value)
    words = _reproduce_command(message)
    assert words == ["ntre-zoo", "reproduce", "ntrenet_vgg16_bn.pascal5i_fold3", "--data-root", "DIR", "-o", "zoo"]
    parsed = build_parser().parse_args(words[1:])  # a command the CLI takes as it is
    assert parsed.variants == ["ntrenet_vgg16_bn.pascal5i_fold3"] and parsed.output == "zoo"
    assert "from_pretrained('zoo/ntrenet_vgg16_bn.pascal5i_fold3')" in message
    # No GPU has run a variant yet, so the message says so instead of giving a time.
    assert "GPU time not yet measured, see docs/reproducing.md" in message
    assert "## GPU time: not yet measured" in (REPO_ROOT / "docs" / "reproducing.md").read_text()
    reproduce, train, convert = (message.index(f"`ntre-zoo {c}") for c in ("reproduce", "train", "convert"))
    assert reproduce < train < convert


def test_unpublished_entry_of_another_manifest_names_it_in_the_reproduce_command(tmp_path, capsys):
    entry = _hub_entry(None, None, None, filename=None)
    entry["status"] = "unpublished"
    manifest = _write_manifest(tmp_path / "my manifest.json", {"ntrenet_resnet50.synthetic_fold0": entry})
    with pytest.raises(WeightsUnavailableError) as info:
        ntre_zoo.from_pretrained("ntrenet_resnet50.synthetic_fold0", manifest=manifest)
    parsed = build_parser().parse_args(_reproduce_command(str(info.value))[1:])
    assert parsed.variants == ["ntrenet_resnet50.synthetic_fold0"] and parsed.manifest == str(manifest)
    assert cli_main(["download", "ntrenet_resnet50.synthetic_fold0", "--manifest", str(manifest)]) != 0
    assert f"--manifest '{manifest}'" in capsys.readouterr().err  # `ntre-zoo download` names it too


def test_manifest_refuses_invented_or_incomplete_entries(tmp_path):
    entry = _hub_entry(None, None, None)
    entry["status"] = "unpublished"
    entry["hub"]["repo_id"] = "someone/guess"
    with pytest.raises(ManifestError, match="unpublished but has hub fields"):
        load_manifest(_write_manifest(tmp_path / "a.json", {"x": entry}))
    with pytest.raises(ManifestError, match="not a 40-hex commit"):
        load_manifest(_write_manifest(tmp_path / "b.json", {"x": _hub_entry("a/b", "main", "0" * 64)}))
    measured = _hub_entry("a/b", "1" * 40, "0" * 64)
    measured["metrics"]["measured"] = {"miou_1shot": 50.0}
    with pytest.raises(ManifestError, match="episodes"):
        load_manifest(_write_manifest(tmp_path / "c.json", {"x": measured}))


def test_manifest_refuses_a_name_given_twice(tmp_path):
    entry = json.dumps(_hub_entry("a/b", "1" * 40, "0" * 64))
    path = tmp_path / "twice.json"
    path.write_text(f'{{"schema_version": 1, "models": {{"x.y_fold0": {entry}, "x.y_fold0": {entry}}}}}')
    with pytest.raises(ManifestError, match=r"twice\.json' gives 'x\.y_fold0' twice"):
        load_manifest(path)


def test_a_deeply_nested_config_json_names_the_file(tiny_model, tmp_path):
    directory = tiny_model.save_pretrained(tmp_path / "model")
    (directory / "config.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ValueError, match=r"config\.json' nests its JSON too deeply"):
        ntre_zoo.from_pretrained(directory)


# ------------------------------------------------------------------------------------------ save / load
def test_save_pretrained_round_trip_is_bit_exact(tiny_model, tmp_path):
    out = tiny_model.save_pretrained(
        tmp_path / "run", metadata={"dataset": "pascal5i", "fold": 1, "metrics": {"miou": 1.0}}
    )
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = ntre_zoo.from_pretrained(str(out))
    assert not loaded.training and loaded.config == tiny_model.config
    _assert_same(tiny_model, loaded)
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "ntrenet" and config["ntre_zoo_version"] == ntre_zoo.__version__
    assert config["preprocessing"]["test_size"] == 65
    assert config["metadata"]["test_classes"] == ["bus", "car", "cat", "chair", "cow"]
    card = (out / "README.md").read_text()
    assert "Learning Non-target Knowledge for Few-shot Semantic Segmentation" in card and "CVPR" in card
    assert "bus, car, cat, chair, cow" in card and "from_pretrained" in card


def test_load_overrides(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    assert ntre_zoo.from_pretrained(tmp_path, test_size=97).config.test_size == 97
    with pytest.raises(ValueError, match="change the architecture"):
        ntre_zoo.from_pretrained(tmp_path, reduce_dim=32)
    with pytest.raises(ValueError, match="Unknown override"):
        ntre_zoo.from_pretrained(tmp_path, colour="red")


def test_interrupted_save_keeps_previous_weights(tiny_model, tmp_path, monkeypatch):
    tiny_model.save_pretrained(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()

    def broken_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    with torch.no_grad():
        tiny_model.bg_prototype.add_(1)
    with pytest.raises(OSError, match="disk full"):
        tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_strict_loading_names_bad_keys(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    state = safetensors.torch.load_file(str(tmp_path / "model.safetensors"))
    del state["classifier.3.bias"]
    state["extra.weight"] = torch.zeros(1)
    safetensors.torch.save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(
        StateDictMismatchError, match=r"missing key\(s\): classifier.3.bias.*unexpected key\(s\): extra.weight"
    ):
        ntre_zoo.from_pretrained(tmp_path)


def _packaged_entry(model, tmp_path, filename: str) -> tuple[Path, dict]:
    """``model`` saved as a packaged manifest entry under ``tmp_path``: its weights file and the entry."""
    model.save_pretrained(tmp_path / "save")
    (tmp_path / "weights").mkdir()
    weights = tmp_path / "weights" / filename
    (tmp_path / "save" / "model.safetensors").rename(weights)
    (tmp_path / "save" / "config.json").rename(weights.with_suffix(".json"))
    entry = {
        "backbone": "tiny",
        "dataset": "synthetic",
        "fold": 0,
        "train_shot": 1,
        "source": "package",
        "file": f"weights/{filename}",
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "metrics": {"reference": {}, "measured": {}},
        "status": "published",
    }
    return weights, entry


def test_packaged_entry_loads_offline_and_checks_sha256(tiny_model, tmp_path):
    _, entry = _packaged_entry(tiny_model, tmp_path, "ntrenet_tiny.synthetic_fold0.safetensors")
    manifest = _write_manifest(tmp_path / "manifest.json", {"ntrenet_tiny.synthetic_fold0": entry})
    assert ntre_zoo.list_models(published_only=True, manifest=manifest) == ["ntrenet_tiny.synthetic_fold0"]
    _assert_same(tiny_model, ntre_zoo.from_pretrained("ntrenet_tiny.synthetic_fold0", manifest=manifest))
    _assert_same(tiny_model, ntre_zoo.from_pretrained(backbone="tiny", dataset="synthetic", fold=0, manifest=manifest))
    entry["sha256"] = "0" * 64
    _write_manifest(manifest, {"ntrenet_tiny.synthetic_fold0": entry})
    with pytest.raises(ChecksumMismatchError, match="nothing was loaded"):
        ntre_zoo.from_pretrained("ntrenet_tiny.synthetic_fold0", manifest=manifest)


def test_sha256_covers_the_whole_file_beyond_the_read_chunk(tmp_path):
    from ntre_zoo.zoo.download import sha256_file, verify_sha256

    path = tmp_path / "big.bin"
    data = bytes(range(256)) * (3 * 4096 + 17)  # 3 MiB and a bit: more than one 1 MiB read
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == digest and sha256_file(path, chunk_size=1000) == digest
    verify_sha256(path, digest.upper(), "big")
    for position in (0, len(data) // 2, len(data) - 2):
        path.write_bytes(data[:position] + bytes([data[position] ^ 1]) + data[position + 1 :])
        with pytest.raises(ChecksumMismatchError, match=digest):
            verify_sha256(path, digest, "big")


def test_a_tampered_byte_at_the_end_of_large_packaged_weights_is_refused(tmp_path):
    """Weights of several MiB (a 48-wide head): one changed byte near the end of the file, inside the last
    tensor's data, still loads as safetensors, so only a hash of the whole file refuses it."""
    model = make_tiny_model(reduce_dim=48)
    weights, entry = _packaged_entry(model, tmp_path, "big.safetensors")
    data = weights.read_bytes()
    assert len(data) > 2 * 2**20  # more than two 1 MiB reads
    manifest = _write_manifest(tmp_path / "manifest.json", {"big": entry})
    _assert_same(model, ntre_zoo.from_pretrained("big", manifest=manifest))
    weights.write_bytes(data[:-3] + bytes([data[-3] ^ 0x10]) + data[-2:])
    tampered = safetensors.torch.load_file(str(weights))  # still a valid file, with one changed value
    assert sum(not torch.equal(v, model.state_dict()[k]) for k, v in tampered.items()) == 1
    with pytest.raises(ChecksumMismatchError, match="nothing was loaded"):
        ntre_zoo.from_pretrained("big", manifest=manifest)


def test_conflicting_arguments():
    with pytest.raises(ValueError, match="already names one"):
        ntre_zoo.from_pretrained("ntrenet_resnet50.pascal5i_fold0", fold=1)
    with pytest.raises(ValueError, match="backbone=, dataset= and fold="):
        ntre_zoo.from_pretrained(backbone="resnet50")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        ntre_zoo.from_pretrained("./does/not/exist")


# ------------------------------------------------------------------------------------------ local Hub
@pytest.fixture
def published(hub, tiny_model, tmp_path):
    """The tiny model uploaded to the local Hub and registered in a test manifest."""
    saved = tiny_model.save_pretrained(tmp_path / "upload")
    files = {p.name: p.read_bytes() for p in saved.iterdir()}
    commit = hub.add_commit("ntre-zoo/tiny", files)
    sha = hashlib.sha256(files["model.safetensors"]).hexdigest()
    manifest = _write_manifest(
        tmp_path / "manifest.json", {"ntrenet_tiny.synthetic_fold0": _hub_entry("ntre-zoo/tiny", commit, sha)}
    )
    return SimpleNamespace(manifest=manifest, commit=commit, sha=sha, files=files, model=tiny_model)


def test_download_by_name_then_offline_from_cache(hub, published, tmp_path, monkeypatch):
    name = "ntrenet_tiny.synthetic_fold0"
    _assert_same(published.model, ntre_zoo.from_pretrained(name, manifest=published.manifest))
    assert hub.request_count() > 0
    assert (tmp_path / "hf_home" / "hub" / "models--ntre-zoo--tiny" / "snapshots" / published.commit).is_dir()
    hub.requests.clear()
    _assert_same(published.model, ntre_zoo.from_pretrained(name, manifest=published.manifest, local_files_only=True))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _assert_same(published.model, ntre_zoo.from_pretrained(name, manifest=published.manifest))
    assert hub.request_count() == 0


def test_hf_hub_ids_resolve_branches_and_commits(hub, published, tmp_path):
    cache = tmp_path / "other_cache"
    for spec in ("hf-hub:ntre-zoo/tiny", f"hf-hub:ntre-zoo/tiny@{published.commit}"):
        _assert_same(published.model, ntre_zoo.from_pretrained(spec, cache_dir=cache, manifest=published.manifest))
    with pytest.raises(ValueError, match="pass one"):
        ntre_zoo.from_pretrained("hf-hub:ntre-zoo/tiny@main", revision="other")


def test_tampered_download_is_refused(hub, published, tmp_path):
    tampered = dict(published.files)
    tampered["model.safetensors"] = published.files["model.safetensors"][:-1] + b" "
    commit = hub.add_commit("ntre-zoo/tampered", tampered)
    manifest = _write_manifest(tmp_path / "t.json", {"t": _hub_entry("ntre-zoo/tampered", commit, published.sha)})
    with pytest.raises(ChecksumMismatchError, match=published.sha):
        ntre_zoo.from_pretrained("t", manifest=manifest)
    # The same check applies to an hf-hub: id at a commit the manifest lists.
    with pytest.raises(ChecksumMismatchError):
        ntre_zoo.from_pretrained(f"hf-hub:ntre-zoo/tampered@{commit}", manifest=manifest)


def test_missing_repo_file_and_cache_give_clear_errors(hub, published, tmp_path):
    with pytest.raises(WeightsUnavailableError, match="'nobody/missing' was not found"):
        ntre_zoo.from_pretrained("hf-hub:nobody/missing")
    manifest = _write_manifest(
        tmp_path / "m.json",
        {"m": _hub_entry("ntre-zoo/tiny", published.commit, published.sha, filename="nope.safetensors")},
    )
    with pytest.raises(WeightsUnavailableError, match=r"'nope\.safetensors' is not in ntre-zoo/tiny"):
        ntre_zoo.from_pretrained("m", manifest=manifest)
    with pytest.raises(WeightsUnavailableError, match="not in the cache"):
        ntre_zoo.from_pretrained("hf-hub:ntre-zoo/tiny", cache_dir=tmp_path / "empty", local_files_only=True)


def _downloads(hub: HubServer, filename: str) -> int:
    return sum(method == "GET" and path.endswith(f"/{filename}") for method, path in hub.requests)


def test_from_pretrained_spells_the_hub_keywords_as_huggingface_hub(hub):
    from huggingface_hub import ModelHubMixin

    ours = inspect.signature(ntre_zoo.from_pretrained).parameters
    theirs = inspect.signature(ModelHubMixin.from_pretrained).parameters
    for name in ("revision", "cache_dir", "force_download", "token", "local_files_only"):
        assert ours[name].kind is inspect.Parameter.KEYWORD_ONLY and ours[name].default == theirs[name].default


def test_cache_dir_holds_the_downloads_that_local_files_only_reads(hub, published, tmp_path):
    name, cache = "ntrenet_tiny.synthetic_fold0", tmp_path / "my_cache"
    _assert_same(published.model, ntre_zoo.from_pretrained(name, manifest=published.manifest, cache_dir=cache))
    assert (cache / "models--ntre-zoo--tiny" / "snapshots" / published.commit / "model.safetensors").is_file()
    assert not (tmp_path / "hf_home" / "hub" / "models--ntre-zoo--tiny").exists()
    hub.requests.clear()
    loaded = ntre_zoo.from_pretrained(name, manifest=published.manifest, cache_dir=cache, local_files_only=True)
    _assert_same(published.model, loaded)
    with pytest.raises(WeightsUnavailableError, match="not in the cache"):
        ntre_zoo.from_pretrained(name, manifest=published.manifest, local_files_only=True)  # the default cache
    assert hub.request_count() == 0


def test_force_download_downloads_again_and_still_checks_sha256(hub, published, tmp_path):
    name, manifest = "ntrenet_tiny.synthetic_fold0", published.manifest
    ntre_zoo.from_pretrained(name, manifest=manifest)
    hub.requests.clear()
    ntre_zoo.from_pretrained(name, manifest=manifest)
    assert hub.request_count() == 0  # a pinned commit in the cache is not asked for again
    _assert_same(published.model, ntre_zoo.from_pretrained(name, manifest=manifest, force_download=True))
    assert _downloads(hub, "model.safetensors") == 1 and _downloads(hub, "config.json") == 1
    hub.requests.clear()
    _assert_same(published.model, ntre_zoo.from_pretrained("hf-hub:ntre-zoo/tiny", force_download=True))
    assert _downloads(hub, "model.safetensors") == 1
    # A cached file damaged on disk is refused; force_download replaces it with the Hub's, which passes the check.
    cached = tmp_path / "hf_home" / "hub" / "models--ntre-zoo--tiny" / "snapshots" / published.commit
    blob = (cached / "model.safetensors").resolve()
    blob.write_bytes(blob.read_bytes()[:-1] + b" ")
    with pytest.raises(ChecksumMismatchError, match=published.sha):
        ntre_zoo.from_pretrained(name, manifest=manifest)
    _assert_same(published.model, ntre_zoo.from_pretrained(name, manifest=manifest, force_download=True))
    gone = HubServer()
    gone.stop()
    with pytest.raises(WeightsUnavailableError, match=r"force_download=True could not download .* drop force_download"):
        ntre_zoo.from_pretrained(name, manifest=manifest, force_download=True, endpoint=gone.url)
    # Bytes served by the Hub go through the same check when forced.
    tampered = {**published.files, "model.safetensors": published.files["model.safetensors"][:-1] + b" "}
    commit = hub.add_commit("ntre-zoo/tampered", tampered)
    other = _write_manifest(tmp_path / "t.json", {"t": _hub_entry("ntre-zoo/tampered", commit, published.sha)})
    with pytest.raises(ChecksumMismatchError, match=published.sha):
        ntre_zoo.from_pretrained("t", manifest=other, force_download=True)
    hub.requests.clear()
    with pytest.raises(ValueError, match=r"force_download=True .* local_files_only=True"):
        ntre_zoo.from_pretrained(name, manifest=manifest, force_download=True, local_files_only=True)
    assert hub.request_count() == 0


def test_revision_selects_hf_hub_commits_and_must_match_a_zoo_names_pin(hub, published, tmp_path):
    newer = make_tiny_model(seed=1)
    saved = newer.save_pretrained(tmp_path / "newer")
    hub.add_commit("ntre-zoo/tiny", {p.name: p.read_bytes() for p in saved.iterdir()})  # main moves on
    old = published.commit
    _assert_same(newer, ntre_zoo.from_pretrained("hf-hub:ntre-zoo/tiny"))
    _assert_same(published.model, ntre_zoo.from_pretrained("hf-hub:ntre-zoo/tiny", revision=old))
    _assert_same(published.model, ntre_zoo.from_pretrained(f"hf-hub:ntre-zoo/tiny@{old}", revision=old))
    with pytest.raises(ValueError, match="pass one"):
        ntre_zoo.from_pretrained(f"hf-hub:ntre-zoo/tiny@{old}", revision="main")
    # A zoo name is pinned by its manifest: its own commit is accepted, any other revision is refused.
    name, manifest = "ntrenet_tiny.synthetic_fold0", published.manifest
    _assert_same(published.model, ntre_zoo.from_pretrained(name, manifest=manifest, revision=old))
    pinned = rf"pins ntrenet_tiny\.synthetic_fold0 to commit {old} .*'hf-hub:ntre-zoo/tiny@main'"
    with pytest.raises(ValueError, match=pinned):
        ntre_zoo.from_pretrained(name, manifest=manifest, revision="main")
    with pytest.raises(ValueError, match=pinned):  # was ignored when the entry was chosen by its fields
        ntre_zoo.from_pretrained(backbone="resnet50", dataset="synthetic", fold=0, manifest=manifest, revision="main")
    with pytest.raises(ValueError, match="ships inside the package"):
        ntre_zoo.from_pretrained("ntrenet_tiny.synthetic_fold0", revision=old)
    with pytest.raises(ValueError, match="is a local directory, which has no revision"):
        ntre_zoo.from_pretrained(saved, revision="main")


def test_token_opens_private_repositories(hub, published, monkeypatch):
    hub.add_user("secret", "ntre-zoo")
    hub.add_commit("ntre-zoo/private", published.files, private=True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(WeightsUnavailableError, match="private repository needs a token"):
        ntre_zoo.from_pretrained("hf-hub:ntre-zoo/private")
    _assert_same(published.model, ntre_zoo.from_pretrained("hf-hub:ntre-zoo/private", token="secret"))
    monkeypatch.setenv("HF_TOKEN", "secret")
    with pytest.raises(WeightsUnavailableError, match="private repository needs a token"):
        ntre_zoo.from_pretrained("hf-hub:ntre-zoo/private", token=False, force_download=True)  # False: send none


def test_cli_download_and_info(hub, published, capsys):
    name = "ntrenet_tiny.synthetic_fold0"
    assert cli_main(["info", name, "--manifest", str(published.manifest)]) == 0
    assert "not cached" in capsys.readouterr().out
    assert cli_main(["download", name, "--manifest", str(published.manifest)]) == 0
    assert "sha256 verified" in capsys.readouterr().out
    assert cli_main(["info", name, "--manifest", str(published.manifest)]) == 0
    out = capsys.readouterr().out
    assert "cached at" in out and published.commit in out
    assert cli_main(["list", "--published", "--manifest", str(published.manifest)]) == 0
    assert name in capsys.readouterr().out


def test_push_to_hub_prints_the_manifest_entry(tiny_model, monkeypatch, capsys, tmp_path):
    from huggingface_hub import HfApi

    uploaded = {}

    def create_repo(self, repo_id, **kwargs):
        uploaded["created"] = repo_id

    def create_commit(self, *, repo_id, operations, **kwargs):
        uploaded["files"] = {op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in operations}
        return SimpleNamespace(oid="a" * 40, commit_url=f"https://hub.example/{repo_id}/commit/{'a' * 40}")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    metrics = {"miou_1shot": 12.5, "episodes": 1000, "seed": 321, "command": "ntre-zoo evaluate ..."}
    result = tiny_model.push_to_hub(
        "me/ntrenet_resnet50.pascal5i_fold0", metadata={"dataset": "pascal5i", "fold": 0, "metrics": metrics}
    )
    assert uploaded["created"] == "me/ntrenet_resnet50.pascal5i_fold0"
    assert sorted(uploaded["files"]) == ["README.md", "config.json", "model.safetensors"]
    printed = capsys.readouterr().out
    snippet = json.loads(printed[printed.index("{") :])
    entry = snippet["ntrenet_resnet50.pascal5i_fold0"]
    assert entry["status"] == "published" and entry["hub"]["revision"] == "a" * 40
    assert entry["hub"]["sha256"] == hashlib.sha256(uploaded["files"]["model.safetensors"]).hexdigest()
    assert entry["metrics"]["reference"]["miou_1shot"] == 65.4 and entry["metrics"]["measured"] == metrics
    assert result.entry.name == "ntrenet_resnet50.pascal5i_fold0"
    # The printed entry is valid manifest content.
    load_manifest(_write_manifest(tmp_path / "pasted.json", snippet))


def test_the_offline_hint_names_a_download_command_that_accepts_hf_hub_ids(hub, tiny_model, tmp_path, capsys):
    saved = save_pretrained(tiny_model, tmp_path / "upload")
    hub.add_commit("me/tiny", {p.name: p.read_bytes() for p in saved.iterdir()})
    cache = tmp_path / "cache"
    with pytest.raises(WeightsUnavailableError, match="`ntre-zoo download hf-hub:me/tiny`") as raised:
        ntre_zoo.from_pretrained("hf-hub:me/tiny", cache_dir=cache, local_files_only=True)
    command = str(raised.value).split("`")[1].split()
    assert cli_main([*command[1:], "--cache-dir", str(cache)]) == 0
    assert "cached" in capsys.readouterr().out
    loaded = ntre_zoo.from_pretrained("hf-hub:me/tiny", cache_dir=cache, local_files_only=True)
    assert _state_equal(loaded, tiny_model)
