"""Losses against hand-computed values, the DO bank's FIFO behaviour, and the full loss on a tiny model."""

import math
from types import SimpleNamespace

import pytest
import torch

from ntre_zoo import create_model
from ntre_zoo.training.losses import (
    DOPrototypeBank,
    LossConfig,
    NTRENetLoss,
    bg_mining_loss,
    bin_loss,
    distracting_mask,
    prototype_contrast_loss,
    segmentation_loss,
)

TINY = {
    "layers": (1, 1, 1, 1),
    "channels": (8, 16, 32, 64),
    "stem_width": 8,
    "reduce_dim": 16,
    "pyramid_bins": (8, 4, 2),
}


def test_segmentation_loss_ignores_255_and_resizes():
    # One logit pixel (0, ln 3) upsampled to 2x2; p(class 0) = 1/4, p(class 1) = 3/4.
    logits = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1)
    target = torch.tensor([[[0, 255], [1, 255]]])
    expected = (math.log(4.0) + math.log(4.0 / 3.0)) / 2
    assert segmentation_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_segmentation_loss_all_ignored_is_zero_not_nan():
    logits = torch.zeros(1, 2, 2, 2, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((1, 2, 2), 255))
    assert loss.item() == 0.0
    loss.backward()


def test_bin_loss_is_the_mean_over_bins():
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    a = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1)  # CE = ln 4
    b = torch.zeros(1, 2, 2, 2)  # CE = ln 2
    assert bin_loss([a, b], target).item() == pytest.approx((math.log(4.0) + math.log(2.0)) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="train"):
        bin_loss([], target)


def test_bg_mining_loss_hand_computed():
    # Pixel a: logits (0, 0) -> p0 = p1 = 1/2. Pixel b: (ln 3, 0) -> p0 = 3/4, p1 = 1/4.
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]]).view(1, 2, 1, 2)
    mask = torch.tensor([[[1, 255]]])  # a is target; b is ignored but still counts in the regulariser
    weighted = math.log(2.0) / (1 + 1e-5)
    regulariser = (math.log(2.0) + math.log(4.0)) / 2
    assert bg_mining_loss(logits, mask).item() == pytest.approx(weighted + 0.5 * regulariser, rel=1e-6)
    # An image without target pixels contributes 0 to the weighted term; the batch mean halves the first.
    two = torch.cat([logits, logits])
    masks = torch.tensor([[[1, 255]], [[0, 0]]])
    assert bg_mining_loss(two, masks, alpha=0.0).item() == pytest.approx(weighted / 2, rel=1e-6)


def test_distracting_mask_is_neither_background_nor_target():
    bg = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]).view(1, 2, 2, 2)  # BG at pixels 1 and 3
    labels = torch.tensor([0.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2)
    expected = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 1, 2, 2)
    assert torch.equal(distracting_mask(bg, labels), expected)


def test_prototype_contrast_loss_hand_computed():
    anchors = torch.tensor([[1.0, 0.0]])
    positives = torch.tensor([[2.0, 0.0]])  # cos 1
    negatives = [torch.tensor([[0.0, 3.0], [1.0, 0.0], [-1.0, 0.0]])]  # cos 0, 1, -1
    expected = -math.log(math.e / (1 + math.e + math.exp(-1)) + 1e-8)
    assert prototype_contrast_loss(anchors, positives, negatives).item() == pytest.approx(expected, rel=1e-6)
    # temperature 0.5 doubles every cosine
    expected = -math.log(math.exp(2) / (1 + math.exp(2) + math.exp(-2)) + 1e-8)
    assert prototype_contrast_loss(anchors, positives, negatives, temperature=0.5).item() == pytest.approx(
        expected, rel=1e-6
    )


def test_bank_is_fifo_newest_first_and_bounded():
    bank = DOPrototypeBank(capacity=3)
    row = lambda v: torch.full((1, 2), float(v))  # noqa: E731
    bank.update(torch.cat([row(1), row(2), row(10)]), torch.tensor([0, 0, 1]))
    assert bank.prototypes(0)[:, 0].tolist() == [1.0, 2.0]
    bank.update(torch.cat([row(3), row(4)]), torch.tensor([0, 0]))
    assert bank.prototypes(0)[:, 0].tolist() == [3.0, 4.0, 1.0]  # 2, the oldest, dropped
    assert bank.prototypes(1)[:, 0].tolist() == [10.0]
    assert bank.classes() == [0, 1] and 1 in bank and 2 not in bank
    with pytest.raises(KeyError, match="class 5"):
        bank.prototypes(5)


