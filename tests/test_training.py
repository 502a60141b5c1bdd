"""Trainer: optimizer groups, schedule, sampler, learning, bit-exact resume, atomic checkpoints, export, and
from_pretrained on a run's output directory pointing at best/ and last/."""

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY
from torch.utils.data import Dataset

import ntre_zoo
from ntre_zoo import create_model
from ntre_zoo.pipeline.fine_tune import fine_tune
from ntre_zoo.training import (
    EpisodeBatchSampler,
    TrainConfig,
    Trainer,
    atomic_save,
    load_checkpoint,
    parameter_groups,
    poly_lr,
)
from ntre_zoo.training.distributed import collate_episodes
from ntre_zoo.training.losses import LossConfig
from ntre_zoo.training.optim import PARAMETER_GROUPS
from ntre_zoo.zoo.saving import save_pretrained


@pytest.fixture(autouse=True)
def _cpu_only(monkeypatch):
    """These tests compare CPU runs bit for bit: keep the trainer off any CUDA device the machine has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


class RandomEpisodes(Dataset):
    """Episodes of random tensors following the data contract; a square target makes them learnable.

    Supports are drawn with the global torch RNG (as a dataset with random augmentation would), so the
    trainer's per-episode seeding is exercised.
    """

    def __init__(self, n=8, shot=1, size=64, classes=3):
        self.n, self.shot, self.size, self.classes = n, shot, size, classes

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        m = torch.zeros(self.size, self.size, dtype=torch.long)
        m[8:40, 8:40] = 1
        m[:, -4:] = 255
        offset = int(torch.randint(0, 16, ()))  # global RNG: seeded per episode by the trainer
        sm = torch.zeros(self.shot, self.size, self.size, dtype=torch.long)
        sm[:, offset : offset + 32, 16:48] = 1
        return {
            "query_image": torch.randn(3, self.size, self.size, generator=g) + 2 * (m == 1),
            "query_mask": m,
            "support_images": torch.randn(self.shot, 3, self.size, self.size, generator=g) + 2 * sm[:, None],
            "support_masks": sm,
            "class_id": torch.tensor(i % self.classes + 1),
            "class_index": torch.tensor(i % self.classes),
        }


def tiny(seed=0, shot=1):
    torch.manual_seed(seed)
    return create_model("resnet50", shot=shot, **TINY)


def quiet(**kw):
    return TrainConfig(**{"progress": False, "batch_size": 2, "epochs": 2, **kw})


def test_parameter_groups_follow_the_reference_order_and_cover_the_head():
    model = tiny()
    groups = parameter_groups(model)
    assert [g["name"] for g in groups] == [name for name, _ in PARAMETER_GROUPS]
    assert len(groups) == 17
    grouped = [id(p) for g in groups for p in g["params"]]
    head = [id(p) for p in model.head_parameters()]
    assert sorted(grouped) == sorted(head) and len(set(grouped)) == len(grouped)
    names = {id(p): n for n, p in model.named_parameters()}
    assert next(names[id(p)] for p in groups[11]["params"]) == "bins.1.inter_scale_merge.0.weight"
    assert [names[id(p)] for p in groups[16]["params"]] == [
        "classifier.0.weight",
        "classifier.3.weight",
        "classifier.3.bias",
    ]


def test_poly_schedule_and_presets():
    cfg = TrainConfig.from_preset("reference")
    assert (cfg.base_lr, cfg.batch_size, cfg.epochs) == (0.0025, 4, 150)
    assert poly_lr(cfg, 1, 100) == pytest.approx(0.025 * (1 - 0.01) ** 0.9)
    assert poly_lr(cfg, 100, 100) == 0.0
    paper = TrainConfig.from_preset("paper")
    assert (paper.base_lr * paper.lr_multiplier, paper.batch_size, paper.epochs) == (pytest.approx(0.03), 32, 200)
    assert TrainConfig.from_preset("paper", benchmark="coco20i").epochs == 50
    assert TrainConfig.from_preset("paper", epochs=3).epochs == 3
    assert TrainConfig(epochs=50).validation_interval() == 1 and TrainConfig(epochs=150).validation_interval() == 2
    with pytest.raises(ValueError, match="Unknown training preset 'papr'"):
        TrainConfig.from_preset("papr")
    with pytest.raises(ValueError, match="backbone_bn"):
        TrainConfig(backbone_bn="frozen")
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_sampler_is_reproducible_sharded_and_resumable():
    a = EpisodeBatchSampler(11, 2, seed=5, rank=0, world_size=2)
    b = EpisodeBatchSampler(11, 2, seed=5, rank=1, world_size=2)
    assert len(a) == len(b) == 2  # 11 // 2 = 5 per rank, 2 full batches
    a.set_epoch(3)
    b.set_epoch(3)
    first, second = list(a), list(b)
    flat = [k for batch in first + second for k in batch]
    assert len({i for i, _, _ in flat}) == 8  # disjoint items
    assert {e for _, _, e in flat} == {3}  # the epoch travels with each key, to workers that live across epochs
    assert first == list(a)  # same epoch, same batches
    a.set_epoch(4)
    assert list(a) != first
    a.set_epoch(3, start_batch=1)
    assert list(a) == first[1:]
    other_seed = EpisodeBatchSampler(11, 2, seed=6, rank=0, world_size=2)
    other_seed.set_epoch(3)
    assert list(other_seed) != first  # compared at the same epoch: the seed alone changes the plan
    same_seed = EpisodeBatchSampler(11, 2, seed=5, rank=0, world_size=2)
    same_seed.set_epoch(3)
    assert list(same_seed) == first
    with pytest.raises(ValueError, match="fewer than one batch"):
        EpisodeBatchSampler(3, 2, seed=0, world_size=2)


def test_a_few_steps_lower_the_loss_on_a_fixed_batch():
    model = tiny()
    data = RandomEpisodes(n=4)
    batch = collate_episodes([data[i] for i in range(4)])
    trainer = Trainer(model, data, quiet(epochs=1000, batch_size=4, base_lr=0.01))
    torch.manual_seed(0)
    trainer.network.train()
    losses = [trainer.train_step(batch)["total"] for _ in range(12)]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05, losses


def _states_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_is_bit_exact(tmp_path):
    # 8 episodes, batch 2: 4 steps per epoch, 8 in all. Interrupt at step 3 (mid-epoch) and step 6.
    data = RandomEpisodes(n=8)
    straight = Trainer(tiny(), data, quiet(), output_dir=tmp_path / "a").fit()
    assert straight.step == 8 and straight.epoch == 2

    out = tmp_path / "b"
    part = Trainer(tiny(), data, quiet(max_steps=3), output_dir=out).fit()
    assert part.step == 3 and part.epoch == 0
    Trainer(tiny(seed=1), data, quiet(max_steps=6), output_dir=out).fit(resume=True)
    resumed = Trainer(tiny(seed=2), data, quiet(), output_dir=out).fit(resume=True)
    assert resumed.step == 8 and resumed.epoch == 2
    _states_equal(straight.model.state_dict(), resumed.model.state_dict())
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    b = load_checkpoint(out / "checkpoints" / "last.pt")
    for c in a["bank"]["entries"]:
        assert torch.equal(a["bank"]["entries"][c], b["bank"]["entries"][c])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=False):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert next(r["train_total"] for r in json.loads(a["history"])) == pytest.approx(
        next(r["train_total"] for r in json.loads(b["history"]))
    )


def test_a_cpu_run_resumes_where_fp16_loss_scaling_is_on(tmp_path):
    """A CPU run saves an empty GradScaler state; resumed on CUDA (fp16: the scaler is on) it must go on, as
    --device may change on resume. An enabled CPU scaler stands in for CUDA's here."""
    data = RandomEpisodes(n=4)
    Trainer(tiny(), data, quiet(max_steps=1), output_dir=tmp_path).fit()
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["scaler"] == {}
    resumed = Trainer(tiny(), data, quiet(), output_dir=tmp_path)
    resumed.scaler = torch.amp.GradScaler("cpu", enabled=True)
    assert resumed.fit(resume=True).step == 4
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["scaler"]["scale"] > 0


