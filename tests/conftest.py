"""Shared fixtures and helpers: a narrow model of the real timm families, the ``slow`` marker gate, the simulated
CPU kind (``--cpu-bf16``), a local Hub, a cap on this process's memory, and comparing two models' weights."""

from __future__ import annotations

import contextlib
import os

import pytest
import torch
from hub_server import HubServer

import ntre_zoo

#: Narrow ResNet-50 layout (same keys as resnet50s, ~130k backbone parameters) and a 16-channel head.
TINY = {
    "layers": (1, 1, 1, 1),
    "channels": (8, 16, 32, 64),
    "stem_width": 8,
    "reduce_dim": 16,
    "pyramid_bins": (8, 4, 2),
}


#: ``--cpu-bf16`` (or the environment variable of the same meaning): which kind of CPU ``precision="auto"`` sees.
CPU_BF16_CHOICES = ("host", "native", "absent", "opposite")
CPU_BF16_VARIABLE = "NTRE_ZOO_TEST_CPU_BF16"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")
    parser.addoption(
        "--cpu-bf16",
        choices=CPU_BF16_CHOICES,
        default=os.environ.get(CPU_BF16_VARIABLE, "host"),
        help="run as if the CPU had native bf16 (AVX512-BF16/AMX: 'native'), had none ('absent'), were the other "
        f"kind than this one ('opposite'), or as it is ('host', the default; also set by ${CPU_BF16_VARIABLE})",
    )


def simulate_cpu_bf16(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    """Make torch (and so ``precision="auto"``) report a CPU with (or without) native bf16 instructions."""
    for flag in ("avx512_bf16", "amx_tile"):
        monkeypatch.setattr(torch.cpu, f"_is_{flag}_supported", lambda value=native: value, raising=False)


@pytest.fixture(autouse=True, scope="session")
def _cpu_kind(request: pytest.FixtureRequest):
    """Apply ``--cpu-bf16`` for the whole run; tests that simulate a kind themselves override it."""
    choice = request.config.getoption("--cpu-bf16")
    if choice == "host":
        yield
        return
    from ntre_zoo.inference.precision import native_bf16

    native = {"native": True, "absent": False, "opposite": not native_bf16("cpu")}[choice]
    with pytest.MonkeyPatch.context() as monkeypatch:
        simulate_cpu_bf16(monkeypatch, native)
        yield


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def make_tiny_model(seed: int = 0, support_gain: float = 20.0, **options) -> ntre_zoo.NTRENet:
    """A tiny NTRENet with random (seeded) weights and non-trivial BN statistics and BG prototype.

    A random head barely reads its support, so the feature-matching weights that take the support prototype
    and the prior are multiplied by ``support_gain``: another support then moves the logits by 1e-2 or more,
    far beyond the tolerances of the tests that compare two ways of computing them (each of those tests
    checks that a different support would be seen)."""
    torch.manual_seed(seed)
    model = ntre_zoo.create_model("resnet50", **{**TINY, "test_size": 65, **options})
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        if model.bg_prototype is not None:
            model.bg_prototype.normal_()
        channels = model.config.reduce_dim
        for block in model.bins:
            block.feature_matching[0].weight[:, channels:] *= support_gain  # inputs: [query, prototype, prior]
    return model.eval()


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The tests' models are tiny: one thread runs them fastest, and several stall on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_model() -> ntre_zoo.NTRENet:
    return make_tiny_model()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A local Hub (``tests/hub_server.py``) that huggingface_hub talks to, with a fresh ``HF_HOME``."""
    server = HubServer()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.stop()


@contextlib.contextmanager
def address_space_limit(extra_bytes: int):
    """Let this process map at most ``extra_bytes`` more memory (allocations beyond fail with an error)."""
    import resource  # POSIX only; the tests that use it run on Linux

    with open("/proc/self/status") as status:
        size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def state_equal(a, b) -> bool:
    """Whether two models hold the same state dict keys with bit-identical tensors."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
