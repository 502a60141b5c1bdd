"""Losses against hand-computed values, the DO bank's FIFO behaviour, and the full loss on a tiny model."""

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY

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


# ------------------------------------------------------------------------------ the full loss, by hand
# A hand-made train-mode output of one 2-shot episode (B=1, K=2), C=2 features at 2x2, whose every term is
# worked out below with pencil and paper (p = softmax of the logits; "logits (a, b)" is the same at every pixel).
LN2, LN3, LN4, LN43 = math.log(2.0), math.log(3.0), math.log(4.0), math.log(4.0 / 3.0)
QUERY_MASK = torch.tensor([[[1, 255], [0, 0]]])  # target (0, 0); (0, 1) ignored
SUPPORT_MASKS = torch.tensor([[[[1, 0], [0, 0]], [[0, 0], [1, 1]]]])  # shot 0: (0, 0); shot 1: the bottom row
EPS = 5e-4  # weighted_gap's, added to the mask area


def approx(value: float):
    """Float32 arithmetic against float64 pencil and paper."""
    return pytest.approx(value, rel=1e-5, abs=1e-6)


def _constant(first: float, second: float, size=(2, 2)) -> torch.Tensor:
    return torch.tensor([first, second]).view(1, 2, 1, 1).expand(1, 2, *size).clone()


def _features(channel0, channel1) -> torch.Tensor:
    return torch.tensor([channel0, channel1], dtype=torch.float32)


QUERY = _features([[1, 1], [0, 0]], [[0, 0], [1, 1]])  # channel 0 on the top row, channel 1 on the bottom one
SHOT0 = _features([[2, 0], [0, 0]], [[0, 0], [0, 3]])
SHOT1 = _features([[0, 0], [4, 0]], [[0, 0], [0, 4]])


def _hand_made_output(shots=(SHOT0, SHOT1)):
    return SimpleNamespace(
        logits=_constant(0.0, LN3),  # p1 = 3/4 everywhere
        head_logits=_features([[0, 1], [1, 1]], [[1, 0], [0, 0]])[None],  # predicted target: (0, 0)
        bin_logits=[torch.zeros(1, 2, 2, 2), _constant(0.0, LN3, (1, 1))],  # ln 2 everywhere; the main map
        initial_logits=[_constant(LN3, 0.0)],  # p0 = 3/4
        bg_logits=_constant(LN3, 0.0),  # p0 = 3/4: "not background" everywhere
        support_bg_logits=torch.stack([_constant(LN3, 0.0), _constant(0.0, LN3)], dim=1),  # shot 1: all BG
        query_features=QUERY[None],
        support=SimpleNamespace(features=torch.stack(shots)[None]),
    )


#: CE of the final head over the 3 labelled pixels: target (0, 0) at p1 = 3/4, two background pixels at p0 = 1/4.
MAIN = (LN43 + 2 * LN4) / 3
FINAL_BINS = (LN2 + MAIN) / 2  # mean of the two bins: ln 2 everywhere, and the main map again
INITIAL_BINS = (2 * LN43 + LN4) / 3  # p0 = 3/4 on the two background pixels, 1/4 on the target


def bg_term(alpha=0.5, eps=1e-5):
    """(query + shot 0 + shot 1) / (K + 1); each is sum_T(-log p0) / (|T| + eps) + alpha * mean_all(-log p1)."""
    query = LN43 / (1 + eps) + alpha * LN4  # T = (0, 0) only: 255 is not target, but counts in the regulariser
    shot0 = LN43 / (1 + eps) + alpha * LN4
    shot1 = 2 * LN4 / (2 + eps) + alpha * LN43  # p0 = 1/4 on its two target pixels, p1 = 3/4 everywhere
    return (query + shot0 + shot1) / 3


def _cos(a, b):
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