def test_training_precision_is_bf16_where_native_and_fp32_before_ampere(monkeypatch):
    from ntre_zoo.inference import precision as module

    assert TrainConfig().precision == "auto" and TrainConfig().precision_on("cpu") == "fp32"
    assert TrainConfig(precision="bf16").precision_on("cpu") == "fp32"  # the CPU trains in fp32, bit-exact
    monkeypatch.setattr(module, "native_bf16", lambda device: True)  # compute capability 8.0+
    assert TrainConfig().precision_on("cuda:0") == "bf16"
    assert TrainConfig(precision="fp32").precision_on("cuda:0") == "fp32"
    assert TrainConfig(precision="fp16").precision_on("cuda:0") == "fp16"
    monkeypatch.setattr(module, "native_bf16", lambda device: False)  # Volta, Turing: fp32 as the reference
    assert TrainConfig().precision_on("cuda:0") == "fp32"
    assert TrainConfig(precision="bf16").precision_on("cuda:0") == "bf16"  # asked for: emulated, but asked
    with pytest.raises(ValueError, match="precision must be one of 'fp32', 'bf16', 'fp16', 'auto', got 'float16'"):
        TrainConfig(precision="float16")


def test_amp_and_amp_dtype_still_work_for_one_release_and_warn():
    def deprecated(old, new):
        return pytest.warns(DeprecationWarning, match=f"^{old} is deprecated and goes in the next release: use {new}$")

    with deprecated(r"TrainConfig\(amp=False\)", "precision='fp32'"):
        assert TrainConfig(amp=False).precision == "fp32"
    with deprecated(r"TrainConfig\(amp_dtype='float16'\)", "precision='fp16'"):
        assert TrainConfig(amp_dtype="float16").precision == "fp16"
    with deprecated(r"TrainConfig\(amp=True, amp_dtype='bfloat16'\)", "precision='bf16'"):
        assert TrainConfig(amp=True, amp_dtype="bfloat16", precision="bf16").precision == "bf16"  # agreeing
    with deprecated(r"TrainConfig.from_preset\(amp_dtype='auto'\)", "precision='auto'"):
        assert TrainConfig.from_preset("paper", amp_dtype="auto") == TrainConfig.from_preset("paper")
    with deprecated(r"TrainConfig.replace\(amp=False\)", "precision='fp32'"):
        assert TrainConfig(precision="bf16").replace(amp=False).precision == "fp32"
    config = TrainConfig(precision="fp16")
    with deprecated("TrainConfig.amp", "TrainConfig.precision"):
        assert config.amp is True
    with deprecated("TrainConfig.amp_dtype", "TrainConfig.precision"):
        assert config.amp_dtype == "float16"
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="disagree; pass only precision="):
        TrainConfig(amp_dtype="float16", precision="bf16")
    with pytest.raises(ValueError, match="amp_dtype must be one of 'auto', 'bfloat16', 'float16', got 'fp16'"):
        TrainConfig(amp_dtype="fp16")
    assert "amp" not in config.to_dict() and "amp_dtype" not in config.to_dict()


