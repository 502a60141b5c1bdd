"""NTRENet: reference parameter checksums, shapes on any size, K-shot fusion, support caching."""

import pytest
import torch
from conftest import make_tiny_model

import ntre_zoo
from ntre_zoo.model import SupportFeatures
from ntre_zoo.model.config import ModelConfig


def _episode(batch=1, shot=1, size=(65, 65), seed=0):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, 3, *size, generator=g)
    images = torch.randn(batch, shot, 3, *size, generator=g)
    masks = torch.zeros(batch, shot, *size, dtype=torch.long)
    masks[..., size[0] // 4 : size[0] // 2, size[1] // 4 : size[1] // 2] = 1
    return query, images, masks


@pytest.mark.parametrize(
    "backbone, head, total, entries",
    [
        ("resnet50", 20_846_868, 44_478_676, 400),
        ("resnet101", 20_846_868, 63_470_804, 706),
        ("vgg16_bn", 20_453_652, 35_176_788, 161),
    ],
)
def test_real_size_parameter_checksums_match_the_reference(backbone, head, total, entries):
    model = ntre_zoo.create_model(backbone)
    assert sum(p.numel() for p in model.head_parameters()) == head
    assert sum(p.numel() for p in model.parameters()) == total
    assert len(model.state_dict()) == entries
    assert torch.count_nonzero(model.bg_prototype) == 0  # zero-initialised, as the reference


def test_real_size_resnet101_gives_every_output_at_its_size():
    """ResNet-50 and VGG-16-BN at full size are pinned value by value in test_golden_outputs.py."""
    torch.manual_seed(0)
    model = ntre_zoo.create_model("resnet101").eval()
    with torch.no_grad():
        out = model(*_episode(size=(49, 65)))
    assert out.logits.shape == (1, 2, 49, 65)
    assert out.head_logits.shape == out.bg_logits.shape == (1, 2, 7, 9) and out.prior.shape == (1, 1, 7, 9)
    assert [tuple(m.shape[-2:]) for m in out.do_masks] == [(60, 60), (30, 30), (15, 15), (8, 8)]


@pytest.mark.parametrize("size", [(65, 65), (50, 77), (64, 64), (33, 97)])
def test_any_input_size_works(tiny_model, size):
    with torch.no_grad():
        out = tiny_model(*_episode(batch=2, size=size))
    assert out.logits.shape == (2, 2, *size)
    assert out.head_logits.shape[-2:] == out.query_features.shape[-2:]


def test_k_identical_supports_equal_one_shot(tiny_model):
    query, images, masks = _episode(shot=1)
    with torch.no_grad():
        one = tiny_model(query, images, masks).logits
        five = tiny_model(query, images.expand(-1, 5, -1, -1, -1), masks.expand(-1, 5, -1, -1)).logits
    torch.testing.assert_close(five, one, rtol=1e-5, atol=1e-5)


def _shots(images, masks, seed=1):
    """K different supports: each shot's image and target differ."""
    g = torch.Generator().manual_seed(seed)
    images = images + torch.randn(images.shape, generator=g)
    masks = masks.clone()
    for k in range(masks.shape[1]):
        masks[:, k] = masks[:, k].roll(shifts=(7 * k, 11 * k), dims=(-2, -1))
    return images, masks


def test_k_shot_averages_prototype_and_prior(tiny_model):
    query, images, masks = _episode(shot=3)
    images, masks = _shots(images, masks)
    with torch.no_grad():
        joint = tiny_model.encode_support(images, masks)
        shots = [tiny_model.encode_support(images[:, k : k + 1], masks[:, k : k + 1]) for k in range(3)]
        out = tiny_model(query, support=joint)
        priors = [tiny_model(query, support=s).prior for s in shots]
    torch.testing.assert_close(joint.prototype, torch.stack([s.prototype for s in shots]).mean(0))
    torch.testing.assert_close(out.prior, torch.stack(priors).mean(0))
    assert (shots[0].prototype - shots[1].prototype).abs().max() > 1e-2  # the shots do differ
    assert (priors[0] - priors[1]).abs().max() > 1e-2


def test_combine_shots_gives_the_k_shot_encoding(tiny_model):
    """What feature reuse does: K cached one-shot encodings combined equal the K-shot encoding."""
    query, images, masks = _episode(shot=3)
    images, masks = _shots(images, masks)
    with torch.no_grad():
        joint = tiny_model.encode_support(images, masks)
        shots = [tiny_model.encode_support(images[:, k : k + 1], masks[:, k : k + 1]) for k in range(3)]
        combined = SupportFeatures.combine_shots(shots)
        inference_only = SupportFeatures.combine_shots(
            [SupportFeatures(None, None, s.prototype, s.masked_high) for s in shots]
        )
        expected = tiny_model(query, support=joint).logits
        got = tiny_model(query, support=inference_only).logits
        first_only = tiny_model(query, support=shots[0]).logits
    torch.testing.assert_close(combined.prototype, joint.prototype)
    for name in ("features", "masks", "masked_high"):
        torch.testing.assert_close(getattr(combined, name), getattr(joint, name))
    assert inference_only.features is None and inference_only.shot == 3
    torch.testing.assert_close(got, expected)
    assert (first_only - expected).abs().max() > 1e-3  # a one-shot result would be told apart


def test_cached_support_gives_the_same_logits(tiny_model):
    query, images, masks = _episode(batch=1, shot=2)
    images, masks = _shots(images, masks)
    with torch.no_grad():
        direct = tiny_model(query, images, masks).logits
        support = tiny_model.encode_support(images, masks)
        cached = tiny_model(query.expand(3, -1, -1, -1), support=support).logits
        other = tiny_model(query, images.flip(-1), masks).logits
    torch.testing.assert_close(cached, direct.expand(3, -1, -1, -1))
    assert (other - direct).abs().max() > 1e-3  # the logits do depend on the support


def test_ignore_pixels_count_as_not_target(tiny_model):
    query, images, masks = _episode()
    ignored, zeroed, target = masks.clone(), masks.clone(), masks.clone()
    ignored[..., :20, :] = 255
    zeroed[..., :20, :] = 0
    target[..., :20, :] = 1
    with torch.no_grad():
        as_zero = tiny_model(query, images, zeroed).logits
        torch.testing.assert_close(tiny_model(query, images, ignored).logits, as_zero)
        assert (tiny_model(query, images, target).logits - as_zero).abs().max() > 1e-3  # 255 as target would show


def test_seeded_models_are_equal_and_other_seeds_differ():
    a, b, c = make_tiny_model(seed=3), make_tiny_model(seed=3), make_tiny_model(seed=4)
    episode = _episode()
    with torch.no_grad():
        assert torch.equal(a(*episode).logits, b(*episode).logits)
        assert not torch.allclose(a(*episode).logits, c(*episode).logits)


def test_training_mode_returns_the_loss_inputs_and_gradients_reach_the_head_only(tiny_model):
    tiny_model.train()
    out = tiny_model(*_episode(batch=2, shot=2))
    assert len(out.bin_logits) == len(out.initial_logits) == 3
    assert out.support_bg_logits.shape == (2, 2, *out.bg_logits.shape[1:])
    (out.logits.sum() + sum(x.sum() for x in out.bin_logits) + out.support_bg_logits.sum()).backward()
    assert all(p.grad is None for p in tiny_model.backbone.parameters())  # frozen, run under no_grad
    for module in (tiny_model.down_query, tiny_model.down_support, tiny_model.bg_mining, tiny_model.classifier):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_eval_mode_skips_the_training_only_heads(tiny_model):
    with torch.no_grad():
        out = tiny_model(*_episode())
    assert out.bin_logits == [] and out.support_bg_logits is None


def test_bad_shapes_are_named(tiny_model):
    query, images, masks = _episode(shot=2)
    with pytest.raises(ValueError, match=r"support_masks has shape \(1, 1, 65, 65\).*implies \(1, 2, 65, 65\)"):
        tiny_model(query, images, masks[:, :1])
    with pytest.raises(ValueError, match=r"query must have shape \(B, 3, H, W\)"):
        tiny_model(query[0], images, masks)
    with pytest.raises(ValueError, match="support_images must have shape"):
        tiny_model(query, images[0], masks[0])
    with pytest.raises(ValueError, match="support="):
        tiny_model(query)


def test_config_round_trip_and_validation():
    config = ModelConfig(backbone={"name": "resnet50", "layers": [1, 1, 1, 1]}, reduce_dim=32, pyramid_bins=[60, 0.5])
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="bg_prototypes=2 is not supported"):
        ModelConfig(bg_prototypes=2)
    with pytest.raises(ValueError, match=r"Unknown ModelConfig field\(s\) \[.widht.\]"):
        ModelConfig.from_dict({"backbone": "resnet50", "widht": 3})
    with pytest.raises(ValueError, match="Unknown option"):
        ntre_zoo.create_model("resnet50", reduce_dims=3)


