"""Golden outputs: the shipped model and seeded full-size ResNet-50 / VGG-16-BN models against stored records.

A change anywhere in the computation (backbone, head, K-shot fusion, prior, preprocessing, upsampling)
moves these numbers; the records and the command that regenerates them are in ``tests/golden_cases.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from golden_cases import CASES, COMMAND, RTOL, compare, fingerprint, mismatches, shipped_episode, whole

import ntre_zoo


@pytest.mark.parametrize("name", list(CASES))
def test_outputs_match_their_golden_record(name):
    problems = mismatches(name)
    assert not problems, (
        f"{name} differs from tests/golden/{name}.json:\n"
        + "\n".join(problems)
        + (f"\nIf the change is deliberate, regenerate with `{COMMAND}` and say why in the commit.")
    )


def test_the_comparison_fails_beyond_its_tolerance_only():
    tensor = torch.linspace(-2.0, 3.0, 2 * 5 * 6, dtype=torch.float64).view(1, 2, 5, 6)
    for record in (whole(tensor), fingerprint(tensor)):
        assert compare(record, tensor, RTOL["float64"]) is None
        assert compare(record, tensor * (1 + 0.3 * RTOL["float32"]), RTOL["float32"]) is None
        assert "recorded" in compare(record, tensor * (1 + 3 * RTOL["float32"]), RTOL["float32"])
        assert "shape" in compare(record, tensor[..., :5], RTOL["float32"])
    swapped = whole(tensor.flip(1))  # a channel swap keeps every statistic of the values but not their order
    assert compare(swapped, tensor, RTOL["float32"]) is not None


def test_shipped_model_bg_map_marks_background_and_do_map_marks_distractors():
    """On the golden episode: BG mining finds the stuff background (channel 1 = background), DOEM eliminates
    the distractor objects rather than the target or the background, and the target is found."""
    episode = shipped_episode()
    model = ntre_zoo.from_pretrained("ntrenet_tiny.synthetic_fold0")
    details = model.predict(episode["support"], episode["support_mask"], episode["query"], return_details=True)
    label = episode["query_label"]
    background, target, distractor = label == 0, label == 1, ~np.isin(label, [0, 1])
    assert details.bg_map[background].mean() > details.bg_map[target | distractor].mean() + 0.2
    assert details.do_map[distractor].mean() > 3 * max(details.do_map[target].mean(), details.do_map[background].mean())
    predicted = details.mask.astype(bool)
    assert (predicted & target).sum() / (predicted | target).sum() > 0.45
    np.testing.assert_array_equal(details.mask, (details.probability > 0.5).astype(np.uint8))
