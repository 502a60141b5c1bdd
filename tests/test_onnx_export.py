"""ONNX export (``ntre-zoo export --format onnx``, ``ntre_zoo.export_onnx``) checked with onnxruntime on CPU:
the same episode gives PyTorch's logits within 1e-4 and ``model.predict``'s masks."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ntre_zoo
from ntre_zoo.cli import main
from ntre_zoo.data import synthetic_episode
from ntre_zoo.data.preprocessing import mask_to_canvas
from ntre_zoo.demo import DEMO_MODEL
from ntre_zoo.inference import prepare_image
from ntre_zoo.inference.predict import canvas_maps
from ntre_zoo.zoo.download import sha256_file

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install -e '.[onnx]'")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed: pip install -e '.[onnx]'")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "onnx_runtime.py"
TOLERANCE = 1e-4


def _load_example():
    spec = importlib.util.spec_from_file_location("onnx_runtime_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shipped():
    return ntre_zoo.from_pretrained(DEMO_MODEL)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The shipped model exported 2-shot through the command line; (folder, what it printed)."""
    out = tmp_path_factory.mktemp("onnx") / "tiny"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["export", DEMO_MODEL, "--format", "onnx", "-o", str(out), "--shot", "2"])
    assert code == 0
    return out, printed.getvalue()


def _run_graphs(directory: Path, query: torch.Tensor, images: torch.Tensor, masks: torch.Tensor):
    encoder = ort.InferenceSession(str(directory / "encode_support.onnx"), providers=["CPUExecutionProvider"])
    segmenter = ort.InferenceSession(str(directory / "segment.onnx"), providers=["CPUExecutionProvider"])
    prototype, support_high = encoder.run(None, {"support_images": images.numpy(), "support_masks": masks.numpy()})
    feed = {"query": query.numpy(), "prototype": prototype, "support_high": support_high}
    return dict(zip(("logits", "bg_map", "do_map"), segmenter.run(None, feed), strict=True))


def _canvas_episode(model, seed: int, shot: int):
    """A synthetic episode on the model's canvas: query (1, 3, S, S), supports (1, K, 3, S, S), masks (1, K, S, S)."""
    supports, masks, query, _ = synthetic_episode(seed, fold=0, shot=shot, novel=True)
    size = model.config.test_size
    images = torch.stack([prepare_image(model, s, "support")[0] for s in supports])[None]
    canvas_masks = torch.stack([mask_to_canvas(torch.from_numpy(m).long(), size) for m in masks])[None]
    return prepare_image(model, query, "query")[0][None], images, canvas_masks


def test_export_writes_two_graphs_and_their_config(exported, shipped):
    out, printed = exported
    config = json.loads((out / "onnx_config.json").read_text())
    assert config["canvas_size"] == shipped.config.test_size == 129
    assert config["shot"] == 2
    assert config["mean"] == list(shipped.config.mean) and config["std"] == list(shipped.config.std)
    for graph in ("encode_support", "segment"):
        entry = config["graphs"][graph]
        assert sha256_file(out / entry["file"]) == entry["sha256"]
    assert config["graphs"]["segment"]["outputs"]["logits"]["shape"] == [1, 2, 129, 129]
    assert "max |logit diff|" in printed
    assert float(printed.rsplit("=", 1)[1]) < TOLERANCE


