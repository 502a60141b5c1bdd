"""The checks a training run makes before its first step: ``ntre-zoo train`` refuses, and never silently, bad
options, occupied or damaged run directories, Hub access that cannot work, a batch the processes cannot split,
and backbone weights that are missing or random."""

from __future__ import annotations

import argparse
import json
import socket
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from data_fixtures import PSPNET_STEM

import ntre_zoo
import ntre_zoo.zoo.hub_access
from ntre_zoo.cli import build_parser
from ntre_zoo.cli import main as cli_main
from ntre_zoo.errors import HubAccessError, StateDictMismatchError
from ntre_zoo.model.config import BackboneConfig
from ntre_zoo.pipeline.train_command import add_train_arguments
from ntre_zoo.zoo.backbone_weights import BackboneWeights, load_backbone_weights, resolve_backbone_weights

pytestmark = pytest.mark.filterwarnings("ignore:.*never form an episode")

TINY = ["--layers", "1", "1", "1", "1", "--channels", "8", "16", "32", "64", "--stem-width", "8"]
TINY += ["--reduce-dim", "16", "--pyramid-bins", "8", "4", "2", "--test-size", "65"]
NARROW = BackboneConfig("resnet50", layers=(1, 1, 1, 1), channels=(8, 16, 32, 64), stem_width=8)