def test_a_record_of_0_3_reads_as_the_precision_it_trained_with(recwarn):
    """train_config.json and checkpoints of 0.3 hold amp/amp_dtype (default float16); they load, quietly."""
    record = {k: v for k, v in TrainConfig().to_dict().items() if k != "precision"}
    cases = ((True, "float16", "fp16"), (True, "bfloat16", "bf16"), (False, "float16", "fp32"))
    for amp, amp_dtype, precision in cases:
        assert TrainConfig.from_dict({**record, "amp": amp, "amp_dtype": amp_dtype}).precision == precision
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def test_the_run_records_the_precision_it_trained_in(tmp_path):
    trainer = Trainer(tiny(), RandomEpisodes(n=4), quiet(epochs=1), output_dir=tmp_path)
    assert not trainer.scaler.is_enabled()
    trainer.fit()
    assert json.loads((tmp_path / "train_config.json").read_text())["precision"] == "fp32"
    card = json.loads((tmp_path / "last" / "config.json").read_text())["metadata"]
    assert card["training"]["precision"] == "fp32"


def test_resume_refuses_a_different_trajectory(tmp_path):
    data = RandomEpisodes(n=4)
    Trainer(tiny(), data, quiet(max_steps=1), output_dir=tmp_path).fit()
    with pytest.raises(ValueError, match="base_lr"):
        Trainer(tiny(), data, quiet(base_lr=0.1), output_dir=tmp_path).fit(resume=True)
    with pytest.raises(FileNotFoundError, match="--resume"):
        Trainer(tiny(), data, quiet(), output_dir=tmp_path / "nothing").fit(resume=True)


