"""The shipped demo model reproduces its manifest numbers, and full-size paths agree (slow)."""

import numpy as np
import pytest
import torch

import ntre_zoo
from ntre_zoo.data import DataConfig, build_dataset, make_synthetic_voc
from ntre_zoo.evaluation import evaluate
from ntre_zoo.zoo.manifest import load_manifest

pytestmark = pytest.mark.filterwarnings("ignore:.*never form an episode")


def test_shipped_tiny_model_reproduces_its_measured_miou(tmp_path):
    """`ntre-zoo evaluate ntrenet_tiny.synthetic_fold0 ... --episodes 1000 --seed 321`, to the digit.

    The val images depend only on (seed, split, index), so the val split alone is generated."""
    measured = load_manifest().get("ntrenet_tiny.synthetic_fold0").metrics["measured"]
    voc = make_synthetic_voc(tmp_path, seed=0, train=0, val=300, progress=False)
    model = ntre_zoo.from_pretrained("ntrenet_tiny.synthetic_fold0")
    config = DataConfig(root=str(voc), fold=0, test_size=model.config.test_size)
    result = evaluate(model, build_dataset(config, "val", episodes=1000, seed=321, progress=False), progress=False)
    assert round(100 * result.miou, 2) == measured["miou_1shot"]
    assert round(100 * result.fb_iou, 2) == measured["fb_iou_1shot"]


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["resnet50", "vgg16_bn"])
def test_full_size_fast_path_equals_the_baseline_at_473(backbone):
    torch.manual_seed(0)
    fast = ntre_zoo.create_model(backbone).eval()
    baseline = ntre_zoo.create_model(backbone).eval()
    baseline.load_state_dict(fast.state_dict())
    baseline.fast_inference = False
    rng = np.random.default_rng(0)
    image = (rng.random((375, 500, 3)) * 255).astype(np.uint8)
    mask = np.zeros((375, 500), np.uint8)
    mask[100:250, 150:350] = 1
    a = fast.predict([image, image[::-1]], [mask, mask[::-1]], image, return_details=True)
    b = baseline.predict([image, image[::-1]], [mask, mask[::-1]], image, return_details=True)
    np.testing.assert_allclose(a.probability, b.probability, atol=1e-4)


@pytest.mark.slow
def test_full_size_resnet101_five_shot_at_473():
    model = ntre_zoo.create_model("resnet101").eval()
    with torch.no_grad():
        out = model(
            torch.randn(1, 3, 473, 473), torch.randn(1, 5, 3, 473, 473), torch.ones(1, 5, 473, 473, dtype=torch.long)
        )
    assert out.logits.shape == (1, 2, 473, 473) and out.bg_logits.shape == (1, 2, 60, 60)
