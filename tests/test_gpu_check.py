"""``benchmarks/gpu_check.sh``: its time limits fit a 10-minute GPU loan, a step that fails never stops the rest,
its CUDA tests exist by node id, and it runs end to end on a CPU in smoke mode."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _limits() -> dict[str, int]:
    block = re.search(r"declare -A LIMITS=\((.*?)\)", SCRIPT.read_text(), re.S)
    assert block, "gpu_check.sh declares its LIMITS"
    return {name: int(seconds) for name, seconds in re.findall(r"\[(\w+)\]=(\d+)", block.group(1))}


def test_the_time_limits_add_up_to_under_seven_minutes():
    limits = _limits()
    assert sum(limits.values()) < 420, limits  # the loan's command may run 10 minutes; the loan is about 15
    steps = re.findall(r"^step (\w+) ", SCRIPT.read_text(), re.M)
    assert sorted(steps) == sorted(limits)  # every step has a limit, and every limit a step


def test_a_failing_step_does_not_stop_the_script():
    text = SCRIPT.read_text()
    assert not re.search(r"^\s*set -[a-z]*e", text, re.M)  # no errexit: each step records its status instead
    assert "timeout" not in re.findall(r"^step \w+ (\S+)", text, re.M)


def test_the_cuda_tests_it_runs_exist_by_node_id():
    ids = re.findall(r"(tests/\w+\.py::\w+)", SCRIPT.read_text())
    assert len(ids) >= 2
    found = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *ids],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0 and all(i in found.stdout for i in ids), found.stdout + found.stderr


def test_smoke_mode_runs_end_to_end_on_a_cpu(tmp_path):
    """``DEVICE=cpu SMOKE=1``: every step on the narrow model, in the default suite (73 s on a quiet 2-core AMD
    EPYC, mostly the ten steps' process starts), so the script a GPU loan runs is known to work before it."""
    env = {**os.environ, "DEVICE": "cpu", "SMOKE": "1", "OUT": str(tmp_path / "out")}
    subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, check=True, capture_output=True)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {n: s["status"] for n, s in summary["steps"].items()} == dict.fromkeys(_limits(), "ok")
    assert summary["steps"]["train_w8"]["result"]["losses_finite"] is True
    assert summary["steps"]["resume"]["result"]["steps"] == 4