def test_killed_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"step": 1, "w": torch.ones(3)}, path)
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    state = torch.load(path, weights_only=True)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_outputs_export_validation_and_fine_tune(tmp_path):
    data = RandomEpisodes(n=4)
    scores = iter([0.2, 0.5, 0.4])
    calls = []

    def evaluate_fn(model):
        calls.append(model.training)
        return {"miou": next(scores), "fb_iou": 0.6}

    out = tmp_path / "run"
    result = Trainer(
        tiny(),
        data,
        quiet(epochs=3, val_every=1),
        output_dir=out,
        evaluate_fn=evaluate_fn,
        metadata={"dataset": "synthetic"},
    ).fit()
    assert calls == [False, False, False] and result.best_metric == 0.5
    assert {p.name for p in out.iterdir()} >= {"train_config.json", "metrics.jsonl", "checkpoints", "best", "last"}
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    best_state = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best_state["epoch"] == 2 and best_state["best_metric"] == 0.5
    last = ntre_zoo.from_pretrained(out / "last")
    _states_equal(last.state_dict(), result.model.state_dict())
    card = json.loads((out / "best" / "config.json").read_text())["metadata"]
    assert card["metrics"]["miou"] == 0.5 and card["metrics"]["seed"] == 321 and card["dataset"] == "synthetic"
    # fine-tune from the exported directory, as from any from_pretrained name
    tuned = fine_tune(out / "best", data, epochs=1, batch_size=2, progress=False, base_lr=1e-3)
    assert tuned.step == 2


def test_k_shot_training_and_eval_mode_backbone_bn(tmp_path):
    model = tiny(shot=2)
    before = model.backbone.bn1.running_mean.clone()
    Trainer(model, RandomEpisodes(n=4, shot=2), quiet(epochs=1, backbone_bn="eval")).fit()
    assert torch.equal(model.backbone.bn1.running_mean, before)
    model = tiny(shot=2)
    Trainer(model, RandomEpisodes(n=4, shot=2), quiet(epochs=1)).fit()
    assert not torch.equal(model.backbone.bn1.running_mean, before)  # the reference: BN statistics drift


@pytest.mark.filterwarnings("ignore:.*never form an episode")
def test_cli_train_resume_and_fine_tune(tmp_path, capsys):
    from ntre_zoo.cli import main

    assert main(["make-synthetic", "-o", str(tmp_path / "syn"), "--train", "24", "--val", "12", "--no-progress"]) == 0
    root = str(tmp_path / "syn" / "VOCdevkit" / "VOC2012")
    model = [
        "--layers",
        "1",
        "1",
        "1",
        "1",
        "--channels",
        "8",
        "16",
        "32",
        "64",
        "--stem-width",
        "8",
        "--reduce-dim",
        "16",
        "--pyramid-bins",
        "8",
        "4",
        "2",
        "--test-size",
        "65",
        "--backbone-weights",
        "none",
    ]
    common = ["--dataset", "pascal5i", "--data-root", root, "--epochs", "2", "--batch-size", "4", "--no-progress"]
    straight, part = tmp_path / "straight", tmp_path / "part"
    assert main(["train", *common, *model, "-o", str(straight), "--val-every", "0"]) == 0
    assert main(["train", *common, *model, "-o", str(part), "--val-every", "0", "--max-steps", "3"]) == 0
    assert main(["train", "--resume", str(part), "--no-progress"]) == 0
    a, b = ntre_zoo.from_pretrained(straight / "last"), ntre_zoo.from_pretrained(part / "last")
    _states_equal(a.state_dict(), b.state_dict())
    card = json.loads((part / "last" / "config.json").read_text())["metadata"]
    assert card["dataset"] == "synthetic" and card["train_classes"] == list(range(6, 21))
    assert card["test_classes"] == [1, 2, 3, 4, 5]  # the fold's, although this run never validated
    assert card["training"]["environment"]["torch"] == torch.__version__  # where the weights came from
    # fine-tune from the exported weights, with validation and a loss ablation
    tuned = tmp_path / "tuned"
    assert (
        main(
            [
                "train",
                *common,
                "--init",
                str(straight / "last"),
                "-o",
                str(tuned),
                "--epochs",
                "1",
                "--val-episodes",
                "4",
                "--loss",
                "pcl_weight=0",
                "--base-lr",
                "0.001",
            ]
        )
        == 0
    )
    assert "best miou" in capsys.readouterr().out
    assert json.loads((tuned / "train_config.json").read_text())["train"]["loss"]["pcl_weight"] == 0
    assert ntre_zoo.from_pretrained(tuned / "best").config.reduce_dim == 16
    assert main(["train", "--dataset", "pascal5i", "--no-progress"]) == 1
    assert "--output" in capsys.readouterr().err


