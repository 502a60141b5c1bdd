"""A training run as an object: ``RunConfig`` (validated, saved and read back, the same as its command line),
``RunDir`` (the one layout of a run directory) and ``ntre_zoo.train`` (the CLI's run from Python, resumable
bit-exactly, changing only the resumable fields)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ntre_zoo
from ntre_zoo.cli import main as cli_main
from ntre_zoo.data import AugmentConfig, DataConfig
from ntre_zoo.model.config import BackboneConfig, ModelConfig
from ntre_zoo.pipeline.train_command import (
    FIELDS,
    RESUME_OPTIONS,
    command_line,
    flag,
    parse_train_command,
    run_config_from_options,
)
from ntre_zoo.training import RunConfig, RunDir, TrainConfig
from ntre_zoo.training.losses import LossConfig
from ntre_zoo.training.run_config import RESUMABLE

NARROW = BackboneConfig("resnet50", layers=(1, 1, 1, 1), channels=(8, 16, 32, 64), stem_width=8)
TINY = ModelConfig(backbone=NARROW, reduce_dim=16, pyramid_bins=(8, 4, 2), test_size=65)


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("syn")
    assert cli_main(["make-synthetic", "-o", str(root), "--train", "24", "--val", "12", "--no-progress"]) == 0
    return str(root / "VOCdevkit" / "VOC2012")


def _tiny_run(voc: str, out: Path, **train: object) -> RunConfig:
    settings = TrainConfig(epochs=2, batch_size=4, val_every=0, progress=False).replace(**train)
    return RunConfig(
        data=DataConfig(root=voc), output_dir=str(out), model=TINY, backbone_weights="none", train=settings
    )


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


# ------------------------------------------------------------------------------------------ RunConfig
CONFIGS = {
    "new narrow model": RunConfig(
        data=DataConfig(root="voc"), output_dir="out", model=TINY, backbone_weights="none", train=TrainConfig()
    ),
    "fine-tuning on COCO, 5-shot": RunConfig(
        data=DataConfig(dataset="coco20i", root="coco", fold=3, shot=5, coco_split="contiguous"),
        output_dir="out",
        init="ntrenet_tiny.synthetic_fold0",
        protocol="hsnet",
        train=TrainConfig.from_preset("paper", benchmark="coco20i", precision="bf16", val_episodes=4000),
    ),
    "ablation with a crop and losses off": RunConfig(
        data=DataConfig(root="voc", augment=AugmentConfig(crop_size=321)),
        output_dir="out",
        model=ModelConfig(backbone="vgg16_bn", bg_eliminating=False, do_eliminating=False),
        backbone_weights="timm",
        train=TrainConfig(epochs=3, grad_clip=1.5, loss=LossConfig(pcl_weight=0), max_steps=7, num_workers=2),
        device="cpu",
    ),
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_a_run_config_reads_back_from_its_file_and_from_its_command_line(config, tmp_path):
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert RunConfig.load(config.save(tmp_path / "run.json", command="x")) == config
    words = command_line(config).split()
    assert words[:2] == ["ntre-zoo", "train"] and "--precision" in words  # named whatever the default becomes
    assert run_config_from_options(parse_train_command(words[2:])) == config


def test_a_field_no_option_reaches_is_recorded_by_the_file_alone(voc, tmp_path):
    config = _tiny_run(voc, tmp_path / "run", max_steps=1).replace(**{"train.momentum": 0.8})
    assert command_line(config) is None
    ntre_zoo.train(config)
    record = json.loads(RunDir(tmp_path / "run").run_config.read_text())
    assert record["command"] == f"ntre-zoo train --config {tmp_path / 'run' / 'run.json'}"
    assert RunConfig.from_dict(record["config"]).train.momentum == 0.8
    card = json.loads((tmp_path / "run" / "last" / "config.json").read_text())["metadata"]
    assert card["command"] == record["command"]


def test_a_run_config_refuses_what_cannot_be_one_run():
    data = DataConfig(root="voc")
    with pytest.raises(ValueError, match=r"model= .* or init= .*, not both"):
        RunConfig(data=data, output_dir="o", model=TINY, init="ntrenet_tiny.synthetic_fold0")
    with pytest.raises(ValueError, match="backbone_weights='timm' is for a new model"):
        RunConfig(data=data, output_dir="o", init="x", backbone_weights="timm")
    with pytest.raises(ValueError, match="Unknown protocol 'pfe'"):
        RunConfig(data=data, output_dir="o", protocol="pfe")
    with pytest.raises(ValueError, match=r"sets the data's resize, .*protocol=None"):
        RunConfig(data=DataConfig(root="voc", resize="square"), output_dir="o")
    assert RunConfig(data=DataConfig(root="voc", resize="square"), output_dir="o", protocol=None).protocol is None
    with pytest.raises(ValueError, match="output_dir is empty"):
        RunConfig(data=data, output_dir="")
    with pytest.raises(TypeError, match=r"RunConfig\.train must be a TrainConfig"):
        RunConfig(data=data, output_dir="o", train={"epochs": 3})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Unknown RunConfig field\(s\) \['epochs'\]"):
        RunConfig.from_dict({"data": {}, "output_dir": "o", "epochs": 3})
    config = RunConfig(data=DataConfig(root="voc", shot=5), output_dir="o")
    assert config.model == ModelConfig(shot=5) and config.backbone_weights == "reference"  # the defaults, filled in
    assert config.precision == config.train.precision == "auto"


def test_a_hand_edited_run_file_names_the_file_and_the_field(tmp_path):
    path = CONFIGS["new narrow model"].save(tmp_path / "run.json")
    record = json.loads(path.read_text())
    record["config"]["train"]["epochs"] = 0
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"run\.json' holds an invalid run configuration: TrainConfig.epochs must"):
        RunConfig.load(path)
    path.write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="is not an ntre-zoo run configuration"):
        RunConfig.load(path)
    path.write_text("{cut sh")
    with pytest.raises(ValueError, match="as JSON but does not"):
        RunConfig.load(path)


def test_one_list_says_what_a_resumed_run_may_change():
    assert {FIELDS[d] for d in RESUME_OPTIONS} | {"train.log_every"} == set(RESUMABLE)
    assert [flag(d) for d in RESUME_OPTIONS] == [
        "--max-steps",
        "--checkpoint-every",
        "--workers",
        "--device",
        "--push-to-hub",
        "--no-progress",
    ]
    config = CONFIGS["new narrow model"]
    assert config.resume_differences(config.replace(**{"train.max_steps": 9, "device": "cuda"})) == {}
    assert config.resume_differences(config.replace(**{"train.epochs": 9, "data.fold": 2})) == {
        "data.fold": (0, 2),
        "train.epochs": (150, 9),
    }


# ------------------------------------------------------------------------------------------ RunDir
def test_clearing_a_run_directory_deletes_the_run_files_and_nothing_else(tmp_path):
    run = RunDir(tmp_path)
    for name in ("run.json", "command.json", "train_config.json", "metrics.jsonl", "notes.txt"):
        (tmp_path / name).write_text("x")
    for name in ("checkpoints", "best", "last", "tensorboard", "mine"):
        (tmp_path / name).mkdir()
    assert run.holds_run()
    with pytest.raises(ValueError, match=f"continue it with --resume {tmp_path}"):
        run.check_new()
    run.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "notes.txt"]
    assert not run.holds_run()
    with pytest.raises(ValueError, match="A run exports best and last, not 'first'"):
        run.export("first")


# ------------------------------------------------------------------------------------------ train()
def test_train_from_python_is_the_cli_run_and_resumes_bit_exactly(voc, tmp_path):
    config = _tiny_run(voc, tmp_path / "python")
    straight = ntre_zoo.train(config)
    assert straight.step == 10 and straight.epoch == 2  # 5 batches of 4 episodes an epoch
    words = command_line(config.replace(output_dir=str(tmp_path / "cli"))).split()
    assert cli_main([*words[1:], "--no-progress"]) == 0
    cli = _weights(tmp_path / "cli" / "last")
    assert all(torch.equal(cli[k], v) for k, v in _weights(tmp_path / "python" / "last").items())

    stopped = ntre_zoo.train(config.replace(output_dir=str(tmp_path / "stopped"), **{"train.max_steps": 7}))
    assert stopped.step == 7  # in the middle of the second epoch
    saved = RunConfig.load(tmp_path / "stopped" / "run.json")
    resumed = ntre_zoo.train(saved.replace(**{"train.max_steps": None}), resume=True)
    assert resumed.step == 10
    assert all(torch.equal(cli[k], v) for k, v in _weights(tmp_path / "stopped" / "last").items())


def test_a_resumed_run_refuses_a_change_naming_the_option(voc, tmp_path):
    config = _tiny_run(voc, tmp_path / "run", max_steps=1)
    ntre_zoo.train(config)
    with pytest.raises(ValueError, match=r"--epochs 5 \(the run has 2\)"):
        ntre_zoo.train(config.replace(**{"train.epochs": 5}), resume=True)
    with pytest.raises(ValueError, match="resume continues a run and overwrite starts a new one"):
        ntre_zoo.train(config, resume=True, overwrite=True)
    with pytest.raises(ValueError, match="is not empty"):
        ntre_zoo.train(config)


def test_a_run_whose_checkpoint_was_deleted_says_how_to_start_again(voc, tmp_path):
    config = _tiny_run(voc, tmp_path / "run", max_steps=1)
    ntre_zoo.train(config)
    RunDir(tmp_path / "run").checkpoint("last").unlink()
    with pytest.raises(FileNotFoundError, match="start it again with --overwrite"):
        ntre_zoo.train(config, resume=True)
    (tmp_path / "run" / "run.json").unlink()
    with pytest.raises(FileNotFoundError, match="output directory of an earlier `ntre-zoo train` run"):
        ntre_zoo.train(config, resume=True)
    assert ntre_zoo.train(config, overwrite=True).step == 1


def test_a_config_file_is_a_whole_run_and_takes_only_the_run_options(voc, tmp_path, capsys):
    path = _tiny_run(voc, tmp_path / "run").save(tmp_path / "run.json")
    assert cli_main(["train", "--config", str(path), "--epochs", "3"]) == 1
    assert "--config " + str(path) + " is the whole run; --epochs would change it" in capsys.readouterr().err
    assert cli_main(["train", "--config", str(path), "--max-steps", "2", "--no-progress"]) == 0
    assert "trained 2 steps (0/2 epochs)" in capsys.readouterr().out
    assert cli_main(["train", "--config", str(path), "--resume", str(tmp_path / "run")]) == 1
    assert "--config is for a new run" in capsys.readouterr().err
