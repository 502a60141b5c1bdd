"""``ntre-zoo reproduce``: recipes, the checks before a sweep starts, and a sweep that is killed, resumed, and ends
with the same outputs as one that never stopped; the slow test regenerates the shipped model."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ntre_zoo
from ntre_zoo.cli import main as cli_main
from ntre_zoo.errors import UnknownModelError
from ntre_zoo.pipeline.ledger import LEDGER_NAME
from ntre_zoo.pipeline.recipes import check_data_root, measured_metrics, recipe_for, select_variants
from ntre_zoo.pipeline.reproduce import _same_recipe, reproduce
from ntre_zoo.training import RunConfig
from ntre_zoo.training.environment import PINNED_CPU_KERNELS
from ntre_zoo.training.trainer import Trainer
from ntre_zoo.zoo.download import sha256_file
from ntre_zoo.zoo.manifest import load_manifest
from ntre_zoo.zoo.saving import WEIGHTS_METADATA, write_safetensors
from ntre_zoo.zoo.weights_diff import compare_weights

pytestmark = pytest.mark.filterwarnings("ignore:.*never form an episode")


@pytest.fixture(autouse=True)
def _cpu_only(monkeypatch):
    """The recorded variants are CPU recipes, compared bit for bit: keep in-process steps off any CUDA device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


SHIPPED = "ntrenet_tiny.synthetic_fold0"
SMALL = "ntrenet_tiny.synthetic_fold0_small"
#: A variant recorded like the shipped one, small enough for the default suite: 2 epochs on 24 images.
SMALL_COMMAND = (
    "ntre-zoo make-synthetic -o syn --seed 0 --train 24 --val 12 && OMP_NUM_THREADS=1 ntre-zoo train "
    "--dataset pascal5i --data-root syn/VOCdevkit/VOC2012 --fold 0 -o run --layers 1 1 1 1 --channels 8 16 32 64 "
    "--stem-width 8 --reduce-dim 16 --pyramid-bins 8 4 2 --test-size 65 --epochs 2 --batch-size 4 --val-every 0  "
    "# weights: run/last/model.safetensors"
)


