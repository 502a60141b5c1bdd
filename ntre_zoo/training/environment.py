"""The machine a run computed on, recorded with its outputs: the same recipe gives the same bytes only where the
same kernels round alike, so a card that says where its weights came from tells a later run what to compare with."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from ..inference.precision import cpu_capabilities

__all__ = ["NUMERICS_VARIABLES", "PINNED_CPU_KERNELS", "cpu_model", "run_environment"]

#: Environment variables that choose the kernels (and so the rounding) of a CPU or GPU run.
NUMERICS_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "CUBLAS_WORKSPACE_CONFIG",
)

#: The environment of a CPU run that is meant to give the same bytes on other machines: one thread, and kernels
#: chosen independently of what an x86-64 CPU offers beyond AVX2 (ATen's at the AVX2 level, oneDNN's at most AVX2,
#: MKL's COMPATIBLE branch). The shipped tiny model's recorded command sets exactly these; they must be set before
#: torch is imported. They give the same parameters on the x86-64 CPUs measured; oneDNN's GEMM convolution still
#: rounds by CPU model, which moves two BN layers' running statistics of the tiny model (docs/reproducing.md).
PINNED_CPU_KERNELS = {
    "OMP_NUM_THREADS": "1",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``, else ``unknown``)."""
    path = Path("/proc/cpuinfo")
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    return platform.processor() or "unknown"


def run_environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """``{"torch", "device", "cpu", "cpu_capability", "threads", "numerics"}`` (plus ``"gpu"`` on CUDA):
    the torch build, the CPU model and the ATen kernel level torch chose, the intra-op threads, and the
    :data:`NUMERICS_VARIABLES` that are set."""
    device = torch.device(device)
    record: dict[str, Any] = {
        "torch": torch.__version__,
        "device": device.type,
        "cpu": cpu_model(),
        "cpu_capability": cpu_capabilities()["capability"],
        "threads": torch.get_num_threads(),
        "numerics": {name: os.environ[name] for name in NUMERICS_VARIABLES if name in os.environ},
    }
    if device.type == "cuda" and torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name(device)
    return record