def test_tensorboard_scalars_when_available(tmp_path, monkeypatch):
    from ntre_zoo.training import trainer as trainer_module

    scalars = []

    class Writer:
        def add_scalar(self, tag, value, step):
            scalars.append((tag, step))

        def close(self):
            scalars.append(("closed", None))

    monkeypatch.setattr(trainer_module, "tensorboard_writer", lambda log_dir: Writer())
    Trainer(tiny(), RandomEpisodes(n=4), quiet(epochs=1, log_every=1), output_dir=tmp_path).fit()
    tags = {tag for tag, _ in scalars}
    assert {"train/total", "train/pcl", "train/lr", "epoch/train_total"} <= tags and scalars[-1][0] == "closed"


@pytest.mark.filterwarnings("ignore:.*never form an episode")
def test_cli_push_to_hub_sends_the_measured_metrics(tmp_path, monkeypatch):
    import ntre_zoo.zoo.hub_access
    import ntre_zoo.zoo.publish
    from ntre_zoo.cli import main

    pushed = {}
    monkeypatch.setattr(
        ntre_zoo.zoo.publish, "push_to_hub", lambda model, repo, metadata: pushed.update(repo=repo, meta=metadata)
    )
    monkeypatch.setattr(ntre_zoo.zoo.hub_access, "check_hub_reachable", lambda *a, **k: "")  # checked before training
    monkeypatch.setattr(ntre_zoo.zoo.hub_access, "check_write_access", lambda *a, **k: "me")
    main(["make-synthetic", "-o", str(tmp_path / "syn"), "--train", "24", "--val", "12", "--no-progress"])
    args = [
        "train",
        "--dataset",
        "pascal5i",
        "--data-root",
        str(tmp_path / "syn" / "VOCdevkit" / "VOC2012"),
        "--layers",
        "1",
        "1",
        "1",
        "1",
        "--channels",
        "8",
        "16",
        "32",
        "64",
        "--stem-width",
        "8",
        "--reduce-dim",
        "16",
        "--pyramid-bins",
        "8",
        "4",
        "2",
        "--test-size",
        "65",
        "--backbone-weights",
        "none",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--val-episodes",
        "4",
        "--no-progress",
        "-o",
        str(tmp_path / "run"),
        "--push-to-hub",
        "me/tiny",
    ]
    assert main(args) == 0
    metrics = pushed["meta"]["metrics"]
    assert pushed["repo"] == "me/tiny" and pushed["meta"]["dataset"] == "synthetic"
    assert {"miou", "fb_iou", "episodes", "seed", "command"} <= set(metrics) and metrics["episodes"] == 4
    assert metrics["command"].startswith("ntre-zoo train --dataset pascal5i --data-root ")
    assert "--layers 1 1 1 1" in metrics["command"] and "--push-to-hub" not in metrics["command"]