def in_process(step, gpus):
    """Run a step in this process (the default runs a child process): the steps are tiny here."""
    assert gpus is None and dict(step.env) == {"OMP_NUM_THREADS": "1"}  # the tests already run on one thread
    return cli_main([*step.argv, "--no-progress"] if "--no-progress" not in step.argv else list(step.argv))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The small synthetic benchmark and a manifest whose one variant records SMALL_COMMAND."""
    root = tmp_path_factory.mktemp("small")
    assert cli_main(["make-synthetic", "-o", str(root / "syn"), "--train", "24", "--val", "12", "--no-progress"]) == 0
    measured = {"miou_1shot": 0.0, "episodes": 4, "seed": 321, "command": "...", "train_command": SMALL_COMMAND}
    entry = {"backbone": "tiny", "dataset": "synthetic", "fold": 0, "train_shot": 1, "source": "hub"}
    entry.update(hub=dict.fromkeys(("repo_id", "revision", "filename", "sha256")), status="unpublished")
    entry["metrics"] = {"reference": {}, "measured": measured}
    manifest = root / "manifest.json"
    manifest.write_text(json.dumps({"schema_version": 1, "models": {SMALL: entry}}, indent=2) + "\n")
    return root / "syn", manifest


# ------------------------------------------------------------------------------------------ recipes
def test_the_shipped_variant_is_replayed_from_its_recorded_command():
    recipe = recipe_for(load_manifest().get(SHIPPED))
    assert recipe.origin == "recorded" and recipe.weights == "last"
    # one thread, and the same CPU kernels on any x86-64 CPU with AVX2 (docs/reproducing.md)
    pinned = {
        "OMP_NUM_THREADS": "1",
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_CBWR": "COMPATIBLE",
    }
    assert dict(recipe.env) == pinned == PINNED_CPU_KERNELS  # what the ablation example trains with too
    assert recipe.train_command("ROOT", "RUN") == (
        "ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=COMPATIBLE OMP_NUM_THREADS=1 ONEDNN_MAX_CPU_ISA=AVX2 ntre-zoo train "
        "--dataset pascal5i --data-root ROOT --fold 0 --shot 1 --protocol ntrenet --backbone resnet50 "
        "--backbone-weights none --layers 1 1 1 1 --channels 8 16 32 64 --stem-width 8 --reduce-dim 16 "
        "--pyramid-bins 8 4 2 --test-size 129 --preset reference --epochs 30 --batch-size 8 "
        "--precision fp32 -o RUN --val-every 0"  # fp32 named: a CPU run, which trains in fp32 whatever the default
    )
    run = recipe.run_config("ROOT", "RUN")
    assert run.model.test_size == 129 and run.data.augment.crop_size is None  # crops at the model's canvas
    assert (run.train.epochs, run.train.batch_size, run.train.val_every, run.backbone_weights) == (30, 8, 0, "none")
    assert (recipe.episodes, recipe.seed, recipe.seeds, recipe.shots) == (1000, 321, 1, (1, 5))
    assert dict(recipe.synthetic) == {"seed": 0, "train": 1000, "val": 300}
    with pytest.raises(ValueError, match="--preset paper would change"):
        recipe_for(load_manifest().get(SHIPPED), preset="paper")


def test_a_recorded_command_names_its_precision_and_loses_the_deprecated_options():
    shipped = load_manifest().get(SHIPPED)
    measured = shipped.metrics["measured"]
    for options, precision in (
        ("", "fp32"),
        ("--amp-dtype bfloat16", "bf16"),
        ("--amp-dtype float16 --no-amp", "fp32"),  # --no-amp won, as it did
        ("--precision auto", "auto"),
    ):
        command = measured["train_command"].replace("--val-every 0", f"--val-every 0 {options}")
        recorded = {**shipped.metrics, "measured": {**measured, "train_command": command}}
        recipe = recipe_for(dataclasses.replace(shipped, metrics=recorded))
        words = recipe.train_command(".", "run").split()
        assert recipe.run.precision == precision and words[words.index("--precision") + 1] == precision
        assert "--amp-dtype" not in words and "--no-amp" not in words and recipe.run.train.val_every == 0


def test_a_recorded_command_names_the_export_that_became_the_weights():
    shipped = load_manifest().get(SHIPPED)
    measured = shipped.metrics["measured"]
    for comment, weights in (("# weights: tiny_f0/best/model.safetensors", "best"), ("", "last")):
        command = measured["train_command"].split("#")[0] + comment
        recorded = {**shipped.metrics, "measured": {**measured, "train_command": command}}
        assert recipe_for(dataclasses.replace(shipped, metrics=recorded)).weights == weights


def test_measured_numbers_are_percent_to_two_decimals_with_the_seeds_they_came_from():
    recipe = dataclasses.replace(recipe_for(load_manifest().get(SHIPPED)), shots=(1,), seeds=3, seed=7, episodes=50)
    result = {"miou": 0.123456, "fb_iou": 0.5, "precision": 0.99999, "miou_std": 0.01234, "fb_iou_std": 0.0}
    measured = measured_metrics(recipe, {1: {**result, "precision_std": 0.005}}, "ROOT")
    assert (measured["miou_1shot"], measured["fb_iou_1shot"], measured["precision_1shot"]) == (12.35, 50.0, 100.0)
    assert (measured["miou_1shot_std"], measured["precision_1shot_std"]) == (1.23, 0.5)
    assert measured["seeds"] == [7, 8, 9] and (measured["seed"], measured["episodes"]) == (7, 50)
    assert measured["command"].endswith("--episodes 50 --seed 7 --seeds 3")
    single = measured_metrics(dataclasses.replace(recipe, seeds=1), {1: result}, "ROOT")
    assert "miou_1shot_std" not in single and single["seeds"] == [7] and "--seeds" not in single["command"]


def test_paper_variants_get_the_paper_recipe():
    manifest = load_manifest()
    recipe = recipe_for(manifest.get("ntrenet_resnet101.coco20i_fold2"))
    assert recipe.train_command("R", "O") == (
        "ntre-zoo train --dataset coco20i --data-root R --fold 2 --shot 1 --protocol ntrenet --backbone resnet101 "
        "--backbone-weights reference --preset paper --precision auto -o O --val-every 0"  # last: no selection
    )
    assert (recipe.episodes, recipe.seed, recipe.seeds, recipe.weights) == (4000, 321, 5, "last")
    assert (recipe.run.train.epochs, recipe.run.train.batch_size, recipe.run.train.base_lr) == (50, 32, 0.003)
    best = recipe_for(manifest.get("ntrenet_vgg16_bn.pascal5i_fold0"), select="best", preset="reference", seeds=2)
    assert best.run.train.val_every is None and best.run.train.preset == "reference" and best.episodes == 1000
    assert best.run.backbone_weights == "reference" and best.run.model.backbone.name == "vgg16_bn"
    with pytest.raises(ValueError, match="random frozen backbone"):
        recipe_for(manifest.get("ntrenet_vgg16_bn.pascal5i_fold0"), backbone_weights="none")
    assert len(select_variants(manifest, ["all"])) == 20
    assert select_variants(manifest, ["ntrenet_*.pascal5i_fold1", "ntrenet_vgg16_bn.pascal5i_fold1"]) == [
        f"ntrenet_{b}.pascal5i_fold1" for b in ("vgg16_bn", "resnet50", "resnet101")
    ]
    with pytest.raises(UnknownModelError, match="Did you mean"):
        select_variants(manifest, ["ntrenet_resnet50.pascal5i_fold7"])


def test_a_recorded_make_synthetic_reads_the_same_in_both_spellings(small, tmp_path):
    """SMALL records ``make-synthetic -o syn``; the shipped entry, recorded before 0.4, the positional ``synbig``."""
    _, manifest = small
    recipe = recipe_for(load_manifest(manifest).get(SMALL))
    assert dict(recipe.synthetic) == {"seed": 0, "train": 24, "val": 12}
    data = json.loads(manifest.read_text())
    measured = data["models"][SMALL]["metrics"]["measured"]
    measured["train_command"] = measured["train_command"].replace("make-synthetic -o syn", "make-synthetic syn")
    older = tmp_path / "older.json"
    older.write_text(json.dumps(data))
    assert recipe_for(load_manifest(older).get(SMALL)) == recipe
    with pytest.raises(FileNotFoundError, match=r"make-synthetic -o DIR --seed 0 --train 24 --val 12$"):
        check_data_root(recipe, tmp_path)  # no synthetic.json there: the command that makes it, new spelling


def test_data_roots_per_benchmark_are_named_by_the_manifests_benchmarks(small, tmp_path, capsys):
    syn, manifest = small
    line = ["reproduce", SMALL, "--manifest", str(manifest), "-o", str(tmp_path / "zoo"), "--dry-run"]
    assert cli_main([*line, "--data-root", f"synthetic={syn}", "--data-root", "pascal=x"]) == 1
    assert "DATASET one of the manifests' coco20i, pascal5i, synthetic; got 'pascal=x'" in capsys.readouterr().err
    assert cli_main([*line, "--data-root", f"synthetic={syn}", "--data-root", "coco20i=unused"]) == 0


def test_a_sweep_refuses_what_it_would_fail_on_before_running_anything(small, tmp_path, monkeypatch):
    syn, manifest = small

    def never(step, gpus):
        raise AssertionError(f"nothing may run: {step.command()}")

    with pytest.raises(ValueError, match=r"--train 1000 \(found 24\)"):
        reproduce([SHIPPED], syn, tmp_path / "a", runner=never)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        reproduce([SMALL], tmp_path / "missing", tmp_path / "a", manifest=manifest, runner=never)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"resnet50_v2\.pth"):
        reproduce(["ntrenet_resnet50.pascal5i_fold0"], syn, tmp_path / "a", runner=never)
    monkeypatch.setattr("ntre_zoo.pipeline.reproduce.check_backbones", lambda recipes: None)
    with pytest.raises(ValueError, match=r"batch 32, which 3 GPUs per run cannot split; use --gpus-per-run 1 or 2\."):
        reproduce(["ntrenet_resnet50.pascal5i_fold0"], syn, tmp_path / "a", gpus=[0, 1, 2, 3, 4, 5], gpus_per_run=3)
    with pytest.raises(ValueError, match=r"names GPU 0 more than once.*--gpus 0,1\."):
        reproduce(["ntrenet_resnet50.pascal5i_fold0"], syn, tmp_path / "a", gpus=[0, 0, 1], runner=never)
    with pytest.raises(ValueError, match="no CUDA device 7"):
        reproduce(["ntrenet_resnet50.pascal5i_fold0"], syn, tmp_path / "a", gpus=[7], runner=never)
    with pytest.raises(ValueError, match=r"needs --data-root pascal5i=DIR"):
        reproduce(["ntrenet_resnet50.pascal5i_fold0"], {"synthetic": syn}, tmp_path / "a", runner=never)


def test_the_same_weights_give_the_same_bytes(tmp_path, monkeypatch):
    """safetensors orders its header metadata differently from process to process; the writer fixes the order,
    so the shipped model's weights written as the zoo ships them give back its pinned sha256 whichever order
    safetensors picked, and save_pretrained writes the same bytes for the same model and config."""
    import safetensors.torch

    model = ntre_zoo.from_pretrained(SHIPPED)
    state = model.state_dict()
    write_safetensors(state, tmp_path / "a.safetensors", WEIGHTS_METADATA)
    save_file = safetensors.torch.save_file

    def the_other_order(tensors, filename, metadata=None):
        save_file(tensors, filename, metadata=metadata)
        raw = Path(filename).read_bytes()
        size = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8 : 8 + size])
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))  # what another process may write
        text = json.dumps(header, separators=(",", ":")).encode().ljust(size)
        Path(filename).write_bytes(raw[:8] + text + raw[8 + size :])

    model.save_pretrained(tmp_path / "saved_a", metadata={"note": "x"})
    monkeypatch.setattr(safetensors.torch, "save_file", the_other_order)
    write_safetensors(state, tmp_path / "b.safetensors", WEIGHTS_METADATA)
    model.save_pretrained(tmp_path / "saved_b", metadata={"note": "x"})
    expected = load_manifest().get(SHIPPED).sha256
    assert sha256_file(tmp_path / "a.safetensors") == sha256_file(tmp_path / "b.safetensors") == expected
    saved_a, saved_b = (tmp_path / d / "model.safetensors" for d in ("saved_a", "saved_b"))
    assert saved_a.read_bytes() == saved_b.read_bytes()


# ------------------------------------------------------------------------------------------ a killed sweep
def _outputs(out: Path) -> tuple[str, dict, dict]:
    directory = out / SMALL
    record = json.loads((directory / "manifest_entry.json").read_text())
    config = json.loads((directory / "config.json").read_text())
    return sha256_file(directory / "model.safetensors"), record, config["model_config"]


def test_a_killed_sweep_resumes_to_the_same_outputs(small, tmp_path, monkeypatch, capsys):
    syn, manifest = small
    straight = reproduce([SMALL], syn, tmp_path / "straight", manifest=manifest, runner=in_process)
    assert [r.state for r in straight] == ["done"]

    step = Trainer.train_step

    def killed_in_epoch_2(self, batch):
        if self.epoch == 1 and self.batch_in_epoch == 1:
            raise KeyboardInterrupt  # what a kill looks like from here: nothing catches it
        return step(self, batch)

    monkeypatch.setattr(Trainer, "train_step", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        reproduce([SMALL], syn, tmp_path / "killed", manifest=manifest, runner=in_process)
    monkeypatch.setattr(Trainer, "train_step", step)
    assert (tmp_path / "killed" / "work" / SMALL / "train" / "checkpoints" / "last.pt").is_file()
    assert not (tmp_path / "killed" / SMALL).exists()
    capsys.readouterr()

    resumed = reproduce([SMALL], syn, tmp_path / "killed", manifest=manifest, runner=in_process)
    assert "(resuming from its last checkpoint)" in capsys.readouterr().out
    ledger = json.loads((tmp_path / "killed" / LEDGER_NAME).read_text())["variants"][SMALL]
    assert "--resume" in ledger["steps"]["train"]["command"] and ledger["state"] == "done"
    (sha_a, record_a, config_a), (sha_b, record_b, config_b) = (_outputs(tmp_path / d) for d in ("straight", "killed"))
    assert sha_a == sha_b == resumed[0].sha256 and config_a == config_b
    measured_a, measured = (r["entry"]["metrics"]["measured"] for r in (record_a, record_b))
    assert measured_a["miou_1shot"] == measured["miou_1shot"] and measured["episodes"] == 4
    assert measured["seeds"] == [321] and "OMP_NUM_THREADS=1 ntre-zoo train" in measured["train_command"]

    def never(step, gpus):
        raise AssertionError(f"nothing may run: {step.command()}")

    again = reproduce([SMALL], syn, tmp_path / "killed", manifest=manifest, runner=never)
    assert again[0].sha256 == sha_a and "done earlier, skipped" in capsys.readouterr().out


def test_the_training_child_reads_the_recipes_run_from_a_file(small, tmp_path):
    syn, manifest = small
    seen = []

    def record(step, gpus):
        seen.append(step.argv)
        return in_process(step, gpus)

    reproduce([SMALL], syn, tmp_path, manifest=manifest, runner=record)
    work = tmp_path / "work" / SMALL
    assert seen[0][:3] == ("train", "--config", str(work / "run.json"))
    recipe = recipe_for(load_manifest(manifest).get(SMALL))
    run = recipe.run_config(check_data_root(recipe, Path(syn)), work / "train")
    assert RunConfig.load(work / "run.json") == run
    trained = RunConfig.load(work / "train" / "run.json")  # with the run options the runner added (--no-progress)
    assert trained == run.replace(**{"train.progress": False})


def test_outputs_deleted_between_two_sweeps_are_made_again_from_what_is_left(small, tmp_path):
    syn, manifest = small
    (first,) = reproduce([SMALL], syn, tmp_path, manifest=manifest, runner=in_process)
    ran = []

    def counting(step, gpus):
        ran.append(step.name)
        return in_process(step, gpus)

    shutil.rmtree(tmp_path / SMALL)  # the variant's directory: rebuilt from the work files, nothing runs
    (again,) = reproduce([SMALL], syn, tmp_path, manifest=manifest, runner=counting)
    assert ran == [] and again.sha256 == first.sha256
    shutil.rmtree(tmp_path / SMALL)
    (tmp_path / "work" / SMALL / "eval_1shot.json").unlink()  # one evaluation: only it runs again
    (again,) = reproduce([SMALL], syn, tmp_path, manifest=manifest, runner=counting)
    assert ran == ["eval_1shot"] and again.sha256 == first.sha256
    shutil.rmtree(tmp_path / SMALL)
    shutil.rmtree(tmp_path / "work" / SMALL / "train" / "last")  # the weights: exported again, then evaluated
    ran.clear()
    (again,) = reproduce([SMALL], syn, tmp_path, manifest=manifest, runner=counting)
    assert ran == ["train", "eval_1shot"] and again.sha256 == first.sha256


def test_a_failed_step_runs_again_and_a_training_that_left_no_checkpoint_starts_afresh(small, tmp_path):
    syn, manifest = small
    ran = []

    def failing_train(step, gpus):
        ran.append(step.name)
        if step.name == "train":
            (tmp_path / "work" / SMALL / "train").mkdir(parents=True, exist_ok=True)
            (tmp_path / "work" / SMALL / "train" / "run.json").write_text("{}")  # died before its first checkpoint
            return 1
        return in_process(step, gpus)

    (failed,) = reproduce([SMALL], syn, tmp_path, manifest=manifest, runner=failing_train)
    assert failed.state == "failed" and ran == ["train"]
    ledger = json.loads((tmp_path / LEDGER_NAME).read_text())["variants"][SMALL]
    assert ledger["steps"]["train"]["state"] == "failed" and ledger["state"] == "failed"

    seen = []

    def record(step, gpus):
        seen.append(step.argv)
        return in_process(step, gpus)

    (done,) = reproduce([SMALL], syn, tmp_path, manifest=manifest, runner=record)
    assert done.state == "done" and seen[0][:2] == ("train", "--config") and "--overwrite" in seen[0]


def test_a_sweep_continued_on_another_data_root_is_refused(small, tmp_path):
    syn, manifest = small

    def interrupted(step, gpus):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reproduce([SMALL], syn, tmp_path / "out", manifest=manifest, runner=interrupted)
    other = tmp_path / "copy"
    shutil.copytree(syn, other)
    with pytest.raises(ValueError, match=f"unfinished {SMALL} started with other settings"):
        reproduce([SMALL], other, tmp_path / "out", manifest=manifest, runner=in_process)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("ntre-zoo make-synthetic -o syn", "holds no `ntre-zoo train`"),
        ("ntre-zoo train --dataset pascal5i --epochz 2", "cannot be replayed: Not an `ntre-zoo train` command"),
        ("ntre-zoo train --dataset pascal5i --fold 4", "cannot be replayed: fold must be 0, 1, 2 or 3, got 4"),
        ("ntre-zoo train --dataset pascal5i --init x --backbone-weights timm", "--init already brings"),
    ],
)
def test_a_recorded_command_edited_by_hand_is_refused_naming_the_variant(small, tmp_path, command, message):
    syn, manifest = small
    data = json.loads(manifest.read_text())
    data["models"][SMALL]["metrics"]["measured"]["train_command"] = command
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"{SMALL}: .*{re.escape(message)}"):
        reproduce([SMALL], syn, tmp_path / "out", manifest=tmp_path / "manifest.json", runner=in_process)
    assert not (tmp_path / "out").exists()


def test_a_ledger_edited_by_hand_is_refused_or_read_as_it_says(small, tmp_path):
    syn, manifest = small
    reproduce([SMALL], syn, tmp_path, manifest=manifest, runner=in_process)
    path = tmp_path / LEDGER_NAME
    ledger = json.loads(path.read_text())
    ledger["variants"][SMALL]["state"] = "running"  # edited: another recipe recorded for the same variant
    ledger["variants"][SMALL]["recipe"]["run"]["train"]["epochs"] = 99
    path.write_text(json.dumps(ledger))
    with pytest.raises(ValueError, match="started with other settings"):
        reproduce([SMALL], syn, tmp_path, manifest=manifest, runner=in_process)
    path.write_text(json.dumps({**ledger, "format": "ntre-zoo-reproduce/0"}))
    with pytest.raises(ValueError, match="is not a reproduce ledger"):
        reproduce([SMALL], syn, tmp_path, manifest=manifest, runner=in_process)
    path.write_text(json.dumps([ledger]))
    with pytest.raises(ValueError, match="is not a reproduce ledger"):
        reproduce([SMALL], syn, tmp_path, manifest=manifest, runner=in_process)


def test_a_shipped_variant_regenerated_on_another_cpu_is_told_apart_from_another_training(small, tmp_path, capsys):
    """When the bytes differ from a package entry's, reproduce compares the tensors: the same parameters with
    running statistics a rounding step apart is the cross-CPU case docs/reproducing.md describes."""
    syn, manifest = small
    (result,) = reproduce([SMALL], syn, tmp_path / "out", manifest=manifest, runner=in_process)
    assert result.weights_diff is None  # a hub entry without weights: nothing to compare with
    tensors = load_file(str(result.directory / "model.safetensors"))
    statistic = next(k for k in tensors if k.endswith("running_var"))
    parameter = next(k for k in tensors if k.endswith(".weight"))
    for key, change in ((statistic, "statistic"), (parameter, "parameter")):
        shipped = tmp_path / f"shipped_{change}"
        shipped.mkdir()
        other = {**tensors, key: tensors[key].clone()}
        other[key].view(-1)[0] = torch.nextafter(other[key].view(-1)[0], torch.tensor(float("inf")))  # one step
        write_safetensors(other, shipped / "model.safetensors", WEIGHTS_METADATA)
        shutil.copy(result.directory / "config.json", shipped / "model.json")
        entry = json.loads(manifest.read_text())["models"][SMALL]
        entry.update(source="package", status="published", file=str(shipped / "model.safetensors"))
        entry.update(sha256=sha256_file(shipped / "model.safetensors"), hub={})
        package_manifest = tmp_path / f"manifest_{change}.json"
        package_manifest.write_text(json.dumps({"schema_version": 1, "models": {SMALL: entry}}))
        capsys.readouterr()
        (again,) = reproduce([SMALL], syn, tmp_path / "out", manifest=package_manifest, runner=in_process)
        assert again.sha256 == result.sha256 and again.weights_diff is not None
        assert again.weights_diff.same_training() is (change == "statistic"), again.weights_diff
        capsys.readouterr()
        command = ["reproduce", SMALL, "--data-root", str(syn), "-o", str(tmp_path / "out"), "--no-progress"]
        assert cli_main([*command, "--manifest", str(package_manifest)]) == 0  # done: nothing runs, it reports
        verdict = "only running statistics moved" if change == "statistic" else "a different training"
        printed = capsys.readouterr().out
        assert f"against the shipped weights, {again.weights_diff.summary()}: " in printed and verdict in printed


def test_a_sweep_recorded_by_0_3_without_precision_continues_and_other_changes_are_refused():
    """0.3's ledgers recorded the recipe's options without --precision: the same recipe (its training resumes in
    the precision its own run recorded); any other difference is still another recipe."""
    recipe = recipe_for(load_manifest().get(SHIPPED))
    current = recipe.to_dict()
    words = "--dataset pascal5i --fold 0 --layers 1 1 1 1 --channels 8 16 32 64 --stem-width 8 --reduce-dim 16 "
    words += "--pyramid-bins 8 4 2 --test-size 129 --epochs 30 --batch-size 8 --val-every 0 --backbone-weights none"
    kept = {k: v for k, v in current.items() if k != "run"}
    old = {**kept, "dataset": "pascal5i", "fold": 0, "train_args": words.split()}  # as 0.3 wrote it
    assert _same_recipe(None, recipe) and _same_recipe(current, recipe) and _same_recipe(old, recipe)
    assert _same_recipe({**old, "train_args": [*old["train_args"], "--precision", "fp32"]}, recipe)  # 0.4.dev
    assert not _same_recipe({**old, "fold": 1}, recipe)
    assert not _same_recipe({**old, "train_args": [*old["train_args"], "--precision", "auto"]}, recipe)
    assert not _same_recipe({**old, "train_args": words.replace("--epochs 30", "--epochs 31").split()}, recipe)
    assert not _same_recipe({**old, "train_args": ["--no-such-option"]}, recipe)
    assert not _same_recipe({**current, "run": {**current["run"], "protocol": "pfenet"}}, recipe)


# ------------------------------------------------------------------------------------------ GPU scheduling
@pytest.mark.parametrize(
    ("mask", "gpus", "child"),
    [
        (None, [0, 1], "0,1"),  # no mask: the indices are the physical GPUs
        ("3,5,7", [1, 2], "5,7"),  # SLURM gave this job GPUs 3, 5 and 7: --gpus 1,2 are 5 and 7
        ("GPU-aa11,GPU-bb22", [1], "GPU-bb22"),  # a mask of UUIDs
        ("4", None, ""),  # a CPU step sees no GPU at all
    ],
)
def test_a_child_gets_the_gpus_it_was_given_through_the_parents_mask(tmp_path, monkeypatch, mask, gpus, child):
    from ntre_zoo.pipeline import children as module

    seen = tmp_path / "seen.txt"
    script = f"import os, pathlib; pathlib.Path({str(seen)!r}).write_text(os.environ['CUDA_VISIBLE_DEVICES'])"
    monkeypatch.setattr(module, "_child_command", lambda step: [sys.executable, "-c", script])
    if mask is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", mask)
    assert module.run_subprocess(module.Step("v", "train", ()), gpus) == 0
    assert seen.read_text() == child


def test_gpu_steps_load_episodes_in_worker_processes(small, tmp_path, monkeypatch, capsys):
    syn, manifest = small
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    reproduce([SMALL], syn, tmp_path, manifest=manifest, gpus=[0], dry_run=True)
    train, holds, *evaluations = capsys.readouterr().out.splitlines()
    assert train.split()[2:4] == ["train", "--config"] and "--workers 8" in train
    assert holds.startswith("  # run.json: OMP_NUM_THREADS=1 ntre-zoo train --dataset pascal5i --data-root ")
    assert evaluations and all("--device cuda" in e and "--workers 8" in e for e in evaluations)


def test_gpu_indices_outside_the_parents_mask_are_refused():
    from ntre_zoo.pipeline.children import child_visible_devices

    with pytest.raises(ValueError, match=r"CUDA_VISIBLE_DEVICES='3,5' shows this process 2 device\(s\)"):
        child_visible_devices([2], "3,5")


def test_a_variant_out_of_gpu_memory_says_so_with_the_fix(small, tmp_path, monkeypatch, capsys):
    from ntre_zoo.pipeline import children as module

    def child(text: str, code: int) -> list[str]:
        return [sys.executable, "-c", f"import sys; sys.stderr.write({text!r}); sys.exit({code})"]

    oom = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    monkeypatch.setattr(module, "_child_command", lambda step: child(oom, 1))
    assert module.run_subprocess(module.Step("v", "train", ()), None) == module.EXIT_OUT_OF_MEMORY
    assert oom in capsys.readouterr().err  # the child's own message still reaches the user
    monkeypatch.setattr(module, "_child_command", lambda step: child("ValueError: something else", 1))
    assert module.run_subprocess(module.Step("v", "train", ()), None) == 1

    syn, manifest = small
    results = reproduce([SMALL], syn, tmp_path, manifest=manifest, runner=lambda step, gpus: module.EXIT_OUT_OF_MEMORY)
    assert results[0].state == "failed"
    printed = " ".join(capsys.readouterr().out.split())
    step = json.loads((tmp_path / LEDGER_NAME).read_text())["variants"][SMALL]["steps"]["train"]
    assert step["state"] == "failed" and "out of GPU memory" in step["error"]
    for fix in ("fails the same way", "--gpus-per-run 2", "smaller --batch-size"):
        assert fix in step["error"] and fix in printed


# ------------------------------------------------------------------------------------------ slow: real processes
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ntre_zoo", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


@pytest.mark.slow
def test_a_sweep_killed_by_signal_resumes_and_an_orphaned_training_keeps_the_lock(small, tmp_path):
    """SIGKILL to the sweep's process group (a preemption), then to the sweep alone (its training child lives
    on and holds the lock), with real child processes; the outputs equal an uninterrupted in-process sweep's."""
    syn, manifest = small
    straight = reproduce([SMALL], syn, tmp_path / "straight", manifest=manifest, runner=in_process)
    sweep = _cli("reproduce", SMALL, "--data-root", str(syn), "--manifest", str(manifest), "--no-progress", "-o")
    checkpoint = Path("work") / SMALL / "train" / "checkpoints" / "last.pt"

    def start_and_wait_for_checkpoint(out: Path) -> subprocess.Popen:
        process = subprocess.Popen([*sweep, str(out)], env=_env(), start_new_session=True)
        while not (out / checkpoint).is_file():
            assert process.poll() is None, "the sweep ended before its first checkpoint"
            time.sleep(0.2)
        return process

    process = start_and_wait_for_checkpoint(tmp_path / "preempted")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    subprocess.run([*sweep, str(tmp_path / "preempted")], env=_env(), check=True)
    assert _outputs(tmp_path / "preempted")[0] == straight[0].sha256

    longer = tmp_path / "longer.json"  # 8 epochs: the orphan trains on long after the first checkpoint
    longer.write_text(manifest.read_text().replace("--epochs 2", "--epochs 8"))
    sweep[sweep.index(str(manifest))] = str(longer)
    process = start_and_wait_for_checkpoint(tmp_path / "orphan")
    os.kill(process.pid, signal.SIGKILL)  # the sweep dies; its training child goes on, holding the inherited lock
    process.wait()
    with pytest.raises(RuntimeError, match="still writing into"):
        reproduce([SMALL], syn, tmp_path / "orphan", manifest=longer, runner=in_process)
    os.killpg(process.pid, signal.SIGKILL)  # now the orphan too: the lock goes with it
    time.sleep(1)
    done = subprocess.run([*sweep, str(tmp_path / "orphan")], env=_env(), capture_output=True, text=True, check=True)
    assert "(resuming from its last checkpoint)" in done.stdout and (tmp_path / "orphan" / SMALL).is_dir()


