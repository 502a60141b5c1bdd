"""Saving and loading a model directory (``ntre_zoo/zoo/saving.py``, ``zoo/loading.py``): a save killed at any
moment leaves the old model or the new one, saved files follow the umask, an unreadable file or cache says
permission denied, a README the user wrote is kept, and a bad config.json (or ModelConfig) names the value."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_model
from conftest import state_equal as _state_equal

import ntre_zoo
from ntre_zoo.model.config import ModelConfig
from ntre_zoo.zoo.saving import save_pretrained

# ----------------------------------------------------------------------------------- atomic saves under kills
#: The calls through which a save into an existing directory changes files: every moment a kill can tell
#: apart lies just before or just after one of them (between two of them the files do not change).
_FILE_CALLS = {"open", "serialize_file", "write", "__exit__", "chmod", "replace", "unlink", "fsync"}


def _file_call_profiler(moment: int | None, seen: list[int]):
    """A ``sys.setprofile`` function counting the boundaries of file calls; SIGKILL at boundary ``moment``."""

    def profile(frame, event, arg):
        if event in ("c_call", "c_return") and getattr(arg, "__name__", "") in _FILE_CALLS:
            seen[0] += 1
            if seen[0] == moment:
                os.kill(os.getpid(), signal.SIGKILL)

    return profile


def _save_killed_at(model, directory: Path, moment: int) -> bool:
    """Save in a forked child that SIGKILLs itself at file-call boundary ``moment``; True if it was killed."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        sys.setprofile(_file_call_profiler(moment, [0]))
        try:
            save_pretrained(model, directory)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_save_killed_at_any_moment_leaves_the_old_model_or_the_new_one(tmp_path):
    """A kill before or after each call that touches a file (every state a kill can leave) is followed by a
    load that gives the old model or the new one, and the next save removes what the killed one left."""
    old = make_tiny_model(seed=1)
    new = make_tiny_model(seed=2, reduce_dim=8, test_size=97)  # another architecture and preprocessing
    save_pretrained(old, tmp_path / "old")
    shutil.copytree(tmp_path / "old", tmp_path / "dry")
    seen = [0]
    sys.setprofile(_file_call_profiler(None, seen))
    try:
        save_pretrained(new, tmp_path / "dry")
    finally:
        sys.setprofile(None)
    outcomes = dict.fromkeys(["old", "new", "new weights, old config.json", "temporary files removed"], 0)
    for moment in range(1, seen[0] + 1):
        directory = shutil.copytree(tmp_path / "old", tmp_path / f"kill{moment}")
        assert _save_killed_at(new, directory, moment), moment
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            loaded = ntre_zoo.from_pretrained(directory)
        expected = new if loaded.config == new.config else old
        assert loaded.config in (old.config, new.config) and _state_equal(loaded, expected), moment
        written = json.loads((directory / "config.json").read_text())["model_config"]["reduce_dim"]
        outcomes[
            "new weights, old config.json" if expected is new and written == 16 else "new" if expected is new else "old"
        ] += 1
        if any(p.name.startswith(".") for p in directory.iterdir()):
            save_pretrained(new, directory)  # the next save removes the temporary files the killed one left
            assert sorted(p.name for p in directory.iterdir()) == ["README.md", "config.json", "model.safetensors"]
            outcomes["temporary files removed"] += 1
    # The kills hit before, between and after the switch, including the moment between the two renames.
    assert all(outcomes.values()), outcomes


# ------------------------------------------------------------------------------ file modes, permission denied
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_every_saved_file_follows_the_umask(tiny_model, tmp_path, umask):
    previous = os.umask(umask)
    try:
        directory = save_pretrained(tiny_model, tmp_path / "model")
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in directory.iterdir()}
    assert modes == dict.fromkeys(["README.md", "config.json", "model.safetensors"], 0o666 & ~umask)