@pytest.mark.parametrize(
    "switches, absent",
    [
        (
            {"bg_eliminating": False, "do_eliminating": False},
            ("bg_prototype", "bg_mining.", ".bg_eliminating.", ".do_eliminating."),
        ),
        ({"do_eliminating": False}, (".do_eliminating.",)),
        ({"bg_eliminating": False}, (".bg_eliminating.",)),
    ],
)
def test_ablation_switches_remove_their_modules_and_still_train(switches, absent):
    """The paper's Table 3 variants: baseline, +BGEM, and DOEM without BGEM."""
    model = create_model("resnet50", **TINY, **switches)
    names = [n for n, _ in model.named_parameters()]
    assert not [n for n in names if any(a in n or n == a for a in absent)]
    assert len(names) < len(list(tiny().named_parameters()))
    data = RandomEpisodes(n=4)
    batch = collate_episodes([data[i] for i in range(4)])
    pcl = 0.01 if model.config.bg_mining else 0.0
    trainer = Trainer(model, data, quiet(epochs=1000, batch_size=4, base_lr=0.01, loss=LossConfig(pcl_weight=pcl)))
    trainer.network.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    losses = [trainer.train_step(batch)["total"] for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    moved = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert "classifier.3.weight" in moved and "down_query.0.weight" in moved  # it did train
    model.eval()
    with torch.no_grad():
        out = model(batch["query_image"], batch["support_images"], batch["support_masks"])
    assert (out.bg_logits is None) == (not model.config.bg_mining)
    assert (out.do_masks == []) == (not model.config.do_eliminating)


def test_pcl_without_bg_mining_is_refused():
    model = create_model("resnet50", **TINY, bg_eliminating=False, do_eliminating=False)
    data = RandomEpisodes(n=2)
    trainer = Trainer(model, data, quiet(batch_size=2))
    trainer.network.train()
    with pytest.raises(ValueError, match="pcl_weight=0"):
        trainer.train_step(collate_episodes([data[0], data[1]]))


def test_training_goes_on_after_validation_and_resumes_exactly(tmp_path):
    """Validation between epochs (the fast evaluation path, channels_last and inference mode) leaves the
    parameters usable by autograd and in their own layout, so resuming across it is still bit-exact."""
    from ntre_zoo.cli import main

    assert main(["make-synthetic", "-o", str(tmp_path / "syn"), "--train", "16", "--val", "10", "--no-progress"]) == 0
    root = str(tmp_path / "syn" / "VOCdevkit" / "VOC2012")
    args = [
        "--dataset",
        "pascal5i",
        "--data-root",
        root,
        "--layers",
        "1",
        "1",
        "1",
        "1",
        "--channels",
        "8",
        "16",
        "32",
        "64",
        "--stem-width",
        "8",
        "--reduce-dim",
        "16",
        "--pyramid-bins",
        "8",
        "4",
        "2",
        "--test-size",
        "65",
        "--backbone-weights",
        "none",
        "--epochs",
        "3",
        "--batch-size",
        "4",
        "--no-progress",
    ]
    no_val = [*args, "--val-every", "0"]
    args = [*args, "--val-every", "1", "--val-episodes", "4"]
    assert main(["train", *args, "-o", str(tmp_path / "straight")]) == 0
    assert main(["train", *args, "-o", str(tmp_path / "part"), "--max-steps", "5"]) == 0
    assert main(["train", "--resume", str(tmp_path / "part"), "--no-progress"]) == 0
    a = ntre_zoo.from_pretrained(tmp_path / "straight" / "last")
    b = ntre_zoo.from_pretrained(tmp_path / "part" / "last")
    _states_equal(a.state_dict(), b.state_dict())
    records = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert sum("val_miou" in r for r in records) == 3
    # validating changes nothing in training: the same run without validation ends with the same weights
    assert main(["train", *no_val, "-o", str(tmp_path / "no_val")]) == 0
    _states_equal(a.state_dict(), ntre_zoo.from_pretrained(tmp_path / "no_val" / "last").state_dict())


def test_a_training_step_waits_for_the_device_once(monkeypatch):
    """Host reads of device values stall a CUDA step; the logged terms stay on the device (gathered every
    log_every steps), so only the collective finite-loss check reads one (PCL's bank keys add two more)."""
    reads = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    data = RandomEpisodes(n=4)
    batch = collate_episodes([data[i] for i in range(4)])
    trainer = Trainer(tiny(), data, quiet(batch_size=4, loss=LossConfig(pcl_weight=0)))
    trainer.network.train()
    trainer.train_step(batch)
    reads.clear()
    terms = trainer.train_step(batch)
    assert reads == ["tolist"]
    assert all(isinstance(v, torch.Tensor) for v in terms.values())


def test_a_training_output_directory_points_at_best_and_last(tiny_model, tmp_path):
    for sub in ("best", "last"):
        save_pretrained(tiny_model, tmp_path / "runs" / "x" / sub)
    with pytest.raises(FileNotFoundError, match=r"training run's output directory.*x/best.*x/last"):
        ntre_zoo.from_pretrained(str(tmp_path / "runs" / "x"))