# ------------------------------------------------------------------------------------------ the proof, slow
@pytest.mark.slow
def test_reproduce_regenerates_the_shipped_model(tmp_path):
    """About 20 minutes on one core, through the CLI: what README and docs/reproducing.md claim on any x86-64 CPU
    with AVX2, under the recorded command's pinned kernels: every parameter of the shipped weights bit for bit,
    the running statistics within CROSS_CPU_STATISTICS_ATOL (one oneDNN convolution rounds by CPU model), and the
    manifest's six numbers. The sha256 itself is the shipped one only on a CPU of the shipping kind."""
    syn, out = tmp_path / "synbig", tmp_path / "out"
    subprocess.run(_cli("make-synthetic", "-o", str(syn), "--seed", "0", "--no-progress"), env=_env(), check=True)
    done = subprocess.run(
        _cli("reproduce", SHIPPED, "--data-root", str(syn), "-o", str(out)),
        env=_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    entry = load_manifest().get(SHIPPED)
    diff = compare_weights(out / SHIPPED / "model.safetensors", entry.package_paths()[0])
    assert diff.same_training(), diff.summary()
    if sha256_file(out / SHIPPED / "model.safetensors") != entry.sha256:
        assert "only running statistics moved" in done.stdout, done.stdout
    measured = json.loads((out / SHIPPED / "manifest_entry.json").read_text())["entry"]["metrics"]["measured"]
    for key in ("miou_1shot", "fb_iou_1shot", "precision_1shot", "miou_5shot", "fb_iou_5shot", "precision_5shot"):
        assert measured[key] == entry.metrics["measured"][key], key


def test_a_corrupt_reproduce_ledger_names_the_file(tmp_path):
    from ntre_zoo.pipeline.ledger import Ledger

    ledger = tmp_path / "ledger.json"
    for text in ('{"format": "ntre-zoo-reproduce-ledger", "vari', "[1, 2]", "\udcff"):
        ledger.write_text(text, encoding="utf-8", errors="surrogateescape")
        with pytest.raises(ValueError, match=r"ledger\.json' is not a (readable )?reproduce ledger"):
            Ledger(ledger)
