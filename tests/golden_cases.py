"""Golden outputs: the cases, how a tensor is recorded, and how a fresh run is compared with the record.

Three cases, each a fixed model on a fixed episode:

* ``shipped_tiny``: the shipped ``ntrenet_tiny.synthetic_fold0`` on a synthetic scene (an odd, non-square
  query whose target is a fold-0 novel class, with distractors of other classes), through ``predict``;
* ``resnet50_seeded`` and ``vgg16_bn_seeded``: full-size models (real widths and depths) whose weights are
  drawn from one seeded ``torch.Generator`` (not timm's or torch's initialisers, which may change between
  versions), backbone BN statistics calibrated on one batch, on a 2-shot 57x73 random episode, in float64:
  the argmax decisions inside the model (the DO masks of 60x60 bins) then sit 1e-4 or more from their
  boundary while float64 noise is about 1e-13, so no decision can flip from one CPU to another.

Small tensors (head, BG and initial logits at the feature size, the prior, the DO masks) are stored whole;
large ones (the logits and ``predict`` maps at the input size, the backbone stages) as a fingerprint:
shape, mean, std, min, max and the means over a 4x4 grid of cells. Values keep 7 significant digits.

Regenerate every file in ``tests/golden/`` (only after a deliberate change of the computation, saying why in
the commit):

    PYTHONPATH=. python tests/golden_cases.py
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
COMMAND = "PYTHONPATH=. python tests/golden_cases.py"

#: Tolerances, as a fraction of the largest magnitude in the recorded tensor. Float32 (the shipped model through
#: ``predict``): 1 vs 2 threads, channels_last vs contiguous and the fast vs the reference inference path
#: differ by at most 3e-6 on logits of magnitude 4.6 (7e-7 of the scale) on an AMD EPYC (AVX2); in float32 the
#: full-size models differ by up to 6e-5 of the scale (the prior's min-max normalisation amplifies noise), so
#: 5e-4 leaves a margin of 8x or more for other CPUs and BLAS builds. Float64 (the full-size cases): 1e-9.
#: Both are far below the smallest effect of the bugs planted to check this suite (see tests/test_golden_outputs.py).
RTOL = {"float32": 5e-4, "float64": 1e-9}


# ----------------------------------------------------------------------------------------------- records
def _round(values: torch.Tensor, digits: int) -> list:
    return [float(f"{v:.{digits}g}") for v in values.double().flatten().tolist()]


def _digits(tensor: torch.Tensor) -> int:
    """Significant digits kept: 7 for float32 values, 13 for float64 ones (both well below their tolerance)."""
    return 13 if tensor.dtype == torch.float64 else 7


def whole(tensor: torch.Tensor) -> dict:
    """Record every value of a small tensor."""
    return {"shape": list(tensor.shape), "values": _round(tensor, _digits(tensor))}


def fingerprint(tensor: torch.Tensor) -> dict:
    """Record a large ``(..., H, W)`` tensor by its statistics and its means over a 4x4 grid of cells: the
    grid of each ``H x W`` map when there are at most 4 of them (2-channel logits), else the grids of the
    maps' mean and of their mean absolute value (feature stacks)."""
    digits = _digits(tensor)
    t = tensor.detach().double()
    maps = t.reshape(-1, *t.shape[-2:])
    if maps.shape[0] > 4:
        maps = torch.stack([maps.mean(dim=0), maps.abs().mean(dim=0)])
    grid = F.adaptive_avg_pool2d(maps[:, None], 4)
    stats = torch.stack([t.mean(), t.std(), t.min(), t.max()])
    return {"shape": list(t.shape), "stats": _round(stats, digits), "grid": _round(grid, digits)}


