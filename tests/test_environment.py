"""Exported weights record the machine they were trained on, and their model card says it."""

from __future__ import annotations

import torch
from conftest import make_tiny_model

from ntre_zoo.training.config import TrainConfig
from ntre_zoo.training.environment import run_environment
from ntre_zoo.training.outputs import card_metadata
from ntre_zoo.zoo.model_card import render_model_card
from ntre_zoo.zoo.saving import build_config


def test_the_environment_names_torch_the_kernels_and_the_numerics_variables_that_are_set(monkeypatch):
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    record = run_environment("cpu")
    assert record["torch"] == torch.__version__ and record["device"] == "cpu"
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["threads"] == torch.get_num_threads() and record["cpu"]
    assert record["numerics"]["MKL_CBWR"] == "COMPATIBLE" and "ATEN_CPU_CAPABILITY" not in record["numerics"]


def test_the_model_card_says_where_the_weights_were_trained(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    environment = run_environment("cpu")
    meta = card_metadata({"dataset": "synthetic", "fold": 0}, {}, TrainConfig(), 3, 30, 1, environment)
    assert meta["training"]["environment"] == environment
    card = render_model_card(build_config(make_tiny_model(), meta))
    line = next(line for line in card.splitlines() if line.startswith("- Trained on: "))
    assert environment["cpu"] in line and f"torch {torch.__version__}" in line and "OMP_NUM_THREADS=1" in line
