"""Two-process DDP on CPU (gloo): identical weights and DO banks afterwards, sharded validation exact, the same
training as one process with the whole batch, a non-finite loss stopping every rank, and rank 0 indexing first."""

import json
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import TINY
from torch.utils.data import Dataset

from ntre_zoo import create_model
from ntre_zoo.evaluation import evaluate
from ntre_zoo.training import TrainConfig, Trainer
from ntre_zoo.training.validation import make_evaluate_fn

WORLD = 2


class Episodes(Dataset):
    """Random episodes following the data contract; ``split='val'`` adds the evaluation fields."""

    def __init__(self, n, split="train", size=64, classes=(1, 2, 3)):
        self.n, self.episodes, self.split, self.size, self.classes, self.seed = n, n, split, size, classes, 321

    def __len__(self):
        return self.episodes

    def class_name(self, class_id):
        return str(class_id)

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i + 1000 * self.seed)
        m = torch.zeros(self.size, self.size, dtype=torch.long)
        m[8:40, 8 + i % 8 : 40] = 1
        sm = torch.zeros(1, self.size, self.size, dtype=torch.long)
        sm[:, 16:48, 16:48] = 1
        c = i % len(self.classes)
        item = {
            "query_image": torch.randn(3, self.size, self.size, generator=g) + 2 * m,
            "query_mask": m,
            "support_images": torch.randn(1, 3, self.size, self.size, generator=g) + 2 * sm[:, None],
            "support_masks": sm,
            "class_id": torch.tensor(self.classes[c]),
            "class_index": torch.tensor(c),
        }
        if self.split == "val":
            item["query_label"] = m[:50, :60]
        return item


def _record_losses(trainer):
    """Keep every step's total loss of this rank (a list filled as the trainer runs)."""
    losses, forward = [], trainer.criterion.forward

    def recording(*args, **kwargs):
        output = forward(*args, **kwargs)
        losses.append(float(output.total))
        return output

    trainer.criterion.forward = recording
    return losses