@pytest.mark.parametrize("seed", [0, 3])
def test_onnxruntime_gives_pytorch_logits_and_maps(exported, shipped, seed):
    out, _ = exported
    query, images, masks = _canvas_episode(shipped, seed, shot=2)
    with torch.inference_mode():
        expected = shipped(query, images, masks)
    bg_map, do_map = canvas_maps(expected)
    got = _run_graphs(out, query, images, masks)
    assert expected.logits.abs().max() > 1  # a trained model's logits, not a near-constant map
    np.testing.assert_allclose(got["logits"], expected.logits.numpy(), rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(got["bg_map"], bg_map.numpy(), rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(got["do_map"], do_map.numpy(), rtol=0, atol=TOLERANCE)
    assert np.array_equal(got["logits"].argmax(1), expected.logits.argmax(1).numpy())


def test_numpy_example_gives_the_masks_of_predict(exported, shipped):
    """examples/onnx_runtime.py (numpy + onnxruntime, the resize written out) against model.predict, at sizes
    that need downscaling (200 -> 128), fit as they are (97 x 72) and have a long side in either direction."""
    example = _load_example()
    segmenter = example.OnnxSegmenter(exported[0])
    for seed, size, crop in ((1, 200, None), (2, 97, 72), (4, 260, 195)):
        supports, masks, query, _ = synthetic_episode(seed, fold=0, shot=2, size=size)
        query = query if crop is None else query[:, :crop]
        got = segmenter.segment(segmenter.encode_support(supports, masks), query)
        expected = shipped.predict(supports, masks, query, return_details=True, precision="fp32")  # the graphs are fp32
        assert got["mask"].shape == query.shape[:2]
        assert 0 < expected.mask.sum() < expected.mask.size
        assert np.array_equal(got["mask"], expected.mask)
        for key in ("probability", "bg_map", "do_map"):
            np.testing.assert_allclose(got[key], getattr(expected, key), rtol=0, atol=TOLERANCE)


def test_export_refuses_bad_arguments(tmp_path, shipped):
    with pytest.raises(ValueError, match="shot must be >= 1"):
        ntre_zoo.export_onnx(shipped, tmp_path, shot=0)
    with pytest.raises(ValueError, match="test_size must be between 9 and 2048, got 4"):
        ntre_zoo.export_onnx(shipped, tmp_path, test_size=4)
    with pytest.raises(ValueError, match=r"test_size must be between 9 and 2048, got 100000: .* grows with its square"):
        ntre_zoo.export_onnx(shipped, tmp_path, test_size=100000)
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_an_output_it_would_damage_before_any_work(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    assert main(["export", "no/such/model", "--format", "onnx", "-o", str(taken)]) == 1  # refused before loading
    assert f"{str(taken)!r} is a file, not a folder" in capsys.readouterr().err
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "onnx_config.json").write_text('{"my": "settings"}')
    assert main(["export", "no/such/model", "--format", "onnx", "-o", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "is not empty and not a previous export: it holds onnx_config.json" in err and "-o NEW_DIR" in err
    (folder / "onnx_config.json").unlink()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"it holds notes\.txt"):
        ntre_zoo.export_onnx(DEMO_MODEL, folder)
    assert taken.read_text() == "mine" and (folder / "notes.txt").read_text() == "mine"


def test_a_previous_export_may_be_replaced(exported, tmp_path):
    from ntre_zoo.export.onnx import _check_output_dir

    folder, _ = exported
    _check_output_dir(folder)  # the three files of an export: accepted
    _check_output_dir(tmp_path / "new")  # a new folder: accepted
    _check_output_dir(tmp_path)  # an empty one: accepted


def test_verification_runs_on_a_cpu_copy_of_a_model_elsewhere(shipped):
    """A model on an accelerator is checked against a CPU float32 copy (not TF32 results), and stays where it is."""
    from ntre_zoo.export.onnx import _cpu_reference

    assert _cpu_reference(shipped, torch.device("cpu")) is shipped
    before = {name: (p.data_ptr(), p.device) for name, p in shipped.named_parameters()}
    shipped.train()
    copy = _cpu_reference(shipped, torch.device("cuda"))  # what export_onnx passes for a model on CUDA
    assert copy is not shipped and not copy.training and shipped.training
    assert all(p.device.type == "cpu" for p in copy.parameters())
    assert {name: (p.data_ptr(), p.device) for name, p in shipped.named_parameters()} == before
    for (name, mine), theirs in zip(copy.state_dict().items(), shipped.state_dict().values(), strict=True):
        assert torch.equal(mine, theirs), name
    shipped.eval()


@pytest.mark.slow
def test_full_size_resnet50_exports_within_tolerance(tmp_path):
    """A full-size ResNet-50 NTRENet on a 97 x 97 canvas, 1-shot: random weights, with BN statistics perturbed
    and the head's convolutions He-initialised so that its logits span several units and both classes occur."""
    torch.manual_seed(0)
    model = ntre_zoo.create_model("resnet50", test_size=97).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        for name, parameter in model.named_parameters():
            if not name.startswith("backbone.") and parameter.dim() == 4:
                torch.nn.init.kaiming_normal_(parameter, nonlinearity="relu")
        model.bg_prototype.normal_()
    result = ntre_zoo.export_onnx(model, tmp_path)
    assert result.max_abs_logit_diff < TOLERANCE
    query, images, masks = _canvas_episode(model, 5, shot=1)
    with torch.inference_mode():
        expected = model(query, images, masks).logits
    got = _run_graphs(tmp_path, query, images, masks)["logits"]
    assert expected.abs().max() > 1 and 0.1 < expected.argmax(1).float().mean() < 0.9
    np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=TOLERANCE)
    assert np.array_equal(got.argmax(1), expected.argmax(1).numpy())


def test_the_graphs_do_not_refuse_an_empty_support_mask_as_deploy_md_says(exported, shipped):
    """encode_support.onnx turns an all-zero mask into a zero prototype without a word; predict refuses it, and
    docs/deploy.md tells runtimes to check it themselves."""
    folder, _ = exported
    _, images, masks = _canvas_episode(shipped, 0, shot=2)
    encoder = ort.InferenceSession(str(folder / "encode_support.onnx"), providers=["CPUExecutionProvider"])
    empty = torch.zeros_like(masks)
    prototype, _ = encoder.run(None, {"support_images": images.numpy(), "support_masks": empty.numpy()})
    assert not prototype.any()
    supports, support_masks, query, _ = synthetic_episode(0, fold=0, shot=1, novel=True)
    with pytest.raises(ValueError, match="has no target pixel"):
        shipped.predict(supports[0], np.zeros_like(support_masks[0]), query)
    deploy = (Path(__file__).resolve().parents[1] / "docs" / "deploy.md").read_text()
    assert "What the graphs do not check" in deploy and "prototype of zeros" in deploy