def test_bank_sample_and_state_dict_round_trip():
    bank = DOPrototypeBank(capacity=10)
    bank.update(torch.arange(16.0).view(8, 2), torch.zeros(8, dtype=torch.long))
    assert bank.sample(0, 20).shape == (8, 2)
    torch.manual_seed(0)
    sampled = bank.sample(0, 3)
    assert sampled.shape == (3, 2) and len({tuple(r) for r in sampled.tolist()}) == 3
    restored = DOPrototypeBank(capacity=10)
    restored.load_state_dict(bank.state_dict())
    assert torch.equal(restored.prototypes(0), bank.prototypes(0))
    with pytest.raises(ValueError, match="bank_size"):
        DOPrototypeBank(capacity=5).load_state_dict(bank.state_dict())


def _fake_output(b=1, k=1):
    """A hand-made train-mode output with C=2 features at 2x2."""
    # Channel 0 at the top row, channel 1 at the bottom row.
    q = torch.stack([torch.tensor([[1.0, 1.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0]])]).expand(b, 2, 2, 2)
    s = torch.stack([torch.tensor([[2.0, 0.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 3.0]])])
    s = s.expand(b, k, 2, 2, 2)
    not_bg = torch.tensor([[[5.0, 5.0], [5.0, 5.0]], [[0.0, 0.0], [0.0, 0.0]]])  # nothing is background
    head = torch.stack(
        [torch.tensor([[0.0, 1.0], [1.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 0.0]])]
    )  # target at (0, 0)
    return SimpleNamespace(
        query_features=q,
        support=SimpleNamespace(features=s),
        bg_logits=not_bg.expand(b, 2, 2, 2),
        support_bg_logits=not_bg.expand(b, k, 2, 2, 2),
        head_logits=head.expand(b, 2, 2, 2),
    )


def test_pcl_term_hand_computed():
    loss = NTRENetLoss(LossConfig(bank_size=10))
    out = _fake_output()
    query_mask = torch.tensor([[[1, 255], [0, 0]]])  # 255 counts as not-target: DO = pixels 1, 2, 3
    support_mask = torch.tensor([[[[1, 0], [0, 0]]]])  # support target at (0, 0)
    value = loss._contrast(out, query_mask, support_mask, torch.tensor([4]), None)
    area = 3 + 5e-4
    query_do = torch.tensor([1.0, 2.0]) / area  # q summed over pixels 1, 2, 3
    support_do = torch.tensor([0.0, 3.0]) / (3 + 5e-4)  # s over its non-target pixels
    anchor = torch.tensor([1.0, 0.0]) / (1 + 5e-4)  # predicted target (0, 0) of q
    positive = torch.tensor([2.0, 0.0]) / (1 + 5e-4)
    bank = loss.bank.prototypes(4)
    assert torch.allclose(bank, torch.stack([query_do, support_do]))
    cos = torch.nn.functional.cosine_similarity
    pos = math.exp(cos(anchor, positive, dim=0).item())
    neg = sum(math.exp(cos(anchor, v, dim=0).item()) for v in (query_do, support_do))
    assert value.item() == pytest.approx(-math.log(pos / neg + 1e-8), rel=1e-5)


def test_pcl_k_shot_uses_every_shot():
    loss = NTRENetLoss(LossConfig(bank_size=10))
    out = _fake_output(b=2, k=3)
    query_mask = torch.zeros(2, 2, 2, dtype=torch.long)
    support_masks = torch.zeros(2, 3, 2, 2, dtype=torch.long)
    loss._contrast(out, query_mask, support_masks, torch.tensor([0, 1]), None)
    # per class: 1 query DO + 3 support DOs
    assert loss.bank.prototypes(0).shape == (4, 2) and loss.bank.prototypes(1).shape == (4, 2)


@pytest.mark.parametrize("shot", [1, 2])
def test_full_loss_on_tiny_model(shot):
    torch.manual_seed(0)
    model = create_model("resnet50", shot=shot, **TINY).train()
    b = 2
    query = torch.randn(b, 3, 64, 64)
    support = torch.randn(b, shot, 3, 64, 64)
    support_masks = torch.randint(0, 2, (b, shot, 64, 64))
    query_mask = torch.randint(0, 2, (b, 64, 64))
    query_mask[:, :4] = 255
    criterion = NTRENetLoss()
    out = model(query, support, support_masks)
    result = criterion(out, query_mask, support_masks, torch.tensor([0, 3]))
    t = result.terms
    expected = t["main"] + 0.4 * t["final_bins"] + 0.6 * t["initial_bins"] + t["bg"] + 0.01 * t["pcl"]
    assert result.total.item() == pytest.approx(expected.item(), rel=1e-5)
    result.total.backward()
    assert model.down_support[0].weight.grad is not None and model.bg_prototype.grad is not None
    assert criterion.bank.prototypes(0).shape == (1 + shot, 16)
    with pytest.raises(ValueError, match="train"):
        criterion(model.eval()(query, support, support_masks), query_mask, support_masks, torch.tensor([0, 3]))