@pytest.mark.parametrize("shot", [1, 3])
def test_fast_inference_equals_the_baseline_path(shot):
    """The optimised path (sparse prior, skipped training-only heads, channels_last) keeps the logits."""
    fast = make_tiny_model(seed=5)
    baseline = make_tiny_model(seed=5)
    baseline.fast_inference = False
    query, images, masks = _episode(batch=2, shot=shot)
    masks[:, 0, :3] = 255
    fast.to(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = baseline(query, images, masks)
        got = fast(query.contiguous(memory_format=torch.channels_last), images, masks)
    torch.testing.assert_close(got.logits, expected.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.prior, expected.prior, rtol=1e-5, atol=1e-5)
    assert len(expected.bin_logits) == 3 and got.bin_logits == []


def test_sparse_prior_equals_the_dense_prior():
    from ntre_zoo.model.heads import prior_mask

    g = torch.Generator().manual_seed(0)
    query = torch.randn(3, 8, 6, 7, generator=g)
    support = torch.randn(3, 8, 5, 5, generator=g)
    support[0, :, :2] = 0  # partly masked out
    support[1] = 0  # nothing left: the prior is all zeros
    support[2, :, :, :1] = 0
    torch.testing.assert_close(prior_mask(query, support), prior_mask(query, support, skip_empty=False))


def test_the_prior_is_computed_in_fp32_under_fp16_autocast():
    """2048-channel layer4 features: fp16 products overflow (inf / inf = NaN); the prior must stay the fp32 one."""
    from ntre_zoo.model.heads import prior_mask

    g = torch.Generator().manual_seed(0)
    query = 100 * torch.rand(2, 2048, 4, 5, generator=g)
    support = 100 * torch.rand(2, 2048, 3, 3, generator=g)
    support[0, :, :1] = 0  # partly masked out
    expected = prior_mask(query, support)
    with torch.autocast("cpu", dtype=torch.float16):
        got = prior_mask(query, support)
        assert prior_mask(query.half(), support.half()).dtype == torch.float16  # the input's dtype comes back
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    assert torch.equal(got, expected)  # fp32 inputs: exactly the prior computed without autocast


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_prior_equals_the_cpu_prior():
    from ntre_zoo.model.heads import prior_mask

    g = torch.Generator().manual_seed(0)
    query = torch.randn(3, 64, 6, 7, generator=g)
    support = torch.randn(3, 64, 5, 5, generator=g)
    support[0, :, :2] = 0
    support[1] = 0
    expected = prior_mask(query, support)
    torch.testing.assert_close(prior_mask(query.cuda(), support.cuda()).cpu(), expected, rtol=1e-3, atol=1e-3)
