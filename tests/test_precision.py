"""precision="fp32"|"bf16"|"fp16"|"auto": what auto resolves to (on this machine and on stated hardware), the
amp_dtype alias, and the argument on predict, encode_support, segment and evaluate."""

import numpy as np
import pytest
import torch

from ntre_zoo.cli.evaluate import _precision
from ntre_zoo.inference.precision import (
    PRECISIONS,
    autocast_dtype,
    cpu_capabilities,
    native_bf16,
    resolve_precision,
)


def test_auto_resolves_as_documented_on_the_machine_at_hand():
    flags = cpu_capabilities()
    assert isinstance(flags["capability"], str)
    native = bool(flags["avx512_bf16"] or flags["amx_tile"])
    assert native_bf16("cpu") is native
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    assert autocast_dtype("auto", "cpu") is (torch.bfloat16 if native else None)


@pytest.mark.skipif(native_bf16("cpu"), reason="this CPU has native bf16")
def test_auto_is_fp32_where_bf16_is_not_native():
    assert resolve_precision("auto", "cpu") == "fp32"


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"),
    [(False, False, "fp32"), (True, False, "bf16"), (False, True, "bf16")],
)
def test_auto_on_cpus_with_and_without_native_bf16(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert resolve_precision("auto", "cpu") == expected


@pytest.mark.parametrize(("capability", "expected"), [((8, 0), "bf16"), ((9, 0), "bf16"), ((7, 5), "fp32")])
def test_auto_on_cuda_follows_the_compute_capability(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert resolve_precision("auto", "cuda") == expected
    assert resolve_precision("auto", "mps") == "fp32"


def test_explicit_precisions_and_bad_values():
    assert [resolve_precision(p, "cpu") for p in ("fp32", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]
    assert [autocast_dtype(p, "cpu") for p in ("fp32", "bf16", "fp16")] == [None, torch.bfloat16, torch.float16]
    assert set(PRECISIONS) == {"fp32", "bf16", "fp16", "auto"}
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("float32")


def test_amp_dtype_is_the_older_spelling_with_a_clear_rule():
    assert autocast_dtype("auto", "cpu", torch.bfloat16) is torch.bfloat16  # default precision: amp_dtype decides
    assert autocast_dtype("fp32", "cpu", torch.bfloat16, default="fp32") is torch.bfloat16
    assert autocast_dtype("bf16", "cpu", torch.bfloat16) is torch.bfloat16  # agreeing is fine
    with pytest.raises(ValueError, match="disagree"):
        autocast_dtype("fp16", "cpu", torch.bfloat16)
    for dtype in (torch.int8, torch.float32):  # autocast's dtypes only (None is fp32)
        with pytest.raises(TypeError, match="amp_dtype must be"):
            autocast_dtype("auto", "cpu", dtype)


def _scene(seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    mask = np.zeros((40, 56), np.uint8)
    mask[8:30, 10:40] = 1
    return image, mask


def test_precision_on_predict_encode_support_and_segment(tiny_model):
    image, mask = _scene()
    query, _ = _scene(1)
    fp32 = tiny_model.predict(image, mask, query, precision="fp32", return_details=True)
    bf16 = tiny_model.predict(image, mask, query, precision="bf16", return_details=True)
    alias = tiny_model.predict(image, mask, query, amp_dtype=torch.bfloat16, return_details=True)
    np.testing.assert_array_equal(bf16.probability, alias.probability)
    assert not np.array_equal(bf16.probability, fp32.probability)  # bf16 really ran
    np.testing.assert_allclose(bf16.probability, fp32.probability, atol=0.05)
    auto = tiny_model.predict(image, mask, query, return_details=True)  # the default is auto
    np.testing.assert_array_equal(auto.probability, (bf16 if native_bf16("cpu") else fp32).probability)
    support = tiny_model.encode_support(image, mask, precision="bf16")
    assert not torch.equal(support.prototype, tiny_model.encode_support(image, mask, precision="fp32").prototype)
    segmented = tiny_model.segment(query, {"a": (image, mask)}, precision="bf16")
    np.testing.assert_allclose(segmented.probabilities[0], bf16.probability, atol=1e-6)
    with pytest.raises(ValueError, match="precision must be one of"):
        tiny_model.predict(image, mask, query, precision="half")
    with pytest.raises(ValueError, match="disagree"):
        tiny_model.predict(image, mask, query, precision="fp16", amp_dtype=torch.bfloat16)


@pytest.mark.filterwarnings("ignore:.*never form an episode")
def test_precision_on_evaluate(tmp_path):
    import ntre_zoo
    from ntre_zoo.data import DataConfig, build_dataset, make_synthetic_voc
    from ntre_zoo.evaluation import evaluate

    voc = make_synthetic_voc(tmp_path, seed=0, train=0, val=16, progress=False)
    model = ntre_zoo.from_pretrained("ntrenet_tiny.synthetic_fold0")
    config = DataConfig(root=str(voc), fold=0, test_size=model.config.test_size)
    dataset = build_dataset(config, "val", episodes=4, progress=False)
    default = evaluate(model, dataset, progress=False)
    assert evaluate(model, dataset, precision="fp32", progress=False).to_dict() == default.to_dict()
    bf16 = evaluate(model, dataset, precision="bf16", progress=False)
    assert bf16.to_dict() == evaluate(model, dataset, amp_dtype=torch.bfloat16, progress=False).to_dict()
    with pytest.raises(ValueError, match="disagree"):
        evaluate(model, dataset, precision="fp16", amp_dtype=torch.bfloat16, progress=False)


def test_evaluate_cli_precision_and_its_older_spelling():
    from argparse import Namespace

    assert _precision(Namespace(precision=None, amp=None)) == "fp32"
    assert _precision(Namespace(precision=None, amp="bf16")) == "bf16"
    assert _precision(Namespace(precision="auto", amp=None)) == "auto"
    with pytest.raises(ValueError, match="disagree"):
        _precision(Namespace(precision="fp16", amp="bf16"))
