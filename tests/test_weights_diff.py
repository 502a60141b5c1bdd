"""compare_weights: which tensors of two weights files differ, and whether only running statistics do."""

import pytest
import torch
from safetensors.torch import save_file

from ntre_zoo.zoo.weights_diff import CROSS_CPU_STATISTICS_ATOL, compare_weights


def _tensors():
    return {
        "head.conv.weight": torch.linspace(-1, 1, 12).view(3, 4),
        "backbone.bn.weight": torch.ones(4),
        "backbone.bn.running_mean": torch.full((4,), 0.25),
        "backbone.bn.running_var": torch.full((4,), 2.0),
        "backbone.bn.num_batches_tracked": torch.tensor(7),
    }


@pytest.fixture
def write(tmp_path):
    def write(name, **changes):
        tensors = {**_tensors(), **changes}
        save_file(tensors, str(tmp_path / name))
        return tmp_path / name

    return write


def test_identical_tensors(write):
    diff = compare_weights(write("a"), write("b"))
    assert diff.identical and diff.same_training() and diff.summary() == "every tensor bit-equal"


def test_running_statistics_within_the_bound_are_the_same_training(write):
    var = torch.full((4,), 2.0)
    var[1] = torch.nextafter(var[1], torch.tensor(3.0))  # one float32 rounding step: 2.4e-7
    diff = compare_weights(write("a"), write("b", **{"backbone.bn.running_var": var}))
    assert not diff.identical and diff.same_training()
    assert diff.parameters == {} and diff.statistics == {"backbone.bn.running_var": pytest.approx(2.384e-7, rel=1e-3)}
    assert diff.summary() == "every parameter bit-equal; 1 running statistic(s) differ, by at most 2.4e-07"


def test_a_statistic_beyond_the_bound_or_any_parameter_is_another_training(write):
    mean = torch.full((4,), 0.25 + 2 * CROSS_CPU_STATISTICS_ATOL)
    assert not compare_weights(write("a"), write("b", **{"backbone.bn.running_mean": mean})).same_training()
    assert compare_weights(write("a"), write("b", **{"backbone.bn.running_mean": mean})).same_training(atol=1e-5)
    weight = torch.linspace(-1, 1, 12).view(3, 4).clone()
    weight[0, 0] = torch.nextafter(weight[0, 0], torch.tensor(0.0))  # the smallest change of a parameter
    diff = compare_weights(write("a"), write("b", **{"head.conv.weight": weight}))
    assert not diff.same_training() and list(diff.parameters) == ["head.conv.weight"]
    assert diff.summary().startswith("1 parameter(s) differ")


def test_a_missing_or_reshaped_tensor_is_another_training(write, tmp_path):
    tensors = _tensors()
    del tensors["backbone.bn.weight"]
    save_file(tensors, str(tmp_path / "short"))
    diff = compare_weights(write("a"), tmp_path / "short")
    assert diff.missing == ("backbone.bn.weight",) and not diff.same_training()
    reshaped = compare_weights(write("a"), write("c", **{"head.conv.weight": torch.zeros(4, 3)}))
    assert reshaped.parameters == {"head.conv.weight": float("inf")}
