"""Two-process DDP on CPU (gloo): identical weights and DO banks afterwards, sharded validation exact."""

import json

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
        result = trainer.fit()
        torch.save(
            {"model": result.model.state_dict(), "bank": trainer.criterion.bank.state_dict(), "step": result.step},
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
    assert {p.name for p in tmp_path.iterdir()} >= {"best", "last", "checkpoints"}
    rngs = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["rng"]
    assert len(rngs) == WORLD and not torch.equal(rngs[0]["torch"], rngs[1]["torch"])