def _worker(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(rank)  # different initial weights on purpose: DDP starts every rank from rank 0's
        model = create_model("resnet50", **TINY)
        config = TrainConfig(epochs=2, batch_size=4, val_every=1, val_episodes=6, progress=False)
        trainer = Trainer(
            model,
            Episodes(8),
            config,
            output_dir=out_dir,
            evaluate_fn=make_evaluate_fn(Episodes(6, "val"), config),
            device="cpu",  # gloo on the CPU, also on a machine with one GPU (rank 1 would pick cuda:1)
        )
        losses = _record_losses(trainer)
        result = trainer.fit()
        torch.save(
            {
                "model": result.model.state_dict(),
                "bank": trainer.criterion.bank.state_dict(),
                "step": result.step,
                "losses": losses,
            },
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_process_gloo_ranks_end_identical(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    assert states[0]["step"] == states[1]["step"] == 4  # 8 episodes / 2 ranks / 2 per rank = 2 steps x 2 epochs
    for key, value in states[0]["model"].items():
        assert torch.equal(value, states[1]["model"][key]), key
    banks = [s["bank"]["entries"] for s in states]
    assert banks[0].keys() == banks[1].keys()
    for c in banks[0]:
        assert torch.equal(banks[0][c], banks[1][c])
    # every step adds query + support DO prototypes of the 4 episodes of both ranks
    assert sum(t.shape[0] for t in banks[0].values()) == 4 * 4 * 2
    # the validation sharded over the ranks equals one process evaluating every episode
    model = create_model("resnet50", **TINY)
    model.load_state_dict(states[0]["model"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers: other thread counts may round differently and flip an argmax
    try:
        single = evaluate(model, Episodes(6, "val"), episodes=6, seed=321, progress=False)
    finally:
        torch.set_num_threads(threads)
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["val_miou"] == pytest.approx(single.miou, abs=1e-12)
    assert record["val_fb_iou"] == pytest.approx(single.fb_iou, abs=1e-12)
    assert record["val_episodes"] == 6
    # the epoch's training loss is the mean over both ranks' steps, not rank 0's alone
    epoch_two = [loss for state in states for loss in state["losses"][2:]]
    assert record["train_total"] == pytest.approx(sum(epoch_two) / len(epoch_two), rel=1e-6)
    assert record["train_total"] != pytest.approx(sum(states[0]["losses"][2:]) / 2, rel=1e-6)
    assert {p.name for p in tmp_path.iterdir()} >= {"best", "last", "checkpoints"}
    rngs = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["rng"]
    assert len(rngs) == WORLD and not torch.equal(rngs[0]["torch"], rngs[1]["torch"])


# ------------------------------------------------------------------------------------------ any process count
NO_DROPOUT = {**TINY, "reduce_dropout": 0.0, "classifier_dropout": 0.0}  # dropout draws differ per rank


def _train_three_steps(out_dir, name, rank=0):
    torch.manual_seed(0)
    model = create_model("resnet50", **NO_DROPOUT)
    config = TrainConfig(epochs=1, batch_size=4, val_every=0, progress=False)
    result = Trainer(model, Episodes(12), config, device="cpu").fit()
    if rank == 0:
        torch.save(result.model.state_dict(), f"{out_dir}/{name}.pt")


def _bn_worker(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        _train_three_steps(out_dir, "two", rank)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_train_as_one_process_with_the_whole_batch(tmp_path):
    """The backbone's train-mode BN statistics are the whole batch's over both ranks (2 episodes each), so the
    weights and the running statistics after 3 steps equal one process's with 4 episodes per step."""
    mp.spawn(_bn_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    _train_three_steps(tmp_path, "one")
    one, two = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("one", "two"))
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert not torch.equal(one["backbone.layer1.0.bn1.running_mean"], torch.zeros(16))  # statistics did move


# ------------------------------------------------------------------------------------------ failures
def _nan_worker(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=20)
    )
    try:
        torch.manual_seed(0)
        config = TrainConfig(epochs=1, batch_size=4, val_every=0, progress=False)
        trainer = Trainer(create_model("resnet50", **TINY), Episodes(12), config, device="cpu")
        forward = trainer.criterion.forward

        def poisoned(*args, **kwargs):  # rank 1's loss turns NaN at the second step
            output = forward(*args, **kwargs)
            if rank == 1 and trainer.step == 2:
                output.total = output.total * float("nan")
            return output

        trainer.criterion.forward = poisoned
        try:
            trainer.fit()
            outcome = f"finished at step {trainer.step}"
        except RuntimeError as error:
            outcome = f"step {trainer.step}: {error}"
        with open(f"{out_dir}/rank{rank}.txt", "w") as handle:
            handle.write(outcome)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_a_non_finite_loss_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    mp.spawn(_nan_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        outcome = (tmp_path / f"rank{rank}.txt").read_text()
        assert outcome.startswith("step 2: The training loss is not finite") and "nan on rank 1" in outcome, outcome


def _first_worker(rank, init_file, out_dir):
    from ntre_zoo.training.distributed import DistributedContext, main_process_first

    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=1)
    )
    try:
        with main_process_first(DistributedContext(rank, WORLD, rank)):
            started = time.time()
            if rank == 0:
                time.sleep(2.5)  # indexing longer than the default group's timeout
        with open(f"{out_dir}/rank{rank}.txt", "w") as handle:
            handle.write(f"{started} {time.time()}")
        dist.barrier()  # the default group still works afterwards
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_rank_zero_indexes_first_for_longer_than_the_process_group_timeout(tmp_path):
    mp.spawn(_first_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    zero, one = ([float(t) for t in (tmp_path / f"rank{r}.txt").read_text().split()] for r in range(WORLD))
    assert one[0] >= zero[1] - 0.5  # rank 1 started its block once rank 0 had finished its own