@pytest.fixture(autouse=True)
def _cpu_only(monkeypatch):
    """These tests compare CPU runs bit for bit: keep the trainer off any CUDA device the machine has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("syn")
    assert cli_main(["make-synthetic", "-o", str(root), "--train", "24", "--val", "12", "--no-progress"]) == 0
    return str(root / "VOCdevkit" / "VOC2012")


def _train(voc: str, out: Path, *extra: str) -> int:
    common = ["train", "--dataset", "pascal5i", "--data-root", voc, "--epochs", "1", "--batch-size", "4"]
    common += ["--val-every", "0", "--no-progress", *TINY, "--backbone-weights", "none"]
    return cli_main([*common, "-o", str(out), *extra])


def _error(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())


# ------------------------------------------------------------------------------------------ options
def test_unknown_loss_key_names_it_and_the_valid_keys(voc, tmp_path, capsys):
    assert _train(voc, tmp_path / "a", "--loss", "unknown=1") == 1
    err = _error(capsys)
    assert "unknown key 'unknown'" in err and "pcl_weight" in err and "bg_weight" in err and "Traceback" not in err
    assert _train(voc, tmp_path / "b", "--loss", "pcl_weight=abc") == 1
    assert "must be a number, got 'abc'" in _error(capsys)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_help_shows_every_default():
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    train = subparsers.choices["train"]
    undocumented = [
        a.option_strings[0]
        for a in train._actions
        if a.option_strings and a.help not in (argparse.SUPPRESS, None) and a.dest != "help"
        if "(default" not in a.help and "required" not in a.help
    ]
    assert undocumented == []


def test_a_batch_the_processes_cannot_split_is_said_once_with_the_fix(voc, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "3")
    assert _train(voc, tmp_path / "r", "--batch-size", "4") == 1
    assert capsys.readouterr().err == ""  # only rank 0 speaks
    monkeypatch.setenv("RANK", "0")
    args = ["train", "--dataset", "pascal5i", "--data-root", voc, *TINY, "--backbone-weights", "none"]
    assert cli_main([*args, "-o", str(tmp_path / "r")]) == 1
    err = _error(capsys)
    assert "--preset reference trains with batch 4" in err and "8 processes cannot split" in err
    assert "1, 2, 4 process(es)" in err and "--batch-size 8 (1 per process" in err


# ------------------------------------------------------------------------------------------ output and resume
def test_a_run_directory_is_never_reused_silently(voc, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(voc, out) == 0
    printed = capsys.readouterr().out
    assert "epoch 1/1  step " in printed and "loss " in printed and "lr " in printed  # even with --no-progress
    config = json.loads((out / "last" / "config.json").read_text())
    assert config["metadata"]["backbone_init"] == {"kind": "none", "source": None, "sha256": None}
    assert "Backbone initialisation: none, random weights" in (out / "last" / "README.md").read_text()

    assert _train(voc, out) == 1
    err = _error(capsys)
    assert "is not empty" in err and f"--resume {out}" in err and "--overwrite" in err

    assert cli_main(["train", "--resume", str(out), "--epochs", "9", "--fold", "1", "--no-progress"]) == 1
    err = _error(capsys)
    assert "--epochs 9 (the run has 1)" in err and "--fold 1 (the run has 0)" in err and "--max-steps" in err

    assert cli_main(["train", "--resume", str(out), "--max-steps", "100", "--no-progress"]) == 0
    assert "applying --max-steps 100" in capsys.readouterr().out

    (out / "notes.txt").write_text("mine")
    assert _train(voc, out, "--overwrite") == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # the earlier run's lines are gone
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own files are deleted
    assert cli_main(["train", "--resume", str(out), "--overwrite"]) == 1
    assert "pass one of them" in _error(capsys)


def _run_dir(tmp_path: Path, checkpoint: bytes | None) -> Path:
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    args = {"dataset": "pascal5i", "data_root": str(tmp_path), "output": str(out)}  # what 0.3 recorded, in short
    (out / "command.json").write_text(json.dumps({"command": "ntre-zoo train ...", "args": args}))
    (out / "train_config.json").write_text(json.dumps({"model": {}, "metadata": {}}))
    if checkpoint is not None:
        (out / "checkpoints" / "last.pt").write_bytes(checkpoint)
    return out


def _saved(obj) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "the file is empty"),
        (
            _saved({"format": "ntre-zoo-train-state/1", "model": torch.zeros(1000)})[:700],
            "not a complete torch archive",
        ),
        (b"step,loss\n1,0.5\n", "not a complete torch archive"),
        (_saved({"weights": torch.zeros(3)}), "holds a dict with format None, not an ntre-zoo training state"),
        (_saved(torch.zeros(3)), "holds Tensor"),
    ],
    ids=["empty", "truncated", "text", "other-dict", "tensor"],
)
def test_resume_from_a_damaged_checkpoint_names_the_file_and_what_was_expected(tmp_path, capsys, content, expected):
    out = _run_dir(tmp_path, content)
    assert cli_main(["train", "--resume", str(out)]) == 1
    err = _error(capsys)
    assert expected in err and str(out / "checkpoints" / "last.pt") in err and "ntre-zoo-train-state/1" in err


def test_resume_points_at_the_run_directory(tmp_path, capsys):
    out = _run_dir(tmp_path, None)
    assert cli_main(["train", "--resume", str(out)]) == 1
    assert "nothing to resume: start it again with --overwrite" in _error(capsys)
    (out / "checkpoints" / "last.pt").write_bytes(b"x")
    assert cli_main(["train", "--resume", str(out / "checkpoints" / "last.pt")]) == 1
    assert f"For this checkpoint that is --resume {out}" in _error(capsys)
    (out / "command.json").write_text("{not json")
    assert cli_main(["train", "--resume", str(out)]) == 1
    assert "command.json" in (err := _error(capsys)) and "as JSON" in err
    assert cli_main(["train", "--resume", str(tmp_path / "nowhere")]) == 1
    assert "output directory of an earlier `ntre-zoo train` run" in _error(capsys)


# ------------------------------------------------------------------------------------------ the Hub, fast
@pytest.fixture
def no_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # nothing cached
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(ntre_zoo.zoo.hub_access, "HUB_TIMEOUT_S", 1.0)


def _timed_train(voc, out, *extra):
    start = time.monotonic()
    code = cli_main(["train", "--dataset", "pascal5i", "--data-root", voc, "-o", str(out), "--no-progress", *extra])
    return code, time.monotonic() - start


def test_offline_hub_needs_fail_within_seconds_saying_what_to_do(voc, tmp_path, monkeypatch, no_hub, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, seconds = _timed_train(voc, tmp_path / "a", "--backbone-weights", "timm")
    err = _error(capsys)
    assert code == 1 and seconds < 5, seconds
    assert "HF_HUB_OFFLINE=1" in err and "timm/resnet50s.gluon_in1k" in err and "--backbone-weights reference" in err
    code, seconds = _timed_train(voc, tmp_path / "b", *TINY, "--backbone-weights", "none", "--push-to-hub", "me/x")
    err = _error(capsys)
    assert code == 1 and seconds < 5 and "--push-to-hub needs the Hugging Face Hub" in err and "ntre-zoo publish" in err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("how", ["refused", "silent"])
def test_an_unreachable_hub_fails_within_seconds(voc, tmp_path, monkeypatch, no_hub, capsys, how):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    if how == "silent":
        server.listen(1)  # accepts connections at the kernel level and never answers
    else:
        server.close()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    try:
        code, seconds = _timed_train(voc, tmp_path / "a", "--backbone-weights", "timm")
    finally:
        server.close()
    err = _error(capsys)
    assert code == 1 and seconds < 5, seconds
    assert f"http://127.0.0.1:{port} did not answer within 1 s" in err and "Download timm/resnet50s" in err


# ------------------------------------------------------------------------------------------ backbone weights
def test_random_backbone_weights_must_be_asked_for(voc, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli_main(["train", "--dataset", "pascal5i", "--data-root", voc, "-o", "a", *TINY]) == 1
    assert "no ImageNet weights exist for a narrowed resnet50" in (err := _error(capsys)) and "none" in err
    assert cli_main(["train", "--dataset", "pascal5i", "--data-root", voc, "-o", "a"]) == 1  # full size: reference
    err = _error(capsys)
    assert "'initmodel/resnet50_v2.pth' does not exist" in err and "dvlab-research/PFENet" in err
    assert cli_main(["train", "--dataset", "pascal5i", "--data-root", voc, "-o", "a", "--pretrained-backbone"]) == 1
    assert "--backbone-weights reference" in _error(capsys)


def _fresh_model():
    narrow = {"layers": (1, 1, 1, 1), "channels": (8, 16, 32, 64), "stem_width": 8}
    return ntre_zoo.create_model("resnet50", **narrow, reduce_dim=16, pyramid_bins=(8, 4, 2))


def _assert_backbone(model, state):
    """The backbone holds ``state``; BN step counters a file lacked are 0."""
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, state[key] if key in state else torch.tensor(0)), key


def _pspnet_key(key: str) -> str:
    parts = key.split(".")
    head = ".".join(parts[:2]) if parts[0] == "conv1" else parts[0]
    return ".".join([PSPNET_STEM.get(head, head), *parts[len(head.split(".")) :]])


def test_backbone_weights_from_the_authors_layout_a_converted_file_or_a_saved_model(tmp_path):
    torch.manual_seed(1)
    state = _fresh_model().backbone.state_dict()
    counted = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # the authors' files lack them
    pspnet = {_pspnet_key(k): v for k, v in counted.items()}
    pspnet["fc.weight"] = torch.zeros(10, 256)
    reference = tmp_path / "initmodel" / "resnet50_v2.pth"
    reference.parent.mkdir()
    torch.save(pspnet, reference)
    weights = resolve_backbone_weights(tmp_path / "initmodel", NARROW)
    assert weights.kind == "reference" and weights.source == "resnet50_v2.pth" and len(weights.sha256) == 64
    model = _fresh_model()
    load_backbone_weights(model, weights)
    _assert_backbone(
        model, {k: v if not k.endswith("num_batches_tracked") else torch.tensor(0) for k, v in state.items()}
    )

    converted = tmp_path / "converted.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(converted))
    weights = resolve_backbone_weights(converted, NARROW)
    assert weights.kind == "file"
    model = _fresh_model()
    load_backbone_weights(model, weights)
    _assert_backbone(model, state)

    donor = _fresh_model()
    donor.backbone.load_state_dict(state)
    donor.save_pretrained(tmp_path / "saved")
    weights = resolve_backbone_weights(tmp_path / "saved", NARROW)
    assert weights.kind == "pretrained"
    model = _fresh_model()
    load_backbone_weights(model, weights)
    _assert_backbone(model, state)

    timm_file = tmp_path / "timm.safetensors"
    safetensors.torch.save_file({**counted, "fc.weight": torch.zeros(10, 256)}, str(timm_file))  # timm: a classifier
    model = _fresh_model()
    load_backbone_weights(model, BackboneWeights("timm", timm_file, "hf-hub:timm/x@c", "0" * 64))
    _assert_backbone(
        model, {k: v if not k.endswith("num_batches_tracked") else torch.tensor(0) for k, v in state.items()}
    )

    wrong = tmp_path / "wrong.safetensors"
    safetensors.torch.save_file({"layer9.weight": torch.zeros(2)}, str(wrong))
    with pytest.raises(StateDictMismatchError, match="fits the resnet50 backbone neither"):
        load_backbone_weights(_fresh_model(), resolve_backbone_weights(wrong, NARROW))
    with pytest.raises(FileNotFoundError, match="neither 'reference', 'timm', 'none' nor an existing"):
        resolve_backbone_weights(tmp_path / "missing.pth", NARROW)


def test_timm_weights_offline_are_refused_unless_cached(tmp_path, monkeypatch, no_hub):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubAccessError, match="HF_HUB_OFFLINE=1"):
        resolve_backbone_weights("timm", BackboneConfig("resnet50"))


def test_a_run_of_0_3_resumes_in_the_float16_it_started_with(voc, tmp_path):
    """0.3 recorded amp/amp_dtype (its default amp_dtype 'float16'; options --no-amp/--amp-dtype) where 0.4 records
    precision (default 'auto'). Resuming such a run keeps fp16, and every file in the old form still reads."""
    out = tmp_path / "run"
    assert _train(voc, out, "--max-steps", "1") == 0
    path = out / "checkpoints" / "last.pt"

    def old_form(config):
        return {**{k: v for k, v in config.items() if k != "precision"}, "amp": True, "amp_dtype": "float16"}

    state = torch.load(path, weights_only=True)
    state["config"] = json.dumps(old_form(json.loads(state["config"])))
    torch.save(state, path)
    recorded = json.loads((out / "train_config.json").read_text())
    recorded["train"] = old_form(recorded["train"])
    (out / "train_config.json").write_text(json.dumps(recorded))
    _as_a_0_3_run(out, ["--dataset", "pascal5i", "--data-root", voc, "--epochs", "1", "--val-every", "0", *TINY])
    assert cli_main(["train", "--resume", str(out), "--max-steps", "2", "--no-progress"]) == 0
    state = torch.load(path, weights_only=True)
    assert state["step"] == 2 and json.loads(state["config"])["precision"] == "fp16"
    assert _train(voc, out, "--resume", str(out), "--max-steps", "3", "--precision", "fp16") == 0
    assert cli_main(["train", "--resume", str(out), "--max-steps", "4", "--precision", "bf16"]) == 1


def _as_a_0_3_run(out: Path, words: list[str]) -> None:
    """Turn a run made now into the form 0.3 wrote: ``command.json`` with every option (defaults filled in, no
    ``precision``), and no ``run.json``."""
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = {k: v for k, v in vars(parser.parse_args(words)).items() if k not in ("config", "precision")}
    defaults = {"protocol": "ntrenet", "fold": 0, "shot": 1, "coco_split": "interleaved", "backbone": "resnet50"}
    args = {**args, **defaults, "preset": "reference", "backbone_weights": "none", "output": str(out)}
    command = {"command": "ntre-zoo train " + " ".join(words), "args": args}
    (out / "command.json").write_text(json.dumps(command))
    (out / "run.json").unlink()


def test_no_amp_and_amp_dtype_still_work_with_a_notice_naming_precision(voc, tmp_path, capsys):
    assert _train(voc, tmp_path / "a", "--max-steps", "1", "--amp-dtype", "float16") == 0
    err = capsys.readouterr().err
    assert "ntre-zoo train: --amp-dtype float16 is deprecated and goes in the next release; use --precision fp16" in err
    assert json.loads((tmp_path / "a" / "train_config.json").read_text())["train"]["precision"] == "fp16"
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["config"]["train"]["precision"] == "fp16" and "--precision fp16" in run["command"]
    assert "amp_dtype" not in run["config"]["train"] and "--amp" not in run["command"]
    assert _train(voc, tmp_path / "b", "--max-steps", "1", "--no-amp") == 0
    assert "--no-amp is deprecated and goes in the next release; use --precision fp32" in capsys.readouterr().err
    assert json.loads((tmp_path / "b" / "train_config.json").read_text())["train"]["precision"] == "fp32"
    assert _train(voc, tmp_path / "c", "--no-amp", "--precision", "bf16") == 1
    assert "--no-amp and --precision bf16 disagree; pass only --precision" in _error(capsys)
    assert not (tmp_path / "c").exists()
