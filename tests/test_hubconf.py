"""torch.hub entry points (``hubconf.py`` at the repository root), loaded as torch.hub loads them."""

from __future__ import annotations

import configparser
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY

import ntre_zoo
from ntre_zoo.errors import UnknownModelError

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = "ntrenet_tiny.synthetic_fold0"


def _hub_load(*args, **kwargs):
    return torch.hub.load(str(REPO_ROOT), *args, source="local", **kwargs)


@pytest.fixture
def github_cache(tmp_path, monkeypatch) -> str:
    """torch.hub's cache holding this checkout as its download of ``ORG/ntre-zoo:main``, so the GitHub form
    runs as for a user, without the network (a repository in the cache is used as it is, and counted trusted)."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    (tmp_path / "ORG_ntre-zoo_main").symlink_to(REPO_ROOT, target_is_directory=True)
    return "ORG/ntre-zoo:main"


def test_torch_hub_lists_only_the_entry_points(github_cache):
    assert sorted(torch.hub.list(github_cache)) == ["create_model", "ntrenet"]
    assert "ntre_zoo.from_pretrained(name_or_path, **kwargs)" in torch.hub.help(github_cache, "ntrenet")


def test_torch_hub_loads_from_the_github_form(github_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = torch.hub.load(github_cache, "ntrenet", SHIPPED)
    assert isinstance(model, ntre_zoo.NTRENet) and not model.training


def test_ntrenet_loads_a_zoo_name_with_from_pretrained_keywords(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = _hub_load("ntrenet", SHIPPED, local_files_only=True, device="cpu", test_size=97)
    expected = ntre_zoo.from_pretrained(SHIPPED)
    assert isinstance(model, ntre_zoo.NTRENet) and not model.training and model.config.test_size == 97
    assert model.state_dict().keys() == expected.state_dict().keys()
    assert all(torch.equal(value, expected.state_dict()[key]) for key, value in model.state_dict().items())
    with pytest.raises(ValueError, match="ships inside the package, so it has no Hub revision"):
        _hub_load("ntrenet", SHIPPED, revision="main")  # the keyword reaches from_pretrained


def test_ntrenet_gives_the_packages_error_for_an_unknown_name():
    with pytest.raises(UnknownModelError, match=r"Did you mean: ntrenet_resnet50\.pascal5i_fold0"):
        _hub_load("ntrenet", "ntrenet_resnt50.pascal5i_fold0")


def test_create_model_builds_an_untrained_model():
    model = _hub_load("create_model", "resnet50", shot=5, **TINY)
    assert isinstance(model, ntre_zoo.NTRENet) and model.config.shot == 5 and model.config.reduce_dim == 16


def test_dependencies_are_the_installed_requirements():
    """torch.hub checks ``dependencies`` (import names) before loading; they must be what setup.cfg installs."""
    spec = importlib.util.spec_from_file_location("hubconf", REPO_ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    distributions = importlib.metadata.packages_distributions()
    installed_by = {_canonical(dist) for module in hubconf.dependencies for dist in distributions[module]}
    assert installed_by == _requirement_names()


def test_the_checkout_beside_hubconf_is_what_torch_hub_imports(tmp_path):
    """From a checkout, nothing installed needed: torch.hub's path entry finds the package next to hubconf.py
    first (here another copy is installed, which must not be the one used)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    code = (
        "import sys, torch; "
        f"model = torch.hub.load({str(REPO_ROOT)!r}, 'ntrenet', {SHIPPED!r}, source='local'); "
        "print(sys.modules['ntre_zoo'].__file__, type(model).__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    path, kind = result.stdout.split()
    assert Path(path).resolve() == REPO_ROOT / "ntre_zoo" / "__init__.py" and kind == "NTRENet"


def _requirement_names() -> set[str]:
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].split("\n")
    return {_canonical(re.split(r"[<>=!~;\[ ]", line.strip())[0]) for line in lines if line.strip()}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