def _as_another_user(action) -> str:
    """Run ``action()`` as a user who does not own the files (a forked child as ``nobody`` when root);
    return the type and message of what it raised."""
    if os.geteuid() != 0:
        try:
            action()
        except Exception as error:
            return f"{type(error).__name__}: {error}"
        return "no error"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.close(read)
        try:
            os.setgid(65534)
            os.setuid(65534)
            action()
            result = "no error"
        except BaseException as error:
            result = f"{type(error).__name__}: {error}"
        os.write(write, result.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        result = pipe.read()
    os.waitpid(pid, 0)
    return result


@pytest.mark.parametrize("unreadable", ["model.safetensors", "config.json"])
def test_an_unreadable_file_says_permission_denied(tiny_model, unreadable):
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        directory = save_pretrained(tiny_model, Path(tmp) / "model")
        os.chmod(directory / unreadable, 0o600 if os.geteuid() == 0 else 0o000)
        outcome = _as_another_user(lambda: ntre_zoo.from_pretrained(directory))
    assert outcome.startswith("PermissionError") and "permission denied" in outcome, outcome
    assert unreadable in outcome and "No such file" not in outcome


def test_a_hub_cache_this_user_cannot_write_says_permission_denied(hub, tiny_model):
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        saved = save_pretrained(tiny_model, Path(tmp) / "upload")
        hub.add_commit("me/tiny", {p.name: p.read_bytes() for p in saved.iterdir()})
        cache = Path(tmp) / "cache"
        cache.mkdir(mode=0o555 if os.geteuid() != 0 else 0o755)
        outcome = _as_another_user(lambda: ntre_zoo.from_pretrained("hf-hub:me/tiny", cache_dir=cache, token="x"))
    assert outcome.startswith("PermissionError: Permission denied on") and "cache_dir=" in outcome, outcome


# --------------------------------------------------------------------------------------- the user's README.md
def test_a_readme_the_user_wrote_or_edited_is_kept(tiny_model, tmp_path):
    (tmp_path / "README.md").write_text("# My model\n\nNotes I wrote.\n")
    with pytest.warns(UserWarning, match="was not written by ntre-zoo"):
        save_pretrained(tiny_model, tmp_path)
    assert (tmp_path / "README.md").read_text() == "# My model\n\nNotes I wrote.\n"
    assert ntre_zoo.from_pretrained(tmp_path).config == tiny_model.config

    other = tmp_path / "ours"
    save_pretrained(tiny_model, other, metadata={"dataset": "pascal5i", "fold": 0})
    save_pretrained(tiny_model, other, metadata={"dataset": "pascal5i", "fold": 1})  # ours: replaced
    assert "Fold: 1" in (other / "README.md").read_text()
    edited = (other / "README.md").read_text().replace("Fold: 1", "Fold: 1 (trained on my cluster)")
    (other / "README.md").write_text(edited)
    with pytest.warns(UserWarning, match="or was edited since"):
        save_pretrained(tiny_model, other, metadata={"dataset": "pascal5i", "fold": 2})
    assert (other / "README.md").read_text() == edited


# -------------------------------------------------------------------------------- config.json and ModelConfig
@pytest.mark.parametrize(
    "edit, error, message",
    [
        (lambda c: "{not json", ValueError, "is not valid JSON"),
        (lambda c: c.update(shot="1"), TypeError, r"ModelConfig.shot must be an integer, got '1' \(str\)"),
        (lambda c: c.update(bg_eliminating="false"), TypeError, "bg_eliminating must be true or false, got 'false'"),
        (lambda c: c.update(std=[0.229, 0, 0.225]), ValueError, "std must be positive"),
        (lambda c: c.update(test_size=473.5), TypeError, "test_size must be an integer, got 473.5"),
        (lambda c: c.pop("test_size"), ValueError, "with test_size"),
        (lambda c: c.update(pyramid_bins=[60, 30.5]), ValueError, "whole sizes > 1"),
        (lambda c: c.update(backbone={"name": "resnet50", "layers": [1, 1, 1.5, 1]}), TypeError, r"layers\[2\]"),
    ],
)
def test_a_bad_config_json_names_the_file_and_the_value(tiny_model, tmp_path, edit, error, message):
    save_pretrained(tiny_model, tmp_path)
    path = tmp_path / "config.json"
    config = json.loads(path.read_text())
    text = edit(config["model_config"])
    path.write_text(text if isinstance(text, str) else json.dumps(config))  # an edit: read, not overruled
    with pytest.raises(error, match=message) as raised:
        ntre_zoo.from_pretrained(tmp_path)
    assert "config.json" in str(raised.value)


def test_model_config_checks_types_when_built():
    with pytest.raises(TypeError, match=r"ModelConfig\.shot must be an integer"):
        ModelConfig(shot="1")
    with pytest.raises(TypeError, match="do_eliminating must be true or false"):
        ModelConfig(do_eliminating=1)
    with pytest.raises(ValueError, match="reduce_dropout must be in"):
        ModelConfig(reduce_dropout=1.5)
    with pytest.raises(TypeError, match="mean must be a list"):
        ModelConfig(mean=0.5)
    assert ModelConfig(test_size=np.int64(97), pyramid_bins=[8.0, 0.5]).pyramid_bins == (8, 0.5)