ANCHOR = (1 / (1 + EPS), 0.0)  # the query features at the predicted target (0, 0)
POSITIVE = (  # mean over the shots of the support features at their own target pixels
    (2 / (1 + EPS) + 4 / (2 + EPS)) / 2,
    (0 + 4 / (2 + EPS)) / 2,
)
#: DO prototypes, newest first: the query's (not BG, not target: (0, 1), (1, 0), (1, 1)), shot 0's (the same
#: pixels), shot 1's (all background: an empty mask, a zero prototype whose cosine is 0).
QUERY_DO, SHOT0_DO, SHOT1_DO = (1 / (3 + EPS), 2 / (3 + EPS)), (0.0, 3 / (3 + EPS)), (0.0, 0.0)


def pcl_term(negatives=(QUERY_DO, SHOT0_DO, SHOT1_DO), temperature=1.0, eps=1e-8):
    positive = math.exp(_cos(ANCHOR, POSITIVE) / temperature)
    return -math.log(positive / sum(math.exp(_cos(ANCHOR, v) / temperature) for v in negatives) + eps)


def _total(config: LossConfig, bg=None, pcl=None) -> float:
    bg = bg_term(config.bg_alpha, config.bg_eps) if bg is None else bg
    pcl = pcl_term(temperature=config.pcl_temperature, eps=config.pcl_eps) if pcl is None else pcl
    return (
        config.main_weight * MAIN
        + config.final_bins_weight * FINAL_BINS
        + config.initial_bins_weight * INITIAL_BINS
        + config.bg_weight * bg
        + config.pcl_weight * pcl
    )


def _loss(config: LossConfig, query_mask=QUERY_MASK):
    return NTRENetLoss(config)(_hand_made_output(), query_mask, SUPPORT_MASKS, torch.tensor([4]))


def test_every_term_of_the_two_shot_loss_by_hand():
    result = _loss(LossConfig())
    hand = {"main": MAIN, "final_bins": FINAL_BINS, "initial_bins": INITIAL_BINS, "bg": bg_term(), "pcl": pcl_term()}
    assert {k: approx(v) for k, v in hand.items()} == {k: v.item() for k, v in result.terms.items()}
    # The reference's weights: 1, 0.4, 0.6, 1, 0.01.
    total = MAIN + 0.4 * FINAL_BINS + 0.6 * INITIAL_BINS + bg_term() + 0.01 * pcl_term()
    assert result.total.item() == approx(total)


@pytest.mark.parametrize(
    "field, value",
    [
        ("main_weight", 2.5),
        ("final_bins_weight", 3.0),
        ("initial_bins_weight", 0.0),
        ("bg_weight", 0.25),
        ("bg_alpha", 2.0),
        ("bg_eps", 1.0),
        ("pcl_weight", 5.0),
        ("pcl_temperature", 0.25),
        ("pcl_eps", 0.5),
    ],
)
def test_each_loss_weight_and_constant_takes_effect(field, value):
    config = LossConfig(**{field: value})
    expected = _total(config)
    assert expected != pytest.approx(_total(LossConfig()), rel=1e-3)  # the value changes the hand-computed total
    assert _loss(config).total.item() == approx(expected)


def test_pcl_weight_zero_switches_pcl_and_its_bank_off():
    criterion = NTRENetLoss(LossConfig(pcl_weight=0.0))
    result = criterion(_hand_made_output(), QUERY_MASK, SUPPORT_MASKS, torch.tensor([4]))
    assert "pcl" not in result.terms and len(criterion.bank) == 0
    assert result.total.item() == approx(_total(LossConfig(pcl_weight=0.0)))