def compare(recorded: dict, tensor: torch.Tensor, rtol: float) -> str | None:
    """None if ``tensor`` matches its record within ``rtol`` of the record's largest magnitude, else why not."""
    if list(tensor.shape) != recorded["shape"]:
        return f"shape {list(tensor.shape)} != recorded {recorded['shape']}"
    fresh = whole(tensor) if "values" in recorded else fingerprint(tensor)
    for key in ("values", "stats", "grid"):
        if key not in recorded:
            continue
        want, got = torch.tensor(recorded[key], dtype=torch.float64), torch.tensor(fresh[key], dtype=torch.float64)
        extremes = want if key != "stats" else want[2:]  # stats: the scale is that of the min and max
        scale = max(float(extremes.abs().max()), 1e-6)
        worst = float((want - got).abs().max())
        if worst > rtol * scale:
            i = int((want - got).abs().argmax())
            limit = rtol * scale
            return f"{key}[{i}] = {got[i].item():.7g}, recorded {want[i].item():.7g} (|diff| {worst:.3g} > {limit:.3g})"
    return None


def episode_digest(*arrays: np.ndarray | torch.Tensor) -> str:
    """sha256 over the bytes of the episode's inputs: tells an input change from a computation change."""
    digest = hashlib.sha256()
    for array in arrays:
        a = array.numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        digest.update(str(a.shape).encode() + str(a.dtype).encode() + np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------- inputs
def shipped_episode() -> dict[str, np.ndarray]:
    """Support 160x160 and query 181x147 (odd, non-square) scenes of class 1 (fold 0 novel) among distractors.

    ``query_label`` holds every class (0 = stuff background), so tests can tell background from objects."""
    from ntre_zoo.data import render_scene

    rng = np.random.default_rng([15, 2])
    support, support_label = render_scene(rng, 160, 160, [1, 7, 13], protect_first=True, ignore_border=False)
    query, query_label = render_scene(rng, 181, 147, [1, 9, 16], protect_first=True, ignore_border=False)
    return {
        "support": support,
        "support_mask": (support_label == 1).astype(np.uint8),
        "query": query,
        "query_label": query_label,
    }


def full_size_episode() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(query (1, 3, 57, 73), supports (1, 2, 3, 57, 73), masks (1, 2, 57, 73))``; masks hold 255 too."""
    g = torch.Generator().manual_seed(2022)
    query = torch.randn(1, 3, 57, 73, generator=g)
    images = torch.randn(1, 2, 3, 57, 73, generator=g)
    masks = torch.zeros(1, 2, 57, 73, dtype=torch.long)
    masks[0, 0, 10:40, 20:60] = 1
    masks[0, 0, :3] = 255
    masks[0, 1, 30:52, 5:35] = 1
    return query, images, masks


def seeded_full_size_model(backbone: str, seed: int = 0, dtype: torch.dtype = torch.float64):
    """A full-size NTRENet whose every weight comes from one seeded generator (He-scaled normal convs, BN
    affine near identity, a random BG prototype), backbone BN statistics set by one calibration batch."""
    import ntre_zoo

    with torch.device("meta"):
        model = ntre_zoo.create_model(backbone)
    model = model.to_empty(device="cpu").to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
                if module.bias is not None:
                    module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=g))
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(1 + 0.1 * torch.randn(module.weight.shape, generator=g))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=g))
                module.reset_running_stats()
                module.momentum = None  # a cumulative average: one batch sets the statistics to its own
        model.bg_prototype.copy_(torch.randn(model.bg_prototype.shape, generator=g))
        model.backbone.train()
        calibration = torch.randn(1, 3, 41, 49, generator=g).to(dtype)
        model.backbone.forward_high(model.backbone.forward_mid(calibration)[1])
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 0.1
    return model.eval()


# ----------------------------------------------------------------------------------------------- cases
def shipped_tiny_case() -> dict:
    """The shipped model through ``predict`` (details), and its forward pass on the canvases ``predict`` made."""
    import ntre_zoo

    episode = shipped_episode()
    model = ntre_zoo.from_pretrained("ntrenet_tiny.synthetic_fold0")
    outputs = []
    handle = model.register_forward_hook(lambda module, args, output: outputs.append(output))
    try:
        details = model.predict(
            episode["support"], episode["support_mask"], episode["query"], return_details=True, precision="fp32"
        )
    finally:
        handle.remove()
    (out,) = outputs
    small = {"head_logits": out.head_logits, "bg_logits": out.bg_logits, "prior": out.prior}
    small.update({f"initial_logits_{i}": x for i, x in enumerate(out.initial_logits)})
    small.update({f"do_mask_{i}": x for i, x in enumerate(out.do_masks)})
    large = {key: torch.from_numpy(getattr(details, key)) for key in ("probability", "bg_map", "do_map")}
    return {
        "episode_sha256": episode_digest(episode["support"], episode["support_mask"], episode["query"]),
        "dtype": "float32",
        "whole": {k: v.float().contiguous() for k, v in small.items()},
        "fingerprint": large,
    }


def full_size_case(backbone: str) -> dict:
    """A seeded full-size model's forward pass on :func:`full_size_episode`, and its backbone stages."""
    model = seeded_full_size_model(backbone)
    query, images, masks = full_size_episode()
    digest = episode_digest(query, images, masks)
    query, images = query.double(), images.double()
    with torch.no_grad():
        out = model(query, images, masks)
        layer2, layer3 = model.backbone.forward_mid(query)
        layer4 = model.backbone.forward_high(layer3)
    large = {"logits": out.logits, "prototype": out.support.prototype.view(1, 16, -1)}
    large.update(layer2=layer2, layer3=layer3, layer4=layer4)
    for i, (initial, do_mask) in enumerate(zip(out.initial_logits, out.do_masks, strict=True)):
        large.update({f"initial_logits_{i}": initial, f"do_mask_{i}": do_mask})
    return {
        "episode_sha256": digest,
        "dtype": "float64",
        "whole": {"head_logits": out.head_logits, "bg_logits": out.bg_logits, "prior": out.prior},
        "fingerprint": large,
    }


CASES: dict[str, Callable[[], dict]] = {
    "shipped_tiny": shipped_tiny_case,
    "resnet50_seeded": lambda: full_size_case("resnet50"),
    "vgg16_bn_seeded": lambda: full_size_case("vgg16_bn"),
}


def mismatches(name: str) -> list[str]:
    """Run case ``name`` and compare it with its golden file: one line per tensor that differs."""
    golden = load_golden(name)
    case = CASES[name]()
    if case["episode_sha256"] != golden["episode_sha256"]:
        return [f"the episode's inputs changed (sha256 {case['episode_sha256']}); if deliberate, run {COMMAND}"]
    fresh = {**case["whole"], **case["fingerprint"]}
    if sorted(fresh) != sorted(golden["tensors"]):
        return [f"recorded tensors {sorted(golden['tensors'])} but the case gives {sorted(fresh)}"]
    rtol = RTOL[golden["dtype"]]
    found = ((key, compare(golden["tensors"][key], fresh[key], rtol)) for key in golden["tensors"])
    return [f"{key}: {problem}" for key, problem in found if problem]


def golden_path(name: str) -> Path:
    return GOLDEN_DIR / f"{name}.json"


def load_golden(name: str) -> dict:
    return json.loads(golden_path(name).read_text(encoding="utf-8"))


def regenerate(names: list[str] | None = None) -> None:
    """Recompute and rewrite the golden files (single-threaded, as the tests run)."""
    torch.set_num_threads(1)
    GOLDEN_DIR.mkdir(exist_ok=True)
    for name in names or list(CASES):
        case = CASES[name]()
        record = {"case": name, "regenerate": COMMAND, "torch": torch.__version__}
        record.update(episode_sha256=case["episode_sha256"], dtype=case["dtype"])
        recorded = {k: whole(v) for k, v in case["whole"].items()}
        recorded.update({k: fingerprint(v) for k, v in case["fingerprint"].items()})
        # One line per tensor: small files whose diffs show which tensors changed.
        tensors = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in recorded.items())
        head = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in record.items())
        golden_path(name).write_text(f'{{\n{head},\n "tensors": {{\n{tensors}\n }}\n}}\n', encoding="utf-8")
        print(f"wrote {golden_path(name)} ({golden_path(name).stat().st_size} bytes)")


if __name__ == "__main__":
    regenerate(sys.argv[1:] or None)