def test_bank_size_bounds_the_negatives():
    """Capacity 2 keeps the two newest of the episode's three DO prototypes: shot 1's is dropped."""
    config = LossConfig(bank_size=2)
    criterion = NTRENetLoss(config)
    result = criterion(_hand_made_output(), QUERY_MASK, SUPPORT_MASKS, torch.tensor([4]))
    assert result.terms["pcl"].item() == approx(pcl_term(negatives=(QUERY_DO, SHOT0_DO)))
    assert criterion.bank.prototypes(4).tolist() == [pytest.approx(QUERY_DO), pytest.approx(SHOT0_DO)]
    assert pcl_term(negatives=(QUERY_DO, SHOT0_DO)) != pytest.approx(pcl_term(), rel=1e-3)


def test_pcl_negatives_samples_that_many_from_the_bank():
    torch.manual_seed(0)
    value = _loss(LossConfig(pcl_negatives=2)).terms["pcl"].item()
    pairs = [(QUERY_DO, SHOT0_DO), (QUERY_DO, SHOT1_DO), (SHOT0_DO, SHOT1_DO)]
    assert value in [approx(pcl_term(negatives=p)) for p in pairs]
    assert value != pytest.approx(pcl_term(), rel=1e-3)


def test_ignore_index_is_the_label_value_the_segmentation_terms_skip():
    """With ignore_index=7 a 7 in the query label is skipped as 255 is by default (PCL off: its label
    handling follows the reference's 255)."""
    config = LossConfig(ignore_index=7, pcl_weight=0.0)
    sevens = torch.where(QUERY_MASK == 255, 7, QUERY_MASK)
    assert _loss(config, sevens).total.item() == approx(_total(config))
    # The default counts the 7 pixel as a (bogus) class and so cannot give the same total.
    with pytest.raises((IndexError, RuntimeError)):
        _loss(LossConfig(pcl_weight=0.0), sevens)


def test_each_item_and_shot_sends_its_own_do_prototypes_to_its_class():
    """B=2, K=2: class 4 gets item 0's query DO, then its shot 0 and shot 1 DOs; class 9 item 1's."""
    item0, item1 = _hand_made_output(), _hand_made_output(shots=(SHOT1, SHOT0))
    both = SimpleNamespace(
        **{
            key: torch.cat([getattr(item0, key), getattr(item1, key)])
            for key in ("logits", "head_logits", "bg_logits", "support_bg_logits", "query_features")
        },
        bin_logits=[torch.cat([a, b]) for a, b in zip(item0.bin_logits, item1.bin_logits, strict=True)],
        initial_logits=[torch.cat([a, b]) for a, b in zip(item0.initial_logits, item1.initial_logits, strict=True)],
        support=SimpleNamespace(features=torch.cat([item0.support.features, item1.support.features])),
    )
    criterion = NTRENetLoss(LossConfig())
    criterion(both, QUERY_MASK.expand(2, -1, -1), SUPPORT_MASKS.expand(2, -1, -1, -1), torch.tensor([4, 9]))
    # Item 1's shot 0 has SHOT1's features under shot 0's mask and BG logits: its DO pixels (0, 1), (1, 0), (1, 1).
    item1_shot0 = (4 / (3 + EPS), 4 / (3 + EPS))
    assert criterion.bank.prototypes(4).tolist() == [pytest.approx(v) for v in (QUERY_DO, SHOT0_DO, SHOT1_DO)]
    assert criterion.bank.prototypes(9).tolist() == [pytest.approx(v) for v in (QUERY_DO, item1_shot0, SHOT1_DO)]


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
    assert sorted(result.terms) == ["bg", "final_bins", "initial_bins", "main", "pcl"]
    # Every term is a CE of a 2-class map or a log-ratio, positive here; the weights are checked by hand above.
    assert all(0 < t.item() < 20 for t in result.terms.values()) and result.total.requires_grad
    result.total.backward()
    assert model.down_support[0].weight.grad.abs().sum() > 0 and model.bg_prototype.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.parameters())  # frozen
    assert criterion.bank.prototypes(0).shape == (1 + shot, 16)
    with pytest.raises(ValueError, match="train"):
        criterion(model.eval()(query, support, support_masks), query_mask, support_masks, torch.tensor([0, 3]))
